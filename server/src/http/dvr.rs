//! The archive over HTTP (T9): `/NAME/index-FROM-DUR.m3u8` (also `archive-FROM-DUR.m3u8`),
//! its segments `/NAME/dvr-START_MS.ts`, and the exports `/NAME/archive-FROM-DUR.mp4` and
//! `/NAME/archive-FROM-DUR.ts` (FROM in unix seconds, DUR in seconds).
//!
//! Every request is a play request with `dvr=true` through the one admission path (DVR-01/02):
//! the playlist and its segments are an HLS session (proto `hls`), an MP4 export is proto `mp4`
//! and a TS export proto `tshttp`; an export is a persistent session held by its response, so
//! it closes (and lands in the history with its bytes) when the download ends. After the
//! backend allows, the session's `allowed_dvr_ranges` must cover the asked range (a segment:
//! touch it), else 403 before any media byte (ADV-02).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::play::{client_request, refusal_response, token_query};
use super::{HttpState, error_response};
use crate::auth::{CallKind, ConnectionGuard, PlayRequest, Proto};
use crate::config::DvrConfig;
use crate::dvr::export::{Mp4Export, TsExport};
use crate::dvr::{AllowedRanges, ArchivedSegment, TimeRange};

/// Longest range one request may name: a day.
const MAX_RANGE_SECS: u64 = 24 * 3600;

/// What an archive path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArchiveResource {
    Playlist(TimeRange),
    Segment(i64),
    Mp4(TimeRange),
    Ts(TimeRange),
}

impl ArchiveResource {
    fn proto(self) -> Proto {
        match self {
            ArchiveResource::Playlist(_) | ArchiveResource::Segment(_) => Proto::Hls,
            ArchiveResource::Mp4(_) => Proto::Mp4,
            ArchiveResource::Ts(_) => Proto::Tshttp,
        }
    }
}

/// `FROM-DUR` with plain digits; `None` for anything else or a range out of bounds.
fn range(text: &str) -> Option<TimeRange> {
    let (from, duration) = text.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(from) || !digits(duration) {
        return None;
    }
    let (from, duration): (u64, u64) = (from.parse().ok()?, duration.parse().ok()?);
    if duration == 0 || duration > MAX_RANGE_SECS {
        return None;
    }
    TimeRange::from_secs(from, duration)
}

/// Splits an archive path into the stream name and the resource; `None` if it is not one.
fn parse_path(path: &str) -> Option<(String, ArchiveResource)> {
    // Decoded here, once ([`crate::names`]): the name the backend is asked about is the name
    // whose archive is read.
    let path = crate::names::decode_url_path(path)?;
    let (name, last) = path.strip_prefix('/')?.rsplit_once('/')?;
    if !crate::names::is_valid(name) {
        return None;
    }
    let resource = if let Some(r) = last.strip_prefix("index-").and_then(|r| r.strip_suffix(".m3u8")) {
        ArchiveResource::Playlist(range(r)?)
    } else if let Some(r) = last.strip_prefix("archive-") {
        if let Some(r) = r.strip_suffix(".m3u8") {
            ArchiveResource::Playlist(range(r)?)
        } else if let Some(r) = r.strip_suffix(".mp4") {
            ArchiveResource::Mp4(range(r)?)
        } else {
            ArchiveResource::Ts(range(r.strip_suffix(".ts")?)?)
        }
    } else {
        let start = last.strip_prefix("dvr-")?.strip_suffix(".ts")?;
        if start.is_empty() || start.len() > 15 || !start.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        ArchiveResource::Segment(start.parse().ok()?)
    };
    Some((name.to_string(), resource))
}

/// An archive request, read from the HTTP request before anything is awaited.
pub(super) enum ArchiveRequest {
    /// Answered without asking anyone (bad method, no such stream, no archive).
    Ready(Response),
    Play {
        name: String,
        resource: ArchiveResource,
        config: DvrConfig,
        play: Box<PlayRequest>,
    },
}

/// Recognizes an archive path; `None` hands the request back to live play.
pub(super) fn route(state: &Arc<HttpState>, peer: SocketAddr, request: &Request) -> Option<ArchiveRequest> {
    let (name, resource) = parse_path(request.uri().path())?;
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return Some(ArchiveRequest::Ready(error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET reads the archive",
        )));
    }
    let ctx = &state.ctx;
    // Before the backend is asked: no session is opened for what has no archive.
    let Some(stream) = ctx.streams.lookup(&name) else {
        return Some(ArchiveRequest::Ready(error_response(
            StatusCode::NOT_FOUND,
            format!("no stream `{name}`"),
        )));
    };
    let Some(config) = stream.effective().dvr.clone() else {
        return Some(ArchiveRequest::Ready(error_response(
            StatusCode::NOT_FOUND,
            format!("stream `{name}` has no DVR archive"),
        )));
    };
    let mut play = client_request(ctx, CallKind::Play, &name, resource.proto(), peer, request);
    play.dvr = true;
    Some(ArchiveRequest::Play {
        name,
        resource,
        config,
        play: Box::new(play),
    })
}

/// Serves an archive request: admission with `dvr=true`, the range check, then the media.
pub(super) async fn serve(state: Arc<HttpState>, request: ArchiveRequest) -> Response {
    match request {
        ArchiveRequest::Ready(response) => response,
        ArchiveRequest::Play {
            name,
            resource,
            config,
            play,
        } => serve_admitted(&state, name, resource, config, *play)
            .await
            .unwrap_or_else(|r| r),
    }
}

async fn serve_admitted(
    state: &HttpState,
    name: String,
    resource: ArchiveResource,
    config: DvrConfig,
    play: PlayRequest,
) -> Result<Response, Response> {
    let ctx = &state.ctx;
    let admitted = match ctx.admission().admit_play(play).await {
        Ok(admitted) => admitted,
        Err(refusal) => return Err(refusal_response(&refusal)),
    };
    let session = admitted.session;
    let Some(ranges) = ctx.admission().allowed_dvr_ranges(&session) else {
        return Err(error_response(StatusCode::FORBIDDEN, "refused: the session was closed"));
    };
    let allowed = AllowedRanges::from_answer(ranges.as_ref());
    let Some(archive) = state.dvr.archive(&name, &config).await else {
        return Err(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the archive of `{name}` cannot be opened"),
        ));
    };
    let forbidden = || {
        tracing::info!(stream = %name, session_id = %session.session_id(), ?resource, "archive range outside allowed_dvr_ranges; refused");
        error_response(
            StatusCode::FORBIDDEN,
            "refused: the range is outside the archive ranges this session may read",
        )
    };
    let response = match resource {
        ArchiveResource::Playlist(range) => {
            if !allowed.covers(&range) {
                return Err(forbidden());
            }
            let segments = archive.overlapping(&range);
            if segments.is_empty() {
                return Err(no_archive(&name, &range));
            }
            let text = playlist(&segments, &token_query(ctx, session.token()));
            session.add_bytes(text.len() as u64);
            (
                [
                    (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                text,
            )
                .into_response()
        }
        ArchiveResource::Segment(start_ms) => {
            let Some(segment) = archive.segment(start_ms) else {
                return Err(error_response(
                    StatusCode::NOT_FOUND,
                    format!("no archived segment at {start_ms}"),
                ));
            };
            if !allowed.touches(&segment.range()) {
                return Err(forbidden());
            }
            match tokio::fs::read(&segment.path).await {
                Ok(bytes) => {
                    session.add_bytes(bytes.len() as u64);
                    ([(header::CONTENT_TYPE, "video/mp2t")], bytes).into_response()
                }
                Err(e) => {
                    tracing::debug!(file = %segment.path.display(), error = %e, "archived segment unreadable");
                    error_response(StatusCode::NOT_FOUND, format!("no archived segment at {start_ms}"))
                }
            }
        }
        ArchiveResource::Mp4(range) | ArchiveResource::Ts(range) => {
            if !allowed.covers(&range) {
                return Err(forbidden());
            }
            let segments = archive.centred_in(&range);
            if segments.is_empty() {
                return Err(no_archive(&name, &range));
            }
            let guard = ctx.admission().attach(&session);
            let (content_type, extension, body) = match resource {
                ArchiveResource::Mp4(_) => (
                    "video/mp4",
                    "mp4",
                    export_body(Export::Mp4(Box::new(Mp4Export::new(segments))), guard),
                ),
                _ => (
                    "video/mp2t",
                    "ts",
                    export_body(Export::Ts(TsExport::new(segments)), guard),
                ),
            };
            let file = format!(
                "attachment; filename=\"{}-{}-{}.{extension}\"",
                name.replace(['/', '"'], "_"),
                range.from / 1000,
                (range.to - range.from) / 1000
            );
            (
                [
                    (header::CONTENT_TYPE, content_type.to_string()),
                    (header::CONTENT_DISPOSITION, file),
                ],
                body,
            )
                .into_response()
        }
    };
    Ok(response)
}

fn no_archive(name: &str, range: &TimeRange) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!(
            "stream `{name}` has no archive from {} for {} s",
            range.from / 1000,
            (range.to - range.from) / 1000
        ),
    )
}

/// An ENDLIST playlist of archived segments; `query` (the token) goes on every URI.
fn playlist(segments: &[ArchivedSegment], query: &str) -> String {
    let longest = segments.iter().map(|s| s.duration_ms).max().unwrap_or(1000);
    let target = u64::try_from(longest).unwrap_or(1000).div_ceil(1000).max(1);
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"
    );
    let mut previous_end = None;
    for s in segments {
        if previous_end.is_some_and(|end| end != s.start_ms) || (previous_end.is_some() && s.discontinuity) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        out.push_str(&format!(
            "#EXTINF:{:.3},\ndvr-{}.ts{query}\n",
            s.duration_ms as f64 / 1000.0,
            s.start_ms
        ));
        previous_end = Some(s.start_ms + s.duration_ms);
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

enum Export {
    Mp4(Box<Mp4Export>),
    Ts(TsExport),
}

impl Export {
    async fn next_chunk(&mut self) -> Option<std::io::Result<Bytes>> {
        match self {
            Export::Mp4(e) => e.next_chunk().await,
            Export::Ts(e) => e.next_chunk().await,
        }
    }
}

/// The export as a response body that holds the session open until it ends, the client leaves,
/// or the server ends the session (a kick, a deny on re-check).
fn export_body(export: Export, guard: ConnectionGuard) -> Body {
    let body = futures::stream::unfold(Some((export, guard)), |state| async move {
        let (mut export, guard) = state?;
        let chunk = tokio::select! {
            _ = guard.handle().ended() => None,
            chunk = export.next_chunk() => chunk,
        };
        match chunk? {
            Ok(bytes) => {
                guard.handle().add_bytes(bytes.len() as u64);
                Some((Ok::<Bytes, std::io::Error>(bytes), Some((export, guard))))
            }
            Err(e) => {
                tracing::warn!(error = %e, "dvr export: reading the archive failed; export cut short");
                Some((Err(e), None))
            }
        }
    });
    Body::from_stream(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths() {
        let r = TimeRange::from_secs(1_700_000_000, 60).unwrap();
        assert_eq!(
            parse_path("/s1/index-1700000000-60.m3u8"),
            Some(("s1".into(), ArchiveResource::Playlist(r)))
        );
        assert_eq!(
            parse_path("/live/s1/archive-1700000000-60.m3u8"),
            Some(("live/s1".into(), ArchiveResource::Playlist(r)))
        );
        assert_eq!(
            parse_path("/s1/archive-1700000000-60.mp4"),
            Some(("s1".into(), ArchiveResource::Mp4(r)))
        );
        assert_eq!(
            parse_path("/s1/archive-1700000000-60.ts"),
            Some(("s1".into(), ArchiveResource::Ts(r)))
        );
        assert_eq!(
            parse_path("/s1/dvr-1700000000123.ts"),
            Some(("s1".into(), ArchiveResource::Segment(1_700_000_000_123)))
        );
        for other in [
            "/s1/index.m3u8",
            "/s1/segment-3.ts",
            "/s1/mpegts",
            "/s1/archive-1-0.mp4",
            "/s1/archive-1-86401.mp4",
            "/s1/archive--1-5.ts",
            "/s1/archive-1-5.flv",
            "/s1/index-x-5.m3u8",
            "/../archive-1-5.ts",
            "/archive-1-5.ts",
            "/s1/dvr-.ts",
            "/s1/dvr-99999999999999999999.ts",
        ] {
            assert_eq!(parse_path(other), None, "{other}");
        }
    }

    proptest::proptest! {
        /// However a client writes a name in an archive path, the name read is that name
        /// exactly (decoded once).
        #[test]
        fn any_encoding_of_a_name_reads_as_that_name(
            (name, encoded) in crate::names::tests::name_and_encoding()
        ) {
            let r = TimeRange::from_secs(1_700_000_000, 60).unwrap();
            for (last, resource) in [
                ("index-1700000000-60.m3u8", ArchiveResource::Playlist(r)),
                ("archive-1700000000-60.mp4", ArchiveResource::Mp4(r)),
                ("archive-1700000000-60.ts", ArchiveResource::Ts(r)),
                ("dvr-1700000000123.ts", ArchiveResource::Segment(1_700_000_000_123)),
            ] {
                let path = format!("/{encoded}/{last}");
                proptest::prop_assert_eq!(parse_path(&path), Some((name.clone(), resource)));
            }
        }
    }

    #[test]
    fn playlist_marks_gaps_and_carries_the_token() {
        let seg = |start_ms, discontinuity| ArchivedSegment {
            start_ms,
            duration_ms: 1000,
            discontinuity,
            path: format!("{start_ms}.ts").into(),
            bytes: 0,
        };
        let text = playlist(&[seg(1000, true), seg(2000, false), seg(5000, false)], "?token=t");
        assert!(text.starts_with("#EXTM3U\n"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY").count(), 1, "{text}");
        assert!(text.contains("dvr-2000.ts?token=t\n"), "{text}");
    }
}
