//! The auth core: identity, the session registry and its decision machine, the backend
//! clients, admin tokens and the domain lock.
//!
//! [`machine::Machine`] makes every decision on the registry without I/O; [`AuthCore`] drives
//! it (the lock, the tasks, the one 3 s timer, the clocks). Front ends never ask either: they
//! go through the admission path of [`crate::context::Context`], which asks the core; nothing
//! else calls a backend.

pub mod admin;
pub mod backend;
pub mod configurator;
mod core;
pub mod domain;
pub mod geo_gate;
pub mod geoip;
mod http_backend;
pub mod identity;
pub mod machine;
pub mod proto;
mod registry;
pub mod script;
mod session;
pub mod store;

pub use self::core::{
    AuthCore, AuthSettings, CLOSED_SESSIONS_QUEUE, CloseReason, ClosedSession, ConnectionGuard,
    DEFAULT_SOFT_LIMITATION_DELAY, DenyReason, MAX_NAME_LEN, MAX_TOKEN_LEN, PlayRequest, SWEEP_INTERVAL, SessionInfo,
    StreamControl, Verdict, refuse_oversized,
};
pub use backend::{Answer, Backend, BackendRequest, CallKind, Grant, HttpBackend, RequestType};
pub use identity::{Identity, NO_HEADERS};
pub use proto::Proto;
pub use session::SessionHandle;
