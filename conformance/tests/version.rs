//! `usher --version` names the catalogue the binary carries (a SHA-256 over `features/`, computed
//! at build time), and `usher check` prints its first line within a second of starting, before
//! it loads the catalogue or starts anything.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::USHER;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The digest as build.rs defines it: per feature file in path order, its relative path, a NUL
/// byte, its length (8 bytes, big-endian) and its contents.
fn catalogue_digest(features: &Path) -> (String, usize) {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("the features folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "feature") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(features, &mut files);
    let mut named: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|p| (p.strip_prefix(features).unwrap().to_string_lossy().into_owned(), p))
        .collect();
    named.sort();
    let mut hash = Sha256::new();
    for (rel, path) in &named {
        let text = std::fs::read(path).unwrap();
        hash.update(rel.as_bytes());
        hash.update([0]);
        hash.update((text.len() as u64).to_be_bytes());
        hash.update(&text);
    }
    let digest = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    (digest, named.len())
}

#[test]
fn the_version_names_the_catalogue_by_its_digest() {
    let out = std::process::Command::new(USHER)
        .arg("--version")
        .output()
        .expect("usher runs");
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout);
    let (digest, files) = catalogue_digest(&usher_conformance::default_features_dir());
    assert_eq!(
        version.trim(),
        format!(
            "usher {} (catalogue sha256:{digest}, {files} feature files)",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(usher_conformance::CATALOGUE_DIGEST, digest);
}

#[tokio::test]
async fn check_prints_its_first_line_within_a_second() {
    // One quick case, so the run ends by itself (and cleans up) right after.
    let started = Instant::now();
    let mut child = tokio::process::Command::new(USHER)
        .args(["check", "--progress", "lines", "--only", "admin-9a6f9fbb"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("usher runs");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let first = tokio::time::timeout(Duration::from_secs(1), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("no line within a second of starting"))
        .expect("stdout reads")
        .expect("a first line");
    let after = started.elapsed();
    let expected = format!(
        "usher {} (catalogue {}): checking the embedded reference server",
        env!("CARGO_PKG_VERSION"),
        &usher_conformance::CATALOGUE_DIGEST[..12]
    );
    assert!(first.starts_with(&expected), "{first:?} after {after:?}");
    let mut rest = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .unwrap_or(Ok(None))
    {
        rest.push(line);
    }
    let status = child.wait().await.expect("usher ends");
    assert!(status.success(), "{rest:?}");
    assert_eq!(rest.last().map(String::as_str), Some("1 passed, 0 failed, 0 skipped"));
}
