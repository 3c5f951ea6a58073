//! Streams and their auth settings, put in place through the management API.
//!
//! `Given a stream …` only declares the stream; it is put in place by the first step that needs
//! it (a viewer playing, a session list), so the backend steps around it may come in any order.

use cucumber::{given, then, when};

use super::{StreamEntry, UsherWorld};
use crate::target::{AuthSettings, StreamSpec};

/// Reads the options after `with on_play auth and …`:
/// `session_keys "ip,name,proto,token"`, `domains "a.com,b.com"`, `max_sessions 2`,
/// `a backend URL with query "site=1"`, `soft_limitation`, `require_referer`.
fn auth_settings(world: &UsherWorld, options: &str) -> AuthSettings {
    let mut auth = AuthSettings::default();
    let re = regex::Regex::new(
        r#"^(?:session_keys "([^"]*)"|domains "([^"]*)"|max_sessions (\d+)|a backend URL with query "([^"]*)"|(soft_limitation)|(require_referer))$"#,
    )
    .expect("a valid regex");
    for item in options.split(" and ").filter(|s| !s.is_empty()) {
        let caps = re.captures(item.trim()).unwrap_or_else(|| {
            panic!(
                "unknown stream option `{item}` (known: session_keys \"…\", domains \"…\", \
                 max_sessions N, a backend URL with query \"…\", soft_limitation, require_referer)"
            )
        });
        if caps.get(5).is_some() {
            auth.soft_limitation = true;
        }
        if caps.get(6).is_some() {
            auth.require_referer = true;
        }
        if let Some(keys) = caps.get(1) {
            auth.session_keys = Some(keys.as_str().split(',').map(str::to_string).collect());
        } else if let Some(domains) = caps.get(2) {
            auth.domains = domains.as_str().split(',').map(str::to_string).collect();
        } else if let Some(n) = caps.get(3) {
            auth.max_sessions = Some(n.as_str().parse().expect("digits"));
        } else if let Some(query) = caps.get(4) {
            auth.url = format!("{}?{}", world.backend.url(), query.as_str());
        }
    }
    auth
}

#[given(regex = r#"^a stream "([^"]+)" with on_play auth(?: and (.+))?$"#)]
async fn a_stream(world: &mut UsherWorld, alias: String, options: String) {
    let auth = auth_settings(world, &options);
    declare(
        world,
        alias,
        StreamSpec {
            on_play: Some(auth),
            ..StreamSpec::default()
        },
    );
}

/// Declares stream `alias`; it is put in place by the first step that needs it.
pub(crate) fn declare(world: &mut UsherWorld, alias: String, spec: StreamSpec) {
    let server_name = world.stream_name(&alias);
    world.streams.insert(
        alias,
        StreamEntry {
            server_name,
            spec,
            in_place: false,
        },
    );
}

/// CFG-05: a stream with no `on_play` at all.
#[given(regex = r#"^a stream "([^"]+)" without authorization$"#)]
async fn a_stream_without_auth(world: &mut UsherWorld, alias: String) {
    declare(world, alias, StreamSpec::default());
}

/// A stream that takes publishers (`input publish://`). Options, joined by ` and `:
/// `on_publish auth`, `on_play auth`, `password "secret"`.
#[given(regex = r#"^a publishing point "([^"]+)"(?: with (.+))?$"#)]
async fn a_publishing_point(world: &mut UsherWorld, alias: String, options: String) {
    let mut spec = StreamSpec {
        publish: true,
        ..StreamSpec::default()
    };
    let password = regex::Regex::new(r#"^password "([^"]+)"$"#).expect("a valid regex");
    for item in options.split(" and ").filter(|s| !s.is_empty()) {
        match item.trim() {
            "on_publish auth" => spec.on_publish = Some(AuthSettings::default()),
            "on_play auth" => spec.on_play = Some(AuthSettings::default()),
            other => match password.captures(other) {
                Some(c) => spec.password = Some(c[1].to_string()),
                None => panic!(
                    "unknown publishing point option `{other}` (known: on_publish auth, on_play auth, password \"…\")"
                ),
            },
        }
    }
    declare(world, alias, spec);
}

/// CFG-05 through the API: the stream is configured anew with a backend for its viewers
/// (`on_play`) or, without one for them, for its publishers only (`on_publish`).
#[when(regex = r#"^the operator puts stream "([^"]+)" with (on_play|on_publish) auth(?: and (.+))?$"#)]
async fn operator_puts(world: &mut UsherWorld, alias: String, kind: String, options: String) {
    let mut auth = auth_settings(world, &options);
    if auth.url.is_empty() {
        auth.url = world.backend.url().to_string();
    }
    let (on_play, on_publish) = if kind == "on_play" {
        (Some(auth), None)
    } else {
        (None, Some(auth))
    };
    let spec = StreamSpec {
        on_play,
        on_publish,
        ..StreamSpec::default()
    };
    put_stream(world, alias, spec).await;
}

/// CFG-05 through the API: the stream is configured anew with no `on_play` at all.
#[when(regex = r#"^the operator puts stream "([^"]+)" without authorization$"#)]
async fn operator_puts_without_auth(world: &mut UsherWorld, alias: String) {
    put_stream(world, alias, StreamSpec::default()).await;
}

async fn put_stream(world: &mut UsherWorld, alias: String, spec: StreamSpec) {
    let server_name = world.stream_name(&alias);
    let answer = world
        .ctx
        .target
        .api()
        .put_stream(&server_name, &spec)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    world.streams.insert(
        alias,
        StreamEntry {
            server_name,
            spec,
            in_place: answer.status == 200,
        },
    );
    world.last_api = Some(answer);
}

#[then(regex = r#"^the API refuses it with an error naming "([^"]+)"$"#)]
async fn api_refuses(world: &mut UsherWorld, word: String) {
    let answer = world.last_api.as_ref().expect("no API call was made in this scenario");
    assert_eq!(
        answer.status, 400,
        "expected 400 with an error naming `{word}`, got {}: {}",
        answer.status, answer.text
    );
    let titles = answer.error_titles();
    assert!(
        titles.iter().any(|t| t.contains(&word)),
        "expected an error title naming `{word}` in {{\"errors\":[{{\"title\":…}}]}}, got: {}",
        answer.text
    );
}

#[then(regex = r"^the API accepts it$")]
async fn api_accepts(world: &mut UsherWorld) {
    let answer = world.last_api.as_ref().expect("no API call was made in this scenario");
    assert_eq!(
        answer.status, 200,
        "expected the API to accept the stream, got {}: {}",
        answer.status, answer.text
    );
}
