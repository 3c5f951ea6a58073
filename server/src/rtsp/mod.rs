//! RTSP front end. STUB: being written.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::context::Context;

/// Serves RTSP on `listener` until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, ctx: Arc<Context>, shutdown: CancellationToken) -> std::io::Result<()> {
    let _ = (listener, ctx);
    shutdown.cancelled().await;
    Ok(())
}
