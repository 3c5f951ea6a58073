//! A snapshot of `usher cases`: the catalogue's keys, levels, requirement ids, titles and
//! needs. Adding, removing or retagging a scenario shows up here for review (accept with
//! `INSTA_UPDATE=always cargo test -p usher-conformance --test cases_snapshot`).

use std::process::Command;

#[test]
fn usher_cases_listing() {
    let out = Command::new(env!("CARGO_BIN_EXE_usher"))
        .arg("cases")
        .output()
        .expect("run usher cases");
    assert!(
        out.status.success(),
        "usher cases failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.lines().count() > 100, "the catalogue looks truncated:\n{text}");
    insta::assert_snapshot!("usher_cases", text);
}
