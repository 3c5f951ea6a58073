//! What the container tests share: the Docker gate (skip with one printed reason when no daemon
//! answers; build the reference server's image when it is missing; fail, saying how to build
//! it, when another image named by `USHER_IMAGE` is missing) and small helpers.

#![allow(dead_code)] // each test file uses its own part

use std::io::Write as _;
use std::sync::Once;

use usher_conformance::target::container::{self, BUILD_HINT, DEFAULT_IMAGE};

/// The image under test: `USHER_IMAGE`, else the reference server's `usher-server:dev`.
pub fn image() -> String {
    std::env::var("USHER_IMAGE")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_string())
}

/// `true` when the container tests can run. Without a reachable daemon they are skipped, and
/// the reason is printed once per test binary, past libtest's capture (straight to stderr), so
/// a skip is never silent. With a daemon, a missing `usher-server:dev` is built with
/// `server/docker/build.sh`; another missing image is a failure that says how to build it.
pub async fn docker_ready() -> bool {
    static SKIP_NOTICE: Once = Once::new();
    if let Err(e) = container::daemon().await {
        SKIP_NOTICE.call_once(|| {
            usher_conformance::prerequisites::print_skip(
                &format!("container tests ({})", env!("CARGO_CRATE_NAME")),
                usher_conformance::prerequisites::DOCKER,
                &e.to_string(),
            );
        });
        return false;
    }
    let image = image();
    if image == DEFAULT_IMAGE {
        // The test command builds what it tests: on a fresh machine the image is made here
        // (minutes, once); `.ci/run` builds it beforehand.
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        match container::ensure_reference_image(&workspace).await {
            Ok(true) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "built {image} with {BUILD_HINT} for the container tests"
                );
            }
            Ok(false) => {}
            Err(e) => panic!("the image {image} is missing and building it failed: {e}"),
        }
        // Present now (ensure_reference_image checked).
        return true;
    }
    match container::image_present(&image).await {
        Ok(true) => true,
        Ok(false) => panic!(
            "a Docker daemon answers but the image {image} is missing: build it with `{BUILD_HINT}` \
             (nothing is pulled; the container tests then run for real)"
        ),
        Err(e) => panic!("cannot ask the Docker daemon about {image}: {e}"),
    }
}

/// Three ports of 127.0.0.1 that were free a moment ago (fixed ports keep a restarted
/// container's addresses).
pub fn free_ports() -> [u16; 3] {
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let port = |i: usize| listeners[i].local_addr().expect("a bound port").port();
    [port(0), port(1), port(2)]
}
