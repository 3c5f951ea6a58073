//! `usher`: run the reference server, or check a server against the conformance catalogue.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use url::Url;
use usher_conformance::backend::BackendOptions;
use usher_conformance::target::ApiCredential;
use usher_conformance::{RunOptions, TargetChoice, Verdict};

#[derive(Parser)]
#[command(
    name = "usher",
    version,
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
    Check(Box<CheckArgs>),
}

#[derive(Args)]
struct CheckArgs {
    /// Folder of .feature files.
    #[arg(long, value_name = "DIR", default_value_os_t = usher_conformance::default_features_dir())]
    features: PathBuf,
    /// Cucumber tag expression selecting scenarios, e.g. "@must and not @SESS-02".
    #[arg(long, value_name = "EXPR")]
    tags: Option<String>,
    /// Scenarios running at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    concurrency: usize,
    /// Count failures of @should scenarios.
    #[arg(long)]
    strict: bool,
    /// Multiply every upper time bound (slow machines).
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    time_scale: f64,
    /// Check a running server at this HTTP base URL instead of the embedded one.
    #[arg(long, value_name = "URL", requires = "api_auth")]
    target: Option<Url>,
    /// Management API credential of --target.
    #[arg(long, value_name = "LOGIN:PASSWORD")]
    api_auth: Option<ApiCredential>,
    /// Where the auth backend listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    backend_listen: SocketAddr,
    /// The backend base URL the server under test is told to call (when it cannot use the
    /// listening address, e.g. from a container).
    #[arg(long, value_name = "URL")]
    backend_url: Option<Url>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("usher: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve { config } => {
            // The server's log goes to stderr as it happens.
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
            runtime.block_on(serve(config))
        }
        Command::Check(args) => {
            let logs = usher_conformance::logs::init();
            let code = runtime.block_on(check(*args));
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
    }
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

async fn check(args: CheckArgs) -> ExitCode {
    let target = match (args.target, args.api_auth) {
        (Some(http), Some(credential)) => TargetChoice::Address { http, credential },
        _ => TargetChoice::Embedded,
    };
    let options = RunOptions {
        features: args.features,
        tags: args.tags,
        concurrency: args.concurrency,
        strict: args.strict,
        time_scale: args.time_scale,
        target,
        backend: BackendOptions {
            listen: args.backend_listen,
            advertised_base: args.backend_url,
        },
        ..RunOptions::default()
    };
    let summary = usher_conformance::run(options, |result| {
        println!("{}", result.line());
        if result.verdict != Verdict::Pass
            && let Some(details) = result.details()
        {
            println!("{details}");
        }
    })
    .await;
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
            eprintln!("usher check: {e}");
            println!("0 passed, 1 failed");
            ExitCode::from(2)
        }
    }
}
