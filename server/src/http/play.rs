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
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{HttpState, error_response, header_str};
use crate::auth::{CallKind, ConnectionGuard, PlayRequest, Proto};
use crate::context::{Admitted, Context, Refusal};
use crate::media::LiveTs;

const TOKEN_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// What a media path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resource {
    Playlist,
    Segment(u64),
    MpegTs,
}

/// Splits `/NAME/…/index.m3u8` into the stream name and the resource; names may hold `/`.
/// The path is percent-decoded here, once ([`crate::names`]); the name goes on as it is.
pub(crate) fn parse_path(path: &str) -> Option<(String, Resource)> {
    let path = crate::names::decode_url_path(path)?;
    let path = path.strip_prefix('/')?;
    let (name, last) = path.rsplit_once('/')?;
    if !crate::names::is_valid(name) {
        return None;
    }
    Some((name.to_string(), resource_of(last)?))
}

/// What the last segment of a media path names (`index.m3u8`, `segment-N.ts`, `mpegts`).
pub(crate) fn resource_of(last: &str) -> Option<Resource> {
    Some(match last {
        "index.m3u8" | "mono.m3u8" | "video.m3u8" => Resource::Playlist,
        "mpegts" => Resource::MpegTs,
        other => {
            let seq = other.strip_prefix("segment-")?.strip_suffix(".ts")?;
            Resource::Segment(seq.parse().ok()?)
        }
    })
}

pub(super) async fn dispatch(state: Arc<HttpState>, peer: SocketAddr, request: Request) -> Response {
    if let Some(archive) = super::dvr::route(&state, peer, &request) {
        return super::dvr::serve(state, archive).await;
    }
    let Some((name, resource)) = parse_path(request.uri().path()) else {
        return error_response(
            StatusCode::NOT_FOUND,
            format!("no such resource `{}`", request.uri().path()),
        );
    };
    let method = request.method().clone();
    if resource == Resource::MpegTs && (method == Method::PUT || method == Method::POST) {
        return super::ingest::publish_mpegts(state, peer, name, request).await;
    }
    if method != Method::GET && method != Method::HEAD {
        return error_response(StatusCode::METHOD_NOT_ALLOWED, "only GET plays media");
    }
    let proto = match resource {
        Resource::MpegTs => Proto::Tshttp,
        _ => Proto::Hls,
    };
    if state.ctx.streams.lookup(&name).is_none()
        && let Some(vod) = state.ctx.streams.vod(&name)
    {
        if resource == Resource::MpegTs {
            // Before the backend is asked: no session is opened for what cannot play.
            return error_response(
                StatusCode::NOT_FOUND,
                format!("`{name}` is a VOD file: it plays over HLS only"),
            );
        }
        let play = client_request(&state.ctx, CallKind::Play, &name, Proto::Hls, peer, &request);
        return super::vod::serve(&state.ctx, play, resource, &vod).await;
    }
    let play = client_request(&state.ctx, CallKind::Play, &name, proto, peer, &request);
    let client_query = play.query.clone();
    let admitted = match state.ctx.admission().admit_play(play).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal_response(&refusal),
    };
    match resource {
        Resource::Playlist => playlist(&state.ctx, &admitted, &client_query),
        Resource::Segment(seq) => segment(&admitted, seq),
        Resource::MpegTs => mpegts(&state.ctx, admitted),
    }
}

/// The auth core's view of an HTTP request.
pub(super) fn client_request(
    ctx: &Context,
    kind: CallKind,
    name: &str,
    proto: Proto,
    peer: SocketAddr,
    request: &Request,
) -> PlayRequest {
    let raw_qs = request.uri().query().map(str::to_string);
    let query: Vec<(String, String)> = raw_qs
        .as_deref()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let token = ctx.token_from_query(&query);
    let headers = request.headers();
    PlayRequest {
        kind,
        name: name.to_string(),
        proto,
        ip: peer.ip(),
        token,
        qs: raw_qs,
        query,
        headers: headers.clone(),
        // Read even when it is not ASCII (an IDN written as is): a Referer that cannot be read
        // must not count as no Referer, which the domain lock lets through (DOM-02).
        referer: headers
            .get(header::REFERER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        user_agent: header_str(headers, "user-agent"),
        host: header_str(headers, "host"),
        dvr: false,
    }
}

/// HTTP status and body for a refusal: 404 unknown stream, 403 denied, 414 token or name over
/// its limit, 302 redirect, 503 no media or a busy publish point.
pub(super) fn refusal_response(refusal: &Refusal) -> Response {
    use crate::auth::DenyReason::{NameTooLong, TokenTooLong};
    match refusal {
        Refusal::NotFound(_) => error_response(StatusCode::NOT_FOUND, refusal.describe()),
        Refusal::Denied(TokenTooLong | NameTooLong) => error_response(StatusCode::URI_TOO_LONG, refusal.describe()),
        Refusal::Denied(_) => error_response(StatusCode::FORBIDDEN, refusal.describe()),
        Refusal::Redirect(location) => redirect(location),
        Refusal::Unavailable(_) => error_response(StatusCode::SERVICE_UNAVAILABLE, refusal.describe()),
    }
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

fn playlist(ctx: &Context, admitted: &Admitted, client_query: &[(String, String)]) -> Response {
    // Segment URIs carry the client's query so every segment request has the same identity
    // (`query.<param>` session keys, SESS-04) and the session's token (a generated one sticks,
    // TOK-02).
    let query = segment_query(ctx, admitted.session.token(), client_query);
    let text = admitted.media.playlist(&query);
    admitted.session.add_bytes(text.len() as u64);
    (
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response()
}

/// The client's query parameters with the token parameter set to the session's token, for
/// the segment URIs of a playlist.
pub(super) fn segment_query(ctx: &Context, token: &str, client_query: &[(String, String)]) -> String {
    segment_query_for(&ctx.token_param(), token, client_query)
}

/// [`segment_query`] with the token parameter's name given.
pub(crate) fn segment_query_for(param: &str, token: &str, client_query: &[(String, String)]) -> String {
    let mut out = String::from("?");
    for (k, v) in client_query.iter().filter(|(k, _)| *k != param) {
        out.extend(utf8_percent_encode(k, TOKEN_VALUE));
        out.push('=');
        out.extend(utf8_percent_encode(v, TOKEN_VALUE));
        out.push('&');
    }
    out.push_str(param);
    out.push('=');
    out.extend(utf8_percent_encode(token, TOKEN_VALUE));
    out
}

/// `?<auth_token>=<token>`, for the segment URIs of a playlist.
pub(super) fn token_query(ctx: &Context, token: &str) -> String {
    format!("?{}={}", ctx.token_param(), utf8_percent_encode(token, TOKEN_VALUE))
}

fn segment(admitted: &Admitted, seq: u64) -> Response {
    match admitted.media.segment(seq) {
        Some(bytes) => {
            admitted.session.add_bytes(bytes.len() as u64);
            ([(header::CONTENT_TYPE, "video/mp2t")], bytes).into_response()
        }
        None => error_response(
            StatusCode::NOT_FOUND,
            format!("segment {seq} is not in the live window"),
        ),
    }
}

/// Streams TS until the client leaves or the session is ended by the server (RESP-02).
fn mpegts(ctx: &Context, admitted: Admitted) -> Response {
    let guard = ctx.admission().attach(&admitted.session);
    let feed = admitted.media.live_ts();
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
        // Decoded once: `%2570` is the name `%70`, never `p`.
        assert_eq!(
            parse_path("/vods/%2570remium.mp4/index.m3u8"),
            Some(("vods/%70remium.mp4".into(), Resource::Playlist))
        );
    }

    proptest::proptest! {
        /// However a client writes a name in the path, the name read is that name exactly.
        #[test]
        fn any_encoding_of_a_name_reads_as_that_name(
            (name, encoded) in crate::names::tests::name_and_encoding()
        ) {
            for (last, resource) in [
                ("index.m3u8", Resource::Playlist),
                ("segment-3.ts", Resource::Segment(3)),
                ("mpegts", Resource::MpegTs),
            ] {
                let path = format!("/{encoded}/{last}");
                proptest::prop_assert_eq!(parse_path(&path), Some((name.clone(), resource)));
            }
        }
    }
}
