//! The HTML report renders in headless Chromium: the screenshot is not blank, and the DOM holds
//! the requirement matrix and the failed case with its reason.
//!
//! Needs the Debian package `chromium` (`apt-get install -y chromium`); set `USHER_CHROMIUM` to
//! use another binary. Without one the test is skipped with one line naming the package.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{open_door, scratch, usher};
use usher_conformance::prerequisites;

/// The browser to run, or `None` after printing the test's skip line.
fn chromium() -> Option<String> {
    if let Ok(path) = std::env::var("USHER_CHROMIUM") {
        return Some(path);
    }
    let found = prerequisites::find_any(&["chromium", "chromium-browser", "google-chrome"]);
    if found.is_none() {
        prerequisites::print_skip(
            &prerequisites::current_test(env!("CARGO_CRATE_NAME")),
            prerequisites::CHROMIUM,
            "or set USHER_CHROMIUM",
        );
    }
    found.map(|p| p.display().to_string())
}

fn headless(browser: &str, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(browser);
    child
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .args(args)
        // A profile of its own: parallel runs do not share a lock.
        .arg(format!(
            "--user-data-dir={}",
            std::env::temp_dir()
                .join(format!("usher-chromium-{}", std::process::id()))
                .display()
        ));
    let output = child.output().expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Mean and variance of the grey level of a PNG's pixels.
fn grey_stats(path: &Path) -> (f64, f64, u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).expect("the screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let greys: Vec<f64> = pixels
        .chunks(channels)
        .map(|p| {
            let rgb = &p[..channels.min(3)];
            rgb.iter().map(|&v| f64::from(v)).sum::<f64>() / rgb.len() as f64
        })
        .collect();
    let mean = greys.iter().sum::<f64>() / greys.len() as f64;
    let var = greys.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / greys.len() as f64;
    (mean, var, info.width, info.height)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_html_report_renders_in_headless_chromium_with_the_matrix() {
    let Some(browser) = chromium() else {
        return;
    };
    let dir = scratch("html-report");
    let html = dir.join("report.html");
    // A report with failures and skips: the open door against a few areas.
    let server = open_door().await;
    let run = usher(
        &[
            "check",
            "--target",
            &format!("{}/", server.uri()),
            "--api-auth",
            "x:y",
            "--only",
            "SESS-*,RESP-*,DOM-*",
            "--timeout",
            "120s",
            "--html",
            html.to_str().unwrap(),
        ],
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(run.code, Some(1), "{run}");
    let text = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(!text.contains("<script"), "no script: nothing can throw");
    assert!(
        !text.contains("src=\"http") && !text.contains("href=\"http") && !text.contains("@import"),
        "self-contained: no external asset"
    );

    let png = dir.join("report.png");
    let url = format!("file://{}", html.display());
    headless(
        &browser,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2000",
            &url,
        ],
    );
    assert!(png.exists(), "chromium wrote the screenshot");
    let (mean, var, w, h) = grey_stats(&png);
    assert_eq!((w, h), (1280, 2000));
    assert!(
        var > 100.0,
        "the screenshot is not blank (grey mean {mean:.1}, variance {var:.1})"
    );
    assert!(
        mean > 100.0,
        "a light page with content, not a black or error page (mean {mean:.1})"
    );

    let dom = headless(&browser, &["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("<table id=\"matrix\""), "the DOM holds the matrix table");
    assert!(dom.contains("SESS-01"), "the matrix lists requirement ids");
    assert!(dom.contains("class=\"case fail\""), "failed cases are shown");
    assert!(dom.contains("but is playing"), "with their reason");
    assert!(dom.contains("id=\"areas\""), "the summary by area");
}
