//! Play over HTTP: live HLS (`/NAME/index.m3u8`, `/NAME/segment-N.ts`) and HTTP MPEG-TS
//! (`/NAME/mpegts`). Every request is authorized by the core; HLS sessions are their identity
//! (SESS-07), an MPEG-TS response holds its session open while it streams.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::{HttpState, error_response, header_str};
use crate::auth::{CallKind, ConnectionGuard, DenyReason, PlayRequest, Proto, SessionHandle, Verdict};
use crate::media::LiveTs;
use crate::streams::Stream;

const TOKEN_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// What a media path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    Playlist,
    Segment(u64),
    MpegTs,
}

/// Splits `/NAME/…/index.m3u8` into the stream name and the resource; names may hold `/`.
fn parse_path(path: &str) -> Option<(String, Resource)> {
    let path = percent_decode_str(path).decode_utf8().ok()?;
    let path = path.strip_prefix('/')?;
    let (name, last) = path.rsplit_once('/')?;
    if name.is_empty() || name.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return None;
    }
    let resource = match last {
        "index.m3u8" | "mono.m3u8" | "video.m3u8" => Resource::Playlist,
        "mpegts" => Resource::MpegTs,
        other => {
            let seq = other.strip_prefix("segment-")?.strip_suffix(".ts")?;
            Resource::Segment(seq.parse().ok()?)
        }
    };
    Some((name.to_string(), resource))
}

pub(super) async fn dispatch(state: Arc<HttpState>, peer: SocketAddr, request: Request) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return error_response(StatusCode::METHOD_NOT_ALLOWED, "only GET plays media");
    }
    let Some((name, resource)) = parse_path(request.uri().path()) else {
        return error_response(
            StatusCode::NOT_FOUND,
            format!("no such resource `{}`", request.uri().path()),
        );
    };
    let Some(stream) = state.streams.find(&name) else {
        return error_response(StatusCode::NOT_FOUND, format!("no stream `{name}`"));
    };
    let proto = match resource {
        Resource::MpegTs => Proto::Tshttp,
        _ => Proto::Hls,
    };
    let effective = stream.effective();
    let switch = proto.switch_name().unwrap_or_default();
    if effective.protocols.get(switch) == Some(false) {
        return refused(StatusCode::FORBIDDEN, DenyReason::ProtocolOff);
    }
    let play = play_request(&state, &name, proto, peer, &request);
    let verdict = state.core.authorize(effective.on_play.as_ref(), play).await;
    let handle = match verdict {
        Verdict::Allow(handle) => handle,
        Verdict::Deny { status, reason } => {
            return refused(StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN), reason);
        }
        Verdict::Redirect { location } => return redirect(&location),
    };
    // The answer that admitted this client may have switched the protocol off (CONF-03).
    if stream.effective().protocols.get(switch) == Some(false) || handle.is_ended() {
        return refused(StatusCode::FORBIDDEN, DenyReason::ProtocolOff);
    }
    match resource {
        Resource::Playlist => playlist(&state, &stream, &handle),
        Resource::Segment(seq) => segment(&stream, &handle, seq),
        Resource::MpegTs => mpegts(&state, &stream, handle),
    }
}

fn play_request(state: &HttpState, name: &str, proto: Proto, peer: SocketAddr, request: &Request) -> PlayRequest {
    let token_param = state.token_param();
    let raw_qs = request.uri().query().map(str::to_string);
    let query: Vec<(String, String)> = raw_qs
        .as_deref()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let token = query.iter().find(|(k, _)| *k == token_param).map(|(_, v)| v.clone());
    let headers = request.headers();
    PlayRequest {
        kind: CallKind::Play,
        name: name.to_string(),
        proto,
        ip: peer.ip(),
        token,
        qs: raw_qs,
        query,
        headers: headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
            .collect(),
        referer: header_str(headers, "referer"),
        user_agent: header_str(headers, "user-agent"),
        host: header_str(headers, "host"),
        dvr: false,
    }
}

fn refused(status: StatusCode, reason: DenyReason) -> Response {
    let title = match reason {
        DenyReason::Backend => "refused by the authorization backend",
        DenyReason::Banned => "refused: a recent denial is cached",
        DenyReason::Kicked => "refused: closed by a per-user session limit",
        DenyReason::NoToken => "refused: a token is required",
        DenyReason::DomainLock => "refused: the referring site is not allowed",
        DenyReason::NoDecision => "refused: the authorization backend gave no decision",
        DenyReason::ProtocolOff => "refused: this protocol is switched off for the stream",
        DenyReason::Gone => "refused: the session was closed",
    };
    error_response(status, title)
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => error_response(StatusCode::BAD_GATEWAY, "the backend redirected to an invalid Location"),
    }
}

fn media_error(stream: &Stream, e: impl std::fmt::Display) -> Response {
    tracing::warn!(stream = stream.name(), error = %e, "stream has no media");
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("stream `{}` has no media: {e}", stream.name()),
    )
}

fn playlist(state: &HttpState, stream: &Stream, handle: &SessionHandle) -> Response {
    let media = match stream.media() {
        Ok(m) => m,
        Err(e) => return media_error(stream, e),
    };
    // Segment URIs carry the token so the player stays in its session (and a generated
    // token, TOK-02, sticks).
    let query = format!(
        "?{}={}",
        state.token_param(),
        utf8_percent_encode(handle.token(), TOKEN_VALUE)
    );
    let text = media.playlist(&query);
    handle.add_bytes(text.len() as u64);
    (
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response()
}

fn segment(stream: &Stream, handle: &SessionHandle, seq: u64) -> Response {
    let media = match stream.media() {
        Ok(m) => m,
        Err(e) => return media_error(stream, e),
    };
    match media.segment(seq) {
        Some(bytes) => {
            handle.add_bytes(bytes.len() as u64);
            ([(header::CONTENT_TYPE, "video/mp2t")], bytes).into_response()
        }
        None => error_response(
            StatusCode::NOT_FOUND,
            format!("segment {seq} is not in the live window"),
        ),
    }
}

/// Streams TS until the client leaves or the session is ended by the server (RESP-02).
fn mpegts(state: &HttpState, stream: &Stream, handle: SessionHandle) -> Response {
    let media = match stream.media() {
        Ok(m) => m,
        Err(e) => return media_error(stream, e),
    };
    let guard = state.core.attach(&handle);
    let feed = media.live_ts();
    let body = futures::stream::unfold(Some((feed, guard)), |state| async move {
        let (mut feed, guard): (LiveTs, ConnectionGuard) = state?;
        let chunk = tokio::select! {
            _ = guard.handle().ended() => None,
            chunk = feed.next_chunk() => chunk,
        };
        let chunk: Bytes = chunk?;
        guard.handle().add_bytes(chunk.len() as u64);
        Some((Ok::<Bytes, std::io::Error>(chunk), Some((feed, guard))))
    });
    ([(header::CONTENT_TYPE, "video/mp2t")], Body::from_stream(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse_path("/s1/index.m3u8"), Some(("s1".into(), Resource::Playlist)));
        assert_eq!(
            parse_path("/live/s1/segment-12.ts"),
            Some(("live/s1".into(), Resource::Segment(12)))
        );
        assert_eq!(parse_path("/s1/mpegts"), Some(("s1".into(), Resource::MpegTs)));
        assert_eq!(parse_path("/s1/segment-x.ts"), None);
        assert_eq!(parse_path("/../s1/index.m3u8"), None);
        assert_eq!(parse_path("//index.m3u8"), None);
        assert_eq!(parse_path("/index.m3u8"), None);
    }
}
