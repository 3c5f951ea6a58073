//! The runner shared by `usher check` and `cargo test --test conformance`: reads the catalogue,
//! plans the run (selection, capabilities, deviations), starts the backend and the target, runs
//! the planned cases through cucumber, and reduces cucumber's events to one [`CaseResult`] per
//! case.
//!
//! # Never a hang
//!
//! * Every step runs under a time limit (`--step-timeout`, longer for `@slow` cases): the step
//!   collection is wrapped so each step is looked up in the real one and awaited under
//!   `tokio::time::timeout`; a step that overruns fails with what the backend saw so far.
//! * The clean-up after each case has its own limit.
//! * The whole run has one deadline (`--timeout`): when it passes, the cucumber run is dropped and
//!   every case that had not finished is FAIL with that reason.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use cucumber::gherkin::tagexpr::TagOperation;
use cucumber::{Event, World as _, event, gherkin, parser, step};
use futures::future::LocalBoxFuture;

use crate::backend::{Backend, BackendError, BackendOptions};
use crate::catalogue::needs::{API_FEATURES, CLUSTER, CLUSTER_CONTROL, PROTOCOLS};
use crate::catalogue::streams::{STATIC_UNREACHABLE_PORT, expected_streams};
use crate::catalogue::{Capabilities, Case, Catalogue, CatalogueError, Level};
use crate::deviations::Deviations;
use crate::dialect::Dialect;
use crate::report::{BackendRequest, CaseResult, StepRecord, StepStatus, Summary, Verdict};
use crate::select::{Pattern, Plan, Selection};
use crate::source::SourceSpec;
use crate::steps::{self, Proto, RunContext, UsherWorld};
use crate::target::{Address, ApiCredential, Target, TargetError};

/// Which server the run checks.
#[derive(Debug, Clone)]
pub enum TargetChoice {
    /// Start the reference server in-process.
    Embedded,
    /// A running server. `static_streams`: it has no stream management API; its streams are the
    /// ones `usher check --print-config` printed.
    Running { address: Address, static_streams: bool },
    /// Two reference servers in-process sharing a redis-server the suite starts (needs
    /// `redis-server` on PATH); node A is the target of the cases that name no node.
    EmbeddedCluster,
    /// Running servers sharing a session store (`[cluster] members` of a manifest): `address`
    /// is node A's, `members` every node's HTTP base URL, node A first. Managed through the API.
    RunningCluster { address: Address, members: Vec<url::Url> },
}

impl TargetChoice {
    /// A running server managed through its API.
    pub fn address(http: url::Url, credential: ApiCredential) -> TargetChoice {
        TargetChoice::Running {
            address: Address::http(http, credential),
            static_streams: false,
        }
    }

    pub fn is_static(&self) -> bool {
        matches!(
            self,
            TargetChoice::Running {
                static_streams: true,
                ..
            }
        )
    }
}

/// Cases running at once by default. Most of a case's time is waiting (archives growing, auth
/// durations passing), not work: 24 at a time keeps the default run near 10 s (8 took 25 s,
/// docs/performance.md §5) with the machine mostly idle.
pub const DEFAULT_CONCURRENCY: usize = 24;

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The folder of `.feature` files.
    pub features: PathBuf,
    /// A cucumber tag expression (`@must and not @serial`).
    pub tags: Option<String>,
    /// Case patterns (requirement id or glob, key, title glob, file); empty: every case.
    pub only: Vec<String>,
    /// Include `@slow` cases.
    pub slow: bool,
    /// Exactly these case keys (`--rerun-failed`).
    pub rerun: Option<Vec<String>>,
    /// Cases running at once.
    pub concurrency: usize,
    /// `@should` failures count as failures; unmatched deviations are an error.
    pub strict: bool,
    /// `@info` failures count too: the target claims the reference server's choice on every
    /// point the spec leaves open (decisions.md), which is what the `@info` cases describe.
    /// Judges the reference server itself (its mutation runs); a peer would differ by design.
    /// Implies `strict` for `@should` cases.
    pub hold_choices: bool,
    /// Multiplies every upper time bound.
    pub time_scale: f64,
    /// The token query parameter (`auth_token`).
    pub token_param: String,
    pub target: TargetChoice,
    /// What the target declares it supports; `None`: derived from the target (see
    /// [`capabilities_for`]).
    pub capabilities: Option<Capabilities>,
    pub backend: BackendOptions,
    pub deviations: Option<Deviations>,
    /// The whole run's limit.
    pub timeout: Duration,
    /// One step's limit (`@slow` cases get at least [`SLOW_STEP_TIMEOUT`]).
    pub step_timeout: Duration,
    /// Seed of generated cases; `None`: `USHER_SEED`, else random.
    pub seed: Option<u64>,
    /// The application in RTMP URLs (`rtmp_app` of the manifest); `None`: `static`.
    pub rtmp_app: Option<String>,
    /// The suite publishes each case's stream itself (`[source] publish` of the manifest).
    pub source: Option<SourceSpec>,
}

/// Default of `--timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default of `--step-timeout`.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// The least step limit of a `@slow` case (they wait out the 180 s default recheck).
pub const SLOW_STEP_TIMEOUT: Duration = Duration::from_secs(400);
/// Limit of the clean-up after one case.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The catalogue shipped with the crate.
pub fn default_features_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("features"), |p| p.join("features"))
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            features: default_features_dir(),
            tags: None,
            only: Vec::new(),
            slow: false,
            rerun: None,
            concurrency: DEFAULT_CONCURRENCY,
            strict: false,
            hold_choices: false,
            time_scale: 1.0,
            token_param: "token".to_string(),
            target: TargetChoice::Embedded,
            capabilities: None,
            backend: BackendOptions::default(),
            deviations: None,
            timeout: DEFAULT_TIMEOUT,
            step_timeout: DEFAULT_STEP_TIMEOUT,
            seed: None,
            rtmp_app: None,
            source: None,
        }
    }
}

impl RunOptions {
    /// Applies `USHER_FEATURES`, `USHER_TAGS`, `USHER_ONLY` (comma-separated patterns),
    /// `USHER_SLOW`, `USHER_CONCURRENCY`, `USHER_STRICT` (`1`/`true`), `USHER_TIME_SCALE` and
    /// `USHER_TIMEOUT` (seconds) when set: the knobs of `cargo test --test conformance`, whose
    /// command line belongs to cargo. (`USHER_SEED` is read by the run context itself.)
    pub fn with_env(mut self) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let yes = |v: String| v == "1" || v.eq_ignore_ascii_case("true");
        if let Some(v) = var("USHER_FEATURES") {
            self.features = PathBuf::from(v);
        }
        if let Some(v) = var("USHER_TAGS") {
            self.tags = Some(v);
        }
        if let Some(v) = var("USHER_ONLY") {
            self.only = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = var("USHER_SLOW") {
            self.slow = yes(v);
        }
        if let Some(n) = var("USHER_CONCURRENCY").and_then(|v| v.parse().ok()) {
            self.concurrency = n;
        }
        if let Some(v) = var("USHER_STRICT") {
            self.strict = yes(v);
        }
        if let Some(v) = var("USHER_HOLD_CHOICES") {
            self.hold_choices = yes(v);
        }
        if let Some(f) = var("USHER_TIME_SCALE").and_then(|v| v.parse().ok()) {
            self.time_scale = f;
        }
        if let Some(s) = var("USHER_TIMEOUT").and_then(|v| v.parse::<f64>().ok()) {
            self.timeout = Duration::from_secs_f64(s.max(1.0));
        }
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error("bad tag expression `{expr}`: {message}")]
    Tags { expr: String, message: String },
    #[error("concurrency must be at least 1")]
    Concurrency,
    #[error("no case matches the selection{}", if *.slow_left_out > 0 { format!(" ({} @slow case(s) would: add --slow)", .slow_left_out) } else { String::new() })]
    NothingSelected { slow_left_out: usize },
    #[error("--strict: deviation entries match no case:\n  {}", .0.join("\n  "))]
    UnmatchedDeviations(Vec<String>),
    #[error(
        "static mode needs the backend on a fixed address the target was configured with: give --backend-listen ADDR with a port"
    )]
    StaticBackendPort,
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// What the run is about to do, told to the [`Observer`] once before the first case.
#[derive(Debug, Clone)]
pub struct RunStart {
    pub target: String,
    pub capabilities: String,
    /// Cases that will run.
    pub to_run: usize,
    /// Cases reported as SKIP without running.
    pub skipped: usize,
    pub seed: u64,
    pub warnings: Vec<String>,
}

/// Sees the run as it goes.
pub trait Observer {
    fn started(&mut self, _start: &RunStart) {}
    /// A case finished (or was skipped), in finishing order.
    fn finished(&mut self, result: &CaseResult);
}

/// An [`Observer`] that only wants each result.
pub struct OnResult<F>(pub F);

impl<F: FnMut(&CaseResult)> Observer for OnResult<F> {
    fn finished(&mut self, result: &CaseResult) {
        (self.0)(result);
    }
}

/// The capabilities of a target: what it declares, limited to the protocols it has addresses
/// for; a static target never has the management API features it did not declare, and never
/// `api` (stream management).
pub fn capabilities_for(target: &TargetChoice, declared: Option<&Capabilities>) -> Capabilities {
    let mut caps = capabilities_of_one(target, declared);
    // Cluster cases need nodes; only the embedded cluster can stop them and restart its store.
    match target {
        TargetChoice::EmbeddedCluster => {}
        TargetChoice::RunningCluster { .. } => {
            caps.without.insert(CLUSTER_CONTROL.to_string());
        }
        TargetChoice::Embedded | TargetChoice::Running { .. } => {
            caps.without.insert(CLUSTER.to_string());
            caps.without.insert(CLUSTER_CONTROL.to_string());
        }
    }
    caps
}

fn capabilities_of_one(target: &TargetChoice, declared: Option<&Capabilities>) -> Capabilities {
    match target {
        TargetChoice::Embedded | TargetChoice::EmbeddedCluster => declared.cloned().unwrap_or_else(Capabilities::all),
        TargetChoice::RunningCluster { address, .. } => capabilities_of_one(
            &TargetChoice::Running {
                address: address.clone(),
                static_streams: false,
            },
            declared,
        ),
        TargetChoice::Running {
            address,
            static_streams,
        } => {
            let reachable: BTreeSet<String> = PROTOCOLS
                .iter()
                .filter(|p| match **p {
                    "rtmp" => address.rtmp.is_some(),
                    "rtsp" => address.rtsp.is_some(),
                    _ => true,
                })
                .map(|p| (*p).to_string())
                .collect();
            let mut caps = declared.cloned().unwrap_or_default();
            let protocols = match caps.protocols.take() {
                Some(declared) => declared.intersection(&reachable).cloned().collect(),
                None => reachable,
            };
            caps.protocols = Some(protocols);
            if *static_streams {
                caps = match caps.features {
                    Some(mut f) => {
                        f.remove("api");
                        Capabilities {
                            features: Some(f),
                            ..caps
                        }
                    }
                    None => caps.without_features(&API_FEATURES),
                };
            }
            // The suite writes media files only into the embedded server's media folder: a
            // running target plays them only if its manifest declares it has them.
            if !declared.is_some_and(|d| d.features.as_ref().is_some_and(|f| f.contains("file_input"))) {
                caps = caps.without_features(&["file_input"]);
            }
            caps
        }
    }
}

/// Run-level state the step wrapper and the hooks read (cucumber builds them without arguments).
struct RunState {
    /// Step limit by scenario scope.
    step_limits: Mutex<HashMap<String, Duration>>,
    default_step_limit: Duration,
}

static RUN_STATE: Mutex<Option<Arc<RunState>>> = Mutex::new(None);

fn run_state() -> Option<Arc<RunState>> {
    RUN_STATE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The step definitions as cucumber collected them; the runner calls them through [`timed`].
static STEPS: LazyLock<step::Collection<UsherWorld>> = LazyLock::new(UsherWorld::collection);

/// Runs the real step for `ctx.step` under the case's step limit.
fn timed<'a>(world: &'a mut UsherWorld, ctx: step::Context) -> LocalBoxFuture<'a, ()> {
    Box::pin(async move {
        let (step_fn, ctx) = match STEPS.find(&ctx.step) {
            Ok(Some((f, _, _, ctx))) => (*f, ctx),
            Ok(None) => panic!("no step definition matches `{}`", ctx.step.value),
            Err(e) => panic!("more than one step definition matches `{}`: {e}", ctx.step.value),
        };
        let limit = run_state()
            .map(|s| {
                let limits = s.step_limits.lock().unwrap_or_else(|e| e.into_inner());
                limits.get(&world.scope).copied().unwrap_or(s.default_step_limit)
            })
            .unwrap_or(DEFAULT_STEP_TIMEOUT);
        let finished = tokio::time::timeout(limit, step_fn(world, ctx)).await;
        if finished.is_err() {
            panic!(
                "{}",
                world.explain(format!(
                    "the step did not finish within its limit of {:.0} s (--step-timeout): the target \
                     did not answer, or answered too slowly",
                    limit.as_secs_f64()
                ))
            );
        }
    })
}

fn timed_steps() -> step::Collection<UsherWorld> {
    let any = || regex::Regex::new(r"(?s)^.*$").expect("a valid regex");
    step::Collection::new()
        .given(None, any(), timed)
        .when(None, any(), timed)
        .then(None, any(), timed)
}

/// Runs the catalogue. `observer` sees each case as it finishes.
pub async fn run(options: RunOptions, observer: impl Observer + 'static) -> Result<Summary, RunError> {
    // Not generic below this line: the run (and cucumber's machinery under it) is compiled once,
    // in this crate, instead of again in every binary that calls it (a minute of a cold release
    // build for the `usher` binary alone).
    run_observed(options, Box::new(observer)).await
}

async fn run_observed(options: RunOptions, observer: Box<dyn Observer>) -> Result<Summary, RunError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + options.timeout;
    if options.concurrency == 0 {
        return Err(RunError::Concurrency);
    }
    let catalogue = Arc::new(Catalogue::load(&options.features)?);
    let tags: Option<TagOperation> = options
        .tags
        .as_deref()
        .map(|expr| {
            expr.parse().map_err(|e: peg_error::ParseError| RunError::Tags {
                expr: expr.to_string(),
                message: e.to_string(),
            })
        })
        .transpose()?;
    let selection = Selection {
        tags,
        only: options.only.iter().map(|p| Pattern(p.clone())).collect(),
        slow: options.slow,
        keys: options.rerun.as_ref().map(|k| k.iter().cloned().collect()),
    };
    let capabilities = capabilities_for(&options.target, options.capabilities.as_ref());
    let plan = Plan::make(&catalogue, &selection, &capabilities, options.deviations.as_ref());
    let mut warnings: Vec<String> = plan
        .unmatched_deviations
        .iter()
        .map(|d| format!("deviation {} matches no case", d.at()))
        .collect();
    if options.strict && !plan.unmatched_deviations.is_empty() {
        return Err(RunError::UnmatchedDeviations(
            plan.unmatched_deviations.iter().map(ToString::to_string).collect(),
        ));
    }
    if let Some(keys) = &options.rerun {
        for key in keys.iter().filter(|k| catalogue.by_key(k).is_none()) {
            warnings.push(format!("case {key} of the report is no longer in the catalogue"));
        }
    }
    if plan.cases.is_empty() && catalogue.errors.is_empty() {
        return Err(RunError::NothingSelected {
            slow_left_out: plan.slow_left_out,
        });
    }
    let is_static = options.target.is_static();
    let mut backend_options = options.backend.clone();
    if is_static {
        if backend_options.listen.port() == 0 {
            return Err(RunError::StaticBackendPort);
        }
        backend_options.unreachable_port = Some(STATIC_UNREACHABLE_PORT);
    }

    // Worlds find their run through process-wide slots: one run at a time per process.
    static ONE_RUN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_run = ONE_RUN.lock().await;

    let backend = Backend::start(&backend_options).await?;
    let target = match &options.target {
        TargetChoice::Embedded => Target::embedded().await?,
        TargetChoice::EmbeddedCluster => Target::embedded_cluster().await?,
        TargetChoice::RunningCluster { address, members } => {
            for member in members {
                if let Some(problem) = probe(member).await {
                    warnings.push(problem);
                }
            }
            Target::running(address, None).await?.with_cluster_members(members)?
        }
        TargetChoice::Running {
            address,
            static_streams,
        } => {
            // A server of another dialect takes any stream name: nothing was printed for it.
            let implicit = *static_streams && backend.dialect() != Dialect::Flussonic;
            let fixed = static_streams.then(|| {
                if implicit {
                    Default::default()
                } else {
                    expected_streams(&catalogue.cases, backend.base())
                }
            });
            if let Some(problem) = probe(&address.http).await {
                warnings.push(problem);
            }
            let target = Target::running(address, fixed).await?;
            if implicit {
                target.with_implicit_streams()
            } else {
                target
            }
        }
    };
    let target_name = target.describe();
    let dialect = backend.dialect();
    let mut ctx = RunContext::new(target, backend, options.time_scale, options.token_param.clone());
    if let Some(seed) = options.seed {
        ctx = ctx.with_seed(seed);
    }
    if let Some(app) = &options.rtmp_app {
        ctx = ctx.with_rtmp_app(app);
    }
    if let Some(source) = &options.source {
        ctx = ctx.with_source(source.clone());
    }
    if let Some(proto) = Proto::from_capability(capabilities.default_protocol()) {
        ctx = ctx.with_default_proto(proto);
    }
    let seed = ctx.seed;
    let ctx = Arc::new(ctx);
    let state = Arc::new(RunState {
        step_limits: Mutex::new(HashMap::new()),
        default_step_limit: ctx.bound(options.step_timeout),
    });
    *RUN_STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(state.clone());
    steps::install(Some(ctx.clone()));

    let collected = Rc::new(RefCell::new(Collected {
        catalogue: catalogue.clone(),
        running: HashMap::new(),
        results: HashMap::new(),
        backend_logs: HashMap::new(),
        strict: options.strict,
        hold_choices: options.hold_choices,
        observer,
    }));
    {
        let mut c = collected.borrow_mut();
        c.observer.started(&RunStart {
            target: target_name.clone(),
            capabilities: capabilities.to_string(),
            to_run: plan.to_run().count(),
            skipped: plan.cases.len() - plan.to_run().count(),
            seed,
            warnings: warnings.clone(),
        });
        for e in &catalogue.errors {
            let result = parse_error_result(&e.file, &e.message);
            c.observer.finished(&result);
            let slot = usize::MAX - c.results.len();
            c.results.insert(slot, result);
        }
        for planned in plan.cases.iter().filter(|p| p.skip.is_some()) {
            let case = &catalogue.cases[planned.index];
            let result = CaseResult {
                verdict: Verdict::Skip,
                skip: planned.skip.clone(),
                ..base_result(case)
            };
            c.observer.finished(&result);
            c.results.insert(planned.index, result);
        }
    }

    let to_run: Arc<BTreeSet<usize>> = Arc::new(plan.to_run().map(|p| p.index).collect());
    let step_limit = options.step_timeout;
    let cleanup_limit = ctx.bound(CLEANUP_TIMEOUT);
    let time_scale = options.time_scale;
    let (cat_before, cat_after, cat_filter) = (catalogue.clone(), catalogue.clone(), catalogue.clone());
    let state_before = state.clone();
    let logs = collected.clone();
    let filter_set = to_run.clone();
    let cucumber_run = UsherWorld::cucumber()
        .steps(timed_steps())
        .max_concurrent_scenarios(Some(options.concurrency))
        .before(move |feature, _rule, scenario, world| {
            let case = cat_before.find(feature, scenario).cloned();
            let state = state_before.clone();
            Box::pin(async move {
                let Some(case) = case else {
                    world.enter(false).await;
                    return;
                };
                // Static mode: the scope is the case key the target's configuration was printed with.
                if world.ctx.target.api().is_static() {
                    world.scope = case.key.clone();
                    world.backend = world.ctx.backend.scenario(&case.key);
                }
                let mut limit = step_limit;
                if case.slow {
                    limit = limit.max(SLOW_STEP_TIMEOUT);
                }
                state
                    .step_limits
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(world.scope.clone(), limit.mul_f64(time_scale));
                world.enter(case.serial).await;
            })
        })
        .after(move |feature, _rule, scenario, _ev, world| {
            let index = cat_after.find_index(feature, scenario);
            let logs = logs.clone();
            Box::pin(async move {
                let Some(world) = world else { return };
                if let Some(index) = index {
                    let calls: Vec<BackendRequest> =
                        world.backend.log().calls().iter().map(BackendRequest::from).collect();
                    logs.borrow_mut().backend_logs.insert(index, calls);
                }
                match tokio::time::timeout(cleanup_limit, world.leave()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(problem)) => panic!("cleaning up after the case: {problem}"),
                    Err(_) => panic!(
                        "cleaning up after the case took more than {:.0} s (the target does not answer its API)",
                        cleanup_limit.as_secs_f64()
                    ),
                }
            })
        })
        .with_writer(Collector {
            state: collected.clone(),
        })
        .fail_on_skipped()
        // After `with_writer`: cucumber's own CLI must not parse our arguments (or libtest's).
        .with_default_cli()
        .filter_run(options.features.clone(), move |feature, _rule, scenario| {
            cat_filter
                .find_index(feature, scenario)
                .is_some_and(|i| filter_set.contains(&i))
        });
    let stopped_by_timeout = tokio::time::timeout_at(deadline, cucumber_run).await.is_err();

    steps::install(None);
    *RUN_STATE.lock().unwrap_or_else(|e| e.into_inner()) = None;

    if stopped_by_timeout {
        fail_unfinished(&mut collected.borrow_mut(), &catalogue, &to_run, options.timeout);
    }
    let mut results: Vec<(usize, CaseResult)> = collected.borrow_mut().results.drain().collect();
    results.sort_by_key(|(i, _)| *i);
    let stray_backend_calls = ctx.backend.strays().calls().iter().map(ToString::to_string).collect();
    let summary = Summary {
        target: target_name,
        capabilities: capabilities.to_string(),
        dialect: dialect.to_string(),
        source: options.source.as_ref().map(ToString::to_string),
        seed,
        strict: options.strict,
        hold_choices: options.hold_choices,
        cases: results.into_iter().map(|(_, r)| r).collect(),
        elapsed: started.elapsed(),
        stray_backend_calls,
        warnings,
        slow_left_out: plan.slow_left_out,
        stopped_by_timeout,
    };
    match Arc::try_unwrap(ctx) {
        Ok(ctx) => ctx.target.shutdown().await,
        Err(_) => tracing::warn!("a case still holds the run context; the target is left running"),
    }
    Ok(summary)
}

/// After `--timeout`: every case that was running or had not started is FAIL, with that reason.
fn fail_unfinished(c: &mut Collected, catalogue: &Catalogue, to_run: &BTreeSet<usize>, timeout: Duration) {
    let limit = timeout.as_secs_f64();
    let running: Vec<usize> = c.running.keys().copied().collect();
    for k in running {
        let Some(r) = c.running.remove(&k) else { continue };
        let Some(case) = catalogue.cases.get(r.index) else {
            continue;
        };
        let mut failures = r.failures;
        let last = r
            .steps
            .last()
            .map(|s| format!("; the last step that finished: `{} {}`", s.keyword, s.text));
        failures.push(format!(
            "the run's --timeout of {limit:.0} s ended while this case was running{}",
            last.unwrap_or_default()
        ));
        let result = CaseResult {
            verdict: Verdict::Fail,
            failure: Some(failures.join("\n")),
            steps: with_unrun_steps(case, r.steps),
            elapsed: r.started.elapsed(),
            ..base_result(case)
        };
        c.observer.finished(&result);
        c.results.insert(r.index, result);
    }
    for &index in to_run {
        if c.results.contains_key(&index) {
            continue;
        }
        let case = &catalogue.cases[index];
        let result = CaseResult {
            verdict: Verdict::Fail,
            failure: Some(format!("not started: the run's --timeout of {limit:.0} s ended first")),
            steps: with_unrun_steps(case, Vec::new()),
            ..base_result(case)
        };
        c.observer.finished(&result);
        c.results.insert(index, result);
    }
}

/// A warning when the target's HTTP port does not take connections (every case will fail).
async fn probe(http: &url::Url) -> Option<String> {
    let host = http.host_str()?;
    let port = http.port_or_known_default()?;
    let addr = format!("{host}:{port}");
    let connect = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&addr).await?.collect();
        let first = addrs.first().ok_or_else(|| std::io::Error::other("no address"))?;
        tokio::net::TcpStream::connect(first).await.map(drop)
    };
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("the target's HTTP port {addr} does not take connections: {e}")),
        Err(_) => Some(format!(
            "the target's HTTP port {addr} did not accept a connection within 5 s"
        )),
    }
}

/// The parse error type of tag expressions (gherkin uses `peg`).
mod peg_error {
    pub type ParseError = <cucumber::gherkin::tagexpr::TagOperation as std::str::FromStr>::Err;
}

fn base_result(case: &Case) -> CaseResult {
    let mut failure = None;
    if !case.problems.is_empty() {
        failure = Some(case.problems.join("\n"));
    }
    CaseResult {
        key: case.key.clone(),
        location: case.location.clone(),
        feature: case.feature.clone(),
        title: case.title.clone(),
        ids: case.ids.clone(),
        level: case.level,
        slow: case.slow,
        needs: case.needs.iter().cloned().collect(),
        verdict: Verdict::Pass,
        skip: None,
        failure,
        steps: Vec::new(),
        backend_requests: Vec::new(),
        elapsed: Duration::ZERO,
    }
}

fn parse_error_result(file: &str, message: &str) -> CaseResult {
    CaseResult {
        key: format!("unparsed:{file}"),
        location: file.to_string(),
        feature: "-".into(),
        title: format!("{file} does not parse"),
        ids: Vec::new(),
        level: None,
        slow: false,
        needs: Vec::new(),
        verdict: Verdict::Fail,
        skip: None,
        failure: Some(message.to_string()),
        steps: Vec::new(),
        backend_requests: Vec::new(),
        elapsed: Duration::ZERO,
    }
}

/// The recorded steps, then the case's remaining steps as skipped.
fn with_unrun_steps(case: &Case, mut steps: Vec<StepRecord>) -> Vec<StepRecord> {
    for s in case.steps.iter().skip(steps.len()) {
        steps.push(StepRecord {
            keyword: s.keyword.clone(),
            text: s.text.clone(),
            line: s.line,
            background: s.background,
            status: StepStatus::Skipped,
            elapsed_ms: None,
            error: None,
        });
    }
    steps
}

struct Running {
    index: usize,
    started: Instant,
    failures: Vec<String>,
    steps: Vec<StepRecord>,
    step_started: Option<Instant>,
}

struct Collected {
    catalogue: Arc<Catalogue>,
    /// By the address of cucumber's scenario (events of concurrent scenarios interleave).
    running: HashMap<usize, Running>,
    /// By catalogue index.
    results: HashMap<usize, CaseResult>,
    /// The backend requests of each finished case, by catalogue index (from the after-hook).
    backend_logs: HashMap<usize, Vec<BackendRequest>>,
    strict: bool,
    hold_choices: bool,
    observer: Box<dyn Observer>,
}

/// A cucumber writer that keeps one result per case.
struct Collector {
    state: Rc<RefCell<Collected>>,
}

// Events are keyed per scenario, so the writer is correct on unordered events.
impl cucumber::writer::Normalized for Collector {}

fn key(scenario: &event::Source<gherkin::Scenario>) -> usize {
    std::ptr::from_ref::<gherkin::Scenario>(scenario) as usize
}

fn panic_text(info: &event::Info) -> String {
    if let Some(s) = info.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = info.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "a panic without a message".to_string()
    }
}

fn step_error_text(error: &event::StepError) -> String {
    match error {
        event::StepError::Panic(info) => panic_text(info),
        event::StepError::NotFound => "no step definition matches this step".to_string(),
        other => other.to_string(),
    }
}

impl Collected {
    fn step_event(&mut self, k: usize, step: &gherkin::Step, background: bool, ev: &event::Step<UsherWorld>) {
        let Some(r) = self.running.get_mut(&k) else { return };
        let (status, error) = match ev {
            event::Step::Started => {
                r.step_started = Some(Instant::now());
                return;
            }
            event::Step::Passed(..) => (StepStatus::Passed, None),
            event::Step::Skipped => (StepStatus::Skipped, None),
            event::Step::Failed(_, _, _, error) => {
                let text = step_error_text(error);
                r.failures.push(format!(
                    "step `{} {}` (line {}): {}",
                    step.keyword.trim(),
                    step.value,
                    step.position.line,
                    text
                ));
                (StepStatus::Failed, Some(text))
            }
        };
        let elapsed_ms = match status {
            StepStatus::Skipped => None,
            _ => r
                .step_started
                .take()
                .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
        };
        r.steps.push(StepRecord {
            keyword: step.keyword.trim().to_string(),
            text: step.value.clone(),
            line: step.position.line,
            background,
            status,
            elapsed_ms,
            error,
        });
    }

    fn scenario_event(
        &mut self,
        feature: &gherkin::Feature,
        scenario: &event::Source<gherkin::Scenario>,
        ev: event::Scenario<UsherWorld>,
    ) {
        let k = key(scenario);
        match ev {
            event::Scenario::Started => {
                let index = self.catalogue.find_index(feature, scenario).unwrap_or(usize::MAX);
                self.running.insert(
                    k,
                    Running {
                        index,
                        started: Instant::now(),
                        failures: Vec::new(),
                        steps: Vec::new(),
                        step_started: None,
                    },
                );
            }
            event::Scenario::Step(step, ev) => self.step_event(k, &step, false, &ev),
            event::Scenario::Background(step, ev) => self.step_event(k, &step, true, &ev),
            event::Scenario::Hook(kind, event::Hook::Failed(_, info)) => {
                if let Some(r) = self.running.get_mut(&k) {
                    r.failures.push(format!("{kind} hook: {}", panic_text(&info)));
                }
            }
            event::Scenario::Finished => {
                let Some(running) = self.running.remove(&k) else { return };
                let Some(case) = self.catalogue.cases.get(running.index).cloned() else {
                    tracing::warn!(scenario = %scenario.name, "a scenario outside the catalogue ran");
                    return;
                };
                let index = running.index;
                let mut result = self.result(&case, running);
                result.backend_requests = self.backend_logs.remove(&index).unwrap_or_default();
                self.observer.finished(&result);
                self.results.insert(index, result);
            }
            _ => {}
        }
    }

    fn result(&self, case: &Case, running: Running) -> CaseResult {
        let mut failures = case.problems.clone();
        failures.extend(running.failures);
        let verdict = match (failures.is_empty(), case.level) {
            (true, _) => Verdict::Pass,
            _ if !case.problems.is_empty() => Verdict::Fail,
            (false, Some(Level::Info)) if !self.hold_choices => Verdict::Info,
            (false, Some(Level::Should)) if !self.strict && !self.hold_choices => Verdict::Info,
            (false, _) => Verdict::Fail,
        };
        CaseResult {
            verdict,
            failure: (!failures.is_empty()).then(|| failures.join("\n")),
            steps: running.steps,
            elapsed: running.started.elapsed(),
            ..base_result(case)
        }
    }
}

impl cucumber::Writer<UsherWorld> for Collector {
    type Cli = cucumber::cli::Empty;

    async fn handle_event(&mut self, event: parser::Result<Event<event::Cucumber<UsherWorld>>>, _cli: &Self::Cli) {
        let mut state = self.state.borrow_mut();
        // Parse errors were reported from the catalogue, which reads the same files.
        let Ok(event) = event else { return };
        if let event::Cucumber::Feature(feature, ev) = event.value {
            match ev {
                event::Feature::Scenario(scenario, retryable) => {
                    state.scenario_event(&feature, &scenario, retryable.event);
                }
                event::Feature::Rule(_, event::Rule::Scenario(scenario, retryable)) => {
                    state.scenario_event(&feature, &scenario, retryable.event);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_follow_addresses_and_mode() {
        let http = url::Url::parse("http://127.0.0.1:1/").unwrap();
        let running = |rtmp: bool, static_streams: bool| TargetChoice::Running {
            address: Address {
                http: http.clone(),
                rtmp: rtmp.then(|| "127.0.0.1:1935".to_string()),
                rtsp: None,
                credential: None,
            },
            static_streams,
        };
        let c = capabilities_for(&running(false, false), None);
        assert!(c.supports("hls") && c.supports("mpegts") && !c.supports("rtmp") && !c.supports("rtsp"));
        assert!(c.supports("api") && c.supports("sessions_api"));
        let c = capabilities_for(&running(true, true), None);
        assert!(c.supports("rtmp"));
        assert!(!c.supports("api") && !c.supports("sessions_api") && c.supports("publish"));
        let declared = Capabilities {
            protocols: Some(["hls".to_string(), "rtsp".to_string()].into()),
            features: Some(["api".to_string(), "sessions_api".to_string()].into()),
            ..Capabilities::default()
        };
        let c = capabilities_for(&running(true, true), Some(&declared));
        assert!(c.supports("hls") && !c.supports("rtsp"), "no RTSP address: {c}");
        assert!(!c.supports("api") && c.supports("sessions_api"), "{c}");
        assert!(capabilities_for(&TargetChoice::Embedded, None).supports("rtsp"));
    }

    #[test]
    fn only_a_cluster_target_has_nodes_and_only_the_embedded_one_has_control() {
        let address = Address::http(url::Url::parse("http://127.0.0.1:1/").unwrap(), "a:b".parse().unwrap());
        let everything = Capabilities {
            features: Some([CLUSTER.to_string(), CLUSTER_CONTROL.to_string()].into()),
            ..Capabilities::default()
        };
        for single in [
            TargetChoice::Embedded,
            TargetChoice::address(address.http.clone(), "a:b".parse().unwrap()),
        ] {
            for declared in [None, Some(&everything)] {
                let c = capabilities_for(&single, declared);
                assert!(!c.supports(CLUSTER) && !c.supports(CLUSTER_CONTROL), "{single:?}: {c}");
            }
        }
        let c = capabilities_for(&TargetChoice::EmbeddedCluster, None);
        assert!(c.supports(CLUSTER) && c.supports(CLUSTER_CONTROL) && c.supports("rtsp"));
        let running = TargetChoice::RunningCluster {
            members: vec![address.http.clone(), url::Url::parse("http://127.0.0.1:2/").unwrap()],
            address,
        };
        let c = capabilities_for(&running, Some(&everything));
        assert!(c.supports(CLUSTER) && !c.supports(CLUSTER_CONTROL), "{c}");
    }
}
