//! `virt-l3 check` against the real kernel: a correctly prepared namespace lab (routed
//! bridge with a guest tap, an uplink with a default route, sysctls, a hook directory,
//! a real BIRD with the shipped example configuration, libvirt and virsh stand-ins)
//! is ready; each single misconfiguration makes exactly its item fail, with a fix, and
//! the exit code 1.

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
#[path = "../common/mod.rs"]
mod common;
mod cases;
mod host;

use std::collections::BTreeSet;
use std::process::Command;

use cases::cases;
use common::{run, stderr};
use host::{host, route_domain, set_running};

#[test]
fn check_reports_exactly_the_broken_item() {
    require_root!();
    let mut problems = Vec::new();
    for case in cases() {
        let mut h = host(case.gateway_mac);
        if case.routed {
            route_domain(&h);
        }
        (case.breakage)(&mut h);
        let (code, report, out) = h.check();
        let items = report["items"].as_array().unwrap();
        let failed: BTreeSet<String> = items
            .iter()
            .filter(|i| i["status"] == "fail")
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        let want: BTreeSet<String> = case.fails.iter().map(|s| s.to_string()).collect();
        let mut wrong = Vec::new();
        if failed != want {
            wrong.push(format!("failed {failed:?}, expected {want:?}"));
        }
        let want_code = if want.is_empty() { 0 } else { 1 };
        if code != want_code || report["ready"] != want.is_empty() {
            wrong.push(format!(
                "exit {code}, ready {}, expected exit {want_code}",
                report["ready"]
            ));
        }
        for i in items.iter().filter(|i| i["status"] == "fail") {
            let fix = i["fix"].as_str().unwrap_or("");
            if !fix.contains(case.fix) || fix.is_empty() {
                wrong.push(format!("{} fix {fix:?} lacks {:?}", i["id"], case.fix));
            }
            let summary = i["summary"].as_str().unwrap_or("");
            if !summary.contains(case.summary) {
                wrong.push(format!(
                    "{} summary {summary:?} lacks {:?}",
                    i["id"], case.summary
                ));
            }
        }
        if !wrong.is_empty() {
            problems.push(format!(
                "{}: {}\n{}{}",
                case.name,
                wrong.join("; "),
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn check_covers_every_item_and_explains_in_text() {
    require_root!();
    let mut h = host(false);
    let (code, report, _) = h.check();
    assert_eq!(code, 0, "{report}");
    let ids: BTreeSet<&str> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    let all = [
        "bridge",
        "bridge-gateways",
        "bridge-ports",
        "bridge-mac",
        "forwarding-ipv4",
        "forwarding-ipv6",
        "rp_filter",
        "accept_ra",
        "proxy_arp",
        "proxy_ndp",
        "send_redirects",
        "control-network",
        "allow",
        "libvirt",
        "hook",
        "nwfilter",
        "ebtables",
        "routing-daemon",
        "routing-config",
        "state",
        "firewall",
        "ports",
        "foreign-entries",
    ];
    assert_eq!(ids, all.into_iter().collect::<BTreeSet<_>>());
    // Without gateway_mac the bridge MAC is a warning, with its fix.
    let mac = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "bridge-mac")
        .unwrap();
    assert_eq!(mac["status"], "warn");
    assert!(mac["fix"].as_str().unwrap().contains("gateway_mac"));
    // Text output: one line per item, the fix under a failure, the verdict last.
    h.sysctl("net.ipv4.ip_forward=0");
    h.extra.clear();
    let d = h.dir().display().to_string();
    let o = h.lab.virt_l3(
        &[
            "check",
            "--libvirt-hooks-dir",
            &format!("{d}/hooks"),
            "--libvirtd",
            &format!("{d}/bin/libvirtd"),
            "--virsh",
            &format!("{d}/bin/virsh"),
            "--bird-socket",
            &format!("{d}/bird.ctl"),
            "--bird-config",
            &format!("{d}/bird.conf"),
            "--vtysh",
            &format!("{d}/bin/vtysh"),
        ],
        b"",
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL forwarding-ipv4: IPv4 forwarding is off"),
        "{text}"
    );
    assert!(
        text.contains("     fix: sysctl -w net.ipv4.ip_forward=1"),
        "{text}"
    );
    assert!(text.contains("ok   bridge cloudbr0:"), "{text}");
    assert!(
        text.contains("ok   firewall: virt-l3's nftables tables are installed and current"),
        "{text}"
    );
    assert!(text.ends_with("not ready: 1 item(s) failed\n"), "{text}");
}

/// `ports` names each blocked port of a routed bridge and, from libvirt's status
/// files, its domain; a port virt-l3 accepted is not named; the firewall disabled
/// is a warning.
#[test]
fn check_names_blocked_ports_and_their_domain() {
    require_root!();
    let h = host(true);
    h.lab.add_tap("vnet7", "cloudbr0");
    set_running(&h, "running", "booted");
    let item = |report: &serde_json::Value, id: &str| {
        report["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .unwrap()
            .clone()
    };
    let (_, report, _) = h.check();
    let ports = item(&report, "ports");
    assert_eq!(ports["status"], "warn", "{ports}");
    let summary = ports["summary"].as_str().unwrap();
    assert!(summary.contains("vnet3 (domain i-2-10-VM)"), "{summary}");
    assert!(
        summary.contains("vnet7 (no running domain names it)"),
        "{summary}"
    );
    assert!(ports["fix"].as_str().unwrap().contains("virsh start"));
    run(Command::new("ip").args([
        "netns",
        "exec",
        &h.lab.ns,
        "nft",
        "add",
        "element",
        "bridge",
        "virt_l3",
        "accepted_ports",
        "{ vnet3, vnet7 }",
    ]));
    let (_, report, _) = h.check();
    assert_eq!(item(&report, "ports")["status"], "ok", "{report}");
    h.lab.write_config(&format!(
        "require_nwfilter = false\nreconcile_grace_seconds = 0\nlibvirt_status_dir = {:?}\n[firewall]\nenabled = false\n",
        h.lab.status_dir()
    ));
    let (_, report, _) = h.check();
    assert_eq!(item(&report, "firewall")["status"], "warn", "{report}");
    assert!(item(&report, "firewall")["fix"]
        .as_str()
        .unwrap()
        .contains("enabled = false"));
}
