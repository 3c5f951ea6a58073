//! `usher check`: options, target resolution (command line over `--target-config`), the run, the
//! summary and the report files.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use clap::Args;
use console::style;
use url::Url;
use usher_conformance::backend::BackendOptions;
use usher_conformance::catalogue::{Capabilities, Catalogue, streams};
use usher_conformance::deviations::Deviations;
use usher_conformance::prerequisites;
use usher_conformance::report::{html, json, junit};
use usher_conformance::source::SourceSpec;
use usher_conformance::target::config::TargetConfig;
use usher_conformance::target::container::{self, ContainerOptions, ServerContainer};
use usher_conformance::target::{Address, ApiCredential};
use usher_conformance::{RunError, RunOptions, Summary, TargetChoice};

use super::progress::{Mode, Progress, Shared};
use super::{SelectArgs, parse_duration, parse_seed};

/// The backend URL `--print-config` uses when it is given none.
const DEFAULT_STATIC_BACKEND: &str = "http://127.0.0.1:9099";

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Re-run exactly the failed cases of a JSON report (written with --json).
    #[arg(long, value_name = "REPORT.json")]
    pub rerun_failed: Option<PathBuf>,
    /// Cases running at once.
    #[arg(long, value_name = "N", default_value_t = usher_conformance::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Count failures of @should cases; an unmatched deviation is an error.
    #[arg(long)]
    pub strict: bool,
    /// Count failures of @info cases too: the target claims the reference server's choice on
    /// every point the spec leaves open (docs/spec.md). For judging the reference itself;
    /// implies --strict for @should cases.
    #[arg(long)]
    pub hold_choices: bool,
    /// Multiply every upper time bound (slow machines or networks).
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub time_scale: f64,
    /// Limit of the whole run (90, 90s, 15m, 1h); unfinished cases are FAIL.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "15m")]
    pub timeout: Duration,
    /// Limit of one step (@slow cases get at least 400 s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    pub step_timeout: Duration,
    /// Seed of generated (property) cases, decimal or 0x-hex; default USHER_SEED, else random.
    #[arg(long, value_name = "N", value_parser = parse_seed)]
    pub seed: Option<u64>,

    /// Check a running server at this HTTP base URL instead of the embedded one.
    #[arg(long, value_name = "URL")]
    pub target: Option<Url>,
    /// The RTMP port of --target.
    #[arg(long, value_name = "HOST:PORT")]
    pub rtmp: Option<String>,
    /// The RTSP port of --target.
    #[arg(long, value_name = "HOST:PORT")]
    pub rtsp: Option<String>,
    /// Management API credential of --target (or USHER_API_AUTH).
    #[arg(long, value_name = "LOGIN:PASSWORD")]
    pub api_auth: Option<ApiCredential>,
    /// Start the target from this local Docker image (NAME[:TAG], never pulled) with the host's
    /// network, check it, then remove it; its log goes into the report when a case failed.
    /// The reference server's image is usher-server:dev (server/docker/build.sh).
    #[arg(long, value_name = "IMAGE[:TAG]", conflicts_with_all = ["target", "rtmp", "rtsp", "api_auth", "static_mode", "print_config"])]
    pub target_image: Option<String>,
    /// Check the embedded cluster: two reference servers sharing a redis-server the suite
    /// starts on a free loopback port (needs redis-server). Runs the cluster cases too.
    #[arg(long, conflicts_with_all = ["target", "target_image", "static_mode", "print_config"])]
    pub cluster: bool,
    /// A TOML manifest of the target: addresses, backend, capabilities (see docs/conformance.md).
    #[arg(long, value_name = "FILE")]
    pub target_config: Option<PathBuf>,
    /// The target has no stream management API: its streams are the ones --print-config printed.
    #[arg(long = "static")]
    pub static_mode: bool,
    /// Print the stream blocks a static target must load, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// With --print-config: the input of every stream.
    #[arg(long, value_name = "URL", default_value = streams::DEFAULT_INPUT)]
    pub input: String,

    /// Where the auth backend listens (default 127.0.0.1, any free port).
    #[arg(long, value_name = "ADDR")]
    pub backend_listen: Option<SocketAddr>,
    /// The backend base URL the server under test is told to call (when it cannot use the
    /// listening address, e.g. from another host or a container).
    #[arg(long, value_name = "URL")]
    pub backend_url: Option<Url>,

    /// A deviations file: cases the target knowingly does not follow, each with a reason.
    #[arg(long, value_name = "FILE")]
    pub deviations: Option<PathBuf>,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a JSON report (input of --rerun-failed).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Live progress: a bar on a terminal, lines otherwise (auto), or force one.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: Mode,
}

/// A usage or setup problem: message, exit code 2.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("usher check: {message}");
    ExitCode::from(2)
}

/// The target as the command line and the manifest give it.
struct Resolved {
    choice: TargetChoice,
    capabilities: Option<Capabilities>,
    backend: BackendOptions,
    rtmp_app: Option<String>,
    source: Option<SourceSpec>,
}

fn resolve(args: &CheckArgs) -> Result<Resolved, String> {
    let config = match &args.target_config {
        Some(path) => TargetConfig::load(path).map_err(|e| e.to_string())?,
        None => TargetConfig::default(),
    };
    let http = args.target.clone().or(config.target.clone());
    let static_mode = args.static_mode || config.static_mode;
    let credential = match &args.api_auth {
        Some(c) => Some(c.clone()),
        None => match std::env::var("USHER_API_AUTH").ok().filter(|v| !v.is_empty()) {
            Some(v) => Some(v.parse().map_err(|e| format!("USHER_API_AUTH: {e}"))?),
            None => config
                .api_auth
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| format!("api_auth in the target config: {e}"))?,
        },
    };
    let rtmp = args.rtmp.clone().or(config.rtmp.clone());
    let rtsp = args.rtsp.clone().or(config.rtsp.clone());
    let mut backend = BackendOptions::default();
    if let Some(listen) = args.backend_listen.or(config.backend.listen) {
        backend.listen = listen;
    }
    backend.advertised_base = args.backend_url.clone().or(config.backend.url.clone());
    backend.dialect = config.backend.dialect.unwrap_or_default();
    // Checked when the manifest was read.
    let source = config.source_spec()?;
    let declared = &config.capabilities;
    let capabilities = (declared.protocols.is_some()
        || declared.features.is_some()
        || declared.default_protocol.is_some())
    .then(|| Capabilities {
        protocols: declared.protocols.clone(),
        features: declared.features.clone(),
        default_protocol: declared.default_protocol.as_ref().map(|p| p.get_ref().clone()),
        ..Capabilities::default()
    });
    let members = &config.cluster.members;
    if !members.is_empty() {
        if args.cluster {
            return Err(
                "--cluster starts an embedded cluster; `[cluster] members` names a running one: give one of them"
                    .into(),
            );
        }
        if members.len() < 2 {
            return Err("`[cluster] members` names every node, node A first: at least two".into());
        }
        if static_mode {
            return Err("`[cluster] members`: a cluster is managed through the API, not static".into());
        }
        if http.as_ref().is_some_and(|h| h != &members[0]) {
            return Err(
                "`[cluster] members`: the first member is node A, the target; `target` names another server".into(),
            );
        }
        let Some(credential) = credential else {
            return Err("`[cluster] members` needs --api-auth LOGIN:PASSWORD (or USHER_API_AUTH, or api_auth)".into());
        };
        let choice = TargetChoice::RunningCluster {
            address: Address {
                http: members[0].clone(),
                rtmp,
                rtsp,
                credential: Some(credential),
            },
            members: members.clone(),
        };
        return Ok(Resolved {
            choice,
            capabilities,
            backend,
            rtmp_app: config.rtmp_app.clone(),
            source,
        });
    }
    let choice = match http {
        None if args.cluster => {
            if rtmp.is_some() || rtsp.is_some() {
                return Err("--cluster starts its own servers: --rtmp and --rtsp do not apply".into());
            }
            TargetChoice::EmbeddedCluster
        }
        None => {
            if static_mode || rtmp.is_some() || rtsp.is_some() {
                return Err("--static, --rtmp and --rtsp need --target URL (or `target` in --target-config)".into());
            }
            TargetChoice::Embedded
        }
        Some(http) => {
            if credential.is_none() && !static_mode {
                return Err(
                    "--target needs --api-auth LOGIN:PASSWORD (or USHER_API_AUTH), or --static for a server without the management API"
                        .into(),
                );
            }
            if static_mode {
                if backend.listen.port() == 0 {
                    return Err(
                        "--static needs --backend-listen ADDR: the fixed address the target's configuration calls"
                            .into(),
                    );
                }
                if backend.advertised_base.is_none() {
                    if backend.listen.ip().is_unspecified() {
                        return Err(format!(
                            "--backend-listen {} listens on every address: give --backend-url, the URL the target calls",
                            backend.listen
                        ));
                    }
                    backend.advertised_base = Url::parse(&format!("http://{}", backend.listen)).ok();
                }
            }
            TargetChoice::Running {
                address: Address {
                    http,
                    rtmp,
                    rtsp,
                    credential,
                },
                static_streams: static_mode,
            }
        }
    };
    Ok(Resolved {
        choice,
        capabilities,
        backend,
        rtmp_app: config.rtmp_app.clone(),
        source,
    })
}

fn print_config(args: &CheckArgs) -> ExitCode {
    let catalogue = match Catalogue::load(&args.select.features) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let config = match &args.target_config {
        Some(path) => match TargetConfig::load(path) {
            Ok(c) => c,
            Err(e) => return fail(e),
        },
        None => TargetConfig::default(),
    };
    let base = args
        .backend_url
        .clone()
        .or(config.backend.url)
        .or_else(|| {
            args.backend_listen
                .or(config.backend.listen)
                .filter(|a| a.port() != 0 && !a.ip().is_unspecified())
                .and_then(|a| Url::parse(&format!("http://{a}")).ok())
        })
        .unwrap_or_else(|| Url::parse(DEFAULT_STATIC_BACKEND).expect("a valid URL"));
    print!("{}", streams::print_config(&catalogue.cases, &base, &args.input));
    ExitCode::SUCCESS
}

/// The first line of a run, printed before anything that takes time: what runs against what.
fn first_line(args: &CheckArgs) -> String {
    let target = match (&args.target_image, &args.target, &args.target_config) {
        (Some(image), _, _) => format!("a container of {image}"),
        (None, Some(url), _) => url.to_string(),
        (None, None, Some(manifest)) => format!("the target of {}", manifest.display()),
        (None, None, None) if args.cluster => "the embedded cluster".to_string(),
        (None, None, None) => "the embedded reference server".to_string(),
    };
    format!(
        "usher {} (catalogue {}): checking {target} with the features in {}",
        env!("CARGO_PKG_VERSION"),
        &usher_conformance::CATALOGUE_DIGEST[..12],
        args.select.features.display()
    )
}

pub async fn run(args: CheckArgs) -> ExitCode {
    if args.print_config {
        return print_config(&args);
    }
    println!("{}", first_line(&args));
    let mut resolved = match resolve(&args) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if matches!(resolved.choice, TargetChoice::EmbeddedCluster)
        && prerequisites::find(prerequisites::REDIS_SERVER.name).is_none()
    {
        eprintln!(
            "{}",
            prerequisites::skip_line("usher check --cluster", prerequisites::REDIS_SERVER, "")
        );
        println!("0 passed, 0 failed, 0 skipped");
        return ExitCode::from(2);
    }
    let deviations = match &args.deviations {
        Some(path) => match Deviations::load(path) {
            Ok(d) => Some(d),
            Err(e) => return fail(format!("deviations: {e}")),
        },
        None => None,
    };
    let mut seed = args.seed;
    let rerun = match &args.rerun_failed {
        Some(path) => {
            let report = match json::read(path) {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            let keys = report.failed_keys();
            if keys.is_empty() {
                println!("{} has no failed case: nothing to re-run", path.display());
                println!("0 passed, 0 failed, 0 skipped");
                return ExitCode::SUCCESS;
            }
            // The same generated inputs as the run that failed.
            seed = seed.or(Some(report.summary.seed));
            Some(keys)
        }
        None => None,
    };
    // --target-image: the container is the target, by address (it decides its addresses).
    let container = match &args.target_image {
        Some(image) => match start_container(image, &args.select.features, &mut resolved).await {
            Ok(c) => Some(c),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let options = RunOptions {
        features: args.select.features.clone(),
        tags: args.select.tags.clone(),
        only: args.select.only.clone(),
        slow: args.select.slow,
        rerun,
        concurrency: args.concurrency,
        strict: args.strict,
        hold_choices: args.hold_choices,
        time_scale: args.time_scale,
        target: resolved.choice,
        capabilities: resolved.capabilities,
        backend: resolved.backend,
        deviations,
        timeout: args.timeout,
        step_timeout: args.step_timeout,
        seed,
        rtmp_app: resolved.rtmp_app,
        source: resolved.source,
        ..RunOptions::default()
    };
    let progress = Rc::new(RefCell::new(Progress::new(args.progress)));
    let result = usher_conformance::run(options, Shared(progress.clone())).await;
    progress.borrow_mut().finish();
    let mut result = result;
    if let Some(container) = container {
        finish_container(container, &mut result).await;
    }
    let summary = match result {
        Ok(s) => s,
        Err(e @ RunError::NothingSelected { .. }) => {
            eprintln!("usher check: {e}");
            println!("0 passed, 0 failed, 0 skipped");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("usher check: {e}");
            println!("0 passed, 1 failed, 0 skipped");
            return ExitCode::from(2);
        }
    };
    let mut code = if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    print_summary(&summary);
    for (path, text, what) in [
        (&args.json, json::render(&summary), "JSON"),
        (&args.junit, junit::render(&summary), "JUnit"),
        (&args.html, html::render(&summary), "HTML"),
    ] {
        if let Some(path) = path {
            match std::fs::write(path, text) {
                Ok(()) => println!("{what} report: {}", path.display()),
                Err(e) => {
                    eprintln!("usher check: cannot write the {what} report {}: {e}", path.display());
                    code = ExitCode::from(2);
                }
            }
        }
    }
    // The closing line, last and alone: CI reads it.
    println!("{}", summary.closing_line());
    code
}

fn print_summary(summary: &Summary) {
    for line in summary.epilogue() {
        if let Some(w) = line.strip_prefix("warning: ") {
            println!("{} {w}", style("warning:").yellow());
        } else {
            println!("{line}");
        }
    }
    println!("by area:");
    for a in summary.areas() {
        let n = |count: usize, text: String| if count == 0 { style(text).dim() } else { style(text) };
        println!(
            "  {:<5} {} {} {} {}  {}",
            a.area,
            n(a.pass, format!("{:>3} pass", a.pass)).green(),
            n(a.fail, format!("{:>3} fail", a.fail)).red(),
            n(a.info, format!("{:>3} info", a.info)).yellow(),
            n(a.skip, format!("{:>3} skip", a.skip)),
            style(&a.title).dim()
        );
    }
}

/// `--target-image`: starts the container and makes it the target. A manifest may still give
/// the capabilities and the backend, not the addresses (the container decides them). The
/// container gets the media files the cases play, as the embedded server does, and so declares
/// `file_input` (unless the manifest says what it supports).
async fn start_container(
    image: &str,
    features: &std::path::Path,
    resolved: &mut Resolved,
) -> Result<ServerContainer, String> {
    if !matches!(resolved.choice, TargetChoice::Embedded) {
        return Err(
            "--target-image starts the target itself: the manifest must not name `target`, `rtmp`, `rtsp`, `api_auth` or `static`"
                .into(),
        );
    }
    let catalogue = Catalogue::load(features).map_err(|e| e.to_string())?;
    let mut options = ContainerOptions::new(image);
    match container::prepare_media(&catalogue).await {
        Ok(dir) => {
            options.media = Some(dir);
            if resolved.capabilities.is_none() {
                resolved.capabilities = Some(container::capabilities_with_media(&catalogue));
            }
        }
        Err(e) => eprintln!("usher check: warning: no media files for the container ({e}): file_input cases are SKIP"),
    }
    eprintln!("usher check: starting a container of {image} (host network)");
    let started = ServerContainer::start(options.clone()).await;
    if let Some(dir) = &options.media {
        let _ = std::fs::remove_dir_all(dir);
    }
    let container = started.map_err(|e| format!("--target-image {image}: {e}"))?;
    resolved.choice = TargetChoice::Running {
        address: container.address(),
        static_streams: false,
    };
    Ok(container)
}

/// After the run: a failed run keeps the container's log in the report; the container goes.
async fn finish_container(container: ServerContainer, result: &mut Result<Summary, RunError>) {
    let failed = !matches!(result, Ok(summary) if summary.ok());
    if failed {
        let log = format!(
            "the log of the target's container {} ({}), kept because the run failed:\n{}",
            &container.id()[..12.min(container.id().len())],
            container.image(),
            container.logs().await.trim_end()
        );
        match result {
            Ok(summary) => summary.warnings.push(log),
            Err(_) => eprintln!("{log}"),
        }
    }
    container.remove().await;
}
