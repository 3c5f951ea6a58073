//! The suite's own source in its HTTP MPEG-TS form, end to end: a second reference server
//! (`usher serve`) whose static streams take publishers (`input publish://`) has nothing to play
//! until someone publishes, so every case it passes was played from what the suite uploaded
//! with `[source] publish = "http://…/{name}/mpegts"` (a chunked PUT kept up for the case).

mod common;

use std::time::Duration;

use common::{Serve, read_json, scratch, usher};

#[tokio::test(flavor = "multi_thread")]
async fn an_http_mpegts_source_feeds_a_static_servers_publish_streams() {
    let dir = scratch("http-source");
    let backend = format!("127.0.0.1:{}", common::free_port());
    let printed = usher(
        &[
            "check",
            "--print-config",
            "--backend-url",
            &format!("http://{backend}"),
            "--input",
            "publish://",
        ],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(printed.code, Some(0), "{printed}");
    assert!(printed.stdout.contains("input publish://;"), "{printed}");
    let server = Serve::start(
        &dir,
        "publish.conf",
        &format!("http 127.0.0.1:0;\nrtmp 127.0.0.1:0;\n{}", printed.stdout),
    )
    .await;
    let manifest = dir.join("target.toml");
    std::fs::write(
        &manifest,
        format!(
            "target = \"{url}\"\nrtmp = \"{rtmp}\"\nstatic = true\n\n[backend]\nlisten = \"{backend}\"\n\n\
             [source]\npublish = \"http://{http}/{{name}}/mpegts\"\n\n\
             [capabilities]\n# A publish stream's HLS playlist lists nothing before its first segment is cut;\n\
             # MPEG-TS and RTMP players wait for the first keyframe.\nprotocols = [\"mpegts\", \"rtmp\"]\n",
            url = server.url(),
            rtmp = server.rtmp.as_deref().expect("the server's RTMP port"),
            http = server.http
        ),
    )
    .expect("the manifest is written");
    let json = dir.join("report.json");
    let run = usher(
        &[
            "check",
            "--target-config",
            manifest.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        Duration::from_secs(240),
    )
    .await;
    let http = server.http.clone();
    server.stop().await;
    let (passed, failed, skipped) = run.closing();
    println!(
        "HTTP MPEG-TS source against a static reference server: {passed} passed, {failed} failed, {skipped} skipped in {:.1} s",
        run.elapsed.as_secs_f64()
    );
    for line in run
        .stdout
        .lines()
        .filter(|l| l.starts_with("PASS") || l.starts_with("INFO"))
    {
        println!("{line}");
    }
    assert_eq!(failed, 0, "{run}");
    assert!(passed >= 5, "the MPEG-TS cases ran, fed by the source\n{run}");
    assert!(
        run.stdout.contains(&format!(
            "the suite publishes to http://{http}/{{name}}/mpegts (MPEG-TS, HTTP PUT)"
        )),
        "the report names the source\n{run}"
    );
    let report = read_json(&json);
    assert!(
        report["source"]
            .as_str()
            .is_some_and(|s| s.contains("(MPEG-TS, HTTP PUT)")),
        "{}",
        report["source"]
    );
    assert_eq!(run.code, Some(0), "{run}");
}
