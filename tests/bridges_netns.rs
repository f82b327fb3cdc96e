//! Bridges named by patterns (`bridges = ["cloudbr0", "brdr-*"]`): a bridge created
//! while `watch` runs gets its gateway addresses, its derived MAC and its VMs'
//! routes; the derived MAC is the same in namespaces that know nothing of each other.

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
mod common;

use std::process::Command;
use std::time::Duration;

use common::{fixture, stderr, within, Lab};
use virt_l3::plan::bridge_names::derived_mac;

const PATTERNS: &str =
    "bridges = [\"cloudbr0\", \"brdr-*\"]\ngateway_mac = \"derive\"\nmanage_gateways = true\n";

fn lab() -> Lab {
    let lab = Lab::new(&[]);
    std::fs::create_dir_all(lab.status_dir()).unwrap();
    lab.write_config(&format!(
        "libvirt_status_dir = {:?}\nrequire_nwfilter = false\nreconcile_grace_seconds = 0\n{PATTERNS}",
        lab.status_dir()
    ));
    lab
}

/// The dual-stack fixture with its NIC on `bridge`, running (status file).
fn set_running_on(lab: &Lab, bridge: &str) {
    let xml = String::from_utf8(fixture("dual-stack.xml"))
        .unwrap()
        .replace("bridge='cloudbr0'", &format!("bridge='{bridge}'"));
    lab.set_status("i-2-10-VM", xml.as_bytes(), "running", "booted");
}

fn mac_of(lab: &Lab, dev: &str) -> String {
    let out = lab.ip(&["-br", "link", "show", "dev", dev]);
    out.split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

fn addresses_of(lab: &Lab, dev: &str) -> String {
    lab.ip(&["addr", "show", "dev", dev])
}

#[test]
fn a_bridge_created_while_watch_runs_gets_gateways_mac_and_routes() {
    require_root!();
    let lab = lab();
    set_running_on(&lab, "brdr-5");
    let _w = lab.watch();
    std::thread::sleep(Duration::from_millis(300)); // subscribed, first pass done
    assert!(lab.routes().is_empty(), "{:?}", lab.routes());

    lab.add_bridge("brdr-5");
    lab.add_tap("vnet3", "brdr-5");
    let want = derived_mac("brdr-5").to_string();
    within(Duration::from_secs(2), "brdr-5 routed", || {
        let a = addresses_of(&lab, "brdr-5");
        a.contains("169.254.0.1/32")
            && a.contains("fe80::1/64")
            && mac_of(&lab, "brdr-5") == want
            && lab
                .routes()
                .iter()
                .any(|r| r.starts_with("2.57.57.30 dev brdr-5"))
    });
    // The IPv6 gateway skips duplicate address detection: never tentative.
    let a = addresses_of(&lab, "brdr-5");
    let gw6 = a.lines().find(|l| l.contains("fe80::1/64")).unwrap();
    assert!(gw6.contains("nodad") && !gw6.contains("tentative"), "{a}");
    let routes = lab.routes();
    assert!(
        routes
            .iter()
            .any(|r| r.starts_with("2001:678:3a4:100::80 dev brdr-5")),
        "{routes:?}"
    );
    // The guest's neighbours are on the new bridge too.
    assert!(
        lab.neighbours().iter().any(|n| n.contains("dev brdr-5")),
        "{:?}",
        lab.neighbours()
    );
    // The firewall's routed_bridges set holds the pattern (an interface
    // wildcard, in an interval set) and the VM's tap on the new bridge is accepted.
    let nft = |args: &[&str]| {
        let o = Command::new("ip")
            .args(["netns", "exec", &lab.ns, "nft"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    within(Duration::from_secs(2), "vnet3 accepted", || {
        nft(&["list", "set", "bridge", "virt_l3", "accepted_ports"]).contains("\"vnet3\"")
    });
    let set = nft(&["list", "set", "inet", "virt_l3", "routed_bridges"]);
    assert!(
        set.contains("flags interval") && set.contains("\"brdr-*\""),
        "{set}"
    );
    // A bridge no pattern matches is left alone.
    lab.add_bridge("other0");
    std::thread::sleep(Duration::from_millis(400));
    assert!(!addresses_of(&lab, "other0").contains("169.254.0.1"));

    // check covers the matching bridge.
    let o = lab.virt_l3(&["check", "--json"], b"");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("\"brdr-5\""), "{text}\n{}", stderr(&o));
}

#[test]
fn the_derived_mac_is_the_same_in_two_namespaces() {
    require_root!();
    let a = lab();
    let b = lab();
    for lab in [&a, &b] {
        lab.add_bridge("brdr-42");
        let o = lab.virt_l3(&["reconcile"], b"");
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let want = derived_mac("brdr-42").to_string();
    assert_eq!(mac_of(&a, "brdr-42"), want);
    assert_eq!(mac_of(&b, "brdr-42"), want);
    // Locally administered, unicast.
    assert!(want.starts_with("02:"), "{want}");
    // Another name, another MAC.
    a.add_bridge("brdr-43");
    let o = a.virt_l3(&["reconcile"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(mac_of(&a, "brdr-43"), want);
    assert_eq!(mac_of(&a, "brdr-43"), derived_mac("brdr-43").to_string());
}

#[test]
fn with_manage_gateways_the_hook_puts_the_gateways_on_a_new_bridge() {
    require_root!();
    let lab = lab();
    lab.add_bridge("brdr-9");
    lab.add_tap("vnet3", "brdr-9");
    let xml = String::from_utf8(fixture("dual-stack.xml"))
        .unwrap()
        .replace("bridge='cloudbr0'", "bridge='brdr-9'");
    let o = lab.hook("i-2-10-VM", "start", "begin", xml.as_bytes());
    assert!(o.status.success(), "{}", stderr(&o));
    let a = addresses_of(&lab, "brdr-9");
    assert!(
        a.contains("169.254.0.1/32") && a.contains("fe80::1/64"),
        "{a}"
    );
    assert_eq!(mac_of(&lab, "brdr-9"), derived_mac("brdr-9").to_string());
    assert!(
        lab.routes()
            .iter()
            .any(|r| r.starts_with("2.57.57.30 dev brdr-9")),
        "{:?}",
        lab.routes()
    );
}
