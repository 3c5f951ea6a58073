//! The catalogue as data: every case (a scenario, or one row of a Scenario Outline) with its
//! requirement ids, level, capability needs and a stable key.
//!
//! The features are parsed with the same `gherkin` parser and the same outline expansion that
//! cucumber uses ([`cucumber::feature::Ext::expand_examples`]), so a case here and a scenario in a
//! cucumber run are the same thing: they meet on (feature file, line).
//!
//! A case's **key** (`sessions-3fa2c1d0`) is derived from the feature file name, the expanded title
//! and the outline row, never from a line number: it survives edits elsewhere in the file, so it
//! can name server-side streams in static mode, deviations and `--rerun-failed` lists.

pub mod matrix;
pub mod needs;
pub mod peers;
pub mod streams;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use cucumber::feature::Ext as _;
use cucumber::gherkin;
use serde::{Deserialize, Serialize};

pub use needs::Capabilities;
pub use streams::StaticStream;

/// How much a case's failure counts (decisions.md: what the suite may assert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

    pub fn tag(self) -> &'static str {
        match self {
            Level::Must => "must",
            Level::Should => "should",
            Level::Info => "info",
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

/// One step as written (after outline substitution), for reports and static derivation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepText {
    /// `Given`, `When`, `Then`, `And`, `But`.
    pub keyword: String,
    pub text: String,
    pub line: usize,
    /// Part of the feature's Background.
    pub background: bool,
}

/// One case of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Case {
    /// Stable identifier: `<feature file stem>-<8 hex digits>`.
    pub key: String,
    /// `features/sessions.feature:14`: the scenario's line, or its outline row's line.
    pub location: String,
    /// The feature file relative to the features folder (`sessions.feature`).
    pub file: String,
    /// The line cucumber reports for this scenario (the row's line for an outline row).
    pub line: usize,
    /// The feature's title.
    pub feature: String,
    /// The scenario title with the outline row substituted.
    pub title: String,
    /// Every tag that applies (feature, rule, scenario, examples), without `@`.
    pub tags: Vec<String>,
    /// Requirement ids (`SESS-02`), in tag order.
    pub ids: Vec<String>,
    pub level: Option<Level>,
    /// `@slow`: needs minutes; excluded unless `--slow`.
    pub slow: bool,
    /// `@serial`: runs alone.
    pub serial: bool,
    /// What the target must support: protocols and features (see [`needs`]).
    pub needs: BTreeSet<String>,
    /// Catalogue errors (tags, duplicate keys): such a case always fails.
    pub problems: Vec<String>,
    #[serde(skip)]
    pub steps: Vec<StepText>,
    /// The streams the case declares, when they can be read from its steps (static mode).
    #[serde(skip)]
    pub streams: Option<Vec<StaticStream>>,
}

impl Case {
    /// Requirement areas (`SESS` of `SESS-02`), each once, in tag order.
    pub fn areas(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for id in &self.ids {
            let area = area_of(id).to_string();
            if !out.contains(&area) {
                out.push(area);
            }
        }
        out
    }
}

/// `SESS` of `SESS-02`.
pub fn area_of(id: &str) -> &str {
    id.split_once('-').map_or(id, |(a, _)| a)
}

/// The areas of the requirements catalogue, in its order, with their titles.
pub const AREAS: &[(&str, &str)] = &[
    ("CFG", "Enabling and wiring"),
    ("TOK", "Token acquisition"),
    ("SESS", "Session identity"),
    ("REQ", "Backend request"),
    ("RESP", "Response interpretation"),
    ("TIME", "Durations, rechecks, timeouts"),
    ("BAN", "Ban / negative caching"),
    ("LIM", "Per-user session limit"),
    ("UNIQ", "X-Unique"),
    ("CONF", "Config override"),
    ("ADV", "Ads and DVR windows"),
    ("DVR", "Archive and export tracking"),
    ("PUB", "Publishing"),
    ("ADM", "Admin view tokens"),
    ("DOM", "Domain lock"),
    ("SCR", "Script backends"),
    ("CZR", "Authorization configurator"),
    ("SEC", "Signed-token backend"),
    ("API", "Management API"),
    ("LEG", "Legacy auth directive"),
    ("AMB", "Open points of the spec"),
];

/// Sort key of an area: catalogue order, unknown areas after, alphabetically.
pub fn area_rank(area: &str) -> (usize, String) {
    let rank = AREAS.iter().position(|(a, _)| *a == area).unwrap_or(AREAS.len());
    (rank, area.to_string())
}

pub fn area_title(area: &str) -> &'static str {
    AREAS.iter().find(|(a, _)| *a == area).map_or("", |(_, t)| t)
}

/// Sort key of a requirement id: area order, then the number.
pub fn id_rank(id: &str) -> (usize, String, u64, String) {
    let (rank, area) = area_rank(area_of(id));
    let num = id.split_once('-').and_then(|(_, n)| n.parse().ok()).unwrap_or(u64::MAX);
    (rank, area, num, id.to_string())
}

/// `SESS-02`-style ids are uppercase letters, a dash, digits.
pub fn is_requirement_id(tag: &str) -> bool {
    let Some((area, num)) = tag.split_once('-') else {
        return false;
    };
    !area.is_empty()
        && area.bytes().all(|b| b.is_ascii_uppercase())
        && !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit())
}

/// A feature file that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileError {
    /// `features/sessions.feature`
    pub file: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("no feature folder at {0}")]
    NoFeatures(PathBuf),
    #[error("cannot read the feature folder {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// Every case of a features folder.
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// The features folder, canonical (as cucumber sees it).
    pub root: PathBuf,
    pub cases: Vec<Case>,
    /// Files that do not parse; their cases are missing from `cases`.
    pub errors: Vec<FileError>,
    by_location: HashMap<(String, usize), usize>,
}

impl Catalogue {
    /// Reads every `*.feature` below `dir` (sorted by path, like cucumber).
    pub fn load(dir: &Path) -> Result<Catalogue, CatalogueError> {
        if !dir.is_dir() {
            return Err(CatalogueError::NoFeatures(dir.to_path_buf()));
        }
        let root = dir.canonicalize().map_err(|source| CatalogueError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files = Vec::new();
        collect_features(&root, &mut files)?;
        files.sort();
        // Locations read `features/x.feature:12`: relative to the folder's parent.
        let shown_root = root.parent().map_or_else(|| root.clone(), Path::to_path_buf);
        let mut cases = Vec::new();
        let mut errors = Vec::new();
        for path in files {
            let file = rel(&root, &path);
            let shown = rel(&shown_root, &path);
            let parsed = gherkin::Feature::parse_path(&path, gherkin::GherkinEnv::default())
                .map_err(|e| e.to_string())
                .and_then(|f| f.expand_examples().map_err(|e| e.to_string()));
            match parsed {
                Ok(feature) => cases.extend(cases_of(&feature, &file, &shown)),
                Err(message) => errors.push(FileError { file: shown, message }),
            }
        }
        let mut seen: HashMap<String, String> = HashMap::new();
        for case in &mut cases {
            if let Some(other) = seen.get(&case.key) {
                case.problems.push(format!(
                    "catalogue: {other} has the same file and title; give one of them another title"
                ));
            } else {
                seen.insert(case.key.clone(), case.location.clone());
            }
        }
        let by_location = cases
            .iter()
            .enumerate()
            .map(|(i, c)| ((c.file.clone(), c.line), i))
            .collect();
        Ok(Catalogue {
            root,
            cases,
            errors,
            by_location,
        })
    }

    /// The case of a scenario as cucumber hands it over (after outline expansion).
    pub fn find(&self, feature: &gherkin::Feature, scenario: &gherkin::Scenario) -> Option<&Case> {
        self.find_index(feature, scenario).map(|i| &self.cases[i])
    }

    /// The index in [`Catalogue::cases`] of a scenario as cucumber hands it over.
    pub fn find_index(&self, feature: &gherkin::Feature, scenario: &gherkin::Scenario) -> Option<usize> {
        let path = feature.path.as_ref()?;
        let file = rel(&self.root, path);
        self.by_location.get(&(file, scenario.position.line)).copied()
    }

    pub fn by_key(&self, key: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.key == key)
    }

    /// Every requirement id of the catalogue, in catalogue order.
    pub fn requirement_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .cases
            .iter()
            .flat_map(|c| c.ids.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        ids.sort_by_key(|id| id_rank(id));
        ids
    }
}

fn collect_features(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CatalogueError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CatalogueError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_features(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case("feature"))
        {
            out.push(path);
        }
    }
    Ok(())
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

fn cases_of(feature: &gherkin::Feature, file: &str, shown: &str) -> Vec<Case> {
    let background: Vec<StepText> = feature
        .background
        .iter()
        .flat_map(|b| b.steps.iter())
        .map(|s| step_text(s, true))
        .collect();
    let mut out = Vec::new();
    for scenario in &feature.scenarios {
        out.push(case_of(feature, None, scenario, &background, file, shown));
    }
    for rule in &feature.rules {
        let mut bg = background.clone();
        bg.extend(
            rule.background
                .iter()
                .flat_map(|b| b.steps.iter())
                .map(|s| step_text(s, true)),
        );
        for scenario in &rule.scenarios {
            out.push(case_of(feature, Some(rule), scenario, &bg, file, shown));
        }
    }
    out
}

fn step_text(step: &gherkin::Step, background: bool) -> StepText {
    StepText {
        keyword: step.keyword.trim().to_string(),
        text: step.value.clone(),
        line: step.position.line,
        background,
    }
}

fn case_of(
    feature: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    scenario: &gherkin::Scenario,
    background: &[StepText],
    file: &str,
    shown: &str,
) -> Case {
    let tags: Vec<String> = feature
        .tags
        .iter()
        .chain(rule.into_iter().flat_map(|r| r.tags.iter()))
        .chain(scenario.tags.iter())
        .cloned()
        .collect();
    let levels: Vec<Level> = tags.iter().filter_map(|t| Level::from_tag(t)).collect();
    let mut ids: Vec<String> = Vec::new();
    for t in tags.iter().filter(|t| is_requirement_id(t)) {
        if !ids.contains(t) {
            ids.push(t.clone());
        }
    }
    let mut problems = Vec::new();
    if levels.len() != 1 {
        problems.push(format!(
            "catalogue: tag the scenario with exactly one of @must, @should, @info (found {})",
            levels.len()
        ));
    }
    if ids.is_empty() {
        problems.push("catalogue: tag the scenario with its requirement ids (@SESS-02)".to_string());
    }
    let mut steps = background.to_vec();
    steps.extend(scenario.steps.iter().map(|s| step_text(s, false)));
    // The outline row (cucumber keeps the header and this one row after expansion).
    let row: Vec<String> = scenario
        .examples
        .first()
        .and_then(|e| e.table.as_ref())
        .and_then(|t| t.rows.get(1))
        .cloned()
        .unwrap_or_default();
    let stem = Path::new(file)
        .file_stem()
        .map_or_else(|| "case".to_string(), |s| s.to_string_lossy().into_owned());
    let key = case_key(&stem, &scenario.name, &row);
    let mut needs = needs::needs_of(&tags, &steps);
    let streams = streams::derive(&steps);
    if streams.is_none() {
        // Its streams cannot be printed for a static target: they need the management API.
        needs.insert("api".to_string());
    }
    Case {
        key,
        location: format!("{shown}:{}", scenario.position.line),
        file: file.to_string(),
        line: scenario.position.line,
        feature: feature.name.clone(),
        title: scenario.name.clone(),
        slow: tags.iter().any(|t| t == "slow"),
        serial: tags.iter().any(|t| t == "serial"),
        level: (levels.len() == 1).then(|| levels[0]),
        tags,
        ids,
        needs,
        problems,
        steps,
        streams,
    }
}

/// `<stem>-<8 hex>`: lowercase, only `[a-z0-9-]`, so it is one path segment and a valid stream
/// name prefix on any server.
fn case_key(stem: &str, title: &str, row: &[String]) -> String {
    let mut input = Vec::new();
    input.extend_from_slice(stem.as_bytes());
    input.push(0);
    input.extend_from_slice(title.as_bytes());
    for cell in row {
        input.push(0x1f);
        input.extend_from_slice(cell.as_bytes());
    }
    let slug: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{}-{:08x}", slug.trim_matches('-'), fnv1a(&input) as u32)
}

/// FNV-1a, 64 bits: small, and stable across Rust versions (unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_ids_are_area_dash_number() {
        assert!(is_requirement_id("SESS-02"));
        assert!(is_requirement_id("T-11"));
        assert!(!is_requirement_id("must"));
        assert!(!is_requirement_id("SESS-"));
        assert!(!is_requirement_id("sess-02"));
        assert!(!is_requirement_id("needs-rtmp"));
    }

    #[test]
    fn keys_are_stable_and_distinguish_rows() {
        let a = case_key("sessions", "A title", &[]);
        assert_eq!(a, case_key("sessions", "A title", &[]));
        assert!(a.starts_with("sessions-") && a.len() == "sessions-".len() + 8, "{a}");
        assert_ne!(a, case_key("sessions", "A title", &["x".into()]));
        assert_ne!(
            case_key("s", "t", &["a".into(), "b".into()]),
            case_key("s", "t", &["ab".into()])
        );
        assert_eq!(case_key("My Feature", "t", &[]).split('-').next(), Some("my"));
    }

    #[test]
    fn ids_sort_by_area_then_number() {
        let mut ids = vec!["TOK-01", "SESS-10", "SESS-02", "ZZZ-1", "CFG-01"];
        ids.sort_by_key(|id| id_rank(id));
        assert_eq!(ids, ["CFG-01", "TOK-01", "SESS-02", "SESS-10", "ZZZ-1"]);
    }
}
