//! The session history: closed sessions as the management API lists them
//! (`GET /streamer/api/v3/sessions?closed=true&user_id=U`), newest first (API-01, API-02).

use std::time::{Duration, Instant};

use cucumber::gherkin::Step;
use cucumber::then;
use serde_json::Value;

use super::backend::{check_value, table_rows};
use super::{UsherWorld, opt, seconds};

/// How long a closed session may take to show when a step gives no bound.
const DEFAULT_WITHIN: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(100);

/// The closed sessions of `user` (the scenario's alias), newest first.
async fn closed_of(world: &UsherWorld, user: &str) -> Result<Vec<Value>, String> {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("closed", "true");
    query.append_pair("user_id", &world.user_id(user));
    let path = format!("sessions?{}", query.finish());
    let answer = world
        .ctx
        .target
        .api()
        .send("GET", &path, None)
        .await
        .map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("GET {path} answered {}: {}", answer.status, answer.text));
    }
    answer.body["sessions"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("GET {path}: expected {{\"sessions\": [...]}}, got {}", answer.text))
}

#[then(
    regex = r#"^the session history lists (\d+) closed sessions? of user "([^"]+)"(?: within (\d+(?:\.\d+)?) seconds?)?$"#
)]
async fn lists_closed(world: &mut UsherWorld, n: usize, user: String, within: String) {
    let within = world.ctx.bound(opt(within).map_or(DEFAULT_WITHIN, |w| seconds(&w)));
    let deadline = Instant::now() + within;
    loop {
        let list = closed_of(world, &user).await.unwrap_or_else(|e| panic!("{e}"));
        if list.len() == n {
            return;
        }
        if list.len() > n || Instant::now() >= deadline {
            panic!(
                "{}",
                world.explain(format!(
                    "the session history should list {n} closed session(s) of user \"{user}\", lists {} after {within:?}: {}",
                    list.len(),
                    Value::Array(list)
                ))
            );
        }
        // Records are written after the close, off the request path: poll until the bound.
        tokio::time::sleep(POLL).await;
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Checks the newest closed session of a user against `| field | expected |` rows (expected
/// values as in the backend steps: `stream "s"`, `user "u"`, `not empty`, `absent`, …).
#[then(regex = r#"^the latest closed session of user "([^"]+)" shows$"#)]
async fn latest_shows(world: &mut UsherWorld, #[step] step: &Step, user: String) {
    let list = closed_of(world, &user).await.unwrap_or_else(|e| panic!("{e}"));
    let Some(latest) = list.first() else {
        panic!(
            "{}",
            world.explain(format!("the session history has no closed session of user \"{user}\""))
        );
    };
    let mut problems = Vec::new();
    for (field, expected) in table_rows(step) {
        let value = latest.get(&field).and_then(text);
        if let Err(p) = check_value(world, &field, value.as_deref(), &expected) {
            problems.push(p);
        }
    }
    if !problems.is_empty() {
        panic!(
            "{}",
            world.explain(format!(
                "the latest closed session of user \"{user}\" ({latest}):\n  {}",
                problems.join("\n  ")
            ))
        );
    }
}
