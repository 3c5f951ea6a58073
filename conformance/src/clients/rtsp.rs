//! RTSP player on retina: DESCRIBE, SETUP of every H.264 and AAC track over interleaved TCP,
//! PLAY, then depacketized frames. The session lives as long as the TCP connection, so a
//! server ending the session shows as the connection closing.
//!
//! **Client address.** retina connects by itself and takes no socket or local address. To
//! play from the profile's `local_ip` (127.0.0.2, … — identity includes the address, SESS-01)
//! the driver runs a one-connection relay: retina connects to a listener on loopback, and the
//! relay connects to the server from a socket bound to `local_ip` and copies bytes both ways.
//! The server sees `local_ip`; the URL it sees has the relay's authority, which only matters
//! to a server that checks its own host name in request URLs. Closes pass through in both
//! directions, so closure timing is the server's.
//!
//! **Outcomes.** A 401/403 answer is `Denied`, and so is a connection the server closes
//! instead of answering (a silent refusal, [`SILENT_CLOSE_STATUS`]); other statuses are
//! `Failed` with the status; `Playing` needs H.264 frames, and [`Seen`] says what arrived.
//!
//! **Headers.** retina sends `User-Agent` (the profile's); it cannot send `Referer`, so a
//! profile's referer is not sent over RTSP (RTSP 1.0 has no such header anyway).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures::StreamExt;
use retina::client::{
    InitialTimestampPolicy, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, Transport,
};
use retina::codec::{CodecItem, ParametersRef};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

pub use super::Closed;
use super::{Attempt, Outcome, SessionProgress, ViewerProfile, bound_socket, short};

/// The pseudo-status of a request the server answered by closing the connection: a silent
/// close is a refusal (BAN-03 closes RTSP sockets silently), reported as `Denied` like a 403.
pub const SILENT_CLOSE_STATUS: u16 = 403;

/// What the player saw of the media.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// The described streams as `media/encoding` (`video/h264`, `audio/mpeg4-generic`), in
    /// SDP order.
    pub described: Vec<String>,
    /// The streams set up and played, as above.
    pub played: Vec<String>,
    pub video_frames: u64,
    pub keyframes: u64,
    pub audio_frames: u64,
    /// Bytes of depacketized frames (video as AVC length-prefixed NAL units).
    pub frame_bytes: u64,
    /// Width and height from the H.264 parameters, once known.
    pub video_size: Option<(u32, u32)>,
    /// Time from the start of the attempt to the first video frame.
    pub first_video_frame: Option<Duration>,
}

#[derive(Debug, Clone, Default)]
struct Progress {
    seen: Seen,
    closed: Option<Closed>,
}

impl SessionProgress for Progress {
    fn closed(&self) -> Option<&Closed> {
        self.closed.as_ref()
    }
}

/// An RTSP client bound to one local address.
#[derive(Debug, Clone)]
pub struct RtspClient {
    base: Url,
    profile: ViewerProfile,
}

/// A playing RTSP session. Dropping it ends the session (retina sends TEARDOWN, then the
/// connection closes).
#[derive(Debug)]
pub struct RtspSession {
    opened: Instant,
    progress: watch::Receiver<Progress>,
    reader: JoinHandle<()>,
    relay: JoinHandle<()>,
}

impl Drop for RtspSession {
    fn drop(&mut self) {
        self.reader.abort();
        self.relay.abort();
    }
}

impl RtspClient {
    /// `base` is the server's RTSP address as a URL, e.g. `rtsp://127.0.0.1:8554/`.
    pub fn new(base: &Url, profile: ViewerProfile) -> RtspClient {
        RtspClient {
            base: base.clone(),
            profile,
        }
    }

    pub fn profile(&self) -> &ViewerProfile {
        &self.profile
    }

    /// Plays `rtsp://SERVER/NAME?QUERY` and waits until `min_frames` H.264 frames arrived
    /// (`Playing`), the server refused (`Denied` for 401/403, else `Failed` with the status)
    /// or closed, or the profile's request timeout passed. A playing session keeps reading in
    /// the background.
    pub async fn open(
        &self,
        stream: &str,
        query: &[(String, String)],
        min_frames: u64,
    ) -> (Attempt, Option<RtspSession>) {
        let opened = Instant::now();
        let mut trail = Vec::new();
        let timeout = self.profile.request_timeout;
        let started = tokio::time::timeout(timeout, self.start(stream, query, opened, &mut trail)).await;
        let (demuxed, relay, described, played) = match started {
            Ok(Ok(started)) => started,
            Ok(Err(outcome)) => return (attempt(outcome, opened, trail), None),
            Err(_) => {
                trail.push(format!("no PLAY within {timeout:?}"));
                let outcome = Outcome::Failed {
                    status: None,
                    reason: format!("no answer within {timeout:?}"),
                };
                return (attempt(outcome, opened, trail), None);
            }
        };
        let (tx, mut rx) = watch::channel(Progress {
            seen: Seen {
                described,
                played,
                ..Seen::default()
            },
            closed: None,
        });
        let reader = tokio::spawn(read_frames(demuxed, opened, tx));
        let session = RtspSession {
            opened,
            progress: rx.clone(),
            reader,
            relay,
        };
        super::wait_until(&mut rx, timeout.saturating_sub(opened.elapsed()), |p| {
            p.seen.video_frames >= min_frames
        })
        .await;
        let progress = rx.borrow().clone();
        let seen = &progress.seen;
        trail.push(format!(
            "received {} video frames ({} keyframes, size {:?}), {} audio frames, {} bytes",
            seen.video_frames, seen.keyframes, seen.video_size, seen.audio_frames, seen.frame_bytes
        ));
        let outcome = if seen.video_frames >= min_frames {
            Outcome::Playing
        } else {
            Outcome::Failed {
                status: Some(200),
                reason: match &progress.closed {
                    Some(c) => format!("closed after {} video frames: {}", seen.video_frames, c.reason),
                    None => format!(
                        "only {} of {min_frames} video frames within {timeout:?}",
                        seen.video_frames
                    ),
                },
            }
        };
        let playing = outcome == Outcome::Playing;
        (attempt(outcome, opened, trail), playing.then_some(session))
    }

    /// Connects (through the relay), DESCRIBEs, SETUPs and PLAYs.
    async fn start(
        &self,
        stream: &str,
        query: &[(String, String)],
        opened: Instant,
        trail: &mut Vec<String>,
    ) -> Result<(retina::client::Demuxed, JoinHandle<()>, Vec<String>, Vec<String>), Outcome> {
        let server = self.server_addr().await.map_err(|reason| {
            trail.push(reason.clone());
            Outcome::Failed { status: None, reason }
        })?;
        let (relay_addr, relay) = relay(self.profile.local_ip, server).await.map_err(|e| {
            let reason = format!("cannot connect to {server} from {}: {e}", self.profile.local_ip);
            trail.push(reason.clone());
            Outcome::Failed { status: None, reason }
        })?;
        trail.push(format!(
            "connected {} -> {server} (relay {relay_addr})",
            self.profile.local_ip
        ));
        let url = play_url(relay_addr, stream, query);
        let mut options = SessionOptions::default();
        if let Some(ua) = &self.profile.user_agent {
            options = options.user_agent(ua.clone());
        }
        let what = format!("DESCRIBE {}", short(&url));
        let mut session = check(&what, opened, trail, Session::describe(url, options).await)?;
        let described: Vec<String> = session.streams().iter().map(stream_label).collect();
        let wanted: Vec<usize> = session
            .streams()
            .iter()
            .enumerate()
            .filter(|(_, s)| is_playable(s))
            .map(|(i, _)| i)
            .collect();
        if !session
            .streams()
            .iter()
            .any(|s| s.media() == "video" && s.encoding_name() == "h264")
        {
            let reason = format!("the SDP describes no H.264 stream: {described:?}");
            trail.push(reason.clone());
            return Err(Outcome::Failed {
                status: Some(200),
                reason,
            });
        }
        let mut played = Vec::new();
        for i in wanted {
            let label = stream_label(&session.streams()[i]);
            let result = session
                .setup(
                    i,
                    SetupOptions::default().transport(Transport::Tcp(TcpTransportOptions::default())),
                )
                .await;
            check(&format!("SETUP {label}"), opened, trail, result)?;
            played.push(label);
        }
        // RTP-Info is used when the server gives it for every stream, not required.
        let playing = session
            .play(PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive))
            .await;
        let playing = check("PLAY", opened, trail, playing)?;
        let demuxed = playing.demuxed().map_err(|e| {
            let reason = format!("cannot demux: {}", first_line(&e.to_string()));
            trail.push(reason.clone());
            Outcome::Failed {
                status: Some(200),
                reason,
            }
        })?;
        Ok((demuxed, relay, described, played))
    }

    async fn server_addr(&self) -> Result<SocketAddr, String> {
        let host = self
            .base
            .host_str()
            .ok_or_else(|| format!("no host in {}", self.base))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = self.base.port().unwrap_or(554);
        let mut addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        addrs.next().ok_or_else(|| format!("{host} resolves to nothing"))
    }
}

/// `rtsp://ADDR/NAME?QUERY` with the name's segments and the query percent-encoded.
fn play_url(addr: SocketAddr, stream: &str, query: &[(String, String)]) -> Url {
    let mut url = Url::parse(&format!("rtsp://{addr}/")).expect("an address makes a URL");
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.clear();
        segments.extend(stream.trim_matches('/').split('/'));
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    url
}

/// Records one request's result in the trail; a refusal becomes its [`Outcome`].
fn check<T>(
    what: &str,
    opened: Instant,
    trail: &mut Vec<String>,
    result: Result<T, retina::Error>,
) -> Result<T, Outcome> {
    match result {
        Ok(value) => {
            trail.push(format!("{what} -> 200 ({} ms)", opened.elapsed().as_millis()));
            Ok(value)
        }
        Err(e) => match e.status_code() {
            Some(status) => {
                trail.push(format!("{what} -> {status} ({} ms)", opened.elapsed().as_millis()));
                Err(Outcome::from_status(status, None, what))
            }
            None if closed_by_peer(&e) => {
                trail.push(format!(
                    "{what} -> closed without an answer: {}",
                    first_line(&e.to_string())
                ));
                Err(Outcome::Denied {
                    status: SILENT_CLOSE_STATUS,
                })
            }
            None => {
                let reason = format!("{what}: {}", first_line(&e.to_string()));
                trail.push(reason.clone());
                Err(Outcome::Failed { status: None, reason })
            }
        },
    }
}

/// Whether retina failed because the server closed the connection while a request was
/// waiting for its answer. retina's error is opaque; its text is the only signal.
fn closed_by_peer(e: &retina::Error) -> bool {
    let text = e.to_string();
    text.contains("EOF while expecting response") || text.contains("Connection reset")
}

fn stream_label(s: &retina::client::Stream) -> String {
    format!("{}/{}", s.media(), s.encoding_name())
}

fn is_playable(s: &retina::client::Stream) -> bool {
    matches!(
        (s.media(), s.encoding_name()),
        ("video", "h264") | ("audio", "mpeg4-generic")
    )
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

fn attempt(outcome: Outcome, opened: Instant, trail: Vec<String>) -> Attempt {
    let attempt = Attempt {
        outcome,
        elapsed: opened.elapsed(),
        trail,
    };
    tracing::debug!(%attempt, "RTSP play");
    attempt
}

/// Connects to `server` from `local_ip` now, and relays the first connection made to the
/// returned loopback address to it.
async fn relay(local_ip: IpAddr, server: SocketAddr) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let upstream = bound_socket(local_ip)?.connect(server).await?;
    let _ = upstream.set_nodelay(true);
    let loopback = match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    let listener = TcpListener::bind(SocketAddr::new(loopback, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let accepted = tokio::time::timeout(Duration::from_secs(30), listener.accept()).await;
        drop(listener);
        if let Ok(Ok((client, _))) = accepted {
            pipe(client, upstream).await;
        }
    });
    Ok((addr, task))
}

async fn pipe(mut client: TcpStream, mut upstream: TcpStream) {
    let _ = client.set_nodelay(true);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::trace!(error = %e, "RTSP relay ended");
    }
}

async fn read_frames(mut demuxed: retina::client::Demuxed, opened: Instant, tx: watch::Sender<Progress>) {
    let reason = loop {
        match demuxed.next().await {
            Some(Ok(CodecItem::VideoFrame(frame))) => {
                let size = demuxed
                    .streams()
                    .get(frame.stream_id())
                    .and_then(|s| match s.parameters() {
                        Some(ParametersRef::Video(v)) => Some(v.pixel_dimensions()),
                        _ => None,
                    });
                let len = frame.data().len() as u64;
                let key = frame.is_random_access_point();
                tx.send_modify(|p| {
                    let seen = &mut p.seen;
                    seen.video_frames += 1;
                    seen.keyframes += u64::from(key);
                    seen.frame_bytes += len;
                    seen.video_size = size.or(seen.video_size);
                    seen.first_video_frame.get_or_insert_with(|| opened.elapsed());
                });
            }
            Some(Ok(CodecItem::AudioFrame(frame))) => {
                let len = frame.data().len() as u64;
                tx.send_modify(|p| {
                    p.seen.audio_frames += 1;
                    p.seen.frame_bytes += len;
                });
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("the session failed: {}", first_line(&e.to_string())),
            None => break "the server ended the session".to_string(),
        }
    };
    let closed = Closed {
        after: opened.elapsed(),
        reason,
    };
    tracing::debug!(?closed, "RTSP session closed");
    tx.send_modify(|p| p.closed = Some(closed));
}

impl RtspSession {
    pub fn opened(&self) -> Instant {
        self.opened
    }

    /// What has been received so far.
    pub fn seen(&self) -> Seen {
        self.progress.borrow().seen.clone()
    }

    /// How the session ended, if it did.
    pub fn closed(&self) -> Option<Closed> {
        super::closed(&self.progress)
    }

    /// Waits at most `within` for the server to end the session (the connection closing).
    pub async fn wait_closed(&mut self, within: Duration) -> Option<Closed> {
        super::wait_closed(&mut self.progress, within).await
    }

    /// Waits at most `within` for `more` video frames beyond the current count: proof the
    /// session is still delivering media.
    pub async fn wait_more(&mut self, more: u64, within: Duration) -> bool {
        super::wait_more(&mut self.progress, more, within, |p| p.seen.video_frames).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn play_urls_encode_names_and_queries() {
        let addr: SocketAddr = "127.0.0.1:8554".parse().unwrap();
        let url = play_url(addr, "live/cam 1", &[("token".into(), "a b&c".into())]);
        assert_eq!(url.as_str(), "rtsp://127.0.0.1:8554/live/cam%201?token=a+b%26c");
        assert_eq!(play_url(addr, "/s1", &[]).as_str(), "rtsp://127.0.0.1:8554/s1");
    }

    #[tokio::test]
    async fn the_relay_connects_from_the_chosen_address() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        let (relay_addr, _task) = relay("127.0.0.2".parse().unwrap(), server_addr).await.unwrap();
        let (mut upstream, peer) = server.accept().await.unwrap();
        assert_eq!(peer.ip(), "127.0.0.2".parse::<IpAddr>().unwrap());

        let mut client = TcpStream::connect(relay_addr).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        upstream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        drop(upstream);
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut rest))
            .await
            .expect("the server's close reaches the client")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn a_server_that_closes_instead_of_answering_denies() {
        use tokio::io::AsyncReadExt;

        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("rtsp://{}/", server.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = server.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
        });
        let client = RtspClient::new(&base, ViewerProfile::new("127.0.0.1".parse().unwrap()));
        let (attempt, session) = client.open("s1", &[], 1).await;
        assert_eq!(
            attempt.outcome,
            Outcome::Denied {
                status: SILENT_CLOSE_STATUS
            },
            "{attempt}"
        );
        assert!(session.is_none());
    }
}
