//! The deviations file: cases a target knowingly does not follow, each with a written reason
//! (the BoGo shim's lesson). A matching case is SKIP (deviation) with the reason shown; an entry
//! that matches no case of the catalogue is reported (and is an error under `--strict`), so the
//! file cannot rot silently.
//!
//! Two formats. A file ending in `.toml`:
//!
//! ```toml
//! [[deviation]]
//! case = "LIM-*"                  # a pattern: see crate::select
//! reason = "no per-user limits in this product (ticket 123)"
//! ```
//!
//! Anything else is one entry per line, the pattern first (double-quoted if it has spaces), then
//! the reason; `#` starts a comment line:
//!
//! ```text
//! LIM-*            no per-user limits in this product (ticket 123)
//! "*admin token*"  admin tokens are not supported
//! ```

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::catalogue::{Case, Catalogue};
use crate::select::Pattern;

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    pub pattern: Pattern,
    pub reason: String,
    /// The file's name as given, for messages.
    pub file: String,
    pub line: usize,
}

impl Deviation {
    /// `deviations.toml:3`
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

impl fmt::Display for Deviation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}` ({})", self.at(), self.pattern, self.reason)
    }
}

/// A problem in the file, naming its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct DeviationsError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deviations {
    pub entries: Vec<Deviation>,
}

impl Deviations {
    /// Reads `path` (its format from its extension).
    pub fn load(path: &Path) -> Result<Deviations, DeviationsError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| DeviationsError {
            file: file.clone(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml")) {
            Deviations::parse_toml(&text, &file)
        } else {
            Deviations::parse_lines(&text, &file)
        }
    }

    /// The line format.
    pub fn parse_lines(text: &str, file: &str) -> Result<Deviations, DeviationsError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let err = |message: String| DeviationsError {
                file: file.to_string(),
                line,
                message,
            };
            let (pattern, rest) = if let Some(quoted) = trimmed.strip_prefix('"') {
                let end = quoted
                    .find('"')
                    .ok_or_else(|| err("the quoted pattern has no closing `\"`".to_string()))?;
                (&quoted[..end], &quoted[end + 1..])
            } else {
                trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""))
            };
            let reason = rest.trim();
            if pattern.trim().is_empty() {
                return Err(err("empty pattern".to_string()));
            }
            if reason.is_empty() {
                return Err(err(format!(
                    "`{pattern}` has no reason: every deviation needs one (PATTERN  REASON)"
                )));
            }
            entries.push(Deviation {
                pattern: Pattern(pattern.to_string()),
                reason: reason.to_string(),
                file: file.to_string(),
                line,
            });
        }
        Ok(Deviations { entries })
    }

    /// The TOML format.
    pub fn parse_toml(text: &str, file: &str) -> Result<Deviations, DeviationsError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            #[serde(default)]
            deviation: Vec<toml::Spanned<Entry>>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Entry {
            case: toml::Spanned<String>,
            reason: Option<toml::Spanned<String>>,
        }
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let doc: Doc = toml::from_str(text).map_err(|e| DeviationsError {
            file: file.to_string(),
            line: e.span().map_or(0, |s| line_of(s.start)),
            message: e.message().to_string(),
        })?;
        let mut entries = Vec::new();
        for entry in doc.deviation {
            let span = entry.span();
            let entry = entry.into_inner();
            let line = line_of(entry.case.span().start);
            let pattern = entry.case.into_inner();
            let reason = entry
                .reason
                .map(|r| r.into_inner().trim().to_string())
                .unwrap_or_default();
            if reason.is_empty() {
                return Err(DeviationsError {
                    file: file.to_string(),
                    line: line_of(span.start).max(line),
                    message: format!("`{pattern}` has no reason: every deviation needs `reason = \"…\"`"),
                });
            }
            if pattern.trim().is_empty() {
                return Err(DeviationsError {
                    file: file.to_string(),
                    line,
                    message: "empty `case` pattern".to_string(),
                });
            }
            entries.push(Deviation {
                pattern: Pattern(pattern),
                reason,
                file: file.to_string(),
                line,
            });
        }
        Ok(Deviations { entries })
    }

    /// The first entry matching `case`.
    pub fn matching(&self, case: &Case) -> Option<&Deviation> {
        self.entries.iter().find(|d| d.pattern.matches(case))
    }

    /// Entries that match no case of `catalogue`.
    pub fn unmatched(&self, catalogue: &Catalogue) -> Vec<Deviation> {
        self.entries
            .iter()
            .filter(|d| !catalogue.cases.iter().any(|c| d.pattern.matches(c)))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let d = Deviations::parse_lines(
            "# comment\n\nLIM-*   no limits here\n\"*admin token*\"  no admin tokens\n",
            "dev.txt",
        )
        .unwrap();
        assert_eq!(d.entries.len(), 2);
        assert_eq!(d.entries[0].pattern.0, "LIM-*");
        assert_eq!(d.entries[0].reason, "no limits here");
        assert_eq!(d.entries[0].line, 3);
        assert_eq!(d.entries[1].pattern.0, "*admin token*");
        assert_eq!(d.entries[1].at(), "dev.txt:4");
    }

    #[test]
    fn a_line_without_reason_is_an_error_naming_it() {
        let e = Deviations::parse_lines("LIM-*  fine\n\nSESS-02\n", "dev.txt").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("dev.txt:3: `SESS-02` has no reason"), "{e}");
        let e = Deviations::parse_lines("\"*x*\"   \n", "dev.txt").unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn toml_format() {
        let text = "[[deviation]]\ncase = \"LIM-*\"\nreason = \"no limits\"\n\n[[deviation]]\ncase = \"TOK-03\"\nreason = \"x\"\n";
        let d = Deviations::parse_toml(text, "d.toml").unwrap();
        assert_eq!(d.entries.len(), 2);
        assert_eq!(d.entries[1].line, 6);
        assert_eq!(d.entries[1].pattern.0, "TOK-03");
    }

    #[test]
    fn toml_entry_without_reason_names_its_line() {
        let text = "[[deviation]]\ncase = \"LIM-*\"\nreason = \"no limits\"\n\n[[deviation]]\ncase = \"TOK-03\"\n";
        let e = Deviations::parse_toml(text, "d.toml").unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.contains("TOK-03") && e.message.contains("no reason"), "{e}");
        let text = "[[deviation]]\ncase = \"A-1\"\nreason = \"  \"\n";
        assert_eq!(Deviations::parse_toml(text, "d.toml").unwrap_err().line, 2);
        let e = Deviations::parse_toml("[[deviation]]\ncase = \"A-1\"\nwhy = \"x\"\n", "d.toml").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }
}
