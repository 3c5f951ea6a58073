//! `usher backend-check`: validates a site's authorization backend against the contract.
//!
//! The suite's other half (`usher check`) judges a media server; this judges the other party.
//! It sends the calls a conforming server sends ([`probe`]: new_session then update_session
//! for each protocol, publish calls, the site's tokens and generated awkward ones, and a
//! latency round at a chosen concurrency), grades every answer against the contract with the
//! reference server's own reading of it ([`grade`]), and reports the results as the cases of
//! a [`Summary`], so the terminal, JSON, JUnit and HTML writers of `usher check` serve it
//! unchanged.
//!
//! Bounded against a hostile backend: each call has the server's 3 s budget and 1 MiB /
//! 64 KiB answer limits; once a call has waited out the budget, or [`NO_ANSWER_LIMIT`] calls
//! failed (refused, reset), no new call is started, so a hung backend costs one budget; the
//! whole run has a deadline; the number of calls is fixed by the options.

pub mod grade;
pub mod probe;
pub mod replay;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use usher_server::auth::backend::BACKEND_TIMEOUT;
use usher_server::auth::{CallKind, MAX_TOKEN_LEN, Proto};

use crate::report::Summary;
use probe::{Exchange, Probe, Sender, TokenSource, Viewer, answer_of, hostile_tokens, update_of};

/// Play protocols probed: each is a session of its own (AMB-25).
pub const PLAY_PROTOS: [Proto; 5] = [Proto::Hls, Proto::Dash, Proto::Tshttp, Proto::Rtmp, Proto::Rtsp];
/// Publish protocols probed.
pub const PUBLISH_PROTOS: [Proto; 3] = [Proto::Rtmp, Proto::Rtsp, Proto::Tshttp];
/// Tokens of `--tokens` beyond this many are not probed (a warning says so).
pub const MAX_TOKENS: usize = 32;
/// Calls that failed (refused, reset, broken answer) after which no new call is started. One
/// call that waits out the budget is enough.
pub const NO_ANSWER_LIMIT: usize = 4;
/// Upper bound of `--latency-calls`.
pub const MAX_LATENCY_CALLS: usize = 1000;
/// Upper bound of `--concurrency`.
pub const MAX_CONCURRENCY: usize = 64;
/// `update_session` calls that follow an allowed `new_session` of an HLS session.
pub const UPDATES: u64 = 2;

/// Why a run made no further call.
pub const STOPPED: &str =
    "the backend stopped answering (a call got no answer within 3 s, or 4 calls failed); no further call was made";

/// What to check and how hard.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `on_play` backend URL.
    pub play_url: String,
    /// The `on_publish` backend URL, if the site has one.
    pub publish_url: Option<String>,
    /// Tokens the backend should allow.
    pub tokens: Vec<String>,
    /// The stream name the calls carry.
    pub stream: String,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Calls of the latency round.
    pub latency_calls: usize,
    /// The whole run's limit.
    pub deadline: Duration,
    /// SHOULD-level problems fail the run too.
    pub strict: bool,
}

impl Options {
    pub fn new(play_url: &str) -> Options {
        Options {
            play_url: play_url.to_string(),
            publish_url: None,
            tokens: Vec::new(),
            stream: "news".to_string(),
            concurrency: 8,
            latency_calls: 40,
            deadline: Duration::from_secs(60),
            strict: false,
        }
    }
}

/// A mistake in the options or the token file: nothing was sent (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("{what} `{url}` is not a backend URL: {reason}")]
    BadUrl {
        what: &'static str,
        url: String,
        reason: String,
    },
    #[error("{path}:{line}: {reason}")]
    BadToken { path: String, line: usize, reason: String },
    #[error("{0}")]
    BadOption(String),
    #[error("{0}")]
    Client(String),
    #[error("no call reached the backend at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// p50 and p99 of the latency round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub calls: usize,
    pub answered: usize,
    pub concurrency: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// One case per check and per consequence; `ok()` is the exit status.
    pub summary: Summary,
    pub latency: Option<Latency>,
    /// Calls made.
    pub calls: usize,
}

/// Reads a `--tokens` file: one token per line (a trailing `\r` is dropped, blank lines are
/// skipped). A token longer than a server forwards is an error naming its line.
pub fn read_tokens(text: &str, path: &str) -> Result<Vec<String>, SetupError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let token = line.strip_suffix('\r').unwrap_or(line);
        if token.trim().is_empty() {
            continue;
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(SetupError::BadToken {
                path: path.to_string(),
                line: i + 1,
                reason: format!(
                    "a token of {} bytes; a server refuses tokens over {MAX_TOKEN_LEN} bytes without asking the backend",
                    token.len()
                ),
            });
        }
        out.push(token.to_string());
    }
    Ok(out)
}

fn check_url(what: &'static str, url: &str) -> Result<(), SetupError> {
    let bad = |reason: &str| SetupError::BadUrl {
        what,
        url: usher_server::redact::url(url),
        reason: reason.to_string(),
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    match parsed.scheme() {
        "http" => {}
        "https" => {
            return Err(bad(
                "only plain http:// is supported (the reference server's backend client has no TLS)",
            ));
        }
        other => return Err(bad(&format!("scheme `{other}`; a backend URL is http://"))),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(())
}

/// The sessions to run: each a `new_session` and the updates that follow while it is allowed.
fn plan(options: &Options, warnings: &mut Vec<String>) -> Vec<Vec<Probe>> {
    let viewer = Viewer::new(&options.stream);
    let mut tokens: Vec<(TokenSource, String)> = options
        .tokens
        .iter()
        .take(MAX_TOKENS)
        .enumerate()
        .map(|(i, t)| (TokenSource::Given(i + 1), t.clone()))
        .collect();
    if options.tokens.len() > MAX_TOKENS {
        warnings.push(format!(
            "--tokens has {} tokens; the first {MAX_TOKENS} were checked",
            options.tokens.len()
        ));
    }
    tokens.extend(
        hostile_tokens()
            .into_iter()
            .map(|(what, t)| (TokenSource::Hostile(what), t)),
    );
    let mut sessions = Vec::new();
    for (source, token) in &tokens {
        for proto in PLAY_PROTOS {
            let first = viewer.request(CallKind::Play, proto, token, viewer.ip);
            let mut session = vec![first.clone()];
            if proto == Proto::Hls {
                let mut last = first;
                for n in 1..=UPDATES {
                    last = update_of(&last, 10 * n);
                    session.push(last.clone());
                }
            }
            sessions.push(session_of(session, source, &options.play_url));
        }
        if matches!(source, TokenSource::Given(_)) {
            // Archive playback of the same stream (DVR-01): a session of its own.
            let mut dvr = viewer.request(CallKind::Play, Proto::Hls, token, viewer.ip);
            dvr.dvr = true;
            dvr.session_id = uuid_for_archive(&dvr);
            sessions.push(session_of(vec![dvr], source, &options.play_url));
        }
        if let Some(url) = &options.publish_url {
            for proto in PUBLISH_PROTOS {
                let first = viewer.request(CallKind::Publish, proto, token, viewer.ip);
                let update = update_of(&first, 10);
                sessions.push(session_of(vec![first, update], source, url));
            }
        }
    }
    sessions
}

fn uuid_for_archive(request: &usher_server::auth::BackendRequest) -> uuid::Uuid {
    let facts = usher_server::auth::identity::RequestFacts {
        name: &request.name,
        ip: request.ip,
        proto: request.proto,
        token: request.token.as_deref(),
        headers: &usher_server::auth::NO_HEADERS,
        query: &[],
    };
    usher_server::auth::Identity::compute(&usher_server::config::SessionKeys::default(), &facts)
        .for_archive(request.proto)
        .session_id()
}

fn session_of(requests: Vec<usher_server::auth::BackendRequest>, source: &TokenSource, url: &str) -> Vec<Probe> {
    requests
        .into_iter()
        .map(|request| Probe {
            token: source.clone(),
            url: url.to_string(),
            request,
            latency: false,
        })
        .collect()
}

/// The latency round: the first session's first call, `n` times, each from its own address
/// (so a backend's per-user bookkeeping does not see one viewer hammering).
fn latency_round(options: &Options, first: &Probe) -> Vec<Vec<Probe>> {
    let viewer = Viewer::new(&options.stream);
    let token = first.request.token.clone().unwrap_or_default();
    (0..options.latency_calls)
        .map(|i| {
            let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 101 + (i / 250) as u8, (i % 250) as u8 + 1));
            let request = viewer.request(CallKind::Play, first.request.proto, &token, ip);
            vec![Probe {
                token: first.token.clone(),
                url: first.url.clone(),
                request,
                latency: true,
            }]
        })
        .collect()
}

/// Shared by the calls of one run: what came back, and how many calls got no answer.
struct Log {
    started: tokio::time::Instant,
    exchanges: Mutex<Vec<Exchange>>,
    no_answer: AtomicUsize,
    /// A call waited out the whole budget.
    hung: AtomicBool,
    sender: Sender,
}

impl Log {
    fn tripped(&self) -> bool {
        self.hung.load(Ordering::SeqCst) || self.no_answer.load(Ordering::SeqCst) >= NO_ANSWER_LIMIT
    }

    /// Runs one session: the calls in order, the next only while the last was allowed (a
    /// server re-checks only a granted session), none once the backend stopped answering.
    async fn session(&self, probes: Vec<Probe>) {
        for probe in probes {
            if self.tripped() {
                return;
            }
            let offset = self.started.elapsed();
            let (reply, elapsed) = self.sender.send(&probe).await;
            match reply {
                probe::Reply::Answered { .. } => {}
                probe::Reply::Timeout => self.hung.store(true, Ordering::SeqCst),
                _ => {
                    self.no_answer.fetch_add(1, Ordering::SeqCst);
                }
            }
            let answer = answer_of(&reply);
            let allowed = matches!(answer, usher_server::auth::Answer::Allow(_));
            tracing::debug!(call = %probe.label(), elapsed_ms = elapsed.as_millis() as u64, allowed, "backend answered");
            self.exchanges
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(Exchange {
                    probe,
                    reply,
                    answer,
                    elapsed,
                    offset,
                });
            if !allowed {
                return;
            }
        }
    }

    async fn sessions(&self, sessions: Vec<Vec<Probe>>, concurrency: usize) {
        futures::stream::iter(sessions)
            .for_each_concurrent(concurrency, |s| self.session(s))
            .await;
    }
}

/// Runs the check. A setup error means nothing was sent.
pub async fn run(options: Options) -> Result<Outcome, SetupError> {
    check_url("the play backend", &options.play_url)?;
    if let Some(url) = &options.publish_url {
        check_url("the publish backend (--publish)", url)?;
    }
    if options.concurrency == 0 || options.concurrency > MAX_CONCURRENCY {
        return Err(SetupError::BadOption(format!(
            "--concurrency {} is out of range 1..={MAX_CONCURRENCY}",
            options.concurrency
        )));
    }
    if options.latency_calls > MAX_LATENCY_CALLS {
        return Err(SetupError::BadOption(format!(
            "--latency-calls {} is over {MAX_LATENCY_CALLS}",
            options.latency_calls
        )));
    }
    if options.stream.is_empty() || options.stream.len() > usher_server::auth::MAX_NAME_LEN {
        return Err(SetupError::BadOption(format!(
            "--stream must be 1 to {} bytes",
            usher_server::auth::MAX_NAME_LEN
        )));
    }
    let mut warnings = Vec::new();
    let sessions = plan(&options, &mut warnings);
    let log = Arc::new(Log {
        started: tokio::time::Instant::now(),
        exchanges: Mutex::new(Vec::new()),
        no_answer: AtomicUsize::new(0),
        hung: AtomicBool::new(false),
        sender: Sender::new(BACKEND_TIMEOUT).map_err(SetupError::Client)?,
    });
    let latency_first = sessions.first().and_then(|s| s.first()).cloned();
    let work = {
        let log = Arc::clone(&log);
        let options = options.clone();
        async move {
            // Sessions run a few at a time, never more at once than the latency round.
            log.sessions(sessions, options.concurrency).await;
            if let Some(first) = latency_first
                && !log.tripped()
            {
                log.sessions(latency_round(&options, &first), options.concurrency).await;
            }
        }
    };
    // At the deadline the calls in flight are dropped, which closes their connections.
    let timed_out = tokio::time::timeout(options.deadline, work).await.is_err();
    if timed_out {
        warnings.push(format!(
            "the run reached its limit of {} s; calls not made are not graded",
            options.deadline.as_secs()
        ));
    }
    if log.tripped() {
        warnings.push(STOPPED.to_string());
    }
    let mut exchanges = std::mem::take(&mut *log.exchanges.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    exchanges.sort_by_key(|e| e.offset);
    // Nothing answered and nothing hung: the URL is wrong or the backend is not running.
    if !exchanges.is_empty() && exchanges.iter().all(|e| matches!(e.reply, probe::Reply::Failed(_))) {
        let reason = match &exchanges[0].reply {
            probe::Reply::Failed(why) => why.clone(),
            _ => String::new(),
        };
        return Err(SetupError::Unreachable {
            url: usher_server::redact::url(&exchanges[0].probe.url),
            reason,
        });
    }
    let latency = grade::latency(&exchanges, options.concurrency);
    let elapsed = log.started.elapsed();
    let cases = grade::grade(&exchanges, &options, latency.as_ref(), log.tripped());
    let summary = Summary {
        target: format!("backend {}", usher_server::redact::url(&options.play_url)),
        capabilities: String::new(),
        dialect: String::new(),
        source: None,
        seed: 0,
        strict: options.strict,
        hold_choices: false,
        cases,
        elapsed,
        stray_backend_calls: Vec::new(),
        warnings,
        slow_left_out: 0,
        stopped_by_timeout: timed_out,
    };
    Ok(Outcome {
        summary,
        latency,
        calls: exchanges.len(),
    })
}
