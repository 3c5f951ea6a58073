//! RTSP front end (RFC 2326): live play of a stream as RTP over the RTSP connection.
//!
//! `rtsp://HOST:PORT/NAME?token=T` (T9; NAME may contain `/`), `proto` = `rtsp` (T8).
//!
//! * **Authorization once per RTSP session.** DESCRIBE asks the auth core through
//!   [`Context::admit_play`] — one backend call for a new session, none for SETUP, PLAY or
//!   keepalives. The grant is bound to the connection, which anchors the session (SESS-07):
//!   the session closes when the connection ends, and a server-side end of the session
//!   (recheck deny, kick, X-Unique, protocol switched off, API DELETE; TIME-05, RESP-02,
//!   BAN-03) closes the connection silently within the sweep interval.
//! * **Absolute control URLs that carry the token.** Clients join relative control URLs by
//!   string pasting (`…?token=T` + `trackID=0` ⇒ `…?token=T/trackID=0`), so the SDP gives
//!   absolute ones; the pasted shape is understood as well.
//! * **Refusals.** Unknown stream 404; denied 403; a backend 302 is answered 403 too (AMB-5
//!   as decided in `decisions.md`: a redirect is a deny for RTSP); no media 503.
//! * **Transport.** Only `RTP/AVP/TCP` interleaved (§10.12); UDP gets 461 Unsupported
//!   Transport, after which ffmpeg retries over TCP. RTP is H.264 (RFC 6184) and, when the
//!   source has it, AAC as `mpeg4-generic` (RFC 3640).
//! * **Robustness.** One task per connection under the [`Listener`]'s caps (a connection over
//!   them is closed at once), a deadline for the first request and for idle control
//!   connections, bounded request sizes. Bad input gets 400 or
//!   413 and a close of that connection only, logged with the peer address.

mod connection;
pub(crate) mod framing;
pub mod rtp;
mod sdp;
pub(crate) mod target;
pub(crate) mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::listener::{Listener, Service};

pub use connection::SESSION_TIMEOUT_SECS;

/// Bounds on what one client can make the server hold or wait for (how many connections it
/// holds is the [`Listener`]'s business).
#[derive(Debug, Clone)]
pub struct Limits {
    /// From accept to the first whole request.
    pub first_request_timeout: Duration,
    /// Between requests on a connection that is not playing (the announced session timeout;
    /// a playing connection is held by its TCP connection instead).
    pub idle_timeout: Duration,
    /// For one write; a client that stops reading is dropped after it.
    pub write_timeout: Duration,
    /// How long PLAY waits for the source's first access unit before answering anyway.
    pub first_media_timeout: Duration,
    /// Request line and headers.
    pub max_head: usize,
    /// Request body (by Content-Length).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(SESSION_TIMEOUT_SECS),
            write_timeout: Duration::from_secs(10),
            first_media_timeout: Duration::from_secs(5),
            max_head: 8 * 1024,
            max_body: 8 * 1024,
        }
    }
}

/// Serves RTSP on `listener` until `shutdown` is cancelled, with the default [`Limits`].
pub async fn run(listener: Listener, ctx: Arc<Context>, shutdown: CancellationToken) -> std::io::Result<()> {
    run_with_limits(listener, ctx, shutdown, Limits::default()).await
}

/// Serves RTSP on `listener` until `shutdown` is cancelled, then waits for the connections
/// to close (they see the same cancellation).
pub async fn run_with_limits(
    listener: Listener,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    limits: Limits,
) -> std::io::Result<()> {
    listener.run(Arc::new(RtspService { ctx, limits }), shutdown).await
}

/// The RTSP front end as the [`Listener`] runs it.
struct RtspService {
    ctx: Arc<Context>,
    limits: Limits,
}

impl Service for RtspService {
    async fn serve(self: Arc<Self>, socket: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
        let local = match socket.local_addr() {
            Ok(local) => local,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "RTSP connection gone before it was served");
                return;
            }
        };
        tracing::debug!(%peer, "RTSP connection accepted");
        connection::Connection::new(socket, peer, local, self.ctx.clone(), self.limits.clone(), shutdown)
            .run()
            .await;
    }
}
