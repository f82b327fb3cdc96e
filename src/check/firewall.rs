//! The `firewall` and `ports` items: virt-l3's nftables tables are installed
//! and current, and which ports of the routed bridges they block
//! (docs/FIREWALL.md).

use super::facts::KernelFacts;
use super::{fail, ok, warn, Item};
use crate::config::Config;
use crate::firewall::{self, FirewallError};

/// Fix of `firewall` when the tables are missing or stale.
const INSTALL: &str = "virt-l3 firewall install (or systemctl restart virt-l3-reconcile); `virt-l3 firewall render` shows what it installs. Keep virt-l3-watch running: it restores the tables when they are flushed.";

/// `firewall`: the tables are installed and carry the ruleset this host needs now.
pub(super) async fn firewall(config: &Config) -> Item {
    if !config.firewall.enabled {
        return warn(
            "firewall",
            None,
            "virt-l3's nftables tables are disabled ([firewall] enabled = false): guests reach the host and the protected networks, and ports without virt-l3's filter pass frames.".into(),
            "Remove `enabled = false` from [firewall] in the configuration, then run virt-l3 firewall install.".into(),
        );
    }
    let current = match firewall::desired(config, &config.firewall).await {
        Ok(r) => firewall::installed_matches(&r).map(|m| (m, r)),
        Err(e) => Err(e),
    };
    match current {
        Ok((true, r)) => ok(
            "firewall",
            None,
            format!(
                "virt-l3's nftables tables are installed and current (version {}).",
                firewall::version(&r)
            ),
        ),
        Ok((false, _)) => fail(
            "firewall",
            None,
            "virt-l3's nftables tables are missing or stale (flushed, or made for other bridges, networks or services): the host is not protected from its guests.".into(),
            INSTALL.into(),
        ),
        Err(e) => fail(
            "firewall",
            None,
            format!("Cannot inspect virt-l3's nftables tables: {}.", sentence(&e)),
            "Install Debian's nftables package (the nft binary), then virt-l3 firewall install.".into(),
        ),
    }
}

fn sentence(e: &FirewallError) -> String {
    e.to_string().trim_end_matches('.').to_string()
}

/// `ports`: the ports of the routed bridges that virt-l3 has not accepted
/// (they pass no frame), each with its domain when libvirt's status files name it.
pub(super) fn ports(config: &Config, facts: &KernelFacts) -> Item {
    if !config.firewall.enabled {
        return ok(
            "ports",
            None,
            "The firewall is disabled: no port is blocked.".into(),
        );
    }
    let accepted = match firewall::nft::accepted_ports() {
        Ok(a) => a,
        Err(e) => {
            return fail(
                "ports",
                None,
                format!("Cannot list the accepted ports: {}.", sentence(&e)),
                "Install Debian's nftables package (the nft binary).".into(),
            )
        }
    };
    let bridges: Vec<u32> = facts
        .links
        .iter()
        .filter(|l| config.is_routed_bridge(&l.name))
        .map(|l| l.index)
        .collect();
    let ports: Vec<&str> = facts
        .links
        .iter()
        .filter(|l| l.master.is_some_and(|m| bridges.contains(&m)))
        .map(|l| l.name.as_str())
        .collect();
    let blocked: Vec<&str> = ports
        .iter()
        .copied()
        .filter(|p| !accepted.iter().any(|a| a == p))
        .collect();
    if blocked.is_empty() {
        return ok(
            "ports",
            None,
            format!(
                "All {} port(s) of the routed bridges are accepted by virt-l3.",
                ports.len()
            ),
        );
    }
    let owners = crate::reconcile::observe::tap_owners(&config.libvirt_status_dir);
    let named: Vec<String> = blocked
        .iter()
        .map(|p| match owners.get(*p) {
            Some(d) => format!("{p} (domain {d})"),
            None => format!("{p} (no running domain names it)"),
        })
        .collect();
    warn(
        "ports",
        None,
        format!(
            "Blocked (not accepted by virt-l3, they pass no frame): {}.",
            named.join(", ")
        ),
        "A NIC hot-plugged without the start hook stays blocked: restart the domain (virsh shutdown, virsh start) so that its start hook routes and accepts it; a port that belongs to no domain can be removed (ip link del PORT).".into(),
    )
}
