//! `virt-l3 guest-config`: golden files, netplan's own generator and cloud-init's
//! network_data.json reader on the output, the output against what the hook
//! really installs in the kernel, and guests (network namespaces behind a tap of
//! the lab's cloudbr0) configured by the real systemd-networkd from the output,
//! pinging both gateways (namespace lab, root; tests/lib/networkd-guest.sh).
//!
//! `UPDATE_GOLDEN=1 cargo test --test guest_config` rewrites the golden files.

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
#[path = "../common/mod.rs"]
mod common;
mod cli;
mod kernel;
mod netplan;
mod network_data;
mod networkd;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use common::{fixture, stderr, Lab};
use virt_l3::config::Config;
use virt_l3::domain_xml::DomainXml;
use virt_l3::guest_config::{self, Options};
use virt_l3::plan::{plan, Checks, DomainPlan, HostFacts, NoOwnership};

fn golden_dir() -> PathBuf {
    common::repo_path("testdata/guest-config")
}

fn check_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "golden file {} ({e}); run with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    assert_eq!(
        expected,
        actual,
        "{} differs from the output (UPDATE_GOLDEN=1 cargo test --test guest_config, then review the diff)",
        path.display()
    );
}

fn planned(name: &str, config: &Config) -> DomainPlan {
    let dom = DomainXml::parse(&fixture(name)).unwrap();
    plan(
        &dom,
        config,
        &HostFacts::default(),
        &NoOwnership,
        Checks::default(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn with_nameservers() -> Config {
    Config {
        guest_nameservers: vec!["2620:fe::fe".parse().unwrap(), "9.9.9.9".parse().unwrap()],
        ..Config::default()
    }
}

#[test]
fn outputs_match_the_golden_files() {
    let plain = Config::default();
    for name in [
        "dual-stack",
        "ipv4-only",
        "ipv6-only",
        "multi-nic",
        "flat-metadata",
        "filterref-params",
    ] {
        let p = planned(&format!("{name}.xml"), &plain);
        let y = guest_config::netplan(&p, &plain, &Options::default()).unwrap();
        check_golden(&format!("{name}.yaml"), &y);
        let j = guest_config::network_data_text(&p, &plain).unwrap();
        check_golden(&format!("{name}.json"), &j);
    }
    // Nameservers and renaming, which only appear when asked for.
    let c = with_nameservers();
    let p = planned("dual-stack.xml", &c);
    let opts = Options {
        set_name_prefix: Some("eth".into()),
    };
    check_golden(
        "dual-stack-nameservers.yaml",
        &guest_config::netplan(&p, &c, &opts).unwrap(),
    );
    check_golden(
        "dual-stack-nameservers.json",
        &guest_config::network_data_text(&p, &c).unwrap(),
    );
}

#[test]
fn nameservers_appear_only_when_configured() {
    let plain = Config::default();
    let p = planned("dual-stack.xml", &plain);
    assert!(!guest_config::netplan(&p, &plain, &Options::default())
        .unwrap()
        .contains("nameservers"));
    let j = guest_config::network_data(&p, &plain).unwrap();
    assert_eq!(j["services"], serde_json::json!([]));
    let c = with_nameservers();
    let j = guest_config::network_data(&p, &c).unwrap();
    assert_eq!(
        j["services"],
        serde_json::json!([{"type": "dns", "address": "2620:fe::fe"}, {"type": "dns", "address": "9.9.9.9"}])
    );
}

#[test]
fn a_routed_prefix_is_not_a_guest_address() {
    let c = Config::default();
    let p = planned("dual-stack.xml", &c);
    let y = guest_config::netplan(&p, &c, &Options::default()).unwrap();
    let addresses: Vec<&str> = y
        .lines()
        .filter(|l| l.starts_with("        - \""))
        .collect();
    assert_eq!(
        addresses,
        [
            "        - \"2.57.57.30/32\"",
            "        - \"2001:678:3a4:100::80/128\""
        ]
    );
    let j = guest_config::network_data(&p, &c).unwrap();
    let ips: Vec<&str> = j["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["ip_address"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["2.57.57.30", "2001:678:3a4:100::80"]);
}

#[test]
fn a_family_without_a_gateway_is_refused_naming_domain_nic_and_address() {
    let c = Config {
        gateways: vec!["fe80::1".parse().unwrap()],
        ..Config::default()
    };
    let p = planned("dual-stack.xml", &c);
    let e = guest_config::netplan(&p, &c, &Options::default())
        .unwrap_err()
        .to_string();
    for want in [
        "i-2-10-VM",
        "52:02:45:76:d2:35",
        "2.57.57.30",
        "IPv4 gateway",
    ] {
        assert!(e.contains(want), "{want:?} missing from: {e}");
    }
    assert_eq!(
        guest_config::network_data(&p, &c).unwrap_err().to_string(),
        e
    );
}

/// `netplan generate` into a scratch root; returns the systemd-networkd files by name.
fn netplan_generate(yaml: &str) -> Vec<(String, String)> {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("etc/netplan");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("50-virt-l3.yaml");
    std::fs::write(&file, yaml).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = Command::new("netplan")
        .args(["generate", "--root-dir"])
        .arg(root.path())
        .output()
        .unwrap_or_else(|e| panic!("netplan (install netplan.io: scripts/deps.sh test): {e}"));
    assert!(
        out.status.success(),
        "netplan generate refused the output: {}\n{yaml}",
        stderr(&out)
    );
    common::files_with_contents(&root.path().join("run/systemd/network"))
}

/// The `[Route]` sections of a networkd file, each as its sorted `key=value` lines.
fn sections(file: &str, name: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<String>> = None;
    for line in file.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with('[') {
            if let Some(s) = cur.take() {
                out.push(s);
            }
            if line == format!("[{name}]") {
                cur = Some(Vec::new());
            }
        } else if let Some(s) = cur.as_mut() {
            s.push(line.to_string());
            s.sort();
        }
    }
    out.extend(cur);
    out
}

fn v(lines: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// cloud-init's rendering of a network_data.json (`-O netplan` or `-O networkd`), as files
/// (name, content), for a guest whose NIC with `mac` is called eth0.
fn cloud_init_render(
    ci: &common::cloud_init::CloudInit,
    json: &str,
    renderer: &str,
    mac: &str,
) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("network_data.json");
    std::fs::write(&input, json).unwrap();
    let out = ci
        .net_convert()
        .args(["-k", "network_data.json", "-D", "debian"])
        .args(["-O", renderer, "-m", &format!("eth0,{mac}")])
        .arg("-p")
        .arg(&input)
        .arg("-d")
        .arg(dir.path().join("out"))
        .output()
        .unwrap_or_else(|e| panic!("cloud-init (scripts/deps.sh test installs it): {e}"));
    assert!(
        out.status.success(),
        "{} net-convert: {}",
        ci.label,
        stderr(&out)
    );
    let sub = if renderer == "netplan" {
        "out/etc/netplan"
    } else {
        "out/etc/systemd/network"
    };
    common::files_with_contents(&dir.path().join(sub))
}
