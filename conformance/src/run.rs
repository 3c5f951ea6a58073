//! The runner shared by `usher check` and `cargo test --test conformance`: starts the backend and
//! the target, runs the Gherkin catalogue through cucumber, and reduces cucumber's events to one
//! [`ScenarioResult`] per scenario.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cucumber::gherkin::tagexpr::TagOperation;
use cucumber::tag::Ext as _;
use cucumber::{Event, World as _, event, gherkin, parser};
use url::Url;

use crate::backend::{Backend, BackendError, BackendOptions};
use crate::report::{Level, ScenarioResult, Summary, Verdict};
use crate::steps::{self, RunContext, UsherWorld};
use crate::target::{ApiCredential, Target, TargetError};

/// Which server the run checks.
#[derive(Debug, Clone)]
pub enum TargetChoice {
    /// Start the reference server in-process.
    Embedded,
    /// A running server: its HTTP base URL and management API credential.
    Address { http: Url, credential: ApiCredential },
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The folder of `.feature` files.
    pub features: PathBuf,
    /// A cucumber tag expression (`@must and not @slow`).
    pub tags: Option<String>,
    /// Scenarios running at once.
    pub concurrency: usize,
    /// `@should` failures count as failures.
    pub strict: bool,
    /// Multiplies every upper time bound.
    pub time_scale: f64,
    /// The token query parameter (`auth_token`).
    pub token_param: String,
    pub target: TargetChoice,
    pub backend: BackendOptions,
}

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
            concurrency: 8,
            strict: false,
            time_scale: 1.0,
            token_param: "token".to_string(),
            target: TargetChoice::Embedded,
            backend: BackendOptions::default(),
        }
    }
}

impl RunOptions {
    /// Applies `USHER_FEATURES`, `USHER_TAGS`, `USHER_CONCURRENCY`, `USHER_STRICT` (`1`/`true`)
    /// and `USHER_TIME_SCALE` when set: the knobs of `cargo test --test conformance`, whose
    /// command line belongs to cargo.
    pub fn with_env(mut self) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(v) = var("USHER_FEATURES") {
            self.features = PathBuf::from(v);
        }
        if let Some(v) = var("USHER_TAGS") {
            self.tags = Some(v);
        }
        if let Some(n) = var("USHER_CONCURRENCY").and_then(|v| v.parse().ok()) {
            self.concurrency = n;
        }
        if let Some(v) = var("USHER_STRICT") {
            self.strict = v == "1" || v.eq_ignore_ascii_case("true");
        }
        if let Some(f) = var("USHER_TIME_SCALE").and_then(|v| v.parse().ok()) {
            self.time_scale = f;
        }
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no feature folder at {0}")]
    NoFeatures(PathBuf),
    #[error("bad tag expression `{expr}`: {message}")]
    Tags { expr: String, message: String },
    #[error("concurrency must be at least 1")]
    Concurrency,
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Runs the catalogue. `on_result` sees each scenario as it finishes (in finishing order).
pub async fn run(options: RunOptions, on_result: impl FnMut(&ScenarioResult) + 'static) -> Result<Summary, RunError> {
    if !options.features.is_dir() {
        return Err(RunError::NoFeatures(options.features));
    }
    if options.concurrency == 0 {
        return Err(RunError::Concurrency);
    }
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

    // Worlds find their run through a process-wide slot: one run at a time per process.
    static ONE_RUN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_run = ONE_RUN.lock().await;

    let started = Instant::now();
    let backend = Backend::start(&options.backend).await?;
    let target = match &options.target {
        TargetChoice::Embedded => Target::embedded().await?,
        TargetChoice::Address { http, credential } => Target::address(http.clone(), credential.clone())?,
    };
    let target_name = target.describe();
    let ctx = Arc::new(RunContext::new(
        target,
        backend,
        options.time_scale,
        options.token_param.clone(),
    ));
    steps::install(Some(ctx.clone()));

    // Locations are printed relative to the catalogue's parent: `features/sessions.feature:14`.
    let root = options
        .features
        .canonicalize()
        .unwrap_or_else(|_| options.features.clone());
    let root = root.parent().map_or_else(|| root.clone(), Path::to_path_buf);
    let collector = Collector {
        state: Rc::new(RefCell::new(Collected {
            root,
            running: HashMap::new(),
            results: Vec::new(),
            strict: options.strict,
            sink: Box::new(on_result),
        })),
    };
    let state = collector.state.clone();

    UsherWorld::cucumber()
        .max_concurrent_scenarios(Some(options.concurrency))
        .before(|feature, rule, scenario, world| {
            let serial = all_tags(feature, rule, scenario).any(|t| t == "serial");
            Box::pin(async move { world.enter(serial).await })
        })
        .after(|_, _, _, _, world| {
            Box::pin(async move {
                if let Some(world) = world
                    && let Err(problem) = world.leave().await
                {
                    panic!("cleaning up after the scenario: {problem}");
                }
            })
        })
        .with_writer(collector)
        .fail_on_skipped()
        // After `with_writer`: cucumber's own CLI must not parse our arguments (or libtest's).
        .with_default_cli()
        .filter_run(options.features.clone(), move |feature, rule, scenario| {
            tags.as_ref().is_none_or(|t| t.eval(all_tags(feature, rule, scenario)))
        })
        .await;

    steps::install(None);
    let stray_backend_calls = ctx.backend.strays().calls().iter().map(ToString::to_string).collect();
    let results = std::mem::take(&mut state.borrow_mut().results);
    let summary = Summary {
        target: target_name,
        results,
        elapsed: started.elapsed(),
        stray_backend_calls,
    };
    match Arc::try_unwrap(ctx) {
        Ok(ctx) => ctx.target.shutdown().await,
        Err(_) => tracing::warn!("a scenario still holds the run context; the target is left running"),
    }
    Ok(summary)
}

/// The parse error type of tag expressions (gherkin uses `peg`).
mod peg_error {
    pub type ParseError = <cucumber::gherkin::tagexpr::TagOperation as std::str::FromStr>::Err;
}

fn all_tags<'a>(
    feature: &'a gherkin::Feature,
    rule: Option<&'a gherkin::Rule>,
    scenario: &'a gherkin::Scenario,
) -> impl Iterator<Item = &'a String> + Clone {
    feature
        .tags
        .iter()
        .chain(rule.into_iter().flat_map(|r| r.tags.iter()))
        .chain(scenario.tags.iter())
}

struct Running {
    started: Instant,
    failures: Vec<String>,
}

struct Collected {
    /// Feature paths are shown relative to this folder.
    root: PathBuf,
    running: HashMap<usize, Running>,
    results: Vec<ScenarioResult>,
    strict: bool,
    sink: Box<dyn FnMut(&ScenarioResult)>,
}

/// A cucumber writer that keeps one result per scenario. Events of concurrent scenarios arrive
/// interleaved; they are told apart by the scenario's address.
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
    fn scenario_event(
        &mut self,
        feature: &gherkin::Feature,
        rule: Option<&gherkin::Rule>,
        scenario: &event::Source<gherkin::Scenario>,
        ev: event::Scenario<UsherWorld>,
    ) {
        let k = key(scenario);
        match ev {
            event::Scenario::Started => {
                self.running.insert(
                    k,
                    Running {
                        started: Instant::now(),
                        failures: Vec::new(),
                    },
                );
            }
            event::Scenario::Step(step, event::Step::Failed(_, _, _, error))
            | event::Scenario::Background(step, event::Step::Failed(_, _, _, error)) => {
                let text = format!(
                    "step `{} {}` (line {}): {}",
                    step.keyword.trim(),
                    step.value,
                    step.position.line,
                    step_error_text(&error)
                );
                self.running.entry(k).or_insert_with(|| Running {
                    started: Instant::now(),
                    failures: Vec::new(),
                });
                if let Some(r) = self.running.get_mut(&k) {
                    r.failures.push(text);
                }
            }
            event::Scenario::Hook(kind, event::Hook::Failed(_, info)) => {
                if let Some(r) = self.running.get_mut(&k) {
                    r.failures.push(format!("{kind} hook: {}", panic_text(&info)));
                }
            }
            event::Scenario::Finished => {
                let running = self.running.remove(&k).unwrap_or(Running {
                    started: Instant::now(),
                    failures: Vec::new(),
                });
                let result = self.result(feature, rule, scenario, running);
                (self.sink)(&result);
                self.results.push(result);
            }
            _ => {}
        }
    }

    fn result(
        &self,
        feature: &gherkin::Feature,
        rule: Option<&gherkin::Rule>,
        scenario: &gherkin::Scenario,
        running: Running,
    ) -> ScenarioResult {
        let tags: Vec<&String> = all_tags(feature, rule, scenario).collect();
        let levels: Vec<Level> = tags.iter().filter_map(|t| Level::from_tag(t)).collect();
        let ids: Vec<String> = tags
            .iter()
            .filter(|t| is_requirement_id(t))
            .map(|t| t.to_string())
            .collect();
        let mut failures = running.failures;
        if levels.len() != 1 {
            failures.push(format!(
                "catalogue: tag the scenario with exactly one of @must, @should, @info (found {})",
                levels.len()
            ));
        }
        if ids.is_empty() {
            failures.push("catalogue: tag the scenario with its requirement ids (@SESS-02)".into());
        }
        let level = (levels.len() == 1).then(|| levels[0]);
        let catalogue_error = failures.iter().any(|f| f.starts_with("catalogue:"));
        let verdict = match (failures.is_empty(), level) {
            (true, _) => Verdict::Pass,
            _ if catalogue_error => Verdict::Fail,
            (false, Some(Level::Info)) => Verdict::Noted,
            (false, Some(Level::Should)) if !self.strict => Verdict::Noted,
            (false, _) => Verdict::Fail,
        };
        let path = feature.path.as_ref().map_or_else(
            || feature.name.clone(),
            |p| p.strip_prefix(&self.root).unwrap_or(p).display().to_string(),
        );
        ScenarioResult {
            location: format!("{path}:{}", scenario.position.line),
            feature: feature.name.clone(),
            name: scenario.name.clone(),
            ids,
            level,
            verdict,
            failure: (!failures.is_empty()).then(|| failures.join("\n")),
            elapsed: running.started.elapsed(),
        }
    }

    fn parse_error(&mut self, error: &parser::Error) {
        let result = ScenarioResult {
            location: "-".into(),
            feature: "-".into(),
            name: format!("the catalogue does not parse: {error}"),
            ids: Vec::new(),
            level: None,
            verdict: Verdict::Fail,
            failure: Some(error.to_string()),
            elapsed: Duration::ZERO,
        };
        (self.sink)(&result);
        self.results.push(result);
    }
}

/// `SESS-02`, `T11`-style ids are uppercase letters, a dash, digits.
fn is_requirement_id(tag: &str) -> bool {
    let Some((area, num)) = tag.split_once('-') else {
        return false;
    };
    !area.is_empty()
        && area.bytes().all(|b| b.is_ascii_uppercase())
        && !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit())
}

impl cucumber::Writer<UsherWorld> for Collector {
    type Cli = cucumber::cli::Empty;

    async fn handle_event(&mut self, event: parser::Result<Event<event::Cucumber<UsherWorld>>>, _cli: &Self::Cli) {
        let mut state = self.state.borrow_mut();
        let event = match event {
            Ok(e) => e.value,
            Err(error) => {
                state.parse_error(&error);
                return;
            }
        };
        if let event::Cucumber::Feature(feature, ev) = event {
            match ev {
                event::Feature::Scenario(scenario, retryable) => {
                    state.scenario_event(&feature, None, &scenario, retryable.event);
                }
                event::Feature::Rule(rule, event::Rule::Scenario(scenario, retryable)) => {
                    state.scenario_event(&feature, Some(&rule), &scenario, retryable.event);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_requirement_id;

    #[test]
    fn requirement_ids_are_area_dash_number() {
        assert!(is_requirement_id("SESS-02"));
        assert!(is_requirement_id("T-11"));
        assert!(!is_requirement_id("must"));
        assert!(!is_requirement_id("SESS-"));
        assert!(!is_requirement_id("sess-02"));
    }
}
