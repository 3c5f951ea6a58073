//! The peer matrix of docs/conformance.md is what the shipped profiles' verdict snapshots and
//! failure explanations generate, and every FAIL there is explained.

use std::path::Path;

use usher_conformance::catalogue::{Catalogue, peers};

#[test]
fn the_peer_matrix_is_fresh_and_every_fail_is_explained() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalogue = Catalogue::load(&usher_conformance::default_features_dir()).expect("the catalogue loads");
    let loaded = peers::load(crate_dir).expect("the shipped profiles' snapshots are readable");
    assert!(!loaded.is_empty());
    for peer in &loaded {
        let missing = peers::unexplained(peer);
        assert!(
            missing.is_empty(),
            "{} fails {missing:?} without a line in conformance/targets/{}/failures.txt",
            peer.title,
            peer.name
        );
        for key in peer.explained.keys() {
            assert_eq!(
                peer.verdicts.get(key).map(String::as_str),
                Some("fail"),
                "{}/failures.txt explains {key}, which it does not fail (any more)",
                peer.name
            );
        }
    }
    let doc_path = crate_dir.join("../docs/conformance.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/conformance.md");
    let current =
        peers::current_section(&doc).unwrap_or_else(|| panic!("docs/conformance.md has no line `{}`", peers::BEGIN));
    let expected = peers::markdown(&catalogue, &loaded);
    assert_eq!(
        current,
        expected.trim_matches('\n'),
        "docs/conformance.md's peer matrix is stale: run `{}`",
        peers::REGENERATE
    );
}
