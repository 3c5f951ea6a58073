//! Sessions as the server's management API lists them.

use std::time::{Duration, Instant};

use cucumber::{then, when};

use super::backend::{check_value, table_rows};
use super::{UsherWorld, opt, seconds};

#[then(regex = r#"^at most (\d+) sessions? of user "([^"]+)" (?:is|are) open$"#)]
async fn at_most_user_sessions(world: &mut UsherWorld, n: usize, user: String) {
    let user_id = world.user_id(&user);
    let sessions = world
        .ctx
        .target
        .api()
        .sessions(None)
        .await
        .unwrap_or_else(|e| panic!("listing sessions: {e}"));
    let open: Vec<_> = sessions
        .iter()
        .filter(|s| s.user_id.as_deref() == Some(user_id.as_str()))
        .collect();
    if open.len() > n {
        panic!(
            "{}",
            world.explain(format!(
                "expected at most {n} open session(s) of user \"{user}\" ({user_id}), the server lists {}: {open:#?}",
                open.len()
            ))
        );
    }
}

#[then(regex = r#"^the server lists (\d+) open sessions? of stream "([^"]+)"(?: within (\d+(?:\.\d+)?) seconds?)?$"#)]
async fn lists_sessions(world: &mut UsherWorld, n: usize, stream: String, within: String) {
    let name = world.stream_name(&stream);
    let within = opt(within).map(|w| world.ctx.bound(seconds(&w)));
    let deadline = Instant::now() + within.unwrap_or_default();
    loop {
        let sessions = world
            .ctx
            .target
            .api()
            .sessions(Some(&name))
            .await
            .unwrap_or_else(|e| panic!("listing sessions: {e}"));
        let open: Vec<_> = sessions
            .into_iter()
            .filter(|s| s.name.as_deref() == Some(name.as_str()))
            .collect();
        if open.len() == n {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{}",
                world.explain(format!(
                    "expected {n} open session(s) of stream \"{stream}\"{}, the server lists {}: {open:#?}",
                    within
                        .map(|w| format!(" within {} ms", w.as_millis()))
                        .unwrap_or_default(),
                    open.len()
                ))
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[when(regex = r#"^the operator closes the session of viewer "([^"]+)" through the API$"#)]
async fn operator_closes(world: &mut UsherWorld, viewer: String) {
    let ip = world.viewer_ip(&viewer).to_string();
    let streams: Vec<String> = world
        .viewer(&viewer)
        .plays
        .iter()
        .map(|(p, _)| world.stream_name(&p.stream))
        .collect();
    let api = world.ctx.target.api();
    let sessions = api
        .sessions(None)
        .await
        .unwrap_or_else(|e| panic!("listing sessions: {e}"));
    let mine: Vec<_> = sessions
        .iter()
        .filter(|s| s.ip.as_deref() == Some(ip.as_str()))
        .filter(|s| s.name.as_ref().is_some_and(|n| streams.contains(n)))
        .collect();
    let [session] = mine.as_slice() else {
        panic!(
            "{}",
            world.explain(format!(
                "expected the server to list exactly one open session of viewer \"{viewer}\" ({ip} on {streams:?}), it lists {}: {mine:#?}",
                mine.len()
            ))
        );
    };
    api.close_session(&session.id)
        .await
        .unwrap_or_else(|e| panic!("closing session {}: {e}", session.id));
}

/// API-01: the open session of a viewer as `GET sessions` lists it, field by field. Expected
/// values as in the backend tables, plus `the backend's session_id` (the one the backend saw for
/// this viewer), and, against the last time this step read the viewer's session, `as before`
/// (the same value) and `more than before` (a larger integer).
#[then(regex = r#"^the server's session of viewer "([^"]+)" shows$"#)]
async fn session_shows(world: &mut UsherWorld, #[step] step: &cucumber::gherkin::Step, viewer: String) {
    let ip = world.viewer_ip(&viewer).to_string();
    let streams: Vec<String> = world
        .viewer(&viewer)
        .plays
        .iter()
        .map(|(p, _)| world.stream_name(&p.stream))
        .collect();
    let answer = world
        .ctx
        .target
        .api()
        .send("GET", "sessions", None)
        .await
        .unwrap_or_else(|e| panic!("listing sessions: {e}"));
    let listed = answer.body["sessions"].as_array().cloned().unwrap_or_default();
    let mine: Vec<&serde_json::Value> = listed
        .iter()
        .filter(|s| s["ip"].as_str() == Some(ip.as_str()))
        .filter(|s| s["name"].as_str().is_some_and(|n| streams.iter().any(|x| x == n)))
        .collect();
    let [session] = mine.as_slice() else {
        panic!(
            "{}",
            world.explain(format!(
                "expected the server to list exactly one open session of viewer \"{viewer}\" ({ip} on {streams:?}), GET sessions answered {}: {}",
                answer.status, answer.text
            ))
        );
    };
    let backend_ids: Vec<String> = world
        .backend
        .log()
        .calls()
        .iter()
        .filter(|c| c.param("ip") == Some(ip.as_str()))
        .filter_map(|c| c.session_id().map(str::to_string))
        .collect();
    let mut problems = Vec::new();
    for (field, expected) in table_rows(step) {
        let value = match &session[field.as_str()] {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        let before = world.sessions_seen.get(&viewer).map(|s| &s[field.as_str()]);
        if expected == "as before" || expected == "more than before" {
            let Some(before) = before else {
                panic!("`{field} | {expected}`: the session of viewer \"{viewer}\" was not read before");
            };
            let now = &session[field.as_str()];
            let ok = if expected == "as before" {
                now == before
            } else {
                matches!((now.as_u64(), before.as_u64()), (Some(n), Some(b)) if n > b)
            };
            if !ok {
                problems.push(format!("`{field}` should be {expected} ({before}), is {now}"));
            }
        } else if expected == "the backend's session_id" {
            if !value.as_ref().is_some_and(|v| backend_ids.contains(v)) {
                problems.push(format!(
                    "`{field}` should be the session_id the backend saw ({backend_ids:?}), is {value:?}"
                ));
            }
        } else if let Err(p) = check_value(world, &field, value.as_deref(), &expected) {
            problems.push(p);
        }
    }
    let session = (*session).clone();
    world.sessions_seen.insert(viewer.clone(), session.clone());
    if !problems.is_empty() {
        panic!(
            "{}",
            world.explain(format!(
                "the session of viewer \"{viewer}\" ({session}):\n  {}",
                problems.join("\n  ")
            ))
        );
    }
}
