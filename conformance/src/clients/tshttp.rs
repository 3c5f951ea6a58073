//! HTTP MPEG-TS player: one long `GET NAME/mpegts?QUERY` whose body is the live stream. The
//! session lives as long as the connection: the server ends it by closing the response.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

pub use super::Closed;
use super::{Attempt, Outcome, SessionProgress, TS_SYNC_BYTE, ViewerProfile, media_url, short};

#[derive(Debug, Clone, Default)]
struct Progress {
    bytes: u64,
    bad_start: Option<u8>,
    closed: Option<Closed>,
}

impl SessionProgress for Progress {
    fn closed(&self) -> Option<&Closed> {
        self.closed.as_ref()
    }
}

/// An HTTP MPEG-TS client bound to one local address.
#[derive(Debug, Clone)]
pub struct TsClient {
    http: reqwest::Client,
    base: Url,
    profile: ViewerProfile,
}

/// A running TS download. Dropping it closes the connection.
#[derive(Debug)]
pub struct TsSession {
    opened: Instant,
    bytes: Arc<AtomicU64>,
    progress: watch::Receiver<Progress>,
    reader: JoinHandle<()>,
}

impl Drop for TsSession {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl TsClient {
    pub fn new(base: &Url, profile: ViewerProfile) -> Result<TsClient, reqwest::Error> {
        Ok(TsClient {
            http: profile.client()?,
            base: base.clone(),
            profile,
        })
    }

    /// Opens `NAME/mpegts?QUERY` and waits until `min_bytes` of TS arrived (`Playing`), the server
    /// refused or closed, or the profile's request timeout passed. A playing session keeps
    /// reading in the background.
    pub async fn open(&self, stream: &str, query: &[(String, String)], min_bytes: u64) -> (Attempt, Option<TsSession>) {
        let opened = Instant::now();
        let url = media_url(&self.base, stream, "mpegts", query);
        let mut trail = Vec::new();
        let timeout = self.profile.request_timeout;
        let response = match tokio::time::timeout(timeout, self.http.get(url.clone()).send()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                trail.push(format!("GET {} -> transport error: {e}", short(&url)));
                return (
                    attempt(
                        Outcome::Failed {
                            status: None,
                            reason: format!("transport error: {e}"),
                        },
                        opened,
                        trail,
                    ),
                    None,
                );
            }
            Err(_) => {
                trail.push(format!("GET {} -> no answer within {timeout:?}", short(&url)));
                return (
                    attempt(
                        Outcome::Failed {
                            status: None,
                            reason: format!("no answer within {timeout:?}"),
                        },
                        opened,
                        trail,
                    ),
                    None,
                );
            }
        };
        let status = response.status().as_u16();
        trail.push(format!(
            "GET {} -> {status} ({} ms)",
            short(&url),
            opened.elapsed().as_millis()
        ));
        if status != 200 {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return (
                attempt(Outcome::from_status(status, location, "mpegts"), opened, trail),
                None,
            );
        }

        let bytes = Arc::new(AtomicU64::new(0));
        let (tx, mut rx) = watch::channel(Progress::default());
        let reader = tokio::spawn(read_body(response, opened, bytes.clone(), tx));
        let session = TsSession {
            opened,
            bytes,
            progress: rx.clone(),
            reader,
        };
        super::wait_until(&mut rx, timeout.saturating_sub(opened.elapsed()), |p| {
            p.bytes >= min_bytes || p.bad_start.is_some()
        })
        .await;
        let progress = rx.borrow().clone();
        let outcome = match () {
            _ if progress.bad_start.is_some() => Outcome::Failed {
                status: Some(200),
                reason: format!(
                    "the body does not start with the TS sync byte 0x47 (first byte {:#04x})",
                    progress.bad_start.unwrap_or_default()
                ),
            },
            _ if progress.bytes >= min_bytes => Outcome::Playing,
            _ => match &progress.closed {
                Some(c) => Outcome::Failed {
                    status: Some(200),
                    reason: format!("closed after {} bytes: {}", progress.bytes, c.reason),
                },
                None => Outcome::Failed {
                    status: Some(200),
                    reason: format!("only {} of {min_bytes} bytes within {timeout:?}", progress.bytes),
                },
            },
        };
        trail.push(format!("received {} bytes", progress.bytes));
        let playing = outcome == Outcome::Playing;
        (attempt(outcome, opened, trail), playing.then_some(session))
    }
}

fn attempt(outcome: Outcome, opened: Instant, trail: Vec<String>) -> Attempt {
    Attempt {
        outcome,
        elapsed: opened.elapsed(),
        trail,
    }
}

async fn read_body(
    mut response: reqwest::Response,
    opened: Instant,
    bytes: Arc<AtomicU64>,
    tx: watch::Sender<Progress>,
) {
    let mut first = true;
    let reason = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if chunk.is_empty() {
                    continue;
                }
                if first {
                    first = false;
                    if chunk[0] != TS_SYNC_BYTE {
                        let b = chunk[0];
                        tx.send_modify(|p| p.bad_start = Some(b));
                    }
                }
                let total = bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
                tx.send_modify(|p| p.bytes = total);
            }
            Ok(None) => break "the server ended the response".to_string(),
            Err(e) => break format!("the connection failed: {e}"),
        }
    };
    let closed = Closed {
        after: opened.elapsed(),
        reason,
    };
    tracing::debug!(?closed, "MPEG-TS session closed");
    tx.send_modify(|p| p.closed = Some(closed));
}

impl TsSession {
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn opened(&self) -> Instant {
        self.opened
    }

    /// How the session ended, if it did.
    pub fn closed(&self) -> Option<Closed> {
        super::closed(&self.progress)
    }

    /// Waits at most `within` for the server to end the session.
    pub async fn wait_closed(&mut self, within: Duration) -> Option<Closed> {
        super::wait_closed(&mut self.progress, within).await
    }

    /// Waits at most `within` for `more` bytes beyond the current count: proof the session is
    /// still delivering media.
    pub async fn wait_more(&mut self, more: u64, within: Duration) -> bool {
        let target = self.bytes() + more;
        super::wait_until(&mut self.progress, within, |p| p.bytes >= target).await;
        self.bytes() >= target
    }
}
