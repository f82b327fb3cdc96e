//! The `control-network` item: CloudStack's link-local control network (cloud0) must not
//! hold the guests' gateway address.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use super::facts::KernelFacts;
use super::{fail, ok, CheckOptions, Item};
use crate::config::Config;

/// `control-network`: no other interface's IPv4 network holds a guests' gateway (as
/// CloudStack's cloud0, 169.254.0.0/16 by default, holds 169.254.0.1).
pub(super) fn control_network(config: &Config, opts: &CheckOptions, facts: &KernelFacts) -> Item {
    let mut clashes = Vec::new();
    for a in &facts.addresses {
        let name = facts.name(a.index);
        if config.is_routed_bridge(&name) || !a.net.addr().is_ipv4() {
            continue;
        }
        for g in config.gateways.iter().filter(|g| g.is_ipv4()) {
            if a.net.trunc().contains(g) {
                clashes.push((name.clone(), a.net, *g));
            }
        }
    }
    if clashes.is_empty() {
        return ok(
            "control-network",
            None,
            "No other interface's IPv4 network holds the guests' gateway address.".to_string(),
        );
    }
    let current = control_cidr(&opts.agent_properties);
    let list: Vec<String> = clashes
        .iter()
        .map(|(n, net, g)| format!("{net} on {n} holds the gateway {g}"))
        .collect();
    let cloudstack = clashes.iter().any(|(n, _, _)| n == "cloud0");
    let mut summary = format!(
        "The guests' gateway is also another interface's network: {}. Traffic the host sends to that network, and guests' traffic to it, goes out there instead of staying on the routed bridge",
        list.join("; ")
    );
    if cloudstack {
        summary.push_str(
            " (cloud0 is CloudStack's control network for system VMs: guests could reach it)",
        );
    }
    summary.push('.');
    let (iface, net, gateway) = &clashes[0];
    let fix = move_control_network(
        &opts.agent_properties,
        current.as_deref(),
        *gateway,
        *net,
        iface,
    );
    fail("control-network", None, summary, fix)
}

/// cloudstack-agent's `control.cidr` in its properties file, if set.
fn control_cidr(properties: &Path) -> Option<String> {
    let t = std::fs::read_to_string(properties).ok()?;
    t.lines().map(str::trim).find_map(|l| {
        l.strip_prefix("control.cidr")
            .map(|v| v.trim_start_matches([' ', '=', ':']).trim().to_string())
    })
}

/// The fix of `control-network`: move CloudStack's control network (set now to
/// `current`) off `gateway`, which `net` on `iface` holds; or choose other gateways.
fn move_control_network(
    properties: &Path,
    current: Option<&str>,
    gateway: IpAddr,
    net: IpNet,
    iface: &str,
) -> String {
    format!(
        "Move CloudStack's control network off the gateway: set control.cidr in {} (now {}) to a link-local range without {gateway}, e.g. `control.cidr=169.254.128.0/17` (cloud0 then gets 169.254.128.1), set the zone's control.cidr and control.gateway in the management server to match, restart cloudstack-agent and remove the old address (ip address del {net} dev {iface}). Or choose other guest gateways (`gateways` in virt-l3's configuration) outside every local network.",
        properties.display(),
        current.unwrap_or("unset: the default 169.254.0.0/16"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_control_cidr() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.properties");
        assert_eq!(control_cidr(&p), None);
        std::fs::write(&p, "a=b\n  control.cidr = 169.254.0.0/16 \n").unwrap();
        assert_eq!(control_cidr(&p).as_deref(), Some("169.254.0.0/16"));
        std::fs::write(&p, "control.cidr:10.0.0.0/8\n").unwrap();
        assert_eq!(control_cidr(&p).as_deref(), Some("10.0.0.0/8"));
    }

    #[test]
    fn the_fix_names_the_clash() {
        let fix = move_control_network(
            Path::new("/p"),
            None,
            "169.254.0.1".parse().unwrap(),
            "169.254.0.10/16".parse().unwrap(),
            "cloud0",
        );
        assert!(fix.starts_with(
            "Move CloudStack's control network off the gateway: set control.cidr in /p \
             (now unset: the default 169.254.0.0/16) to a link-local range without 169.254.0.1,"
        ));
        assert!(fix.contains("(ip address del 169.254.0.10/16 dev cloud0)"));
    }
}
