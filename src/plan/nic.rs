//! Planning one managed interface: its MAC, its address sources, and the rules
//! applied to each of its addresses and routed prefixes.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::address::Mac;
use crate::domain_xml::{AddressXml, DomainXml, InterfaceXml, RouteXml};

use super::error::Collector;
use super::facts::Checks;
use super::link_local;
use super::metadata::{address_sources, filterref_disagreement, parse_address};
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
    dom: &DomainXml,
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
    let sources = address_sources(dom, iface, mac, flat);
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
pub(super) fn check_across_nics(
    pending: &[(usize, String, IpNet)],
    nics: &[Nic],
    c: &mut Collector,
) {
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
