//! The ruleset model: what virt-l3's nftables tables must hold, built from the
//! configuration and facts about the host (pure).

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::Config;

use super::settings::{FirewallConfig, HostService, Protected};

/// Facts gathered from the kernel (see `gather`), the model's only other input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNetworks {
    /// Networks connected to the host's interfaces that are not routed bridges
    /// (interface name, network), e.g. the management and storage networks.
    pub connected: Vec<(String, IpNet)>,
    /// Ports currently enslaved to bridges virt-l3 does not route: left alone
    /// by the fail-closed rule when the kernel cannot match the bridge itself.
    pub foreign_ports: Vec<String>,
    /// Ports virt-l3 has accepted (its records): the initial elements of the
    /// `accepted_ports` set, and the devices of the link-local guard.
    pub accepted_ports: Vec<String>,
    /// Whether this kernel has `meta ibrname` (CONFIG_NFT_BRIDGE_META).
    pub bridge_meta: bool,
}

/// Everything the tables hold, in a canonical (sorted, deduplicated) form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub routed_bridges: BTreeSet<String>,
    pub gateways: BTreeSet<IpAddr>,
    pub host_allow: BTreeSet<HostService>,
    pub protected: Vec<IpNet>,
    pub foreign_ports: BTreeSet<String>,
    pub accepted_ports: BTreeSet<String>,
    pub bridge_meta: bool,
    /// Security groups enforced (`security_groups`, issue 16): only then do the
    /// tables carry their sets and per-shard chains (768 sets, 256 chains), which
    /// a host without them would pay for at every full install.
    pub security_groups: bool,
}

impl Ruleset {
    /// The ruleset for `config` and its `[firewall]` settings.
    pub fn from_config(config: &Config, host: &HostNetworks) -> Ruleset {
        Ruleset::build(config, &config.firewall, host)
    }

    /// The ruleset for `config`, the firewall settings and the host's facts.
    pub fn build(config: &Config, fw: &FirewallConfig, host: &HostNetworks) -> Ruleset {
        // Names and patterns (`brdr-*`, an nftables interface wildcard).
        let routed: BTreeSet<String> = config.bridges.iter().cloned().collect();
        let mut protected = Vec::new();
        for p in &fw.protected_networks {
            match p {
                Protected::Net(n) => protected.push(n.trunc()),
                Protected::Connected => protected.extend(
                    host.connected
                        .iter()
                        .filter(|(ifname, net)| {
                            !config.is_routed_bridge(ifname) && forwardable(net)
                        })
                        .map(|(_, net)| net.trunc()),
                ),
            }
        }
        let protected = IpNet::aggregate(&protected);
        Ruleset {
            foreign_ports: host
                .foreign_ports
                .iter()
                .filter(|p| !routed.contains(*p))
                .cloned()
                .collect(),
            accepted_ports: host.accepted_ports.iter().cloned().collect(),
            routed_bridges: routed,
            gateways: config.gateways.iter().copied().collect(),
            host_allow: fw.host_allow.iter().cloned().collect(),
            protected,
            bridge_meta: host.bridge_meta,
            security_groups: config.security_groups,
        }
    }
}

/// Whether the host could forward a guest's packet into `net`: loopback and
/// IPv6 link-local networks never are, so they add nothing to `protected`.
fn forwardable(net: &IpNet) -> bool {
    match net {
        IpNet::V4(n) => !n.addr().is_loopback(),
        IpNet::V6(n) => !n.addr().is_loopback() && (n.addr().segments()[0] & 0xffc0) != 0xfe80,
    }
}
