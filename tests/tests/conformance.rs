//! The whole conformance catalogue against the embedded reference server, as part of
//! `cargo test` (harness = false: cucumber is the runner).
//!
//! Knobs (cargo owns the command line): USHER_TAGS="@must and not @serial", USHER_ONLY="LIM-*",
//! USHER_SLOW=1, USHER_CONCURRENCY=4, USHER_STRICT=1, USHER_TIME_SCALE=2, USHER_TIMEOUT=600,
//! USHER_SEED=N, USHER_FEATURES=dir, USHER_HOLD_CHOICES=0.
//!
//! The target is the reference server, so by default it is held to its own choices on the
//! points the spec leaves open (`hold_choices`): a failed `@info` or `@should` case fails this
//! test, where `usher check` would only record it. USHER_HOLD_CHOICES=0 judges it like a peer. Without RUST_LOG the log (warnings and errors) is printed
//! only when the run fails; with it, live on stderr.

use std::process::ExitCode;

use usher_conformance::{OnResult, RunOptions, Verdict};

fn main() -> ExitCode {
    let logs = usher_conformance::logs::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let options = RunOptions {
        hold_choices: true,
        ..RunOptions::default()
    }
    .with_env();
    let summary = runtime.block_on(usher_conformance::run(
        options,
        OnResult(|result: &usher_conformance::CaseResult| {
            println!("{}", result.line());
            if result.verdict != Verdict::Pass
                && let Some(details) = result.details()
            {
                println!("{details}");
            }
        }),
    ));
    let ok = match summary {
        Ok(summary) => {
            for line in summary.epilogue() {
                println!("{line}");
            }
            for line in summary.area_lines() {
                println!("  {line}");
            }
            println!("{}", summary.closing_line());
            summary.ok()
        }
        Err(e) => {
            eprintln!("conformance: {e}");
            println!("0 passed, 1 failed, 0 skipped");
            false
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        if let Some(logs) = logs {
            let text = logs.contents();
            if !text.is_empty() {
                eprintln!("---- log (warnings and errors) ----\n{text}");
            }
        }
        ExitCode::FAILURE
    }
}
