//! Per-scenario results and the run summary, formatted for a terminal. The library formats;
//! the binaries print.

use std::fmt;
use std::time::Duration;

/// How much a scenario's failure counts (decisions.md: what the suite may assert).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The spec states it: a failure fails the run.
    Must,
    /// A product decision on an open point: a failure fails the run only under `--strict`.
    Should,
    /// Recorded, never a failure.
    Info,
}

impl Level {
    pub fn from_tag(tag: &str) -> Option<Level> {
        match tag {
            "must" => Some(Level::Must),
            "should" => Some(Level::Should),
            "info" => Some(Level::Info),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::Info => "INFO",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Did not pass, but its level says it does not count (`@info`, or `@should` without
    /// `--strict`).
    Noted,
}

/// The result of one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    /// `features/sessions.feature:14`
    pub location: String,
    pub feature: String,
    pub name: String,
    /// Requirement ids from the tags (`SESS-02`).
    pub ids: Vec<String>,
    pub level: Option<Level>,
    pub verdict: Verdict,
    /// What failed: the step and its message.
    pub failure: Option<String>,
    pub elapsed: Duration,
}

impl ScenarioResult {
    /// `PASS  SESS-01 MUST  A changed IP opens a new session  (sessions.feature:14, 0.4 s)`
    pub fn line(&self) -> String {
        let verdict = match self.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Noted => "NOTE",
        };
        let ids = if self.ids.is_empty() {
            "-".to_string()
        } else {
            self.ids.join(",")
        };
        let level = self.level.map_or("-".to_string(), |l| l.to_string());
        format!(
            "{verdict}  {ids} {level}  {}  ({}, {:.1} s)",
            self.name,
            self.location,
            self.elapsed.as_secs_f64()
        )
    }

    /// The failure message, indented under the line.
    pub fn details(&self) -> Option<String> {
        self.failure
            .as_ref()
            .map(|f| f.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n"))
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub target: String,
    pub results: Vec<ScenarioResult>,
    pub elapsed: Duration,
    /// Backend requests that arrived for no live scenario.
    pub stray_backend_calls: Vec<String>,
}

impl Summary {
    pub fn passed(&self) -> usize {
        self.count(Verdict::Pass)
    }

    pub fn failed(&self) -> usize {
        self.count(Verdict::Fail)
    }

    pub fn noted(&self) -> usize {
        self.count(Verdict::Noted)
    }

    fn count(&self, v: Verdict) -> usize {
        self.results.iter().filter(|r| r.verdict == v).count()
    }

    /// True when nothing failed and something ran.
    pub fn ok(&self) -> bool {
        self.failed() == 0 && !self.results.is_empty()
    }

    /// The closing line CI reads: exactly `N passed, N failed`.
    pub fn closing_line(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }

    /// Lines printed before the closing line: target, time, notes, stray calls, failures again.
    pub fn epilogue(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "ran {} scenario(s) against the {} in {:.1} s",
            self.results.len(),
            self.target,
            self.elapsed.as_secs_f64()
        )];
        if self.noted() > 0 {
            lines.push(format!(
                "{} scenario(s) noted (INFO, or SHOULD without --strict): not counted",
                self.noted()
            ));
        }
        if !self.stray_backend_calls.is_empty() {
            lines.push(format!(
                "the backend received {} request(s) for no live scenario:",
                self.stray_backend_calls.len()
            ));
            lines.extend(self.stray_backend_calls.iter().map(|c| format!("  {c}")));
        }
        let failed: Vec<_> = self.results.iter().filter(|r| r.verdict == Verdict::Fail).collect();
        if !failed.is_empty() {
            lines.push("failed:".to_string());
            lines.extend(failed.iter().map(|r| format!("  {}", r.line())));
        }
        lines
    }
}
