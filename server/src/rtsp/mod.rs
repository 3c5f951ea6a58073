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
//! * **Robustness.** One task per connection, a connection limit, a deadline for the first
//!   request and for idle control connections, bounded request sizes. Bad input gets 400 or
//!   413 and a close of that connection only, logged with the peer address.

mod connection;
pub(crate) mod framing;
pub mod rtp;
mod sdp;
pub(crate) mod target;
pub(crate) mod transport;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::context::Context;

pub use connection::SESSION_TIMEOUT_SECS;

/// Bounds on what one client can make the server hold or wait for.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Open connections from one address; more are closed right after accept, so one address
    /// cannot hold every slot of [`max_connections`](Self::max_connections).
    pub max_connections_per_ip: usize,
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
            max_connections: 1024,
            max_connections_per_ip: crate::peer_limit::DEFAULT_PER_IP,
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
pub async fn run(listener: TcpListener, ctx: Arc<Context>, shutdown: CancellationToken) -> std::io::Result<()> {
    run_with_limits(listener, ctx, shutdown, Limits::default()).await
}

/// Serves RTSP on `listener` until `shutdown` is cancelled, then waits for the connections
/// to close (they see the same cancellation).
pub async fn run_with_limits(
    listener: TcpListener,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    limits: Limits,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_ip = crate::peer_limit::PerIp::new(limits.max_connections_per_ip);
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_) => break,
            },
        };
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: transient; back off instead of spinning.
                    tracing::warn!(error = %e, "RTSP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = per_ip.try_acquire(peer.ip()) else {
            tracing::warn!(%peer, limit = per_ip.max(), "RTSP connections per address at the limit; closing the new one");
            continue;
        };
        let local = match socket.local_addr() {
            Ok(local) => local,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "RTSP connection gone before it was served");
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        tracing::debug!(%peer, "RTSP connection accepted");
        let handler = connection::Connection::new(socket, peer, local, ctx.clone(), limits.clone(), shutdown.clone());
        tracker.spawn(async move {
            handler.run().await;
            drop((permit, slot));
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}
