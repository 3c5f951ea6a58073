//! The JSON report (`--json FILE`): the whole [`Summary`] plus counts, so a script needs no
//! arithmetic; `--rerun-failed` reads it back.

use serde::{Deserialize, Serialize};

use super::{AreaCounts, Summary, Verdict};

/// The value of `format` in every report this version writes.
pub const FORMAT: &str = "usher-check-report/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub info: usize,
    pub skipped: usize,
}

#[derive(Serialize)]
struct Report<'a> {
    format: &'static str,
    counts: Counts,
    areas: Vec<AreaCounts>,
    #[serde(flatten)]
    summary: &'a Summary,
}

pub fn counts(summary: &Summary) -> Counts {
    Counts {
        passed: summary.passed(),
        failed: summary.failed(),
        info: summary.info(),
        skipped: summary.skipped(),
    }
}

/// The report as pretty-printed JSON.
pub fn render(summary: &Summary) -> String {
    let report = Report {
        format: FORMAT,
        counts: counts(summary),
        areas: summary.areas(),
        summary,
    };
    serde_json::to_string_pretty(&report).expect("a summary serialises")
}

/// A report read back.
#[derive(Debug, Clone, Deserialize)]
pub struct ReadReport {
    pub format: String,
    pub counts: Counts,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is not an usher check JSON report: {detail}")]
    Shape { path: String, detail: String },
}

/// Parses a report written by [`render`].
pub fn parse(text: &str, path: &str) -> Result<ReadReport, ReadError> {
    let report: ReadReport = serde_json::from_str(text).map_err(|e| ReadError::Shape {
        path: path.to_string(),
        detail: e.to_string(),
    })?;
    if !report.format.starts_with("usher-check-report/") {
        return Err(ReadError::Shape {
            path: path.to_string(),
            detail: format!("unknown format `{}`", report.format),
        });
    }
    Ok(report)
}

/// Reads a report file.
pub fn read(path: &std::path::Path) -> Result<ReadReport, ReadError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io {
        path: name.clone(),
        source,
    })?;
    parse(&text, &name)
}

impl ReadReport {
    /// Keys of the failed cases.
    pub fn failed_keys(&self) -> Vec<String> {
        self.summary
            .cases
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .map(|c| c.key.clone())
            .collect()
    }
}
