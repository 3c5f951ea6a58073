//! RTMP player (and a minimal publisher) on `rml_rtmp`'s `ClientSession`, the way a Flash-era
//! player talks: handshake, `connect` to the app, `createStream`, `play` with the stream key that
//! carries the query (`NAME?token=T`, T9). The connection is the session (SESS-07): a server ends
//! it by closing the socket, with or without a status message first.
//!
//! RTMP has no status codes. A refusal — an `_error` answer, an `onStatus` failure code, a
//! rejected `connect`, or a socket closed after the request and before any video — is reported
//! as [`Outcome::Denied`] with status 403, the HTTP equivalent of RESP-02's deny, and the server's
//! description goes into the attempt's trail. Transport errors and timeouts are
//! [`Outcome::Failed`]: the server did not decide anything.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use super::Closed;
use super::{Attempt, Outcome, SessionProgress, ViewerProfile, bound_socket};

/// The pseudo-status of an RTMP refusal (see the module documentation).
pub const REFUSED_STATUS: u16 = 403;

/// A play or publish request was made: a close without a status now is the server's answer
/// to it, a refusal, not a broken connection.
fn close_after_request_is_refusal(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Failed { status: None, reason } if reason.contains("closed") => {
            Outcome::Denied { status: REFUSED_STATUS }
        }
        other => other,
    }
}
/// The app that carries no part of the stream name (T9).
pub const STATIC_APP: &str = "static";

/// What a player has received so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub video_messages: u64,
    pub audio_messages: u64,
    /// Video messages that are AVC keyframes (frame type 1, NALU packets).
    pub keyframes: u64,
    pub avc_sequence_header: bool,
    pub aac_sequence_header: bool,
    pub metadata: bool,
    /// `NetStream.Play.Start` arrived.
    pub play_started: bool,
    /// Bytes of the chunk stream received after the handshake.
    pub bytes: u64,
    /// RTMP timestamp (ms) of the first and last video message.
    pub first_video_ms: Option<u32>,
    pub last_video_ms: Option<u32>,
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

/// Connects to one RTMP server from one local address.
#[derive(Debug, Clone)]
pub struct RtmpClient {
    server: SocketAddr,
    profile: ViewerProfile,
}

impl RtmpClient {
    /// `profile.local_ip` is the address bound; `profile.user_agent` goes out as `flashVer`;
    /// `profile.request_timeout` bounds each step (connect, handshake, each answer, first video).
    pub fn new(server: SocketAddr, profile: ViewerProfile) -> RtmpClient {
        RtmpClient { server, profile }
    }

    pub fn profile(&self) -> &ViewerProfile {
        &self.profile
    }

    /// Plays `rtmp://SERVER/static/STREAM?QUERY`: `Playing` once one video message arrived. A
    /// playing connection keeps reading in the background.
    pub async fn play(&self, stream: &str, query: &[(String, String)]) -> (Attempt, Option<RtmpPlayer>) {
        self.play_key(STATIC_APP, &stream_key(stream, query)).await
    }

    /// Plays `stream_key` (a name with its `?query`) on `app`, as `rtmp://SERVER/APP/KEY`.
    pub async fn play_key(&self, app: &str, stream_key: &str) -> (Attempt, Option<RtmpPlayer>) {
        let started = Instant::now();
        let mut trail = Vec::new();
        let (outcome, player) = match self.play_inner(app, stream_key, started, &mut trail).await {
            Ok(player) => {
                let seen = player.seen();
                trail.push(format!(
                    "playing: {} video / {} audio messages, AVC header {}, AAC header {}, metadata {}",
                    seen.video_messages,
                    seen.audio_messages,
                    seen.avc_sequence_header,
                    seen.aac_sequence_header,
                    seen.metadata
                ));
                (Outcome::Playing, Some(player))
            }
            Err(outcome) => (outcome, None),
        };
        let attempt = Attempt {
            outcome,
            elapsed: started.elapsed(),
            trail,
        };
        tracing::debug!(ip = %self.profile.local_ip, app, stream_key, %attempt, "RTMP play");
        (attempt, player)
    }

    /// Publishes to `stream_key` on `app`: `Playing` means the server accepted the publish
    /// (`NetStream.Publish.Start`); media is then sent with [`RtmpPublisher`].
    pub async fn publish_key(&self, app: &str, stream_key: &str) -> (Attempt, Option<RtmpPublisher>) {
        let started = Instant::now();
        let mut trail = Vec::new();
        let result = async {
            let mut wire = self.connect(app, &mut trail).await?;
            let request = wire.call(|s| s.request_publishing(stream_key.to_string(), PublishRequestType::Live));
            wire.send(request, &mut trail).await?;
            trail.push(format!("publish {stream_key}"));
            wire.until(&mut trail, "the publish answer", |event, _| match event {
                ClientSessionEvent::PublishRequestAccepted => Some(Ok(())),
                other => refusal(&other).map(Err),
            })
            .await
            // nginx-rtmp closes a publisher its on_publish refused without a status.
            .map_err(close_after_request_is_refusal)?;
            Ok::<_, Outcome>(wire)
        }
        .await;
        let (outcome, publisher) = match result {
            Ok(wire) => (Outcome::Playing, Some(RtmpPublisher { wire })),
            Err(outcome) => (outcome, None),
        };
        let attempt = Attempt {
            outcome,
            elapsed: started.elapsed(),
            trail,
        };
        tracing::debug!(ip = %self.profile.local_ip, app, stream_key, %attempt, "RTMP publish");
        (attempt, publisher)
    }

    async fn play_inner(
        &self,
        app: &str,
        stream_key: &str,
        started: Instant,
        trail: &mut Vec<String>,
    ) -> Result<RtmpPlayer, Outcome> {
        let mut wire = self.connect(app, trail).await?;
        let request = wire.call(|s| s.request_playback(stream_key.to_string()));
        wire.send(request, trail).await?;
        trail.push(format!("play {stream_key}"));
        let mut progress = Progress::default();
        wire.until(trail, "the first video message", |event, trail| {
            if let Some(refused) = refusal(&event) {
                return Some(Err(refused));
            }
            observe(&mut progress.seen, &event, trail);
            (progress.seen.video_messages > 0).then_some(Ok(()))
        })
        .await
        .map_err(close_after_request_is_refusal)?;
        progress.seen.bytes = wire.bytes;
        let (tx, rx) = watch::channel(progress);
        let reader = tokio::spawn(keep_playing(wire, started, tx));
        Ok(RtmpPlayer { progress: rx, reader })
    }

    /// TCP from the profile's address, handshake, `connect` accepted.
    async fn connect(&self, app: &str, trail: &mut Vec<String>) -> Result<Wire, Outcome> {
        let step = self.profile.request_timeout;
        let t = Instant::now();
        let socket = bound_socket(self.profile.local_ip)
            .map_err(|e| failed(trail, format!("cannot bind {}: {e}", self.profile.local_ip)))?;
        let stream = match tokio::time::timeout(step, socket.connect(self.server)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(failed(trail, format!("connect to {}: {e}", self.server))),
            Err(_) => {
                return Err(failed(
                    trail,
                    format!("connect to {}: no answer within {step:?}", self.server),
                ));
            }
        };
        let _ = stream.set_nodelay(true);
        let mut wire = Wire {
            stream,
            session: None,
            step,
            bytes: 0,
            buf: vec![0; READ_BUFFER],
            carry: Vec::new(),
        };
        let leftover = wire.handshake(trail).await?;
        trail.push(format!("handshake done ({} ms)", t.elapsed().as_millis()));
        let mut config = ClientSessionConfig::new();
        if let Some(ua) = &self.profile.user_agent {
            config.flash_version = ua.clone();
        }
        config.tc_url = Some(format!("rtmp://{}/{app}", self.server));
        let (session, initial) =
            ClientSession::new(config).map_err(|e| failed(trail, format!("client session: {e}")))?;
        wire.session = Some(session);
        wire.send(Ok(initial), trail).await?;
        let request = wire.call(|s| s.request_connection(app.to_string()).map(|r| vec![r]));
        wire.send(request, trail).await?;
        wire.carry = leftover;
        wire.until(trail, "the connect answer", |event, _| match event {
            ClientSessionEvent::ConnectionRequestAccepted => Some(Ok(())),
            other => refusal(&other).map(Err),
        })
        .await?;
        trail.push(format!("connected to app `{app}`"));
        Ok(wire)
    }
}

/// `NAME?QUERY` with the query percent-encoded, as a player builds it from a URL.
pub fn stream_key(stream: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return stream.to_string();
    }
    let mut encoded = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        encoded.append_pair(k, v);
    }
    format!("{stream}?{}", encoded.finish())
}

fn failed(trail: &mut Vec<String>, reason: String) -> Outcome {
    trail.push(reason.clone());
    Outcome::Failed { status: None, reason }
}

/// A refusal carried by an event: an `_error` answer or a failure status (with its text).
fn refusal(event: &ClientSessionEvent) -> Option<Outcome> {
    let text = match event {
        ClientSessionEvent::UnknownTransactionResultReceived { additional_values, .. } => {
            let status = additional_values.iter().find_map(|v| match v {
                Amf0Value::Object(props) => Some(props),
                _ => None,
            })?;
            let field = |k: &str| match status.get(k) {
                Some(Amf0Value::Utf8String(s)) => s.clone(),
                _ => String::new(),
            };
            let (level, code, description) = (field("level"), field("code"), field("description"));
            if !level.contains("error") && !is_failure_code(&code) {
                return None;
            }
            format!("{code}: {description}")
        }
        ClientSessionEvent::UnhandleableOnStatusCode { code } if is_failure_code(code) => code.clone(),
        ClientSessionEvent::ConnectionRequestRejected { description } => format!("connect rejected: {description}"),
        _ => return None,
    };
    Some(Outcome::Failed {
        status: Some(REFUSED_STATUS),
        reason: text,
    })
}

fn is_failure_code(code: &str) -> bool {
    ["Failed", "Rejected", "NotFound", "Denied", "BadName", "Forbidden"]
        .iter()
        .any(|w| code.contains(w))
}

/// Records what a player event shows.
fn observe(seen: &mut Seen, event: &ClientSessionEvent, trail: &mut Vec<String>) {
    match event {
        ClientSessionEvent::PlaybackRequestAccepted => {
            seen.play_started = true;
            trail.push("NetStream.Play.Start".into());
        }
        ClientSessionEvent::StreamMetadataReceived { .. } => seen.metadata = true,
        ClientSessionEvent::VideoDataReceived { data, timestamp } => {
            // FLV VIDEODATA: frame type and codec, then AVCPacketType (E.4.3.1).
            match data.get(..2) {
                Some([flags, 0]) if flags & 0x0F == 7 => seen.avc_sequence_header = true,
                Some([flags, 1]) => {
                    seen.video_messages += 1;
                    seen.first_video_ms.get_or_insert(timestamp.value);
                    seen.last_video_ms = Some(timestamp.value);
                    if flags >> 4 == 1 {
                        seen.keyframes += 1;
                    }
                }
                _ => {}
            }
        }
        ClientSessionEvent::AudioDataReceived { data, .. } => match data.get(..2) {
            Some([flags, 0]) if flags >> 4 == 10 => seen.aac_sequence_header = true,
            Some(_) => seen.audio_messages += 1,
            None => {}
        },
        _ => {}
    }
}

/// The socket and the session over it.
struct Wire {
    stream: TcpStream,
    session: Option<ClientSession>,
    step: Duration,
    bytes: u64,
    buf: Vec<u8>,
    /// Bytes that came with the end of the handshake, fed to the session first.
    carry: Vec<u8>,
}

const READ_BUFFER: usize = 64 * 1024;

/// A step that did not end with what was waited for: the outcome to report.
type StepResult<T> = Result<T, Outcome>;

impl Wire {
    /// Runs `f` on the session, turning its errors (and panics on a hostile server's input)
    /// into a reason.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut ClientSession) -> Result<R, rml_rtmp::sessions::ClientSessionError>,
    ) -> Result<R, String> {
        let Some(session) = self.session.as_mut() else {
            return Err("no RTMP session".into());
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| f(session))) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(format!("RTMP session error: {e}")),
            Err(_) => Err("the RTMP client session panicked on the server's bytes".into()),
        }
    }

    async fn write(&mut self, bytes: &[u8], trail: &mut Vec<String>) -> StepResult<()> {
        match tokio::time::timeout(self.step, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failed(trail, format!("write: connection closed ({e})"))),
            Err(_) => Err(failed(trail, format!("write: blocked for {:?}", self.step))),
        }
    }

    /// Writes the packets of `results`; returns its events.
    async fn send<R: IntoResults>(
        &mut self,
        results: Result<R, String>,
        trail: &mut Vec<String>,
    ) -> StepResult<Vec<ClientSessionEvent>> {
        let results = results.map_err(|reason| failed(trail, reason))?.into_results();
        let mut bytes = Vec::new();
        let mut events = Vec::new();
        for result in results {
            match result {
                ClientSessionResult::OutboundResponse(packet) => bytes.extend_from_slice(&packet.bytes),
                ClientSessionResult::RaisedEvent(event) => events.push(event),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        if !bytes.is_empty() {
            self.write(&bytes, trail).await?;
        }
        Ok(events)
    }

    async fn handshake(&mut self, trail: &mut Vec<String>) -> StepResult<Vec<u8>> {
        let mut handshake = Handshake::new(PeerType::Client);
        let c0c1 = handshake
            .generate_outbound_p0_and_p1()
            .map_err(|e| failed(trail, format!("handshake: {e}")))?;
        self.write(&c0c1, trail).await?;
        let mut buf = [0u8; 4096];
        loop {
            let n = match tokio::time::timeout(self.step, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) => return Err(failed(trail, "handshake: the server closed the connection".into())),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(failed(trail, format!("handshake: {e}"))),
                Err(_) => return Err(failed(trail, format!("handshake: no answer within {:?}", self.step))),
            };
            match handshake.process_bytes(&buf[..n]) {
                Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                    self.write(&response_bytes, trail).await?;
                }
                Ok(HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                }) => {
                    self.write(&response_bytes, trail).await?;
                    return Ok(remaining_bytes);
                }
                Err(e) => return Err(failed(trail, format!("handshake: {e}"))),
            }
        }
    }

    /// Reads and feeds the session until `on_event` gives a result, within one step timeout.
    /// A closed connection is `Failed` with a reason containing "closed".
    async fn until<T>(
        &mut self,
        trail: &mut Vec<String>,
        what: &str,
        mut on_event: impl FnMut(ClientSessionEvent, &mut Vec<String>) -> Option<Result<T, Outcome>>,
    ) -> StepResult<T> {
        let deadline = tokio::time::Instant::now() + self.step;
        loop {
            let input = if self.carry.is_empty() {
                match tokio::time::timeout_at(deadline, self.stream.read(&mut self.buf)).await {
                    Ok(Ok(0)) => {
                        return Err(failed(trail, format!("the server closed the connection before {what}")));
                    }
                    Ok(Ok(n)) => self.buf[..n].to_vec(),
                    Ok(Err(e)) => {
                        return Err(failed(trail, format!("the connection closed before {what}: {e}")));
                    }
                    Err(_) => {
                        return Err(failed(trail, format!("waited {:?} for {what} in vain", self.step)));
                    }
                }
            } else {
                std::mem::take(&mut self.carry)
            };
            self.bytes += input.len() as u64;
            let results = self.call(|s| s.handle_input(&input));
            for event in self.send(results, trail).await? {
                if let Some(done) = on_event(event, trail) {
                    return done
                        .inspect_err(|outcome| {
                            if let Outcome::Failed {
                                status: Some(_),
                                reason,
                            } = outcome
                            {
                                trail.push(format!("refused: {reason}"));
                            }
                        })
                        .map_err(|outcome| match outcome {
                            Outcome::Failed {
                                status: Some(status), ..
                            } => Outcome::Denied { status },
                            other => other,
                        });
                }
            }
        }
    }
}

/// What `ClientSession` calls return, one result or several.
trait IntoResults {
    fn into_results(self) -> Vec<ClientSessionResult>;
}

impl IntoResults for Vec<ClientSessionResult> {
    fn into_results(self) -> Vec<ClientSessionResult> {
        self
    }
}

impl IntoResults for ClientSessionResult {
    fn into_results(self) -> Vec<ClientSessionResult> {
        vec![self]
    }
}

/// Reads a playing connection until it ends, recording what arrives.
async fn keep_playing(mut wire: Wire, started: Instant, tx: watch::Sender<Progress>) {
    let mut trail = Vec::new();
    let reason = loop {
        let n = match wire.stream.read(&mut wire.buf).await {
            Ok(0) => break "the server closed the connection".to_string(),
            Ok(n) => n,
            Err(e) => break format!("the connection failed: {e}"),
        };
        let input = wire.buf[..n].to_vec();
        let results = wire.call(|s| s.handle_input(&input));
        let events = match wire.send(results, &mut trail).await {
            Ok(events) => events,
            Err(outcome) => break format!("client error: {outcome}"),
        };
        tx.send_modify(|p| {
            p.seen.bytes += n as u64;
            for event in &events {
                observe(&mut p.seen, event, &mut trail);
            }
        });
        if let Some(status) = events.iter().find_map(|e| match e {
            ClientSessionEvent::UnhandleableOnStatusCode { code } => Some(code.clone()),
            _ => None,
        }) {
            trail.push(format!("onStatus {status}"));
        }
    };
    let closed = Closed {
        after: started.elapsed(),
        reason,
    };
    tracing::debug!(?closed, "RTMP play ended");
    tx.send_modify(|p| p.closed = Some(closed));
}

/// A playing RTMP connection. Dropping it closes the connection.
#[derive(Debug)]
pub struct RtmpPlayer {
    progress: watch::Receiver<Progress>,
    reader: JoinHandle<()>,
}

impl Drop for RtmpPlayer {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl RtmpPlayer {
    pub fn seen(&self) -> Seen {
        self.progress.borrow().seen.clone()
    }

    /// How the connection ended, if it did.
    pub fn closed(&self) -> Option<Closed> {
        super::closed(&self.progress)
    }

    /// Waits at most `within` for the server to end the connection.
    pub async fn wait_closed(&mut self, within: Duration) -> Option<Closed> {
        super::wait_closed(&mut self.progress, within).await
    }

    /// Waits at most `within` for `more` video messages beyond those seen so far: proof the
    /// connection still delivers media.
    pub async fn wait_more_video(&mut self, more: u64, within: Duration) -> bool {
        super::wait_more(&mut self.progress, more, within, |p| p.seen.video_messages).await
    }
}

/// An accepted RTMP publisher. Dropping it closes the connection.
pub struct RtmpPublisher {
    wire: Wire,
}

impl std::fmt::Debug for RtmpPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpPublisher").finish_non_exhaustive()
    }
}

impl RtmpPublisher {
    /// Sends one FLV VIDEODATA body (frame type/codec byte, AVCPacketType, composition time,
    /// data) at `timestamp_ms`.
    pub async fn send_video(&mut self, body: impl Into<Bytes>, timestamp_ms: u32) -> Result<(), String> {
        let packet = self
            .wire
            .call(|s| s.publish_video_data(body.into(), RtmpTimestamp::new(timestamp_ms), false))?;
        self.write_packet(packet).await
    }

    /// Sends one FLV AUDIODATA body at `timestamp_ms`.
    pub async fn send_audio(&mut self, body: impl Into<Bytes>, timestamp_ms: u32) -> Result<(), String> {
        let packet = self
            .wire
            .call(|s| s.publish_audio_data(body.into(), RtmpTimestamp::new(timestamp_ms), false))?;
        self.write_packet(packet).await
    }

    /// Says the publication is over (`FCUnpublish`/`deleteStream` in `rml_rtmp`'s terms) and
    /// closes the connection.
    pub async fn finish(mut self) {
        if let Ok(results) = self.wire.call(|s| s.stop_publishing()) {
            let mut trail = Vec::new();
            let _ = self.wire.send(Ok(results), &mut trail).await;
        }
        let _ = self.wire.stream.shutdown().await;
    }

    async fn write_packet(&mut self, result: ClientSessionResult) -> Result<(), String> {
        let mut trail = Vec::new();
        self.wire
            .send(Ok(result), &mut trail)
            .await
            .map(|_| ())
            .map_err(|outcome| outcome.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_keys_carry_the_encoded_query() {
        assert_eq!(stream_key("cam1", &[]), "cam1");
        let q = [("token".to_string(), "a b&c".to_string())];
        assert_eq!(stream_key("live/cam1", &q), "live/cam1?token=a+b%26c");
    }

    #[test]
    fn error_answers_are_refusals_with_their_description() {
        let status = Amf0Value::Object(
            [
                ("level", "_error"),
                ("code", "NetStream.Play.Failed"),
                ("description", "refused by the authorization backend"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Amf0Value::Utf8String(v.to_string())))
            .collect(),
        );
        let event = ClientSessionEvent::UnknownTransactionResultReceived {
            transaction_id: 0.0,
            command_object: Amf0Value::Null,
            additional_values: vec![status],
        };
        match refusal(&event) {
            Some(Outcome::Failed {
                status: Some(403),
                reason,
            }) => {
                assert_eq!(reason, "NetStream.Play.Failed: refused by the authorization backend");
            }
            other => panic!("{other:?}"),
        }
        let ok = ClientSessionEvent::UnhandleableOnStatusCode {
            code: "NetStream.Play.Reset".into(),
        };
        assert_eq!(refusal(&ok), None);
    }

    #[test]
    fn video_messages_are_counted_apart_from_the_sequence_header() {
        let mut seen = Seen::default();
        let mut trail = Vec::new();
        let video = |bytes: &'static [u8], ms| ClientSessionEvent::VideoDataReceived {
            timestamp: RtmpTimestamp::new(ms),
            data: Bytes::from_static(bytes),
        };
        observe(&mut seen, &video(&[0x17, 0, 0, 0, 0, 1], 0), &mut trail);
        observe(&mut seen, &video(&[0x17, 1, 0, 0, 0, 0], 0), &mut trail);
        observe(&mut seen, &video(&[0x27, 1, 0, 0, 0, 0], 100), &mut trail);
        assert!(seen.avc_sequence_header);
        assert_eq!((seen.video_messages, seen.keyframes), (2, 1));
        assert_eq!((seen.first_video_ms, seen.last_video_ms), (Some(0), Some(100)));
    }
}
