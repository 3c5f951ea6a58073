//! Outside programs: the suite itself needs none, but some of the workspace's tests use real
//! outside clients (ffmpeg/ffprobe, chromium, the MariaDB client, a Docker daemon, a
//! redis-server of their own). Without one
//! such a test is skipped, saying so in one line that names the program and the Debian package
//! that has it, past libtest's capture (straight to stderr):
//!
//! ```text
//! SKIP ffprobe_play::a_denied_token_gets_403_and_ffprobe_fails: needs ffprobe (Debian package ffmpeg)
//! ```
//!
//! `.ci/run`, where every one of them is installed, fails when such a line appears
//! ([`SKIP_PATTERN`]).

use std::io::Write as _;
use std::path::PathBuf;

/// An outside program and the Debian package that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    pub name: &'static str,
    pub package: &'static str,
}

pub const FFMPEG: Program = Program {
    name: "ffmpeg",
    package: "ffmpeg",
};
pub const FFPROBE: Program = Program {
    name: "ffprobe",
    package: "ffmpeg",
};
pub const MARIADB: Program = Program {
    name: "mariadb",
    package: "mariadb-client",
};
/// Chromium under its Debian name (other names are tried too, see [`find_any`]).
pub const CHROMIUM: Program = Program {
    name: "chromium",
    package: "chromium",
};
/// The shared session store's tests start their own instance (never a system service).
pub const REDIS_SERVER: Program = Program {
    name: "redis-server",
    package: "redis-server",
};
/// Not a program on PATH but a daemon that answers; the package that runs one.
pub const DOCKER: Program = Program {
    name: "a Docker daemon",
    package: "docker.io",
};

/// An extended regular expression (`grep -E`) matching every skip line of [`skip_line`].
pub const SKIP_PATTERN: &str = r"^SKIP .*: needs .* \(Debian package [^)]+\)";

/// The skip line for `what` (a test, or a group of tests) missing `program`; `detail`, if not
/// empty, follows.
pub fn skip_line(what: &str, program: Program, detail: &str) -> String {
    let mut line = format!(
        "SKIP {what}: needs {} (Debian package {})",
        program.name, program.package
    );
    if !detail.is_empty() {
        line.push_str(": ");
        line.push_str(detail);
    }
    line
}

/// Prints [`skip_line`] to stderr directly, so libtest's capture does not hide it.
pub fn print_skip(what: &str, program: Program, detail: &str) {
    let _ = writeln!(std::io::stderr(), "{}", skip_line(what, program, detail));
}

/// The program's path: the first `name` on `PATH` that is an executable file.
pub fn find(name: &str) -> Option<PathBuf> {
    find_on(&std::env::var_os("PATH")?, name)
}

/// The first `name` that is an executable file in the directories of `path` (a `PATH` value).
pub fn find_on(path: &std::ffi::OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// The first of `names` found on `PATH`.
pub fn find_any(names: &[&str]) -> Option<PathBuf> {
    names.iter().find_map(|n| find(n))
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The running test's name as libtest gives it (the name of its thread), prefixed with the test
/// binary's crate name: `file::test`.
pub fn current_test(krate: &str) -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => format!("{krate}::{name}"),
        _ => format!("{krate} (a test)"),
    }
}

/// For a test that needs `program`: its path, or `None` after printing the test's skip line.
/// `krate` is the test binary's `env!("CARGO_CRATE_NAME")`.
pub fn require(krate: &str, program: Program) -> Option<PathBuf> {
    let found = find(program.name);
    if found.is_none() {
        print_skip(&current_test(krate), program, "");
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_line_names_the_program_and_the_package_and_matches_the_ci_pattern() {
        let line = skip_line("ffprobe_play::plays", FFPROBE, "");
        assert_eq!(line, "SKIP ffprobe_play::plays: needs ffprobe (Debian package ffmpeg)");
        let line = skip_line(
            "container tests (container_suite)",
            DOCKER,
            "no daemon at /var/run/docker.sock",
        );
        assert!(
            line.contains("needs a Docker daemon (Debian package docker.io): no daemon"),
            "{line}"
        );
        let re = regex::Regex::new(SKIP_PATTERN).unwrap();
        for p in [FFMPEG, FFPROBE, MARIADB, CHROMIUM, DOCKER, REDIS_SERVER] {
            assert!(re.is_match(&skip_line("t", p, "")), "{p:?}");
        }
        assert!(!re.is_match("SKIP  PUB-01 a case the target does not support"));
    }

    #[test]
    fn ci_fails_on_the_lines_this_module_prints() {
        let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/run")).expect(".ci/run");
        assert!(
            ci.contains(&format!("skip_pattern='{SKIP_PATTERN}'")),
            ".ci/run greps another pattern than SKIP_PATTERN"
        );
    }

    #[test]
    fn programs_are_found_on_path_only_when_executable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("usher-prereq-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let tool = dir.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::write(dir.join("data"), "").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(["/nonexistent".into(), dir.clone()]).unwrap();
        assert_eq!(find_on(&path, "tool"), Some(tool));
        assert_eq!(find_on(&path, "data"), None, "not executable");
        assert_eq!(find_on(&path, "usher-no-such-program"), None);
        assert_eq!(find_on(std::ffi::OsStr::new(""), "tool"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_current_test_is_named_by_its_thread() {
        assert_eq!(
            current_test("prerequisites"),
            "prerequisites::prerequisites::tests::the_current_test_is_named_by_its_thread"
        );
    }
}
