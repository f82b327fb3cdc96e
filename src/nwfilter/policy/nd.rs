//! IPv6 neighbour discovery (priority -600), IPv6 NICs only.

use super::super::{
    Action::{Accept, Drop},
    Direction::FromGuest as Out,
    Direction::ToGuest as In,
    Rule,
};
use super::view::{NicView, Rules};
use super::{PRIO_ND, PRIO_ND_OTHER};

const IPV6_MULTICAST_MAC: (&str, &str) = ("33:33:00:00:00:00", "ff:ff:00:00:00:00");
const SOLICITED_NODES: (&str, &str) = ("ff02::1:ff00:0", "104");
const ALL_NODES: &str = "ff02::1";
const ALL_ROUTERS: &str = "ff02::2";

const NS: &str = "135";
const NA: &str = "136";

/// An IPv6 source the guest may send neighbour discovery from.
struct NdSource {
    address: String,
    mask: &'static str,
    label: String,
}

/// Neighbour discovery from the guest, then to it; nothing for an IPv4-only NIC.
pub(super) fn rules(n: &NicView) -> Vec<Rule> {
    let mut r = Rules::at(PRIO_ND);
    if !n.v6.is_empty() {
        from_guest(n, &mut r);
        to_guest(n, &mut r);
    }
    r.into_vec()
}

/// Solicitations and advertisements from its link-local and own addresses, and DAD.
fn from_guest(n: &NicView, r: &mut Rules) {
    let (ll, ll_mask, ll_label) = &n.link_local;
    let mut sources = vec![NdSource {
        address: ll.clone(),
        mask: ll_mask,
        label: ll_label.clone(),
    }];
    sources.extend(n.v6.iter().map(|a| NdSource {
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
            "ipv6",
            &nd((ALL_ROUTERS, "128"), "133"),
            format!("router solicitation from {}", s.label),
        );
        r.add(
            Accept,
            Out,
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
        "duplicate address detection: neighbour solicitation from the unspecified address".into(),
    );
    for s in &sources {
        let mut unicast = n.unicast_out();
        unicast.extend([
            ("srcipaddr", s.address.as_str()),
            ("srcipmask", s.mask),
            ("protocol", "icmpv6"),
            ("type", NS),
            ("typeend", NA),
        ]);
        r.add(
            Accept,
            Out,
            "ipv6",
            &unicast,
            format!(
                "unicast neighbour solicitation/advertisement{} from {}",
                n.to_gateway(),
                s.label
            ),
        );
    }
}

/// Every other neighbour discovery message from the guest (RS to NA, redirects):
/// from another source, to another destination. Nothing for an IPv4-only NIC
/// (its IPv6 is dropped anyway).
pub(super) fn drop_others(n: &NicView) -> Vec<Rule> {
    let mut r = Rules::at(PRIO_ND_OTHER);
    if !n.v6.is_empty() {
        r.add(
            Drop,
            Out,
            "ipv6",
            &[("protocol", "icmpv6"), ("type", "133"), ("typeend", "137")],
            "drop neighbour discovery from any other source or to any other destination".into(),
        );
    }
    r.into_vec()
}

/// Solicitations to its groups, advertisements to all nodes and to its link-local address.
fn to_guest(n: &NicView, r: &mut Rules) {
    r.add(
        Accept,
        In,
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
        "ipv6",
        &[
            ("dstmacaddr", &n.mac),
            ("dstipaddr", &n.link_local.0),
            ("dstipmask", n.link_local.1),
            ("protocol", "icmpv6"),
            ("type", "134"),
            ("typeend", NA),
        ],
        format!("to the guest, neighbour discovery to {}", n.link_local.2),
    );
}
