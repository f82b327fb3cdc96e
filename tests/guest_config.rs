//! `virt-l3 guest-config`: golden files, netplan's own generator and cloud-init's
//! network_data.json reader on the output, the output against what the hook
//! really installs in the kernel, and guests (network namespaces behind a tap of
//! the lab's cloudbr0) configured by the real systemd-networkd from the output,
//! pinging both gateways (namespace lab, root; tests/lib/networkd-guest.sh).
//!
//! `UPDATE_GOLDEN=1 cargo test --test guest_config` rewrites the golden files.

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
mod common;

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

#[test]
fn netplan_generator_accepts_the_two_nic_dual_stack_output() {
    let c = Config::default();
    let p = planned("multi-nic.xml", &c);
    let files = netplan_generate(&guest_config::netplan(&p, &c, &Options::default()).unwrap());
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["10-netplan-nic0.network", "10-netplan-nic1.network"]
    );
    let (nic0, nic1) = (&files[0].1, &files[1].1);

    assert!(
        nic0.contains("PermanentMACAddress=52:54:00:00:0a:01"),
        "{nic0}"
    );
    assert!(
        nic1.contains("PermanentMACAddress=52:54:00:00:0a:02"),
        "{nic1}"
    );
    for (file, addrs) in [
        (nic0, ["198.51.100.1/32", "2001:db8:a::1/128"]),
        (nic1, ["198.51.100.2/32", "2001:db8:a::2/128"]),
    ] {
        let got: Vec<&str> = file
            .lines()
            .filter_map(|l| l.strip_prefix("Address="))
            .collect();
        assert_eq!(got, addrs, "{file}");
        assert!(file.contains("IPv6AcceptRA=no"), "{file}");
        assert!(
            !file.contains("DHCP=yes") && !file.contains("DHCP=ipv"),
            "{file}"
        );
    }
    // NIC 0: the main table's defaults, and its own table; NIC 1: its own table only.
    let route4 = |t: Option<&str>| {
        let mut r = vec![
            "Destination=0.0.0.0/0",
            "Gateway=169.254.0.1",
            "GatewayOnLink=true",
        ];
        r.extend(t);
        v(&r)
    };
    let route6 = |t: Option<&str>| {
        let mut r = vec!["Destination=::/0", "Gateway=fe80::1"];
        r.extend(t);
        v(&r)
    };
    assert_eq!(
        sections(nic0, "Route"),
        [
            route4(None),
            route6(None),
            route4(Some("Table=100")),
            route6(Some("Table=100"))
        ]
    );
    assert_eq!(
        sections(nic1, "Route"),
        [route4(Some("Table=101")), route6(Some("Table=101"))]
    );
    assert_eq!(
        sections(nic1, "RoutingPolicyRule"),
        [
            v(&["From=198.51.100.2/32", "Table=101"]),
            v(&["From=2001:db8:a::2/128", "Table=101"]),
            v(&["From=203.0.113.0/28", "Table=101"]),
        ]
    );
}

#[test]
fn cloud_init_reads_the_network_data_json() {
    let c = with_nameservers();
    let p = planned("dual-stack.xml", &c);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("network_data.json");
    std::fs::write(&json, guest_config::network_data_text(&p, &c).unwrap()).unwrap();
    let out = Command::new("cloud-init")
        .args([
            "devel",
            "net-convert",
            "-k",
            "network_data.json",
            "-D",
            "debian",
            "-O",
            "netplan",
        ])
        .arg("-p")
        .arg(&json)
        .arg("-d")
        .arg(dir.path().join("out"))
        .args(["-m", "eth0,52:02:45:76:d2:35"])
        .output()
        .unwrap_or_else(|e| panic!("cloud-init (scripts/deps.sh test installs it): {e}"));
    assert!(
        out.status.success(),
        "cloud-init net-convert: {}",
        stderr(&out)
    );
    let yaml =
        std::fs::read_to_string(dir.path().join("out/etc/netplan/50-cloud-init.yaml")).unwrap();
    for want in [
        "macaddress: 52:02:45:76:d2:35",
        "- 2.57.57.30/32",
        "- 2001:678:3a4:100::80/128",
        "accept-ra: false",
        "2620:fe::fe",
        "9.9.9.9",
    ] {
        assert!(
            yaml.contains(want),
            "{want:?} missing from cloud-init's rendering:\n{yaml}"
        );
    }
    assert!(
        !yaml.contains("8000"),
        "a routed prefix became a guest setting:\n{yaml}"
    );
    // The default routes: cloud_init_renders_usable_default_routes_with_every_version.
}

/// The routes of a netplan rendering, each as its `key: value` lines, and the
/// interface-level `gatewayN: ...` lines.
fn netplan_routes(yaml: &str) -> (Vec<BTreeSet<String>>, Vec<String>) {
    let mut routes: Vec<BTreeSet<String>> = Vec::new();
    let mut gateways = Vec::new();
    let mut in_routes = false;
    for line in yaml.lines() {
        let t = line.trim();
        if t.starts_with("gateway4:") || t.starts_with("gateway6:") {
            gateways.push(t.to_string());
        }
        if t == "routes:" {
            in_routes = true;
            continue;
        }
        if let Some(rest) = t.strip_prefix("- ").filter(|_| in_routes) {
            routes.push(BTreeSet::from([rest.trim().to_string()]));
        } else if in_routes && line.starts_with("                ") {
            if let Some(r) = routes.last_mut() {
                r.insert(t.to_string());
            }
        } else {
            in_routes = false;
        }
    }
    (routes, gateways)
}

/// The `[Route]` sections of networkd files, each as its lines.
fn networkd_routes(files: &[(String, String)]) -> Vec<BTreeSet<String>> {
    let mut out = Vec::new();
    for (_, text) in files {
        for section in text.split("[Route]").skip(1) {
            let body = section.split("\n[").next().unwrap_or("");
            out.push(
                body.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect(),
            );
        }
    }
    out
}

/// Every cloud-init version that runs here (Debian's packaged one, and the
/// releases `scripts/deps.sh cloud-init` unpacked), both renderers: the default
/// routes via 169.254.0.1 and fe80::1 come out on-link from the versions that
/// mark a network's `gateway` on-link (netplan renderer from 23.1, networkd from
/// 24.2); older ones write them plain, with the host route to 169.254.0.1
/// virt-l3 adds for them. Never a default route in a network's `routes`.
#[test]
fn cloud_init_renders_usable_default_routes_with_every_version() {
    // Root: cloud-init's networkd renderer hands its files to systemd-network
    // (chown); systemd-networkd runs in a private namespace.
    require_root!();
    let c = Config::default();
    let p = planned("dual-stack.xml", &c);
    let json = guest_config::network_data_text(&p, &c).unwrap();
    let versions = common::cloud_init::available();
    assert!(
        !versions.is_empty(),
        "no cloud-init (scripts/deps.sh test installs it)"
    );
    common::cloud_init::announce(
        "cloud_init_renders_usable_default_routes_with_every_version",
        &versions,
    );
    let mac = "52:02:45:76:d2:35";
    let set = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<BTreeSet<_>>();
    for ci in &versions {
        eprintln!("checking {}", ci.label);
        let yaml = cloud_init_render(ci, &json, "netplan", mac);
        assert_eq!(yaml.len(), 1, "{}: {yaml:?}", ci.label);
        let (routes, gateways) = netplan_routes(&yaml[0].1);
        let what = format!("{} netplan renderer:\n{}", ci.label, yaml[0].1);
        assert!(
            routes.contains(&set(&["to: 169.254.0.1/32", "via: 0.0.0.0"])),
            "{what}"
        );
        if ci.marks_gateway_on_link("netplan") {
            for g in ["169.254.0.1", "fe80::1"] {
                let want = set(&["on-link: true", "to: default", &format!("via: {g}")]);
                assert!(routes.contains(&want), "{what}");
            }
            assert!(gateways.is_empty(), "{what}");
        } else {
            assert_eq!(
                gateways,
                ["gateway4: 169.254.0.1", "gateway6: fe80::1"],
                "{what}"
            );
        }
        // The host route, and the two default routes when they are route entries.
        let expected = if ci.marks_gateway_on_link("netplan") {
            3
        } else {
            1
        };
        assert_eq!(routes.len(), expected, "{what}");

        let files = cloud_init_render(ci, &json, "networkd", mac);
        let routes = networkd_routes(&files);
        let what = format!("{} networkd renderer: {files:?}", ci.label);
        assert!(
            routes.contains(&set(&["Destination=169.254.0.1/32", "Gateway=0.0.0.0"])),
            "{what}"
        );
        for g in ["169.254.0.1", "fe80::1"] {
            let mut want = vec![format!("Gateway={g}")];
            if ci.marks_gateway_on_link("networkd") {
                want.push("GatewayOnLink=yes".into());
            }
            let want: BTreeSet<String> = want.into_iter().collect();
            assert!(routes.contains(&want), "{what}");
        }
        assert_eq!(routes.len(), 3, "{what}");
    }
}

/// The coverage message names every version run and each wanted release not
/// found (the optional extras scripts/deps.sh could not fetch).
#[test]
fn the_cloud_init_coverage_names_what_ran_and_what_was_skipped() {
    use common::cloud_init::{coverage, CloudInit};
    let packaged = CloudInit {
        source: None,
        version: (22, 4),
        label: "packaged cloud-init 22.4.2".into(),
    };
    let source = CloudInit {
        source: Some("/c/23.1".into()),
        version: (23, 1),
        label: "cloud-init 23.1 (/c/23.1)".into(),
    };
    let wanted: Vec<String> = ["23.1", "24.2", "26.2"].map(String::from).to_vec();
    let text = coverage(&[packaged.clone(), source], &wanted);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "cloud-init versions covered: packaged cloud-init 22.4.2, cloud-init 23.1 (/c/23.1)"
    );
    assert!(
        lines[1].starts_with("cloud-init versions SKIPPED"),
        "{text}"
    );
    assert!(lines[1].ends_with(": 24.2, 26.2"), "{text}");
    assert_eq!(lines.len(), 2);
    // Everything wanted was found: no skip line.
    assert_eq!(coverage(&[packaged], &[]).lines().count(), 1);
}

// ---- against the kernel (root) ----

fn run_guest_config(lab: &Lab, xml: &[u8], format: &str) -> std::process::Output {
    lab.virt_l3(&["guest-config", "--format", format], xml)
}

#[test]
fn guest_config_refuses_what_the_hook_refuses_with_the_same_error() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    let unfiltered = String::from_utf8(fixture("dual-stack.xml"))
        .unwrap()
        .replace("<filterref filter='virt-l3-nic-52024576d235'/>", "");
    for (what, xml) in [
        ("invalid addresses", fixture("invalid-addresses.xml")),
        ("no filterref", unfiltered.into_bytes()),
    ] {
        let hook = lab.hook("d", "prepare", "begin", &xml);
        assert!(!hook.status.success(), "{what}: the hook accepted it");
        let gc = run_guest_config(&lab, &xml, "netplan");
        assert!(!gc.status.success(), "{what}: guest-config accepted it");
        assert!(
            gc.stdout.is_empty(),
            "{what}: guest-config printed a configuration"
        );
        assert_eq!(stderr(&gc), stderr(&hook), "{what}: different refusals");
    }
}

#[test]
fn guest_addresses_and_macs_equal_what_the_hook_installs() {
    require_root!();
    let lab = Lab::new(&["vnet101", "vnet102"]);
    let xml = fixture("multi-nic.xml");
    for op in ["prepare", "start", "started"] {
        let o = lab.hook("multi", op, "begin", &xml);
        assert!(o.status.success(), "{op}: {}", stderr(&o));
    }
    // The kernel's view: address -> MAC (neighbours), host routes, routed prefixes.
    // The pinned link-locals are neighbours too: each the EUI-64 one of its MAC,
    // which the netplan output makes the guest use (ipv6-address-generation).
    let mut kernel_pairs = BTreeSet::new();
    let mut link_locals = BTreeSet::new();
    for l in lab.neighbours() {
        let w: Vec<&str> = l.split_whitespace().collect();
        let pair = (w[0].to_string(), w[4].to_string());
        if w[0].starts_with("fe80:") {
            link_locals.insert(pair);
        } else {
            kernel_pairs.insert(pair);
        }
    }
    let eui64 = |mac: &str| virt_l3::address::eui64_link_local(mac.parse().unwrap()).to_string();
    let want: BTreeSet<(String, String)> = ["52:54:00:00:0a:01", "52:54:00:00:0a:02"]
        .iter()
        .map(|m| (eui64(m), m.to_string()))
        .collect();
    assert_eq!(link_locals, want, "the kernel's link-local neighbours");
    let mut host_routes = BTreeSet::new();
    let mut prefix_routes = BTreeSet::new();
    for r in lab.routes() {
        let w: Vec<&str> = r.split_whitespace().collect();
        if w[1] == "via" {
            prefix_routes.insert((w[0].to_string(), w[2].to_string()));
        } else {
            host_routes.insert(w[0].to_string());
        }
    }

    // network_data.json: every (address, MAC) of the guest.
    let o = run_guest_config(&lab, &xml, "network-data");
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mac_of = |link: &str| {
        j["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == link)
            .map(|l| l["ethernet_mac_address"].as_str().unwrap().to_string())
            .unwrap()
    };
    let guest_pairs: BTreeSet<(String, String)> = j["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["ip_address"].as_str().unwrap().to_string(),
                mac_of(n["link"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        guest_pairs, kernel_pairs,
        "network_data.json vs the kernel's neighbours"
    );
    let guest_addrs: BTreeSet<String> = guest_pairs.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(
        guest_addrs, host_routes,
        "network_data.json vs the kernel's host routes"
    );

    // netplan, through netplan's generator: the same pairs, and the routed prefix
    // as a source rule of the NIC whose address the kernel routes it via.
    let o = run_guest_config(&lab, &xml, "netplan");
    assert!(o.status.success(), "{}", stderr(&o));
    let files = netplan_generate(&String::from_utf8(o.stdout).unwrap());
    let mut netplan_pairs = BTreeSet::new();
    let mut netplan_prefixes = BTreeSet::new();
    for (_, f) in &files {
        let mac = f
            .lines()
            .find_map(|l| l.strip_prefix("PermanentMACAddress="))
            .unwrap()
            .to_string();
        let addrs: Vec<String> = f
            .lines()
            .filter_map(|l| l.strip_prefix("Address="))
            .map(|a| a.split('/').next().unwrap().to_string())
            .collect();
        for rule in sections(f, "RoutingPolicyRule") {
            let from = rule.iter().find_map(|l| l.strip_prefix("From=")).unwrap();
            if !addrs.iter().any(|a| from.starts_with(&format!("{a}/"))) {
                // Not an address: a routed prefix, sent from one of this NIC's addresses.
                for a in &addrs {
                    netplan_prefixes.insert((from.to_string(), a.clone()));
                }
            }
        }
        for a in addrs {
            netplan_pairs.insert((a, mac.clone()));
        }
    }
    assert_eq!(
        netplan_pairs, kernel_pairs,
        "netplan vs the kernel's neighbours"
    );
    for (prefix, via) in &prefix_routes {
        assert!(
            netplan_prefixes.contains(&(prefix.clone(), via.clone())),
            "the kernel routes {prefix} via {via}; the guest has no source rule for it on that NIC"
        );
    }
    assert_eq!(prefix_routes.len(), 1, "{prefix_routes:?}");
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

/// systemd-networkd running in a guest's namespace with these .network files
/// (tests/lib/networkd-guest.sh).
struct Networkd {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Networkd {
    fn start(guest: &common::Guest, files: &[(String, String)]) -> Networkd {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            // A veth has no permanent MAC (a virtio NIC has): match the current one.
            let text = text.replace("PermanentMACAddress=", "MACAddress=");
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let script = common::repo_path("tests/lib/networkd-guest.sh");
        let child = Command::new("ip")
            .args(["netns", "exec", &guest.ns])
            .args(["unshare", "-m", "--propagation", "private", "bash"])
            .arg(&script)
            .arg(dir.path())
            .arg("30")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("networkd.log")).unwrap())
            .spawn()
            .unwrap();
        Networkd { child, dir }
    }

    /// Stops networkd (SIGTERM to the script; SIGKILL would orphan networkd); returns its log.
    fn stop(&mut self) -> String {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        std::fs::read_to_string(self.dir.path().join("networkd.log")).unwrap_or_default()
    }
}

impl Drop for Networkd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A dual-stack guest behind tap vnet3, configured by systemd-networkd from `files`
/// (.network), must get its default routes and reach both gateways from its own
/// addresses, the replies coming back through the host route and permanent neighbour.
fn networkd_guest_reaches_both_gateways(what: &str, files: &[(String, String)]) {
    let lab = Lab::new(&["vnet3"]);
    let xml = fixture("dual-stack.xml");
    for op in ["prepare", "start", "started"] {
        let o = lab.hook("i-2-10-VM", op, "begin", &xml);
        assert!(o.status.success(), "{what}: {op}: {}", stderr(&o));
    }
    let guest = lab.guest("vnet3", "52:02:45:76:d2:35");
    let mut networkd = Networkd::start(&guest, files);
    let mut configured = false;
    for _ in 0..100 {
        let v4 = guest.ip(&["-4", "route", "show", "default"]);
        let v6 = guest.ip(&["-6", "route", "show", "default"]);
        let tentative = guest.ip(&["-6", "addr", "show", "dev", "eth0", "tentative"]);
        if v4.contains("via 169.254.0.1") && v6.contains("via fe80::1") && tentative.is_empty() {
            configured = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let routes = guest.ip(&["route", "show"])
        + &guest.ip(&["-6", "route", "show"])
        + &guest.ip(&["addr", "show", "dev", "eth0"]);
    let mut results = Vec::new();
    if configured {
        for (family, target, source) in [
            ("-4", "169.254.0.1", "2.57.57.30"),
            ("-6", "fe80::1%eth0", "2001:678:3a4:100::80"),
        ] {
            let mut last = String::new();
            let ok = (0..5).any(|_| {
                let o = guest.exec(&["ping", family, "-c1", "-W1", "-I", source, target]);
                last = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
                o.status.success()
            });
            results.push((target, ok, last));
        }
    }
    let link_local = guest.ip(&["-6", "addr", "show", "dev", "eth0", "scope", "link"]);
    let log = networkd.stop();
    assert!(
        configured,
        "{what}: networkd did not install both default routes; guest:\n{routes}\nnetworkd:\n{log}"
    );
    // The NIC's filter accepts IPv6 only from the EUI-64 link-local of its MAC.
    assert!(
        link_local.contains("inet6 fe80::5002:45ff:fe76:d235/64"),
        "{what}: the guest's link-local is not the EUI-64 one of its MAC:\n{link_local}"
    );
    for (target, ok, last) in results {
        assert!(
            ok,
            "{what}: the guest cannot ping {target}: {last}\nguest:\n{routes}\nnetworkd:\n{log}"
        );
    }
}

#[test]
fn a_guest_configured_by_networkd_from_the_netplan_output_reaches_both_gateways() {
    require_root!();
    let c = Config::default();
    let p = planned("dual-stack.xml", &c);
    let files = netplan_generate(&guest_config::netplan(&p, &c, &Options::default()).unwrap());
    networkd_guest_reaches_both_gateways("netplan output", &files);
}

#[test]
fn a_guest_configured_from_network_data_json_by_cloud_init_and_networkd_reaches_both_gateways() {
    require_root!();
    let c = Config::default();
    let p = planned("dual-stack.xml", &c);
    let json = guest_config::network_data_text(&p, &c).unwrap();
    let mac = "52:02:45:76:d2:35";
    // Every cloud-init that runs here (common::cloud_init).
    let versions = common::cloud_init::available();
    common::cloud_init::announce(
        "a_guest_configured_from_network_data_json_by_cloud_init_and_networkd_reaches_both_gateways",
        &versions,
    );
    for ci in versions {
        // Debian-style guests: cloud-init writes systemd-networkd files itself.
        let files = cloud_init_render(&ci, &json, "networkd", mac);
        let what = format!("network_data.json, {} networkd renderer", ci.label);
        networkd_guest_reaches_both_gateways(&what, &files);
        // Ubuntu-style guests: cloud-init writes netplan, netplan writes networkd files.
        let yaml = cloud_init_render(&ci, &json, "netplan", mac);
        assert_eq!(yaml.len(), 1, "{yaml:?}");
        let files = netplan_generate(&yaml[0].1);
        let what = format!("network_data.json, {} netplan renderer", ci.label);
        networkd_guest_reaches_both_gateways(&what, &files);
    }
}

// ---- the hypervisor's bridge examples (docs/OPERATOR-GUIDE.md) ----

/// Non-comment, non-empty lines.
fn config_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn the_netplan_bridge_example_generates_the_networkd_examples() {
    let examples = common::repo_path("packaging/examples");
    let read = |n: &str| std::fs::read_to_string(examples.join(n)).unwrap();
    let files = netplan_generate(&read("cloudbr0.netplan.yaml"));
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["10-netplan-cloudbr0.netdev", "10-netplan-cloudbr0.network"]
    );
    assert_eq!(
        config_lines(&files[0].1),
        config_lines(&read("cloudbr0.netdev"))
    );
    // netplan cannot turn off duplicate address detection: the gateways come
    // from the networkd drop-in shipped beside it.
    let network = read("cloudbr0.network");
    let mut rendered = config_lines(&files[1].1);
    rendered.extend(config_lines(&read("cloudbr0.netplan-gateways.conf")));
    assert_eq!(rendered, config_lines(&network));
    for want in [
        "Address=169.254.0.1/32",
        "Address=fe80::1/64",
        "ConfigureWithoutCarrier=yes",
    ] {
        assert!(network.contains(want), "{want} missing");
    }
    assert_eq!(
        sections(&network, "Address"),
        [
            v(&["Address=169.254.0.1/32", "DuplicateAddressDetection=none"]),
            v(&["Address=fe80::1/64", "DuplicateAddressDetection=none"]),
        ]
    );
    assert!(
        sections(&network, "Network")
            .concat()
            .iter()
            .all(|l| !l.starts_with("Address=")),
        "every gateway in an [Address] section"
    );
}

/// The gateways of a bridge configured by systemd-networkd from `files`, as
/// `ip address` shows them, once both are there (or after 10 s).
fn bridge_gateways_by_networkd(files: &[(String, String)]) -> Vec<String> {
    let ns = format!("vl3-br-{}", std::process::id());
    let _ = Command::new("ip")
        .args(["netns", "del", &ns])
        .stderr(std::process::Stdio::null())
        .status();
    let host = common::Guest { ns: ns.clone() };
    assert!(Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    host.ip(&["link", "set", "lo", "up"]);
    host.ip(&["link", "add", "cloudbr0", "type", "bridge"]);
    let mut networkd = Networkd::start(&host, files);
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = host
            .ip(&["-o", "address", "show", "dev", "cloudbr0"])
            .lines()
            .filter(|l| l.contains(" 169.254.0.1/") || l.contains(" fe80::1/"))
            .map(|l| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" "))
            .collect();
        if lines.len() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = networkd.stop();
    assert_eq!(lines.len(), 2, "{lines:?}\nnetworkd:\n{log}");
    lines.sort();
    lines
}

/// Run by the real systemd-networkd on a bridge without carrier (no guest yet):
/// both gateways there at once, fe80::1 `nodad` (never tentative, so no guest
/// can make it fail duplicate address detection), 169.254.0.1 not held back by
/// networkd's IPv4 address conflict detection either.
#[test]
fn the_networkd_bridge_example_adds_the_gateways_without_dad() {
    // Root: cloud-init's networkd renderer hands its files to systemd-network
    // (chown); systemd-networkd runs in a private namespace.
    require_root!();
    let examples = common::repo_path("packaging/examples");
    let read = |n: &str| std::fs::read_to_string(examples.join(n)).unwrap();
    let lines =
        bridge_gateways_by_networkd(&[("cloudbr0.network".into(), read("cloudbr0.network"))]);
    assert!(lines[0].starts_with("inet 169.254.0.1/32 "), "{lines:?}");
    assert!(
        lines[1].starts_with("inet6 fe80::1/64 scope link nodad"),
        "{lines:?}"
    );
    assert!(!lines[1].contains("tentative"), "{lines:?}");
    // The netplan example: what netplan renders plus the drop-in, the same.
    let mut files = netplan_generate(&read("cloudbr0.netplan.yaml"));
    files.retain(|(n, _)| n.ends_with(".network"));
    files.push((
        "10-netplan-cloudbr0.network.d/virt-l3-gateways.conf".into(),
        read("cloudbr0.netplan-gateways.conf"),
    ));
    assert_eq!(bridge_gateways_by_networkd(&files), lines);
}

// ---- the command line ----

fn cli(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("state_dir = {:?}\n", dir.path().join("state")),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_virt-l3"))
        .arg("--config")
        .arg(&config)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn both_formats_go_to_files_equal_to_the_single_format_outputs() {
    let xml = fixture("multi-nic.xml");
    let o = cli(&["guest-config", "--format", "both"], &xml);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--out-dir"), "{}", stderr(&o));
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("cd");
    let o = cli(
        &[
            "guest-config",
            "--format",
            "both",
            "--out-dir",
            dir.to_str().unwrap(),
        ],
        &xml,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let netplan = cli(&["guest-config"], &xml);
    let json = cli(&["guest-config", "--format", "network-data"], &xml);
    assert_eq!(
        std::fs::read(dir.join("network-config.yaml")).unwrap(),
        netplan.stdout
    );
    assert_eq!(
        std::fs::read(dir.join("network_data.json")).unwrap(),
        json.stdout
    );
    check_golden(
        "multi-nic.yaml",
        &String::from_utf8(netplan.stdout).unwrap(),
    );
}

#[test]
fn an_invalid_interface_name_is_refused_naming_domain_nic_and_name() {
    let c = Config::default();
    let p = planned("dual-stack.xml", &c);
    let opts = Options {
        set_name_prefix: Some("eth\"0: x".into()),
    };
    let e = guest_config::netplan(&p, &c, &opts)
        .unwrap_err()
        .to_string();
    for want in [
        "i-2-10-VM",
        "52:02:45:76:d2:35",
        "eth\\\"0: x0",
        "--set-name",
    ] {
        assert!(e.contains(want), "{want:?} missing from: {e}");
    }
    let long = Options {
        set_name_prefix: Some("a-very-long-name".into()),
    };
    assert!(guest_config::netplan(&p, &c, &long).is_err());
}

#[test]
fn a_two_nic_guest_configured_by_networkd_sends_each_nics_traffic_out_of_that_nic() {
    require_root!();
    let lab = Lab::new(&["vnet101", "vnet102"]);
    let xml = fixture("multi-nic.xml");
    for op in ["prepare", "start", "started"] {
        let o = lab.hook("multi", op, "begin", &xml);
        assert!(o.status.success(), "{op}: {}", stderr(&o));
    }
    let guest = lab.guest("vnet101", "52:54:00:00:0a:01");
    guest.add_nic(&lab, "vnet102", "eth1", "52:54:00:00:0a:02");
    let c = Config::default();
    let p = planned("multi-nic.xml", &c);
    let files = netplan_generate(&guest_config::netplan(&p, &c, &Options::default()).unwrap());
    let mut networkd = Networkd::start(&guest, &files);
    // Ready: both NICs' tables filled, no address still in DAD.
    let ready = |g: &common::Guest| {
        let show = |args: &[&str]| {
            String::from_utf8_lossy(&g.exec(&[&["ip"], args].concat()).stdout).into_owned()
        };
        let t101 = show(&["-6", "route", "show", "table", "101"]);
        let t100 = show(&["-4", "route", "show", "table", "100"]);
        let tentative = show(&["-6", "addr", "show", "tentative"]);
        t101.contains("default via fe80::1")
            && t100.contains("default via 169.254.0.1")
            && tentative.is_empty()
    };
    let configured = (0..100).any(|_| {
        let r = ready(&guest);
        if !r {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        r
    });
    let mut out = Vec::new();
    if configured {
        for (source, target) in [
            ("198.51.100.1", "169.254.0.1"),
            ("198.51.100.2", "169.254.0.1"),
            ("2001:db8:a::1", "fe80::1"),
            ("2001:db8:a::2", "fe80::1"),
        ] {
            out.push((source, guest.ip(&["route", "get", target, "from", source])));
        }
        for (family, source, target) in [
            ("-4", "198.51.100.2", "169.254.0.1"),
            ("-6", "2001:db8:a::2", "fe80::1%eth1"),
        ] {
            let ok = (0..5).any(|_| {
                guest
                    .exec(&["ping", family, "-c1", "-W1", "-I", source, target])
                    .status
                    .success()
            });
            assert!(ok, "the second NIC cannot ping {target} from {source}");
        }
    }
    let log = networkd.stop();
    assert!(configured, "networkd did not configure both NICs:\n{log}");
    for (source, route) in out {
        let want = if source.ends_with(".1") || source.ends_with("::1") {
            "dev eth0"
        } else {
            "dev eth1"
        };
        assert!(
            route.contains(want),
            "from {source}: {route} (wanted {want})"
        );
    }
}
