//! The HTTP front end: live HLS, HTTP MPEG-TS, VOD HLS and the management API on one router.

mod api;
mod dvr;
mod fast;
mod ingest;
pub(crate) mod play;
mod vod;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::auth::configurator::Configurator;
use crate::config::Credential;
use crate::context::Context;
use crate::listener::{Listener, Refusal, Service};

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

/// Every route, with the default [`Limits`] on request bodies. Requests need a
/// `ConnectInfo<SocketAddr>` extension (as [`run`] inserts).
pub fn router(state: Arc<HttpState>) -> Router {
    router_with_limits(state, &Limits::default())
}

/// What one client can make the HTTP front end hold or wait for (docs/security.md, "Limits").
/// How many connections it holds is the [`Listener`]'s business.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From the moment a connection is ready for a request until its whole header block has
    /// arrived: a client that sends nothing, or trickles its headers (slowloris), is cut then.
    /// Idle keep-alive connections close after it too.
    pub header_read_timeout: Duration,
    /// Request line and headers together; larger gets 431.
    pub max_header_bytes: usize,
    /// Bodies of management API calls; larger gets 413. (An MPEG-TS upload is media, read as
    /// a stream, and not bounded by this.)
    pub max_api_body: usize,
    /// Threads serving connections, each with a single-threaded runtime; 0: one per core.
    pub workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_api_body: 256 * 1024,
            workers: 0,
        }
    }
}

/// Serves HTTP on `listener` until `shutdown` is cancelled, with the default [`Limits`].
pub async fn run(listener: Listener, state: Arc<HttpState>, shutdown: CancellationToken) -> std::io::Result<()> {
    run_with_limits(listener, state, shutdown, Limits::default()).await
}

/// Serves HTTP/1.1 on `listener` until `shutdown` is cancelled; then open connections finish
/// their current response and close. Dropping the future cuts them.
pub async fn run_with_limits(
    listener: Listener,
    state: Arc<HttpState>,
    shutdown: CancellationToken,
    limits: Limits,
) -> std::io::Result<()> {
    // Connections are served on one single-threaded runtime per core (listener::Workers).
    let workers = match limits.workers {
        0 => crate::listener::Workers::per_core("usher-http")?,
        n => crate::listener::Workers::start(n, "usher-http")?,
    };
    let listener = listener.with_workers(Arc::new(workers));
    let app = router_with_limits(state.clone(), &limits);
    let service = Arc::new(HttpService {
        routes: Routes { app, state },
        limits,
    });
    listener.run(service, shutdown).await
}

/// The HTTP front end as the [`Listener`] runs it.
struct HttpService {
    routes: Routes,
    limits: Limits,
}

impl Service for HttpService {
    async fn serve(self: Arc<Self>, socket: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
        serve_connection(socket, peer, self.routes.clone(), self.limits.clone(), shutdown).await;
    }

    /// A 503 that says which cap it was; a client that sent its request already reads it as the
    /// answer.
    fn refusal(&self, why: Refusal, _peer: SocketAddr) -> Option<Vec<u8>> {
        let body = match why {
            Refusal::AddressFull { per_address } => {
                format!("too many connections from this address (at most {per_address})\n")
            }
            Refusal::Full { .. } => "too many connections\n".to_string(),
        };
        Some(
            format!(
                "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\n\
                 Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }
}

fn router_with_limits(state: Arc<HttpState>, limits: &Limits) -> Router {
    Router::new()
        .nest(
            "/streamer/api/v3",
            api::router(state.clone()).layer(axum::extract::DefaultBodyLimit::max(limits.max_api_body)),
        )
        .fallback(move |peer: ConnectInfo<SocketAddr>, request: Request| {
            let state = state.clone();
            async move { play::dispatch(state, peer.0, request).await }
        })
}

/// The management API's paths: `API_PREFIX` and below.
const API_PREFIX: &str = "/streamer/api/v3";

/// What a connection routes requests to: the router for the management API, and straight to
/// the media handler for everything else (the router's fallback does the same, at the cost of
/// routing and an extension map on every segment request).
#[derive(Clone)]
struct Routes {
    app: Router,
    state: Arc<HttpState>,
}

fn is_api(path: &str) -> bool {
    path.strip_prefix(API_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// One HTTP/1.1 connection, with the header timeout and size limits of `limits`: live HLS
/// requests on the media fast path ([`fast`]), the rest of the connection in hyper from the
/// first request the fast path leaves to it.
async fn serve_connection(
    socket: TcpStream,
    peer: SocketAddr,
    routes: Routes,
    limits: Limits,
    shutdown: CancellationToken,
) {
    // Live segments are written with sendfile (src/zerocopy.rs).
    #[cfg(target_os = "linux")]
    let socket = crate::zerocopy::ZeroCopyStream::new(socket);
    match fast::serve(socket, peer, &routes.state, &limits, &shutdown).await {
        fast::Outcome::Done => {}
        fast::Outcome::Hyper(io) => serve_hyper(io, peer, routes, limits, shutdown).await,
    }
}

/// The rest of a connection in hyper.
async fn serve_hyper<T>(io: T, peer: SocketAddr, routes: Routes, limits: Limits, shutdown: CancellationToken)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let (request, dropped_unread) = ReadToEnd::wrap(request);
        let routes = routes.clone();
        async move {
            let mut response = if is_api(request.uri().path()) {
                let mut request = request;
                request.extensions_mut().insert(ConnectInfo(peer));
                match tower::ServiceExt::oneshot(routes.app, request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            } else {
                play::dispatch(routes.state, peer, request.map(axum::body::Body::new)).await
            };
            if dropped_unread.load(std::sync::atomic::Ordering::Acquire) {
                // The handler let go of the request body unread (a 413): hyper closes the
                // connection after this answer, so say so, or a client may send its next
                // request on it.
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192) + 8192);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// A request body that records being dropped before its end was read (at once for a request
/// without a body, which has nothing to read). hyper closes a connection whose request body
/// was dropped unread; a body still held (a refused upload being drained) keeps it open.
struct ReadToEnd {
    inner: hyper::body::Incoming,
    done: bool,
    dropped_unread: Arc<std::sync::atomic::AtomicBool>,
}

impl ReadToEnd {
    fn wrap(
        request: hyper::Request<hyper::body::Incoming>,
    ) -> (hyper::Request<ReadToEnd>, Arc<std::sync::atomic::AtomicBool>) {
        let dropped_unread = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = dropped_unread.clone();
        let request = request.map(|inner| ReadToEnd {
            done: http_body::Body::is_end_stream(&inner),
            inner,
            dropped_unread: flag,
        });
        (request, dropped_unread)
    }
}

impl Drop for ReadToEnd {
    fn drop(&mut self) {
        if !self.done {
            self.dropped_unread.store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

impl http_body::Body for ReadToEnd {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            self.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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

#[cfg(test)]
mod tests {
    use super::is_api;

    #[test]
    fn only_the_api_prefix_and_below_go_to_the_router() {
        for path in ["/streamer/api/v3", "/streamer/api/v3/", "/streamer/api/v3/streams/s1"] {
            assert!(is_api(path), "{path}");
        }
        for path in [
            "/streamer/api/v3x",
            "/streamer/api/v",
            "/s1/index.m3u8",
            "/",
            "/streamer/api/v3s/x",
        ] {
            assert!(!is_api(path), "{path}");
        }
    }
}
