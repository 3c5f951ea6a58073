//! Usher conformance suite: validates any server that claims the Flussonic-style
//! authorization-backend contract, over sockets only.
//!
//! * [`catalogue`] — the features as data: cases, requirement ids, levels, needs, stable keys,
//!   the generated requirement matrix, the streams of static mode;
//! * [`select`] and [`deviations`] — which cases a run covers and which it skips, and why;
//! * [`target`] — how the server under test is reached and configured (embedded reference
//!   server, a running server by address, or a static one), and its capability manifest;
//! * [`backend`] — the programmable auth backend (wiremock) that records every call, and
//!   [`dialect`] — how a third-party server calls it (nginx-rtmp, SRS, MediaMTX);
//! * [`clients`] — HLS, HTTP MPEG-TS, RTMP and RTSP players that reduce what they see to an
//!   [`clients::Outcome`];
//! * [`media`] — the test media the suite makes itself (pattern clips as MP4 and MPEG-TS, a live
//!   RTMP push), from the reference server's encoder and muxers;
//! * [`steps`] — the Gherkin vocabulary (cucumber step definitions);
//! * [`run()`] — the runner used by `usher check` and by `cargo test --test conformance`;
//! * [`report`] — results, and the terminal, JSON, JUnit and HTML reports;
//! * [`backend_check`] — `usher backend-check`: a site's authorization backend judged against
//!   the contract (the other party of the same contract).

pub mod backend;
pub mod backend_check;
pub mod catalogue;
pub mod clients;
pub mod deviations;
pub mod dialect;
pub mod logs;
pub mod media;
pub mod prerequisites;
pub mod report;
mod run;
pub mod select;
pub mod source;
pub mod steps;
pub mod target;

/// The catalogue the crate was built with: SHA-256 of the feature files under `features/`, in
/// path order (each as its relative path, a NUL byte, its length as 8 big-endian bytes and its
/// contents; see `build.rs`).
pub const CATALOGUE_DIGEST: &str = env!("USHER_CATALOGUE_DIGEST");

/// `usher --version`: the crate's version and the catalogue it carries.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (catalogue sha256:",
    env!("USHER_CATALOGUE_DIGEST"),
    ", ",
    env!("USHER_CATALOGUE_FILES"),
    " feature files)"
);

pub use catalogue::{Capabilities, Case, Catalogue, Level};
pub use report::{CaseResult, Summary, Verdict};
pub use run::{
    DEFAULT_CONCURRENCY, DEFAULT_STEP_TIMEOUT, DEFAULT_TIMEOUT, Observer, OnResult, RunError, RunOptions, RunStart,
    SLOW_STEP_TIMEOUT, TargetChoice, capabilities_for, default_features_dir, run,
};
