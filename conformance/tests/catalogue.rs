//! The catalogue as data: every case is tagged, the documented matrix is current, `usher cases`
//! lists every case, and the static configuration is deterministic and loads in a real parser.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use usher_conformance::catalogue::{Catalogue, matrix, streams};
use usher_conformance::default_features_dir;

fn catalogue() -> Catalogue {
    Catalogue::load(&default_features_dir()).expect("the features folder loads")
}

#[test]
fn every_case_parses_and_is_tagged() {
    let c = catalogue();
    assert!(c.errors.is_empty(), "feature files that do not parse: {:#?}", c.errors);
    let problems: Vec<String> = c
        .cases
        .iter()
        .filter(|case| !case.problems.is_empty())
        .map(|case| format!("{}: {}", case.location, case.problems.join("; ")))
        .collect();
    assert!(problems.is_empty(), "catalogue problems:\n{}", problems.join("\n"));
    let keys: BTreeSet<&str> = c.cases.iter().map(|case| case.key.as_str()).collect();
    assert_eq!(keys.len(), c.cases.len(), "case keys are unique");
}

#[test]
fn the_documented_matrix_is_current() {
    let doc_path = default_features_dir()
        .parent()
        .expect("the workspace root")
        .join("docs/conformance.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/conformance.md");
    let fresh = matrix::is_fresh(&doc, &catalogue()).unwrap_or_else(|e| panic!("docs/conformance.md: {e}"));
    assert!(
        fresh,
        "docs/conformance.md is stale: its requirement matrix does not match the features.\n\
         Regenerate it with:\n\n    {}\n",
        matrix::REGENERATE
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cases_json_lists_every_case_with_outline_rows_expanded() {
    let run = common::usher(&["cases", "--json"], Duration::from_secs(60)).await;
    assert_eq!(run.code, Some(0), "{run}");
    let listed: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let listed = listed.as_array().expect("an array");
    let c = catalogue();
    assert_eq!(listed.len(), c.cases.len());
    for (json, case) in listed.iter().zip(&c.cases) {
        assert_eq!(json["key"], case.key.as_str());
        assert_eq!(json["title"], case.title.as_str());
        assert!(json["ids"].as_array().is_some_and(|ids| !ids.is_empty()), "{json}");
        assert!(json["level"].is_string(), "{json}");
    }
    // Outline rows are cases of their own, with the row substituted in the title.
    assert!(c.cases.iter().all(|case| !case.title.contains('<')));
    let titles: BTreeSet<&str> = c.cases.iter().map(|case| case.title.as_str()).collect();
    assert!(titles.len() > c.cases.len() / 2);

    let run = common::usher(&["cases", "--only", "SESS-02"], Duration::from_secs(60)).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stdout.lines().filter(|l| l.contains("SESS-02")).count() >= 3,
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn print_config_is_deterministic_and_a_server_loads_it() {
    let args = ["check", "--print-config", "--backend-url", "http://10.1.2.3:9099"];
    let first = common::usher(&args, Duration::from_secs(60)).await;
    let second = common::usher(&args, Duration::from_secs(60)).await;
    assert_eq!(first.code, Some(0), "{first}");
    assert_eq!(
        first.stdout, second.stdout,
        "the printed configuration is deterministic"
    );
    let text = format!("http 127.0.0.1:0;\n{}", first.stdout);
    let config = usher_server::config::parse_config(&text, "printed").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let c = catalogue();
    let base = url::Url::parse("http://10.1.2.3:9099").unwrap();
    let expected = streams::expected_streams(&c.cases, &base);
    assert_eq!(config.streams.len(), expected.len());
    for stream in &config.streams {
        assert!(expected.contains_key(&stream.name), "{} was not expected", stream.name);
    }
    // Names are the case key and the scenario's alias.
    assert!(
        config
            .streams
            .iter()
            .all(|s| c.cases.iter().any(|case| s.name.starts_with(&format!("{}-", case.key))))
    );
}
