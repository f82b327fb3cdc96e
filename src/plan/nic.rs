//! Planning one managed interface: its MAC, its address sources, and the rules
//! applied to each of its addresses and routed prefixes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::address::Mac;
use crate::domain_xml::{AddressXml, InterfaceXml, RouteXml};

use super::error::Collector;
use super::facts::Checks;
use super::link_local;
use super::metadata::{address_sources, filterref_disagreement, parse_address, MetadataByMac};
use super::model::{Nic, RoutedPrefix};
use super::rules::{self, Context};

/// What the domain's NICs planned so far have taken.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub addresses: BTreeSet<IpAddr>,
    pub macs: BTreeSet<Mac>,
}

/// The NIC planned from a managed interface, with what it accepted; `None` when
/// its MAC is unusable. Problems go to `c`, under its current label.
pub(super) fn plan_nic(
    iface: &InterfaceXml,
    meta: &MetadataByMac<'_>,
    flat: &[&AddressXml],
    ctx: &Context<'_>,
    checks: Checks,
    seen: &mut Seen,
    c: &mut Collector,
) -> Option<Nic> {
    let mac = match rules::nic_mac(iface.mac.as_deref()) {
        Ok(mac) => mac,
        Err(why) => {
            c.refuse(why);
            return None;
        }
    };
    c.refused(rules::duplicate_mac(mac, &mut seen.macs));
    c.refused(rules::mac_problem(mac, ctx));
    if checks.require_filter {
        c.refused(rules::missing_filter(iface, ctx.config, &mac));
    }
    let sources = address_sources(meta, iface, mac, flat);
    let (addresses, parsed) = accept_addresses(&sources.addresses, ctx, &mut seen.addresses, c);
    if let (Some(f), false) = (&iface.filterref, sources.from_filterref) {
        c.refused(filterref_disagreement(f, &sources.addresses));
    }
    if sources.addresses.is_empty() {
        c.refuse(
            "the interface is on a routed bridge but has no address (no metadata and no IP/IPV6 filter parameter)",
        );
    }
    let routed_prefixes = accept_prefixes(&sources.routes, &addresses, &parsed, ctx, c);
    let has_ipv6 = parsed.iter().any(IpAddr::is_ipv6);
    let written = sources.link_local.as_deref();
    let link_local =
        link_local::pinned(ctx.config.link_local, mac, written, has_ipv6, &ctx.gateways)
            .unwrap_or_else(|why| {
                c.refuse(why);
                None
            });
    Some(Nic {
        mac,
        bridge: iface.bridge.clone().unwrap_or_default(),
        tap: iface.target_dev.clone(),
        addresses,
        routed_prefixes,
        link_local,
    })
}

/// The addresses that pass every rule, and every one that parsed.
fn accept_addresses(
    raw: &[AddressXml],
    ctx: &Context<'_>,
    seen: &mut BTreeSet<IpAddr>,
    c: &mut Collector,
) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let mut accepted = Vec::new();
    let mut parsed = Vec::new();
    for a in raw {
        let ip = match parse_address(a) {
            Ok(ip) => ip,
            Err(why) => {
                c.refuse(why);
                continue;
            }
        };
        parsed.push(ip);
        if !c.refused(rules::address_problem(ip, ctx, seen)) {
            accepted.push(ip);
        }
    }
    (accepted, parsed)
}

/// The routed prefixes that pass every rule.
fn accept_prefixes(
    routes: &[RouteXml],
    accepted: &[IpAddr],
    parsed: &[IpAddr],
    ctx: &Context<'_>,
    c: &mut Collector,
) -> Vec<RoutedPrefix> {
    let mut out = Vec::new();
    for r in routes {
        let (prefix, via) = match rules::parse_route(r) {
            Ok(pv) => pv,
            Err(why) => {
                c.refuse(why);
                continue;
            }
        };
        if c.refused(rules::prefix_shape_problem(prefix)) {
            continue;
        }
        if rules::via_refused(via, accepted, parsed) {
            continue; // the address itself was refused, and said so
        }
        if !c.refused(rules::prefix_problem(prefix, via, accepted, ctx)) {
            out.push(RoutedPrefix { prefix, via });
        }
    }
    out
}

/// Prefixes of this domain must not overlap each other, nor its other NICs'
/// addresses in a way that steals them from the NIC that owns them.
/// `pending`: each accepted prefix with its NIC's index and label.
///
/// Linear in NICs (issue 15): the problems are exactly those of comparing every
/// pair (see the reference in the tests), found through indexes: two prefixes
/// overlap only when one is a supernet of the other, and the addresses inside a
/// prefix are a range of the ordered addresses.
pub(super) fn check_across_nics(
    pending: &[(usize, String, IpNet)],
    nics: &[Nic],
    c: &mut Collector,
) {
    if pending.is_empty() {
        return;
    }
    let overlapping = overlapping_pairs(pending);
    let addresses = addresses_by_nic(nics);
    for (i, (ni, label, p)) in pending.iter().enumerate() {
        for j in overlapping.get(&i).into_iter().flatten() {
            if let Some(why) = rules::own_prefixes_overlap(p, &pending[*j].2) {
                c.nic = Some(label.clone());
                c.refuse(why);
            }
        }
        for k in nics_with_address_in(p, &addresses) {
            if k == *ni {
                continue;
            }
            if let Some(why) = rules::prefix_contains_other_nic(p, &nics[k]) {
                c.nic = Some(label.clone());
                c.refuse(why);
            }
        }
    }
}

/// For each pending prefix `i`, the later ones (`j > i`, ascending) that overlap it.
fn overlapping_pairs(pending: &[(usize, String, IpNet)]) -> HashMap<usize, Vec<usize>> {
    let mut at: HashMap<IpNet, Vec<usize>> = HashMap::new();
    for (i, (_, _, p)) in pending.iter().enumerate() {
        at.entry(*p).or_default().push(i);
    }
    let mut out: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, (_, _, p)) in pending.iter().enumerate() {
        // Every prefix that contains p (p itself included) is one of its supernets.
        for len in 0..=p.prefix_len() {
            let Ok(sup) = IpNet::new(p.addr(), len) else {
                continue;
            };
            for &j in at.get(&sup.trunc()).into_iter().flatten() {
                if j != i {
                    let (a, b) = (i.min(j), i.max(j));
                    out.entry(a).or_default().push(b);
                }
            }
        }
    }
    for v in out.values_mut() {
        v.sort_unstable();
        v.dedup();
    }
    out
}

/// Every NIC's addresses in order, with the NIC's index.
fn addresses_by_nic(nics: &[Nic]) -> BTreeMap<IpAddr, Vec<usize>> {
    let mut out: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for (k, nic) in nics.iter().enumerate() {
        for a in &nic.addresses {
            out.entry(*a).or_default().push(k);
        }
    }
    out
}

/// The NICs (ascending, once each) with an address inside `p`.
fn nics_with_address_in(p: &IpNet, addresses: &BTreeMap<IpAddr, Vec<usize>>) -> Vec<usize> {
    let mut out: Vec<usize> = addresses
        .range(p.network()..=p.broadcast())
        .flat_map(|(_, ks)| ks.iter().copied())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The quadratic check this replaces, kept as the reference.
    fn reference(pending: &[(usize, String, IpNet)], nics: &[Nic], c: &mut Collector) {
        for (i, (ni, label, p)) in pending.iter().enumerate() {
            for (_, _, q) in &pending[i + 1..] {
                if let Some(why) = rules::own_prefixes_overlap(p, q) {
                    c.nic = Some(label.clone());
                    c.refuse(why);
                }
            }
            for (k, nic) in nics.iter().enumerate() {
                if k == *ni {
                    continue;
                }
                if let Some(why) = rules::prefix_contains_other_nic(p, nic) {
                    c.nic = Some(label.clone());
                    c.refuse(why);
                }
            }
        }
    }

    fn nic(k: usize, addresses: Vec<IpAddr>) -> Nic {
        Nic {
            mac: Mac([0x52, 0x54, 0, 0, (k >> 8) as u8, k as u8]),
            bridge: "cloudbr0".into(),
            tap: None,
            addresses,
            routed_prefixes: Vec::new(),
            link_local: None,
        }
    }

    /// Small address space (10.0.0.0/28 and 2001:db8::/124), so that prefixes
    /// overlap and contain addresses often.
    fn address() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            (0..16u8).prop_map(|h| IpAddr::from([10, 0, 0, h])),
            (0..16u16).prop_map(|h| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, h])),
        ]
    }

    fn prefix() -> impl Strategy<Value = IpNet> {
        (address(), 0..=4u8).prop_map(|(a, short)| {
            let len = if a.is_ipv4() { 32 } else { 128 } - short;
            IpNet::new(a, len).unwrap().trunc()
        })
    }

    proptest! {
        #[test]
        fn across_nics_finds_exactly_what_comparing_every_pair_finds(
            nics in proptest::collection::vec(proptest::collection::vec(address(), 0..4), 1..40),
            prefixes in proptest::collection::vec((0..40usize, prefix()), 0..40),
        ) {
            let nics: Vec<Nic> = nics.into_iter().enumerate().map(|(k, a)| nic(k, a)).collect();
            let pending: Vec<(usize, String, IpNet)> = prefixes
                .into_iter()
                .map(|(k, p)| (k % nics.len(), format!("NIC {}", k % nics.len()), p))
                .collect();
            let (mut fast, mut slow) = (Collector::default(), Collector::default());
            check_across_nics(&pending, &nics, &mut fast);
            reference(&pending, &nics, &mut slow);
            prop_assert_eq!(fast.problems, slow.problems);
        }
    }
}
