//! HTTP MPEG-TS publishing: `PUT`/`POST /NAME/mpegts` with a TS body (PUB-03, PUB-06). The
//! publisher is admitted before any media is read (PUB-01); the upload is the publish
//! session's connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::play::{client_request, refusal_response};
use super::{HttpState, error_response};
use crate::auth::{CallKind, Proto};
use crate::media::TsIngest;

pub(super) async fn publish_mpegts(
    state: Arc<HttpState>,
    peer: SocketAddr,
    name: String,
    request: Request,
) -> Response {
    let req = client_request(&state.ctx, CallKind::Publish, &name, Proto::Tshttp, peer, &request);
    let password = req.query.iter().find(|(k, _)| k == "password").map(|(_, v)| v.clone());
    let admitted = match state.ctx.admission().admit_publish(req, password.as_deref()).await {
        Ok(a) => a,
        Err(refusal) => {
            discard_upload(request.into_body().into_data_stream());
            return refusal_response(&refusal);
        }
    };
    let guard = state.ctx.admission().attach(&admitted.session);
    let mut publisher = admitted.publisher;
    let mut ingest = TsIngest::new();
    let mut known = ingest.codecs().clone();
    let mut body = request.into_body().into_data_stream();
    tracing::info!(stream = %name, ip = %peer.ip(), "HTTP MPEG-TS publisher admitted");
    loop {
        let chunk = tokio::select! {
            _ = guard.handle().ended() => {
                tracing::info!(stream = %name, "publish session ended by the server");
                discard_upload(body);
                return error_response(StatusCode::FORBIDDEN, "the publish session was ended");
            }
            chunk = body.next() => chunk,
        };
        let bytes = match chunk {
            None => break,
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => {
                tracing::info!(stream = %name, error = %e, "publisher upload broke off");
                return error_response(StatusCode::BAD_REQUEST, format!("upload broke off: {e}"));
            }
        };
        guard.handle().add_bytes(bytes.len() as u64);
        let units = match ingest.push(&bytes) {
            Ok(units) => units,
            Err(e) => {
                tracing::warn!(stream = %name, error = %e, "publisher sent bad MPEG-TS");
                discard_upload(body);
                return error_response(StatusCode::BAD_REQUEST, e.to_string());
            }
        };
        if ingest.codecs() != &known {
            known = ingest.codecs().clone();
            publisher.set_codecs(known.clone());
        }
        for unit in units {
            publisher.push(unit);
        }
    }
    // The last video PES has no length and ends only with the upload.
    for unit in ingest.finish() {
        publisher.push(unit);
    }
    tracing::info!(stream = %name, bytes = guard.handle().bytes(), "HTTP MPEG-TS publisher finished");
    StatusCode::NO_CONTENT.into_response()
}

/// How much of a refused upload is read and thrown away, and for how long at most.
const DISCARD_BYTES: usize = 4 * 1024 * 1024;
const DISCARD_TIME: Duration = Duration::from_secs(3);

/// A refused or stopped publisher is usually still sending its upload. Closing the connection
/// with its bytes unread breaks the publisher's write (a reset), and an HTTP client that is
/// still writing then reports the broken pipe instead of the refusal it was sent. So the upload is
/// read and thrown away while the refusal goes out, up to [`DISCARD_BYTES`] in
/// [`DISCARD_TIME`] (what a refused stranger can make the server read), as a web server's
/// lingering close does; an upload read whole leaves the connection usable for the next request.
fn discard_upload(mut body: axum::body::BodyDataStream) {
    tokio::spawn(async move {
        let drained = async {
            let mut read = 0;
            while read < DISCARD_BYTES {
                match body.next().await {
                    Some(Ok(bytes)) => read += bytes.len(),
                    _ => break,
                }
            }
        };
        let _ = tokio::time::timeout(DISCARD_TIME, drained).await;
    });
}
