//! A second reference server, started on its own with `usher serve --config FILE`, checked by
//! address and in static mode, must get the same verdicts as the embedded run; and the JSON and
//! JUnit reports, read back, agree with what the run printed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{Run, Serve, read_json, scratch, usher, verdicts};

/// The runs of this file share two CPUs: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const RUN_LIMIT: Duration = Duration::from_secs(240);

/// Capabilities a running target lacks unless its manifest declares them, because only the
/// embedded server gets them from the suite (media files in its folder).
const EMBEDDED_ONLY: [&str; 1] = ["file_input"];

/// What no single server has: the cluster cases need a cluster target (`--cluster` or a
/// manifest's `[cluster] members`), whatever the server.
const CLUSTER_ONLY: [&str; 2] = [
    usher_conformance::catalogue::needs::CLUSTER,
    usher_conformance::catalogue::needs::CLUSTER_CONTROL,
];

/// Counts of a JSON report agree with the run's closing line and its printed lines.
fn assert_json_agrees(run: &Run, report: &serde_json::Value) {
    let (passed, failed, skipped) = run.closing();
    assert_eq!(report["format"], "usher-check-report/1");
    assert_eq!(report["counts"]["passed"], passed, "{run}");
    assert_eq!(report["counts"]["failed"], failed, "{run}");
    assert_eq!(report["counts"]["skipped"], skipped, "{run}");
    let cases = report["cases"].as_array().expect("cases");
    let count = |v: &str| cases.iter().filter(|c| c["verdict"] == v).count();
    assert_eq!(count("pass"), passed);
    assert_eq!(count("fail"), failed);
    assert_eq!(count("skip"), skipped);
    let info = report["counts"]["info"].as_u64().expect("info") as usize;
    assert_eq!(count("info"), info);
    // Every case the run printed is in the report, with the same verdict.
    for line in run.stdout.lines() {
        let Some((label, _)) = line.split_once("  ") else {
            continue;
        };
        let verdict = match label {
            "PASS" => "pass",
            "FAIL" => "fail",
            "INFO" => "info",
            "SKIP" => "skip",
            _ => continue,
        };
        let location = line.rsplit_once('(').map(|(_, l)| l).unwrap_or_default();
        let location = location.split([',', ')']).next().unwrap_or_default();
        assert!(
            cases
                .iter()
                .any(|c| c["location"] == location && c["verdict"] == verdict),
            "printed `{line}` is not in the report"
        );
    }
    // Failures carry their reason; a case that ran lists its steps.
    for c in cases {
        if c["verdict"] == "fail" || c["verdict"] == "info" {
            assert!(c["failure"].as_str().is_some_and(|f| !f.is_empty()), "{c}");
        }
        if c["verdict"] == "pass" {
            assert!(c["steps"].as_array().is_some_and(|s| !s.is_empty()), "{c}");
        }
    }
}

/// The JUnit report parses, and its counts and test cases agree with the JSON report.
fn assert_junit_agrees(path: &Path, report: &serde_json::Value) {
    let text = std::fs::read_to_string(path).expect("the JUnit report");
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("the JUnit report is not XML: {e}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let attr = |name: &str| root.attribute(name).and_then(|v| v.parse::<u64>().ok());
    let cases = report["cases"].as_array().expect("cases");
    assert_eq!(attr("tests"), Some(cases.len() as u64));
    assert_eq!(attr("failures"), report["counts"]["failed"].as_u64());
    assert_eq!(attr("skipped"), report["counts"]["skipped"].as_u64());
    let testcases: Vec<roxmltree::Node> = root.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(testcases.len(), cases.len());
    let failures = testcases
        .iter()
        .filter(|t| t.children().any(|c| c.has_tag_name("failure")))
        .count();
    assert_eq!(Some(failures as u64), report["counts"]["failed"].as_u64());
    let skipped: Vec<&roxmltree::Node> = testcases
        .iter()
        .filter(|t| t.children().any(|c| c.has_tag_name("skipped")))
        .collect();
    assert_eq!(Some(skipped.len() as u64), report["counts"]["skipped"].as_u64());
    for s in skipped {
        let message = s
            .children()
            .find(|c| c.has_tag_name("skipped"))
            .and_then(|c| c.attribute("message"))
            .unwrap_or_default();
        assert!(!message.is_empty(), "a skipped case names its reason");
    }
    // Test case names carry the requirement ids and the title.
    for c in cases {
        let title = c["title"].as_str().expect("title");
        assert!(
            testcases
                .iter()
                .any(|t| t.attribute("name").is_some_and(|n| n.ends_with(title))),
            "no <testcase> for {title}"
        );
    }
}

fn server_config() -> &'static str {
    "# the second reference server\nhttp 127.0.0.1:0;\nrtmp 127.0.0.1:0;\nrtsp 127.0.0.1:0;\nedit_auth usher-test s3cret;\n"
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_by_address_gets_the_embedded_verdicts_and_the_reports_agree() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = scratch("second-server");
    let (json, junit, html) = (
        dir.join("embedded.json"),
        dir.join("embedded.xml"),
        dir.join("embedded.html"),
    );
    let embedded = usher(
        &[
            "check",
            "--json",
            json.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
        RUN_LIMIT,
    )
    .await;
    assert_eq!(
        embedded.code,
        Some(0),
        "the embedded run passes every counted case\n{embedded}"
    );
    let embedded_report = read_json(&json);
    assert_json_agrees(&embedded, &embedded_report);
    assert_junit_agrees(&junit, &embedded_report);
    assert!(std::fs::metadata(&html).is_ok_and(|m| m.len() > 10_000));

    let server = Serve::start(&dir, "second.conf", server_config()).await;
    let address_json = dir.join("address.json");
    let mut args = vec![
        "check".to_string(),
        "--target".to_string(),
        server.url(),
        "--api-auth".to_string(),
        "usher-test:s3cret".to_string(),
        "--json".to_string(),
        address_json.to_str().unwrap().to_string(),
    ];
    if let Some(rtmp) = &server.rtmp {
        args.extend(["--rtmp".to_string(), rtmp.clone()]);
    }
    if let Some(rtsp) = &server.rtsp {
        args.extend(["--rtsp".to_string(), rtsp.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let by_address = usher(&args, RUN_LIMIT).await;
    server.stop().await;
    let address_report = read_json(&address_json);
    assert_json_agrees(&by_address, &address_report);
    let (embedded_verdicts, address_verdicts) = (verdicts(&embedded_report), verdicts(&address_report));
    // The one allowed difference: cases a running target skips for a capability only the
    // embedded server has by construction (the suite fills its media folder).
    let skipped_by_design = |key: &str| {
        address_report["cases"].as_array().unwrap().iter().any(|c| {
            c["key"] == key
                && c["verdict"] == "skip"
                && c["skip"]["missing"].as_array().is_some_and(|m| {
                    m.iter()
                        .all(|n| EMBEDDED_ONLY.contains(&n.as_str().unwrap_or_default()))
                })
        })
    };
    let differ: BTreeMap<&String, (&String, Option<&String>)> = embedded_verdicts
        .iter()
        .filter(|(k, v)| address_verdicts.get(*k) != Some(*v) && !skipped_by_design(k))
        .map(|(k, v)| (k, (v, address_verdicts.get(k))))
        .collect();
    assert!(
        differ.is_empty() && embedded_verdicts.len() == address_verdicts.len(),
        "verdicts differ (embedded, by address): {differ:#?}\n{by_address}"
    );
    assert_eq!(by_address.code, Some(0), "{by_address}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_static_server_runs_the_cases_it_can_and_skips_the_rest() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = scratch("static-server");
    let port = common::free_port();
    let backend = format!("127.0.0.1:{port}");
    let printed = usher(
        &["check", "--print-config", "--backend-url", &format!("http://{backend}")],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(printed.code, Some(0), "{printed}");
    let config = format!(
        "http 127.0.0.1:0;\nrtmp 127.0.0.1:0;\nrtsp 127.0.0.1:0;\n{}",
        printed.stdout
    );
    let server = Serve::start(&dir, "static.conf", &config).await;
    let json = dir.join("static.json");
    let mut args = vec![
        "check".to_string(),
        "--static".to_string(),
        "--target".to_string(),
        server.url(),
        "--backend-listen".to_string(),
        backend.clone(),
        "--json".to_string(),
        json.to_str().unwrap().to_string(),
    ];
    if let Some(rtmp) = &server.rtmp {
        args.extend(["--rtmp".to_string(), rtmp.clone()]);
    }
    if let Some(rtsp) = &server.rtsp {
        args.extend(["--rtsp".to_string(), rtsp.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = usher(&args, RUN_LIMIT).await;
    server.stop().await;
    let report = read_json(&json);
    assert_json_agrees(&run, &report);
    let (passed, failed, skipped) = run.closing();
    assert_eq!(failed, 0, "{run}");
    assert!(passed > 40 && skipped > 5, "{run}");
    for c in report["cases"].as_array().unwrap() {
        if c["verdict"] == "skip" {
            assert_eq!(c["skip"]["kind"], "unsupported", "{c}");
            let missing: Vec<&str> = c["skip"]["missing"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap())
                .collect();
            assert!(
                missing.iter().all(|m| {
                    usher_conformance::catalogue::needs::API_FEATURES.contains(m)
                        || EMBEDDED_ONLY.contains(m)
                        || CLUSTER_ONLY.contains(m)
                }),
                "a static target lacks only management API features (and embedded-only and cluster ones): {c}"
            );
        }
    }
    assert_eq!(run.code, Some(0), "{run}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rerun_failed_runs_exactly_the_failed_cases_of_a_report() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = scratch("rerun");
    let first = dir.join("first.json");
    let run = usher(
        &[
            "check",
            "--only",
            "SESS-01",
            "--seed",
            "7",
            "--json",
            first.to_str().unwrap(),
        ],
        RUN_LIMIT,
    )
    .await;
    assert_eq!(run.code, Some(0), "{run}");
    let mut report = read_json(&first);
    assert_eq!(report["seed"], 7);
    let cases = report["cases"].as_array_mut().unwrap();
    assert!(cases.len() >= 2);
    cases[1]["verdict"] = "fail".into();
    let failed_key = cases[1]["key"].as_str().unwrap().to_string();
    let edited = dir.join("edited.json");
    std::fs::write(&edited, serde_json::to_string(&report).unwrap()).unwrap();

    let second = dir.join("second.json");
    let rerun = usher(
        &[
            "check",
            "--rerun-failed",
            edited.to_str().unwrap(),
            "--json",
            second.to_str().unwrap(),
        ],
        RUN_LIMIT,
    )
    .await;
    assert_eq!(rerun.code, Some(0), "{rerun}");
    let again = read_json(&second);
    let keys: Vec<&str> = again["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [failed_key.as_str()]);
    assert_eq!(again["seed"], 7, "a rerun keeps the report's seed");

    let nothing = usher(&["check", "--rerun-failed", first.to_str().unwrap()], RUN_LIMIT).await;
    assert_eq!(nothing.code, Some(0), "{nothing}");
    assert_eq!(nothing.closing(), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_manifest_limits_what_runs_by_its_capabilities() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = scratch("manifest");
    let server = Serve::start(&dir, "second.conf", server_config()).await;
    let manifest = dir.join("target.toml");
    std::fs::write(
        &manifest,
        format!(
            "target = \"{}\"\napi_auth = \"usher-test:s3cret\"\n\n[capabilities]\nprotocols = [\"hls\"]\nfeatures = [\"api\"]\n",
            server.url()
        ),
    )
    .unwrap();
    let json = dir.join("manifest.json");
    let run = usher(
        &[
            "check",
            "--target-config",
            manifest.to_str().unwrap(),
            "--only",
            "SESS-*",
            "--json",
            json.to_str().unwrap(),
        ],
        RUN_LIMIT,
    )
    .await;
    server.stop().await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("protocols: hls; features: api"), "{run}");
    let report = read_json(&json);
    let cases = report["cases"].as_array().unwrap();
    for c in cases {
        let needs: Vec<&str> = c["needs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        let supported = needs.iter().all(|n| ["hls", "api"].contains(n));
        if supported {
            assert_ne!(c["verdict"], "skip", "{c}");
        } else {
            assert_eq!(c["verdict"], "skip", "{c}");
            assert_eq!(c["skip"]["kind"], "unsupported", "{c}");
        }
    }
    assert!(cases.iter().any(|c| c["verdict"] == "pass"));
    assert!(cases.iter().any(|c| c["verdict"] == "skip"));
}
