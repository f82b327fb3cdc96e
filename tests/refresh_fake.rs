//! `refresh` against the fake kernel: a running domain's status XML changes
//! (a NIC attached or detached, an address added or removed, another domain's
//! address claimed) and the record and kernel follow, or nothing changes.
#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

mod common;

use common::fake::FakeLab;
use virt_l3::refresh::{refresh, RefreshError, Refreshed};
use virt_l3::status::status;

const PROTO: u8 = 52;
const A: &str = "vm-a";
const A_UUID: &str = "0a0a0a0a-1111-4222-8333-444455556666";
const B: &str = "vm-b";
const B_UUID: &str = "0b0b0b0b-1111-4222-8333-444455556666";
const MAC1: &str = "52:54:00:00:0a:01";
const MAC2: &str = "52:54:00:00:0a:02";
const MAC_B: &str = "52:54:00:00:0b:01";

/// One NIC: MAC, tap, whether it carries virt-l3's filter, its addresses.
struct Nic<'a> {
    mac: &'a str,
    tap: &'a str,
    filtered: bool,
    addresses: &'a [&'a str],
}

fn nic<'a>(mac: &'a str, tap: &'a str, addresses: &'a [&'a str]) -> Nic<'a> {
    Nic {
        mac,
        tap,
        filtered: true,
        addresses,
    }
}

/// A domain's libvirt status file (`<domstatus>` around the live XML).
fn status_xml(name: &str, uuid: &str, nics: &[Nic]) -> String {
    let mut meta = String::new();
    let mut devices = String::new();
    for n in nics {
        meta.push_str(&format!("<cs:nic mac='{}'>", n.mac));
        for a in n.addresses {
            let family = if a.contains(':') { "ipv6" } else { "ipv4" };
            let len = if a.contains(':') { 128 } else { 32 };
            meta.push_str(&format!(
                "<cs:address address='{a}' prefix='{len}' family='{family}'/>"
            ));
        }
        meta.push_str("</cs:nic>");
        let filter = if n.filtered {
            format!(
                "<filterref filter='virt-l3-nic-{}'/>",
                n.mac.replace(':', "")
            )
        } else {
            String::new()
        };
        devices.push_str(&format!(
            "<interface type='bridge'><mac address='{}'/><source bridge='cloudbr0'/>\
             <target dev='{}'/><model type='virtio'/>{filter}</interface>",
            n.mac, n.tap
        ));
    }
    format!(
        "<domstatus state='running' reason='booted' pid='4242'>\n<domain type='qemu'>\
         <name>{name}</name><uuid>{uuid}</uuid><metadata>\
         <cs:network xmlns:cs='https://download.cloudstack.org/libvirt/network'>{meta}</cs:network>\
         </metadata><devices>{devices}</devices></domain>\n</domstatus>\n"
    )
}

/// The fake host with taps vnet1, vnet2 and vnet9, and a runtime for its calls.
struct Lab {
    host: FakeLab,
    rt: tokio::runtime::Runtime,
}

impl std::ops::Deref for Lab {
    type Target = FakeLab;
    fn deref(&self) -> &FakeLab {
        &self.host
    }
}

impl std::ops::DerefMut for Lab {
    fn deref_mut(&mut self) -> &mut FakeLab {
        &mut self.host
    }
}

impl Lab {
    fn new() -> Lab {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        Lab {
            host: FakeLab::with_taps(&["vnet1", "vnet2", "vnet9"]),
            rt,
        }
    }

    fn set(&self, name: &str, uuid: &str, nics: &[Nic]) {
        let path = self.config.libvirt_status_dir.join(format!("{name}.xml"));
        std::fs::write(path, status_xml(name, uuid, nics)).unwrap();
    }

    fn refresh(&self, target: &str) -> Result<Refreshed, RefreshError> {
        let mut k = self.kernel.clone();
        self.rt.block_on(refresh(&mut k, &self.config, target))
    }

    /// The routed addresses (`ADDRESS/LEN`), sorted.
    fn routes(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .kernel
            .route_lines(PROTO)
            .iter()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect();
        v.sort();
        v
    }

    fn neighbours(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .kernel
            .snapshot()
            .neighbours
            .iter()
            .filter(|n| n.protocol == PROTO)
            .map(|n| {
                format!(
                    "{} {}",
                    n.address,
                    n.mac.map(|m| m.to_string()).unwrap_or_default()
                )
            })
            .collect();
        v.sort();
        v
    }

    fn claims(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.config.state_dir.join(sub))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn isolated(&self, tap: &str) -> Option<bool> {
        self.kernel.snapshot().links[tap].isolated
    }

    fn refusal(&self, uuid: &str) -> Option<String> {
        let mut k = self.kernel.clone();
        let report = self
            .rt
            .block_on(status(&mut k, &self.state(), &self.config.bridges))
            .unwrap();
        report
            .into_iter()
            .find(|d| d.uuid == uuid)
            .and_then(|d| d.refused)
    }
}

#[test]
fn a_first_refresh_routes_a_running_domain_and_a_second_has_nothing_to_do() {
    let lab = Lab::new();
    lab.set(A, A_UUID, &[nic(MAC1, "vnet1", &["192.0.2.10"])]);
    assert_eq!(lab.refresh(A).unwrap(), Refreshed::Routed);
    assert_eq!(lab.routes(), ["192.0.2.10/32"]);
    assert_eq!(lab.neighbours(), [format!("192.0.2.10 {MAC1}")]);
    assert_eq!(lab.refresh(A_UUID).unwrap(), Refreshed::Unchanged);
    let rec = lab.state().record(A_UUID).unwrap().unwrap();
    assert_eq!((rec.metric, rec.standby), (100, false));
}

#[test]
fn an_attached_nic_is_routed_isolated_and_claimed() {
    let lab = Lab::new();
    lab.set(A, A_UUID, &[nic(MAC1, "vnet1", &["192.0.2.10"])]);
    lab.refresh(A).unwrap();
    assert_eq!(lab.isolated("vnet2"), Some(false));
    lab.set(
        A,
        A_UUID,
        &[
            nic(MAC1, "vnet1", &["192.0.2.10"]),
            nic(MAC2, "vnet2", &["192.0.2.20"]),
        ],
    );
    assert_eq!(lab.refresh(A).unwrap(), Refreshed::Routed);
    assert_eq!(lab.routes(), ["192.0.2.10/32", "192.0.2.20/32"]);
    assert_eq!(
        lab.neighbours(),
        [format!("192.0.2.10 {MAC1}"), format!("192.0.2.20 {MAC2}")]
    );
    assert_eq!(lab.isolated("vnet2"), Some(true));
    assert_eq!(lab.claims("owners"), ["192.0.2.10", "192.0.2.20"]);
    assert_eq!(lab.claims("macs"), [MAC1, MAC2]);
    assert_eq!(
        lab.state().record(A_UUID).unwrap().unwrap().plan.nics.len(),
        2
    );
}

#[test]
fn a_detached_nic_is_unrouted_and_released_even_while_its_metadata_stays() {
    let lab = Lab::new();
    let both = [
        nic(MAC1, "vnet1", &["192.0.2.10"]),
        nic(MAC2, "vnet2", &["192.0.2.20"]),
    ];
    lab.set(A, A_UUID, &both);
    lab.refresh(A).unwrap();
    assert_eq!(lab.routes(), ["192.0.2.10/32", "192.0.2.20/32"]);
    // libvirt removed the interface; the cloud has not yet removed its metadata.
    let mut xml = status_xml(A, A_UUID, &both);
    let start = xml
        .find("<interface type='bridge'><mac address='52:54:00:00:0a:02'")
        .unwrap();
    let end = start + xml[start..].find("</interface>").unwrap() + "</interface>".len();
    xml.replace_range(start..end, "");
    std::fs::write(lab.config.libvirt_status_dir.join(format!("{A}.xml")), xml).unwrap();
    assert_eq!(lab.refresh(A).unwrap(), Refreshed::Routed);
    assert_eq!(lab.routes(), ["192.0.2.10/32"]);
    assert_eq!(lab.neighbours(), [format!("192.0.2.10 {MAC1}")]);
    assert_eq!(lab.claims("owners"), ["192.0.2.10"]);
    assert_eq!(lab.claims("macs"), [MAC1]);
    // And the metadata going too changes nothing more.
    lab.set(A, A_UUID, &[nic(MAC1, "vnet1", &["192.0.2.10"])]);
    assert_eq!(lab.refresh(A).unwrap(), Refreshed::Unchanged);
    // The last routed NIC detached: everything goes, the record too.
    lab.set(A, A_UUID, &[]);
    assert_eq!(lab.refresh(A).unwrap(), Refreshed::Unrouted);
    assert!(lab.routes().is_empty());
    assert!(lab.neighbours().is_empty());
    assert!(lab.state().record(A_UUID).unwrap().is_none());
    assert!(lab.claims("owners").is_empty());
}

#[test]
fn an_address_added_then_removed_is_routed_then_unrouted() {
    let lab = Lab::new();
    lab.set(A, A_UUID, &[nic(MAC1, "vnet1", &["192.0.2.10"])]);
    lab.refresh(A).unwrap();
    lab.set(
        A,
        A_UUID,
        &[nic(
            MAC1,
            "vnet1",
            &["192.0.2.10", "192.0.2.11", "2001:db8::11"],
        )],
    );
    assert_eq!(lab.refresh(A).unwrap(), Refreshed::Routed);
    assert_eq!(
        lab.routes(),
        ["192.0.2.10/32", "192.0.2.11/32", "2001:db8::11/128"]
    );
    assert_eq!(
        lab.claims("owners"),
        ["192.0.2.10", "192.0.2.11", "2001:db8::11"]
    );
    lab.set(A, A_UUID, &[nic(MAC1, "vnet1", &["192.0.2.10"])]);
    assert_eq!(lab.refresh(A).unwrap(), Refreshed::Routed);
    assert_eq!(lab.routes(), ["192.0.2.10/32"]);
    assert_eq!(lab.neighbours(), [format!("192.0.2.10 {MAC1}")]);
    assert_eq!(lab.claims("owners"), ["192.0.2.10"]);
}

#[test]
fn another_domains_address_is_refused_changing_nothing_until_given_up() {
    let lab = Lab::new();
    lab.set(B, B_UUID, &[nic(MAC_B, "vnet9", &["192.0.2.99"])]);
    lab.refresh(B).unwrap();
    lab.set(A, A_UUID, &[nic(MAC1, "vnet1", &["192.0.2.10"])]);
    lab.refresh(A).unwrap();
    let record = lab.state().record(A_UUID).unwrap().unwrap();
    let log = lab.kernel.snapshot().log.len();
    // A claims B's address, and attaches a NIC in the same change.
    lab.set(
        A,
        A_UUID,
        &[
            nic(MAC1, "vnet1", &["192.0.2.10", "192.0.2.99"]),
            nic(MAC2, "vnet2", &["192.0.2.20"]),
        ],
    );
    let err = lab.refresh(A).unwrap_err();
    assert!(matches!(err, RefreshError::Refused { .. }), "{err:?}");
    let line = err.to_string();
    assert!(line.contains(A) && line.contains("192.0.2.99"), "{line}");
    assert!(!line.contains('\n'), "{line}");
    // Nothing changed: kernel, record, claims.
    assert_eq!(lab.kernel.snapshot().log.len(), log);
    assert_eq!(lab.routes(), ["192.0.2.10/32", "192.0.2.99/32"]);
    assert_eq!(lab.state().record(A_UUID).unwrap().unwrap(), record);
    assert_eq!(lab.claims("owners"), ["192.0.2.10", "192.0.2.99"]);
    assert_eq!(lab.isolated("vnet2"), Some(false));
    // status tells, for A only.
    let why = lab.refusal(A_UUID).unwrap();
    assert!(why.contains("192.0.2.99"), "{why}");
    assert!(lab.refusal(B_UUID).is_none());
    // Refused again (the same reason): still noted.
    assert!(lab.refresh(A).is_err());
    assert!(lab.refusal(A_UUID).is_some());
    // The cloud gives up the stolen address: the NIC goes in, the note goes.
    lab.set(
        A,
        A_UUID,
        &[
            nic(MAC1, "vnet1", &["192.0.2.10"]),
            nic(MAC2, "vnet2", &["192.0.2.20"]),
        ],
    );
    assert_eq!(lab.refresh(A).unwrap(), Refreshed::Routed);
    assert_eq!(
        lab.routes(),
        ["192.0.2.10/32", "192.0.2.20/32", "192.0.2.99/32"]
    );
    assert!(lab.refusal(A_UUID).is_none());
}

#[test]
fn an_attached_nic_without_the_filter_is_refused() {
    let lab = Lab::new();
    lab.set(A, A_UUID, &[nic(MAC1, "vnet1", &["192.0.2.10"])]);
    lab.refresh(A).unwrap();
    let unfiltered = Nic {
        filtered: false,
        ..nic(MAC2, "vnet2", &["192.0.2.20"])
    };
    lab.set(
        A,
        A_UUID,
        &[nic(MAC1, "vnet1", &["192.0.2.10"]), unfiltered],
    );
    let err = lab.refresh(A).unwrap_err().to_string();
    assert!(err.contains(MAC2), "{err}");
    assert_eq!(lab.routes(), ["192.0.2.10/32"]);
    assert!(lab.refusal(A_UUID).is_some());
}

#[test]
fn a_refusal_note_goes_when_the_domain_stops_and_stopping_domains_are_left_alone() {
    let lab = Lab::new();
    lab.set(B, B_UUID, &[nic(MAC_B, "vnet9", &["192.0.2.99"])]);
    lab.refresh(B).unwrap();
    lab.set(A, A_UUID, &[nic(MAC1, "vnet1", &["192.0.2.10"])]);
    lab.refresh(A).unwrap();
    lab.set(A, A_UUID, &[nic(MAC1, "vnet1", &["192.0.2.99"])]);
    assert!(lab.refresh(A).is_err());
    assert!(lab.refusal(A_UUID).is_some());
    // `stopped` ran: a rewrite of its status file does not bring anything back.
    {
        let state = lab.state();
        let _lock = state.lock().unwrap();
        state.mark_stopping(A_UUID).unwrap();
        let rec = state.record(A_UUID).unwrap().unwrap();
        state.forget(&rec).unwrap();
    }
    assert!(lab.refusal(A_UUID).is_none());
    lab.set(A, A_UUID, &[nic(MAC1, "vnet1", &["192.0.2.10"])]);
    assert_eq!(lab.refresh(A).unwrap(), Refreshed::Stopping);
    assert!(lab.state().record(A_UUID).unwrap().is_none());
}

#[test]
fn a_domain_that_does_not_run_is_named() {
    let lab = Lab::new();
    let err = lab.refresh("nope").unwrap_err().to_string();
    assert!(err.contains("no running domain nope"), "{err}");
}

#[test]
fn reconcile_drops_the_refusal_note_of_a_domain_gone_without_its_hooks() {
    let lab = Lab::new();
    lab.set(B, B_UUID, &[nic(MAC_B, "vnet9", &["192.0.2.99"])]);
    lab.refresh(B).unwrap();
    // A's first routed NIC claims B's address: refused, no record.
    lab.set(A, A_UUID, &[nic(MAC1, "vnet1", &["192.0.2.99"])]);
    assert!(lab.refresh(A).is_err());
    assert!(lab.refusal(A_UUID).is_some());
    let mut k = lab.kernel.clone();
    lab.rt
        .block_on(virt_l3::reconcile::reconcile(&mut k, &lab.config, false))
        .unwrap();
    assert!(lab.refusal(A_UUID).is_some(), "A still runs");
    std::fs::remove_file(lab.config.libvirt_status_dir.join(format!("{A}.xml"))).unwrap();
    lab.rt
        .block_on(virt_l3::reconcile::reconcile(&mut k, &lab.config, false))
        .unwrap();
    assert!(lab.refusal(A_UUID).is_none());
    assert_eq!(lab.routes(), ["192.0.2.99/32"]);
}

#[test]
fn with_manage_gateways_a_refresh_puts_the_gateways_on_the_bridge_as_the_hook_does() {
    let mut lab = Lab::new();
    lab.set(A, A_UUID, &[nic(MAC1, "vnet1", &["192.0.2.10"])]);
    lab.refresh(A).unwrap();
    let host = |lab: &Lab| lab.kernel.snapshot().host_addresses;
    assert!(host(&lab).is_empty(), "off by default: {:?}", host(&lab));
    lab.config.manage_gateways = true;
    lab.set(
        A,
        A_UUID,
        &[nic(MAC1, "vnet1", &["192.0.2.10", "192.0.2.11"])],
    );
    assert_eq!(lab.refresh(A).unwrap(), Refreshed::Routed);
    assert_eq!(host(&lab), lab.config.gateways);
    assert_eq!(lab.routes(), ["192.0.2.10/32", "192.0.2.11/32"]);
}
