//! Usher conformance suite: validates any server that claims the Flussonic-style
//! authorization-backend contract, over sockets only.
//!
//! * [`target`] — how the server under test is reached and configured (embedded reference server,
//!   or a running server by address);
//! * [`backend`] — the programmable auth backend (wiremock) that records every call;
//! * [`clients`] — HLS and HTTP MPEG-TS players that reduce what they see to an
//!   [`clients::Outcome`];
//! * [`steps`] — the Gherkin vocabulary (cucumber step definitions);
//! * [`run()`] — the runner used by `usher check` and by `cargo test --test conformance`.

pub mod backend;
pub mod clients;
pub mod logs;
pub mod report;
mod run;
pub mod steps;
pub mod target;

pub use report::{Level, ScenarioResult, Summary, Verdict};
pub use run::{RunError, RunOptions, TargetChoice, default_features_dir, run};
