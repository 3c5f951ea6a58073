//! Usher reference server.
//!
//! A Tokio media server that implements the Flussonic-style authorization backend contract
//! (see `docs/spec.md`) over real protocols. Front ends (HTTP: HLS, MPEG-TS, DVR, VOD, ingest and
//! the management API; RTMP; RTSP) never call a backend nor ask the auth core themselves: they
//! go through the one admission path, [`context::Context::admission`], which asks the core in
//! [`auth`] (whose decisions are the sans-IO [`auth::machine::Machine`]).

pub mod auth;
pub mod config;
pub mod context;
pub mod dvr;
#[doc(hidden)]
pub mod fuzzing;
pub mod history;
pub mod http;
pub mod listener;
pub mod log_throttle;
pub mod media;
pub mod mysql;
pub(crate) mod names;
pub mod peer_limit;
pub mod redact;
pub mod rtmp;
pub mod rtsp;
pub mod server;
pub mod streams;
#[cfg(target_os = "linux")]
pub mod zerocopy;

pub use server::{RunningServer, Server, ServerError, ServerLimits};
