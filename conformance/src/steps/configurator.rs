//! The authorization configurator (T7, CZR): `auth_backend` blocks put in place through
//! `PUT /streamer/api/v3/auth_backends/NAME` with the vendor's field names, and streams whose
//! `on_play` is `auth://NAME`.
//!
//! Block names are scoped like streams (`office` is `<scope>-office` on the server), so
//! scenarios running together never share a block. A target without that endpoint lacks the
//! `auth_backends` feature (scenarios tag it with `@needs-auth-backends`).

use cucumber::gherkin::Step;
use cucumber::{given, then, when};
use serde_json::{Map, Value, json};

use super::UsherWorld;
use super::stream::declare;
use crate::target::{AuthSettings, StreamSpec};

/// The API field a `| rule | values |` row fills (T7): `allow ip` → `allow_ips`.
fn field_of(rule: &str) -> Option<&'static str> {
    Some(match rule {
        "allow token" => "allow_tokens",
        "deny token" => "deny_tokens",
        "allow ip" => "allow_ips",
        "deny ip" => "deny_ips",
        "allow country" => "allow_countries",
        "deny country" => "deny_countries",
        "allow ua" => "allow_uas",
        "deny ua" => "deny_uas",
        _ => return None,
    })
}

/// `Given an auth_backend "office" with:` and a table of rules, one per row:
///
/// ```text
/// | rule          | values                  |
/// | deny token    | stolen                  |
/// | allow ip      | 127.0.0.2 10.0/16       |
/// | backend       | the backend             |
/// | backend       | an unreachable backend  |
/// | allow default |                         |
/// ```
///
/// Values are separated by spaces. `the backend` is the scenario's backend; `an unreachable
/// backend` is the same path on a closed port.
#[given(regex = r#"^an auth_backend "([^"]+)" with:$"#)]
#[when(regex = r#"^the operator puts auth_backend "([^"]+)" with:$"#)]
async fn an_auth_backend(world: &mut UsherWorld, #[step] step: &Step, alias: String) {
    let table = step.table.as_ref().expect("this step takes a table: | rule | values |");
    let mut body = Map::new();
    let mut backends: Vec<Value> = Vec::new();
    for row in &table.rows {
        let [rule, values] = row.as_slice() else {
            panic!("each row is | rule | values |, got {row:?}");
        };
        let rule = rule.trim();
        let values: Vec<&str> = values.split_whitespace().collect();
        match rule {
            "rule" => continue,
            "allow default" => {
                body.insert("allow_default".into(), json!(true));
            }
            "backend" => {
                let url = match values.join(" ").as_str() {
                    "the backend" => world.backend.url().to_string(),
                    "an unreachable backend" => world.backend.unreachable_url().to_string(),
                    other => panic!("backend `{other}`: write `the backend` or `an unreachable backend`"),
                };
                backends.push(json!({ "url": url }));
            }
            other => {
                let field = field_of(other).unwrap_or_else(|| {
                    panic!("unknown rule `{other}` (known: allow|deny token|ip|country|ua, backend, allow default)")
                });
                let list = body.entry(field).or_insert_with(|| json!([]));
                if let Value::Array(items) = list {
                    items.extend(values.iter().map(|v| json!(v)));
                }
            }
        }
    }
    if !backends.is_empty() {
        body.insert("backends".into(), Value::Array(backends));
    }
    let name = world.stream_name(&alias);
    let body = Value::Object(body);
    let answer = world
        .ctx
        .target
        .api()
        .send("PUT", &format!("auth_backends/{name}"), Some(&body))
        .await
        .unwrap_or_else(|e| panic!("putting auth_backend \"{alias}\" in place: {e}"));
    if answer.status != 200 {
        panic!(
            "the API refused auth_backend \"{alias}\" ({name}) {body}: {} {}",
            answer.status, answer.text
        );
    }
}

/// `Given a stream "s" guarded by auth_backend "office"`: `on_play auth://<scope>-office`.
#[given(regex = r#"^a stream "([^"]+)" guarded by auth_backend "([^"]+)"$"#)]
async fn a_guarded_stream(world: &mut UsherWorld, alias: String, block: String) {
    let url = format!("auth://{}", world.stream_name(&block));
    declare(
        world,
        alias,
        StreamSpec {
            on_play: Some(AuthSettings {
                url,
                ..AuthSettings::default()
            }),
            ..StreamSpec::default()
        },
    );
}

/// CZR-05 through the API: `DELETE auth_backends/NAME`; `the API answers N` reads its status.
#[when(regex = r#"^the operator deletes auth_backend "([^"]+)"$"#)]
async fn delete_auth_backend(world: &mut UsherWorld, alias: String) {
    let name = world.stream_name(&alias);
    let answer = world
        .ctx
        .target
        .api()
        .send("DELETE", &format!("auth_backends/{name}"), None)
        .await
        .unwrap_or_else(|e| panic!("deleting auth_backend \"{alias}\": {e}"));
    world.last_api = Some(answer);
}

/// `GET auth_backends`: whether the list (`{"auth_backends": [{"name": …}, …]}`) names the block.
#[then(regex = r#"^the API (lists|does not list) auth_backend "([^"]+)"$"#)]
async fn lists_auth_backend(world: &mut UsherWorld, how: String, alias: String) {
    let name = world.stream_name(&alias);
    let answer = world
        .ctx
        .target
        .api()
        .send("GET", "auth_backends", None)
        .await
        .unwrap_or_else(|e| panic!("listing auth_backends: {e}"));
    let listed = answer
        .body
        .get("auth_backends")
        .and_then(Value::as_array)
        .is_some_and(|blocks| {
            blocks
                .iter()
                .any(|b| b.get("name").and_then(Value::as_str) == Some(name.as_str()))
        });
    let want = how == "lists";
    if answer.status != 200 || listed != want {
        panic!(
            "{}",
            world.explain(format!(
                "GET auth_backends should {}name {name}; got {}: {}",
                if want { "" } else { "not " },
                answer.status,
                answer.text
            ))
        );
    }
}
