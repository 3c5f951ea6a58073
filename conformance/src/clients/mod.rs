//! Protocol drivers. Each one plays a stream the way a real player does and reduces what it saw
//! to an [`Outcome`], so steps and reports speak one language whatever the protocol.

pub mod hls;
pub mod rtmp;
pub mod rtsp;
pub mod tshttp;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpSocket;
use tokio::sync::watch;
use url::Url;

/// First byte of every MPEG-TS packet.
pub const TS_SYNC_BYTE: u8 = 0x47;

/// The normalised result of one attempt to play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Media arrived (a TS packet).
    Playing,
    /// The server refused with 401 or 403.
    Denied { status: u16 },
    /// The server sent the player elsewhere (3xx with `Location`).
    Redirected { location: String },
    /// Anything else: another HTTP status (`status`), a transport error, a timeout, bad media.
    Failed { status: Option<u16>, reason: String },
}

impl Outcome {
    /// The server answered and did not let the viewer play: a 4xx/5xx answer or a denial.
    /// Transport errors and timeouts are not refusals: the server did not decide anything.
    pub fn is_refused(&self) -> bool {
        match self {
            Outcome::Denied { .. } => true,
            Outcome::Failed { status, .. } => status.is_some_and(|s| s >= 400),
            _ => false,
        }
    }

    /// The status the server answered with, when it answered one (0 otherwise).
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Denied { status } => *status,
            Outcome::Failed { status, .. } => status.unwrap_or_default(),
            _ => 0,
        }
    }

    pub(crate) fn from_status(status: u16, location: Option<String>, context: &str) -> Outcome {
        match status {
            401 | 403 => Outcome::Denied { status },
            300..=399 => match location {
                Some(location) => Outcome::Redirected { location },
                None => Outcome::Failed {
                    status: Some(status),
                    reason: format!("{context}: {status} without a Location header"),
                },
            },
            _ => Outcome::Failed {
                status: Some(status),
                reason: format!("{context}: unexpected status {status}"),
            },
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Playing => f.write_str("playing"),
            Outcome::Denied { status } => write!(f, "denied ({status})"),
            Outcome::Redirected { location } => write!(f, "redirected to {location}"),
            Outcome::Failed {
                status: Some(s),
                reason,
            } => write!(f, "failed ({s}): {reason}"),
            Outcome::Failed { status: None, reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// One attempt: its outcome, how long it took, and the requests it made (for failure messages).
#[derive(Debug, Clone)]
pub struct Attempt {
    pub outcome: Outcome,
    pub elapsed: Duration,
    pub trail: Vec<String>,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} after {} ms", self.outcome, self.elapsed.as_millis())?;
        for line in &self.trail {
            write!(f, "\n    {line}")?;
        }
        Ok(())
    }
}

/// Who is playing: the local address the client binds, and the headers a player sends.
#[derive(Debug, Clone)]
pub struct ViewerProfile {
    pub local_ip: IpAddr,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    /// Timeout of each HTTP request (longer than the server's 3 s backend timeout).
    pub request_timeout: Duration,
}

impl ViewerProfile {
    pub fn new(local_ip: IpAddr) -> ViewerProfile {
        ViewerProfile {
            local_ip,
            referer: None,
            user_agent: Some(concat!("usher-check/", env!("CARGO_PKG_VERSION")).to_string()),
            request_timeout: Duration::from_secs(10),
        }
    }

    pub(crate) fn client(&self) -> Result<reqwest::Client, reqwest::Error> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(r) = &self.referer
            && let Ok(v) = reqwest::header::HeaderValue::from_str(r)
        {
            headers.insert(reqwest::header::REFERER, v);
        }
        if let Some(ua) = &self.user_agent
            && let Ok(v) = reqwest::header::HeaderValue::from_str(ua)
        {
            headers.insert(reqwest::header::USER_AGENT, v);
        }
        reqwest::Client::builder()
            .local_address(self.local_ip)
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.request_timeout)
            .build()
    }
}

/// `BASE/NAME/LEAF?query`, with each segment of the name and the query percent-encoded (a name
/// may hold `%`, `?`, `#` or spaces).
pub(crate) fn media_url(base: &Url, stream: &str, leaf: &str, query: &[(String, String)]) -> Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty();
        segments.extend(stream.trim_matches('/').split('/'));
        segments.push(leaf);
    }
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in query {
            pairs.append_pair(k, v);
        }
    }
    url
}

/// A request line for trails: path and query only.
pub(crate) fn short(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// A TCP socket bound to `local_ip` (any port), ready to connect: the viewer's address, which is
/// part of its identity (SESS-01).
pub(crate) fn bound_socket(local_ip: IpAddr) -> std::io::Result<TcpSocket> {
    let socket = match local_ip {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(local_ip, 0))?;
    Ok(socket)
}

/// How a running session (a TS download, an RTMP or RTSP connection) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Time from the start of the attempt (the first request) to the end of the media.
    pub after: Duration,
    pub reason: String,
}

/// What a session's background reader publishes on its watch channel: at least how it ended.
pub(crate) trait SessionProgress {
    fn closed(&self) -> Option<&Closed>;
}

/// How the session behind `progress` ended, if it did.
pub(crate) fn closed<P: SessionProgress>(progress: &watch::Receiver<P>) -> Option<Closed> {
    progress.borrow().closed().cloned()
}

/// Waits at most `within` for `reached` to hold or the session to end.
pub(crate) async fn wait_until<P: SessionProgress>(
    progress: &mut watch::Receiver<P>,
    within: Duration,
    mut reached: impl FnMut(&P) -> bool,
) {
    let _ = tokio::time::timeout(within, progress.wait_for(|p| reached(p) || p.closed().is_some())).await;
}

/// Waits at most `within` for the session to end; how it ended, if it did.
pub(crate) async fn wait_closed<P: SessionProgress>(
    progress: &mut watch::Receiver<P>,
    within: Duration,
) -> Option<Closed> {
    wait_until(progress, within, |_| false).await;
    closed(progress)
}

/// Waits at most `within` for `count` to grow by `more` beyond its current value (or the session
/// to end): whether it did, proof the session still delivers media.
pub(crate) async fn wait_more<P: SessionProgress>(
    progress: &mut watch::Receiver<P>,
    more: u64,
    within: Duration,
    count: impl Fn(&P) -> u64,
) -> bool {
    let target = count(&progress.borrow()) + more;
    wait_until(progress, within, |p| count(p) >= target).await;
    count(&progress.borrow()) >= target
}
