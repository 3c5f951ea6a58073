//! The requirement matrix (requirement id → cases) as Markdown, generated from the features and
//! kept in `docs/conformance.md` between two markers (`usher cases --matrix` rewrites it; a test
//! fails when it is stale).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Case, Catalogue, area_of, area_rank, area_title, id_rank};

pub const BEGIN: &str = "<!-- BEGIN GENERATED MATRIX: `cargo run -p usher-conformance -- cases --matrix` rewrites this section; do not edit it by hand -->";
pub const END: &str = "<!-- END GENERATED MATRIX -->";

/// The command that regenerates the section (printed by the staleness test).
pub const REGENERATE: &str = "cargo run -p usher-conformance -- cases --matrix";

type AreaKey = (usize, String);
type IdKey = (usize, String, u64, String);

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown between the markers (markers excluded).
pub fn markdown(catalogue: &Catalogue) -> String {
    let cases = &catalogue.cases;
    let count = |f: &dyn Fn(&Case) -> bool| cases.iter().filter(|c| f(c)).count();
    let ids = catalogue.requirement_ids();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} cases ({} must, {} should, {} info; {} slow) over {} requirement ids.\n",
        cases.len(),
        count(&|c| c.level == Some(super::Level::Must)),
        count(&|c| c.level == Some(super::Level::Should)),
        count(&|c| c.level == Some(super::Level::Info)),
        count(&|c| c.slow),
        ids.len()
    );
    for e in &catalogue.errors {
        let _ = writeln!(out, "**{} does not parse**: {}\n", e.file, cell(&e.message));
    }
    // area → id → cases, each in catalogue order
    let mut by_area: BTreeMap<AreaKey, BTreeMap<IdKey, Vec<&Case>>> = BTreeMap::new();
    for case in cases {
        for id in &case.ids {
            by_area
                .entry(area_rank(area_of(id)))
                .or_default()
                .entry(id_rank(id))
                .or_default()
                .push(case);
        }
    }
    for ((_, area), ids) in &by_area {
        let title = area_title(area);
        if title.is_empty() {
            let _ = writeln!(out, "### {area}\n");
        } else {
            let _ = writeln!(out, "### {area}: {title}\n");
        }
        let _ = writeln!(out, "| Requirement | Level | Scenario | File | Case | Needs |");
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for ((_, _, _, id), cases) in ids {
            for case in cases {
                let mut level = case.level.map_or_else(|| "?".to_string(), |l| l.tag().to_string());
                if case.slow {
                    level.push_str(", slow");
                }
                if case.serial {
                    level.push_str(", serial");
                }
                let needs = if case.needs.is_empty() {
                    "-".to_string()
                } else {
                    case.needs.iter().cloned().collect::<Vec<_>>().join(", ")
                };
                let _ = writeln!(
                    out,
                    "| {id} | {level} | {} | {} | `{}` | {needs} |",
                    cell(&case.title),
                    cell(&case.file),
                    case.key
                );
            }
        }
        out.push('\n');
    }
    out
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocError {
    #[error("the document has no line `{0}`")]
    NoMarker(&'static str),
}

/// The generated section of `doc` as it stands (between the markers).
pub fn current_section(doc: &str) -> Result<&str, DocError> {
    let start = doc.find(BEGIN).ok_or(DocError::NoMarker(BEGIN))? + BEGIN.len();
    let end = doc[start..].find(END).ok_or(DocError::NoMarker(END))? + start;
    Ok(doc[start..end].trim_matches('\n'))
}

/// `doc` with the section replaced by `section`.
pub fn replace_section(doc: &str, section: &str) -> Result<String, DocError> {
    let start = doc.find(BEGIN).ok_or(DocError::NoMarker(BEGIN))? + BEGIN.len();
    let end = doc[start..].find(END).ok_or(DocError::NoMarker(END))? + start;
    Ok(format!(
        "{}\n{}\n{}",
        &doc[..start],
        section.trim_matches('\n'),
        &doc[end..]
    ))
}

/// Whether `doc`'s section is what the catalogue generates.
pub fn is_fresh(doc: &str, catalogue: &Catalogue) -> Result<bool, DocError> {
    Ok(current_section(doc)? == markdown(catalogue).trim_matches('\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_between_markers() {
        let doc = format!("# T\n\n{BEGIN}\nold\n{END}\n\nafter\n");
        assert_eq!(current_section(&doc), Ok("old"));
        let new = replace_section(&doc, "new\nlines\n").unwrap();
        assert_eq!(new, format!("# T\n\n{BEGIN}\nnew\nlines\n{END}\n\nafter\n"));
        assert_eq!(current_section(&new), Ok("new\nlines"));
        assert_eq!(current_section("nothing"), Err(DocError::NoMarker(BEGIN)));
    }
}
