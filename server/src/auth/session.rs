//! What a front end holds for an admitted session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use uuid::Uuid;

use super::backend::CallKind;
use super::identity::Identity;
use super::proto::Proto;

/// State shared between the registry entry and the front ends serving that session.
#[derive(Debug)]
pub(crate) struct SessionShared {
    pub(crate) session_id: Uuid,
    pub(crate) identity: Identity,
    pub(crate) kind: CallKind,
    pub(crate) token: String,
    pub(crate) proto: Proto,
    pub(crate) bytes: AtomicU64,
    /// Cancelled when the session must end now: a deny on recheck, a kick, X-Unique, an
    /// override turning the protocol off, or a DELETE through the API.
    pub(crate) ended: CancellationToken,
}

/// An admitted session. Cheap to clone; every clone refers to the same session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub(crate) shared: Arc<SessionShared>,
}

impl SessionHandle {
    pub fn session_id(&self) -> Uuid {
        self.shared.session_id
    }

    /// The token this session runs with (the client's, or the generated one, TOK-02).
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    pub fn proto(&self) -> Proto {
        self.shared.proto
    }

    /// Counts bytes delivered to (or received from) the client.
    pub fn add_bytes(&self, n: u64) {
        self.shared.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// Resolves when the session has been ended by the server (deny, kick, override, API).
    pub fn ended(&self) -> WaitForCancellationFuture<'_> {
        self.shared.ended.cancelled()
    }

    pub fn is_ended(&self) -> bool {
        self.shared.ended.is_cancelled()
    }
}
