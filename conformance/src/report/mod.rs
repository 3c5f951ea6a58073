//! Results of a run, and the ways they are reported: terminal lines and summary ([`text`]),
//! JSON ([`json`]), JUnit XML ([`junit`]) and one self-contained HTML page ([`html`]). The
//! library formats; the binaries print and write files.

pub mod html;
pub mod json;
pub mod junit;
pub mod text;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::Call;
pub use crate::catalogue::Level;
use crate::catalogue::{area_rank, area_title};
pub use crate::select::SkipReason;

/// The outcome of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    /// A counted failure: `@must`, `@should` under `--strict`, a catalogue error, a timeout.
    Fail,
    /// Did not pass, but its level says it does not count (`@info`, or `@should` without
    /// `--strict`): recorded, never a failure.
    Info,
    /// Not run: the target does not support what it needs, or a deviation disables it.
    Skip,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Info => "INFO",
            Verdict::Skip => "SKIP",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Passed,
    Failed,
    /// Not run because an earlier step failed (or the run was stopped).
    Skipped,
}

/// One step of a case as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub keyword: String,
    pub text: String,
    pub line: usize,
    #[serde(default)]
    pub background: bool,
    pub status: StepStatus,
    /// Time the step took (absent for skipped steps).
    #[serde(default)]
    pub elapsed_ms: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// One request the backend received during a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendRequest {
    /// Arrival, in ms since the case started.
    pub offset_ms: u64,
    pub method: String,
    pub path: String,
    /// The query as decoded, in order.
    pub query: Vec<(String, String)>,
    /// What the backend did: the status and headers, or how it failed to answer.
    pub answered: String,
}

impl From<&Call> for BackendRequest {
    fn from(c: &Call) -> Self {
        BackendRequest {
            offset_ms: u64::try_from(c.offset.as_millis()).unwrap_or(u64::MAX),
            method: c.method.clone(),
            path: c.path.clone(),
            query: c.query.clone(),
            answered: c.answered.clone(),
        }
    }
}

impl fmt::Display for BackendRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{:>6} ms {} {}", self.offset_ms, self.method, self.path)?;
        let mut sep = '?';
        for (k, v) in &self.query {
            write!(f, "{sep}{k}={v}")?;
            sep = '&';
        }
        write!(f, " -> {}", self.answered)
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Ok(Duration::from_secs_f64(v.max(0.0)))
    }
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// The catalogue key (`sessions-3fa2c1d0`).
    pub key: String,
    /// `features/sessions.feature:14`
    pub location: String,
    pub feature: String,
    pub title: String,
    /// Requirement ids (`SESS-02`).
    pub ids: Vec<String>,
    pub level: Option<Level>,
    #[serde(default)]
    pub slow: bool,
    #[serde(default)]
    pub needs: Vec<String>,
    pub verdict: Verdict,
    /// Why it was skipped.
    #[serde(default)]
    pub skip: Option<SkipReason>,
    /// What failed (for FAIL and INFO): the step, what was expected and what was seen, the
    /// backend's requests.
    #[serde(default)]
    pub failure: Option<String>,
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    #[serde(default)]
    pub backend_requests: Vec<BackendRequest>,
    #[serde(with = "secs", rename = "elapsed_s")]
    pub elapsed: Duration,
}

impl CaseResult {
    /// Requirement areas, each once.
    pub fn areas(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for id in &self.ids {
            let a = crate::catalogue::area_of(id).to_string();
            if !out.contains(&a) {
                out.push(a);
            }
        }
        if out.is_empty() {
            out.push("-".to_string());
        }
        out
    }
}

/// Counts of one requirement area.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AreaCounts {
    pub area: String,
    pub title: String,
    pub pass: usize,
    pub fail: usize,
    pub info: usize,
    pub skip: usize,
}

impl AreaCounts {
    pub fn total(&self) -> usize {
        self.pass + self.fail + self.info + self.skip
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Which server was checked.
    pub target: String,
    /// What the target was taken to support.
    #[serde(default)]
    pub capabilities: String,
    /// The backend dialect the target's calls were read in (`flussonic`, `nginx-rtmp`, …).
    #[serde(default)]
    pub dialect: String,
    /// Where the suite published each case's stream itself, if it did.
    #[serde(default)]
    pub source: Option<String>,
    /// The run's seed: `--seed N` reproduces the generated cases.
    pub seed: u64,
    pub strict: bool,
    /// `--hold-choices`: `@info` failures counted too.
    #[serde(default)]
    pub hold_choices: bool,
    /// Every selected case, in catalogue order.
    pub cases: Vec<CaseResult>,
    #[serde(with = "secs", rename = "elapsed_s")]
    pub elapsed: Duration,
    /// Backend requests that arrived for no live case.
    #[serde(default)]
    pub stray_backend_calls: Vec<String>,
    /// Things the user should know: unmatched deviations, cases not found for a rerun, …
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Selected cases left out because they are `@slow` (run them with `--slow`).
    #[serde(default)]
    pub slow_left_out: usize,
    /// The run was stopped by `--timeout` after this long.
    #[serde(default)]
    pub stopped_by_timeout: bool,
}

impl Summary {
    /// `backend dialect nginx-rtmp; the suite publishes to rtmp://…`: how the target was
    /// driven, for every report.
    pub fn driven_by(&self) -> String {
        let dialect = if self.dialect.is_empty() {
            "flussonic"
        } else {
            &self.dialect
        };
        match &self.source {
            Some(source) => format!("backend dialect {dialect}; {source}"),
            None => format!("backend dialect {dialect}; the target's own stream inputs"),
        }
    }

    pub fn count(&self, v: Verdict) -> usize {
        self.cases.iter().filter(|r| r.verdict == v).count()
    }

    pub fn passed(&self) -> usize {
        self.count(Verdict::Pass)
    }

    pub fn failed(&self) -> usize {
        self.count(Verdict::Fail)
    }

    pub fn info(&self) -> usize {
        self.count(Verdict::Info)
    }

    pub fn skipped(&self) -> usize {
        self.count(Verdict::Skip)
    }

    /// True when nothing failed and some case was selected.
    pub fn ok(&self) -> bool {
        self.failed() == 0 && !self.cases.is_empty()
    }

    /// The closing line CI reads: `N passed, N failed, N skipped`.
    pub fn closing_line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }

    /// Counts per requirement area, in catalogue order. A case counts once in each of its areas.
    pub fn areas(&self) -> Vec<AreaCounts> {
        let mut map: BTreeMap<(usize, String), AreaCounts> = BTreeMap::new();
        for r in &self.cases {
            for area in r.areas() {
                let e = map.entry(area_rank(&area)).or_insert_with(|| AreaCounts {
                    title: area_title(&area).to_string(),
                    area: area.clone(),
                    ..AreaCounts::default()
                });
                match r.verdict {
                    Verdict::Pass => e.pass += 1,
                    Verdict::Fail => e.fail += 1,
                    Verdict::Info => e.info += 1,
                    Verdict::Skip => e.skip += 1,
                }
            }
        }
        map.into_values().collect()
    }
}
