//! VOD over HLS: `/LOCATION/FILE/index.m3u8` (the whole file, EXT-X-ENDLIST) and
//! `/LOCATION/FILE/segment-N.ts`. Every request is authorized like a live HLS one, by the
//! location's `on_play`, under the name `LOCATION/FILE` and proto `hls`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error_response;
use super::play::{Resource, refusal_response, segment_query};
use crate::auth::PlayRequest;
use crate::context::Context;
use crate::streams::VodRequest;

/// Answers one VOD HLS request (`play` is its auth request, proto `hls`).
pub(super) async fn serve(ctx: &Context, play: PlayRequest, resource: Resource, vod: &VodRequest) -> Response {
    let name = play.name.clone();
    let client_query = play.query.clone();
    let admitted = match ctx.admission().admit_vod(play, vod).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal_response(&refusal),
    };
    match resource {
        Resource::Playlist => {
            // As for live HLS: segment URIs carry the client's query and the session's token.
            let query = segment_query(ctx, admitted.session.token(), &client_query);
            let text = admitted.media.playlist(&query);
            admitted.session.add_bytes(text.len() as u64);
            ([(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")], text).into_response()
        }
        Resource::Segment(sequence) => match admitted.media.segment(sequence) {
            Some(bytes) => {
                admitted.session.add_bytes(bytes.len() as u64);
                ([(header::CONTENT_TYPE, "video/mp2t")], bytes).into_response()
            }
            None => error_response(
                StatusCode::NOT_FOUND,
                format!(
                    "`{name}` has {} segments; there is no segment {sequence}",
                    admitted.media.segment_count()
                ),
            ),
        },
        Resource::MpegTs => error_response(StatusCode::NOT_FOUND, "VOD files play over HLS only"),
    }
}
