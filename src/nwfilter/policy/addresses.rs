//! Layer 3 (priority -500): the NIC's own addresses and routed prefixes, each way.

use super::super::{Action::Accept, Direction::FromGuest as Out, Direction::ToGuest as In, Rule};
use super::view::{NicView, Rules};
use super::PRIO_ADDRESSES;

/// IPv4 then IPv6: per address, then per routed prefix, one rule out and one in.
pub(super) fn rules(n: &NicView) -> Vec<Rule> {
    let mut r = Rules::at(PRIO_ADDRESSES);
    let mac = &n.mac;
    let to_gateway = n.to_gateway();
    for (family, proto, addrs) in [("IPv4", "ip", &n.v4), ("IPv6", "ipv6", &n.v6)] {
        for a in addrs.iter() {
            let a = a.to_string();
            let mut out = n.unicast_out();
            out.push(("srcipaddr", a.as_str()));
            r.add(
                Accept,
                Out,
                proto,
                &out,
                format!("{family} from the guest address {a}{to_gateway}"),
            );
            r.add(
                Accept,
                In,
                proto,
                &[("dstmacaddr", mac), ("dstipaddr", &a)],
                format!("{family} to the guest address {a}"),
            );
        }
        let routed = n
            .nic
            .routed_prefixes
            .iter()
            .filter(|p| p.prefix.addr().is_ipv6() == (proto == "ipv6"));
        for rp in routed {
            let (p, via) = (rp.prefix, rp.via);
            let (net, len) = (p.network().to_string(), p.prefix_len().to_string());
            let mut out = n.unicast_out();
            out.extend([("srcipaddr", net.as_str()), ("srcipmask", len.as_str())]);
            r.add(
                Accept,
                Out,
                proto,
                &out,
                format!("{family} from the prefix {p} routed via {via}{to_gateway}"),
            );
            r.add(
                Accept,
                In,
                proto,
                &[
                    ("dstmacaddr", mac),
                    ("dstipaddr", &net),
                    ("dstipmask", &len),
                ],
                format!("{family} to the prefix {p} routed via {via}"),
            );
        }
    }
    if !n.v6.is_empty() {
        link_local_icmpv6(n, &mut r);
    }
    r.into_vec()
}

/// Unicast ICMPv6 between the guest's link-local and the IPv6 gateway (echo, its
/// errors), both ways: `ping -6 fe80::1%eth0`.
fn link_local_icmpv6(n: &NicView, r: &mut Rules) {
    let (ll, mask, label) = &n.link_local;
    for g in &n.gateways6 {
        let mut out = n.unicast_out();
        out.extend([
            ("srcipaddr", ll.as_str()),
            ("srcipmask", *mask),
            ("dstipaddr", g.as_str()),
            ("dstipmask", "128"),
            ("protocol", "icmpv6"),
        ]);
        r.add(
            Accept,
            Out,
            "ipv6",
            &out,
            format!("ICMPv6 from {label} to the gateway {g}"),
        );
        r.add(
            Accept,
            In,
            "ipv6",
            &[
                ("dstmacaddr", n.mac.as_str()),
                ("srcipaddr", g.as_str()),
                ("srcipmask", "128"),
                ("dstipaddr", ll.as_str()),
                ("dstipmask", mask),
                ("protocol", "icmpv6"),
            ],
            format!("ICMPv6 from the gateway {g} to {label}"),
        );
    }
}
