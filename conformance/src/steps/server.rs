//! Server-wide settings (`no_auto_token`, `auth_token`) and admin view tokens. Scenarios that
//! change server-wide settings are `@serial`; what they change is put back in the after-hook,
//! even when a step failed.

use cucumber::{given, then, when};
use serde_json::{Value, json};

use super::UsherWorld;

/// Changes one server-wide setting through `PUT config`, remembering its value before so the
/// after-hook puts it back, and checks that it took.
async fn set_server_setting(world: &mut UsherWorld, key: &str, value: Value) {
    let api = world.ctx.target.api();
    let before = api
        .server_config()
        .await
        .unwrap_or_else(|e| panic!("reading the server settings: {e}"));
    let previous = before
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("the server settings have no `{key}`: {before}"));
    let restore = world.restore_server_config.get_or_insert_with(|| json!({}));
    if restore.get(key).is_none() {
        restore[key] = previous;
    }
    api.put_server_config(&json!({ key: value }))
        .await
        .unwrap_or_else(|e| panic!("setting {key}: {e}"));
    let after = api
        .server_config()
        .await
        .unwrap_or_else(|e| panic!("reading the server settings: {e}"));
    assert_eq!(
        after.get(key),
        Some(&value),
        "PUT config {{\"{key}\":{value}}} did not take: {after}"
    );
}

#[given(regex = r"^the server refuses requests without a token$")]
async fn no_auto_token(world: &mut UsherWorld) {
    set_server_setting(world, "no_auto_token", json!(true)).await;
}

/// CFG-07: `auth_token NAME`, set at run time through the API; viewers of the scenario send
/// their token under that name from now on.
#[given(regex = r#"^the server reads the token from the query parameter "([^"]+)"$"#)]
async fn auth_token(world: &mut UsherWorld, name: String) {
    set_server_setting(world, "auth_token", json!(name)).await;
    world.token_param = Some(name);
}

/// REQ-07: `POST sessions/reauth?name=STREAM`.
#[when(regex = r#"^the operator forces a re-check of (?:stream "([^"]+)"|(an unknown stream))$"#)]
async fn force_recheck(world: &mut UsherWorld, stream: String, unknown: String) {
    let name = if unknown.is_empty() {
        world.ensure_stream(&stream).await;
        world.streams[&stream].server_name.clone()
    } else {
        world.stream_name("no-such-stream")
    };
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("name", &name)
        .finish();
    world.reauth_at = Some(std::time::Instant::now());
    let answer = world
        .ctx
        .target
        .api()
        .send("POST", &format!("sessions/reauth?{query}"), None)
        .await
        .unwrap_or_else(|e| panic!("forcing a re-check: {e}"));
    world.last_api = Some(answer);
}

#[then(regex = r"^the server counts (\d+) sessions? to re-check$")]
async fn reauth_count(world: &mut UsherWorld, n: u64) {
    let answer = world
        .last_api
        .as_ref()
        .expect("no re-check was forced in this scenario");
    let count = answer.body.get("estimated_count").and_then(Value::as_u64);
    if answer.status != 200 || count != Some(n) {
        panic!(
            "{}",
            world.explain(format!(
                "expected 200 {{\"estimated_count\": {n}}} (REQ-07), got {}: {}",
                answer.status, answer.text
            ))
        );
    }
}

#[then(regex = r"^the API answers (\d{3})$")]
async fn api_answers(world: &mut UsherWorld, status: u16) {
    let answer = world.last_api.as_ref().expect("no API call was made in this scenario");
    assert_eq!(
        answer.status, status,
        "expected the API to answer {status}, got {}: {}",
        answer.status, answer.text
    );
}

/// CONF-01/CONF-04: the first input of the configuration in force (`GET streams/NAME`) or of the
/// one loaded (`?part=config_on_disk`).
#[then(regex = r#"^the configuration (in force|on disk) of stream "([^"]+)" has the input "([^"]+)"$"#)]
async fn stream_input(world: &mut UsherWorld, part: String, stream: String, input: String) {
    world.ensure_stream(&stream).await;
    let name = world.streams[&stream].server_name.clone();
    let mut path = format!("streams/{name}");
    if part == "on disk" {
        path.push_str("?part=config_on_disk");
    }
    let answer = world
        .ctx
        .target
        .api()
        .send("GET", &path, None)
        .await
        .unwrap_or_else(|e| panic!("reading stream \"{stream}\": {e}"));
    let inputs: Vec<&str> = answer.body["inputs"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["url"].as_str()).collect())
        .unwrap_or_default();
    if answer.status != 200 || inputs.first() != Some(&input.as_str()) {
        panic!(
            "{}",
            world.explain(format!(
                "the configuration {part} of stream \"{stream}\" should have the input {input}; GET {path} answered {}: {}",
                answer.status, answer.text
            ))
        );
    }
}

#[given(regex = r"^the operator has minted an admin view token$")]
async fn minted(world: &mut UsherWorld) {
    let token = world
        .ctx
        .target
        .api()
        .mint_admin_token()
        .await
        .unwrap_or_else(|e| panic!("minting an admin view token: {e}"));
    assert!(
        token.starts_with("ADM"),
        "an admin view token starts with ADM (ADM-02), got `{token}`"
    );
    world.admin_token = Some(token);
}

#[then(regex = r"^the admin view token has the shape ADM1-<unix seconds>-<40 hex digits>$")]
async fn admin_token_shape(world: &mut UsherWorld) {
    let token = world
        .admin_token
        .as_deref()
        .expect("no admin view token was minted in this scenario");
    let parts: Vec<&str> = token.split('-').collect();
    let ok = matches!(parts.as_slice(), ["ADM1", ts, sig]
        if !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit())
            && sig.len() == 40 && sig.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(
        ok,
        "the admin view token `{token}` is not ADM1-<unix seconds>-<40 hex digits> (ADM-02)"
    );
}
