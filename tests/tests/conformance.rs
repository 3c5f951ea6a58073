//! The whole conformance catalogue against the embedded reference server, as part of
//! `cargo test` (harness = false: cucumber is the runner).
//!
//! Knobs (cargo owns the command line): USHER_TAGS="@must and not @serial",
//! USHER_CONCURRENCY=4, USHER_STRICT=1, USHER_TIME_SCALE=2, USHER_FEATURES=dir, RUST_LOG=debug.

use std::process::ExitCode;

use usher_conformance::{RunOptions, Verdict};

fn main() -> ExitCode {
    tracing_subscriber_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let options = RunOptions::default().with_env();
    let summary = runtime.block_on(usher_conformance::run(options, |result| {
        println!("{}", result.line());
        if result.verdict != Verdict::Pass
            && let Some(details) = result.details()
        {
            println!("{details}");
        }
    }));
    match summary {
        Ok(summary) => {
            for line in summary.epilogue() {
                println!("{line}");
            }
            println!("{}", summary.closing_line());
            if summary.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("conformance: {e}");
            println!("0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}

fn tracing_subscriber_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
