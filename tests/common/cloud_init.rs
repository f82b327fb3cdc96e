//! The cloud-init versions a test can run here: Debian's packaged one
//! (`cloud-init` on PATH, 22.4 on Debian 12) and source trees of other releases
//! (`scripts/deps.sh cloud-init` unpacks tags of canonical/cloud-init under
//! /var/cache/virt-l3/cloud-init/TAG; `VIRT_L3_CLOUD_INIT_SOURCES` names another
//! directory), run with Debian's python3 and its modules.
//!
//! The releases from source are optional extras (they come from GitHub, which
//! CI may not reach): a test runs every version found and, through
//! [`announce`], says which it covered and which of `scripts/cloud-init-tags`
//! it skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `scripts/deps.sh cloud-init` unpacks cloud-init releases.
pub const DEFAULT_SOURCES: &str = "/var/cache/virt-l3/cloud-init";

/// One cloud-init that can convert network_data.json.
#[derive(Debug, Clone)]
pub struct CloudInit {
    /// `None`: the packaged `cloud-init`; else the root of a source tree.
    pub source: Option<PathBuf>,
    /// (major, minor), e.g. (22, 4).
    pub version: (u32, u32),
    pub label: String,
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut it = text.trim().split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The packaged cloud-init and every source tree found, oldest first.
pub fn available() -> Vec<CloudInit> {
    let mut out = Vec::new();
    if let Ok(o) = Command::new("cloud-init").arg("--version").output() {
        let text =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        if let Some(v) = text.split_whitespace().last().and_then(parse_version) {
            out.push(CloudInit {
                source: None,
                version: v,
                label: format!(
                    "packaged cloud-init {}",
                    text.split_whitespace().last().unwrap_or("")
                ),
            });
        }
    }
    if let Ok(entries) = std::fs::read_dir(sources_dir()) {
        for e in entries.flatten() {
            let root = e.path();
            if let Some(ci) = from_source(&root) {
                out.push(ci);
            }
        }
    }
    out.sort_by_key(|c| c.version);
    out
}

/// The version of a source tree: `cloudinit/version.py`'s literal, else (from
/// 26.1, built with meson) the `meson_versions.py` deps.sh writes.
fn from_source(root: &Path) -> Option<CloudInit> {
    let literal = |file: &str, key: &str| -> Option<String> {
        let text = std::fs::read_to_string(root.join("cloudinit").join(file)).ok()?;
        let line = text.lines().find(|l| l.starts_with(key))?;
        line.split('"').nth(1).map(String::from)
    };
    let v = literal("version.py", "__VERSION__ = \"")
        .or_else(|| literal("meson_versions.py", "UPSTREAM_VERSION"))?;
    let v = v.as_str();
    Some(CloudInit {
        source: Some(root.to_path_buf()),
        version: parse_version(v)?,
        label: format!("cloud-init {v} ({})", root.display()),
    })
}

/// The releases `scripts/deps.sh cloud-init` is asked for: `VIRT_L3_CLOUD_INIT_TAGS`
/// when set, else `scripts/cloud-init-tags`.
pub fn wanted() -> Vec<String> {
    let text = std::env::var("VIRT_L3_CLOUD_INIT_TAGS").unwrap_or_else(|_| {
        std::fs::read_to_string(super::repo_path("scripts/cloud-init-tags"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ")
    });
    text.split_whitespace().map(String::from).collect()
}

/// What a test over `found` covers, and the wanted releases it skips (not
/// unpacked here): two lines.
pub fn coverage(found: &[CloudInit], wanted: &[String]) -> String {
    let covered: Vec<&str> = found.iter().map(|c| c.label.as_str()).collect();
    let skipped: Vec<&str> = wanted
        .iter()
        .filter(|t| {
            let v = parse_version(t);
            !found
                .iter()
                .any(|c| c.source.is_some() && Some(c.version) == v)
        })
        .map(String::as_str)
        .collect();
    let mut out = format!("cloud-init versions covered: {}\n", covered.join(", "));
    if !skipped.is_empty() {
        out.push_str(&format!(
            "cloud-init versions SKIPPED (optional; not unpacked under {}: scripts/deps.sh cloud-init fetches them from GitHub): {}\n",
            sources_dir().display(),
            skipped.join(", ")
        ));
    }
    out
}

/// Prints [`coverage`] for test `test` straight to stderr, past the test
/// harness's capture, so that it shows with `cargo test --quiet` too.
pub fn announce(test: &str, found: &[CloudInit]) {
    use std::io::Write as _;
    let text = coverage(found, &wanted());
    let mut err = std::io::stderr().lock();
    for line in text.lines() {
        let _ = writeln!(err, "{test}: {line}");
    }
}

fn sources_dir() -> PathBuf {
    std::env::var_os("VIRT_L3_CLOUD_INIT_SOURCES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOURCES))
}

impl CloudInit {
    /// `cloud-init devel net-convert ARGS` with this version.
    pub fn net_convert(&self) -> Command {
        match &self.source {
            None => {
                let mut c = Command::new("cloud-init");
                c.args(["devel", "net-convert"]);
                c
            }
            Some(root) => {
                let mut c = Command::new("/usr/bin/python3");
                c.env("PYTHONPATH", root).current_dir(root).args([
                    "-m",
                    "cloudinit.cmd.main",
                    "devel",
                    "net-convert",
                ]);
                c
            }
        }
    }

    /// Whether this version's `renderer` marks the default route of a network's
    /// `gateway` on-link (netplan from 23.1, networkd from 24.2).
    pub fn marks_gateway_on_link(&self, renderer: &str) -> bool {
        match renderer {
            "netplan" => self.version >= (23, 1),
            _ => self.version >= (24, 2),
        }
    }
}
