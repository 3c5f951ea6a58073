//! `usher`: run the reference server, or check a server against the conformance catalogue.
//!
//! * `usher serve --config FILE` — the reference server; prints one readiness line.
//! * `usher check [OPTIONS]` — runs the catalogue against a target (the embedded server by
//!   default); `--print-config` prints the streams a static target must load.
//! * `usher cases [OPTIONS]` — lists the catalogue; `--matrix` regenerates the requirement
//!   matrix in docs/conformance.md.
//! * `usher backend-check URL [OPTIONS]` — judges a site's authorization backend against the
//!   contract (the calls a conforming server sends, each answer graded).
//! * `usher media FILE` — writes the suite's test clip (what a running target's media folder
//!   holds for the `file_input` cases).

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "usher",
    version = usher_conformance::VERSION,
    about = "Usher: a reference media server and a conformance suite for the Flussonic-style authorization backend contract"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the reference server from a Flussonic-style configuration file.
    Serve {
        /// The configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the conformance catalogue against a server (by default the embedded reference server).
    Check(Box<cli::check::CheckArgs>),
    /// Check a site's authorization backend against the contract: send the calls a conforming
    /// server sends and grade every answer.
    BackendCheck(Box<cli::backend_check::BackendCheckArgs>),
    /// List the catalogue's cases (or regenerate the requirement matrix of docs/conformance.md).
    Cases(cli::cases::CasesArgs),
    /// Write the suite's test clip: the test pattern with silent AAC, as MP4 (or MPEG-TS for a
    /// `.ts` name). A running target's media folder holds `conformance-clip.mp4` made so.
    Media {
        /// The file to write.
        file: PathBuf,
        /// Picture size, WIDTHxHEIGHT (even sides).
        #[arg(long, default_value = "160x120", value_parser = parse_size)]
        size: (u32, u32),
        /// Length in seconds.
        #[arg(long, default_value_t = 4)]
        seconds: u32,
    },
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once('x')
        .ok_or_else(|| format!("`{text}` is not WIDTHxHEIGHT"))?;
    let side = |v: &str| v.parse::<u32>().map_err(|_| format!("`{text}` is not WIDTHxHEIGHT"));
    Ok((side(w)?, side(h)?))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Cases(args) => cli::cases::run(&args),
        Command::Media { file, size, seconds } => match runtime() {
            Ok(rt) => match rt.block_on(usher_conformance::media::write_clip(&file, size, seconds)) {
                Ok(()) => {
                    println!("{}: {}x{}, {seconds} s", file.display(), size.0, size.1);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("usher media: {e}");
                    ExitCode::from(2)
                }
            },
            Err(code) => code,
        },
        Command::Serve { config } => {
            // The server's log goes to stderr as it happens.
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
            match runtime() {
                Ok(rt) => rt.block_on(serve(config)),
                Err(code) => code,
            }
        }
        Command::BackendCheck(args) => with_logs(|rt| rt.block_on(cli::backend_check::run(*args))),
        Command::Check(args) => with_logs(|rt| rt.block_on(cli::check::run(*args))),
    }
}

/// Runs a command that logs only into memory, and prints the log (warnings and errors) when
/// the command did not succeed.
fn with_logs(command: impl FnOnce(&tokio::runtime::Runtime) -> ExitCode) -> ExitCode {
    let logs = usher_conformance::logs::init();
    let code = match runtime() {
        Ok(rt) => {
            let code = command(&rt);
            // Tasks a hung target or backend left behind must not keep the process alive.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            code
        }
        Err(code) => code,
    };
    if code != ExitCode::SUCCESS
        && let Some(logs) = logs
    {
        let text = logs.contents();
        if !text.is_empty() {
            eprintln!("---- log (warnings and errors) ----\n{text}");
        }
    }
    code
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("usher: cannot start the async runtime: {e}");
            ExitCode::from(2)
        })
}

async fn serve(path: PathBuf) -> ExitCode {
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("usher: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let config = match usher_server::config::parse_config(&text, &path.display().to_string()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("usher: {e}");
            return ExitCode::from(2);
        }
    };
    // Connection caps follow the descriptor limit, so take what the hard limit allows first.
    match usher_server::listener::raise_descriptor_limit() {
        Ok(limit) => tracing::info!(limit, "open descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open descriptor limit; caps follow the current one"),
    }
    let server = match usher_server::Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("usher: {e}");
            return ExitCode::from(1);
        }
    };
    // The one readiness line: scripts wait for it instead of sleeping.
    let mut ready = format!("usher: ready http={}", server.http_addr());
    if let Some(addr) = server.rtmp_addr() {
        ready.push_str(&format!(" rtmp={addr}"));
    }
    if let Some(addr) = server.rtsp_addr() {
        ready.push_str(&format!(" rtsp={addr}"));
    }
    println!("{ready}");
    let signal = shutdown_signal().await;
    eprintln!("usher: {signal}, shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Waits for SIGINT or SIGTERM and names it.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "interrupt"
    }
}
