//! ARP (priority -700), IPv4 NICs only: from the NIC's MAC and addresses, for its addresses.

use super::super::{Action::Accept, Direction::FromGuest as Out, Direction::ToGuest as In, Rule};
use super::view::{NicView, Rules, BROADCAST};
use super::PRIO_ARP;

/// Five rules per IPv4 address: broadcast, unicast and probe out; unicast and broadcast in.
pub(super) fn rules(n: &NicView) -> Vec<Rule> {
    let mut r = Rules::at(PRIO_ARP);
    let mac = &n.mac;
    let to_gateway = n.to_gateway();
    for a in &n.v4 {
        let a = a.to_string();
        r.add(
            Accept,
            Out,
            "arp",
            &[
                ("dstmacaddr", BROADCAST),
                ("arpsrcmacaddr", mac),
                ("arpsrcipaddr", &a),
            ],
            format!("ARP broadcast from {mac} as {a} (asks for the gateway, announces {a})"),
        );
        let mut unicast = n.unicast_out();
        unicast.extend([
            ("arpsrcmacaddr", mac.as_str()),
            ("arpsrcipaddr", a.as_str()),
        ]);
        r.add(
            Accept,
            Out,
            "arp",
            &unicast,
            format!("unicast ARP{to_gateway} from {mac} as {a} (replies, reachability probes)"),
        );
        r.add(
            Accept,
            Out,
            "arp",
            &[
                ("dstmacaddr", BROADCAST),
                ("arpsrcmacaddr", mac),
                ("arpsrcipaddr", "0.0.0.0"),
                ("arpdstipaddr", &a),
            ],
            format!("ARP probe for {a} before the guest uses it (RFC 5227 conflict detection)"),
        );
        r.add(
            Accept,
            In,
            "arp",
            &[("dstmacaddr", mac), ("arpdstipaddr", &a)],
            format!("to the guest, unicast ARP for its address {a}"),
        );
        r.add(
            Accept,
            In,
            "arp",
            &[("dstmacaddr", BROADCAST), ("arpdstipaddr", &a)],
            format!("to the guest, ARP broadcast asking for its address {a}"),
        );
    }
    r.into_vec()
}
