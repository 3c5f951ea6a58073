//! The shipped target profiles (`conformance/targets/`) run against the real third-party servers
//! they describe: nginx with Debian's `libnginx-mod-rtmp`, started here on free loopback ports
//! with the profile's configuration, and `usher check --target-config` with the profile's
//! manifest. The verdict of every case is snapshot (insta): a verdict that changes is a reviewed
//! diff (accept with `INSTA_UPDATE=always cargo test -p usher-conformance --test nginx_profiles`).
//!
//! CI installs nginx and the module (`.ci/run`); without them each test prints one line and
//! passes, as the container tests do without Docker.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{free_port, read_json, scratch, usher};
use tokio::process::{Child, Command};

const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

fn profile_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("targets").join(name)
}

/// Why nginx-rtmp cannot run here, if it cannot.
fn missing() -> Option<String> {
    let nginx = std::process::Command::new("nginx").arg("-v").output();
    if nginx.is_err() {
        return Some("no nginx binary (Debian package nginx)".into());
    }
    if !Path::new(RTMP_MODULE).exists() {
        return Some(format!("no {RTMP_MODULE} (Debian package libnginx-mod-rtmp)"));
    }
    None
}

struct Ports {
    rtmp: u16,
    http: u16,
    backend: u16,
}

/// A running nginx with a rendered profile configuration; stopped by [`Nginx::stop`], or on
/// drop when a test panics first.
struct Nginx {
    child: Child,
    prefix: PathBuf,
}

impl Nginx {
    async fn start(profile: &str, prefix: &Path, ports: &Ports) -> Nginx {
        let template =
            std::fs::read_to_string(profile_dir(profile).join("nginx.conf")).expect("the profile's nginx.conf");
        let config = template
            .replace("@PREFIX@", prefix.to_str().expect("a UTF-8 path"))
            .replace("@RTMP_PORT@", &ports.rtmp.to_string())
            .replace("@HTTP_PORT@", &ports.http.to_string())
            .replace("@BACKEND@", &format!("http://127.0.0.1:{}", ports.backend));
        assert!(!config.contains('@'), "every placeholder is rendered:\n{config}");
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config).expect("the rendered configuration is written");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx {
            child,
            prefix: prefix.to_path_buf(),
        };
        nginx.ready(&[ports.rtmp, ports.http]).await;
        nginx
    }

    /// Waits until every port takes a connection (nginx has no readiness line), or nginx ended.
    async fn ready(&mut self, ports: &[u16]) {
        let deadline = Instant::now() + Duration::from_secs(15);
        for &port in ports {
            loop {
                if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                    break;
                }
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("nginx ended before it listened ({status}):\n{}", self.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "nginx did not listen on port {port} within 15 s:\n{}",
                    self.log()
                );
                // Polling a port that is about to open.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("error.log")).unwrap_or_default()
    }

    /// Asks the master process to stop (SIGTERM: it stops its workers, cache manager and cache
    /// loader first). Killing the master outright would leave those running, still listening.
    fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-s", "TERM", &pid.to_string()])
                .status();
        }
    }

    /// Stops nginx and waits until its master process has ended.
    async fn stop(mut self) {
        self.terminate();
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            panic!("nginx did not stop within 10 s of SIGTERM:\n{}", self.log());
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // After stop() the master has been reaped and this is a no-op (no id any more). On a
        // panic, the master gets a moment to stop its workers before kill_on_drop kills it.
        if self.child.id().is_none() {
            return;
        }
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The profile's manifest with the test's ports.
fn manifest(profile: &str, ports: &Ports) -> String {
    std::fs::read_to_string(profile_dir(profile).join("target.toml"))
        .expect("the profile's target.toml")
        .replace("127.0.0.1:1935", &format!("127.0.0.1:{}", ports.rtmp))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", ports.http))
        .replace("127.0.0.1:9099", &format!("127.0.0.1:{}", ports.backend))
}

/// `VERDICT key title` per case, in catalogue order, and the counts.
fn verdict_lines(report: &serde_json::Value) -> String {
    let mut out = String::new();
    for c in report["cases"].as_array().expect("cases") {
        let verdict = c["verdict"].as_str().unwrap_or("?").to_uppercase();
        let _ = writeln!(
            out,
            "{verdict:<4} {} {}",
            c["key"].as_str().unwrap_or("?"),
            c["title"].as_str().unwrap_or("?")
        );
    }
    out
}

/// The profiles share two CPUs with everything else: one nginx and one run at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run_profile(profile: &str) -> Option<(serde_json::Value, common::Run)> {
    if let Some(why) = missing() {
        println!("skipping the {profile} profile: {why}");
        return None;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = scratch(&format!("profile-{profile}"));
    let ports = Ports {
        rtmp: free_port(),
        http: free_port(),
        backend: free_port(),
    };
    let nginx = Nginx::start(profile, &dir, &ports).await;
    let manifest_path = dir.join("target.toml");
    std::fs::write(&manifest_path, manifest(profile, &ports)).expect("the manifest is written");
    let json = dir.join("report.json");
    let run = usher(
        &[
            "check",
            "--target-config",
            manifest_path.to_str().unwrap(),
            "--timeout",
            "300s",
            "--json",
            json.to_str().unwrap(),
        ],
        Duration::from_secs(360),
    )
    .await;
    let log = nginx.log();
    nginx.stop().await;
    assert!(
        matches!(run.code, Some(0 | 1)),
        "a profile run ends with verdicts, not a setup error\n{run}\n--- nginx ---\n{log}"
    );
    let report = read_json(&json);
    Some((report, run))
}

/// One line of figures: cases run (passed, failed, info), skipped, wall time.
fn figures(profile: &str, report: &serde_json::Value, run: &common::Run) {
    let (passed, failed, skipped) = run.closing();
    println!(
        "{profile} profile: {} cases run (pass {passed}, fail {failed}, skip {skipped}) in {:.1} s",
        passed + failed + report["counts"]["info"].as_u64().unwrap_or(0) as usize,
        run.elapsed.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_rtmp_profile_verdicts() {
    let Some((report, run)) = run_profile("nginx-rtmp").await else {
        return;
    };
    figures("nginx-rtmp", &report, &run);
    let (passed, _, _) = run.closing();
    assert!(passed > 0, "the profile passes something at all\n{run}");
    assert!(
        run.stdout
            .contains("backend dialect nginx-rtmp; the suite publishes to rtmp://"),
        "the report names the dialect and the source\n{run}"
    );
    assert_eq!(report["dialect"], "nginx-rtmp");
    assert!(
        report["stray_backend_calls"].as_array().is_none_or(Vec::is_empty),
        "every nginx call found its case by the stream name: {}",
        report["stray_backend_calls"]
    );
    insta::assert_snapshot!("nginx_rtmp_verdicts", verdict_lines(&report));
}

/// nginx serving nginx-rtmp's HLS behind `auth_request` with an auth cache: the HLS cases run
/// against it, over the suite's own RTMP source, each viewer request asking the backend through
/// the cache.
#[tokio::test(flavor = "multi_thread")]
async fn nginx_auth_request_profile_verdicts() {
    let Some((report, run)) = run_profile("nginx-auth-request").await else {
        return;
    };
    figures("nginx-auth-request", &report, &run);
    let (passed, failed, _) = run.closing();
    assert!(passed > 0, "the profile passes something at all\n{run}");
    assert!(
        failed > 0,
        "a cache that ignores X-AuthDuration cannot pass every case\n{run}"
    );
    assert!(
        run.stdout
            .contains("backend dialect nginx-auth-request; the suite publishes to rtmp://"),
        "the report names the dialect and the source\n{run}"
    );
    assert_eq!(report["dialect"], "nginx-auth-request");
    assert!(
        report["stray_backend_calls"].as_array().is_none_or(Vec::is_empty),
        "every auth_request call found its case by the stream name: {}",
        report["stray_backend_calls"]
    );
    // Every case that ran played HLS from the suite's own source: none failed for want of a
    // stream to play.
    for c in report["cases"].as_array().expect("cases") {
        let failure = c["failure"].as_str().unwrap_or_default();
        assert!(
            !failure.contains("the suite's own source could not publish"),
            "{}: the source did not come up: {failure}",
            c["key"]
        );
    }
    insta::assert_snapshot!("nginx_auth_request_verdicts", verdict_lines(&report));
}

/// Bad manifest input is a usage error (exit 2) naming the key and its line; no server needed.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_manifest_exits_2_naming_the_key_and_its_line() {
    let dir = scratch("bad-manifests");
    for (name, text, expect) in [
        (
            "dialect.toml",
            "target = \"http://127.0.0.1:1/\"\nstatic = true\n[backend]\nlisten = \"127.0.0.1:9\"\ndialect = \"wowza\"\n",
            ":5: `dialect`",
        ),
        (
            "key.toml",
            "target = \"http://127.0.0.1:1/\"\nrtmp_ap = \"live\"\n",
            ":2: unknown field `rtmp_ap`",
        ),
        (
            "publish.toml",
            "target = \"http://127.0.0.1:1/\"\n\n[source]\npublish = \"rtmp://127.0.0.1:1/live/s\"\n",
            ":4: `publish`",
        ),
        (
            "http-publish.toml",
            "target = \"http://127.0.0.1:1/\"\n[source]\npublish = \"http://127.0.0.1:1/live/mpegts\"\n",
            ":3: `publish`: the publish URL `http://127.0.0.1:1/live/mpegts` has no {name}",
        ),
        (
            "scheme.toml",
            "target = \"http://127.0.0.1:1/\"\n[source]\npublish = \"srt://127.0.0.1:1/{name}\"\n",
            ":3: `publish`: the publish URL `srt://127.0.0.1:1/{name}` has the scheme `srt`",
        ),
        (
            "ready.toml",
            "target = \"http://127.0.0.1:1/\"\n[source]\npublish = \"http://127.0.0.1:1/{name}/mpegts\"\nready = \"http://127.0.0.1:1/ready\"\n",
            ":4: `ready`",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let run = usher(
            &["check", "--target-config", path.to_str().unwrap()],
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(run.code, Some(2), "{name}\n{run}");
        assert!(run.stderr.contains(expect), "{name}: expected `{expect}`\n{run}");
    }
}
