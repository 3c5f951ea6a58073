//! RTMP front end: play (`rtmp://HOST/APP/NAME?token=T`, T9) and publish (PUB-01..06) over
//! `rml_rtmp`'s sans-IO handshake and [`ServerSession`](rml_rtmp::sessions::ServerSession),
//! one Tokio task per connection.
//!
//! A connection moves through these states; every decision comes from [`Context`]
//! (`admit_play` / `admit_publish`), never from a backend called here:
//!
//! ```text
//!   accept ──► Handshake ──► ExpectCommand ──play──► admit_play ──ok──► Playing ──┐
//!                 │              │   (connect,          │ refused                 │ session ended
//!                 │              │    createStream…)     ▼                        │ (recheck deny, kick,
//!                 │              │                  reject + close                │  X-Unique, override,
//!                 │              └──publish──► admit_publish ──ok──► Publishing ──┤  API DELETE),
//!                 │                                   │ refused                   │ client left,
//!                 ▼                                   ▼                           ▼ source ended
//!        setup timeout / garbage ─────────────► close (only this connection) ◄────┘
//! ```
//!
//! * The connection is the session (SESS-07): the [`ConnectionGuard`](crate::auth::ConnectionGuard)
//!   lives as long as the socket, and the session closes when it drops.
//! * A session ended by the server closes the socket silently within one second (RESP-02,
//!   BAN-03, TIME-05 and the "Persistent connections" decision): no status message, so a client
//!   that stopped reading cannot delay it.
//! * A refusal is an `_error` answer to `play`/`publish` carrying the reason (ffmpeg exits non-zero
//!   and prints it), then close. A backend 302 is a refusal here: RTMP has no redirect (AMB-5).
//! * A publisher is admitted before any of its media is taken (PUB-01); its password comes from
//!   `?password=` in the stream key (PUB-04).
//! * Hostile input costs one connection: `inbound.rs` refuses what `rml_rtmp` cannot take.

mod amf;
mod connection;
pub mod flv;
pub(crate) mod inbound;
mod names;
mod play;
mod publish;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::Context;

/// Connections served at once; more are closed right after accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// From accept until the client has asked to play or publish: handshake, `connect`,
/// `createStream`. Keeps silent or slow sockets from holding connection slots.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a single write may block on a client that does not read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A publisher that sends nothing for this long is gone.
pub const PUBLISH_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept (such as too many open files) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves RTMP on `listener` until `shutdown` is cancelled, then waits for the open
/// connections, which see the same token and close.
pub async fn run(listener: TcpListener, ctx: Arc<Context>, shutdown: CancellationToken) -> std::io::Result<()> {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_ip = crate::peer_limit::PerIp::new(crate::peer_limit::DEFAULT_PER_IP);
    let mut connections = JoinSet::new();
    tracing::info!(addr = ?listener.local_addr().ok(), "RTMP front end listening");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "an RTMP connection task panicked");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, limit = MAX_CONNECTIONS, "RTMP connection limit reached; closing the new connection");
                        continue;
                    };
                    let Some(slot) = per_ip.try_acquire(peer.ip()) else {
                        tracing::warn!(%peer, limit = per_ip.max(), "RTMP connections per address at the limit; closing the new one");
                        continue;
                    };
                    let _ = socket.set_nodelay(true);
                    let handler = connection::Handler::new(socket, peer, ctx.clone(), shutdown.clone());
                    let span = tracing::info_span!("rtmp", %peer);
                    connections.spawn(
                        async move {
                            handler.run().await;
                            drop((permit, slot));
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "RTMP accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}
