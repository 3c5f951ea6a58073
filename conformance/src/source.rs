//! A source the suite publishes itself: for a target that has no synthetic input of its own
//! (nginx-rtmp plays only what someone publishes), the suite publishes synthetic H.264/AAC under
//! each case's stream name before viewers play, and keeps it up for the case.
//!
//! The manifest names where (`[source] publish`), in one of two forms:
//!
//! * `rtmp://HOST[:PORT]/APP/KEY` with `{name}` in KEY: FLV tags built by the server's own
//!   builders (`usher_server::rtmp::flv`) over the suite's RTMP publishing client
//!   ([`RtmpClient::publish_key`]);
//! * `[PUT |POST ]http://HOST[:PORT]/PATH` with `{name}` in PATH (PUT when no method is
//!   written): MPEG-TS made by the server's muxer (`usher_server::media::ts::TsMuxer`) in one
//!   chunked HTTP/1.1 upload that lasts as long as the case, the way an encoder pushes MPEG-TS
//!   over HTTP (the reference server's `PUT /NAME/mpegts`, `server/src/http/ingest.rs`).
//!
//! Either way the media is the reference server's `fake://` picture and silent audio
//! (`usher_server::media`).
//!
//! A server that packages what it receives (nginx-rtmp writing HLS) has nothing to play until
//! its first segment is written. `[source] ready = "http://…/{name}…"` names a URL the suite
//! polls after publishing, until it answers 2xx, before any viewer plays.
//!
//! The source's own publish check reaches the suite's backend when the target calls it on
//! publish: it carries the query parameter [`SOURCE_PARAM`] with a secret of the run, and the
//! backend allows such calls without recording them in the case's log (they are not the case's).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use usher_server::media::ts::TsMuxer;
use usher_server::media::{AccessUnit, CLOCK_HZ, MediaSource, Track, avc};
use usher_server::rtmp::flv;

use crate::clients::rtmp::{RtmpClient, RtmpPublisher, stream_key};
use crate::clients::{Attempt, Outcome, ViewerProfile, bound_socket};
use crate::media::TS_START;

/// The placeholder of the stream name in a publish URL.
pub const NAME_PLACEHOLDER: &str = "{name}";
/// The query parameter that marks the source's own publish calls.
pub const SOURCE_PARAM: &str = "usher_source";

/// How long a published stream may take to become ready (`[source] ready`).
const READY_WITHIN: Duration = Duration::from_secs(15);
/// Between two readiness probes.
const READY_POLL: Duration = Duration::from_millis(50);
/// The largest response head the HTTP source reads from the server.
const MAX_HEAD: usize = 16 * 1024;

/// Characters escaped when the stream name goes into a URL path.
const PATH_ESCAPE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// The HTTP method of the MPEG-TS upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Put,
    Post,
}

impl HttpMethod {
    fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Put => "PUT",
            HttpMethod::Post => "POST",
        }
    }
}

/// The protocol the source publishes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// `rtmp://HOST:PORT/APP/KEY`; KEY holds [`NAME_PLACEHOLDER`].
    Rtmp { app: String, key: String },
    /// MPEG-TS in a chunked HTTP upload to `path` (path and query, with
    /// [`NAME_PLACEHOLDER`] in the path).
    Http { method: HttpMethod, path: String },
}

/// `[source]` of the manifest, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// The URL as written, without a method in front.
    pub url: String,
    /// `HOST:PORT`
    pub addr: String,
    pub form: Form,
    /// `[source] ready`: polled until 2xx before viewers play; [`NAME_PLACEHOLDER`] in it.
    pub ready: Option<String>,
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the suite publishes to {}", self.url)?;
        if let Form::Http { method, .. } = &self.form {
            write!(f, " (MPEG-TS, HTTP {})", method.as_str())?;
        }
        if let Some(ready) = &self.ready {
            write!(f, ", ready when {ready} answers 2xx")?;
        }
        Ok(())
    }
}

/// `HOST[:PORT]` with the default port filled in; an error when there is no host.
fn host_port(text: &str, authority: &str, default_port: u16) -> Result<String, String> {
    if authority.is_empty() || authority.starts_with(':') {
        return Err(format!("the publish URL `{text}` has no host"));
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    Ok(if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    })
}

impl SourceSpec {
    /// `rtmp://HOST[:PORT]/APP/KEY` where KEY holds `{name}`, or `[PUT |POST ]http://HOST[:PORT]/PATH`
    /// where PATH holds `{name}`.
    pub fn parse(text: &str) -> Result<SourceSpec, String> {
        if !text.contains(NAME_PLACEHOLDER) {
            return Err(format!(
                "the publish URL `{text}` has no {NAME_PLACEHOLDER}: the suite publishes each case's stream under its own name"
            ));
        }
        let (method, url) = match text.split_once(' ') {
            Some((method, url)) => match method {
                "PUT" => (Some(HttpMethod::Put), url.trim_start()),
                "POST" => (Some(HttpMethod::Post), url.trim_start()),
                other => {
                    return Err(format!(
                        "the publish URL `{text}` starts with `{other}`: only PUT or POST may stand before an http:// URL"
                    ));
                }
            },
            None => (None, text),
        };
        if let Some(rest) = url.strip_prefix("rtmp://") {
            if method.is_some() {
                return Err(format!("the publish URL `{text}`: a method goes only with http://"));
            }
            return Self::parse_rtmp(text, rest);
        }
        if let Some(rest) = url.strip_prefix("http://") {
            return Self::parse_http(text, url, rest, method.unwrap_or(HttpMethod::Put));
        }
        let scheme = url.split_once("://").map_or(url, |(s, _)| s);
        Err(format!(
            "the publish URL `{text}` has the scheme `{scheme}`: the suite publishes to rtmp://HOST:PORT/APP/{NAME_PLACEHOLDER} \
             or [PUT |POST ]http://HOST:PORT/PATH/{NAME_PLACEHOLDER} (MPEG-TS)"
        ))
    }

    fn parse_rtmp(text: &str, rest: &str) -> Result<SourceSpec, String> {
        let (authority, path) = rest.split_once('/').ok_or_else(|| {
            format!("the publish URL `{text}` has no application: rtmp://HOST:PORT/APP/{NAME_PLACEHOLDER}")
        })?;
        let (app, key) = path
            .split_once('/')
            .filter(|(app, key)| !app.is_empty() && key.contains(NAME_PLACEHOLDER))
            .ok_or_else(|| {
                format!("the publish URL `{text}` is not rtmp://HOST:PORT/APP/KEY with {NAME_PLACEHOLDER} in KEY")
            })?;
        Ok(SourceSpec {
            url: text.to_string(),
            addr: host_port(text, authority, 1935)?,
            form: Form::Rtmp {
                app: app.to_string(),
                key: key.to_string(),
            },
            ready: None,
        })
    }

    fn parse_http(text: &str, url: &str, rest: &str, method: HttpMethod) -> Result<SourceSpec, String> {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path_only = path.split(['?', '#']).next().unwrap_or_default();
        if !path_only.contains(NAME_PLACEHOLDER) {
            return Err(format!(
                "the publish URL `{text}` is not http://HOST:PORT/PATH with {NAME_PLACEHOLDER} in PATH"
            ));
        }
        if path.contains('#') || path.contains(char::is_whitespace) {
            return Err(format!(
                "the publish URL `{text}` has a fragment or a space in its path"
            ));
        }
        Ok(SourceSpec {
            url: url.to_string(),
            addr: host_port(text, authority, 80)?,
            form: Form::Http {
                method,
                path: path.to_string(),
            },
            ready: None,
        })
    }

    /// Adds `[source] ready`: an `http://` URL with `{name}` in it.
    pub fn with_ready(mut self, ready: &str) -> Result<SourceSpec, String> {
        if !ready.starts_with("http://") {
            return Err(format!("the readiness URL `{ready}` is not http://…"));
        }
        if !ready.contains(NAME_PLACEHOLDER) {
            return Err(format!(
                "the readiness URL `{ready}` has no {NAME_PLACEHOLDER}: it is polled for each case's stream"
            ));
        }
        if url::Url::parse(&ready.replace(NAME_PLACEHOLDER, "s")).is_err() {
            return Err(format!("the readiness URL `{ready}` is not a URL"));
        }
        self.ready = Some(ready.to_string());
        Ok(self)
    }

    /// The RTMP stream key the source publishes stream `name` under, with `query` after it.
    /// `None` for the HTTP form.
    pub fn stream_key(&self, name: &str, query: &[(String, String)]) -> Option<String> {
        match &self.form {
            Form::Rtmp { key, .. } => Some(stream_key(&key.replace(NAME_PLACEHOLDER, name), query)),
            Form::Http { .. } => None,
        }
    }

    /// The HTTP request target (path and query) of the upload of stream `name`, with `query`
    /// after the URL's own query. `None` for the RTMP form.
    pub fn request_target(&self, name: &str, query: &[(String, String)]) -> Option<String> {
        let Form::Http { path, .. } = &self.form else {
            return None;
        };
        let name = utf8_percent_encode(name, PATH_ESCAPE).to_string();
        let (path, own_query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path.as_str(), None),
        };
        let mut target = if path.is_empty() {
            "/".to_string()
        } else {
            path.replace(NAME_PLACEHOLDER, &name)
        };
        let mut encoded = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in query {
            encoded.append_pair(k, v);
        }
        let added = encoded.finish();
        let parts: Vec<&str> = own_query
            .into_iter()
            .chain(Some(added.as_str()))
            .filter(|q| !q.is_empty())
            .collect();
        if !parts.is_empty() {
            target.push('?');
            target.push_str(&parts.join("&"));
        }
        Some(target)
    }

    /// The readiness URL of stream `name`.
    fn ready_url(&self, name: &str) -> Option<String> {
        let name = utf8_percent_encode(name, PATH_ESCAPE).to_string();
        self.ready.as_ref().map(|r| r.replace(NAME_PLACEHOLDER, &name))
    }
}

/// A running source: publishes until dropped.
pub struct Source {
    pub attempt: Attempt,
    task: JoinHandle<()>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source: {}", self.attempt)
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ms(ticks: u64) -> u32 {
    u32::try_from(ticks * 1000 / CLOCK_HZ).unwrap_or(u32::MAX)
}

fn failed(attempt: Attempt, reason: String) -> Attempt {
    let mut trail = attempt.trail;
    trail.push(reason.clone());
    Attempt {
        outcome: Outcome::Failed { status: None, reason },
        elapsed: attempt.elapsed,
        trail,
    }
}

fn synthetic_media() -> Result<std::sync::Arc<MediaSource>, String> {
    MediaSource::start("fake://fake").map_err(|e| format!("the synthetic source does not start: {e}"))
}

/// Publishes synthetic media to `spec`'s server (at `server`) under `name` from `profile`'s
/// address, with `query` (the source marker and any credential the case wants) after the key or
/// path. `Ok` once the server accepted the publish (and, with `[source] ready`, once the stream
/// is ready); the media then flows in real time until the [`Source`] is dropped.
pub async fn publish(
    spec: &SourceSpec,
    server: SocketAddr,
    profile: ViewerProfile,
    name: &str,
    query: &[(String, String)],
) -> Result<Source, Attempt> {
    let source = match &spec.form {
        Form::Rtmp { app, key } => {
            let key = stream_key(&key.replace(NAME_PLACEHOLDER, name), query);
            publish_rtmp(server, profile.clone(), app, &key).await?
        }
        Form::Http { method, .. } => {
            let target = spec
                .request_target(name, query)
                .expect("the HTTP form has a request target");
            let host = spec.addr.clone();
            publish_http(server, &profile, *method, &host, &target).await?
        }
    };
    let mut source = source;
    if let Some(url) = spec.ready_url(name) {
        // On failure the source is dropped here, which ends its publication.
        wait_ready(&mut source, &url, &profile).await?;
    }
    Ok(source)
}

async fn publish_rtmp(server: SocketAddr, profile: ViewerProfile, app: &str, key: &str) -> Result<Source, Attempt> {
    let (attempt, publisher) = RtmpClient::new(server, profile).publish_key(app, key).await;
    let Some(mut publisher) = publisher else {
        return Err(attempt);
    };
    let media = match synthetic_media() {
        Ok(m) => m,
        Err(e) => return Err(failed(attempt, e)),
    };
    let codecs = media.codecs();
    let headers = async {
        if let Some(video) = &codecs.video {
            publisher.send_video(flv::avc_sequence_header(video), 0).await?;
        }
        if let Some(audio) = &codecs.audio {
            publisher
                .send_audio(flv::aac_sequence_header(&audio.audio_specific_config()), 0)
                .await?;
        }
        Ok::<(), String>(())
    };
    if let Err(e) = headers.await {
        return Err(failed(attempt, format!("sending the sequence headers: {e}")));
    }
    let task = tokio::spawn(pump_rtmp(media, publisher));
    Ok(Source { attempt, task })
}

/// Sends the source's access units as they come, with timestamps from the first one.
async fn pump_rtmp(media: std::sync::Arc<MediaSource>, mut publisher: RtmpPublisher) {
    let mut feed = media.subscribe();
    let mut first: Option<u64> = None;
    while let Some(unit) = feed.next().await {
        let start = *first.get_or_insert(unit.dts);
        let at = ms(unit.dts.saturating_sub(start));
        let sent = match unit.track {
            Track::Video => {
                let avcc = avc::annex_b_to_avcc(&unit.data);
                let composition = i32::try_from(ms(unit.pts) - ms(unit.dts)).unwrap_or(0);
                publisher
                    .send_video(flv::avc_nalu_tag(unit.keyframe, composition, &avcc), at)
                    .await
            }
            Track::Audio => publisher.send_audio(flv::aac_raw_tag(&unit.data), at).await,
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "the suite's source stopped: the server closed its publish");
            return;
        }
    }
    // The fake source never ends; a feed that does is waited out rather than spun on.
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A response head: its status and `Location`.
#[derive(Debug)]
struct Head {
    status: u16,
    location: Option<String>,
}

/// Reads one response head from `reader` (bytes after it stay in `buf`).
async fn read_head<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> Result<Head, String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut lines = head.lines();
            let status_line = lines.next().unwrap_or_default();
            let status = status_line
                .strip_prefix("HTTP/1.")
                .and_then(|rest| rest.get(2..5))
                .and_then(|code| code.parse::<u16>().ok())
                .ok_or_else(|| format!("the answer does not start with an HTTP/1.x status line: `{status_line}`"))?;
            let location = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_string());
            return Ok(Head { status, location });
        }
        if buf.len() > MAX_HEAD {
            return Err(format!("an answer head longer than {MAX_HEAD} bytes"));
        }
        let mut chunk = [0u8; 4096];
        match reader.read(&mut chunk).await {
            Ok(0) => return Err("the server closed the connection without an answer".to_string()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the answer: {e}")),
        }
    }
}

/// Opens the upload: the request head with `Expect: 100-continue`, so that the server says
/// whether it takes the publication before any media is sent: `100 Continue` is yes, a final
/// status (403, 404, …) is no.
async fn publish_http(
    server: SocketAddr,
    profile: &ViewerProfile,
    method: HttpMethod,
    host: &str,
    target: &str,
) -> Result<Source, Attempt> {
    let started = Instant::now();
    let mut attempt = Attempt {
        outcome: Outcome::Playing,
        elapsed: Duration::ZERO,
        trail: Vec::new(),
    };
    let fail = |mut attempt: Attempt, status: Option<u16>, reason: String| {
        attempt.trail.push(reason.clone());
        attempt.elapsed = started.elapsed();
        attempt.outcome = Outcome::Failed { status, reason };
        attempt
    };
    let connected = async {
        let socket = bound_socket(profile.local_ip).map_err(|e| e.to_string())?;
        socket.connect(server).await.map_err(|e| e.to_string())
    };
    let stream = match tokio::time::timeout(profile.request_timeout, connected).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(fail(attempt, None, format!("connecting to {server}: {e}"))),
        Err(_) => {
            return Err(fail(
                attempt,
                None,
                format!(
                    "connecting to {server}: no connection within {:?}",
                    profile.request_timeout
                ),
            ));
        }
    };
    let (mut reader, mut writer) = stream.into_split();
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: video/mp2t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n",
        method.as_str()
    );
    if let Some(ua) = &profile.user_agent {
        head.push_str(&format!("User-Agent: {ua}\r\n"));
    }
    head.push_str("\r\n");
    if let Err(e) = writer.write_all(head.as_bytes()).await {
        return Err(fail(attempt, None, format!("sending the request: {e}")));
    }
    let mut buf = Vec::new();
    let answer = tokio::time::timeout(profile.request_timeout, read_head(&mut reader, &mut buf)).await;
    let head = match answer {
        Ok(Ok(head)) => head,
        Ok(Err(e)) => return Err(fail(attempt, None, e)),
        Err(_) => {
            return Err(fail(
                attempt,
                None,
                format!("no `100 Continue` nor any answer within {:?}", profile.request_timeout),
            ));
        }
    };
    attempt.trail.push(format!(
        "{} {target} -> {} ({} ms)",
        method.as_str(),
        head.status,
        started.elapsed().as_millis()
    ));
    if head.status != 100 {
        attempt.elapsed = started.elapsed();
        attempt.outcome = match head.status {
            // A server that ended the upload at once with a success did not keep the stream up.
            200..=299 => Outcome::Failed {
                status: Some(head.status),
                reason: format!(
                    "the server answered {} before any media: no publication to keep up",
                    head.status
                ),
            },
            status => Outcome::from_status(status, head.location, "publish"),
        };
        return Err(attempt);
    }
    let media = match synthetic_media() {
        Ok(m) => m,
        Err(e) => return Err(fail(attempt, None, e)),
    };
    attempt.elapsed = started.elapsed();
    let task = tokio::spawn(pump_http(media, writer, reader, buf, target.to_string()));
    Ok(Source { attempt, task })
}

/// Sends the source's access units as MPEG-TS chunks as they come, until the server answers
/// (it ended the publication) or closes the connection.
async fn pump_http(
    media: std::sync::Arc<MediaSource>,
    mut writer: OwnedWriteHalf,
    mut reader: OwnedReadHalf,
    mut buf: Vec<u8>,
    target: String,
) {
    let mut feed = media.subscribe();
    let codecs = media.codecs();
    let mut muxer = TsMuxer::with_tracks(codecs.video.is_some(), codecs.audio);
    let mut first: Option<u64> = None;
    let mut tables_at: Option<u64> = None;
    let answered = read_head(&mut reader, &mut buf);
    tokio::pin!(answered);
    loop {
        let unit = tokio::select! {
            head = &mut answered => {
                match head {
                    Ok(head) => tracing::debug!(%target, status = head.status, "the suite's HTTP source stopped: the server answered"),
                    Err(e) => tracing::debug!(%target, error = %e, "the suite's HTTP source stopped"),
                }
                return;
            }
            unit = feed.next() => unit,
        };
        let Some(unit) = unit else {
            break;
        };
        let start = *first.get_or_insert(unit.dts);
        let mut out = Vec::new();
        // PAT and PMT first, then again before a keyframe each second, so a reader can start there.
        let due = tables_at.is_none_or(|at| unit.track == Track::Video && unit.keyframe && unit.dts >= at + CLOCK_HZ);
        if due {
            muxer.write_tables(&mut out);
            tables_at = Some(unit.dts);
        }
        let shifted = AccessUnit {
            pts: unit.pts.saturating_sub(start) + TS_START,
            dts: unit.dts.saturating_sub(start) + TS_START,
            ..unit
        };
        if let Err(e) = muxer.write_access_unit(&shifted, &mut out) {
            tracing::warn!(%target, error = %e, "the suite's HTTP source cannot mux its media");
            return;
        }
        let mut chunk = format!("{:x}\r\n", out.len()).into_bytes();
        chunk.extend_from_slice(&out);
        chunk.extend_from_slice(b"\r\n");
        if let Err(e) = writer.write_all(&chunk).await {
            tracing::debug!(%target, error = %e, "the suite's HTTP source stopped: the server closed its upload");
            return;
        }
    }
    // The fake source never ends; a feed that does ends the upload properly.
    let _ = writer.write_all(b"0\r\n\r\n").await;
}

/// Polls `url` until it answers 2xx; fails when the source's publication ends first or the
/// stream is not ready within [`READY_WITHIN`].
async fn wait_ready(source: &mut Source, url: &str, profile: &ViewerProfile) -> Result<(), Attempt> {
    let started = Instant::now();
    let fail = |source: &Source, reason: String| {
        let mut attempt = source.attempt.clone();
        attempt.trail.push(reason.clone());
        attempt.outcome = Outcome::Failed { status: None, reason };
        attempt.elapsed += started.elapsed();
        attempt
    };
    let client = match profile.client() {
        Ok(c) => c,
        Err(e) => return Err(fail(source, format!("no HTTP client for the readiness probe: {e}"))),
    };
    let mut last = String::from("nothing yet");
    loop {
        if source.task.is_finished() {
            return Err(fail(
                source,
                format!("the server ended the publication before {url} answered 2xx (last answer: {last})"),
            ));
        }
        match client.get(url).timeout(profile.request_timeout).send().await {
            Ok(r) if r.status().is_success() => break,
            Ok(r) => last = r.status().as_u16().to_string(),
            Err(e) => last = format!("transport error: {e}"),
        }
        if started.elapsed() > READY_WITHIN {
            return Err(fail(
                source,
                format!("the stream was not ready within {READY_WITHIN:?}: {url} answered {last}"),
            ));
        }
        // Polling for a file the server is about to write.
        tokio::time::sleep(READY_POLL).await;
    }
    source.attempt.trail.push(format!(
        "ready: {url} -> 2xx after {} ms",
        started.elapsed().as_millis()
    ));
    source.attempt.elapsed += started.elapsed();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn rtmp_publish_urls_parse_and_bad_ones_say_why() {
        let s = SourceSpec::parse("rtmp://127.0.0.1:1936/live/{name}").unwrap();
        assert_eq!(s.addr, "127.0.0.1:1936");
        assert_eq!(
            s.form,
            Form::Rtmp {
                app: "live".into(),
                key: "{name}".into()
            }
        );
        let q = [("usher_source".to_string(), "x".to_string())];
        assert_eq!(s.stream_key("c1-s", &q).as_deref(), Some("c1-s?usher_source=x"));
        assert_eq!(s.request_target("c1-s", &q), None);
        let s = SourceSpec::parse("rtmp://media.example/app/pre-{name}").unwrap();
        assert_eq!(s.addr, "media.example:1935");
        assert_eq!(s.stream_key("c1-s", &[]).as_deref(), Some("pre-c1-s"));
        assert_eq!(
            s.to_string(),
            "the suite publishes to rtmp://media.example/app/pre-{name}"
        );
    }

    #[test]
    fn http_publish_urls_parse_with_their_method() {
        let s = SourceSpec::parse("http://127.0.0.1:8080/{name}/mpegts").unwrap();
        assert_eq!(s.addr, "127.0.0.1:8080");
        assert_eq!(
            s.form,
            Form::Http {
                method: HttpMethod::Put,
                path: "/{name}/mpegts".into()
            }
        );
        let q = [
            ("usher_source".to_string(), "x y".to_string()),
            ("password".to_string(), "p&w".to_string()),
        ];
        assert_eq!(
            s.request_target("c1-s", &q).as_deref(),
            Some("/c1-s/mpegts?usher_source=x+y&password=p%26w")
        );
        assert_eq!(s.request_target("a b?#", &[]).as_deref(), Some("/a%20b%3F%23/mpegts"));
        assert_eq!(s.stream_key("c1-s", &[]), None);
        assert_eq!(
            s.to_string(),
            "the suite publishes to http://127.0.0.1:8080/{name}/mpegts (MPEG-TS, HTTP PUT)"
        );
        let s = SourceSpec::parse("POST http://media.example/in/{name}.ts?key=k").unwrap();
        assert_eq!(s.addr, "media.example:80");
        assert_eq!(s.url, "http://media.example/in/{name}.ts?key=k");
        let q = [("usher_source".to_string(), "x".to_string())];
        assert_eq!(
            s.request_target("c1-s", &q).as_deref(),
            Some("/in/c1-s.ts?key=k&usher_source=x")
        );
        assert!(matches!(
            s.form,
            Form::Http {
                method: HttpMethod::Post,
                ..
            }
        ));
        let s = s.with_ready("http://127.0.0.1:8080/.source/{name}").unwrap();
        assert_eq!(
            s.ready_url("c1 s").as_deref(),
            Some("http://127.0.0.1:8080/.source/c1%20s")
        );
        assert!(
            s.to_string()
                .ends_with("(MPEG-TS, HTTP POST), ready when http://127.0.0.1:8080/.source/{name} answers 2xx")
        );
    }

    #[test]
    fn bad_publish_and_ready_urls_say_why() {
        for (bad, why) in [
            ("rtmp://127.0.0.1:1935/live/stream", "{name}"),
            ("http://127.0.0.1:8080/live/stream", "{name}"),
            ("rtmp://127.0.0.1:1935/{name}", "APP/KEY"),
            ("rtmp:///live/{name}", "no host"),
            ("http:///{name}/mpegts", "no host"),
            ("http://127.0.0.1:8080?n={name}", "in PATH"),
            ("https://127.0.0.1:8443/{name}/mpegts", "the scheme `https`"),
            ("srt://127.0.0.1:9000/{name}", "the scheme `srt`"),
            ("GET http://127.0.0.1:8080/{name}/mpegts", "`GET`"),
            ("PUT rtmp://127.0.0.1:1935/live/{name}", "only with http://"),
        ] {
            let e = SourceSpec::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let s = SourceSpec::parse("rtmp://127.0.0.1:1935/live/{name}").unwrap();
        for (bad, why) in [
            ("http://127.0.0.1:8080/ready", "{name}"),
            ("https://127.0.0.1/{name}", "not http://"),
        ] {
            let e = s.clone().with_ready(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn response_heads_are_read_across_reads_and_keep_what_follows() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::spawn(async move {
            server
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\n")
                .await
                .unwrap();
            server
                .write_all(b"location: rtmp://elsewhere/x\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
        });
        let mut buf = Vec::new();
        let head = read_head(&mut client, &mut buf).await.unwrap();
        assert_eq!((head.status, head.location), (100, None));
        let head = read_head(&mut client, &mut buf).await.unwrap();
        assert_eq!(head.status, 302);
        assert_eq!(head.location.as_deref(), Some("rtmp://elsewhere/x"));
        let e = read_head(&mut client, &mut buf).await.unwrap_err();
        assert!(e.contains("closed"), "{e}");
    }

    /// A server that refuses the upload at once: the source reports the refusal and sends no
    /// media (it waited for `100 Continue`), whichever method the URL form names.
    #[tokio::test]
    async fn a_refused_http_upload_is_a_denial_before_any_media() {
        for (form, request_line) in [
            (
                "http://{addr}/{name}/mpegts",
                "PUT /c1-s/mpegts?usher_source=s3 HTTP/1.1\r\n",
            ),
            (
                "POST http://{addr}/in/{name}.ts",
                "POST /in/c1-s.ts?usher_source=s3 HTTP/1.1\r\n",
            ),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                conn.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                    .await
                    .unwrap();
                conn.shutdown().await.unwrap();
                // Whatever the client sends after the head: nothing, it waited for 100 Continue.
                let mut rest = Vec::new();
                let _ = conn.read_to_end(&mut rest).await;
                (String::from_utf8_lossy(&buf).into_owned(), rest.len())
            });
            let spec = SourceSpec::parse(&form.replace("{addr}", &addr.to_string())).unwrap();
            let profile = ViewerProfile::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
            let q = [("usher_source".to_string(), "s3".to_string())];
            let e = publish(&spec, addr, profile, "c1-s", &q).await.unwrap_err();
            assert_eq!(e.outcome, Outcome::Denied { status: 403 }, "{form}: {e}");
            let (head, after) = server.await.unwrap();
            assert!(head.starts_with(request_line), "{form}: {head}");
            assert!(
                head.contains("Transfer-Encoding: chunked\r\n") && head.contains("Expect: 100-continue\r\n"),
                "{head}"
            );
            assert_eq!(after, 0, "{form}: no media after a refusal");
        }
    }
}
