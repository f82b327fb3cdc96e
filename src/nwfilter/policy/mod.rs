//! The rules of one NIC's filter: what the guest may send and receive.
//!
//! Priorities (lower first; the first accept or drop decides):
//!
//! | priority | from the guest (`out`)                        | to the guest (`in`)                     |
//! |---------:|-----------------------------------------------|-----------------------------------------|
//! | -900     | drop a source MAC other than the NIC's        | drop a source other than the gateway MAC |
//! | -890     | drop VLAN tags (`virt-l3-no-vlan`)            | same                                    |
//! | -800     | drop RA, redirects, DHCP servers (`virt-l3-no-router`) | drop IPv6 redirects          |
//! | -700     | accept ARP from its MAC and IPv4 addresses    | accept ARP for its IPv4 addresses       |
//! | -690     | accept qemu's announce-self RARP              |                                         |
//! | -600     | accept neighbour discovery and DAD from its link-local and addresses | accept neighbour discovery |
//! | -590     | drop any other neighbour discovery            |                                         |
//! | -550     | drop other broadcast/multicast (`virt-l3-no-multicast`) |                               |
//! | -500     | accept IP from its addresses and prefixes, ICMPv6 from its link-local to fe80::1 | accept IP to them, ICMPv6 from fe80::1 to its link-local |
//! | 1000     | drop everything else (`virt-l3-no-other`)     | same                                    |
//!
//! The rows naming a template live in `nwfilter-templates/`; every other row is
//! one file here (`LAYERS`), and [`nic_filter`] puts them together in table order.

mod addresses;
mod announce;
mod arp;
mod header;
mod nd;
mod source_mac;
mod view;

use super::{nic_filter_name, Filter, Rule, TEMPLATES};
use crate::config::Config;
use crate::plan::Nic;
use view::NicView;

/// Layer 2: frames from another MAC than the NIC's, or to the guest from another than the gateway.
pub const PRIO_SOURCE_MAC: i16 = -900;
/// Template `virt-l3-no-vlan`: VLAN-tagged frames.
pub const PRIO_NO_VLAN: i16 = -890;
/// Template `virt-l3-no-router`: router advertisements, redirects, DHCP servers.
pub const PRIO_NO_ROUTER: i16 = -800;
/// ARP from and for the NIC's IPv4 addresses.
pub const PRIO_ARP: i16 = -700;
/// qemu's announce-self RARP after migration.
pub const PRIO_ANNOUNCE: i16 = -690;
/// IPv6 neighbour discovery and duplicate address detection.
pub const PRIO_ND: i16 = -600;
/// Neighbour discovery from any other source or to any other destination.
pub const PRIO_ND_OTHER: i16 = -590;
/// Template `virt-l3-no-multicast`: the remaining broadcast and multicast from the guest.
pub const PRIO_NO_MULTICAST: i16 = -550;
/// IP from and to the NIC's addresses and routed prefixes.
pub const PRIO_ADDRESSES: i16 = -500;
/// Template `virt-l3-no-other`: everything else.
pub const PRIO_NO_OTHER: i16 = 1000;

/// One row of the table written by this module: every rule it returns has its priority.
type Layer = fn(&NicView) -> Vec<Rule>;

/// The per-NIC layers, in priority order (the templates fill the gaps).
const LAYERS: [(i16, Layer); 6] = [
    (PRIO_SOURCE_MAC, source_mac::rules),
    (PRIO_ARP, arp::rules),
    (PRIO_ANNOUNCE, announce::rules),
    (PRIO_ND, nd::rules),
    (PRIO_ND_OTHER, nd::drop_others),
    (PRIO_ADDRESSES, addresses::rules),
];

/// The filter of one routed NIC, with its MAC and addresses written into the rules.
pub fn nic_filter(nic: &Nic, config: &Config) -> Filter {
    let view = NicView::new(nic, config);
    Filter {
        name: nic_filter_name(config, &nic.mac),
        header: header::lines(nic, view.gateway.as_deref()),
        references: TEMPLATES.iter().map(|t| t.name.to_string()).collect(),
        rules: LAYERS.iter().flat_map(|(_, layer)| layer(&view)).collect(),
    }
}

/// Written into the comment of a per-NIC filter's first rule, before the UUID of
/// the domain the filter was rendered for: libvirt keeps rule comments (not XML
/// comments), so `virsh nwfilter-dumpxml` shows whose filter it is, and
/// `nwfilter define` refuses to overwrite another domain's.
pub const OWNER_MARK: &str = "filter of domain ";

/// [`nic_filter`] recording the domain it belongs to (`owner`: its UUID).
pub fn nic_filter_of(owner: &str, nic: &Nic, config: &Config) -> Filter {
    let mut f = nic_filter(nic, config);
    if let Some(first) = f.rules.first_mut() {
        first.comment = format!("{} ({OWNER_MARK}{owner})", first.comment);
    }
    f.header.insert(
        1,
        format!("Domain: {owner} (nwfilter define refuses to overwrite another domain's filter)."),
    );
    f
}

/// The UUID of the domain a defined filter's XML says it belongs to, if it says so.
pub fn recorded_owner(xml: &str) -> Option<String> {
    let at = xml.find(OWNER_MARK)? + OWNER_MARK.len();
    let uuid = xml.get(at..at + 36)?;
    crate::plan::is_valid_uuid(uuid).then(|| uuid.to_string())
}

#[cfg(test)]
mod tests;
