//! What `usher backend-check` sends, and how: the calls a conforming server makes (tables T1,
//! T2), built with the reference server's own [`BackendRequest`] and sent by its own HTTP
//! backend client, under the server's 3 s budget and answer-size limits.
//!
//! The answer is kept raw (status, headers, body) because the grading looks at more than the
//! server keeps (a header the server ignores is a finding), and it is also read with the
//! server's own [`interpret`], so "what the server does with it" is the server's code, not a
//! second reading.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use usher_server::auth::backend::{BACKEND_TIMEOUT, FetchError, HttpBackend, RawAnswer, encode_pairs, interpret};
use usher_server::auth::identity::RequestFacts;
use usher_server::auth::{Answer, BackendRequest, CallKind, Identity, Proto, RequestType};
use usher_server::config::SessionKeys;

/// Where a probe's token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Line `n` (1-based, counting only tokens) of `--tokens`: the backend should allow it.
    Given(usize),
    /// Generated to test the backend's handling of awkward input; no site issued it.
    Hostile(&'static str),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Given(n) => write!(f, "token #{n} of --tokens"),
            TokenSource::Hostile(what) => write!(f, "generated token ({what})"),
        }
    }
}

/// The generated tokens: each is something a player can send and a conforming server forwards
/// percent-encoded as one value (REQ-02). The long one is as long as the reference server
/// forwards ([`usher_server::auth::MAX_TOKEN_LEN`]).
pub fn hostile_tokens() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("4096 characters", "x".repeat(usher_server::auth::MAX_TOKEN_LEN)),
        ("with `&user_id=1`", "abc&user_id=1".to_string()),
        ("with `%`", "100%25%zz".to_string()),
        ("with `+` and a space", "a+b c".to_string()),
        ("with `#`", "abc#frag".to_string()),
        ("non-ASCII", "токен-ü-東京".to_string()),
    ]
}

/// One call to make.
#[derive(Debug, Clone)]
pub struct Probe {
    pub token: TokenSource,
    /// The backend URL as configured (`on_play` or `on_publish`).
    pub url: String,
    pub request: BackendRequest,
    /// Part of the latency round (the same request many times), not of the contract sequences.
    pub latency: bool,
}

impl Probe {
    pub fn method(&self) -> &'static str {
        match self.request.kind {
            CallKind::Play => "GET",
            CallKind::Publish => "POST",
        }
    }

    /// `hls new_session #1, token #2 of --tokens`
    pub fn label(&self) -> String {
        let kind = match self.request.kind {
            CallKind::Play => "play",
            CallKind::Publish => "publish",
        };
        let dvr = if self.request.dvr { " dvr" } else { "" };
        format!(
            "{kind} {}{dvr} {} #{}, {}",
            self.request.proto,
            self.request.request_type.as_str(),
            self.request.request_number,
            self.token
        )
    }

    /// The query as a report may show it: the token (and the client query that carries it)
    /// replaced by where it came from, so a report never holds a site's token.
    pub fn shown_query(&self) -> Vec<(String, String)> {
        let shown = format!("<{}>", self.token);
        self.request
            .fields()
            .into_iter()
            .map(|(k, v)| match k.as_str() {
                "token" => (k, shown.clone()),
                "qs" => (k, format!("token={shown}")),
                _ => (k, v),
            })
            .collect()
    }
}

/// The facts every probe shares: the stream, the viewer's address and headers.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub stream: String,
    pub ip: IpAddr,
    pub user_agent: String,
    pub referer: String,
    pub host: String,
}

impl Viewer {
    pub fn new(stream: &str) -> Viewer {
        Viewer {
            stream: stream.to_string(),
            // TEST-NET-2: an address no real viewer has.
            ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            user_agent: concat!("usher-backend-check/", env!("CARGO_PKG_VERSION")).to_string(),
            referer: "https://www.example.com/player.html".to_string(),
            host: "media.example.com".to_string(),
        }
    }

    /// The call a conforming server makes for this viewer: `session_id` is derived from the
    /// identity with the server's default session keys (name, ip, proto, token), as the
    /// reference server does.
    pub fn request(&self, kind: CallKind, proto: Proto, token: &str, ip: IpAddr) -> BackendRequest {
        let facts = RequestFacts {
            name: &self.stream,
            ip,
            proto,
            token: Some(token),
            headers: &usher_server::auth::NO_HEADERS,
            query: &[],
        };
        let identity = Identity::compute(&SessionKeys::default(), &facts);
        BackendRequest {
            kind,
            name: self.stream.clone(),
            proto,
            ip,
            request_type: RequestType::NewSession,
            request_number: 1,
            session_id: identity.session_id(),
            stream_clients: 0,
            total_clients: 0,
            token: Some(token.to_string()),
            duration: None,
            bytes: None,
            qs: Some(encode_pairs(&[("token".to_string(), token.to_string())])),
            dvr: false,
            user_agent: Some(self.user_agent.clone()),
            referer: (kind == CallKind::Play).then(|| self.referer.clone()),
            host: Some(self.host.clone()),
            extra: BTreeMap::new(),
            sign_key: None,
        }
    }
}

/// The `update_session` that follows `previous` after `elapsed` seconds: the same session id,
/// the next request number, the session's duration and bytes so far (REQ-01, AMB-12).
pub fn update_of(previous: &BackendRequest, elapsed: u64) -> BackendRequest {
    BackendRequest {
        request_type: RequestType::UpdateSession,
        request_number: previous.request_number + 1,
        duration: Some(elapsed),
        // About 2 Mbit/s of video.
        bytes: Some(elapsed * 250_000),
        stream_clients: previous.stream_clients.max(1),
        total_clients: previous.total_clients.max(1),
        ..previous.clone()
    }
}

/// What came back for one call.
#[derive(Debug, Clone)]
pub enum Reply {
    Answered {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The answer was over the server's limits: the server reads it as "no decision".
    TooLarge(String),
    /// No whole answer within the budget.
    Timeout,
    /// Connection refused, reset, a malformed answer.
    Failed(String),
}

/// One call and its answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub probe: Probe,
    pub reply: Reply,
    /// What the reference server makes of the answer ([`interpret`]; a timeout or a transport
    /// failure is "no decision" as in the server's driver).
    pub answer: Answer,
    /// From sending the request to the end of the body (or the budget).
    pub elapsed: Duration,
    /// When the call was sent, from the start of the run.
    pub offset: Duration,
}

impl Exchange {
    pub fn header(&self, name: &str) -> Option<&str> {
        match &self.reply {
            Reply::Answered { headers, .. } => headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim()),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.reply {
            Reply::Answered { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn body(&self) -> &[u8] {
        match &self.reply {
            Reply::Answered { body, .. } => body,
            _ => &[],
        }
    }

    pub fn allowed(&self) -> bool {
        matches!(self.answer, Answer::Allow(_))
    }

    /// `200 X-AuthDuration: 60, X-UserId: …` or `timeout after 3 s`: for reports.
    pub fn answered(&self) -> String {
        match &self.reply {
            Reply::Answered { status, headers, body } => {
                let mut shown: Vec<String> = headers
                    .iter()
                    .filter(|(k, _)| {
                        let k = k.to_ascii_lowercase();
                        k.starts_with("x-") || k == "location" || k == "content-type"
                    })
                    .map(|(k, v)| {
                        let v = if k.eq_ignore_ascii_case("location") {
                            usher_server::redact::url(v)
                        } else {
                            short(v, 60)
                        };
                        format!("{k}: {v}")
                    })
                    .collect();
                if !body.is_empty() {
                    shown.push(format!("body {} bytes", body.len()));
                }
                format!("{status} {}", shown.join(", ")).trim_end().to_string()
            }
            Reply::TooLarge(what) => format!("no decision: {what}"),
            Reply::Timeout => format!("no answer within {} s", BACKEND_TIMEOUT.as_secs()),
            Reply::Failed(why) => format!("no decision: {why}"),
        }
    }
}

/// `text` cut to `max` characters, with `…`.
pub fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push('…');
        s
    }
}

/// Sends probes as a conforming server does: with the reference server's own HTTP backend
/// client ([`HttpBackend::fetch`]: the same URL joining, query, publish body and answer limits),
/// under the same budget.
#[derive(Debug, Clone)]
pub struct Sender {
    client: HttpBackend,
    budget: Duration,
}

impl Sender {
    pub fn new(budget: Duration) -> Result<Sender, String> {
        let client = HttpBackend::new().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Sender { client, budget })
    }

    /// Makes one call. Dropping it at the end of the budget closes the connection.
    pub async fn send(&self, probe: &Probe) -> (Reply, Duration) {
        let started = tokio::time::Instant::now();
        let reply = match tokio::time::timeout(self.budget, self.client.fetch(&probe.url, &probe.request)).await {
            Ok(Ok(RawAnswer { status, headers, body })) => Reply::Answered { status, headers, body },
            Ok(Err(FetchError::TooLarge(what))) => Reply::TooLarge(what),
            Ok(Err(FetchError::Transport(why))) => Reply::Failed(why),
            Err(_) => Reply::Timeout,
        };
        (reply, started.elapsed())
    }
}

/// What the reference server makes of a reply.
pub fn answer_of(reply: &Reply) -> Answer {
    match reply {
        Reply::Answered { status, headers, body } => interpret(*status, headers, body),
        Reply::TooLarge(what) => Answer::NoDecision { reason: what.clone() },
        Reply::Timeout => Answer::NoDecision {
            reason: "timeout".into(),
        },
        Reply::Failed(why) => Answer::NoDecision { reason: why.clone() },
    }
}
