//! The auth backend: what it answers (programmed per token, changeable mid-scenario) and what it
//! was asked (counts, parameters, timing windows).

use std::collections::BTreeSet;
use std::time::Duration;

use cucumber::gherkin::Step;
use cucumber::{given, then, when};

use super::{UsherWorld, opt, seconds};
use crate::backend::{Answer, Call};

/// Adds the options after `with …` to an answer: `X-AuthDuration N`, `X-Max-Sessions N`,
/// `X-Unique`, `a body of N bytes` (a JSON object padded to exactly N bytes, N >= 10),
/// `a header block of N KiB` (padding headers of 4 KiB each), `a delay of N seconds`,
/// `config {…json…}` or `body {…json…}` (last; a `user_id` string in the body is a user alias,
/// like `as user "…"`), joined by ` and `.
fn with_options(world: &UsherWorld, mut answer: Answer, options: &str) -> Answer {
    let mut rest = options.trim();
    while !rest.is_empty() {
        if let Some(json) = rest.strip_prefix("body ") {
            let mut body: serde_json::Value =
                serde_json::from_str(json).unwrap_or_else(|e| panic!("`body {json}` is not JSON: {e}"));
            if let Some(user) = body.get_mut("user_id")
                && let Some(alias) = user.as_str()
            {
                *user = serde_json::Value::String(world.user_id(alias));
            }
            answer = answer.with_body(body);
            break;
        }
        if let Some(json) = rest.strip_prefix("config ") {
            let config: serde_json::Value =
                serde_json::from_str(json).unwrap_or_else(|e| panic!("`config {json}` is not JSON: {e}"));
            answer = answer.with_body(serde_json::json!({ "config": config }));
            break;
        }
        let (item, tail) = rest.split_once(" and ").unwrap_or((rest, ""));
        rest = tail.trim();
        let mut words = item.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("X-AuthDuration"), Some(n), None) => {
                answer = answer.with_header("X-AuthDuration", n);
            }
            (Some("X-Max-Sessions"), Some(n), None) => {
                answer = answer.with_header("X-Max-Sessions", n);
            }
            (Some("X-Unique"), None, None) => answer = answer.with_header("X-Unique", "true"),
            (Some("a"), Some("body"), Some("of")) => {
                let size = item
                    .strip_prefix("a body of ")
                    .and_then(|n| n.strip_suffix(" bytes"))
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|&n| n >= 10)
                    .unwrap_or_else(|| panic!("`{item}`: expected `a body of N bytes` with N >= 10"));
                answer = answer.with_body(padded_body(size));
            }
            (Some("X-Unique"), Some(v), None) => answer = answer.with_header("X-Unique", v.trim_matches('"')),
            (Some("a"), Some("header"), Some("block")) => {
                let kib = item
                    .strip_prefix("a header block of ")
                    .and_then(|n| n.strip_suffix(" KiB"))
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|&n| (1..=256).contains(&n))
                    .unwrap_or_else(|| panic!("`{item}`: expected `a header block of N KiB` with N from 1 to 256"));
                // Headers of 4 KiB each (name, value and their separators), as many as it takes.
                for i in 0..kib.div_ceil(4) {
                    let name = format!("X-Pad-{i:03}");
                    let value = "x".repeat(4096 - name.len() - 4);
                    answer = answer.with_header(&name, &value);
                }
            }
            (Some("a"), Some("delay"), Some("of")) => {
                let delay = item
                    .strip_prefix("a delay of ")
                    .and_then(|n| n.strip_suffix(" seconds").or_else(|| n.strip_suffix(" second")))
                    .and_then(|n| n.parse::<f64>().ok())
                    .filter(|&n| (0.0..3.0).contains(&n))
                    .unwrap_or_else(|| {
                        panic!("`{item}`: expected `a delay of N seconds` with N under the 3 s backend budget")
                    });
                answer = answer.after(Duration::from_secs_f64(delay));
            }
            _ => panic!(
                "unknown answer option `{item}` (known: X-AuthDuration N, X-Max-Sessions N, \
                 X-Unique [VALUE], a body of N bytes, a header block of N KiB, a delay of N seconds, \
                 config {{…}}, body {{…}})"
            ),
        }
    }
    answer
}

/// `{"pad":"xx…"}`, exactly `size` bytes as the backend sends it (compact JSON): the braces,
/// the key and the quotes take 10.
fn padded_body(size: usize) -> serde_json::Value {
    let body = serde_json::json!({ "pad": "x".repeat(size - 10) });
    debug_assert_eq!(serde_json::to_vec(&body).map(|b| b.len()).ok(), Some(size));
    body
}

fn token_or_every(token: String, every: String) -> Option<String> {
    if every.is_empty() { Some(token) } else { None }
}

#[given(
    regex = r#"^the backend (?:now )?allows (?:token "([^"]*)"|(every token))(?: as user "([^"]+)")?(?: with (.+))?$"#
)]
#[when(
    regex = r#"^the backend (?:now )?allows (?:token "([^"]*)"|(every token))(?: as user "([^"]+)")?(?: with (.+))?$"#
)]
async fn allows(world: &mut UsherWorld, token: String, every: String, user: String, options: String) {
    let mut answer = Answer::allow();
    if let Some(user) = opt(user) {
        answer = answer.with_header("X-UserId", &world.user_id(&user));
    }
    let answer = with_options(world, answer, &options);
    world.backend.answer(token_or_every(token, every).as_deref(), answer);
}

#[given(regex = r#"^the backend (?:now )?denies (?:token "([^"]*)"|(every token))(?: with (.+))?$"#)]
#[when(regex = r#"^the backend (?:now )?denies (?:token "([^"]*)"|(every token))(?: with (.+))?$"#)]
async fn denies(world: &mut UsherWorld, token: String, every: String, options: String) {
    let answer = with_options(world, Answer::deny(), &options);
    world.backend.answer(token_or_every(token, every).as_deref(), answer);
}

#[given(regex = r#"^the backend (?:now )?redirects (?:token "([^"]*)"|(every token)) to "([^"]+)"$"#)]
#[when(regex = r#"^the backend (?:now )?redirects (?:token "([^"]*)"|(every token)) to "([^"]+)"$"#)]
async fn redirects(world: &mut UsherWorld, token: String, every: String, location: String) {
    world
        .backend
        .answer(token_or_every(token, every).as_deref(), Answer::redirect(&location));
}

#[given(regex = r#"^the backend (?:now )?answers (\d{3})(?: for token "([^"]*)")?$"#)]
#[when(regex = r#"^the backend (?:now )?answers (\d{3})(?: for token "([^"]*)")?$"#)]
async fn answers_status(world: &mut UsherWorld, status: u16, token: String) {
    match opt(token) {
        Some(t) => world.backend.answer(Some(&t), Answer::status(status)),
        None => world.backend.answer_all(Answer::status(status)),
    }
}

#[given(regex = r"^the backend (?:now )?answers only after (\d+(?:\.\d+)?) seconds?$")]
#[when(regex = r"^the backend (?:now )?answers only after (\d+(?:\.\d+)?) seconds?$")]
async fn answers_late(world: &mut UsherWorld, delay: String) {
    world.backend.delay_all(Some(seconds(&delay)));
}

#[given(regex = r"^the backend is unreachable$")]
async fn unreachable(world: &mut UsherWorld) {
    assert!(
        world.streams.values().all(|s| !s.in_place),
        "`the backend is unreachable` must come before any viewer plays: the stream's backend \
         URL is fixed when the stream is put in place (use `the backend closes connections \
         without answering` to break it mid-scenario)"
    );
    world.backend_unreachable = true;
}

#[given(regex = r"^the backend (?:now )?closes connections without answering$")]
#[when(regex = r"^the backend (?:now )?closes connections without answering$")]
async fn drops(world: &mut UsherWorld) {
    world.backend.drop_connections(true);
}

// ---- what the backend was asked ----

fn calls_for<'a>(calls: &'a [Call], token: &Option<String>) -> Vec<&'a Call> {
    calls
        .iter()
        .filter(|c| token.as_deref().is_none_or(|t| c.token() == Some(t)))
        .collect()
}

#[then(
    regex = r#"^the backend was asked (at least )?(\d+) times?(?: for token "([^"]*)")?(?: with request_type "([a-z_]+)")?$"#
)]
async fn asked(world: &mut UsherWorld, at_least: String, n: usize, token: String, request_type: String) {
    asked_times_inner(world, !at_least.is_empty(), n, token, request_type);
}

fn asked_times_inner(world: &UsherWorld, at_least: bool, n: usize, token: String, request_type: String) {
    let log = world.backend.log();
    let token = opt(token);
    let request_type = opt(request_type);
    let seen = calls_for(log.calls(), &token)
        .into_iter()
        .filter(|c| request_type.is_none() || c.request_type() == request_type.as_deref())
        .count();
    if seen != n && !(at_least && seen > n) {
        let what = format!(
            "expected {}{n} backend call(s){}{}, saw {seen}",
            if at_least { "at least " } else { "" },
            token.map(|t| format!(" for token \"{t}\"")).unwrap_or_default(),
            request_type
                .map(|t| format!(" with request_type {t}"))
                .unwrap_or_default()
        );
        panic!("{}", world.explain(what));
    }
}

#[then(regex = r#"^the backend was not asked(?: for token "([^"]*)")?$"#)]
async fn not_asked(world: &mut UsherWorld, token: String) {
    asked_times_inner(world, false, 0, token, String::new());
}

/// Checks a value against an expectation written in a table: `stream "s"`, `user "u1"`,
/// `a UUID`, `an integer`, `a positive integer`, `0 or 1`, `not empty`, `absent`,
/// `a recent time` (unix seconds or milliseconds within the last ten minutes),
/// `containing "x"`, `the target's protocol` (its `proto` value), or a literal.
pub(crate) fn check_value(world: &UsherWorld, name: &str, value: Option<&str>, expected: &str) -> Result<(), String> {
    let show = |v: Option<&str>| v.map(|v| format!("`{v}`")).unwrap_or("absent".into());
    let ok = match expected {
        "absent" => value.is_none(),
        "a UUID" => value.is_some_and(is_uuid),
        "an integer" => value.is_some_and(|v| v.parse::<u64>().is_ok()),
        "a positive integer" => value.is_some_and(|v| v.parse::<u64>().is_ok_and(|n| n > 0)),
        "0 or 1" => matches!(value, Some("0" | "1")),
        "a recent time" => value.is_some_and(is_recent_time),
        "not empty" => value.is_some_and(|v| !v.is_empty()),
        // The `proto` of a play `over the target's protocol`.
        super::TARGETS_PROTOCOL => value == Some(world.ctx.default_proto.wire_name()),
        _ => {
            if let Some(alias) = expected.strip_prefix("stream \"").and_then(|s| s.strip_suffix('"')) {
                value == Some(world.stream_name(alias).as_str())
            } else if let Some(alias) = expected.strip_prefix("user \"").and_then(|s| s.strip_suffix('"')) {
                value == Some(world.user_id(alias).as_str())
            } else if let Some(part) = expected.strip_prefix("containing \"").and_then(|s| s.strip_suffix('"')) {
                value.is_some_and(|v| v.contains(part))
            } else {
                value == Some(expected)
            }
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` should be {expected}, is {}", show(value)))
    }
}

/// Unix time in seconds or milliseconds (a value past 10^11 is read as milliseconds) between
/// ten minutes ago and a minute ahead: what a session that opened or closed in this case shows,
/// whichever unit the server writes.
fn is_recent_time(v: &str) -> bool {
    let Ok(n) = v.parse::<u64>() else { return false };
    let millis = if n > 100_000_000_000 { n } else { n.saturating_mul(1000) };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    (now.saturating_sub(600_000)..=now + 60_000).contains(&millis)
}

pub(crate) fn is_uuid(v: &str) -> bool {
    let groups: Vec<&str> = v.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[then(regex = r#"^the backend's (new_session|update_session) call(?: for token "([^"]*)")? carried$"#)]
async fn call_carried(world: &mut UsherWorld, #[step] step: &Step, request_type: String, token: String) {
    let token = opt(token);
    let log = world.backend.log();
    let calls: Vec<&Call> = calls_for(log.calls(), &token)
        .into_iter()
        .filter(|c| c.request_type() == Some(&request_type))
        .collect();
    let which = token
        .as_ref()
        .map(|t| format!(" for token \"{t}\""))
        .unwrap_or_default();
    let Some(call) = calls.first() else {
        panic!("{}", world.explain(format!("no {request_type} call{which}")));
    };
    let mut problems = Vec::new();
    for (name, expected) in table_rows(step) {
        // `(HTTP method)` is the call's method, not a parameter (T1: play checks are GETs).
        let value = if name == "(HTTP method)" {
            Some(call.method.as_str())
        } else {
            call.param(&name)
        };
        if let Err(p) = check_value(world, &name, value, &expected) {
            problems.push(p);
        }
    }
    if !problems.is_empty() {
        panic!(
            "{}",
            world.explain(format!(
                "the first {request_type} call{which} ({call}):\n  {}",
                problems.join("\n  ")
            ))
        );
    }
}

/// The `proto` of each call of one kind for a token, in the order the backend got them:
/// `carried proto "hls" then "rtmp"`.
#[then(
    regex = r#"^the backend's (new_session|update_session) calls for token "([^"]*)" carried proto ("[a-z0-9]+"(?: then "[a-z0-9]+")*)$"#
)]
async fn calls_carried_protos(world: &mut UsherWorld, request_type: String, token: String, protos: String) {
    let expected: Vec<&str> = protos.split(" then ").map(|p| p.trim_matches('"')).collect();
    let log = world.backend.log();
    let seen: Vec<&str> = log
        .for_token(Some(&token))
        .iter()
        .filter(|c| c.request_type() == Some(request_type.as_str()))
        .map(|c| c.param("proto").unwrap_or("(none)"))
        .collect();
    if seen != expected {
        panic!(
            "{}",
            world.explain(format!(
                "the {request_type} calls for token \"{token}\" carried proto {seen:?}, expected {expected:?}"
            ))
        );
    }
}

#[then(regex = r#"^the backend's calls for token "([^"]*)" carried (\d+) different session_ids?$"#)]
async fn distinct_session_ids(world: &mut UsherWorld, token: String, n: usize) {
    let log = world.backend.log();
    let ids: BTreeSet<&str> = log
        .for_token(Some(&token))
        .iter()
        .filter_map(|c| c.session_id())
        .collect();
    if ids.len() != n {
        panic!(
            "{}",
            world.explain(format!(
                "expected {n} different session_id(s) for token \"{token}\", saw {}: {ids:?}",
                ids.len()
            ))
        );
    }
}

#[then(regex = r#"^the backend's calls for token "([^"]*)" kept one session_id with request_number rising by 1$"#)]
async fn one_session_rising(world: &mut UsherWorld, token: String) {
    let log = world.backend.log();
    let calls = log.for_token(Some(&token));
    let mut problems = Vec::new();
    if calls.len() < 2 {
        problems.push(format!(
            "expected at least 2 calls for token \"{token}\", saw {}",
            calls.len()
        ));
    }
    let first_id = calls.first().and_then(|c| c.session_id());
    for pair in calls.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.session_id() != first_id {
            problems.push(format!("session_id changed from {first_id:?} to {:?}", b.session_id()));
        }
        match (a.request_number(), b.request_number()) {
            (Some(x), Some(y)) if y == x + 1 => {}
            (x, y) => problems.push(format!("request_number went from {x:?} to {y:?}, expected +1")),
        }
    }
    if let Some(first) = calls.first()
        && !matches!(first.request_number(), Some(0 | 1))
    {
        problems.push(format!(
            "the first request_number is {:?}, expected 0 or 1",
            first.param("request_number")
        ));
    }
    if !problems.is_empty() {
        panic!("{}", world.explain(problems.join("; ")));
    }
}

fn first_of_type<'a>(calls: &'a [Call], token: &str, request_type: &str) -> Option<&'a Call> {
    calls
        .iter()
        .find(|c| c.token() == Some(token) && c.request_type() == Some(request_type))
}

#[then(
    regex = r#"^the backend's update_session call for token "([^"]*)" came (\d+(?:\.\d+)?) to (\d+(?:\.\d+)?) seconds after its new_session call$"#
)]
async fn update_window(world: &mut UsherWorld, token: String, lo: String, hi: String) {
    let (lo, hi) = (seconds(&lo), world.ctx.bound(seconds(&hi)));
    let log = world.backend.log();
    let (Some(new), Some(update)) = (
        first_of_type(log.calls(), &token, "new_session"),
        first_of_type(log.calls(), &token, "update_session"),
    ) else {
        panic!(
            "{}",
            world.explain(format!(
                "expected a new_session and an update_session call for token \"{token}\""
            ))
        );
    };
    let gap = update.at.saturating_duration_since(new.at);
    if gap < lo || gap > hi {
        panic!(
            "{}",
            world.explain(format!(
                "the update_session call came {} ms after new_session; expected {}..{} ms",
                gap.as_millis(),
                lo.as_millis(),
                hi.as_millis()
            ))
        );
    }
}

/// Reads a `| name | expected |` table (a header row `parameter`/`field` is skipped).
pub(crate) fn table_rows(step: &Step) -> Vec<(String, String)> {
    let table = step
        .table
        .as_ref()
        .expect("this step takes a table: | name | expected value |");
    table
        .rows
        .iter()
        .filter_map(|row| {
            let [name, expected] = row.as_slice() else {
                panic!("each table row is | name | expected value |, got {row:?}");
            };
            (name != "parameter" && name != "field").then(|| (name.clone(), expected.clone()))
        })
        .collect()
}

/// PUB-02: a POST whose fields (T2) are in the query string or in a JSON body (AMB-2).
#[then(regex = r#"^the backend's publish call(?: for token "([^"]*)")? carried$"#)]
async fn publish_call_carried(world: &mut UsherWorld, #[step] step: &Step, token: String) {
    let token = opt(token);
    let log = world.backend.log();
    let calls: Vec<&Call> = calls_for(log.calls(), &token)
        .into_iter()
        .filter(|c| c.publish)
        .collect();
    let which = token
        .as_ref()
        .map(|t| format!(" for token \"{t}\""))
        .unwrap_or_default();
    let Some(call) = calls.first() else {
        panic!("{}", world.explain(format!("no call to the on_publish backend{which}")));
    };
    let mut problems = Vec::new();
    if call.method != "POST" {
        problems.push(format!("the method should be POST (PUB-02), is {}", call.method));
    }
    for (name, expected) in table_rows(step) {
        if let Err(p) = check_value(world, &name, call.field(&name).as_deref(), &expected) {
            problems.push(p);
        }
    }
    if !problems.is_empty() {
        panic!(
            "{}",
            world.explain(format!(
                "the first publish call{which} ({call}):\n  {}",
                problems.join("\n  ")
            ))
        );
    }
}

/// AMB-2 as the reference server sends it: the publish call's JSON body carries the fields
/// again, typed. Each row's expected value is a JSON literal (`1`, `false`, `"rtmp"`), or
/// `stream "…"` / `a UUID` for the name and the session id.
#[then(regex = r#"^the backend's publish call(?: for token "([^"]*)")? carried a JSON body with$"#)]
async fn publish_call_json_body(world: &mut UsherWorld, #[step] step: &Step, token: String) {
    let token = opt(token);
    let log = world.backend.log();
    let Some(call) = calls_for(log.calls(), &token).into_iter().find(|c| c.publish) else {
        panic!("{}", world.explain("no call to the on_publish backend".to_string()));
    };
    let Some(body) = &call.body else {
        panic!(
            "{}",
            world.explain(format!("the publish call ({call}) has no JSON object as its body"))
        );
    };
    let mut problems = Vec::new();
    for (name, expected) in table_rows(step) {
        let got = body.get(&name);
        let ok = if expected == "a UUID" || expected.starts_with("stream \"") {
            let text = got.and_then(serde_json::Value::as_str);
            check_value(world, &name, text, &expected).is_ok()
        } else {
            let want: serde_json::Value = serde_json::from_str(&expected)
                .unwrap_or_else(|e| panic!("`{expected}` (row `{name}`) is not a JSON literal: {e}"));
            got == Some(&want)
        };
        if !ok {
            problems.push(format!(
                "`{name}` should be {expected}, is {}",
                got.map_or("absent".to_string(), ToString::to_string)
            ));
        }
    }
    if !problems.is_empty() {
        panic!(
            "{}",
            world.explain(format!(
                "the publish call's body ({call}):\n  {}",
                problems.join("\n  ")
            ))
        );
    }
}

/// An update_session call for `token` arrives within the bound, counted from the operator's
/// forced re-check (REQ-07).
#[then(
    regex = r#"^the backend receives an update_session call for token "([^"]*)" within (\d+(?:\.\d+)?) seconds? of the forced re-check$"#
)]
async fn receives_update_after_reauth(world: &mut UsherWorld, token: String, within: String) {
    let within = world.ctx.bound(seconds(&within));
    let asked = world
        .reauth_at
        .expect("no re-check was forced in this scenario (When the operator forces a re-check of stream \"s\")");
    let left = within.saturating_sub(asked.elapsed());
    let update = world
        .backend
        .wait_for(left, |c| {
            c.token() == Some(token.as_str())
                && c.request_type() == Some("update_session")
                && c.at >= asked
                && c.at.saturating_duration_since(asked) <= within
        })
        .await;
    if update.is_none() {
        panic!(
            "{}",
            world.explain(format!(
                "no update_session call for token \"{token}\" within {} ms",
                within.as_millis()
            ))
        );
    }
}

#[then(
    regex = r#"^the backend receives an update_session call for token "([^"]*)" within (\d+(?:\.\d+)?) seconds of its new_session call$"#
)]
async fn receives_update(world: &mut UsherWorld, token: String, within: String) {
    let within = world.ctx.bound(seconds(&within));
    let new_at = first_of_type(world.backend.log().calls(), &token, "new_session")
        .map(|c| c.at)
        .unwrap_or_else(|| {
            panic!(
                "{}",
                world.explain(format!("no new_session call for token \"{token}\""))
            )
        });
    let left = within.saturating_sub(new_at.elapsed());
    let update = world
        .backend
        .wait_for(left, |c| {
            c.token() == Some(token.as_str()) && c.request_type() == Some("update_session")
        })
        .await;
    match update {
        Some(c) if c.at.saturating_duration_since(new_at) <= within => {}
        _ => panic!(
            "{}",
            world.explain(format!(
                "no update_session call for token \"{token}\" within {} ms of its new_session call",
                within.as_millis()
            ))
        ),
    }
}

/// The latest call for `token` that got a decision (200 or 403), and how long that decision
/// stays fresh: its `X-AuthDuration`, else the default 180 s (TIME-01).
pub(crate) fn last_decision(world: &UsherWorld, token: Option<&str>) -> Option<(std::time::Instant, Duration)> {
    let log = world.backend.log();
    log.for_token(token).into_iter().rev().find_map(|c| {
        let answer = c.answer.as_ref()?;
        matches!(answer.status, 200 | 403).then(|| (c.at, answer.auth_duration().unwrap_or(Duration::from_secs(180))))
    })
}
