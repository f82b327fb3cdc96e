//! The hook against the real kernel, in a throwaway network namespace per test.
//! Needs root (as in CI).

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
mod common;

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

#[test]
fn invalid_input_at_prepare_fails_clearly_and_changes_nothing() {
    require_root!();
    let lab = Lab::new(&[]);
    let before = lab.all_routes();
    let o = lab.hook(
        "badaddr",
        "prepare",
        "begin",
        &fixture("invalid-addresses.xml"),
    );
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
    let err = stderr(&o);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line on stderr: {err}"
    );
    for needle in [
        "badaddr",
        "52:54:00:00:bd:01",
        "127.0.0.1",
        "2001:db8::zz",
        "192.0.2.77",
    ] {
        assert!(err.contains(needle), "error should name {needle}: {err}");
    }
    assert_eq!(lab.all_routes(), before);
    assert!(lab.neighbours().is_empty());
    assert!(lab.state_files().is_empty());
    // The same XML at start is refused too, and still changes nothing.
    let o = lab.hook(
        "badaddr",
        "start",
        "begin",
        &fixture("invalid-addresses.xml"),
    );
    assert!(!o.status.success());
    assert_eq!(lab.all_routes(), before);
    assert!(lab.state_files().is_empty());
}

#[test]
fn hostile_xml_is_refused_without_effects() {
    require_root!();
    let lab = Lab::new(&[]);
    for f in ["hostile-billion-laughs.xml", "hostile-xxe.xml"] {
        for op in ["prepare", "start", "migrate", "restore"] {
            let o = lab.hook("evil", op, "begin", &fixture(f));
            assert!(!o.status.success(), "{f} at {op} was accepted");
            assert!(o.stdout.is_empty());
            assert!(stderr(&o).contains("DOCTYPE"), "{}", stderr(&o));
        }
    }
    let huge = vec![b'<'; 5 * 1024 * 1024];
    let o = lab.hook("huge", "prepare", "begin", &huge);
    assert!(!o.status.success());
    assert!(lab.routes().is_empty());
    assert!(lab.state_files().is_empty());
}

#[test]
fn a_domain_cannot_claim_another_domains_address() {
    require_root!();
    let lab = Lab::new(&["vnet3", "vnet9"]);
    assert!(lab
        .hook("i-2-10-VM", "start", "begin", &fixture(DUAL))
        .status
        .success());
    let thief = String::from_utf8(fixture(DUAL))
        .unwrap()
        .replace("i-2-10-VM", "thief")
        .replace(
            "6f5a3b2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b",
            "00000000-1111-4222-8333-444444444444",
        )
        .replace("52:02:45:76:d2:35", "52:54:00:99:99:99")
        .replace("virt-l3-nic-52024576d235", "virt-l3-nic-525400999999")
        .replace("vnet3", "vnet9");
    for op in ["prepare", "start"] {
        let o = lab.hook("thief", op, "begin", thief.as_bytes());
        assert!(!o.status.success(), "{op} accepted a stolen address");
        let err = stderr(&o);
        assert!(
            err.contains("2.57.57.30") && err.contains("already owned by domain i-2-10-VM"),
            "{err}"
        );
    }
    // The owner's routes and neighbours are untouched.
    assert_eq!(lab.routes(), dual_routes());
    assert_eq!(lab.neighbours(), dual_neighbours());
    // The thief's stop (libvirt runs it after a failed start) removes nothing of the owner's.
    assert!(lab
        .hook("thief", "stopped", "end", thief.as_bytes())
        .status
        .success());
    assert_eq!(lab.routes(), dual_routes());
    // Once the owner stopped, the address is free.
    assert!(lab
        .hook("i-2-10-VM", "stopped", "end", &fixture(DUAL))
        .status
        .success());
    let o = lab.hook("thief", "prepare", "begin", thief.as_bytes());
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_domain_cannot_use_another_domains_mac_and_the_claim_is_released_at_stop() {
    require_root!();
    let lab = Lab::new(&["vnet3", "vnet9"]);
    assert!(lab
        .hook("i-2-10-VM", "start", "begin", &fixture(DUAL))
        .status
        .success());
    assert!(
        lab.state_files()
            .contains(&"macs/52:02:45:76:d2:35".to_string()),
        "{:?}",
        lab.state_files()
    );
    // Same MAC (and so the same nwfilter name), other addresses.
    let twin = String::from_utf8(fixture(DUAL))
        .unwrap()
        .replace("i-2-10-VM", "twin")
        .replace(
            "6f5a3b2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b",
            "00000000-1111-4222-8333-444444444444",
        )
        .replace("2.57.57.30", "2.57.57.31")
        .replace("2001:678:3a4:100::80", "2001:678:3a4:100::81")
        .replace("2001:678:3a4:8000::/56", "2001:678:3a4:9000::/56")
        .replace("vnet3", "vnet9");
    for op in ["prepare", "start"] {
        let o = lab.hook("twin", op, "begin", twin.as_bytes());
        assert!(!o.status.success(), "{op} accepted another domain's MAC");
        let err = stderr(&o);
        assert!(
            err.contains("twin")
                && err.contains("NIC 52:02:45:76:d2:35")
                && err.contains(
                    "MAC 52:02:45:76:d2:35 is already used on a routed bridge by domain i-2-10-VM (6f5a3b2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b)"
                ),
            "{err}"
        );
    }
    assert_eq!(lab.routes(), dual_routes());
    assert_eq!(lab.neighbours(), dual_neighbours());
    // The twin's stop after its failed start releases nothing of the owner's.
    assert!(lab
        .hook("twin", "stopped", "end", twin.as_bytes())
        .status
        .success());
    assert!(lab
        .state_files()
        .contains(&"macs/52:02:45:76:d2:35".to_string()));
    for op in ["stopped", "release"] {
        assert!(lab
            .hook("i-2-10-VM", op, "end", &fixture(DUAL))
            .status
            .success());
    }
    assert!(lab.state_files().is_empty(), "{:?}", lab.state_files());
    let o = lab.hook("twin", "prepare", "begin", twin.as_bytes());
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_nic_with_the_gateway_mac_or_the_bridges_mac_is_refused() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    lab.write_config("gateway_mac = \"52:02:45:76:d2:35\"");
    let o = lab.hook("i-2-10-VM", "prepare", "begin", &fixture(DUAL));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("MAC 52:02:45:76:d2:35 is the guests' gateway MAC (gateway_mac)"),
        "{err}"
    );
    lab.write_config("");
    lab.ip(&["link", "set", "cloudbr0", "address", "52:02:45:76:d2:35"]);
    let o = lab.hook("i-2-10-VM", "prepare", "begin", &fixture(DUAL));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("MAC 52:02:45:76:d2:35 is the MAC of the routed bridge cloudbr0"),
        "{err}"
    );
    assert!(lab.routes().is_empty());
}

#[test]
fn an_address_of_the_hypervisor_is_refused() {
    require_root!();
    let lab = Lab::new(&["vnet41"]);
    lab.ip(&["addr", "add", "192.0.2.42/32", "dev", "lo"]);
    let o = lab.hook("v4only", "prepare", "begin", &fixture("ipv4-only.xml"));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("192.0.2.42 is configured on the hypervisor itself"),
        "{}",
        stderr(&o)
    );
    // IPv6, on another interface than the bridge.
    let lab = Lab::new(&["vnet61"]);
    lab.add_bridge("br-mgmt");
    lab.ip(&["addr", "add", "2001:db8:6::1/64", "dev", "br-mgmt", "nodad"]);
    let o = lab.hook("v6only", "prepare", "begin", &fixture("ipv6-only.xml"));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("2001:db8:6::1 is configured on the hypervisor itself"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_failed_start_is_rolled_back() {
    require_root!();
    // The tap named in <target dev> does not exist: isolation fails after routes went in.
    let lab = Lab::new(&[]);
    let o = lab.hook("i-2-10-VM", "start", "begin", &fixture(DUAL));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("vnet3"), "{}", stderr(&o));
    assert!(lab.routes().is_empty(), "{:?}", lab.routes());
    assert!(lab.neighbours().is_empty());
    assert!(lab.state_files().is_empty(), "{:?}", lab.state_files());
    // libvirt then runs stopped and release, which must succeed with nothing to do.
    assert!(lab
        .hook("i-2-10-VM", "stopped", "end", &fixture(DUAL))
        .status
        .success());
    assert!(lab
        .hook("i-2-10-VM", "release", "end", &fixture(DUAL))
        .status
        .success());
}

#[test]
fn stopped_removes_what_a_partial_apply_left() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    assert!(lab
        .hook("i-2-10-VM", "start", "begin", &fixture(DUAL))
        .status
        .success());
    // Half the entries vanish (as after a crash mid-apply or a manual flush).
    lab.ip(&[
        "route",
        "del",
        "2.57.57.30/32",
        "dev",
        "cloudbr0",
        "proto",
        "52",
    ]);
    lab.ip(&["neigh", "del", "2001:678:3a4:100::80", "dev", "cloudbr0"]);
    // Removal works from the record, even with unreadable XML.
    let o = lab.hook("i-2-10-VM", "stopped", "end", b"not xml at all");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(lab.routes().is_empty(), "{:?}", lab.routes());
    assert!(lab.neighbours().is_empty());
    assert!(lab.state_files().is_empty());
}

#[test]
fn reconnect_restores_deleted_entries_and_never_fails() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    assert!(lab
        .hook("i-2-10-VM", "start", "begin", &fixture(DUAL))
        .status
        .success());
    lab.ip(&["route", "flush", "dev", "cloudbr0", "proto", "52"]);
    lab.ip(&["-6", "route", "flush", "dev", "cloudbr0", "proto", "52"]);
    let o = lab.hook("i-2-10-VM", "reconnect", "begin", &fixture(DUAL));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lab.routes(), dual_routes());
    // Garbage at reconnect must not kill the running VM.
    let o = lab.hook("i-2-10-VM", "reconnect", "begin", b"<domain");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lab.routes(), dual_routes());
}

#[test]
fn migrate_and_restore_print_nothing_and_validate() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    for op in ["migrate", "restore"] {
        let o = lab.hook("i-2-10-VM", op, "begin", &fixture(DUAL));
        assert!(o.status.success(), "{op}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{op} must not replace the XML");
        let o = lab.hook("badaddr", op, "begin", &fixture("invalid-addresses.xml"));
        assert!(!o.status.success(), "{op} accepted invalid XML");
        assert!(o.stdout.is_empty());
    }
    assert!(lab.routes().is_empty(), "validation steps install nothing");
}

#[test]
fn incoming_migration_installs_standby_routes() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    for op in ["migrate", "prepare", "start", "started"] {
        let o = lab.hook("i-2-10-VM", op, "begin", &fixture(DUAL));
        assert!(o.status.success(), "{op}: {}", stderr(&o));
    }
    let routes = lab.routes();
    assert_eq!(routes.len(), 3);
    assert!(
        routes.iter().all(|r| r.contains("metric 4000")),
        "{routes:?}"
    );
    assert!(lab
        .hook("i-2-10-VM", "stopped", "end", &fixture(DUAL))
        .status
        .success());
    assert!(lab.routes().is_empty());
    assert!(lab.state_files().is_empty(), "{:?}", lab.state_files());
}

#[test]
fn a_routed_nic_without_virt_l3_filter_is_refused_at_prepare() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    let xml = String::from_utf8(fixture(DUAL))
        .unwrap()
        .replace("<filterref filter='virt-l3-nic-52024576d235'/>", "");
    let o = lab.hook("i-2-10-VM", "prepare", "begin", xml.as_bytes());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nwfilter"), "{}", stderr(&o));
    lab.write_config("require_nwfilter = false");
    let o = lab.hook("i-2-10-VM", "prepare", "begin", xml.as_bytes());
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn configured_protocol_and_metric_are_used() {
    require_root!();
    let lab = Lab::new(&["vnet41"]);
    lab.write_config("route_protocol = 77\nroute_metric = 33");
    assert!(lab
        .hook("v4only", "start", "begin", &fixture("ipv4-only.xml"))
        .status
        .success());
    let r = lab.ip(&["route", "show", "proto", "77"]);
    assert!(
        r.contains("192.0.2.41 dev cloudbr0 scope link metric 33"),
        "{r}"
    );
    assert!(lab.routes().is_empty(), "nothing with the default protocol");
    assert!(lab
        .hook("v4only", "stopped", "end", &fixture("ipv4-only.xml"))
        .status
        .success());
    assert!(lab.ip(&["route", "show", "proto", "77"]).is_empty());
}

#[test]
fn bad_config_refuses_start_but_not_stop() {
    require_root!();
    let lab = Lab::new(&["vnet41"]);
    lab.write_config("bridgez = [\"x\"]");
    let o = lab.hook("v4only", "prepare", "begin", &fixture("ipv4-only.xml"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bridgez"), "{}", stderr(&o));
    let o = lab.hook("v4only", "stopped", "end", &fixture("ipv4-only.xml"));
    assert!(o.status.success());
}

#[test]
fn runs_as_hook_when_installed_in_qemu_d() {
    require_root!();
    let lab = Lab::new(&["vnet41"]);
    let hookdir = lab.dir.path().join("hooks/qemu.d");
    std::fs::create_dir_all(&hookdir).unwrap();
    let entry = hookdir.join("virt-l3");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_virt-l3"), &entry).unwrap();
    use std::io::Write;
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns])
        .arg(&entry)
        .args(["v4only", "start", "begin", "-"])
        .env("VIRT_L3_CONFIG", lab.config_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&fixture("ipv4-only.xml"))
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert_eq!(lab.routes().len(), 2);
}

/// Runs the binary as libvirt does: `/etc/libvirt/hooks/qemu DOMAIN OP SUBOP -`,
/// no subcommand, the configuration from the environment.
fn hook_as_libvirt(
    lab: &Lab,
    domain: &str,
    op: &str,
    subop: &str,
    xml: &[u8],
) -> std::process::Output {
    use std::io::Write;
    let hookdir = lab.dir.path().join("hooks");
    let entry = hookdir.join("qemu");
    if !entry.exists() {
        std::fs::create_dir_all(&hookdir).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_virt-l3"), &entry).unwrap();
    }
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns])
        .arg(&entry)
        .args([domain, op, subop, "-"])
        .env("VIRT_L3_CONFIG", lab.config_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hook that fails before reading stdin (a bad configuration) closes it early:
    // libvirt ignores that EPIPE ("child closed stdin early"), and so does this test.
    if let Err(e) = child.stdin.take().unwrap().write_all(xml) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing the hook's stdin: {e}"
        );
    }
    child.wait_with_output().unwrap()
}

#[test]
fn hook_mode_prints_nothing_on_stdout_for_a_refused_and_an_accepted_domain() {
    require_root!();
    let lab = Lab::new(&["vnet41"]);
    // Refused: one line on stderr, naming virt-l3 (no `virt-l3: ` prefix), exit 1.
    for op in ["prepare", "start"] {
        let o = hook_as_libvirt(
            &lab,
            "badaddr",
            op,
            "begin",
            &fixture("invalid-addresses.xml"),
        );
        assert_eq!(o.status.code(), Some(1), "{op}: {}", stderr(&o));
        assert!(
            o.stdout.is_empty(),
            "{op}: {:?}",
            String::from_utf8_lossy(&o.stdout)
        );
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{op}: {err}");
        assert!(
            err.starts_with("virt-l3 refuses domain badaddr: "),
            "{op}: {err}"
        );
    }
    // Accepted: routed, nothing on stdout (stderr may carry log lines).
    for op in ["prepare", "start", "started", "stopped", "release"] {
        let subop = if op.ends_with('d') { "end" } else { "begin" };
        let o = hook_as_libvirt(&lab, "v4only", op, subop, &fixture("ipv4-only.xml"));
        assert!(o.status.success(), "{op}: {}", stderr(&o));
        assert!(
            o.stdout.is_empty(),
            "{op}: {:?}",
            String::from_utf8_lossy(&o.stdout)
        );
        if op == "started" {
            assert_eq!(lab.routes().len(), 2);
        }
    }
    assert!(lab.routes().is_empty());
    // No configuration: a start is refused, a stop passes; one line on stderr either way.
    lab.write_config("bridgez = [\"x\"]");
    for (op, subop, code) in [("prepare", "begin", 1), ("stopped", "end", 0)] {
        let o = hook_as_libvirt(&lab, "v4only", op, subop, &fixture("ipv4-only.xml"));
        assert_eq!(o.status.code(), Some(code), "{op}: {}", stderr(&o));
        assert!(
            o.stdout.is_empty(),
            "{op}: {:?}",
            String::from_utf8_lossy(&o.stdout)
        );
        let err = stderr(&o);
        assert!(
            err.starts_with("virt-l3: ") && err.contains("bridgez"),
            "{op}: {err}"
        );
    }
}

fn sys(lab: &Lab, path: &str) -> String {
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns, "cat", path])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn a_tap_joining_or_leaving_the_bridge_does_not_flush_the_neighbours() {
    require_root!();
    // A bridge whose MAC was never set takes its lowest port MAC; every change of
    // it flushes the neighbour table, permanent entries included.
    let lab = Lab::new(&["vnet3"]);
    let mac_before = sys(&lab, "/sys/class/net/cloudbr0/address");
    assert!(lab
        .hook("i-2-10-VM", "start", "begin", &fixture(DUAL))
        .status
        .success());
    assert_eq!(
        sys(&lab, "/sys/class/net/cloudbr0/addr_assign_type"),
        "3",
        "bridge MAC not pinned"
    );
    assert_eq!(sys(&lab, "/sys/class/net/cloudbr0/address"), mac_before);
    // Another VM's tap, with a lower MAC than any port, comes and goes.
    lab.ip(&[
        "link",
        "add",
        "vnet9",
        "address",
        "00:00:00:00:00:01",
        "type",
        "veth",
        "peer",
        "name",
        "vnet9p",
    ]);
    lab.ip(&["link", "set", "vnet9", "master", "cloudbr0", "up"]);
    lab.ip(&["link", "del", "vnet9"]);
    assert_eq!(lab.neighbours(), dual_neighbours());
    assert_eq!(sys(&lab, "/sys/class/net/cloudbr0/address"), mac_before);
}

#[test]
fn gateway_mac_is_given_to_the_bridge() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    lab.write_config("gateway_mac = \"02:00:00:00:00:01\"");
    assert!(lab
        .hook("i-2-10-VM", "start", "begin", &fixture(DUAL))
        .status
        .success());
    assert_eq!(
        sys(&lab, "/sys/class/net/cloudbr0/address"),
        "02:00:00:00:00:01"
    );
    assert_eq!(lab.neighbours(), dual_neighbours());
}

#[test]
fn plan_shows_what_start_would_do_as_text_and_json() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    let o = lab.virt_l3(&["plan", "--json"], &fixture(DUAL));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["domain"], "i-2-10-VM");
    assert_eq!(v["route_protocol"], 52);
    assert_eq!(v["routes"].as_array().unwrap().len(), 3);
    assert_eq!(v["neighbours"][0]["mac"], "52:02:45:76:d2:35");
    let o = lab.virt_l3(&["plan"], &fixture(DUAL));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("ip route replace 2001:678:3a4:8000::/56 via 2001:678:3a4:100::80 dev cloudbr0 onlink metric 100 proto 52"),
        "{text}"
    );
    assert!(lab.routes().is_empty(), "plan must not change the kernel");
    let o = lab.virt_l3(&["plan"], &fixture("invalid-addresses.xml"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("127.0.0.1"));
}

#[test]
fn status_reports_each_entry_and_fails_when_one_is_missing() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    assert!(lab
        .hook("i-2-10-VM", "start", "begin", &fixture(DUAL))
        .status
        .success());
    let o = lab.virt_l3(&["status", "--json"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let entries = v[0]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 6, "with the pinned link-local's neighbour");
    assert!(entries.iter().all(|e| e["present"] == true), "{v}");
    lab.ip(&[
        "route",
        "del",
        "2.57.57.30/32",
        "dev",
        "cloudbr0",
        "proto",
        "52",
    ]);
    let o = lab.virt_l3(&["status"], b"");
    assert_eq!(o.status.code(), Some(3));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("MISSING ENTRIES") && text.contains("[ ] route 2.57.57.30/32"),
        "{text}"
    );
}

#[test]
fn a_state_directory_others_can_write_stops_the_hook_with_one_line() {
    require_root!();
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new(&["vnet3"]);
    let xml = fixture(DUAL);
    let dir = lab.state_dir();
    std::fs::create_dir(&dir).unwrap();
    let expect = |o: &std::process::Output, mode: &str, uid: u32| {
        assert!(!o.status.success(), "a start must fail");
        assert!(o.stdout.is_empty());
        let err = stderr(o);
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        let p = dir.display();
        let sentence = format!(
            "state directory {p} is mode {mode}, owned by uid {uid}: it must be owned by root \
             and not writable by group or others (chmod 0700 {p}; chown root: {p})"
        );
        assert!(err.contains(&sentence), "{err}");
        assert!(err.contains("i-2-10-VM"), "{err}");
    };
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    expect(&lab.hook("i-2-10-VM", "start", "begin", &xml), "0777", 0);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let nobody = Some(nix::unistd::Uid::from_raw(65534));
    nix::unistd::chown(&dir, nobody, None).unwrap();
    expect(
        &lab.hook("i-2-10-VM", "start", "begin", &xml),
        "0700",
        65534,
    );
    assert!(lab.routes().is_empty(), "{:?}", lab.routes());
    assert!(lab.neighbours().is_empty(), "{:?}", lab.neighbours());
    assert!(lab.state_files().is_empty(), "{:?}", lab.state_files());
    // Fixed as the line says, the same start succeeds.
    nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    let o = lab.hook("i-2-10-VM", "start", "begin", &xml);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lab.routes(), dual_routes());
    let o = lab.hook("i-2-10-VM", "release", "end", &xml);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_state_directory_that_is_a_link_is_refused_not_followed() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    let xml = fixture(DUAL);
    let elsewhere = lab.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, lab.state_dir()).unwrap();
    let o = lab.hook("i-2-10-VM", "start", "begin", &xml);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    let needle = format!(
        "state directory {} is a symbolic link",
        lab.state_dir().display()
    );
    assert!(err.contains(&needle), "{err}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert!(lab.routes().is_empty(), "{:?}", lab.routes());
}

#[test]
fn an_address_on_link_on_or_the_next_hop_through_another_interface_is_refused() {
    require_root!();
    // On-link on eth0 (a connected /24): the upstream's neighbours live there.
    let lab = Lab::new(&["vnet41"]);
    lab.add_bridge("eth0");
    lab.ip(&["link", "set", "eth0", "up"]);
    lab.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);
    let o = lab.hook("v4only", "prepare", "begin", &fixture("ipv4-only.xml"));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("address 192.0.2.42 is on-link on eth0 (192.0.2.0/24)"),
        "{}",
        stderr(&o)
    );
    // The next hop of the host's default route through eth1.
    let lab = Lab::new(&["vnet41"]);
    lab.add_bridge("eth1");
    lab.ip(&["link", "set", "eth1", "up"]);
    lab.ip(&[
        "route",
        "add",
        "default",
        "via",
        "192.0.2.42",
        "dev",
        "eth1",
        "onlink",
    ]);
    let o = lab.hook("v4only", "prepare", "begin", &fixture("ipv4-only.xml"));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("address 192.0.2.42 is the next hop of a route via eth1"),
        "{}",
        stderr(&o)
    );
    // On-link on the routed bridge itself: that is virt-l3's business, accepted.
    let lab = Lab::new(&["vnet41"]);
    lab.ip(&["route", "add", "192.0.2.0/24", "dev", "cloudbr0"]);
    let o = lab.hook("v4only", "prepare", "begin", &fixture("ipv4-only.xml"));
    assert!(o.status.success(), "{}", stderr(&o));
}
