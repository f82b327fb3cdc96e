//! Changes to running domains against the real kernel: libvirt's status file
//! rewritten (a NIC attached or detached, an address added or removed, another
//! domain's address claimed) with `watch` running, and `virt-l3 refresh`.

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
mod common;

use std::time::Duration;

use common::{stderr, within, Lab, Watcher};

const A: &str = "vm-a";
const A_UUID: &str = "0a0a0a0a-1111-4222-8333-444455556666";
const B: &str = "vm-b";
const B_UUID: &str = "0b0b0b0b-1111-4222-8333-444455556666";
const MAC1: &str = "52:54:00:00:0a:01";
const MAC2: &str = "52:54:00:00:0a:02";
const MAC_B: &str = "52:54:00:00:0b:01";

/// The domain XML with these NICs on cloudbr0: (MAC, tap, addresses), each
/// with virt-l3's filter.
fn domain(name: &str, uuid: &str, nics: &[(&str, &str, &[&str])]) -> Vec<u8> {
    let mut meta = String::new();
    let mut devices = String::new();
    for (mac, tap, addresses) in nics {
        meta.push_str(&format!("<cs:nic mac='{mac}'>"));
        for a in addresses.iter() {
            meta.push_str(&format!(
                "<cs:address address='{a}' prefix='32' family='ipv4'/>"
            ));
        }
        meta.push_str("</cs:nic>");
        devices.push_str(&format!(
            "<interface type='bridge'><mac address='{mac}'/><source bridge='cloudbr0'/>\
             <target dev='{tap}'/><model type='virtio'/>\
             <filterref filter='virt-l3-nic-{}'/></interface>",
            mac.replace(':', "")
        ));
    }
    format!(
        "<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid><metadata>\
         <cs:network xmlns:cs='https://download.cloudstack.org/libvirt/network'>{meta}</cs:network>\
         </metadata><devices>{devices}</devices></domain>"
    )
    .into_bytes()
}

/// A lab whose config points at its own status dir; A runs with one NIC
/// (192.0.2.10) and B with 192.0.2.99, both started by their hooks.
fn lab() -> Lab {
    let lab = Lab::new(&["vnet1", "vnet9"]);
    std::fs::create_dir_all(lab.status_dir()).unwrap();
    lab.write_config(&format!(
        "libvirt_status_dir = {:?}\nreconcile_grace_seconds = 0\n",
        lab.status_dir()
    ));
    for (name, xml) in [
        (A, domain(A, A_UUID, &[(MAC1, "vnet1", &["192.0.2.10"])])),
        (B, domain(B, B_UUID, &[(MAC_B, "vnet9", &["192.0.2.99"])])),
    ] {
        lab.set_status(name, &xml, "running", "booted");
        let o = lab.hook(name, "start", "begin", &xml);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    lab
}

/// The routed destinations (`192.0.2.10`), sorted.
fn routed(lab: &Lab) -> Vec<String> {
    lab.routes()
        .iter()
        .map(|r| r.split(' ').next().unwrap().to_string())
        .collect()
}

fn has_neighbour(lab: &Lab, address: &str) -> bool {
    lab.neighbours()
        .iter()
        .any(|n| n.starts_with(&format!("{address} ")))
}

/// `watch` started, once subscribed and through its first reconcile.
fn watch(lab: &Lab) -> Watcher {
    let w = lab.watch();
    std::thread::sleep(Duration::from_millis(300)); // subscribed, first reconcile done
    w
}

fn status(lab: &Lab) -> String {
    String::from_utf8_lossy(&lab.virt_l3(&["status"], b"").stdout).into_owned()
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn watch_applies_attach_detach_and_address_changes_within_a_second() {
    require_root!();
    let lab = lab();
    let _w = watch(&lab);
    assert_eq!(routed(&lab), ["192.0.2.10", "192.0.2.99"]);

    // attach-device --live: the tap joins the bridge, libvirt rewrites the status file.
    lab.add_tap("vnet2", "cloudbr0");
    let two = [
        (MAC1, "vnet1", &["192.0.2.10"][..]),
        (MAC2, "vnet2", &["192.0.2.20"][..]),
    ];
    lab.set_status(A, &domain(A, A_UUID, &two), "running", "booted");
    within(SECOND, "the attached NIC routed", || {
        routed(&lab) == ["192.0.2.10", "192.0.2.20", "192.0.2.99"]
            && has_neighbour(&lab, "192.0.2.20")
            && lab.isolated("vnet2")
    });

    // metadata --live: a secondary address on the first NIC, then gone again.
    let more = [
        (MAC1, "vnet1", &["192.0.2.10", "192.0.2.11"][..]),
        (MAC2, "vnet2", &["192.0.2.20"][..]),
    ];
    lab.set_status(A, &domain(A, A_UUID, &more), "running", "booted");
    within(SECOND, "the added address routed", || {
        routed(&lab).contains(&"192.0.2.11".to_string()) && has_neighbour(&lab, "192.0.2.11")
    });
    lab.set_status(A, &domain(A, A_UUID, &two), "running", "booted");
    within(SECOND, "the removed address unrouted", || {
        !routed(&lab).contains(&"192.0.2.11".to_string()) && !has_neighbour(&lab, "192.0.2.11")
    });

    // detach-device --live: the NIC's routes and neighbours go.
    let one = [(MAC1, "vnet1", &["192.0.2.10"][..])];
    lab.set_status(A, &domain(A, A_UUID, &one), "running", "booted");
    lab.ip(&["link", "del", "vnet2"]);
    within(SECOND, "the detached NIC unrouted", || {
        routed(&lab) == ["192.0.2.10", "192.0.2.99"] && !has_neighbour(&lab, "192.0.2.20")
    });
}

#[test]
fn watch_refuses_another_domains_address_changing_nothing_and_status_says_so() {
    require_root!();
    let lab = lab();
    let _w = watch(&lab);
    let routes = lab.routes();
    let neighbours = lab.neighbours();
    let stolen = [(MAC1, "vnet1", &["192.0.2.10", "192.0.2.99"][..])];
    lab.set_status(A, &domain(A, A_UUID, &stolen), "running", "booted");
    within(SECOND, "the refusal shown by status", || {
        status(&lab).contains("REFUSED")
    });
    let s = status(&lab);
    assert!(
        s.contains("192.0.2.99 is already owned by domain vm-b"),
        "{s}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lab.routes(), routes);
    assert_eq!(lab.neighbours(), neighbours);
    // The cloud takes it back: the refusal goes.
    let one = [(MAC1, "vnet1", &["192.0.2.10"][..])];
    lab.set_status(A, &domain(A, A_UUID, &one), "running", "booted");
    within(SECOND, "the refusal cleared", || {
        !status(&lab).contains("REFUSED")
    });
}

#[test]
fn refresh_does_the_same_synchronously() {
    require_root!();
    let lab = lab();
    lab.add_tap("vnet2", "cloudbr0");
    let two = [
        (MAC1, "vnet1", &["192.0.2.10", "192.0.2.11"][..]),
        (MAC2, "vnet2", &["192.0.2.20"][..]),
    ];
    lab.set_status(A, &domain(A, A_UUID, &two), "running", "booted");
    let o = lab.virt_l3(&["refresh", A], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        routed(&lab),
        ["192.0.2.10", "192.0.2.11", "192.0.2.20", "192.0.2.99"]
    );
    assert!(lab.isolated("vnet2"));
    // Nothing to do: exit 0 again; by UUID too.
    let o = lab.virt_l3(&["refresh", A_UUID], b"");
    assert!(o.status.success(), "{}", stderr(&o));

    // Refused: exit 1, one line naming the domain and the reason; nothing changed.
    let routes = lab.routes();
    let stolen = [(MAC1, "vnet1", &["192.0.2.10", "192.0.2.99"][..])];
    lab.set_status(A, &domain(A, A_UUID, &stolen), "running", "booted");
    let o = lab.virt_l3(&["refresh", A], b"");
    assert_eq!(o.status.code(), Some(1));
    let line = stderr(&o);
    assert_eq!(line.trim_end().lines().count(), 1, "{line}");
    assert!(
        line.contains("vm-a") && line.contains("192.0.2.99"),
        "{line}"
    );
    assert_eq!(lab.routes(), routes);
    assert!(status(&lab).contains("REFUSED"));

    // Detached: unrouted.
    let one = [(MAC1, "vnet1", &["192.0.2.10"][..])];
    lab.set_status(A, &domain(A, A_UUID, &one), "running", "booted");
    let o = lab.virt_l3(&["refresh", A], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(routed(&lab), ["192.0.2.10", "192.0.2.99"]);
    assert!(!status(&lab).contains("REFUSED"));

    // A domain that does not run: exit 1, named.
    let o = lab.virt_l3(&["refresh", "nope"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}
