//! RTMP front end: play (`rtmp://HOST/APP/NAME?token=T`, T9) and publish (PUB-01..06) over
//! `rml_rtmp`'s sans-IO handshake and [`ServerSession`](rml_rtmp::sessions::ServerSession),
//! one Tokio task per connection.
//!
//! A connection moves through these phases (`Phase` in `connection.rs`, after the handshake);
//! every decision comes from the admission path ([`Context::admission`]: `admit_play` /
//! `admit_publish`), never from a backend or the auth core called here:
//!
//! ```text
//!   accept ──► handshake ──► Setup ──play──► admit_play ──ok──► Playing ─────┐
//!                 │           │ (connect,       │ refused                     │ session ended
//!                 │           │  createStream…) ▼                             │ (recheck deny, kick,
//!                 │           │            _error + close                     │  X-Unique, override,
//!                 │           └──publish──► admit_publish ──ok──► Publishing ─┤  API DELETE),
//!                 │                              │ refused                    │ client left or
//!                 ▼                              ▼                            ▼ finished, source ended
//!        setup timeout / garbage ──────► close (only this connection) ◄───────┘
//! ```
//!
//! * The connection is the session (SESS-07): the [`ConnectionGuard`](crate::auth::ConnectionGuard)
//!   from `Admission::attach` lives as long as the socket, and the session closes when it drops.
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
mod outbox;
mod play;
mod publish;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::listener::{Listener, Service};

/// From accept until the client has asked to play or publish: handshake, `connect`,
/// `createStream`. Keeps silent or slow sockets from holding connection slots.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a single write may block on a client that does not read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A publisher that sends nothing for this long is gone.
pub const PUBLISH_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves RTMP on `listener` until `shutdown` is cancelled, then waits for the open
/// connections, which see the same token and close. A connection over the listener's caps is
/// closed at once (RTMP has no message to say why before the handshake).
pub async fn run(listener: Listener, ctx: Arc<Context>, shutdown: CancellationToken) -> std::io::Result<()> {
    listener.run(Arc::new(RtmpService { ctx }), shutdown).await
}

/// The RTMP front end as the [`Listener`] runs it.
struct RtmpService {
    ctx: Arc<Context>,
}

impl Service for RtmpService {
    async fn serve(self: Arc<Self>, socket: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
        connection::Handler::new(socket, peer, self.ctx.clone(), shutdown)
            .run()
            .await;
    }
}
