//! The media fast path: a lean HTTP/1.1 loop for live HLS playlist and segment GETs.
//!
//! Nearly every request a loaded server answers is a viewer's `GET /NAME/index.m3u8` or
//! `GET /NAME/segment-N.ts` on a kept-alive connection. This loop reads such a request's head,
//! hands it to the same media handler (`play::dispatch`) and writes the answer itself, without
//! hyper's per-request machinery (docs/performance.md, section 1). Whatever it does not fully
//! own goes to hyper with the bytes read so far, for the rest of the connection: any other
//! method or path (the management API, MPEG-TS play and publish, DVR, VOD), HTTP/1.0, a
//! request with a body, `Upgrade` or `Expect`, a head it cannot parse (hyper answers 400) or
//! one over the size limit (hyper answers 431). So clients see hyper's behaviour on every
//! unusual request, and the fast path's behaviour on the usual ones is tested against it.
//!
//! Limits are the same as hyper's: the header read timeout runs from the moment the
//! connection is ready for a request until its head is complete (a quiet kept-alive connection
//! closes after it), and the head is bounded by `max_header_bytes`.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::{HttpState, Limits};

/// Headers a fast-path request may carry; more goes to hyper (which allows 100).
const MAX_HEADERS: usize = 48;
/// First read buffer of a connection; it grows up to the header limit.
const READ_CHUNK: usize = 4096;

/// How a connection left the fast path.
pub(super) enum Outcome<T> {
    /// Closed, or ended on purpose (timeout, shutdown, `Connection: close`, a write error).
    Done,
    /// A request the fast path leaves to hyper: serve the rest of the connection there,
    /// starting with these bytes.
    Hyper(Rewind<T>),
}

/// Serves requests on `io` while they are live HLS GETs; see the module's text.
pub(super) async fn serve<T>(
    mut io: T,
    peer: SocketAddr,
    state: &Arc<HttpState>,
    limits: &Limits,
    shutdown: &CancellationToken,
) -> Outcome<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut head_out = Vec::with_capacity(256);
    // One timer and one shutdown waiter for the connection's life: re-armed only when they
    // fire early, not on every request.
    let stop = shutdown.clone().cancelled_owned();
    tokio::pin!(stop);
    let timer = tokio::time::sleep(limits.header_read_timeout);
    tokio::pin!(timer);
    loop {
        // The deadline of this head: now plus the timeout (hyper's header_read_timeout).
        let deadline = tokio::time::Instant::now() + limits.header_read_timeout;
        let parsed = loop {
            if !buf.is_empty() {
                match parse_head(&buf) {
                    // Over the limit, if whole: hyper's 431, as for a partial one.
                    Parsed::Complete(head) if head.len > limits.max_header_bytes => {
                        return Outcome::Hyper(Rewind::new(buf.freeze(), io));
                    }
                    Parsed::Complete(head) => break head,
                    Parsed::Hyper => return Outcome::Hyper(Rewind::new(buf.freeze(), io)),
                    Parsed::Partial if buf.len() >= limits.max_header_bytes => {
                        return Outcome::Hyper(Rewind::new(buf.freeze(), io));
                    }
                    Parsed::Partial => {}
                }
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_CHUNK);
            }
            let read = loop {
                tokio::select! {
                    biased;
                    read = io.read_buf(&mut buf) => break Some(read),
                    () = &mut stop => break None,
                    () = &mut timer => {
                        if tokio::time::Instant::now() >= deadline {
                            break None;
                        }
                        timer.as_mut().reset(deadline);
                    }
                }
            };
            match read {
                // Closed, failed, out of time, or the server stops between requests (as hyper's
                // graceful end closes an idle connection).
                Some(Ok(0)) | Some(Err(_)) | None => return Outcome::Done,
                Some(Ok(_)) => {}
            }
        };
        let Head {
            request,
            len,
            keep_alive,
            head_method,
        } = parsed;
        buf.advance(len);
        let response = super::play::dispatch(state.clone(), peer, request).await;
        let keep_alive = keep_alive && !shutdown.is_cancelled();
        let written = write_response(&mut io, response, head_method, keep_alive, &mut head_out).await;
        if !matches!(written, Ok(true)) {
            let _ = io.shutdown().await;
            return Outcome::Done;
        }
    }
}

/// A request head the fast path serves.
struct Head {
    request: Request<Body>,
    /// Bytes of the head in the buffer.
    len: usize,
    keep_alive: bool,
    head_method: bool,
}

// Built and taken apart once per request on the stack; boxing the head would cost an
// allocation per request on the path this module exists to make cheap.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Complete(Head),
    Partial,
    /// Not for the fast path (or not valid): hyper serves it, and answers errors its way.
    Hyper,
}

/// Whether a (still encoded) path names a live HLS playlist or segment, read as
/// `play::parse_path` reads the last segment; the rest of the path is `dispatch`'s to decode.
fn is_hls_resource(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    matches!(
        super::play::resource_of(last),
        Some(super::play::Resource::Playlist | super::play::Resource::Segment(_))
    )
}

fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Hyper,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Hyper;
    };
    let head_method = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Parsed::Hyper,
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if !path.starts_with('/') || super::is_api(path) || !is_hls_resource(path) {
        return Parsed::Hyper;
    }
    let Ok(uri) = Uri::try_from(target) else {
        return Parsed::Hyper;
    };
    let mut map = HeaderMap::with_capacity(req.headers.len());
    let mut keep_alive = true;
    for h in req.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Parsed::Hyper;
        };
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            // A body on a GET: hyper reads (or refuses) it.
            return Parsed::Hyper;
        }
        if name == header::UPGRADE || name == header::EXPECT {
            return Parsed::Hyper;
        }
        if name == header::CONNECTION {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parsed::Hyper;
                }
            }
        }
        let Ok(value) = HeaderValue::from_bytes(h.value) else {
            return Parsed::Hyper;
        };
        map.append(name, value);
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = if head_method { Method::HEAD } else { Method::GET };
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = map;
    Parsed::Complete(Head {
        request,
        len,
        keep_alive,
        head_method,
    })
}

/// Writes `response` as HTTP/1.1 with `Content-Length` (a HEAD answer carries it without the
/// body, as hyper's does); returns whether the connection stays open. Playlists and segments
/// always know their length; a body that did not would be sent whole and the connection
/// closed after it, which ends such a body in HTTP/1.1.
async fn write_response<T>(
    io: &mut T,
    response: Response<Body>,
    head_method: bool,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> io::Result<bool>
where
    T: AsyncWrite + Unpin,
{
    let (parts, mut body) = response.into_parts();
    let exact = http_body::Body::size_hint(&body).exact();
    // 204 and 304 carry no body and no length.
    let no_body_status = parts.status == StatusCode::NO_CONTENT || parts.status == StatusCode::NOT_MODIFIED;
    let bodiless = head_method || no_body_status;
    let mut close = !keep_alive || (exact.is_none() && !bodiless);
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in parts.headers.iter() {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING || name == header::DATE {
            continue;
        }
        if name == header::CONNECTION {
            close |= value.as_bytes().eq_ignore_ascii_case(b"close");
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if let Some(len) = exact.filter(|_| !no_body_status) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(len.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(&http_date());
    out.extend_from_slice(b"\r\n\r\n");
    // The head and the first bytes in one vectored write: the zero-copy socket sends a mapped
    // segment's bytes with sendfile right behind the head.
    let mut head: &[u8] = out;
    while !bodiless && let Some(data) = next_data(&mut body).await? {
        io.write_all_buf(&mut Buf::chain(head, data)).await?;
        head = &[];
    }
    io.write_all(head).await?;
    io.flush().await?;
    Ok(!close)
}

/// The body's next non-empty data frame (trailers are skipped).
async fn next_data(body: &mut Body) -> io::Result<Option<Bytes>> {
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(io::Error::other)?.into_data()
            && !data.is_empty()
        {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

thread_local! {
    /// The `Date` value, formatted once per second per thread.
    static DATE: std::cell::RefCell<(u64, [u8; 29])> = const { std::cell::RefCell::new((u64::MAX, [0; 29])) };
}

/// `Date` in IMF-fixdate form (29 bytes), as hyper sends it.
fn http_date() -> [u8; 29] {
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    DATE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() == 29 {
                text.copy_from_slice(formatted.as_bytes());
                *at = secs;
            }
        }
        *text
    })
}

/// An IO whose reads start with bytes already read: how a connection goes on in hyper after
/// the fast path has read part of it.
pub(super) struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    fn new(prefix: Bytes, inner: T) -> Rewind<T> {
        Rewind { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
