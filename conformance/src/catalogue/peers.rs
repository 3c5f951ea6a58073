//! The peer matrix of docs/conformance.md: per requirement id, the verdict of the reference
//! server and of each third-party server the suite ships a profile for (`conformance/targets/`).
//!
//! It is generated, like the requirement matrix, from what the runs found: each peer's verdicts
//! are the reviewed insta snapshot its profile test writes (`conformance/tests/snapshots/`, one
//! `VERDICT key title` line per case), and every FAIL cell is explained in one line by the
//! profile's `failures.txt` (`KEY  what the server did instead`). A test fails when the section
//! is stale or a FAIL has no explanation (`usher cases --peers` rewrites the section).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::{Catalogue, id_rank};

pub const BEGIN: &str = "<!-- BEGIN GENERATED PEER MATRIX: `cargo run -p usher-conformance -- cases --peers` rewrites this section; do not edit it by hand -->";
pub const END: &str = "<!-- END GENERATED PEER MATRIX -->";
pub const REGENERATE: &str = "cargo run -p usher-conformance -- cases --peers";

/// A shipped profile: its folder under `conformance/targets/` and its verdict snapshot.
pub struct PeerProfile {
    pub name: &'static str,
    pub title: &'static str,
    /// `conformance/tests/snapshots/<snapshot>`
    pub snapshot: &'static str,
}

/// The shipped profiles, in column order.
pub const PROFILES: &[PeerProfile] = &[
    PeerProfile {
        name: "nginx-rtmp",
        title: "nginx-rtmp",
        snapshot: "nginx_profiles__nginx_rtmp_verdicts.snap",
    },
    PeerProfile {
        name: "nginx-auth-request",
        title: "nginx + auth_request",
        snapshot: "nginx_profiles__nginx_auth_request_verdicts.snap",
    },
];

/// One peer's verdicts by case key, and its explanations of failures.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The profile's folder under `conformance/targets/`.
    pub name: String,
    pub title: String,
    pub verdicts: BTreeMap<String, String>,
    pub explained: BTreeMap<String, String>,
}

/// Reads `VERDICT key title` lines (an insta snapshot: the header up to the second `---` is
/// skipped).
pub fn parse_verdicts(text: &str) -> BTreeMap<String, String> {
    let body = match text.strip_prefix("---") {
        Some(rest) => rest.split_once("\n---\n").map_or(rest, |(_, b)| b),
        None => text,
    };
    body.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.nth(1)?.to_string(), l.split_whitespace().next()?.to_lowercase()))
        })
        .collect()
}

/// Reads `KEY  explanation` lines; `#` starts a comment line.
pub fn parse_explained(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (key, why) = l.split_once(char::is_whitespace)?;
            Some((key.to_string(), why.trim().to_string()))
        })
        .collect()
}

/// The shipped peers, read from the conformance crate's folder.
pub fn load(crate_dir: &Path) -> Result<Vec<Peer>, String> {
    PROFILES
        .iter()
        .map(|p| {
            let snapshot = crate_dir.join("tests/snapshots").join(p.snapshot);
            let verdicts = std::fs::read_to_string(&snapshot)
                .map_err(|e| format!("{}: {e}", snapshot.display()))
                .map(|t| parse_verdicts(&t))?;
            let failures = crate_dir.join("targets").join(p.name).join("failures.txt");
            let explained = match std::fs::read_to_string(&failures) {
                Ok(t) => parse_explained(&t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
                Err(e) => return Err(format!("{}: {e}", failures.display())),
            };
            Ok(Peer {
                name: p.name.to_string(),
                title: p.title.to_string(),
                verdicts,
                explained,
            })
        })
        .collect()
}

/// FAIL cases of a peer with no explanation.
pub fn unexplained(peer: &Peer) -> Vec<String> {
    peer.verdicts
        .iter()
        .filter(|(k, v)| *v == "fail" && !peer.explained.contains_key(*k))
        .map(|(k, _)| k.clone())
        .collect()
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown between the markers.
pub fn markdown(catalogue: &Catalogue, peers: &[Peer]) -> String {
    let mut by_id: BTreeMap<(usize, String, u64, String), Vec<&super::Case>> = BTreeMap::new();
    for case in &catalogue.cases {
        for id in &case.ids {
            by_id.entry(id_rank(id)).or_default().push(case);
        }
    }
    let mut out = String::new();
    let _ = write!(out, "| Requirement | reference server |");
    for p in peers {
        let _ = write!(out, " {} |", p.title);
    }
    out.push('\n');
    let _ = write!(out, "|---|---|");
    for _ in peers {
        out.push_str("---|");
    }
    out.push('\n');
    for ((_, _, _, id), cases) in &by_id {
        let _ = write!(out, "| {id} | pass |");
        for p in peers {
            let verdict = |c: &&super::Case| p.verdicts.get(&c.key).map_or("skip", String::as_str);
            let mut failed: Vec<String> = Vec::new();
            for c in cases.iter().filter(|c| verdict(c) == "fail") {
                let why = p
                    .explained
                    .get(&c.key)
                    .cloned()
                    .unwrap_or_else(|| format!("`{}` (not explained)", c.key));
                // Cases of one id that fail for the same reason say it once.
                if !failed.contains(&why) {
                    failed.push(why);
                }
            }
            let text = if !failed.is_empty() {
                format!("**FAIL**: {}", failed.join("; "))
            } else if cases.iter().any(|c| matches!(verdict(c), "pass" | "info")) {
                "pass".to_string()
            } else {
                "skip".to_string()
            };
            let _ = write!(out, " {} |", cell(&text));
        }
        out.push('\n');
    }
    out
}

/// The section as it stands in `doc`.
pub fn current_section(doc: &str) -> Option<&str> {
    let start = doc.find(BEGIN)? + BEGIN.len();
    let end = doc[start..].find(END)? + start;
    Some(doc[start..end].trim_matches('\n'))
}

/// `doc` with the section replaced.
pub fn replace_section(doc: &str, section: &str) -> Option<String> {
    let start = doc.find(BEGIN)? + BEGIN.len();
    let end = doc[start..].find(END)? + start;
    Some(format!(
        "{}\n{}\n{}",
        &doc[..start],
        section.trim_matches('\n'),
        &doc[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_and_explanations_parse() {
        let v = parse_verdicts("---\nsource: x\nexpression: y\n---\nPASS a-1 T one\nFAIL b-2 T two\n");
        assert_eq!(v.get("a-1").map(String::as_str), Some("pass"));
        assert_eq!(v.get("b-2").map(String::as_str), Some("fail"));
        let e = parse_explained("# c\nb-2   nginx sends clientid, a counter\n");
        assert_eq!(
            e.get("b-2").map(String::as_str),
            Some("nginx sends clientid, a counter")
        );
        let peer = Peer {
            name: "p".into(),
            title: "p".into(),
            verdicts: v,
            explained: BTreeMap::new(),
        };
        assert_eq!(unexplained(&peer), ["b-2"]);
    }
}
