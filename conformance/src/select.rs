//! Which cases a run covers, and which of those it skips.
//!
//! A pattern (`--only`, a deviations entry) names cases by any of: a requirement id (`SESS-02`)
//! or an id glob (`LIM-*`); a case key (`sessions-3fa2c1d0`); a title glob, case-insensitive
//! (`*admin token*`); a feature file (`rtmp.feature`, `features/rtmp.feature`) or a location
//! (`features/sessions.feature:14`). `*` matches any run of characters, `?` one character.

use std::collections::BTreeSet;
use std::fmt;

use cucumber::gherkin::tagexpr::TagOperation;
use cucumber::tag::Ext as _;
use serde::{Deserialize, Serialize};

use crate::catalogue::{Capabilities, Case, Catalogue};
use crate::deviations::{Deviation, Deviations};

/// `*` and `?` wildcards over the whole text.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A case pattern (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(pub String);

impl Pattern {
    pub fn matches(&self, case: &Case) -> bool {
        let p = self.0.trim();
        if p.is_empty() {
            return false;
        }
        if case.ids.iter().any(|id| glob(p, id)) || glob(p, &case.key) {
            return true;
        }
        if glob(&p.to_lowercase(), &case.title.to_lowercase()) {
            return true;
        }
        let shown_file = case
            .location
            .rsplit_once(':')
            .map_or(case.location.as_str(), |(f, _)| f);
        glob(p, &case.file) || glob(p, shown_file) || glob(p, &case.location)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// A cucumber tag expression over the case's tags.
    pub tags: Option<TagOperation>,
    /// Any of these patterns (empty: every case).
    pub only: Vec<Pattern>,
    /// Include `@slow` cases.
    pub slow: bool,
    /// Exactly these keys (`--rerun-failed`); `@slow` ones included.
    pub keys: Option<BTreeSet<String>>,
}

impl Selection {
    pub fn selects(&self, case: &Case) -> bool {
        if let Some(keys) = &self.keys
            && !keys.contains(&case.key)
        {
            return false;
        }
        if case.slow && !self.slow && self.keys.is_none() {
            return false;
        }
        if let Some(tags) = &self.tags
            && !tags.eval(case.tags.iter())
        {
            return false;
        }
        self.only.is_empty() || self.only.iter().any(|p| p.matches(case))
    }

    /// Cases left out only because they are `@slow`.
    pub fn slow_left_out(&self, catalogue: &Catalogue) -> usize {
        if self.slow || self.keys.is_some() {
            return 0;
        }
        let with_slow = Selection {
            slow: true,
            ..self.clone()
        };
        catalogue
            .cases
            .iter()
            .filter(|c| c.slow && with_slow.selects(c))
            .count()
    }
}

/// Why a selected case does not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SkipReason {
    /// The target lacks these protocols or features.
    Unsupported { missing: Vec<String> },
    /// Disabled by an entry of the deviations file.
    Deviation {
        pattern: String,
        reason: String,
        /// `deviations.toml:3`
        at: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Unsupported { missing } => {
                write!(f, "unsupported by the target: needs {}", missing.join(", "))
            }
            SkipReason::Deviation { pattern, reason, at } => {
                write!(f, "deviation ({at}, `{pattern}`): {reason}")
            }
        }
    }
}

/// A selected case and what happens to it.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Index into the catalogue's cases.
    pub index: usize,
    pub skip: Option<SkipReason>,
}

/// The cases of a run.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub cases: Vec<Planned>,
    /// Selected but for `@slow`.
    pub slow_left_out: usize,
    /// Deviations entries that match no case of the catalogue.
    pub unmatched_deviations: Vec<Deviation>,
}

impl Plan {
    pub fn make(
        catalogue: &Catalogue,
        selection: &Selection,
        capabilities: &Capabilities,
        deviations: Option<&Deviations>,
    ) -> Plan {
        let mut cases = Vec::new();
        for (index, case) in catalogue.cases.iter().enumerate() {
            if !selection.selects(case) {
                continue;
            }
            // A case with a catalogue error runs and fails: skipping would hide the error.
            let skip = if case.problems.is_empty() {
                deviations
                    .and_then(|d| d.matching(case))
                    .map(|d| SkipReason::Deviation {
                        pattern: d.pattern.0.clone(),
                        reason: d.reason.clone(),
                        at: d.at(),
                    })
                    .or_else(|| {
                        let missing = capabilities.missing(&case.needs);
                        (!missing.is_empty()).then_some(SkipReason::Unsupported { missing })
                    })
            } else {
                None
            };
            cases.push(Planned { index, skip });
        }
        Plan {
            cases,
            slow_left_out: selection.slow_left_out(catalogue),
            unmatched_deviations: deviations.map(|d| d.unmatched(catalogue)).unwrap_or_default(),
        }
    }

    pub fn to_run(&self) -> impl Iterator<Item = &Planned> {
        self.cases.iter().filter(|p| p.skip.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("LIM-*", "LIM-02"));
        assert!(!glob("LIM-*", "SLIM-02"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*admin*token*", "with the admin view token"));
        assert!(glob("SESS-02", "SESS-02"));
        assert!(!glob("SESS-0", "SESS-02"));
        assert!(glob("*a*b", "xxaxxbxxb"));
    }
}
