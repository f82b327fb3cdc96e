//! Layer 2 (priority -900): who may talk to whom.

use super::super::{Action::Drop, Direction::FromGuest as Out, Direction::ToGuest as In, Rule};
use super::view::{NicView, Rules};
use super::PRIO_SOURCE_MAC;

/// From the guest, only the NIC's MAC; to the guest, only the gateway's (when configured).
pub(super) fn rules(n: &NicView) -> Vec<Rule> {
    let mut r = Rules::at(PRIO_SOURCE_MAC);
    let mac = &n.mac;
    r.add(
        Drop,
        Out,
        "mac",
        &[("match", "no"), ("srcmacaddr", mac)],
        format!("from the guest, drop frames whose source MAC is not NIC {mac}"),
    );
    if let Some(g) = n.gateway.as_deref() {
        r.add(
            Drop,
            In,
            "mac",
            &[("match", "no"), ("srcmacaddr", g)],
            format!(
                "to the guest, drop frames not sent by the gateway {g} (another guest at layer 2)"
            ),
        );
    }
    r.into_vec()
}
