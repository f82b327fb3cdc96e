//! The address and prefix rules, each a small function giving the refusal text
//! (`None`: the rule lets it through). The checks run in the order of
//! [`address_problem`] and [`prefix_problem`]: the first refusal is the one said.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::address::{overlaps, unroutable_reason, Mac};
use crate::config::Config;
use crate::domain_xml::{
    DomainXml, InterfaceXml, RouteXml, CLOUDSTACK_NETWORK_NS, CLOUDSTACK_NETWORK_NS_HTTP,
};

use super::facts::{HostFacts, HostRoute, Owner, Ownership};
use super::metadata::carries_virt_l3_filter;
use super::model::{nic_filter_name, Nic};
use super::text::{is_valid_uuid, shown};

/// What the address and prefix rules check against.
pub(super) struct Context<'a> {
    pub config: &'a Config,
    pub host: &'a HostFacts,
    pub owners: &'a dyn Ownership,
    /// The domain's own UUID: what it owns already is not a conflict.
    pub uuid: &'a str,
    pub gateways: BTreeSet<IpAddr>,
    /// Every domain's routed prefixes, this one's included.
    pub other_prefixes: Vec<(IpNet, Owner)>,
    /// The host's routes through interfaces that are not routed bridges.
    pub foreign_routes: Vec<&'a HostRoute>,
}

impl<'a> Context<'a> {
    pub fn new(
        config: &'a Config,
        host: &'a HostFacts,
        owners: &'a dyn Ownership,
        uuid: &'a str,
    ) -> Self {
        Context {
            config,
            host,
            owners,
            uuid,
            gateways: config.gateways.iter().copied().collect(),
            other_prefixes: owners.routed_prefixes(),
            foreign_routes: host
                .routes
                .iter()
                .filter(|r| !config.is_routed_bridge(&r.interface))
                .collect(),
        }
    }
}

// --- The domain -------------------------------------------------------------

/// The domain's UUID, or why it has none usable.
pub(super) fn domain_uuid(uuid: Option<&str>) -> Result<String, String> {
    match uuid {
        Some(u) if is_valid_uuid(u) => Ok(u.to_string()),
        Some(u) => Err(format!("the domain UUID {} is not a valid UUID", shown(u))),
        None => Err("the domain XML has no <uuid>".into()),
    }
}

/// Metadata in the `http://` spelling of CloudStack's namespace: another namespace
/// to XML, which virt-l3 would silently ignore.
pub(super) fn http_namespace(dom: &DomainXml) -> Option<String> {
    dom.http_namespace_metadata.then(|| {
        format!(
            "its <metadata> uses the namespace {CLOUDSTACK_NETWORK_NS_HTTP}, which virt-l3 does not read: \
             the namespace of CloudStack's network metadata is {CLOUDSTACK_NETWORK_NS}"
        )
    })
}

// --- The interface ----------------------------------------------------------

/// A port of another switch than a Linux bridge (`<virtualport type='openvswitch'>`):
/// port isolation and nwfilter, which keep a routed guest to its own addresses,
/// do not apply to it.
pub(super) fn foreign_virtualport(iface: &InterfaceXml) -> Option<String> {
    let kind = iface.virtualport.as_deref().filter(|t| !t.is_empty())?;
    Some(format!(
        "it is a <virtualport type={}> port: virt-l3 routes Linux bridge ports only \
         (port isolation and nwfilter, which hold a guest to its addresses, do not apply to it)",
        shown(kind)
    ))
}

// --- MACs -------------------------------------------------------------------

/// A managed interface's MAC: present, valid, and a NIC's (not zero, broadcast, multicast).
pub(super) fn nic_mac(text: Option<&str>) -> Result<Mac, String> {
    let Some(m) = text else {
        return Err("the interface has no MAC address".into());
    };
    match m.parse::<Mac>() {
        Err(_) => Err(format!("MAC {} is not a MAC address", shown(m))),
        Ok(mac) if mac.is_zero() => Err(format!("MAC {m} is all zeros")),
        Ok(mac) if mac.0 == [0xff; 6] => Err(format!("MAC {m} is the broadcast MAC, not a NIC's")),
        Ok(mac) if mac.is_multicast() => Err(format!("MAC {m} is a multicast MAC, not a NIC's")),
        Ok(mac) => Ok(mac),
    }
}

/// A MAC already used by another routed interface of the domain (records it in `seen`).
pub(super) fn duplicate_mac(mac: Mac, seen: &mut BTreeSet<Mac>) -> Option<String> {
    (!seen.insert(mac)).then(|| format!("MAC {mac} is used by two routed interfaces"))
}

/// Why a NIC's MAC is refused on this host, if it is: the gateway's, a routed
/// bridge's, or another domain's.
pub(super) fn mac_problem(mac: Mac, ctx: &Context<'_>) -> Option<String> {
    gateway_macs(ctx)
        .into_iter()
        .find_map(|g| mac_is_gateway(mac, Some(g)))
        .or_else(|| mac_is_bridge(mac, &ctx.host.bridge_macs))
        .or_else(|| mac_owned_by_other(mac, ctx.owners.owner_of_mac(mac), ctx.uuid))
}

/// The gateway MACs of this host's routed bridges: the fixed one, or each
/// bridge's derived one.
fn gateway_macs(ctx: &Context<'_>) -> Vec<Mac> {
    match ctx.config.gateway_mac {
        None => Vec::new(),
        Some(crate::config::GatewayMac::Fixed(m)) => vec![m],
        Some(g) => ctx
            .host
            .bridge_macs
            .iter()
            .map(|(b, _)| g.for_bridge(b))
            .collect(),
    }
}

/// The configured gateway MAC: the guests' neighbour entry for their gateway.
pub(super) fn mac_is_gateway(mac: Mac, gateway: Option<Mac>) -> Option<String> {
    (gateway == Some(mac)).then(|| format!("MAC {mac} is the guests' gateway MAC (gateway_mac)"))
}

/// The current MAC of a routed bridge: the gateway the guests see.
pub(super) fn mac_is_bridge(mac: Mac, bridges: &[(String, Mac)]) -> Option<String> {
    bridges.iter().find(|(_, m)| *m == mac).map(|(b, _)| {
        format!("MAC {mac} is the MAC of the routed bridge {b} (the guests' gateway)")
    })
}

/// A MAC another domain uses on a routed bridge: the two would share one nwfilter
/// and one permanent neighbour entry.
pub(super) fn mac_owned_by_other(mac: Mac, owner: Option<Owner>, uuid: &str) -> Option<String> {
    owner.filter(|o| o.uuid != uuid).map(|o| {
        format!(
            "MAC {mac} is already used on a routed bridge by domain {} ({})",
            o.name, o.uuid
        )
    })
}

/// An interface without virt-l3's nwfilter for its MAC.
pub(super) fn missing_filter(iface: &InterfaceXml, config: &Config, mac: &Mac) -> Option<String> {
    if carries_virt_l3_filter(iface, config) {
        return None;
    }
    Some(format!(
        "the interface does not carry virt-l3's nwfilter ({}), so the VM could spoof addresses; \
         run `virt-l3 nwfilter inject` on the XML, or set require_nwfilter = false",
        match &iface.filterref {
            Some(f) => format!(
                "it has filter {:?}, not {:?}",
                f.filter,
                nic_filter_name(config, mac)
            ),
            None => "it has no <filterref>".to_string(),
        }
    ))
}

// --- Addresses --------------------------------------------------------------

/// Why an address is refused, if it is: the first rule that refuses it.
/// `seen` gathers the domain's addresses that passed the rules before the duplicate one.
pub(super) fn address_problem(
    ip: IpAddr,
    ctx: &Context<'_>,
    seen: &mut BTreeSet<IpAddr>,
) -> Option<String> {
    unroutable_address(ip)
        .or_else(|| gateway_address(ip, &ctx.gateways))
        .or_else(|| hosts_own_address(ip, &ctx.host.addresses))
        .or_else(|| address_on_host_link(ip, &ctx.foreign_routes))
        .or_else(|| denied_address(ip, &ctx.config.deny))
        .or_else(|| address_not_allowed(ip, &ctx.config.allow))
        .or_else(|| duplicate_address(ip, seen))
        .or_else(|| address_owned_by_other(ip, ctx.owners.owner_of_address(ip), ctx.uuid))
        .or_else(|| address_in_other_prefix(ip, &ctx.other_prefixes, ctx.uuid))
}

/// An address that cannot be a VM's (loopback, multicast, link-local...).
pub(super) fn unroutable_address(ip: IpAddr) -> Option<String> {
    unroutable_reason(ip).map(|why| format!("address {ip} {why}"))
}

/// The guests' gateway.
pub(super) fn gateway_address(ip: IpAddr, gateways: &BTreeSet<IpAddr>) -> Option<String> {
    gateways
        .contains(&ip)
        .then(|| format!("address {ip} is the guests' gateway"))
}

/// An address of the hypervisor itself.
pub(super) fn hosts_own_address(ip: IpAddr, host: &[IpAddr]) -> Option<String> {
    host.contains(&ip)
        .then(|| format!("address {ip} is configured on the hypervisor itself"))
}

/// An address the host reaches through an interface that is not a routed
/// bridge (`routes`: only those): the next hop of a route through it, or on-link
/// there (a route without gateway, not a default route). Routing it to a VM
/// would pull the host's own traffic (its upstream router, a BGP neighbour)
/// into the guest.
pub(super) fn address_on_host_link(ip: IpAddr, routes: &[&HostRoute]) -> Option<String> {
    routes.iter().find_map(|r| {
        if r.gateway == Some(ip) {
            Some(format!(
                "address {ip} is the next hop of a route via {} ({}), an interface that is not a routed bridge",
                r.interface, r.destination
            ))
        } else if r.gateway.is_none() && r.destination.prefix_len() > 0 && r.destination.contains(&ip) {
            Some(format!(
                "address {ip} is on-link on {} ({}), an interface that is not a routed bridge",
                r.interface, r.destination
            ))
        } else {
            None
        }
    })
}

/// A routed prefix that holds the next hop of a route through an interface that
/// is not a routed bridge, or overlaps a prefix on-link there.
pub(super) fn prefix_on_host_link(prefix: IpNet, routes: &[&HostRoute]) -> Option<String> {
    routes.iter().find_map(|r| match r.gateway {
        Some(g) if prefix.contains(&g) => Some(format!(
            "routed prefix {prefix} contains {g}, the next hop of a route via {} ({}), an interface that is not a routed bridge",
            r.interface, r.destination
        )),
        None if r.destination.prefix_len() > 0 && overlaps(&r.destination, &prefix) => {
            Some(format!(
                "routed prefix {prefix} overlaps {}, on-link on {}, an interface that is not a routed bridge",
                r.destination, r.interface
            ))
        }
        _ => None,
    })
}

/// An address inside a denied prefix.
pub(super) fn denied_address(ip: IpAddr, deny: &[IpNet]) -> Option<String> {
    deny.iter()
        .find(|d| d.contains(&ip))
        .map(|d| format!("address {ip} is inside the denied prefix {d}"))
}

/// An address outside every allowed prefix (when some are configured).
pub(super) fn address_not_allowed(ip: IpAddr, allow: &[IpNet]) -> Option<String> {
    (!allow.is_empty() && !allow.iter().any(|p| p.contains(&ip)))
        .then(|| format!("address {ip} is outside every allowed prefix"))
}

/// An address the domain claims twice (records it in `seen`).
pub(super) fn duplicate_address(ip: IpAddr, seen: &mut BTreeSet<IpAddr>) -> Option<String> {
    (!seen.insert(ip)).then(|| format!("address {ip} appears twice in the domain"))
}

/// An address another domain owns.
pub(super) fn address_owned_by_other(
    ip: IpAddr,
    owner: Option<Owner>,
    uuid: &str,
) -> Option<String> {
    owner.filter(|o| o.uuid != uuid).map(|o| {
        format!(
            "address {ip} is already owned by domain {} ({})",
            o.name, o.uuid
        )
    })
}

/// An address inside a prefix routed to another domain.
pub(super) fn address_in_other_prefix(
    ip: IpAddr,
    prefixes: &[(IpNet, Owner)],
    uuid: &str,
) -> Option<String> {
    prefixes
        .iter()
        .find(|(p, o)| o.uuid != uuid && p.contains(&ip))
        .map(|(p, o)| {
            format!(
                "address {ip} is inside prefix {p} routed to domain {} ({})",
                o.name, o.uuid
            )
        })
}

// --- Routed prefixes --------------------------------------------------------

/// A `<route>` element's prefix and via address.
pub(super) fn parse_route(r: &RouteXml) -> Result<(IpNet, IpAddr), String> {
    let (Some(ptext), Some(vtext)) = (r.prefix.as_deref(), r.via.as_deref()) else {
        return Err("a <route> element needs both prefix and via".into());
    };
    let Ok(prefix) = ptext.trim().parse::<IpNet>() else {
        return Err(format!("routed prefix {} is not a prefix", shown(ptext)));
    };
    let Ok(via) = vtext.trim().parse::<IpAddr>() else {
        return Err(format!(
            "routed prefix {prefix}: via {} is not an IP address",
            shown(vtext)
        ));
    };
    Ok((prefix, via))
}

/// What is wrong with a prefix by itself: host bits, a default route, unroutable.
pub(super) fn prefix_shape_problem(prefix: IpNet) -> Option<String> {
    if prefix.trunc() != prefix {
        Some(format!(
            "routed prefix {prefix} has host bits set (did you mean {}?)",
            prefix.trunc()
        ))
    } else if prefix.prefix_len() == 0 {
        Some(format!("routed prefix {prefix} is a default route"))
    } else {
        unroutable_reason(prefix.network()).map(|why| format!("routed prefix {prefix} {why}"))
    }
}

/// The prefix goes through one of the NIC's addresses that was refused (and said so):
/// nothing more to say about it.
pub(super) fn via_refused(via: IpAddr, accepted: &[IpAddr], parsed: &[IpAddr]) -> bool {
    !accepted.contains(&via) && parsed.contains(&via)
}

/// Why a well-formed prefix routed through `via` is refused, if it is.
/// `accepted` are the NIC's addresses.
pub(super) fn prefix_problem(
    prefix: IpNet,
    via: IpAddr,
    accepted: &[IpAddr],
    ctx: &Context<'_>,
) -> Option<String> {
    via_not_of_nic(prefix, via, accepted)
        .or_else(|| via_of_other_family(prefix, via))
        .or_else(|| prefix_contains_host(prefix, &ctx.host.addresses))
        .or_else(|| prefix_on_host_link(prefix, &ctx.foreign_routes))
        .or_else(|| prefix_contains_gateway(prefix, &ctx.gateways))
        .or_else(|| prefix_denied(prefix, &ctx.config.deny))
        .or_else(|| prefix_not_allowed(prefix, &ctx.config.allow))
        .or_else(|| prefix_overlaps_other_domain(prefix, &ctx.other_prefixes, ctx.uuid))
        .or_else(|| {
            prefix_contains_other_domain(prefix, ctx.owners.address_within(&prefix), ctx.uuid)
        })
}

/// A via that is not one of the NIC's addresses.
pub(super) fn via_not_of_nic(prefix: IpNet, via: IpAddr, accepted: &[IpAddr]) -> Option<String> {
    (!accepted.contains(&via))
        .then(|| format!("routed prefix {prefix}: via {via} is not one of this NIC's addresses"))
}

/// A via of the other address family than the prefix.
pub(super) fn via_of_other_family(prefix: IpNet, via: IpAddr) -> Option<String> {
    (prefix.addr().is_ipv4() != via.is_ipv4())
        .then(|| format!("routed prefix {prefix}: via {via} is of the other address family"))
}

/// A prefix containing an address of the hypervisor.
pub(super) fn prefix_contains_host(prefix: IpNet, host: &[IpAddr]) -> Option<String> {
    host.iter()
        .find(|h| prefix.contains(*h))
        .map(|h| format!("routed prefix {prefix} contains {h}, an address of the hypervisor"))
}

/// A prefix containing the guests' gateway.
pub(super) fn prefix_contains_gateway(
    prefix: IpNet,
    gateways: &BTreeSet<IpAddr>,
) -> Option<String> {
    gateways
        .iter()
        .find(|g| prefix.contains(*g))
        .map(|g| format!("routed prefix {prefix} contains the gateway {g}"))
}

/// A prefix overlapping a denied prefix.
pub(super) fn prefix_denied(prefix: IpNet, deny: &[IpNet]) -> Option<String> {
    deny.iter()
        .find(|d| overlaps(d, &prefix))
        .map(|d| format!("routed prefix {prefix} overlaps the denied prefix {d}"))
}

/// A prefix not inside any allowed prefix (when some are configured).
pub(super) fn prefix_not_allowed(prefix: IpNet, allow: &[IpNet]) -> Option<String> {
    (!allow.is_empty() && !allow.iter().any(|a| a.contains(&prefix)))
        .then(|| format!("routed prefix {prefix} is outside every allowed prefix"))
}

/// A prefix overlapping one routed to another domain.
pub(super) fn prefix_overlaps_other_domain(
    prefix: IpNet,
    prefixes: &[(IpNet, Owner)],
    uuid: &str,
) -> Option<String> {
    prefixes
        .iter()
        .find(|(p, o)| o.uuid != uuid && overlaps(p, &prefix))
        .map(|(p, o)| {
            format!(
                "routed prefix {prefix} overlaps {p}, routed to domain {} ({})",
                o.name, o.uuid
            )
        })
}

/// A prefix containing an address another domain owns (`within`: one address
/// some domain owns inside the prefix).
pub(super) fn prefix_contains_other_domain(
    prefix: IpNet,
    within: Option<(IpAddr, Owner)>,
    uuid: &str,
) -> Option<String> {
    within.filter(|(_, o)| o.uuid != uuid).map(|(a, o)| {
        format!(
            "routed prefix {prefix} contains {a}, owned by domain {} ({})",
            o.name, o.uuid
        )
    })
}

/// Two routed prefixes of the domain that overlap.
pub(super) fn own_prefixes_overlap(p: &IpNet, q: &IpNet) -> Option<String> {
    overlaps(p, q)
        .then(|| format!("routed prefix {p} overlaps the domain's other routed prefix {q}"))
}

/// A prefix that would steal an address of another NIC of the domain.
pub(super) fn prefix_contains_other_nic(p: &IpNet, nic: &Nic) -> Option<String> {
    nic.addresses.iter().find(|a| p.contains(*a)).map(|a| {
        format!(
            "routed prefix {p} contains {a}, an address of another NIC ({})",
            nic.mac
        )
    })
}

#[cfg(test)]
mod tests;
