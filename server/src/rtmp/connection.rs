//! One RTMP connection: handshake, the command exchange, then playing or publishing until the
//! client leaves, the server ends the session, or the server shuts down.
//!
//! `rml_rtmp` is sans-IO: bytes go in, packets and events come out. Packets must reach the
//! client in the order the session serialized them (chunk header compression depends on it), so
//! each batch's packets are written before the events of that batch are acted on, and whatever
//! an event produces is written after them.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use rml_rtmp::chunk_io::Packet;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionError, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::inbound::{InboundCheck, Violation};
use super::names::{self, StreamRef};
use super::outbox::{self, Outbox};
use super::play::Player;
use super::publish::Ingest;
use super::{PUBLISH_IDLE_TIMEOUT, SETUP_TIMEOUT, WRITE_TIMEOUT};
use crate::auth::{CallKind, ConnectionGuard, DenyReason, PlayRequest, Proto, SessionHandle};
use crate::context::{Context, Refusal};
use crate::media::AccessUnit;
use crate::redact::{Name, OptUrl, Url};

/// Bytes read from the socket at a time by a publisher.
const READ_BUFFER: usize = 64 * 1024;
/// … and before it publishes or plays (the handshake's leftovers, `connect`, `createStream`).
const SMALL_READ_BUFFER: usize = 4 * 1024;
/// … and by a player, which only sends acknowledgements (16 bytes each) and the odd command:
/// a viewer holds this much, read in as many pieces as it takes.
const PLAYER_READ_BUFFER: usize = 256;
/// A player writes the units that are there at once together, up to about this many bytes.
const BATCH_BYTES: usize = 256 * 1024;

/// Why a connection failed, sorted by whose fault it was.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnError {
    /// The client's handshake bytes are not RTMP.
    #[error("invalid handshake: {0}")]
    Handshake(String),
    /// The client broke the chunk stream in a way refused before `rml_rtmp` sees it.
    #[error("protocol violation: {0}")]
    Violation(#[from] Violation),
    /// `rml_rtmp` could not make sense of the client's messages.
    #[error("invalid RTMP from the client: {0}")]
    Session(String),
    /// The client went away in the middle of a step.
    #[error("the client closed the connection during the {0}")]
    Truncated(&'static str),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// Ours: `rml_rtmp` panicked, or could not serialize what this server asked it to send.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How a connection ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    ClientClosed,
    /// The play or publish request was refused.
    Refused,
    /// The server ended the session: recheck deny, kick, X-Unique, override, API.
    SessionEnded,
    /// The client stopped playing (`closeStream`/`deleteStream`).
    PlayStopped,
    /// The publisher said it was done (`FCUnpublish`/`deleteStream`).
    PublishFinished,
    /// The stream's source ended.
    SourceEnded,
    Shutdown,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            End::ClientClosed => "the client closed the connection",
            End::Refused => "the request was refused",
            End::SessionEnded => "the server ended the session",
            End::PlayStopped => "the client stopped playing",
            End::PublishFinished => "the publisher finished",
            End::SourceEnded => "the stream's source ended",
            End::Shutdown => "the server is shutting down",
        })
    }
}

/// What stops a connection: a normal end, or a failure.
#[derive(Debug)]
pub(super) enum Stop {
    Done(End),
    Failed(ConnError),
}

impl<E: Into<ConnError>> From<E> for Stop {
    fn from(e: E) -> Stop {
        Stop::Failed(e.into())
    }
}

fn internal(e: ServerSessionError) -> Stop {
    Stop::Failed(ConnError::Internal(e.to_string()))
}

/// A connection waiting to be served.
pub(super) struct Handler {
    socket: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
}

impl Handler {
    pub fn new(socket: TcpStream, peer: SocketAddr, ctx: Arc<Context>, shutdown: CancellationToken) -> Handler {
        Handler {
            socket,
            peer,
            ctx,
            shutdown,
        }
    }

    /// Serves the connection to its end and logs how it ended; never fails.
    pub async fn run(self) {
        let peer = self.peer;
        let shutdown = self.shutdown.clone();
        let stop = tokio::select! {
            stop = self.serve() => stop,
            _ = shutdown.cancelled() => Stop::Done(End::Shutdown),
        };
        match stop {
            Stop::Done(end) => tracing::debug!(%peer, "RTMP connection closed: {end}"),
            Stop::Failed(e @ ConnError::Internal(_)) => tracing::error!(%peer, "RTMP connection closed: {e}"),
            Stop::Failed(e @ (ConnError::Io(_) | ConnError::Truncated(_))) => {
                tracing::debug!(%peer, "RTMP connection closed: {e}");
            }
            Stop::Failed(e) => tracing::info!(%peer, "RTMP connection closed: {e}"),
        }
    }

    async fn serve(self) -> Stop {
        match self.serve_inner().await {
            Ok(never) => match never {},
            Err(stop) => stop,
        }
    }

    async fn serve_inner(self) -> Result<std::convert::Infallible, Stop> {
        let (mut reader, mut writer) = self.socket.into_split();
        let setup_deadline = Instant::now() + SETUP_TIMEOUT;
        let leftover = Box::pin(handshake(&mut reader, &mut writer, setup_deadline)).await?;
        let mut config = ServerSessionConfig::new();
        // The size media is cut with (`outbox`); the session announces it to the client.
        config.chunk_size = outbox::CHUNK_SIZE as u32;
        let (session, initial) = ServerSession::new(config).map_err(internal)?;
        let mut conn = Conn {
            peer: self.peer,
            ctx: self.ctx,
            writer,
            session,
            inbound: InboundCheck::default(),
            out: Outbox::default(),
            phase: Phase::Setup,
            guard: None,
        };
        conn.queue_all(initial);
        conn.flush().await?;
        if !leftover.is_empty() {
            conn.input(&leftover).await?;
        }
        let mut buf = vec![0u8; SMALL_READ_BUFFER];
        loop {
            match conn.phase {
                Phase::Publishing(_) if buf.len() < READ_BUFFER => buf.resize(READ_BUFFER, 0),
                Phase::Playing(_) if buf.len() > PLAYER_READ_BUFFER => {
                    buf.truncate(PLAYER_READ_BUFFER);
                    buf.shrink_to_fit();
                }
                _ => {}
            }
            let ended = conn.session_handle();
            let read_deadline = match conn.phase {
                Phase::Setup => Some(setup_deadline),
                Phase::Publishing(_) => Some(Instant::now() + PUBLISH_IDLE_TIMEOUT),
                // A player only talks to acknowledge; silence is normal.
                Phase::Playing(_) => None,
            };
            tokio::select! {
                biased;
                _ = wait_ended(ended.as_ref()) => return Err(Stop::Done(End::SessionEnded)),
                read = read_some(&mut reader, &mut buf, read_deadline) => {
                    let n = read?;
                    if n == 0 {
                        return Err(match conn.phase {
                            Phase::Setup => Stop::Failed(ConnError::Truncated("command exchange")),
                            _ => Stop::Done(End::ClientClosed),
                        });
                    }
                    conn.input(&buf[..n]).await?;
                }
                unit = next_unit(&mut conn.phase) => conn.unit(unit).await?,
            }
        }
    }
}

/// What the connection is doing.
#[derive(Debug)]
enum Phase {
    /// Handshake done; waiting for `play` or `publish`.
    Setup,
    Playing(Box<Player>),
    Publishing(Box<Ingest>),
}

/// The connection after the handshake.
struct Conn {
    peer: SocketAddr,
    ctx: Arc<Context>,
    writer: OwnedWriteHalf,
    session: ServerSession,
    inbound: InboundCheck,
    /// Bytes waiting to be written, in order: `rml_rtmp`'s packets and this connection's media
    /// headers, and media chunks shared with the stream's other viewers.
    out: Outbox,
    phase: Phase,
    /// The admitted session, held for the life of the connection (SESS-07).
    guard: Option<ConnectionGuard>,
}

impl Conn {
    fn session_handle(&self) -> Option<SessionHandle> {
        self.guard.as_ref().map(|g| g.handle().clone())
    }

    /// Bytes from the client.
    async fn input(&mut self, data: &[u8]) -> Result<(), Stop> {
        self.inbound.check(data)?;
        if let (Phase::Publishing(_), Some(guard)) = (&self.phase, &self.guard) {
            guard.handle().add_bytes(data.len() as u64);
        }
        let session = &mut self.session;
        let results = std::panic::catch_unwind(AssertUnwindSafe(|| session.handle_input(data)))
            .map_err(|_| ConnError::Internal("rml_rtmp panicked on the client's input".into()))?
            .map_err(|e| ConnError::Session(e.to_string()))?;
        self.process(results).await
    }

    /// Writes a batch's packets, then acts on its events in order.
    async fn process(&mut self, results: Vec<ServerSessionResult>) -> Result<(), Stop> {
        let events = self.queue_all(results);
        self.flush().await?;
        for event in events {
            self.event(event).await?;
        }
        Ok(())
    }

    /// Queues the packets of `results` and returns its events.
    fn queue_all(&mut self, results: Vec<ServerSessionResult>) -> Vec<ServerSessionEvent> {
        let mut events = Vec::new();
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(packet) => self.queue(packet),
                ServerSessionResult::RaisedEvent(event) => events.push(event),
                ServerSessionResult::UnhandleableMessageReceived(payload) => {
                    tracing::debug!(type_id = payload.type_id, "ignored an RTMP message");
                }
            }
        }
        events
    }

    /// Queues the packets of an accept or reject (which raise no events) and writes them.
    async fn answer(&mut self, results: Vec<ServerSessionResult>) -> Result<(), Stop> {
        for event in self.queue_all(results) {
            tracing::debug!(event = %Event(&event), "unexpected RTMP event in an answer");
        }
        self.flush().await
    }

    async fn event(&mut self, event: ServerSessionEvent) -> Result<(), Stop> {
        match event {
            ServerSessionEvent::ConnectionRequested { request_id, app_name } => {
                let info = self.inbound.connect_info().cloned().unwrap_or_default();
                // The app, tcUrl and pageUrl may carry a query (the token) or user information:
                // logged redacted.
                tracing::debug!(app = %Url(&app_name), flash_ver = ?info.flash_ver, tc_url = %OptUrl(info.tc_url.as_deref()), page_url = %OptUrl(info.page_url.as_deref()), "RTMP connect");
                let results = self.session.accept_request(request_id).map_err(internal)?;
                self.answer(results).await
            }
            ServerSessionEvent::PlayStreamRequested {
                request_id,
                app_name,
                stream_key,
                stream_id,
                ..
            // Boxed, as publish and the handshake are: the admission's state is large and held
            // once per connection, so it lives on the heap while it runs instead of in every
            // connection's task for as long as it plays.
            } => Box::pin(self.play(request_id, &app_name, &stream_key, stream_id)).await,
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                app_name,
                stream_key,
                ..
            } => Box::pin(self.publish(request_id, &app_name, &stream_key)).await,
            ServerSessionEvent::PlayStreamFinished { .. } if matches!(self.phase, Phase::Playing(_)) => {
                Err(Stop::Done(End::PlayStopped))
            }
            ServerSessionEvent::PublishStreamFinished { .. } if matches!(self.phase, Phase::Publishing(_)) => {
                Err(Stop::Done(End::PublishFinished))
            }
            ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => {
                if let Phase::Publishing(ingest) = &mut self.phase {
                    ingest.video(&data, timestamp);
                }
                Ok(())
            }
            ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => {
                if let Phase::Publishing(ingest) = &mut self.phase {
                    ingest.audio(&data, timestamp);
                }
                Ok(())
            }
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. } => {
                // releaseStream, FCPublish, FCUnpublish, getStreamLength, _checkbw: clients do
                // not wait for answers to these.
                tracing::debug!(command = %command_name, "RTMP command ignored");
                Ok(())
            }
            other => {
                tracing::trace!(event = %Event(&other), "RTMP event");
                Ok(())
            }
        }
    }

    /// `play`: admit through the context, then start the media (T9, SESS-07).
    async fn play(&mut self, request_id: u32, app: &str, key: &str, stream_id: u32) -> Result<(), Stop> {
        const FAILED: &str = "NetStream.Play.Failed";
        if !matches!(self.phase, Phase::Setup) {
            return self
                .reject(request_id, FAILED, "one play or publish per connection")
                .await;
        }
        let Some(target) = names::resolve(app, key) else {
            tracing::info!(app = %Name(&Url(app).to_string()), key = %Name(&Url(key).to_string()), "RTMP play of an invalid stream name");
            self.reject(request_id, "NetStream.Play.StreamNotFound", "invalid stream name")
                .await?;
            return Err(Stop::Done(End::Refused));
        };
        let request = self.request(CallKind::Play, &target);
        match self.ctx.admission().admit_play(request).await {
            Err(refusal) => {
                tracing::info!(stream = %Name(&target.name), reason = %refusal.describe(), "RTMP play refused");
                let code = match refusal {
                    Refusal::NotFound(_) => "NetStream.Play.StreamNotFound",
                    _ => FAILED,
                };
                self.reject(request_id, code, &describe(&refusal)).await?;
                Err(Stop::Done(End::Refused))
            }
            Ok(admitted) => {
                self.guard = Some(self.ctx.admission().attach(&admitted.session));
                tracing::info!(stream = %target.name, session_id = %admitted.session.session_id(), "RTMP play admitted");
                let results = self.session.accept_request(request_id).map_err(internal)?;
                let results = results.into_iter().filter(|r| !is_script_data(r)).collect();
                for event in self.queue_all(results) {
                    tracing::debug!(event = %Event(&event), "unexpected RTMP event in an answer");
                }
                let mut player = Box::new(Player::new(admitted.media, stream_id));
                player.start(&mut self.out);
                self.phase = Phase::Playing(player);
                self.flush().await
            }
        }
    }

    /// `publish`: admit (stream password, `on_publish`) before any media is taken (PUB-01..04).
    async fn publish(&mut self, request_id: u32, app: &str, key: &str) -> Result<(), Stop> {
        const DENIED: &str = "NetStream.Publish.Denied";
        if !matches!(self.phase, Phase::Setup) {
            return self
                .reject(request_id, DENIED, "one play or publish per connection")
                .await;
        }
        let Some(target) = names::resolve(app, key) else {
            tracing::info!(app = %Name(&Url(app).to_string()), key = %Name(&Url(key).to_string()), "RTMP publish to an invalid stream name");
            self.reject(request_id, "NetStream.Publish.BadName", "invalid stream name")
                .await?;
            return Err(Stop::Done(End::Refused));
        };
        let password = target.param("password").map(str::to_string);
        let request = self.request(CallKind::Publish, &target);
        match self.ctx.admission().admit_publish(request, password.as_deref()).await {
            Err(refusal) => {
                tracing::info!(stream = %Name(&target.name), reason = %refusal.describe(), "RTMP publish refused");
                let code = match refusal {
                    Refusal::NotFound(_) | Refusal::Unavailable(_) => "NetStream.Publish.BadName",
                    _ => DENIED,
                };
                self.reject(request_id, code, &describe(&refusal)).await?;
                Err(Stop::Done(End::Refused))
            }
            Ok(admitted) => {
                self.guard = Some(self.ctx.admission().attach(&admitted.session));
                tracing::info!(stream = %target.name, session_id = %admitted.session.session_id(), "RTMP publisher admitted");
                let results = self.session.accept_request(request_id).map_err(internal)?;
                self.inbound.allow_media();
                self.phase = Phase::Publishing(Box::new(Ingest::new(target.name, admitted.publisher)));
                self.answer(results).await
            }
        }
    }

    /// The auth core's view of this client (T1): the peer address, the token from the stream
    /// key's query, `pageUrl` as referer, `flashVer` as user agent, `tcUrl`'s host.
    fn request(&self, kind: CallKind, target: &StreamRef) -> PlayRequest {
        let info = self.inbound.connect_info().cloned().unwrap_or_default();
        PlayRequest {
            kind,
            name: target.name.clone(),
            proto: Proto::Rtmp,
            ip: self.peer.ip(),
            token: self.ctx.token_from_query(&target.query),
            qs: target.qs.clone(),
            query: target.query.clone(),
            headers: Default::default(),
            referer: info.page_url.clone(),
            user_agent: info.flash_ver.clone(),
            host: info.host(),
            dvr: false,
        }
    }

    async fn reject(&mut self, request_id: u32, code: &str, description: &str) -> Result<(), Stop> {
        let results = self
            .session
            .reject_request(request_id, code, description)
            .map_err(internal)?;
        self.answer(results).await
    }

    /// One access unit from the feed, or the end of the source.
    async fn unit(&mut self, unit: Option<AccessUnit>) -> Result<(), Stop> {
        let Phase::Playing(player) = &mut self.phase else {
            return Ok(());
        };
        let Some(unit) = unit else {
            if let Ok(packet) = self.session.finish_playing(player.stream_id()) {
                self.queue(packet);
                let _ = self.flush().await;
            }
            return Err(Stop::Done(End::SourceEnded));
        };
        player.packets(unit, &mut self.out);
        // What else arrived while this viewer waited for its turn goes in the same write.
        while self.out.len() < BATCH_BYTES
            && let Some(unit) = player.unit_now()
        {
            player.packets(unit, &mut self.out);
        }
        self.flush().await
    }

    fn queue(&mut self, packet: Packet) {
        self.out.push_own(&packet.bytes);
    }

    /// Writes the queued packets. Gives up at once if the session is ended meanwhile, so a
    /// client that stopped reading cannot hold an ended session open.
    async fn flush(&mut self) -> Result<(), Stop> {
        if self.out.is_empty() {
            return Ok(());
        }
        let len = self.out.len();
        // Most writes go out at once: no timer is armed and no handle cloned for those.
        if !self.out.try_write(&self.writer)? {
            let ended = self.session_handle();
            tokio::select! {
                biased;
                _ = wait_ended(ended.as_ref()) => return Err(Stop::Done(End::SessionEnded)),
                written = tokio::time::timeout(WRITE_TIMEOUT, self.out.write_to(&mut self.writer)) => {
                    written.map_err(|_| ConnError::Timeout("writing to a client that does not read"))??;
                }
            }
        }
        if let (Phase::Playing(_), Some(guard)) = (&self.phase, &self.guard) {
            guard.handle().add_bytes(len as u64);
        }
        Ok(())
    }
}

/// Whether `result` is a script data message (`|RtmpSampleAccess`, `onStatus
/// NetStream.Data.Start`) from `rml_rtmp`'s play acceptance. It stamps them with its session
/// clock, and ffmpeg's FLV demuxer turns script data with a non-zero timestamp into bogus
/// streams (ffprobe then lists a `text` subtitle and an unknown data stream, which breaks
/// `ffmpeg -c copy` into MP4). Neither matters to any player, so they are not sent. `rml_rtmp`
/// puts data messages, and nothing else, on chunk stream 3; this server sends no other data
/// message (no onMetaData for the same reason), so dropping them cannot desynchronise the
/// chunk header compression of that stream.
fn is_script_data(result: &ServerSessionResult) -> bool {
    const DATA_CHUNK_STREAM: u8 = 3;
    matches!(result, ServerSessionResult::OutboundResponse(p) if p.bytes.first().is_some_and(|b| b & 0x3F == DATA_CHUNK_STREAM))
}

/// An RTMP event for the log: its kind, and the app and stream key (which may carry the token
/// or a password in their query) redacted; command arguments and media are left out.
struct Event<'a>(&'a ServerSessionEvent);

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ServerSessionEvent as E;
        let (kind, names) = match self.0 {
            E::ClientChunkSizeChanged { new_chunk_size } => {
                return write!(f, "ClientChunkSizeChanged({new_chunk_size})");
            }
            E::ConnectionRequested { app_name, .. } => ("ConnectionRequested", Some((app_name, None))),
            E::ReleaseStreamRequested {
                app_name, stream_key, ..
            } => ("ReleaseStreamRequested", Some((app_name, Some(stream_key)))),
            E::PublishStreamRequested {
                app_name, stream_key, ..
            } => ("PublishStreamRequested", Some((app_name, Some(stream_key)))),
            E::PublishStreamFinished { app_name, stream_key } => {
                ("PublishStreamFinished", Some((app_name, Some(stream_key))))
            }
            E::StreamMetadataChanged {
                app_name, stream_key, ..
            } => ("StreamMetadataChanged", Some((app_name, Some(stream_key)))),
            E::AudioDataReceived {
                app_name, stream_key, ..
            } => ("AudioDataReceived", Some((app_name, Some(stream_key)))),
            E::VideoDataReceived {
                app_name, stream_key, ..
            } => ("VideoDataReceived", Some((app_name, Some(stream_key)))),
            E::UnhandleableAmf0Command { command_name, .. } => {
                return write!(f, "UnhandleableAmf0Command({command_name})");
            }
            E::PlayStreamRequested {
                app_name, stream_key, ..
            } => ("PlayStreamRequested", Some((app_name, Some(stream_key)))),
            E::PlayStreamFinished { app_name, stream_key } => {
                ("PlayStreamFinished", Some((app_name, Some(stream_key))))
            }
            E::AcknowledgementReceived { bytes_received } => {
                return write!(f, "AcknowledgementReceived({bytes_received})");
            }
            E::PingResponseReceived { .. } => ("PingResponseReceived", None),
        };
        f.write_str(kind)?;
        match names {
            Some((app, Some(key))) => write!(f, "(app {}, key {})", Url(app), Url(key)),
            Some((app, None)) => write!(f, "(app {})", Url(app)),
            None => Ok(()),
        }
    }
}

/// The text a refused client gets: the context's reason, except that a redirect is reported as
/// the refusal it is over RTMP (AMB-5).
fn describe(refusal: &Refusal) -> String {
    match refusal {
        Refusal::Redirect(_) => format!(
            "{} (the backend redirected; RTMP has no redirect)",
            crate::context::deny_text(DenyReason::Backend)
        ),
        other => other.describe(),
    }
}

/// The server side of the handshake (RTMP 1.0 §5.2), within the setup deadline. Returns the
/// bytes the client sent after its C2.
async fn handshake(
    reader: &mut OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    deadline: Instant,
) -> Result<Vec<u8>, Stop> {
    let mut handshake = Handshake::new(PeerType::Server);
    let mut buf = [0u8; 4096];
    let mut received = 0usize;
    loop {
        let n = read_some(reader, &mut buf, Some(deadline)).await?;
        if n == 0 {
            return Err(ConnError::Handshake(format!(
                "the client closed the connection after {received} handshake bytes"
            ))
            .into());
        }
        received += n;
        let (response, done) = match handshake.process_bytes(&buf[..n]) {
            Err(e) => return Err(ConnError::Handshake(e.to_string()).into()),
            Ok(HandshakeProcessResult::InProgress { response_bytes }) => (response_bytes, None),
            Ok(HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            }) => (response_bytes, Some(remaining_bytes)),
        };
        if !response.is_empty() {
            tokio::time::timeout_at(deadline, writer.write_all(&response))
                .await
                .map_err(|_| ConnError::Timeout("in the handshake"))??;
        }
        if let Some(rest) = done {
            return Ok(rest);
        }
    }
}

/// One read, bounded by `deadline` when there is one.
async fn read_some(reader: &mut OwnedReadHalf, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize, ConnError> {
    match deadline {
        None => Ok(reader.read(buf).await?),
        Some(deadline) => match tokio::time::timeout_at(deadline, reader.read(buf)).await {
            Ok(read) => Ok(read?),
            Err(_) => Err(ConnError::Timeout("waiting for the client")),
        },
    }
}

async fn wait_ended(handle: Option<&SessionHandle>) {
    match handle {
        Some(handle) => handle.ended().await,
        None => std::future::pending().await,
    }
}

async fn next_unit(phase: &mut Phase) -> Option<AccessUnit> {
    match phase {
        Phase::Playing(player) => player.next_unit().await,
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::auth::admin::AdminTokens;
    use crate::auth::{AuthCore, AuthSettings, HttpBackend};

    /// Every connection's task holds its whole future for as long as it plays, so what only
    /// the handshake and the admission need (several KB of state) is boxed while it runs. A
    /// viewer's task was 7.5 KB before that; the bound leaves room for compiler changes.
    #[tokio::test]
    async fn a_connection_task_holds_no_admission_state() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        // The connection is never polled: the backend is never called.
        let core = AuthCore::new(
            Arc::new(HttpBackend::new().expect("an HTTP client")),
            AdminTokens::new("x", Duration::from_secs(1), false),
            AuthSettings::new(false, Duration::from_secs(30)),
        );
        let streams = Arc::new(crate::streams::Streams::new(Vec::new(), Vec::new()));
        let ctx = Arc::new(crate::context::Context::new(core, streams, "t".into()));
        let run = super::Handler::new(socket, addr, ctx, tokio_util::sync::CancellationToken::new()).run();
        let size = std::mem::size_of_val(&run);
        assert!(size <= 4096, "an RTMP connection's future is {size} bytes");
    }
}
