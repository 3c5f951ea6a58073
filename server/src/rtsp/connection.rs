//! One RTSP control connection: its requests, its grant and, once playing, its media.
//!
//! A single task reads requests, answers them and writes the interleaved RTP of the session, so
//! responses and media never interleave mid-frame. The connection is the session's anchor
//! (SESS-07): the grant's [`ConnectionGuard`] lives in the state and drops with it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rtsp_types::{Method, Request, Response, StatusCode, Version, headers};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::Limits;
use super::framing::{Frame, Invalid, Reader, Step};
use super::rtp::{AacPacketizer, H264Packetizer, MAX_PACKET, rtp_timestamp};
use super::sdp::{self, TrackDescription, TrackKind};
use super::target::{Target, control_url};
use super::transport::{self, Requested};
use crate::auth::{CallKind, ConnectionGuard, PlayRequest, Proto, SessionHandle};
use crate::context::{Admitted, Context, Refusal};
use crate::media::{AccessUnit, AuFeed, Track};

/// The session timeout announced in `Session:` (RFC 2326 §12.37). retina refuses 0 and sends
/// its keepalives at half of it.
pub const SESSION_TIMEOUT_SECS: u64 = 60;

/// Methods this server answers (`Public`, RFC 2326 §12.28).
const PUBLIC: &str = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER";

/// Why a connection ended, sorted by whose doing it was (as RTMP's `Stop`); the log line that
/// closes the connection adds the peer, the stream and the session.
#[derive(Debug)]
pub(crate) enum Close {
    /// An end nobody is at fault for.
    Done(End),
    /// The client's fault: it broke the protocol, went quiet, or stopped reading.
    Client(ClientFault),
    /// The socket failed under both sides.
    Failed(std::io::Error),
}

/// How a connection ended without a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The client closed between frames (or reset after TEARDOWN, as players do).
    ClientGone,
    /// The server ended the session (recheck deny, kick, X-Unique, protocol off, API).
    /// Closed silently (BAN-03, RESP-02).
    SessionEnded,
    /// The media source ended.
    SourceEnded,
    /// The server is shutting down.
    Shutdown,
}

/// What the client did wrong.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientFault {
    /// The client closed in the middle of a frame.
    #[error("the client closed mid-request")]
    Truncated,
    /// Unframeable input; answered with 400/413 before closing.
    #[error("bad RTSP input: {0}")]
    Invalid(Invalid),
    /// No request within the first-request or idle timeout.
    #[error("no request within the {0} timeout")]
    Timeout(&'static str),
    /// A write did not complete within the write timeout: the client stopped reading.
    #[error("a write did not complete within {0:?}")]
    StoppedReading(Duration),
}

/// The protocol state of a connection.
///
/// ```text
///                DESCRIBE allowed (or SETUP on a stream URL)
///   ExpectDescribe ──────────────────────────► ExpectSetup ──PLAY (≥1 track)──► Playing
///        ▲     DESCRIBE refused: stays             │  SETUP adds tracks             │
///        └─────────────────── TEARDOWN: grant dropped, session closed ◄───────────┘
///   From any state: session ended by the server, shutdown, bad input or timeout ⇒ close.
/// ```
enum State {
    ExpectDescribe,
    ExpectSetup(Box<Bound>),
    Playing(Box<Bound>, Box<Playing>),
}

impl State {
    fn bound(&self) -> Option<&Bound> {
        match self {
            State::ExpectDescribe => None,
            State::ExpectSetup(b) | State::Playing(b, _) => Some(b),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            State::ExpectDescribe => "ExpectDescribe",
            State::ExpectSetup(_) => "ExpectSetup",
            State::Playing(..) => "Playing",
        }
    }
}

/// A grant bound to this connection: the admitted session, the guard that holds it open, and
/// what was described and set up.
struct Bound {
    admitted: Admitted,
    _guard: ConnectionGuard,
    /// The token the grant was given for, as the URL carried it (`None`: no token).
    url_token: Option<String>,
    aggregate: Url,
    tracks: Vec<TrackDescription>,
    setup: Vec<SetupTrack>,
}

struct SetupTrack {
    id: usize,
    kind: Track,
    control: Url,
    channels: (u8, u8),
    initial_timestamp: u32,
    clock_rate: u32,
    packetizer: Packetizer,
}

enum Packetizer {
    H264(H264Packetizer),
    Aac(AacPacketizer),
}

impl Packetizer {
    fn next_seq(&self) -> u16 {
        match self {
            Packetizer::H264(p) => p.next_seq(),
            Packetizer::Aac(p) => p.next_seq(),
        }
    }

    fn ssrc(&self) -> u32 {
        match self {
            Packetizer::H264(p) => p.ssrc(),
            Packetizer::Aac(p) => p.ssrc(),
        }
    }
}

struct Playing {
    feed: AuFeed,
    /// The media time (90 kHz) at NPT 0, i.e. at each track's `rtptime` of RTP-Info.
    base: Option<u64>,
    /// An access unit read before the PLAY answer went out.
    pending: Option<AccessUnit>,
}

pub(crate) struct Connection<S> {
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    ctx: Arc<Context>,
    limits: Limits,
    reader: Reader,
    /// Cancelled by server shutdown.
    stop: CancellationToken,
    state: State,
    /// The RTSP session id (RFC 2326 §12.37): one per connection, opaque to the auth core.
    session_id: String,
    /// When the read deadline was last pushed back by a whole frame.
    last_frame: Option<Instant>,
}

/// A response before serialisation.
struct Reply {
    status: StatusCode,
    reason: Option<String>,
    headers: Vec<(headers::HeaderName, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn new(status: StatusCode) -> Reply {
        Reply {
            status,
            reason: None,
            headers: Default::default(),
            body: Vec::new(),
        }
    }

    fn reason(mut self, reason: impl Into<String>) -> Reply {
        self.reason = Some(reason.into());
        self
    }

    fn header(mut self, name: headers::HeaderName, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, content_type: &str, body: Vec<u8>) -> Reply {
        self.headers.push((headers::CONTENT_TYPE, content_type.to_string()));
        self.body = body;
        self
    }

    fn encode(self, cseq: Option<&str>) -> Vec<u8> {
        let mut builder = Response::builder(Version::V1_0, self.status);
        if let Some(reason) = self.reason {
            builder = builder.reason_phrase(reason);
        }
        if let Some(cseq) = cseq {
            builder = builder.header(headers::CSEQ, cseq.to_string());
        }
        builder = builder.header(headers::SERVER, concat!("usher/", env!("CARGO_PKG_VERSION")));
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        let response = builder.build(self.body);
        let mut out = Vec::with_capacity(256);
        // Writing into a Vec cannot fail for lack of space; a header value that cannot be
        // written is our bug, and the client then gets no answer rather than a broken one.
        if let Err(e) = response.write(&mut out) {
            tracing::error!(error = %e, "cannot serialise an RTSP response");
            out.clear();
        }
        out
    }
}

fn header<'a>(request: &'a Request<Vec<u8>>, name: &str) -> Option<&'a str> {
    request
        .headers()
        .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The id part of a `Session:` header (`ID;timeout=N`).
fn session_header(request: &Request<Vec<u8>>) -> Option<&str> {
    header(request, "Session").map(|v| v.split(';').next().unwrap_or_default().trim())
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(crate) fn new(
        stream: S,
        peer: SocketAddr,
        local: SocketAddr,
        ctx: Arc<Context>,
        limits: Limits,
        stop: CancellationToken,
    ) -> Connection<S> {
        let reader = Reader::new(limits.max_head, limits.max_body);
        Connection {
            stream,
            peer,
            local,
            ctx,
            limits,
            reader,
            stop,
            state: State::ExpectDescribe,
            session_id: format!("{:016X}", rand::random::<u64>()),
            last_frame: None,
        }
    }

    /// Serves the connection until it ends; the state (and with it the grant) drops here.
    pub(crate) async fn run(mut self) {
        let close = self.serve().await;
        let bytes = self.state.bound().map(|b| b.admitted.session.bytes());
        let session = self.state.bound().map(|b| b.admitted.session.session_id());
        let stream = self.state.bound().map(|b| b.admitted.stream.name().to_string());
        match &close {
            Close::Client(fault @ ClientFault::Invalid(_)) => {
                tracing::warn!(peer = %self.peer, ?stream, ?session, error = %fault, "client fault; connection closed")
            }
            Close::Client(fault) => {
                tracing::info!(peer = %self.peer, ?stream, ?session, error = %fault, "client fault; connection closed")
            }
            Close::Failed(e) => {
                tracing::info!(peer = %self.peer, ?stream, ?session, error = %e, "RTSP connection failed")
            }
            Close::Done(End::SessionEnded) => {
                tracing::info!(peer = %self.peer, ?stream, ?session, "session ended by the server; connection closed")
            }
            Close::Done(end) => {
                tracing::debug!(peer = %self.peer, ?stream, ?session, ?bytes, reason = ?end, "RTSP connection closed")
            }
        }
        match close {
            // Let the 400/413 reach the client before the socket goes.
            Close::Client(ClientFault::Invalid(_)) => self.linger_close().await,
            _ => {
                let _ = tokio::time::timeout(Duration::from_millis(100), self.stream.shutdown()).await;
            }
        }
    }

    fn session(&self) -> Option<SessionHandle> {
        self.state.bound().map(|b| b.admitted.session.clone())
    }

    fn read_deadline(&self, accepted: Instant) -> Option<Instant> {
        match (&self.state, self.last_frame) {
            (State::Playing(..), _) => None,
            (_, None) => Some(accepted + self.limits.first_request_timeout),
            (_, Some(last)) => Some(last + self.limits.idle_timeout),
        }
    }

    async fn serve(&mut self) -> Close {
        let accepted = Instant::now();
        loop {
            loop {
                match self.reader.next() {
                    Ok(Step::NeedMore) => break,
                    Ok(Step::Frame(frame)) => {
                        self.last_frame = Some(Instant::now());
                        if let Err(close) = self.on_frame(frame).await {
                            return close;
                        }
                    }
                    Err(invalid) => {
                        let status = match invalid {
                            Invalid::BodyTooLarge { .. } => StatusCode::RequestMessageBodyTooLarge,
                            Invalid::Malformed(_) | Invalid::HeadTooLarge { .. } => StatusCode::BadRequest,
                        };
                        let reply = Reply::new(status).reason(invalid.to_string()).encode(None);
                        let _ = self.write(&reply).await;
                        return Close::Client(ClientFault::Invalid(invalid));
                    }
                }
            }
            let session = self.session();
            let deadline = self.read_deadline(accepted);
            let first = self.last_frame.is_none();
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Close::Done(End::Shutdown),
                _ = ended(session.as_ref()) => return Close::Done(End::SessionEnded),
                read = self.stream.read_buf(self.reader.buffer()) => match read {
                    Ok(0) if self.reader.is_mid_frame() => return Close::Client(ClientFault::Truncated),
                    Ok(0) => return Close::Done(End::ClientGone),
                    Ok(_) => {}
                    Err(e) => return io_close(e),
                },
                unit = next_unit(&mut self.state) => match unit {
                    Some(unit) => if let Err(close) = self.send_unit(unit).await {
                        return close;
                    },
                    None => return Close::Done(End::SourceEnded),
                },
                _ = sleep_until(deadline) => {
                    return Close::Client(ClientFault::Timeout(if first { "first-request" } else { "idle" }));
                }
            }
        }
    }

    async fn on_frame(&mut self, frame: Frame) -> Result<(), Close> {
        let request = match frame {
            Frame::Request(request) => request,
            Frame::Ignored(what) => {
                tracing::trace!(peer = %self.peer, ?what, "ignored client frame");
                return Ok(());
            }
        };
        let cseq = header(&request, "CSeq").map(str::to_string);
        tracing::debug!(peer = %self.peer, method = ?request.method(), ?cseq, state = self.state.name(), "RTSP request");
        let reply = if cseq.is_none() {
            // RFC 2326 §12.17: every request carries a CSeq.
            Reply::new(StatusCode::BadRequest).reason("Missing CSeq")
        } else if request.version() != Version::V1_0 {
            Reply::new(StatusCode::RTSPVersionNotSupported)
        } else {
            self.answer(&request).await?
        };
        let bytes = reply.encode(cseq.as_deref());
        self.write(&bytes).await
    }

    async fn answer(&mut self, request: &Request<Vec<u8>>) -> Result<Reply, Close> {
        Ok(match request.method() {
            Method::Options => Reply::new(StatusCode::Ok).header(headers::PUBLIC, PUBLIC),
            Method::Describe => self.describe(request).await?,
            Method::Setup => self.setup(request).await?,
            Method::Play => self.play(request).await?,
            Method::Teardown => self.teardown(request),
            Method::GetParameter => match self.check_session(request, false) {
                Ok(()) => self.with_session(Reply::new(StatusCode::Ok)),
                Err(reply) => reply,
            },
            _ => Reply::new(StatusCode::NotImplemented).header(headers::PUBLIC, PUBLIC),
        })
    }

    /// A request that names a session must name this connection's (RFC 2326 §12.37, 454).
    fn check_session(&self, request: &Request<Vec<u8>>, required: bool) -> Result<(), Reply> {
        match session_header(request) {
            Some(id) if id == self.session_id && self.state.bound().is_some() => Ok(()),
            Some(_) => Err(Reply::new(StatusCode::SessionNotFound)),
            None if required => Err(Reply::new(StatusCode::SessionNotFound)),
            None => Ok(()),
        }
    }

    fn with_session(&self, reply: Reply) -> Reply {
        if self.state.bound().is_some_and(|b| !b.setup.is_empty()) {
            reply.header(
                headers::SESSION,
                format!("{};timeout={SESSION_TIMEOUT_SECS}", self.session_id),
            )
        } else {
            reply
        }
    }

    /// DESCRIBE (RFC 2326 §10.2): the one place a connection asks the auth core. The grant
    /// is then bound to the connection; SETUP and PLAY use it without asking again.
    async fn describe(&mut self, request: &Request<Vec<u8>>) -> Result<Reply, Close> {
        let Some((url, target)) = request_target(request) else {
            return Ok(Reply::new(StatusCode::NotFound).reason("No stream in the URL"));
        };
        let token = self.ctx.token_from_query(&target.query);
        if let Some(bound) = self.state.bound() {
            if bound.admitted.stream.name() == target.name && bound.url_token == token {
                return Ok(self.sdp_reply(bound));
            }
            if matches!(self.state, State::Playing(..)) {
                return Ok(Reply::new(StatusCode::MethodNotValidInThisState));
            }
        }
        match self.authorize(request, &url, &target).await? {
            Ok(bound) => {
                let reply = self.sdp_reply(&bound);
                self.state = State::ExpectSetup(bound);
                Ok(reply)
            }
            Err(reply) => Ok(reply),
        }
    }

    fn sdp_reply(&self, bound: &Bound) -> Reply {
        let sdp = sdp::describe(
            bound.admitted.stream.name(),
            self.local.ip(),
            rand::random::<u32>().into(),
            &bound.aggregate,
            &bound.tracks,
        );
        Reply::new(StatusCode::Ok).body("application/sdp", sdp.into_bytes())
    }

    /// Asks the core through [`Context::admit_play`] and binds the grant; a refusal is the
    /// answer to send (404, 403, 503). Runs only while nothing is bound or playing.
    async fn authorize(
        &mut self,
        request: &Request<Vec<u8>>,
        url: &Url,
        target: &Target,
    ) -> Result<Result<Box<Bound>, Reply>, Close> {
        let play = self.play_request(request, url, target);
        let url_token = play.token.clone();
        let admitted = tokio::select! {
            _ = self.stop.cancelled() => return Err(Close::Done(End::Shutdown)),
            result = self.ctx.admission().admit_play(play) => result,
        };
        let admitted = match admitted {
            Ok(admitted) => admitted,
            Err(refusal) => {
                tracing::info!(peer = %self.peer, stream = %crate::redact::Name(&target.name), refusal = %refusal.describe(), "RTSP play refused");
                return Ok(Err(refusal_reply(&refusal)));
            }
        };
        // Drop any earlier grant first so that one connection never holds two sessions.
        self.state = State::ExpectDescribe;
        let guard = self.ctx.admission().attach(&admitted.session);
        let token_param = self.ctx.token_param();
        let token = admitted.session.token().to_string();
        let name = admitted.stream.name().to_string();
        let control = |track| control_url(url, &name, track, &target.query, &token_param, &token);
        let aggregate = control(None);
        let tracks = sdp::tracks(&admitted.media.codecs(), |n| control(Some(n)));
        if tracks.is_empty() {
            tracing::info!(peer = %self.peer, stream = %name, "no codec parameters yet; 503");
            return Ok(Err(
                Reply::new(StatusCode::ServiceUnavailable).reason("The stream has no media yet")
            ));
        }
        tracing::info!(peer = %self.peer, stream = %name, session_id = %admitted.session.session_id(), "RTSP play admitted");
        Ok(Ok(Box::new(Bound {
            admitted,
            _guard: guard,
            url_token,
            aggregate,
            tracks,
            setup: Vec::new(),
        })))
    }

    /// The auth core's view of an RTSP request (T1: `proto=rtsp`, the peer address, the
    /// URL's token and query, User-Agent, Referer if sent, the URL's authority as `host`).
    fn play_request(&self, request: &Request<Vec<u8>>, url: &Url, target: &Target) -> PlayRequest {
        PlayRequest {
            kind: CallKind::Play,
            name: target.name.clone(),
            proto: Proto::Rtsp,
            ip: self.peer.ip(),
            token: self.ctx.token_from_query(&target.query),
            qs: target.raw_query.clone(),
            query: target.query.clone(),
            // Kept as HTTP keeps them: a name or value HTTP could not carry is left out, and a
            // value outside visible ASCII counts as absent for a `header.*` session key.
            headers: request
                .headers()
                .filter_map(|(n, v)| {
                    let name = axum::http::HeaderName::from_bytes(n.as_str().as_bytes()).ok()?;
                    let value = axum::http::HeaderValue::from_str(v.as_str()).ok()?;
                    Some((name, value))
                })
                .collect(),
            // RTSP 1.0 has no Referer of its own; clients that send HTTP's (or RTSP 2.0's
            // `Referrer`) have it forwarded.
            referer: header(request, "Referer")
                .or_else(|| header(request, "Referrer"))
                .map(str::to_string),
            user_agent: header(request, "User-Agent").map(str::to_string),
            host: Target::host(url),
            dvr: false,
        }
    }

    /// SETUP (RFC 2326 §10.4) of one track over interleaved TCP.
    async fn setup(&mut self, request: &Request<Vec<u8>>) -> Result<Reply, Close> {
        let Some((url, target)) = request_target(request) else {
            return Ok(Reply::new(StatusCode::NotFound).reason("No stream in the URL"));
        };
        if let Err(reply) = self.check_session(request, false) {
            return Ok(reply);
        }
        if matches!(self.state, State::Playing(..)) {
            return Ok(Reply::new(StatusCode::MethodNotValidInThisState));
        }
        if matches!(self.state, State::ExpectDescribe) {
            // A client that skips DESCRIBE is authorized here, once, the same way.
            match self.authorize(request, &url, &target).await? {
                Ok(bound) => self.state = State::ExpectSetup(bound),
                Err(reply) => return Ok(reply),
            }
        }
        let State::ExpectSetup(bound) = &mut self.state else {
            return Ok(Reply::new(StatusCode::MethodNotValidInThisState));
        };
        if bound.admitted.stream.name() != target.name {
            return Ok(Reply::new(StatusCode::NotFound).reason("Not the stream described on this connection"));
        }
        let track = match target.track {
            Some(id) => bound.tracks.iter().find(|t| t.id == id),
            None if bound.tracks.len() == 1 => bound.tracks.first(),
            None => return Ok(Reply::new(StatusCode::AggregateOperationNotAllowed)),
        };
        let Some(track) = track.cloned() else {
            return Ok(Reply::new(StatusCode::NotFound).reason("No such track"));
        };
        let requested = match header(request, "Transport") {
            Some(value) => transport::requested(value),
            None => Requested::Interleaved(None),
        };
        let Requested::Interleaved(wanted) = requested else {
            return Ok(Reply::new(StatusCode::UnsupportedTransport)
                .reason("Only RTP/AVP/TCP interleaved is served")
                .header(headers::TRANSPORT, "RTP/AVP/TCP;unicast"));
        };
        let channels = match bound.setup.iter().position(|s| s.id == track.id) {
            Some(i) => bound.setup[i].channels,
            None => {
                let in_use = |c: u8| bound.setup.iter().any(|s| s.channels.0 == c || s.channels.1 == c);
                let pair = wanted.filter(|&(a, b)| !in_use(a) && !in_use(b)).or_else(|| {
                    (0..=127u8)
                        .map(|i| (2 * i, 2 * i + 1))
                        .find(|&(a, b)| !in_use(a) && !in_use(b))
                });
                let Some(pair) = pair else {
                    return Ok(Reply::new(StatusCode::UnsupportedTransport).reason("No free interleaved channel"));
                };
                bound.setup.push(setup_track(&track, pair));
                pair
            }
        };
        let ssrc = bound
            .setup
            .iter()
            .find(|s| s.id == track.id)
            .map(|s| s.packetizer.ssrc())
            .unwrap_or_default();
        Ok(Reply::new(StatusCode::Ok)
            .header(headers::TRANSPORT, transport::answer(channels, ssrc))
            .header(
                headers::SESSION,
                format!("{};timeout={SESSION_TIMEOUT_SECS}", self.session_id),
            ))
    }

    /// PLAY (RFC 2326 §10.5) of the whole presentation: subscribe to the source, wait a
    /// little for its first access unit so that `RTP-Info` can say which RTP time is NPT 0.
    async fn play(&mut self, request: &Request<Vec<u8>>) -> Result<Reply, Close> {
        if let Err(reply) = self.check_session(request, true) {
            return Ok(reply);
        }
        let bound = match std::mem::replace(&mut self.state, State::ExpectDescribe) {
            State::ExpectSetup(bound) if !bound.setup.is_empty() => bound,
            State::Playing(bound, playing) => {
                self.state = State::Playing(bound, playing);
                return Ok(self.play_reply());
            }
            other => {
                self.state = other;
                return Ok(Reply::new(StatusCode::MethodNotValidInThisState));
            }
        };
        let mut feed = bound.admitted.media.subscribe();
        let session = bound.admitted.session.clone();
        let first = tokio::select! {
            biased;
            _ = self.stop.cancelled() => return Err(Close::Done(End::Shutdown)),
            _ = session.ended() => return Err(Close::Done(End::SessionEnded)),
            unit = tokio::time::timeout(self.limits.first_media_timeout, feed.next()) => unit,
        };
        let (base, pending) = match first {
            Ok(Some(unit)) => (Some(unit.pts), Some(unit)),
            Ok(None) => {
                self.state = State::ExpectSetup(bound);
                return Ok(Reply::new(StatusCode::ServiceUnavailable).reason("The stream has ended"));
            }
            Err(_) => (None, None),
        };
        self.state = State::Playing(bound, Box::new(Playing { feed, base, pending }));
        Ok(self.play_reply())
    }

    fn play_reply(&self) -> Reply {
        let State::Playing(bound, playing) = &self.state else {
            return Reply::new(StatusCode::MethodNotValidInThisState);
        };
        let info: Vec<String> = bound
            .setup
            .iter()
            .map(|s| {
                let mut item = format!("url={};seq={}", s.control, s.packetizer.next_seq());
                if playing.base.is_some() {
                    item.push_str(&format!(";rtptime={}", s.initial_timestamp));
                }
                item
            })
            .collect();
        self.with_session(Reply::new(StatusCode::Ok))
            .header(headers::RANGE, "npt=now-")
            .header(headers::RTP_INFO, info.join(","))
    }

    /// TEARDOWN (RFC 2326 §10.7): the grant is dropped, which closes the session; the
    /// connection stays for further requests.
    fn teardown(&mut self, request: &Request<Vec<u8>>) -> Reply {
        if let Err(reply) = self.check_session(request, true) {
            return reply;
        }
        self.state = State::ExpectDescribe;
        Reply::new(StatusCode::Ok)
    }

    /// Packetizes one access unit for the track set up for it, if any, and writes it.
    async fn send_unit(&mut self, unit: AccessUnit) -> Result<(), Close> {
        let State::Playing(bound, playing) = &mut self.state else {
            return Ok(());
        };
        let base = *playing.base.get_or_insert(unit.pts);
        let Some(track) = bound.setup.iter_mut().find(|s| s.kind == unit.track) else {
            return Ok(());
        };
        // Signed on purpose: an audio frame may start just before the first picture.
        let since_base = unit.pts as i64 - base as i64;
        let timestamp = rtp_timestamp(since_base, track.clock_rate, track.initial_timestamp);
        let packets = match &mut track.packetizer {
            Packetizer::H264(p) => p.packetize(timestamp, &unit.data),
            Packetizer::Aac(p) => match p.packetize(timestamp, &unit.data) {
                Some(packets) => packets,
                None => {
                    tracing::debug!(peer = %self.peer, len = unit.data.len(), "AAC frame cannot be sent in AAC-hbr; skipped");
                    return Ok(());
                }
            },
        };
        let framed = interleave(track.channels.0, &packets);
        self.write(&framed).await
    }

    /// Writes to the client, giving up at the write timeout (a client that stops reading),
    /// on shutdown, and when the session ends (closed within a second, RESP-02).
    async fn write(&mut self, bytes: &[u8]) -> Result<(), Close> {
        let session = self.session();
        let result = tokio::select! {
            biased;
            _ = self.stop.cancelled() => return Err(Close::Done(End::Shutdown)),
            _ = ended(session.as_ref()) => return Err(Close::Done(End::SessionEnded)),
            r = tokio::time::timeout(self.limits.write_timeout, self.stream.write_all(bytes)) => r,
        };
        match result {
            Ok(Ok(())) => {
                if let Some(session) = session {
                    session.add_bytes(bytes.len() as u64);
                }
                Ok(())
            }
            Ok(Err(e)) => Err(io_close(e)),
            Err(_) => Err(Close::Client(ClientFault::StoppedReading(self.limits.write_timeout))),
        }
    }

    /// Half-closes, then reads and drops what the client still sends for a moment, so that
    /// the close does not turn into a reset that destroys the error answer in flight.
    async fn linger_close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(100), self.stream.shutdown()).await;
        let drain = async {
            let mut sink = [0u8; 4096];
            let mut total = 0usize;
            while total < 256 * 1024 {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
    }
}

/// The request URL and what it names.
fn request_target(request: &Request<Vec<u8>>) -> Option<(Url, Target)> {
    let url = request.request_uri()?.clone();
    let target = Target::parse(&url)?;
    Some((url, target))
}

fn setup_track(track: &TrackDescription, channels: (u8, u8)) -> SetupTrack {
    let (ssrc, seq, initial_timestamp) = (rand::random::<u32>(), rand::random::<u16>(), rand::random::<u32>());
    let pt = track.payload_type();
    let (kind, packetizer) = match &track.kind {
        TrackKind::H264(_) => (
            Track::Video,
            Packetizer::H264(H264Packetizer::new(pt, ssrc, seq, MAX_PACKET)),
        ),
        TrackKind::Aac(_) => (
            Track::Audio,
            Packetizer::Aac(AacPacketizer::new(pt, ssrc, seq, MAX_PACKET)),
        ),
    };
    SetupTrack {
        id: track.id,
        kind,
        control: track.control.clone(),
        channels,
        initial_timestamp,
        clock_rate: track.clock_rate(),
        packetizer,
    }
}

/// RFC 2326 §10.12: `$`, the channel, a 16-bit length, the packet; one buffer for one write.
fn interleave(channel: u8, packets: &[Bytes]) -> BytesMut {
    let mut out = BytesMut::with_capacity(packets.iter().map(|p| p.len() + 4).sum());
    for p in packets {
        out.put_u8(b'$');
        out.put_u8(channel);
        // Packets are at most MAX_PACKET bytes.
        out.put_u16(p.len() as u16);
        out.put_slice(p);
    }
    out
}

/// RTSP status for a refusal: 404 unknown stream, 403 denied, 503 no media. A backend 302
/// is a deny for RTSP (AMB-5 as decided: clients do not follow an RTSP redirect to a
/// backend-chosen location reliably, and a redirect must never admit), so it answers 403.
fn refusal_reply(refusal: &Refusal) -> Reply {
    let status = match refusal {
        Refusal::NotFound(_) => StatusCode::NotFound,
        Refusal::Denied(_) | Refusal::Redirect(_) => StatusCode::Forbidden,
        Refusal::Unavailable(_) => StatusCode::ServiceUnavailable,
    };
    Reply::new(status)
}

/// A reset or broken pipe is how many players leave (ffmpeg after TEARDOWN): not a failure.
fn io_close(e: std::io::Error) -> Close {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => Close::Done(End::ClientGone),
        _ => Close::Failed(e),
    }
}

async fn ended(session: Option<&SessionHandle>) {
    match session {
        Some(session) => session.ended().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The next access unit to send: one read ahead by PLAY, then the feed. Never resolves
/// unless playing. Cancel-safe: the feed is, and the pending unit is taken only when returned.
async fn next_unit(state: &mut State) -> Option<AccessUnit> {
    match state {
        State::Playing(_, playing) => match playing.pending.take() {
            Some(unit) => Some(unit),
            None => playing.feed.next().await,
        },
        _ => std::future::pending().await,
    }
}
