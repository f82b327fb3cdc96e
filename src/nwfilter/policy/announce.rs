//! qemu's self-announcement after migration (priority -690), whatever the NIC's families.

use super::super::{Action::Accept, Direction::FromGuest as Out, Rule};
use super::view::{NicView, Rules, BROADCAST};
use super::PRIO_ANNOUNCE;

/// net/announce.c: a RARP request broadcast from the guest's MAC, so the bridge
/// learns where the MAC is now.
pub(super) fn rules(n: &NicView) -> Vec<Rule> {
    let mut r = Rules::at(PRIO_ANNOUNCE);
    let mac = &n.mac;
    r.add(
        Accept,
        Out,
        "rarp",
        &[
            ("dstmacaddr", BROADCAST),
            ("opcode", "Request_Reverse"),
            ("arpsrcmacaddr", mac),
            ("arpdstmacaddr", mac),
            ("arpsrcipaddr", "0.0.0.0"),
            ("arpdstipaddr", "0.0.0.0"),
        ],
        format!("qemu announce-self after migration: RARP broadcast for {mac}"),
    );
    r.into_vec()
}
