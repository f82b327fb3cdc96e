//! The rule model: CloudStack's security-group rules (pure).
//!
//! A rule lets traffic in (ingress, matched on the source) or out (egress,
//! matched on the destination) by protocol, port range or ICMP type/code, for
//! lists of IPv4 and IPv6 networks. Everything not allowed by an ingress rule is
//! dropped; egress is open until the VM has an egress rule for that address
//! family, then closed but for what the rules allow (CloudStack counts IPv4 and
//! IPv6 egress rules separately). Replies to allowed connections always pass.

use std::fmt;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// Which way a rule lets traffic pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// To the VM, matched on the source address (`I:`).
    Ingress,
    /// From the VM, matched on the destination address (`E:`).
    Egress,
}

/// A rule's protocol as CloudStack names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// ICMP for IPv4 networks, ICMPv6 for IPv6 networks (as security_group.py does).
    Icmp,
    /// Every protocol.
    All,
    /// An IP protocol number (0 to 255); ports are not matched.
    Number(u8),
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
            Protocol::Icmp => f.write_str("icmp"),
            Protocol::All => f.write_str("all"),
            Protocol::Number(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a rule matches beyond the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// No port or type (`all`, a protocol number, or tcp/udp with ports 0 and 0).
    Any,
    /// A destination port range (tcp/udp).
    Ports { first: u16, last: u16 },
    /// An ICMP type and code; `None` is CloudStack's -1, any.
    Icmp {
        r#type: Option<u8>,
        code: Option<u8>,
    },
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub direction: Direction,
    pub protocol: Protocol,
    #[serde(rename = "match")]
    pub matches: Match,
    /// IPv4 networks (sources for ingress, destinations for egress).
    pub ipv4: Vec<Ipv4Net>,
    /// IPv6 networks.
    pub ipv6: Vec<Ipv6Net>,
}

/// A VM's rules, in the order they were given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// CloudStack's default (`default_network_rules`): no rule, so ingress closed
    /// and egress open.
    pub fn cloudstack_default() -> RuleSet {
        RuleSet::default()
    }

    /// The rules for one direction.
    pub fn direction(&self, d: Direction) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.direction == d)
    }

    /// Whether IPv4 egress is closed but for the rules (some egress rule has an IPv4 network).
    pub fn egress_closed_v4(&self) -> bool {
        self.direction(Direction::Egress)
            .any(|r| !r.ipv4.is_empty())
    }

    /// Whether IPv6 egress is closed but for the rules.
    pub fn egress_closed_v6(&self) -> bool {
        self.direction(Direction::Egress)
            .any(|r| !r.ipv6.is_empty())
    }
}
