//! `usher backend-check`: options, the run, the printed results and the report files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use console::style;
use usher_conformance::Verdict;
use usher_conformance::backend_check::replay::{self, ReplayOptions};
use usher_conformance::backend_check::{self, Options};
use usher_conformance::report::{html, json, junit};

use super::parse_duration;

#[derive(Args, Debug)]
pub struct BackendCheckArgs {
    /// The `on_play` backend URL (http://…), as the server's configuration names it.
    #[arg(value_name = "URL")]
    pub url: String,
    /// The `on_publish` backend URL; publish calls (POST) are checked too.
    #[arg(long, value_name = "URL")]
    pub publish: Option<String>,
    /// Tokens the backend should allow, one per line.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// The stream name the calls carry.
    #[arg(long, value_name = "NAME", default_value = "news")]
    pub stream: String,
    /// Calls in flight at once (also the concurrency of the latency round).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub concurrency: usize,
    /// Calls of the latency round (0 skips it).
    #[arg(long, value_name = "N", default_value_t = 40)]
    pub latency_calls: usize,
    /// Limit of the whole run (60, 60s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    pub timeout: Duration,
    /// SHOULD-level problems fail the run too.
    #[arg(long)]
    pub strict: bool,
    /// After the checks, put the embedded reference server in front of the backend, let
    /// synthetic HLS and RTMP viewers play, and print the timeline of their sessions.
    #[arg(long)]
    pub replay: bool,
    /// Length of the replay (4s to 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "20s")]
    pub replay_seconds: Duration,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the HTML report here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

fn setup_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("usher backend-check: {e}");
    ExitCode::from(2)
}

pub async fn run(args: BackendCheckArgs) -> ExitCode {
    let tokens = match &args.tokens {
        None => Vec::new(),
        Some(path) => {
            let shown = path.display().to_string();
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => return setup_error(format!("cannot read --tokens {shown}: {e}")),
            };
            match backend_check::read_tokens(&text, &shown) {
                Ok(t) if t.is_empty() => return setup_error(format!("--tokens {shown} holds no token")),
                Ok(t) => t,
                Err(e) => return setup_error(e),
            }
        }
    };
    let replay_options = ReplayOptions {
        play_url: args.url.clone(),
        publish_url: args.publish.clone(),
        tokens: tokens.clone(),
        stream: args.stream.clone(),
        seconds: args.replay_seconds,
    };
    if args.replay
        && let Err(e) = replay::check_seconds(replay_options.seconds)
    {
        return setup_error(e);
    }
    let options = Options {
        play_url: args.url.clone(),
        publish_url: args.publish.clone(),
        tokens,
        stream: args.stream.clone(),
        concurrency: args.concurrency,
        latency_calls: args.latency_calls,
        deadline: args.timeout,
        strict: args.strict,
    };
    println!(
        "usher backend-check: {} ({} token(s) of yours, generated ones, concurrency {})",
        usher_server::redact::url(&options.play_url),
        options.tokens.len(),
        options.concurrency
    );
    let outcome = match backend_check::run(options).await {
        Ok(o) => o,
        Err(e) => return setup_error(e),
    };
    let summary = &outcome.summary;
    for case in &summary.cases {
        let line = case.line();
        let label = match case.verdict {
            Verdict::Pass => style(line).green(),
            Verdict::Fail => style(line).red(),
            Verdict::Info => style(line).yellow(),
            Verdict::Skip => style(line).dim(),
        };
        println!("{label}");
        if let Some(details) = case.details() {
            println!("{details}");
        }
    }
    println!("{} call(s) in {:.1} s", outcome.calls, summary.elapsed.as_secs_f64());
    for w in &summary.warnings {
        println!("{} {w}", style("warning:").yellow());
    }
    let timeline = if args.replay {
        println!(
            "replay: the reference server in front of the backend, synthetic viewers for {} s",
            replay_options.seconds.as_secs()
        );
        match replay::run(replay_options).await {
            Ok(r) => {
                for event in &r.events {
                    println!("{event}");
                }
                for w in &r.warnings {
                    println!("{} {w}", style("warning:").yellow());
                }
                Some(r.to_json())
            }
            Err(e) => return setup_error(e),
        }
    } else {
        None
    };
    let mut code = if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    for (path, text, what) in [
        (
            &args.json,
            with_replay(json::render(summary), timeline.as_ref()),
            "JSON",
        ),
        (&args.junit, junit::render(summary), "JUnit"),
        (&args.html, html::render(summary), "HTML"),
    ] {
        if let Some(path) = path {
            match std::fs::write(path, text) {
                Ok(()) => println!("{what} report: {}", path.display()),
                Err(e) => {
                    eprintln!(
                        "usher backend-check: cannot write the {what} report {}: {e}",
                        path.display()
                    );
                    code = ExitCode::from(2);
                }
            }
        }
    }
    println!(
        "{} passed, {} failed (MUST{}), {} info",
        summary.passed(),
        summary.failed(),
        if summary.strict { " and SHOULD" } else { "" },
        summary.info()
    );
    code
}

/// The JSON report, with the replay's timeline under `replay` when there is one.
fn with_replay(report: String, timeline: Option<&serde_json::Value>) -> String {
    let Some(timeline) = timeline else { return report };
    match serde_json::from_str::<serde_json::Value>(&report) {
        Ok(mut value) if value.is_object() => {
            value["replay"] = timeline.clone();
            serde_json::to_string_pretty(&value).unwrap_or(report)
        }
        _ => report,
    }
}
