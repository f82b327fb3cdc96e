//! A throwaway network namespace with a routed bridge, for tests that need the real kernel.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::AtomicU32;

pub mod cloud_init;
mod domain;
pub mod fake;
mod guest;
mod lab;
mod lifecycle;
mod rng;
mod watch;

// Not every test crate uses every helper.
#[allow(unused_imports)]
pub use domain::{TestDomain, TestNic};
#[allow(unused_imports)]
pub use guest::Guest;
pub use lab::Lab;
#[allow(unused_imports)]
pub use rng::{env_number, seed_from_env, Rng};
#[allow(unused_imports)]
pub use watch::{within, Watcher};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Returns from the calling test, after printing "NAME: skipped: needs root
/// (CAP_NET_ADMIN)" to stderr, when this process cannot make and configure network
/// namespaces (not root, or without CAP_NET_ADMIN / CAP_SYS_ADMIN): the first line of
/// every test that needs the real kernel, so that `cargo test` as a normal user passes
/// with those tests reported skipped. (`#[macro_use] mod common;` in the test crate.)
#[allow(unused_macros)] // not every test crate has root-only tests
macro_rules! require_root {
    () => {
        if !$crate::common::may_make_namespaces() {
            fn here() {}
            $crate::common::report_skipped(::std::any::type_name_of_val(&here));
            return;
        }
    };
}

/// Whether this process may create network namespaces and change their links and
/// routes: root with CAP_NET_ADMIN and CAP_SYS_ADMIN (`ip netns add` mounts) effective.
pub fn may_make_namespaces() -> bool {
    static MAY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MAY.get_or_init(|| {
        const CAP_NET_ADMIN: u32 = 12;
        const CAP_SYS_ADMIN: u32 = 21;
        let effective = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0);
        nix::unistd::geteuid().is_root()
            && effective & (1 << CAP_NET_ADMIN) != 0
            && effective & (1 << CAP_SYS_ADMIN) != 0
    })
}

/// Prints the skip line of `require_root!` for the test whose inner function is `here`
/// (`crate::test_name::here`).
pub fn report_skipped(here: &str) {
    let path = here.strip_suffix("::here").unwrap_or(here);
    let name = path.split_once("::").map_or(path, |(_, rest)| rest);
    eprintln!("{name}: skipped: needs root (CAP_NET_ADMIN)");
}

/// A path in the source tree (`repo_path("testdata/domains")`).
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_path("testdata/domains").join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The proptest configuration of the property tests: `PROPTEST_CASES` cases
/// (default 2000), no failure persistence files.
pub fn proptest_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: env_number("PROPTEST_CASES", 2000) as u32,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// The entries directly in `dir` (all files: a directory fails), as (name, content), sorted by name.
pub fn files_with_contents(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path())
                    .unwrap_or_else(|err| panic!("{}: {err}", e.path().display())),
            )
        })
        .collect();
    files.sort();
    files
}

/// The names of the regular files directly in `dir`, sorted.
pub fn file_names(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Runs `cmd`, asserting that it succeeds (its stderr in the message).
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Lines missing (-) and unexpected (+).
pub fn diff_lines(want: &[String], got: &[String]) -> String {
    let mut out = String::new();
    for w in want.iter().filter(|w| !got.contains(w)) {
        out.push_str(&format!("  - {w}\n"));
    }
    for g in got.iter().filter(|g| !want.contains(g)) {
        out.push_str(&format!("  + {g}\n"));
    }
    out
}
