//! The fuzzers' findings and seeds, replayed on every `cargo test` (docs/security.md,
//! "Fuzzing"), plus a short proptest-driven run of every fuzz entry point: random and mutated
//! seed inputs, without coverage guidance, so CI exercises each parser with hostile input even
//! though the libFuzzer runs in `server/fuzz/` are too long for it.
//!
//! Inputs live in `server/fuzz/seeds/TARGET/` (what a fuzz run starts from) and
//! `server/fuzz/regressions/TARGET/` (every crash a fuzzer found, fixed since; the file name says
//! what it was). Each is run through the same `usher_server::fuzzing` function the fuzz target
//! calls, which panics on a failed check.

use std::path::Path;

use proptest::prelude::*;
use usher_server::fuzzing;

type Entry = fn(&[u8]);

const TARGETS: [(&str, Entry); 8] = [
    ("config", fuzzing::config),
    ("backend_answer", fuzzing::backend_answer),
    ("http_target", fuzzing::http_target),
    ("http_request", fuzzing::http_request),
    ("api_body", fuzzing::api_body),
    ("rtsp", fuzzing::rtsp),
    ("rtmp", fuzzing::rtmp),
    ("ts_ingest", fuzzing::ts_ingest),
];

fn inputs(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let mut count = 0;
    for (target, entry) in TARGETS {
        for (name, data) in inputs(kind, target) {
            let outcome = std::panic::catch_unwind(|| entry(&data));
            assert!(outcome.is_ok(), "{kind}/{target}/{name} fails again");
            count += 1;
        }
    }
    count
}

#[test]
fn every_seed_passes() {
    assert!(replay("seeds") >= TARGETS.len(), "every target has a seed");
}

#[test]
fn every_crash_the_fuzzers_found_stays_fixed() {
    replay("regressions");
}

/// Bytes of one seed of `target`, mutated: flips, inserts, deletes, truncation, splices.
fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds: Vec<Vec<u8>> = inputs("seeds", target).into_iter().map(|(_, d)| d).collect();
    let seeds = if seeds.is_empty() { vec![Vec::new()] } else { seeds };
    (
        prop::sample::select(seeds),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..12),
    )
        .prop_map(|(mut data, edits)| {
            for (at, byte, op) in edits {
                let n = data.len();
                match op {
                    0 if n > 0 => data[at.index(n)] ^= byte | 1,
                    1 => data.insert(at.index(n + 1), byte),
                    2 if n > 0 => {
                        data.remove(at.index(n));
                    }
                    _ => data.truncate(at.index(n + 1).max(n.saturating_sub(usize::from(byte)))),
                }
            }
            data
        })
}

fn input(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..2048),
        3 => mutated(target),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn config_survives(data in input("config")) { fuzzing::config(&data) }

    #[test]
    fn backend_answer_survives(data in input("backend_answer")) { fuzzing::backend_answer(&data) }

    #[test]
    fn http_target_survives(data in input("http_target")) { fuzzing::http_target(&data) }

    #[test]
    fn http_request_survives(data in input("http_request")) { fuzzing::http_request(&data) }

    #[test]
    fn api_body_survives(data in input("api_body")) { fuzzing::api_body(&data) }

    #[test]
    fn rtsp_survives(data in input("rtsp")) { fuzzing::rtsp(&data) }

    #[test]
    fn rtmp_survives(data in input("rtmp")) { fuzzing::rtmp(&data) }

    #[test]
    fn ts_ingest_survives(data in input("ts_ingest")) { fuzzing::ts_ingest(&data) }
}
