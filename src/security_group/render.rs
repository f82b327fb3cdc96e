//! One VM's security group as nftables text (pure, deterministic).
//!
//! In virt-l3's `inet` table (docs/FIREWALL.md), per VM: chain `sg_in_<uuid>`
//! (traffic to the VM, reached through the `vm_ingress4/6` verdict maps by
//! destination address) and chain `sg_out_<uuid>` (traffic from the VM, through
//! `vm_egress4/6` by source address). A packet costs one map lookup, whatever
//! the number of VMs, and then walks only its own VM's chain. Allowed traffic
//! `return`s (the rest of the table still applies: guest to guest, the other
//! VM's ingress chain); what is not allowed is dropped.
//!
//! Each change is one transaction: the chains are created if missing, flushed
//! and refilled, the map elements updated; the kernel applies all of it or
//! nothing, so a packet sees the old rules or the new ones, never an empty chain.
//! Established connections are accepted first, so a rule change only affects
//! new connections.

use std::fmt::Write;
use std::net::IpAddr;

use super::model::{Direction, Match, Protocol, Rule, RuleSet};
use crate::firewall::TABLE;

/// ICMPv6 a VM always sends and receives, as CloudStack's default rules allow
/// (RFC 4890: path MTU discovery and errors). Neighbour discovery is link-local
/// and never forwarded.
const ICMPV6_ESSENTIAL: &str =
    "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } return";

/// The ingress chain of the VM with this UUID.
pub fn ingress_chain(uuid: &str) -> String {
    format!("sg_in_{uuid}")
}

/// The egress chain of the VM with this UUID.
pub fn egress_chain(uuid: &str) -> String {
    format!("sg_out_{uuid}")
}

/// The rules of the ingress chain.
pub fn ingress_rules(rules: &RuleSet) -> Vec<String> {
    let mut out = vec![
        "ct state established,related return".to_string(),
        ICMPV6_ESSENTIAL.to_string(),
    ];
    for r in rules.direction(Direction::Ingress) {
        out.extend(rule_lines(r));
    }
    out.push("counter drop comment \"security group: ingress default\"".into());
    out
}

/// The rules of the egress chain.
pub fn egress_rules(rules: &RuleSet) -> Vec<String> {
    let mut out = vec![
        "ct state established,related return".to_string(),
        ICMPV6_ESSENTIAL.to_string(),
        // security_group.py's default rules: outbound DNS always allowed.
        "udp dport 53 return".into(),
        "tcp dport 53 return".into(),
    ];
    for r in rules.direction(Direction::Egress) {
        out.extend(rule_lines(r));
    }
    if rules.egress_closed_v4() {
        out.push(
            "meta nfproto ipv4 counter drop comment \"security group: egress default\"".into(),
        );
    }
    if rules.egress_closed_v6() {
        out.push(
            "meta nfproto ipv6 counter drop comment \"security group: egress default\"".into(),
        );
    }
    out
}

/// The nft lines of one rule: one per family that has networks.
fn rule_lines(r: &Rule) -> Vec<String> {
    let mut out = Vec::new();
    let side = match r.direction {
        Direction::Ingress => "saddr",
        Direction::Egress => "daddr",
    };
    if !r.ipv4.is_empty() {
        let addr = if r.ipv4.iter().any(|n| n.prefix_len() == 0) {
            "meta nfproto ipv4".to_string()
        } else {
            format!("ip {side} {}", set_of(&r.ipv4))
        };
        out.push(format!("{addr} {}return", proto_match(r, false)));
    }
    if !r.ipv6.is_empty() {
        let addr = if r.ipv6.iter().any(|n| n.prefix_len() == 0) {
            "meta nfproto ipv6".to_string()
        } else {
            format!("ip6 {side} {}", set_of(&r.ipv6))
        };
        out.push(format!("{addr} {}return", proto_match(r, true)));
    }
    out
}

fn set_of<T: std::fmt::Display>(nets: &[T]) -> String {
    if nets.len() == 1 {
        return nets[0].to_string();
    }
    let items: Vec<String> = nets.iter().map(ToString::to_string).collect();
    format!("{{ {} }}", items.join(", "))
}

/// The protocol part, ending with a space when not empty. tcp, udp and all match
/// new connections only (security_group.py's `--state NEW`); icmp and protocol
/// numbers are stateless there too.
fn proto_match(r: &Rule, v6: bool) -> String {
    let ports = match r.matches {
        Match::Ports { first, last } if first == last => format!(" dport {first}"),
        Match::Ports { first, last } => format!(" dport {first}-{last}"),
        _ => String::new(),
    };
    match r.protocol {
        Protocol::Tcp | Protocol::Udp if ports.is_empty() => {
            format!("meta l4proto {} ct state new ", r.protocol)
        }
        Protocol::Tcp => format!("tcp{ports} ct state new "),
        Protocol::Udp => format!("udp{ports} ct state new "),
        Protocol::All => "ct state new ".to_string(),
        Protocol::Number(n) => format!("meta l4proto {n} "),
        Protocol::Icmp => {
            let (l4, kw) = if v6 {
                ("ipv6-icmp", "icmpv6")
            } else {
                ("icmp", "icmp")
            };
            match r.matches {
                Match::Icmp {
                    r#type: Some(t),
                    code: Some(c),
                } => format!("{kw} type {t} {kw} code {c} "),
                Match::Icmp {
                    r#type: Some(t),
                    code: None,
                } => format!("{kw} type {t} "),
                _ => format!("meta l4proto {l4} "),
            }
        }
    }
}

/// The verdict-map elements of a VM: `(map, address, chain)` for each address.
pub fn map_elements(uuid: &str, addresses: &[IpAddr]) -> Vec<(&'static str, IpAddr, String)> {
    let mut out = Vec::new();
    for a in addresses {
        let (ing, eg) = if a.is_ipv4() {
            ("vm_ingress4", "vm_egress4")
        } else {
            ("vm_ingress6", "vm_egress6")
        };
        out.push((ing, *a, ingress_chain(uuid)));
        out.push((eg, *a, egress_chain(uuid)));
    }
    out
}

/// The transaction installing (or replacing) a VM's chains and map elements.
/// `stale` are addresses the VM had and no longer has: their elements go.
/// Without `addresses` (enforcement off) the chains are installed but not reached.
pub fn apply(uuid: &str, rules: &RuleSet, addresses: &[IpAddr], stale: &[IpAddr]) -> String {
    let mut out = format!("# security group of {uuid}\n");
    for (chain, lines) in [
        (ingress_chain(uuid), ingress_rules(rules)),
        (egress_chain(uuid), egress_rules(rules)),
    ] {
        let _ = writeln!(out, "add chain inet {TABLE} {chain}");
        let _ = writeln!(out, "flush chain inet {TABLE} {chain}");
        for l in lines {
            let _ = writeln!(out, "add rule inet {TABLE} {chain} {l}");
        }
    }
    remove_elements(&mut out, uuid, stale);
    for (map, addr, chain) in map_elements(uuid, addresses) {
        let _ = writeln!(
            out,
            "add element inet {TABLE} {map} {{ {addr} : jump {chain} }}"
        );
    }
    out
}

/// Deletes a VM's elements for `addresses` whether or not they exist: an element
/// is added first (a no-op when present with the same verdict), then deleted.
/// An address mapped to another VM's chain makes the transaction fail (EBUSY).
fn remove_elements(out: &mut String, uuid: &str, addresses: &[IpAddr]) {
    for (map, addr, chain) in map_elements(uuid, addresses) {
        let _ = writeln!(
            out,
            "add element inet {TABLE} {map} {{ {addr} : jump {chain} }}"
        );
        let _ = writeln!(out, "delete element inet {TABLE} {map} {{ {addr} }}");
    }
}

/// The transaction removing a VM's chains and its elements for `addresses`.
pub fn remove(uuid: &str, addresses: &[IpAddr]) -> String {
    let mut out = format!("# remove the security group of {uuid}\n");
    for chain in [ingress_chain(uuid), egress_chain(uuid)] {
        let _ = writeln!(out, "add chain inet {TABLE} {chain}");
    }
    remove_elements(&mut out, uuid, addresses);
    for chain in [ingress_chain(uuid), egress_chain(uuid)] {
        let _ = writeln!(out, "flush chain inet {TABLE} {chain}");
        let _ = writeln!(out, "delete chain inet {TABLE} {chain}");
    }
    out
}

/// The chains as they read in `nft list table` (for `security-group render`).
pub fn chains(uuid: &str, rules: &RuleSet) -> String {
    let mut out = String::new();
    for (chain, lines) in [
        (ingress_chain(uuid), ingress_rules(rules)),
        (egress_chain(uuid), egress_rules(rules)),
    ] {
        let _ = writeln!(out, "chain {chain} {{");
        for l in lines {
            let _ = writeln!(out, "\t{l}");
        }
        out.push_str("}\n");
    }
    out
}
