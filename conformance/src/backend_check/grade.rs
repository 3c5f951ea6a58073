//! Grading: every answer against the contract, read by the reference server's own code
//! ([`usher_server::auth::backend::interpret`] for the status and headers,
//! [`StreamOverride::parse`] for a `config` override), and the consequences a backend author
//! cannot see from their side, each in one sentence.
//!
//! Levels follow decisions.md: MUST where the spec states it (a failure fails the run), SHOULD
//! for the reference server's choices on open points (INFO unless `--strict`), INFO for the
//! consequences (recorded, never a failure).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;
use usher_server::auth::backend::{BACKEND_TIMEOUT, DEFAULT_AUTH_DURATION, MAX_AUTH_DURATION};
use usher_server::auth::{Answer, CallKind, Proto, RequestType};
use usher_server::config::StreamOverride;

use super::probe::{Exchange, Reply, TokenSource, short};
use super::{Latency, Options};
use crate::catalogue::{Level, fnv1a};
use crate::report::{BackendRequest, CaseResult, Verdict};

/// The latency round's p99 above this is a SHOULD problem: half the server's budget, so a
/// slower moment (a busier site, a cold cache) still answers in time.
pub const LATENCY_P99_LIMIT: Duration = Duration::from_millis(1500);
/// Problems listed under one case; the rest are counted.
const SHOWN_PROBLEMS: usize = 8;
/// Calls shown under one case.
const SHOWN_CALLS: usize = 5;
/// An auth duration from which a ban after a limit kick is worth a sentence.
const LONG_BAN: u64 = 600;

/// One check and what broke it.
struct Check<'a> {
    slug: &'static str,
    title: String,
    ids: &'static [&'static str],
    level: Level,
    problems: Vec<(String, &'a Exchange)>,
}

impl<'a> Check<'a> {
    fn new(slug: &'static str, level: Level, ids: &'static [&'static str], title: impl Into<String>) -> Self {
        Check {
            slug,
            title: title.into(),
            ids,
            level,
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, ex: &'a Exchange, what: impl Into<String>) {
        self.problems.push((what.into(), ex));
    }

    fn into_case(self, strict: bool) -> CaseResult {
        let verdict = match (self.problems.is_empty(), self.level) {
            (true, _) => Verdict::Pass,
            (false, Level::Must) => Verdict::Fail,
            (false, Level::Should) if strict => Verdict::Fail,
            (false, _) => Verdict::Info,
        };
        case(
            self.slug.to_string(),
            self.title,
            self.ids,
            self.level,
            verdict,
            &self.problems,
        )
    }
}

fn case(
    slug: String,
    title: String,
    ids: &[&str],
    level: Level,
    verdict: Verdict,
    problems: &[(String, &Exchange)],
) -> CaseResult {
    let failure = (!problems.is_empty()).then(|| {
        // The same sentence for many calls is said once, with the calls it came from.
        let mut grouped: Vec<(&str, Vec<String>)> = Vec::new();
        for (what, ex) in problems {
            match grouped.iter_mut().find(|(w, _)| *w == what.as_str()) {
                Some((_, calls)) => calls.push(ex.probe.label()),
                None => grouped.push((what, vec![ex.probe.label()])),
            }
        }
        let mut text = String::new();
        for (what, calls) in grouped.iter().take(SHOWN_PROBLEMS) {
            let more = if calls.len() > 1 {
                format!(" (and {} more)", calls.len() - 1)
            } else {
                String::new()
            };
            let _ = writeln!(text, "{what}\n  in: {}{more}", calls[0]);
        }
        if grouped.len() > SHOWN_PROBLEMS {
            let _ = writeln!(text, "… and {} more", grouped.len() - SHOWN_PROBLEMS);
        }
        text.trim_end().to_string()
    });
    let mut shown: Vec<&Exchange> = Vec::new();
    for (_, ex) in problems {
        if shown.len() < SHOWN_CALLS && !shown.iter().any(|s| std::ptr::eq(*s, *ex)) {
            shown.push(ex);
        }
    }
    CaseResult {
        key: format!("backend-check-{slug}"),
        location: format!("backend-check:{slug}"),
        feature: "backend-check".to_string(),
        title,
        ids: ids.iter().map(ToString::to_string).collect(),
        level: Some(level),
        slow: false,
        needs: Vec::new(),
        verdict,
        skip: None,
        failure,
        steps: Vec::new(),
        backend_requests: shown.into_iter().map(row).collect(),
        elapsed: Duration::ZERO,
    }
}

/// A call as a report row; the token is shown as where it came from, never its value.
fn row(ex: &Exchange) -> BackendRequest {
    let path = url::Url::parse(&ex.probe.url).map_or_else(|_| String::new(), |u| u.path().to_string());
    BackendRequest {
        offset_ms: u64::try_from(ex.offset.as_millis()).unwrap_or(u64::MAX),
        method: ex.probe.method().to_string(),
        path,
        query: ex.probe.shown_query(),
        answered: format!("{} in {} ms", ex.answered(), ex.elapsed.as_millis()),
    }
}

/// `10 hours`, `3 min`, `45 s`.
pub fn human(secs: u64) -> String {
    match secs {
        s if s >= 2 * 86_400 && s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s >= 7_200 && s % 3_600 == 0 => format!("{} hours", s / 3_600),
        s if s >= 3_600 => format!("{:.1} hours", s as f64 / 3_600.0),
        s if s >= 120 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn json_body(ex: &Exchange) -> Option<serde_json::Map<String, Value>> {
    let body = ex.body();
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn persistent_play(ex: &Exchange) -> bool {
    ex.probe.request.kind == CallKind::Play && matches!(ex.probe.request.proto, Proto::Rtmp | Proto::Rtsp)
}

/// p50, p99 and the maximum of the latency round (calls without an answer count as the budget).
pub fn latency(exchanges: &[Exchange], concurrency: usize) -> Option<Latency> {
    let mut times: Vec<Duration> = exchanges
        .iter()
        .filter(|e| e.probe.latency)
        .map(|e| match e.reply {
            Reply::Timeout => e.elapsed.max(BACKEND_TIMEOUT),
            _ => e.elapsed,
        })
        .collect();
    if times.is_empty() {
        return None;
    }
    times.sort();
    // Nearest rank.
    let rank = |p: f64| times[((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
    Some(Latency {
        calls: times.len(),
        answered: exchanges
            .iter()
            .filter(|e| e.probe.latency && matches!(e.reply, Reply::Answered { .. }))
            .count(),
        concurrency,
        p50: rank(0.50),
        p99: rank(0.99),
        max: times[times.len() - 1],
    })
}

/// Checks an `allowed_dvr_ranges` value against T5: an array of `{opened_at, closed_at}`
/// (unix seconds), one end may be left out, not both; opened before closed.
pub fn dvr_ranges_problem(v: &Value) -> Option<String> {
    let Value::Array(items) = v else {
        return Some(format!(
            "allowed_dvr_ranges is {}, not an array of {{opened_at, closed_at}}",
            kind(v)
        ));
    };
    for (i, item) in items.iter().enumerate() {
        let Value::Object(m) = item else {
            return Some(format!("allowed_dvr_ranges[{i}] is {}, not an object", kind(item)));
        };
        let end = |key: &str| -> Result<Option<u64>, String> {
            match m.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| format!("allowed_dvr_ranges[{i}].{key} is {n}, not unix seconds")),
                Some(other) => Err(format!(
                    "allowed_dvr_ranges[{i}].{key} is {}, not a number of unix seconds",
                    kind(other)
                )),
            }
        };
        match (end("opened_at"), end("closed_at")) {
            (Err(e), _) | (_, Err(e)) => return Some(e),
            (Ok(None), Ok(None)) => {
                return Some(format!("allowed_dvr_ranges[{i}] has neither opened_at nor closed_at"));
            }
            (Ok(Some(a)), Ok(Some(b))) if a >= b => {
                return Some(format!(
                    "allowed_dvr_ranges[{i}] opens at {a} and closes at {b}: an empty window"
                ));
            }
            _ => {}
        }
        if let Some(k) = m.keys().find(|k| *k != "opened_at" && *k != "closed_at") {
            return Some(format!("allowed_dvr_ranges[{i}] has an unknown key `{}`", short(k, 40)));
        }
    }
    None
}

/// Checks an `ad_inject` value against T5.
pub fn ad_inject_problem(v: &Value) -> Option<String> {
    let Value::Object(m) = v else {
        return Some(format!("ad_inject is {}, not an object", kind(v)));
    };
    for (key, value) in m {
        let problem = match key.as_str() {
            "v" => (!matches!(value.as_u64(), Some(1 | 2))).then(|| "must be 1 or 2".to_string()),
            "preroll" | "midroll" => match value {
                Value::Array(items) if items.iter().all(Value::is_string) => None,
                _ => Some("must be an array of VOD paths (strings)".to_string()),
            },
            "midroll_insert_by" => (!matches!(value.as_str(), Some("interval" | "splicing")))
                .then(|| "must be \"interval\" or \"splicing\"".to_string()),
            "midroll_interval" | "midroll_program_id" => value
                .as_u64()
                .is_none()
                .then(|| "must be a non-negative integer".to_string()),
            _ => Some("is not a field of ad_inject".to_string()),
        };
        if let Some(p) = problem {
            return Some(format!("ad_inject.{} {p}", short(key, 40)));
        }
    }
    if m.get("midroll_insert_by").and_then(Value::as_str) == Some("splicing") && m.contains_key("midroll_interval") {
        return Some("ad_inject.midroll_interval is only for midroll_insert_by \"interval\"".to_string());
    }
    None
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The consequences found: sentence → (requirement ids, the calls it was seen in).
type Notes<'a> = BTreeMap<String, (&'static [&'static str], Vec<&'a Exchange>)>;

fn add_note<'a>(notes: &mut Notes<'a>, sentence: String, ids: &'static [&'static str], ex: &'a Exchange) {
    notes.entry(sentence).or_insert_with(|| (ids, Vec::new())).1.push(ex);
}

/// Grades the exchanges of a run into cases: the checks first, then one INFO case per
/// consequence.
/// `stopped`: the backend stopped answering and the run made no further call.
pub fn grade(exchanges: &[Exchange], options: &Options, latency: Option<&Latency>, stopped: bool) -> Vec<CaseResult> {
    let strict = options.strict;
    let contract: Vec<&Exchange> = exchanges.iter().filter(|e| !e.probe.latency).collect();
    let budget = BACKEND_TIMEOUT.as_secs();

    let mut in_time = Check::new(
        "in-time",
        Level::Must,
        &["TIME-03", "RESP-04"],
        format!("Every call is answered within the {budget} s budget"),
    );
    let mut decides = Check::new(
        "decides",
        Level::Must,
        &["RESP-04"],
        "The backend decides: no 5xx, no broken or oversized answer",
    );
    let mut known = Check::new(
        "known-tokens-allowed",
        Level::Must,
        &["RESP-01"],
        "Every token of --tokens is allowed to play over HLS",
    );
    let mut statuses = Check::new(
        "statuses",
        Level::Must,
        &["RESP-01", "RESP-02", "RESP-03", "RESP-05"],
        "Every status is one the contract gives a meaning (200, 302 with Location, 403, 5xx)",
    );
    let mut other_status = Check::new(
        "plain-statuses",
        Level::Should,
        &["RESP-05", "AMB-5"],
        "Allow is 200 and deny is 403 (other 2xx and 4xx are read by the reference server's rule only)",
    );
    let mut duration = Check::new(
        "auth-duration",
        Level::Must,
        &["TIME-02", "BAN-05"],
        "X-AuthDuration is a non-negative integer of seconds",
    );
    let mut duration_range = Check::new(
        "auth-duration-range",
        Level::Should,
        &["TIME-02", "AMB-23"],
        "X-AuthDuration is at most 30 days",
    );
    let mut max_sessions = Check::new(
        "max-sessions",
        Level::Must,
        &["LIM-02"],
        "X-Max-Sessions is a positive integer",
    );
    let mut unique = Check::new("unique", Level::Must, &["UNIQ-05"], "X-Unique is exactly `true`");
    let mut user_id = Check::new(
        "user-id",
        Level::Should,
        &["LIM-01", "AMB-24"],
        "X-Max-Sessions and X-Unique come with a non-empty X-UserId",
    );
    let mut body = Check::new(
        "json-body",
        Level::Should,
        &["RESP-07"],
        "A 200's body is empty or a JSON object",
    );
    let mut config = Check::new(
        "config-override",
        Level::Must,
        &["CONF-01", "CONF-02", "AMB-16"],
        "A `config` override is one the server accepts",
    );
    let mut dvr_ranges = Check::new(
        "allowed-dvr-ranges",
        Level::Must,
        &["ADV-02"],
        "`allowed_dvr_ranges` is an array of {opened_at, closed_at} windows",
    );
    let mut ad_inject = Check::new(
        "ad-inject",
        Level::Must,
        &["ADV-01"],
        "`ad_inject` has the schema's shape",
    );
    let mut twins = Check::new(
        "json-twins",
        Level::Should,
        &["AMB-7"],
        "Durations, user ids and limits are sent as headers, not only as JSON keys",
    );
    let mut awkward = Check::new(
        "awkward-tokens",
        Level::Should,
        &["REQ-02", "RESP-02"],
        "Generated tokens (empty, long, with & % + #, non-ASCII) are refused with a decision",
    );
    let mut updates = Check::new(
        "updates",
        Level::Should,
        &["REQ-01", "TIME-01"],
        "A session allowed on new_session is still allowed on its update_session re-checks",
    );
    let mut consistent = Check::new(
        "consistent",
        Level::Should,
        &["TIME-02", "REQ-03"],
        "The same request gets the same decision",
    );
    let mut redirects = Check::new(
        "redirects",
        Level::Should,
        &["RESP-03", "AMB-5"],
        "No redirect is answered to an RTMP or RTSP viewer",
    );
    let latency_title = match latency {
        Some(l) => format!(
            "The p99 latency is under {} ms at concurrency {} ({} calls: p50 {} ms, p99 {} ms, max {} ms)",
            LATENCY_P99_LIMIT.as_millis(),
            l.concurrency,
            l.calls,
            l.p50.as_millis(),
            l.p99.as_millis(),
            l.max.as_millis()
        ),
        None => format!(
            "The p99 latency is under {} ms (not measured: the latency round did not run)",
            LATENCY_P99_LIMIT.as_millis()
        ),
    };
    let mut slow = Check::new("latency", Level::Should, &["TIME-03"], latency_title);

    let mut notes: Notes = BTreeMap::new();
    for ex in exchanges {
        match &ex.reply {
            Reply::Timeout => in_time.problem(
                ex,
                format!("no answer within {budget} s: a new viewer is refused, an open session keeps its last decision and is asked again later (T11)"),
            ),
            Reply::TooLarge(what) => decides.problem(ex, format!("{what}: the server reads it as no decision")),
            Reply::Failed(why) if !matches!(ex.probe.token, TokenSource::Hostile(_)) => {
                decides.problem(ex, format!("no answer ({why}): a new viewer is refused (T11)"))
            }
            Reply::Failed(why) => awkward.problem(
                ex,
                format!("no answer ({why}): the viewer is refused but nothing is cached, so each of its requests calls the backend again"),
            ),
            Reply::Answered { status, .. } if (500..=599).contains(status) => {
                if matches!(ex.probe.token, TokenSource::Hostile(_)) {
                    awkward.problem(
                        ex,
                        format!("{status} for {}: the viewer is refused but nothing is cached, so each of its requests calls the backend again", ex.probe.token),
                    );
                } else {
                    decides.problem(
                        ex,
                        format!("{status} is no decision: a new viewer is refused, an open session keeps its last decision (T11)"),
                    );
                }
            }
            Reply::Answered { .. } => {}
        }
    }

    if stopped && let Some(last) = exchanges.iter().rfind(|e| !matches!(e.reply, Reply::Answered { .. })) {
        decides.problem(
            last,
            format!("{}, so the rest of the contract was not checked", super::STOPPED),
        );
    }

    for ex in &contract {
        let ex: &Exchange = ex;
        let Some(status) = ex.status() else { continue };
        let request = &ex.probe.request;
        let hostile = matches!(ex.probe.token, TokenSource::Hostile(_));

        // Status.
        match status {
            200 | 403 | 500..=599 => {}
            302 if ex.header("location").is_some_and(|l| !l.is_empty()) => {}
            302 => statuses.problem(ex, "302 without a Location: the server reads it as a 403"),
            201..=299 => other_status.problem(
                ex,
                format!("{status}: the reference server allows it (AMB-5); other servers may not; answer 200"),
            ),
            400..=499 => {
                other_status.problem(
                    ex,
                    format!(
                        "{status}: the reference server denies it and caches the refusal like a 403 (AMB-5); answer 403"
                    ),
                );
            }
            other => statuses.problem(
                ex,
                format!("{other} has no meaning in the contract: the reference server reads it as a deny"),
            ),
        }

        // What the server does with it.
        match &ex.answer {
            Answer::Allow(grant) => {
                if hostile && request.kind == CallKind::Play {
                    awkward.problem(
                        ex,
                        format!(
                            "{} was allowed: a viewer with a token no site issued plays",
                            ex.probe.token
                        ),
                    );
                }
                let secs = grant.duration.as_secs();
                match ex.header("x-authduration") {
                    None => add_note(
                        &mut notes,
                        format!(
                            "A 200 without X-AuthDuration is re-checked every {} s",
                            DEFAULT_AUTH_DURATION.as_secs()
                        ),
                        &["TIME-01"],
                        ex,
                    ),
                    Some(_) if secs == 0 => add_note(
                        &mut notes,
                        "X-AuthDuration 0 on a 200: an HLS viewer is asked about again at each request, an RTMP or RTSP viewer continually"
                            .to_string(),
                        &["TIME-02", "AMB-23"],
                        ex,
                    ),
                    Some(_) => {}
                }
                if grant.user_id.is_some() && (grant.max_sessions.is_some() || grant.unique) && secs >= LONG_BAN {
                    let limit = if grant.unique { "X-Unique" } else { "X-Max-Sessions" };
                    add_note(
                        &mut notes,
                        format!(
                            "X-AuthDuration {secs} with {limit}: a viewer cut by the limit is banned for {}",
                            human(secs)
                        ),
                        &["BAN-02", "LIM-02"],
                        ex,
                    );
                }
            }
            Answer::Deny { .. } => {
                if let TokenSource::Given(_) = ex.probe.token
                    && request.kind == CallKind::Play
                    && request.proto == Proto::Hls
                    && request.request_type == RequestType::NewSession
                    && !request.dvr
                {
                    known.problem(ex, format!("{} was refused ({status})", ex.probe.token));
                }
                match ex.header("x-authduration").map(|v| v.parse::<u64>()) {
                    None => add_note(
                        &mut notes,
                        format!(
                            "A {status} without X-AuthDuration is cached {} s: the viewer is refused without asking you for three minutes, even once you would allow them",
                            DEFAULT_AUTH_DURATION.as_secs()
                        ),
                        &["BAN-05", "AMB-8"],
                        ex,
                    ),
                    Some(Ok(0)) => add_note(
                        &mut notes,
                        format!(
                            "A {status} with X-AuthDuration 0 is not cached: every request of a refused viewer calls the backend again"
                        ),
                        &["BAN-05", "AMB-8"],
                        ex,
                    ),
                    Some(Ok(n)) if n >= 3_600 => add_note(
                        &mut notes,
                        format!(
                            "A {status} with X-AuthDuration {n}: the viewer is refused without asking you for {}",
                            human(n.min(MAX_AUTH_DURATION.as_secs()))
                        ),
                        &["BAN-05", "AMB-8"],
                        ex,
                    ),
                    Some(_) => {}
                }
            }
            Answer::Redirect { .. } => {
                if persistent_play(ex) || request.kind == CallKind::Publish {
                    redirects.problem(
                        ex,
                        format!(
                            "a redirect answered to an {} {} is a deny",
                            request.proto.as_str().to_uppercase(),
                            if request.kind == CallKind::Play {
                                "viewer"
                            } else {
                                "publisher"
                            }
                        ),
                    );
                } else if let TokenSource::Given(_) = ex.probe.token
                    && request.proto == Proto::Hls
                    && request.request_type == RequestType::NewSession
                    && !request.dvr
                {
                    known.problem(ex, format!("{} was redirected, not allowed", ex.probe.token));
                }
            }
            Answer::NoDecision { .. } => {}
        }

        // Headers, on every answer that has them.
        if let Some(v) = ex.header("x-authduration") {
            match v.parse::<u64>() {
                Err(_) => duration.problem(
                    ex,
                    format!(
                        "X-AuthDuration `{}` is not a non-negative integer: the server uses {} s",
                        short(v, 40),
                        DEFAULT_AUTH_DURATION.as_secs()
                    ),
                ),
                Ok(n) if n > MAX_AUTH_DURATION.as_secs() => duration_range.problem(
                    ex,
                    format!("X-AuthDuration {n} is over 30 days: the reference server uses 30 days"),
                ),
                Ok(_) => {}
            }
        }
        if status / 100 == 2 {
            let uid = ex.header("x-userid");
            if let Some(v) = ex.header("x-max-sessions")
                && !v.parse::<u32>().is_ok_and(|n| n > 0)
            {
                max_sessions.problem(
                    ex,
                    format!(
                        "X-Max-Sessions `{}` is not a positive integer: the server enforces no limit",
                        short(v, 40)
                    ),
                );
            }
            if let Some(v) = ex.header("x-unique")
                && v != "true"
            {
                unique.problem(
                    ex,
                    if v.eq_ignore_ascii_case("true") {
                        format!(
                            "X-Unique `{}`: the reference server reads it as true, a stricter server ignores it",
                            short(v, 20)
                        )
                    } else {
                        format!("X-Unique `{}` is ignored: only `true` means anything", short(v, 20))
                    },
                );
            }
            if uid == Some("") {
                user_id.problem(ex, "an empty X-UserId is treated as absent");
            }
            let limited = ex.header("x-max-sessions").is_some()
                || ex.header("x-unique").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            if limited && uid.is_none_or(str::is_empty) {
                user_id.problem(
                    ex,
                    "X-Max-Sessions or X-Unique without X-UserId limits nothing: limits are counted per user id",
                );
            }

            // The body.
            let raw = ex.body();
            if !raw.iter().all(u8::is_ascii_whitespace) {
                match json_body(ex) {
                    None => body.problem(ex, "the body is not a JSON object: the server ignores it"),
                    Some(map) => grade_json(
                        ex,
                        &map,
                        &mut config,
                        &mut dvr_ranges,
                        &mut ad_inject,
                        &mut twins,
                        &mut notes,
                    ),
                }
            }
        }
    }

    // A session allowed on new_session and refused on a re-check.
    for ex in &contract {
        if ex.probe.request.request_type == RequestType::UpdateSession
            && matches!(ex.answer, Answer::Deny { .. } | Answer::Redirect { .. })
        {
            updates.problem(
                ex,
                format!(
                    "allowed on new_session, refused on update_session #{}: the viewer is cut at its first re-check (a one-time token?)",
                    ex.probe.request.request_number
                ),
            );
        }
    }

    // The same request, the same decision: the latency round repeats the first call.
    let decided: Vec<&Exchange> = exchanges
        .iter()
        .filter(|e| e.probe.latency && !matches!(e.answer, Answer::NoDecision { .. }))
        .collect();
    let allows = decided.iter().filter(|e| e.allowed()).count();
    if allows > 0 && allows < decided.len() {
        let odd = decided
            .iter()
            .find(|e| e.allowed() != decided[0].allowed())
            .copied()
            .unwrap_or(decided[0]);
        consistent.problem(
            odd,
            format!(
                "answers differ for the same token within its auth duration: {allows} of {} identical calls allowed",
                decided.len()
            ),
        );
    }

    if let Some(l) = latency
        && l.p99 > LATENCY_P99_LIMIT
        && let Some(ex) = exchanges.iter().filter(|e| e.probe.latency).max_by_key(|e| e.elapsed)
    {
        slow.problem(
            ex,
            format!(
                "p99 {} ms at concurrency {}: a busier moment takes viewers past the {budget} s budget, and they are refused",
                l.p99.as_millis(),
                l.concurrency
            ),
        );
    }

    // Limits across tokens: the site's tokens that share a user id.
    let mut by_user: BTreeMap<&str, Vec<&Exchange>> = BTreeMap::new();
    for ex in &contract {
        if let (TokenSource::Given(_), Answer::Allow(grant)) = (&ex.probe.token, &ex.answer)
            && ex.probe.request.kind == CallKind::Play
            && ex.probe.request.proto == Proto::Hls
            && ex.probe.request.request_type == RequestType::NewSession
            && !ex.probe.request.dvr
            && let Some(uid) = grant.user_id.as_deref()
        {
            by_user.entry(uid).or_default().push(ex);
        }
    }
    for calls in by_user.values() {
        if calls.len() < 2 {
            continue;
        }
        let Answer::Allow(last) = &calls[calls.len() - 1].answer else {
            continue;
        };
        if last.unique {
            add_note(
                &mut notes,
                "The same user id from two tokens with X-Unique closes the first viewer".to_string(),
                &["UNIQ-01"],
                calls[1],
            );
        } else if let Some(n) = last.max_sessions
            && (n as usize) < calls.len()
        {
            add_note(
                &mut notes,
                format!(
                    "{} tokens share one user id with X-Max-Sessions {n}: opening them all closes the oldest viewers",
                    calls.len()
                ),
                &["LIM-02", "AMB-1"],
                calls[calls.len() - 1],
            );
        }
    }

    // A site token allowed over HLS and refused over another protocol.
    for ex in &contract {
        if let TokenSource::Given(_) = ex.probe.token
            && ex.probe.request.kind == CallKind::Play
            && ex.probe.request.request_type == RequestType::NewSession
            && ex.probe.request.proto != Proto::Hls
            && matches!(ex.answer, Answer::Deny { .. })
        {
            add_note(
                &mut notes,
                format!(
                    "A token allowed over HLS is refused over {}: the same viewer cannot switch protocol",
                    ex.probe.request.proto.as_str()
                ),
                &["AMB-25"],
                ex,
            );
        }
    }

    let checks = [
        in_time,
        decides,
        statuses,
        duration,
        max_sessions,
        unique,
        config,
        dvr_ranges,
        ad_inject,
        other_status,
        duration_range,
        user_id,
        body,
        twins,
        awkward,
        updates,
        consistent,
        redirects,
        slow,
    ];
    let mut out: Vec<CaseResult> = Vec::new();
    let has_tokens = !options.tokens.is_empty();
    out.extend(
        std::iter::once(known)
            .filter(|_| has_tokens)
            .chain(checks)
            .map(|c| c.into_case(strict)),
    );
    for (sentence, (ids, calls)) in notes {
        let slug = format!("note-{:08x}", fnv1a(sentence.as_bytes()) as u32);
        let problems: Vec<(String, &Exchange)> = calls
            .into_iter()
            .map(|ex| ("a consequence, not a failure".to_string(), ex))
            .collect();
        let mut c = case(slug, sentence, ids, Level::Info, Verdict::Info, &problems);
        c.failure = Some(format!(
            "seen in {} call(s), e.g. {}",
            problems.len(),
            problems[0].1.probe.label()
        ));
        out.push(c);
    }
    out
}

fn grade_json<'a>(
    ex: &'a Exchange,
    map: &serde_json::Map<String, Value>,
    config: &mut Check<'a>,
    dvr_ranges: &mut Check<'a>,
    ad_inject: &mut Check<'a>,
    twins: &mut Check<'a>,
    notes: &mut Notes<'a>,
) {
    let mut note = |sentence: String, ids: &'static [&'static str]| add_note(notes, sentence, ids, ex);
    if let Some(v) = map.get("config").filter(|v| !v.is_null()) {
        match StreamOverride::parse(v) {
            Err(e) => config.problem(ex, format!("the server rejects the whole override: {e}")),
            Ok(parsed) => {
                note(
                    "A config override changes the stream for every viewer, not only the one whose answer carried it"
                        .to_string(),
                    &["CONF-03"],
                );
                for field in parsed.ignored {
                    note(format!("An override field the server ignores: {field}"), &["CONF-01"]);
                }
            }
        }
    }
    if let Some(v) = map.get("allowed_dvr_ranges") {
        match dvr_ranges_problem(v) {
            Some(p) => dvr_ranges.problem(ex, p),
            None if v.as_array().is_some_and(Vec::is_empty) => {
                note(
                    "allowed_dvr_ranges [] forbids this viewer every archive request".to_string(),
                    &["ADV-02"],
                );
            }
            None => {}
        }
    }
    if let Some(v) = map.get("ad_inject").filter(|v| !v.is_null()) {
        match ad_inject_problem(v) {
            Some(p) => ad_inject.problem(ex, p),
            None => note(
                "ad_inject is not supported by the reference server: the viewer gets the stream without ads"
                    .to_string(),
                &["ADV-01"],
            ),
        }
    }
    for (key, header) in [
        ("user_id", "X-UserId"),
        ("max_sessions", "X-Max-Sessions"),
        ("auth_time", "X-AuthDuration"),
        ("duration", "X-AuthDuration"),
        ("unique", "X-Unique"),
    ] {
        if map.contains_key(key) {
            let what = if ex.header(header).is_some() {
                format!("`{key}` in the body beside {header}: the header wins; drop the key")
            } else {
                format!("`{key}` in the body is not in the contract: only the reference server reads it; send {header}")
            };
            twins.problem(ex, what);
        }
    }
}
