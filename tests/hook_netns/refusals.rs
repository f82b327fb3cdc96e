//! What the hook refuses, with no effect: invalid or hostile input, another domain's
//! address or MAC, the gateway's or the hypervisor's addresses, an unfiltered NIC.

use super::*;

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
