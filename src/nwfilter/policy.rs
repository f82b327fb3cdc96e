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
//! | -600     | accept neighbour discovery and DAD            | accept neighbour discovery              |
//! | -550     | drop other broadcast/multicast (`virt-l3-no-multicast`) |                               |
//! | -500     | accept IP from its addresses and prefixes     | accept IP to its addresses and prefixes |
//! | 1000     | drop everything else (`virt-l3-no-other`)     | same                                    |

use std::net::IpAddr;

use ipnet::IpNet;

use super::{nic_filter_name, Action, Direction, Filter, Rule, TEMPLATES};
use crate::config::Config;
use crate::plan::Nic;

pub const PRIO_SOURCE_MAC: i16 = -900;
pub const PRIO_ARP: i16 = -700;
pub const PRIO_ANNOUNCE: i16 = -690;
pub const PRIO_ND: i16 = -600;
pub const PRIO_ADDRESSES: i16 = -500;

const BROADCAST: &str = "ff:ff:ff:ff:ff:ff";
const IPV6_MULTICAST_MAC: (&str, &str) = ("33:33:00:00:00:00", "ff:ff:00:00:00:00");
const SOLICITED_NODES: (&str, &str) = ("ff02::1:ff00:0", "104");
const ALL_NODES: &str = "ff02::1";
const ALL_ROUTERS: &str = "ff02::2";
const LINK_LOCAL: (&str, &str) = ("fe80::", "10");

const NS: &str = "135";
const NA: &str = "136";

struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    fn add(
        &mut self,
        action: Action,
        direction: Direction,
        priority: i16,
        protocol: &'static str,
        attributes: &[(&'static str, &str)],
        comment: String,
    ) {
        self.rules.push(Rule {
            action,
            direction,
            priority,
            protocol,
            attributes: attributes
                .iter()
                .map(|(k, v)| (*k, (*v).to_string()))
                .collect(),
            comment: format!("virt-l3: {comment}"),
        });
    }
}

/// An IPv6 source the guest may send neighbour discovery from.
struct NdSource {
    address: String,
    mask: &'static str,
    label: String,
}

/// The filter of one routed NIC, with its MAC and addresses written into the rules.
pub fn nic_filter(nic: &Nic, config: &Config) -> Filter {
    let mac = nic.mac.to_string();
    let gw = config.gateway_mac.map(|m| m.to_string());
    let v4: Vec<IpAddr> = nic
        .addresses
        .iter()
        .copied()
        .filter(IpAddr::is_ipv4)
        .collect();
    let v6: Vec<IpAddr> = nic
        .addresses
        .iter()
        .copied()
        .filter(IpAddr::is_ipv6)
        .collect();
    let prefixes = |v6: bool| -> Vec<(IpNet, IpAddr)> {
        nic.routed_prefixes
            .iter()
            .filter(|p| p.prefix.addr().is_ipv6() == v6)
            .map(|p| (p.prefix, p.via))
            .collect()
    };
    let mut r = Rules { rules: Vec::new() };
    use Action::{Accept, Drop};
    use Direction::{FromGuest as Out, ToGuest as In};

    // Layer 2: who may talk to whom.
    r.add(
        Drop,
        Out,
        PRIO_SOURCE_MAC,
        "mac",
        &[("match", "no"), ("srcmacaddr", &mac)],
        format!("from the guest, drop frames whose source MAC is not NIC {mac}"),
    );
    if let Some(g) = gw.as_deref() {
        r.add(
            Drop,
            In,
            PRIO_SOURCE_MAC,
            "mac",
            &[("match", "no"), ("srcmacaddr", g)],
            format!(
                "to the guest, drop frames not sent by the gateway {g} (another guest at layer 2)"
            ),
        );
    }
    // The destination MAC of a unicast frame from the guest: the gateway only.
    let unicast_out: Vec<(&'static str, &str)> = match gw.as_deref() {
        Some(g) => vec![("dstmacaddr", g)],
        None => Vec::new(),
    };
    let to_gateway = if gw.is_some() { " to the gateway" } else { "" };

    // ARP (IPv4 NICs only).
    for a in &v4 {
        let a = a.to_string();
        r.add(
            Accept,
            Out,
            PRIO_ARP,
            "arp",
            &[
                ("dstmacaddr", BROADCAST),
                ("arpsrcmacaddr", &mac),
                ("arpsrcipaddr", &a),
            ],
            format!("ARP broadcast from {mac} as {a} (asks for the gateway, announces {a})"),
        );
        let mut unicast = unicast_out.clone();
        unicast.extend([
            ("arpsrcmacaddr", mac.as_str()),
            ("arpsrcipaddr", a.as_str()),
        ]);
        r.add(
            Accept,
            Out,
            PRIO_ARP,
            "arp",
            &unicast,
            format!("unicast ARP{to_gateway} from {mac} as {a} (replies, reachability probes)"),
        );
        r.add(
            Accept,
            Out,
            PRIO_ARP,
            "arp",
            &[
                ("dstmacaddr", BROADCAST),
                ("arpsrcmacaddr", &mac),
                ("arpsrcipaddr", "0.0.0.0"),
                ("arpdstipaddr", &a),
            ],
            format!("ARP probe for {a} before the guest uses it (RFC 5227 conflict detection)"),
        );
        r.add(
            Accept,
            In,
            PRIO_ARP,
            "arp",
            &[("dstmacaddr", &mac), ("arpdstipaddr", &a)],
            format!("to the guest, unicast ARP for its address {a}"),
        );
        r.add(
            Accept,
            In,
            PRIO_ARP,
            "arp",
            &[("dstmacaddr", BROADCAST), ("arpdstipaddr", &a)],
            format!("to the guest, ARP broadcast asking for its address {a}"),
        );
    }

    // qemu's self-announcement after migration (net/announce.c): a RARP request
    // broadcast from the guest's MAC, so the bridge learns where the MAC is now.
    r.add(
        Accept,
        Out,
        PRIO_ANNOUNCE,
        "rarp",
        &[
            ("dstmacaddr", BROADCAST),
            ("opcode", "Request_Reverse"),
            ("arpsrcmacaddr", &mac),
            ("arpdstmacaddr", &mac),
            ("arpsrcipaddr", "0.0.0.0"),
            ("arpdstipaddr", "0.0.0.0"),
        ],
        format!("qemu announce-self after migration: RARP broadcast for {mac}"),
    );

    // IPv6 neighbour discovery (IPv6 NICs only).
    if !v6.is_empty() {
        let mut sources = vec![NdSource {
            address: LINK_LOCAL.0.into(),
            mask: LINK_LOCAL.1,
            label: "a link-local address".into(),
        }];
        sources.extend(v6.iter().map(|a| NdSource {
            address: a.to_string(),
            mask: "128",
            label: a.to_string(),
        }));
        for s in &sources {
            let nd = |dst: (&'static str, &'static str), kind: &'static str| {
                vec![
                    ("dstmacaddr", IPV6_MULTICAST_MAC.0),
                    ("dstmacmask", IPV6_MULTICAST_MAC.1),
                    ("srcipaddr", s.address.as_str()),
                    ("srcipmask", s.mask),
                    ("dstipaddr", dst.0),
                    ("dstipmask", dst.1),
                    ("protocol", "icmpv6"),
                    ("type", kind),
                ]
            };
            r.add(
                Accept,
                Out,
                PRIO_ND,
                "ipv6",
                &nd(SOLICITED_NODES, NS),
                format!(
                    "neighbour solicitation from {} to a solicited-node group",
                    s.label
                ),
            );
            r.add(
                Accept,
                Out,
                PRIO_ND,
                "ipv6",
                &nd((ALL_ROUTERS, "128"), "133"),
                format!("router solicitation from {}", s.label),
            );
            r.add(
                Accept,
                Out,
                PRIO_ND,
                "ipv6",
                &nd((ALL_NODES, "128"), NA),
                format!(
                    "unsolicited neighbour advertisement from {} (after migration)",
                    s.label
                ),
            );
        }
        r.add(
            Accept,
            Out,
            PRIO_ND,
            "ipv6",
            &[
                ("dstmacaddr", IPV6_MULTICAST_MAC.0),
                ("dstmacmask", IPV6_MULTICAST_MAC.1),
                ("srcipaddr", "::"),
                ("srcipmask", "128"),
                ("dstipaddr", SOLICITED_NODES.0),
                ("dstipmask", SOLICITED_NODES.1),
                ("protocol", "icmpv6"),
                ("type", NS),
            ],
            "duplicate address detection: neighbour solicitation from the unspecified address"
                .into(),
        );
        let mut unicast = unicast_out.clone();
        unicast.extend([
            ("srcipaddr", LINK_LOCAL.0),
            ("srcipmask", LINK_LOCAL.1),
            ("protocol", "icmpv6"),
            ("type", NS),
            ("typeend", NA),
        ]);
        r.add(
            Accept,
            Out,
            PRIO_ND,
            "ipv6",
            &unicast,
            format!("unicast neighbour solicitation/advertisement{to_gateway} from a link-local address"),
        );
        r.add(
            Accept,
            In,
            PRIO_ND,
            "ipv6",
            &[
                ("dstmacaddr", IPV6_MULTICAST_MAC.0),
                ("dstmacmask", IPV6_MULTICAST_MAC.1),
                ("dstipaddr", SOLICITED_NODES.0),
                ("dstipmask", SOLICITED_NODES.1),
                ("protocol", "icmpv6"),
                ("type", NS),
            ],
            "to the guest, neighbour solicitation to a solicited-node group".into(),
        );
        r.add(
            Accept,
            In,
            PRIO_ND,
            "ipv6",
            &[
                ("dstmacaddr", IPV6_MULTICAST_MAC.0),
                ("dstmacmask", IPV6_MULTICAST_MAC.1),
                ("dstipaddr", ALL_NODES),
                ("dstipmask", "128"),
                ("protocol", "icmpv6"),
                ("type", "134"),
                ("typeend", NA),
            ],
            "to the guest, router and neighbour advertisements to all nodes (gateway, DAD defence)"
                .into(),
        );
        r.add(
            Accept,
            In,
            PRIO_ND,
            "ipv6",
            &[
                ("dstmacaddr", &mac),
                ("dstipaddr", LINK_LOCAL.0),
                ("dstipmask", LINK_LOCAL.1),
                ("protocol", "icmpv6"),
                ("type", "134"),
                ("typeend", NA),
            ],
            "to the guest, neighbour discovery to its link-local address".into(),
        );
    }

    // Layer 3: the NIC's own addresses and routed prefixes, each way.
    for (family, proto, addrs) in [("IPv4", "ip", &v4), ("IPv6", "ipv6", &v6)] {
        for a in addrs.iter() {
            let a = a.to_string();
            let mut out = unicast_out.clone();
            out.push(("srcipaddr", a.as_str()));
            r.add(
                Accept,
                Out,
                PRIO_ADDRESSES,
                proto,
                &out,
                format!("{family} from the guest address {a}{to_gateway}"),
            );
            r.add(
                Accept,
                In,
                PRIO_ADDRESSES,
                proto,
                &[("dstmacaddr", &mac), ("dstipaddr", &a)],
                format!("{family} to the guest address {a}"),
            );
        }
        for (p, via) in prefixes(proto == "ipv6") {
            let (net, len) = (p.network().to_string(), p.prefix_len().to_string());
            let mut out = unicast_out.clone();
            out.extend([("srcipaddr", net.as_str()), ("srcipmask", len.as_str())]);
            r.add(
                Accept,
                Out,
                PRIO_ADDRESSES,
                proto,
                &out,
                format!("{family} from the prefix {p} routed via {via}{to_gateway}"),
            );
            r.add(
                Accept,
                In,
                PRIO_ADDRESSES,
                proto,
                &[
                    ("dstmacaddr", &mac),
                    ("dstipaddr", &net),
                    ("dstipmask", &len),
                ],
                format!("{family} to the prefix {p} routed via {via}"),
            );
        }
    }

    let addresses: Vec<String> = nic.addresses.iter().map(ToString::to_string).collect();
    let routed: Vec<String> = nic
        .routed_prefixes
        .iter()
        .map(|p| format!("{} via {}", p.prefix, p.via))
        .collect();
    let header = vec![
        format!("virt-l3 security group of the NIC with MAC {}.", nic.mac),
        format!("Addresses: {}.", addresses.join(", ")),
        format!(
            "Routed prefixes: {}.",
            if routed.is_empty() {
                "none".to_string()
            } else {
                routed.join(", ")
            }
        ),
        match &gw {
            Some(g) => format!("Gateway MAC: {g} (the only layer-2 peer of the guest)."),
            None => {
                "Gateway MAC: not configured; bridge port isolation keeps guests apart at layer 2."
                    .to_string()
            }
        },
        "Rendered by `virt-l3 nwfilter render`; do not edit, re-render and define.".to_string(),
        "Rules run by priority, lowest first; the first accept or drop decides.".to_string(),
        "'out' is traffic from the guest, 'in' traffic to it.".to_string(),
    ];
    Filter {
        name: nic_filter_name(config, &nic.mac),
        header,
        references: TEMPLATES.iter().map(|t| t.name.to_string()).collect(),
        rules: r.rules,
    }
}
