//! The ruleset model: what virt-l3's nftables tables must hold, built from the
//! configuration and facts about the host (pure).

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The link-local IPv4 network beyond the gateway (CloudStack's control network, metadata).
pub const LINK_LOCAL_V4: &str = "169.254.0.0/16";

/// Firewall settings: the `[firewall]` table of the configuration file (`Config::firewall`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirewallConfig {
    /// Install the tables and fail closed at every routed-bridge port (security:
    /// on by default). `false`: virt-l3 owns no tables (and removes them).
    pub enabled: bool,
    /// Host services guests may reach, `PROTO/PORT[-PORT][@ADDRESS]`
    /// (e.g. `"tcp/80@169.254.169.254"`, `"udp/53"`): everything else from a
    /// guest to the host is dropped.
    pub host_allow: Vec<HostService>,
    /// Networks guests may not open connections to: CIDRs, and the word
    /// `connected` for the host's connected networks on non-routed interfaces.
    pub protected_networks: Vec<Protected>,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            enabled: true,
            host_allow: Vec::new(),
            protected_networks: vec![
                Protected::Connected,
                Protected::Net(LINK_LOCAL_V4.parse().expect("a valid network")),
            ],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("`host_allow` entry {entry:?} is malformed: {why} (expected PROTO/PORT[-PORT][@ADDRESS], PROTO tcp or udp, e.g. \"tcp/80@169.254.169.254\")")]
    HostAllow { entry: String, why: &'static str },
    #[error("`protected_networks` entry {entry:?} is neither a network in CIDR notation nor `connected`")]
    Protected { entry: String },
}

/// Transport protocol of a host service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One `host_allow` entry: a protocol, a port range and optionally one host address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostService {
    pub proto: Proto,
    pub ports: (u16, u16),
    pub address: Option<IpAddr>,
}

impl FromStr for HostService {
    type Err = EntryError;
    fn from_str(entry: &str) -> Result<Self, EntryError> {
        let bad = |why| EntryError::HostAllow {
            entry: entry.to_string(),
            why,
        };
        let (service, address) = match entry.split_once('@') {
            Some((s, a)) => (
                s,
                Some(
                    a.parse::<IpAddr>()
                        .map_err(|_| bad("the address is not an IP address"))?,
                ),
            ),
            None => (entry, None),
        };
        let (proto, ports) = service
            .split_once('/')
            .ok_or_else(|| bad("no '/' between protocol and port"))?;
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => return Err(bad("the protocol is not tcp or udp")),
        };
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("a port is not a number from 1 to 65535"))
        };
        let ports = match ports.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(ports)?, port(ports)?),
        };
        if ports.0 > ports.1 {
            return Err(bad("the port range is reversed"));
        }
        Ok(HostService {
            proto,
            ports,
            address,
        })
    }
}

impl fmt::Display for HostService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.proto, self.ports.0)?;
        if self.ports.1 != self.ports.0 {
            write!(f, "-{}", self.ports.1)?;
        }
        if let Some(a) = self.address {
            write!(f, "@{a}")?;
        }
        Ok(())
    }
}

/// One `protected_networks` entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protected {
    /// The host's connected networks on interfaces that are not routed bridges.
    Connected,
    Net(IpNet),
}

impl FromStr for Protected {
    type Err = EntryError;
    fn from_str(entry: &str) -> Result<Self, EntryError> {
        if entry == "connected" {
            return Ok(Protected::Connected);
        }
        entry
            .parse::<IpNet>()
            .map(|n| Protected::Net(n.trunc()))
            .map_err(|_| EntryError::Protected {
                entry: entry.to_string(),
            })
    }
}

impl fmt::Display for Protected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protected::Connected => f.write_str("connected"),
            Protected::Net(n) => write!(f, "{n}"),
        }
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(HostService);
string_serde!(Protected);

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
