//! Snapshots for "nothing changed" assertions: the kernel state of a lab
//! namespace and a directory tree, byte for byte.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::common::Lab;

/// Everything in the namespace a hook could change, as text: links (bridge
/// port flags, MACs), addresses, routes and rules of every table, neighbours
/// in every state, and the sysctls virt-l3 touches.
pub fn kernel_snapshot(lab: &Lab) -> String {
    const SCRIPT: &str = r#"
        ip -d link show; ip -d addr show
        ip -d route show table all; ip -6 -d route show table all
        ip -d neigh show nud all; ip -d -6 neigh show nud all
        ip rule show; ip -6 rule show
        bridge -d link show
        grep -H . /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/*/send_redirects \
                 /proc/sys/net/ipv4/conf/*/forwarding /proc/sys/net/ipv6/conf/*/forwarding \
                 /proc/sys/net/ipv6/conf/*/disable_ipv6 /sys/class/net/*/addr_assign_type \
                 /sys/class/net/*/address
    "#;
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns, "sh", "-c", SCRIPT])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The bridge's timers run whatever happens: drop "<name>_timer <value>" pairs.
    // The kernel adds NOARP entries for the multicast groups it reports (MLD,
    // IGMP) by itself; virt-l3 only ever adds PERMANENT ones.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| !line.trim_end().ends_with(" NOARP"))
        .map(|line| {
            let mut words = Vec::new();
            let mut skip = false;
            for w in line.split_whitespace() {
                if skip {
                    skip = false;
                } else if w.ends_with("_timer") {
                    skip = true;
                } else {
                    words.push(w);
                }
            }
            words.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every entry under `root`: path, type, mode, owner, mtime, and the bytes of a
/// file or the target of a symlink.
pub fn dir_snapshot(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let head = format!(
                "{rel} mode={:o} uid={} gid={} mtime={}.{}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.mtime(),
                m.mtime_nsec()
            );
            if m.file_type().is_symlink() {
                out.push(format!("{head} -> {:?}", std::fs::read_link(&p).unwrap()));
            } else if m.is_dir() {
                out.push(format!("{head} dir"));
                walk(root, &p, out);
            } else {
                out.push(format!("{head} {:?}", std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// The lines only in one side, marked - and +.
pub fn diff(before: &str, after: &str) -> String {
    let b: BTreeSet<&str> = before.lines().collect();
    let a: BTreeSet<&str> = after.lines().collect();
    let mut out: Vec<String> = b.difference(&a).map(|l| format!("- {l}")).collect();
    out.extend(a.difference(&b).map(|l| format!("+ {l}")));
    out.into_iter()
        .map(|l| l.chars().take(300).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until the lab's IPv6 addresses are out of duplicate address detection
/// (the kernel changes their flags and adds routes for them when it ends).
pub fn settle(lab: &Lab) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while lab.ip(&["-6", "addr", "show", "tentative"]).trim() != "" {
        assert!(
            std::time::Instant::now() < deadline,
            "IPv6 addresses still tentative after 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
