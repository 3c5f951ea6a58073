//! The digest of the catalogue the binary is built with, for `usher --version` and the first
//! line of `usher check`: SHA-256 over the feature files under `../features`, in path order, each
//! as its path relative to that folder, a NUL byte, its length as 8 bytes (big-endian) and its
//! contents. Rebuilt whenever a file there changes.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn feature_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            feature_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "feature") {
            out.push(path);
        }
    }
}

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let features = Path::new(&manifest).join("..").join("features");
    println!("cargo:rerun-if-changed={}", features.display());
    let mut files = Vec::new();
    feature_files(&features, &mut files);
    let mut named: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&features)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/");
            (rel, p)
        })
        .collect();
    named.sort();
    let mut hash = Sha256::new();
    for (rel, path) in &named {
        let text = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        hash.update(rel.as_bytes());
        hash.update([0]);
        hash.update((text.len() as u64).to_be_bytes());
        hash.update(&text);
    }
    let digest: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=USHER_CATALOGUE_DIGEST={digest}");
    println!("cargo:rustc-env=USHER_CATALOGUE_FILES={}", named.len());
}
