//! The hook against the real kernel, in a throwaway network namespace per test.
//! Needs root (as in CI).

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call
#[macro_use]
#[path = "../common/mod.rs"]
mod common;
mod bridge;
mod commands;
mod config;
mod hook_mode;
mod lifecycle;
mod refusals;
mod state_dir;

use common::{fixture, stderr, Lab};

const DUAL: &str = "dual-stack.xml";

fn s(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    v.sort();
    v
}

fn dual_routes() -> Vec<String> {
    s(&[
        "2.57.57.30 dev cloudbr0 scope link metric 100",
        "2001:678:3a4:100::80 dev cloudbr0 metric 100",
        "2001:678:3a4:8000::/56 via 2001:678:3a4:100::80 dev cloudbr0 metric 100 onlink",
    ])
}

fn dual_neighbours() -> Vec<String> {
    s(&[
        "2.57.57.30 dev cloudbr0 lladdr 52:02:45:76:d2:35 PERMANENT proto 52",
        "2001:678:3a4:100::80 dev cloudbr0 lladdr 52:02:45:76:d2:35 PERMANENT proto 52",
        // The pinned link-local (EUI-64 of the MAC): a neighbour, no route.
        "fe80::5002:45ff:fe76:d235 dev cloudbr0 lladdr 52:02:45:76:d2:35 PERMANENT proto 52",
    ])
}

fn sys(lab: &Lab, path: &str) -> String {
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns, "cat", path])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn start_installs_exactly_the_plan_rerun_changes_nothing_stopped_removes_all() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    let xml = fixture(DUAL);
    for op in ["prepare", "start", "started"] {
        let o = lab.hook("i-2-10-VM", op, "begin", &xml);
        assert!(o.status.success(), "{op}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "hook mode printed on stdout at {op}");
    }
    assert_eq!(lab.routes(), dual_routes());
    assert_eq!(lab.neighbours(), dual_neighbours());
    assert!(lab.isolated("vnet3"));
    for iface in ["all", "cloudbr0"] {
        let path = format!("/proc/sys/net/ipv4/conf/{iface}/send_redirects");
        assert_eq!(sys(&lab, &path), "0", "{iface} still sends ICMP redirects");
    }
    let before_all = lab.all_routes();

    // A second start changes nothing.
    let o = lab.hook("i-2-10-VM", "start", "begin", &xml);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lab.all_routes(), before_all);
    assert_eq!(lab.neighbours(), dual_neighbours());

    for op in ["stopped", "release"] {
        let o = lab.hook("i-2-10-VM", op, "end", &xml);
        assert!(o.status.success(), "{op}: {}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
    assert!(lab.routes().is_empty(), "{:?}", lab.routes());
    assert!(lab.neighbours().is_empty(), "{:?}", lab.neighbours());
    assert!(lab.state_files().is_empty(), "{:?}", lab.state_files());
}

#[test]
fn ipv4_only_and_ipv6_only() {
    require_root!();
    let lab = Lab::new(&["vnet41", "vnet61"]);
    assert!(lab
        .hook("v4only", "start", "begin", &fixture("ipv4-only.xml"))
        .status
        .success());
    assert!(lab
        .hook("v6only", "start", "begin", &fixture("ipv6-only.xml"))
        .status
        .success());
    assert_eq!(
        lab.routes(),
        s(&[
            "192.0.2.41 dev cloudbr0 scope link metric 100",
            "192.0.2.42 dev cloudbr0 scope link metric 100",
            "2001:db8:6::1 dev cloudbr0 metric 100",
        ])
    );
    assert_eq!(
        lab.neighbours(),
        s(&[
            "192.0.2.41 dev cloudbr0 lladdr 52:54:00:00:04:01 PERMANENT proto 52",
            "192.0.2.42 dev cloudbr0 lladdr 52:54:00:00:04:01 PERMANENT proto 52",
            "2001:db8:6::1 dev cloudbr0 lladdr 52:54:00:00:06:01 PERMANENT proto 52",
            "fe80::5054:ff:fe00:601 dev cloudbr0 lladdr 52:54:00:00:06:01 PERMANENT proto 52",
        ])
    );
    assert!(lab
        .hook("v4only", "stopped", "end", &fixture("ipv4-only.xml"))
        .status
        .success());
    assert_eq!(lab.routes(), s(&["2001:db8:6::1 dev cloudbr0 metric 100"]));
    assert!(lab
        .hook("v6only", "stopped", "end", &fixture("ipv6-only.xml"))
        .status
        .success());
    assert!(lab.routes().is_empty());
    assert!(lab.neighbours().is_empty());
}

#[test]
fn several_nics_routed_prefix_and_an_unrouted_nic_left_alone() {
    require_root!();
    let lab = Lab::new(&["vnet101", "vnet102"]);
    lab.add_bridge("br-vlan100");
    lab.add_tap("vnet103", "br-vlan100");
    let xml = fixture("multi-nic.xml");
    let o = lab.hook("multi", "start", "begin", &xml);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        lab.routes(),
        s(&[
            "198.51.100.1 dev cloudbr0 scope link metric 100",
            "198.51.100.2 dev cloudbr0 scope link metric 100",
            "203.0.113.0/28 via 198.51.100.2 dev cloudbr0 metric 100 onlink",
            "2001:db8:a::1 dev cloudbr0 metric 100",
            "2001:db8:a::2 dev cloudbr0 metric 100",
        ])
    );
    // Four addresses and the two NICs' pinned link-locals.
    assert_eq!(lab.neighbours().len(), 6);
    assert!(lab.neighbours().iter().all(|n| !n.contains("10.1.0.5")));
    assert!(lab.isolated("vnet101") && lab.isolated("vnet102"));
    assert!(
        !lab.isolated("vnet103"),
        "a NIC on a non-routed bridge must be left alone"
    );
    assert!(lab.hook("multi", "stopped", "end", &xml).status.success());
    assert!(lab.routes().is_empty());
    assert!(lab.neighbours().is_empty());
}
