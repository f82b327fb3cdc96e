//! Reading the domain XML: which interfaces virt-l3 manages, and where each one's
//! addresses come from (per-NIC metadata, flat metadata, the filterref's
//! IP/IPV6 parameters), with the problems of the metadata itself.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::address::{family_name, Mac};
use crate::config::Config;
use crate::domain_xml::{AddressXml, DomainXml, FilterRef, InterfaceXml, NicMetadata, RouteXml};

use super::error::Collector;
use super::model::nic_filter_name;
use super::text::{label_value, shown};

/// Whether an interface's `filterref` names virt-l3's filter for that very NIC
/// (`<nwfilter_name>-<its MAC>`): another NIC's filter would bind it to the wrong
/// addresses.
pub fn carries_virt_l3_filter(nic: &InterfaceXml, config: &Config) -> bool {
    let Some(mac) = nic.mac.as_deref().and_then(|m| m.parse::<Mac>().ok()) else {
        return false;
    };
    nic.filterref
        .as_ref()
        .is_some_and(|f| f.filter == nic_filter_name(config, &mac))
}

/// Every address the domain XML claims anywhere (parsable ones), for host lookups
/// before planning.
pub fn candidate_addresses(dom: &DomainXml) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let meta = dom.nic_metadata.iter().flat_map(|n| n.addresses.iter());
    let flat = dom.flat_addresses.iter().map(|f| &f.address);
    for a in meta.chain(flat) {
        if let Some(ip) = a.address.as_deref().and_then(|t| t.trim().parse().ok()) {
            out.push(ip);
        }
    }
    for f in dom.interfaces.iter().filter_map(|i| i.filterref.as_ref()) {
        out.extend(filter_addresses(f));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether the domain XML routes whole prefixes to a NIC (they are checked
/// against every host address, not only their own).
pub fn has_routed_prefixes(dom: &DomainXml) -> bool {
    dom.nic_metadata.iter().any(|n| !n.routes.is_empty())
}

/// Whether virt-l3 has nothing to do for the domain: no interface on a routed
/// bridge and no network metadata (in either spelling of its namespace). The hook
/// then accepts the domain unread, and `plan`, `guest-config` and `nwfilter`
/// accept it with an empty plan (without requiring a `<uuid>`).
pub fn routes_nothing(dom: &DomainXml, config: &Config) -> bool {
    managed_interfaces(dom, config).next().is_none()
        && dom.nic_metadata.is_empty()
        && dom.flat_addresses.is_empty()
        && !dom.http_namespace_metadata
}

/// The interfaces virt-l3 manages: those on a routed bridge.
pub fn managed_interfaces<'a>(
    dom: &'a DomainXml,
    config: &'a Config,
) -> impl Iterator<Item = &'a InterfaceXml> + 'a {
    dom.interfaces.iter().filter(|i| {
        i.bridge
            .as_deref()
            .is_some_and(|b| config.is_routed_bridge(b))
    })
}

/// The valid MACs of the domain's interfaces.
pub(super) fn interface_macs(dom: &DomainXml) -> HashSet<Mac> {
    dom.interfaces
        .iter()
        .filter_map(|i| parse_mac(i.mac.as_deref()))
        .collect()
}

/// The per-NIC metadata blocks by MAC: the first block naming each MAC (a
/// second one is refused by [`check_metadata_blocks`]).
pub(super) type MetadataByMac<'a> = HashMap<Mac, &'a NicMetadata>;

/// Indexes the per-NIC metadata blocks by MAC, once per domain.
pub(super) fn metadata_by_mac(dom: &DomainXml) -> MetadataByMac<'_> {
    let mut out = HashMap::with_capacity(dom.nic_metadata.len());
    for m in &dom.nic_metadata {
        if let Some(mac) = parse_mac(m.mac.as_deref()) {
            out.entry(mac).or_insert(m);
        }
    }
    out
}

fn parse_mac(text: Option<&str>) -> Option<Mac> {
    text.and_then(|m| m.parse().ok())
}

/// The label of a managed interface's problems.
pub(super) fn nic_label(i: &InterfaceXml) -> String {
    format!(
        "NIC {} (interface {}) on {}",
        i.mac.as_deref().map_or("without MAC".into(), label_value),
        i.index,
        i.bridge.as_deref().map_or("-".into(), label_value)
    )
}

/// The problems of the per-NIC metadata blocks: each must name, by a valid MAC,
/// an interface of the domain, and no other block may name it.
pub(super) fn check_metadata_blocks(dom: &DomainXml, all_macs: &HashSet<Mac>, c: &mut Collector) {
    let mut named = HashSet::with_capacity(dom.nic_metadata.len());
    for (k, meta) in dom.nic_metadata.iter().enumerate() {
        c.nic = Some(format!("metadata <nic> block {k}"));
        match meta.mac.as_deref().map(|m| (m, m.parse::<Mac>())) {
            None => c.refuse("it has no mac attribute"),
            Some((m, Err(_))) => c.refuse(format!("its mac {} is not a MAC address", shown(m))),
            Some((m, Ok(mac))) => {
                if !all_macs.contains(&mac) {
                    c.refuse(format!("no interface of the domain has MAC {m}"));
                }
                if !named.insert(mac) {
                    c.refuse(format!("MAC {m} has more than one metadata block"));
                }
            }
        }
    }
}

/// Where a flat metadata address goes.
#[derive(Debug, PartialEq, Eq)]
enum FlatTarget {
    /// To these managed interfaces (indexes into the managed list).
    Nics(Vec<usize>),
    /// To an interface virt-l3 does not manage: not ours.
    NotOurs,
    /// Nowhere: the address is refused.
    Refused(String),
}

/// The flat metadata addresses of each managed interface (indexed like `managed`):
/// each must resolve to exactly one interface.
pub(super) fn assign_flat_addresses<'a>(
    dom: &'a DomainXml,
    config: &Config,
    managed: &[&InterfaceXml],
    all_macs: &HashSet<Mac>,
    c: &mut Collector,
) -> Vec<Vec<&'a AddressXml>> {
    let mut flat_for: Vec<Vec<&AddressXml>> = vec![Vec::new(); managed.len()];
    if dom.flat_addresses.is_empty() {
        return flat_for;
    }
    let index = ManagedIndex::new(managed);
    for (k, flat) in dom.flat_addresses.iter().enumerate() {
        c.nic = Some(format!(
            "flat metadata address {k} ({})",
            flat.address
                .address
                .as_deref()
                .map_or("-".into(), label_value)
        ));
        let target = match flat.mac.as_deref() {
            Some(m) => flat_target_by_mac(m, &index, all_macs),
            None => flat_target_by_bridge(flat.bridge.as_deref(), config, &index),
        };
        match target {
            FlatTarget::Nics(hits) => {
                for n in hits {
                    flat_for[n].push(&flat.address);
                }
            }
            FlatTarget::NotOurs => {}
            FlatTarget::Refused(why) => c.refuse(why),
        }
    }
    flat_for
}

/// The managed interfaces (indexes into the managed list) by MAC and by bridge,
/// built once so that each flat address is placed in constant time.
struct ManagedIndex<'a> {
    by_mac: HashMap<Mac, Vec<usize>>,
    by_bridge: HashMap<Option<&'a str>, Vec<usize>>,
    count: usize,
}

impl<'a> ManagedIndex<'a> {
    fn new(managed: &[&'a InterfaceXml]) -> Self {
        let mut by_mac: HashMap<Mac, Vec<usize>> = HashMap::new();
        let mut by_bridge: HashMap<Option<&str>, Vec<usize>> = HashMap::new();
        for (n, i) in managed.iter().enumerate() {
            if let Some(mac) = parse_mac(i.mac.as_deref()) {
                by_mac.entry(mac).or_default().push(n);
            }
            by_bridge.entry(i.bridge.as_deref()).or_default().push(n);
        }
        ManagedIndex {
            by_mac,
            by_bridge,
            count: managed.len(),
        }
    }
}

/// The managed interface a flat address with a `mac` attribute goes to.
fn flat_target_by_mac(m: &str, index: &ManagedIndex<'_>, all_macs: &HashSet<Mac>) -> FlatTarget {
    let Ok(mac) = m.parse::<Mac>() else {
        return FlatTarget::Refused(format!("its mac {} is not a MAC address", shown(m)));
    };
    if let Some(hits) = index.by_mac.get(&mac) {
        FlatTarget::Nics(hits.clone())
    } else if !all_macs.contains(&mac) {
        FlatTarget::Refused(format!("no interface of the domain has MAC {m}"))
    } else {
        FlatTarget::NotOurs
    }
}

/// The managed interface a flat address without a `mac` attribute goes to: the
/// only one on its bridge (or on any routed bridge, without a `bridge` attribute).
fn flat_target_by_bridge(
    bridge: Option<&str>,
    config: &Config,
    index: &ManagedIndex<'_>,
) -> FlatTarget {
    if bridge.is_some_and(|b| !config.is_routed_bridge(b)) {
        return FlatTarget::NotOurs; // addresses for a bridge virt-l3 does not route
    }
    let (count, first) = match bridge {
        None => (index.count, 0),
        Some(b) => index
            .by_bridge
            .get(&Some(b))
            .map_or((0, 0), |hits| (hits.len(), hits[0])),
    };
    match count {
        0 => FlatTarget::Refused(format!(
            "no interface of the domain is on bridge {}",
            bridge.unwrap_or("(any routed bridge)")
        )),
        1 => FlatTarget::Nics(vec![first]),
        _ => FlatTarget::Refused(format!(
            "{count} interfaces are on {}; add a mac attribute to say which one owns the address",
            bridge.unwrap_or("the routed bridges")
        )),
    }
}

/// A managed interface's address annotations and routed prefixes, from the first
/// source that has any.
#[derive(Debug, Default)]
pub(super) struct Sources {
    pub addresses: Vec<AddressXml>,
    /// The addresses are the filterref's IP/IPV6 parameters.
    pub from_filterref: bool,
    pub routes: Vec<RouteXml>,
    /// The NIC metadata's `<link-local address>`, whatever the address source.
    pub link_local: Option<String>,
}

/// Address sources, in precedence order: per-NIC metadata, flat metadata, filterref.
/// `meta`: the domain's per-NIC metadata blocks ([`metadata_by_mac`]).
pub(super) fn address_sources(
    meta: &MetadataByMac<'_>,
    iface: &InterfaceXml,
    mac: Mac,
    flat: &[&AddressXml],
) -> Sources {
    let meta = meta.get(&mac);
    let mut out = Sources {
        link_local: meta.and_then(|m| m.link_local.clone()),
        ..Sources::default()
    };
    if let Some(meta) = meta.filter(|m| !m.addresses.is_empty() || !m.routes.is_empty()) {
        out.addresses.extend(meta.addresses.iter().cloned());
        out.routes.extend(meta.routes.iter().cloned());
    } else if !flat.is_empty() {
        out.addresses.extend(flat.iter().map(|a| (*a).clone()));
    } else if let Some(f) = &iface.filterref {
        out.from_filterref = true;
        for (name, family) in [("IP", "ipv4"), ("IPV6", "ipv6")] {
            for v in f.values(name) {
                out.addresses.push(AddressXml {
                    address: Some(v.to_string()),
                    prefix: None,
                    family: Some(family.to_string()),
                });
            }
        }
    }
    out
}

/// The filterref's IP/IPV6 parameters that parse as addresses.
fn filter_addresses(f: &FilterRef) -> impl Iterator<Item = IpAddr> + '_ {
    f.values("IP")
        .chain(f.values("IPV6"))
        .filter_map(|v| v.trim().parse::<IpAddr>().ok())
}

/// The IP/IPV6 filter parameters are the third address source: when present
/// beside metadata (`addresses`), they must say the same.
pub(super) fn filterref_disagreement(f: &FilterRef, addresses: &[AddressXml]) -> Option<String> {
    let mut given: Vec<IpAddr> = filter_addresses(f).collect();
    let mut wanted: Vec<IpAddr> = addresses
        .iter()
        .filter_map(|a| a.address.as_deref()?.trim().parse().ok())
        .collect();
    given.sort();
    wanted.sort();
    if f.values("IP").chain(f.values("IPV6")).next().is_none() || given == wanted {
        return None;
    }
    let list = |v: &[IpAddr]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "the filterref's IP/IPV6 parameters ({}) differ from the metadata's addresses ({}); \
         run `virt-l3 nwfilter inject` on the XML",
        list(&given),
        list(&wanted)
    ))
}

/// Parses one address annotation, checking its family and prefix attributes.
pub(super) fn parse_address(a: &AddressXml) -> Result<IpAddr, String> {
    let Some(text) = a.address.as_deref() else {
        return Err("an <address> element has no address attribute".into());
    };
    let Ok(ip) = text.trim().parse::<IpAddr>() else {
        return Err(format!("address {} is not an IP address", shown(text)));
    };
    if let Some(fam) = a.family.as_deref() {
        if !fam.eq_ignore_ascii_case(family_name(ip)) {
            return Err(format!(
                "address {ip} is {}, but its family says {}",
                family_name(ip),
                shown(fam)
            ));
        }
    }
    if let Some(p) = a.prefix.as_deref() {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if !matches!(p.trim().parse::<u8>(), Ok(n) if n <= max) {
            return Err(format!(
                "address {ip} has an invalid prefix length {}",
                shown(p)
            ));
        }
    }
    Ok(ip)
}

#[cfg(test)]
mod tests;
