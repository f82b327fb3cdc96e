//! The XML comment above a per-NIC filter: whose it is and how to read it.

use crate::plan::Nic;

/// The header lines of the filter of `nic`, given the gateway MAC if configured.
pub(super) fn lines(nic: &Nic, gateway: Option<&str>) -> Vec<String> {
    let addresses: Vec<String> = nic.addresses.iter().map(ToString::to_string).collect();
    let routed: Vec<String> = nic
        .routed_prefixes
        .iter()
        .map(|p| format!("{} via {}", p.prefix, p.via))
        .collect();
    vec![
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
        match gateway {
            Some(g) => format!("Gateway MAC: {g} (the only layer-2 peer of the guest)."),
            None => {
                "Gateway MAC: not configured; bridge port isolation keeps guests apart at layer 2."
                    .to_string()
            }
        },
        "Rendered by `virt-l3 nwfilter render`; do not edit, re-render and define.".to_string(),
        "Rules run by priority, lowest first; the first accept or drop decides.".to_string(),
        "'out' is traffic from the guest, 'in' traffic to it.".to_string(),
    ]
}
