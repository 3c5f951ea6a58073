//! The HTTP front end: live HLS, HTTP MPEG-TS, VOD HLS and the management API on one router.

mod api;
mod dvr;
mod ingest;
pub(crate) mod play;
mod vod;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::configurator::Configurator;
use crate::config::Credential;
use crate::context::Context;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct HttpState {
    pub ctx: Arc<Context>,
    pub edit_auth: Option<Credential>,
    /// The configurator blocks, which the management API can replace (T7).
    pub configurator: Arc<Configurator>,
    /// Closed sessions (`GET …/sessions?closed=true`).
    pub history: crate::history::History,
    /// Stream archives (`/NAME/index-FROM-DUR.m3u8`, `/NAME/archive-FROM-DUR.mp4|ts`).
    pub dvr: Arc<crate::dvr::Dvr>,
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .nest("/streamer/api/v3", api::router(state.clone()))
        .fallback(move |peer: axum::extract::ConnectInfo<SocketAddr>, request: Request| {
            let state = state.clone();
            async move { play::dispatch(state, peer.0, request).await }
        })
}

/// Serves HTTP on `listener` until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, state: Arc<HttpState>, shutdown: CancellationToken) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// The vendor's error body: `{"errors":[{"status":"400","title":"…"}]}`.
pub(crate) fn error_response(status: StatusCode, title: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "errors": [{ "status": status.as_u16().to_string(), "title": title.into() }]
    });
    (status, axum::Json(body)).into_response()
}

pub(crate) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}
