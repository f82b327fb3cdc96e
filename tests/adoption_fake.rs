//! Reconcile adopting many running domains at once (a host's boot), against
//! the fake kernel (`virt_l3::kernel::fake`): no root, no network namespace.
#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

mod common;

use std::path::PathBuf;

use common::fake::FakeLab;
use virt_l3::reconcile::Action;

const PROTO: u8 = 52;

type Lab = FakeLab;

impl FakeLab {
    fn new() -> Lab {
        Lab::with_taps(&[])
    }

    /// libvirt's status file `file`.xml of a running domain.
    fn running(&self, file: &str, domain: &str) {
        self.write_status(file, domain, "running", "booted");
    }

    /// The domain a claim names (`<uuid> <name>`).
    fn claim(&self, dir: &str, name: &str) -> String {
        std::fs::read_link(self.config.state_dir.join(dir).join(name))
            .unwrap()
            .into_os_string()
            .into_string()
            .unwrap()
    }
}

/// testdata/domains/dual-stack.xml (one NIC: an IPv4 and an IPv6 address and a
/// routed IPv6 /56) under another UUID, name and MAC.
fn dual_stack(uuid: &str, name: &str, mac: &str) -> String {
    let xml = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/domains/dual-stack.xml"),
    )
    .unwrap();
    xml.replace("6f5a3b2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b", uuid)
        .replace("i-2-10-VM", name)
        .replace("52:02:45:76:d2:35", mac)
        .replace("52024576d235", &mac.replace(':', ""))
}

/// A domain of one NIC with one IPv4 and one IPv6 address, the i-th of a host.
fn small(i: u32) -> (String, String) {
    let uuid = format!("{i:08x}-0000-4000-8000-{i:012x}");
    let mac = format!("52:54:00:00:{:02x}:{:02x}", i >> 8, i & 255);
    let filter = format!("virt-l3-nic-{}", mac.replace(':', ""));
    let xml = format!(
        r#"<domain type='kvm'><name>vm{i}</name><uuid>{uuid}</uuid>
<metadata><cloudstack:network xmlns:cloudstack="https://download.cloudstack.org/libvirt/network">
<cloudstack:nic mac="{mac}"><cloudstack:address address="10.64.{}.{}" family="ipv4"/><cloudstack:address address="2001:db8::{:x}" family="ipv6"/></cloudstack:nic>
</cloudstack:network></metadata>
<devices><interface type='bridge'><mac address='{mac}'/><source bridge='cloudbr0'/><target dev='vnet{i}'/><filterref filter='{filter}'/></interface></devices>
</domain>"#,
        i >> 8,
        i & 255,
        i + 1
    );
    (uuid, xml)
}

/// Two running domains without records naming the same addresses and prefix
/// (a copied VM, a stale status file): reconcile adopts the first (in the order
/// of the status files' names) and refuses the second, as the hook would refuse
/// its start; the claims stay the first one's.
#[test]
fn of_two_unrecorded_domains_with_one_address_only_the_first_is_adopted() {
    let lab = Lab::new();
    let a = "11111111-1111-4111-8111-111111111111";
    let b = "22222222-2222-4222-8222-222222222222";
    lab.running("a", &dual_stack(a, "vm-a", "52:54:00:aa:00:01"));
    lab.running("b", &dual_stack(b, "vm-b", "52:54:00:bb:00:02"));
    let r = lab.reconcile();
    let adopted: Vec<_> = r
        .changes
        .iter()
        .filter(|c| c.action == Action::Adopt)
        .filter_map(|c| c.domain.as_deref())
        .collect();
    assert_eq!(adopted, ["vm-a"], "{:?}", r.changes);
    let refused: Vec<_> = r
        .changes
        .iter()
        .filter(|c| c.action == Action::Refuse)
        .collect();
    assert_eq!(refused.len(), 1, "{:?}", r.changes);
    assert_eq!(refused[0].domain.as_deref(), Some("vm-b"));
    assert!(
        refused[0]
            .what
            .contains(&format!("already owned by domain vm-a ({a})")),
        "{}",
        refused[0].what
    );
    assert!(lab.state().record(a).unwrap().is_some());
    assert!(lab.state().record(b).unwrap().is_none());
    assert_eq!(lab.claim("owners", "2.57.57.30"), format!("{a} vm-a"));
    assert_eq!(
        lab.claim("prefixes", "2001:678:3a4:8000::_56"),
        format!("{a} vm-a")
    );
    // The next reconcile refuses the second again, against the claims on disk.
    let r = lab.reconcile();
    assert!(
        r.changes
            .iter()
            .any(|c| c.action == Action::Refuse && c.domain.as_deref() == Some("vm-b")),
        "{:?}",
        r.changes
    );
    assert!(!r.changes.iter().any(|c| c.action == Action::Adopt));
}

/// Two domains with one MAC and different addresses: the second is refused.
#[test]
fn of_two_unrecorded_domains_with_one_mac_only_the_first_is_adopted() {
    let lab = Lab::new();
    let (ua, a) = small(1);
    let (ub, b) = small(2);
    let b = b.replace("52:54:00:00:00:02", "52:54:00:00:00:01");
    let b = b.replace("520054000002", "520054000001");
    lab.running("a", &a);
    lab.running("b", &b);
    let r = lab.reconcile();
    assert!(
        lab.state().record(&ua).unwrap().is_some(),
        "{:?}",
        r.changes
    );
    assert!(
        lab.state().record(&ub).unwrap().is_none(),
        "{:?}",
        r.changes
    );
    assert!(
        r.changes.iter().any(|c| c.action == Action::Refuse
            && c.domain.as_deref() == Some("vm2")
            && c.what.contains("MAC 52:54:00:00:00:01 is already used")),
        "{:?}",
        r.changes
    );
}

/// A host's boot: many running domains (parsed on several threads; records
/// written in two chunks, claims on their own thread), no records. Every one
/// is adopted, with its record, its claims and its entries; the next
/// reconcile has nothing to do.
#[test]
fn many_running_domains_are_all_adopted_with_their_records_and_claims() {
    let lab = Lab::new();
    let n = 1100;
    for i in 0..n {
        lab.running(&format!("vm{i}"), &small(i).1);
    }
    let r = lab.reconcile();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let adopted = r
        .changes
        .iter()
        .filter(|c| c.action == Action::Adopt)
        .count();
    assert_eq!(adopted, n as usize);
    assert_eq!(lab.state().records().unwrap().len(), n as usize);
    for i in [0, 599, 1023, 1024, 1099] {
        let (uuid, _) = small(i);
        let owner = format!("{uuid} vm{i}");
        assert_eq!(
            lab.claim("owners", &format!("10.64.{}.{}", i >> 8, i & 255)),
            owner
        );
        assert_eq!(
            lab.claim("owners", &format!("2001:db8::{:x}", i + 1)),
            owner
        );
        assert_eq!(
            lab.claim(
                "macs",
                &format!("52:54:00:00:{:02x}:{:02x}", i >> 8, i & 255)
            ),
            owner
        );
    }
    let routes = lab.kernel.route_lines(PROTO);
    assert_eq!(routes.len(), 2 * n as usize, "{routes:?}");
    let r = lab.reconcile();
    assert!(r.changes.is_empty(), "{:?}", r.changes);
}
