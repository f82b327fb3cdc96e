//! Renders a [`Ruleset`] as `nft -f` text (pure, deterministic).
//!
//! One transaction replaces all three tables: each is first created empty (so
//! that `delete` cannot fail), deleted, then defined in full; the kernel applies
//! the whole file or nothing, so there is never a moment without the tables.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::IpAddr;

use ipnet::IpNet;

use super::model::{HostService, Ruleset};
use crate::security_group::elements::{sharded, SETS as SG_SETS, SHARDS};

/// The tables virt-l3 owns, as `(family, name)`.
pub const TABLES: [(&str, &str); 3] = [("inet", TABLE), ("bridge", TABLE), ("netdev", TABLE)];
/// The name of each of virt-l3's tables (one per family).
pub const TABLE: &str = "virt_l3";
/// Start of the comment carried by every table: `virt-l3 ruleset <hash>`.
pub const COMMENT_PREFIX: &str = "virt-l3 ruleset ";

/// A first fragment from a guest whose header after the fragment header is
/// another extension header (hop-by-hop 0, routing 43, fragment 44, destination
/// options 60): its upper-layer header may sit in a later fragment (RFC 7112),
/// out of sight of every port and protocol rule.
pub const FIRST_FRAGMENT_RULE: &str = "iifname @routed_bridges exthdr frag exists frag frag-off 0 frag nexthdr { 0, 43, 44, 60 } counter drop comment \"first fragment without the upper-layer header (RFC 7112)\"";

/// The full transaction: replace every table with its definition.
pub fn render(r: &Ruleset) -> String {
    let hash = version(r);
    let mut out = String::from(
        "#!/usr/sbin/nft -f\n# virt-l3's tables (docs/FIREWALL.md); generated, do not edit.\n",
    );
    for (family, name) in TABLES {
        let _ = writeln!(out, "table {family} {name}\ndelete table {family} {name}");
    }
    out.push_str(&inet_table(r, &hash));
    out.push_str(&bridge_table(r, &hash, true));
    out.push_str(&netdev_table(r, &hash, true));
    out
}

/// The code that turns a model into tables: part of every version, so that a
/// change of the rendering makes installed tables stale.
const RENDERING: u64 = fnv1a_const(
    fnv1a_const(0xcbf2_9ce4_8422_2325, include_bytes!("render.rs")),
    include_bytes!("model.rs"),
);

/// The version of a ruleset: a hash of everything but the accepted ports (which
/// the hook changes element by element) and of the rendering code, carried in
/// every table's comment. Computed from the model, without rendering (the
/// hook's check computes it at every start).
pub fn version(r: &Ruleset) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = Fnv(RENDERING);
    r.routed_bridges.hash(&mut h);
    r.gateways.hash(&mut h);
    r.host_allow.hash(&mut h);
    r.protected.hash(&mut h);
    r.foreign_ports.hash(&mut h);
    r.bridge_meta.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// FNV-1a as a [`std::hash::Hasher`].
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a_const(self.0, bytes);
    }
}

const fn fnv1a_const(mut h: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h = (h ^ bytes[i] as u64).wrapping_mul(0x100_0000_01b3);
        i += 1;
    }
    h
}

/// The version and the number of rules of each table (inet, bridge, netdev
/// without accepted ports), from one rendering without set elements: what
/// `ensure_quick` compares with the installed tables.
pub fn version_and_rules(r: &Ruleset) -> (String, [usize; 3]) {
    (version(r), rule_counts(r))
}

/// The rules [`inet_table`], [`bridge_table`] and [`netdev_table`] (without
/// devices) render, counted from the model (cheap; a test compares them with
/// the rendering).
pub(crate) fn rule_counts(r: &Ruleset) -> [usize; 3] {
    // prerouting 2, fragments 1, input 1, guest_to_host 6 + host_allow,
    // forward 2, guest_egress 4, protected 2, guest_ingress 2; per security
    // group shard: security_in4 5, security_in6 6, security_out4 7, security_out6 8.
    [20 + r.host_allow.len() + 26 * SHARDS as usize, 6, 0]
}

fn quoted<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    names.into_iter().map(|n| format!("\"{n}\"")).collect()
}

fn set(out: &mut String, name: &str, ty: &str, flags: &str, elements: &[String]) {
    let kind = if ty.contains(':') { "map" } else { "set" };
    let _ = writeln!(out, "\t{kind} {name} {{\n\t\ttype {ty}");
    if !flags.is_empty() {
        let _ = writeln!(out, "\t\tflags {flags}");
    }
    if !elements.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
    }
    out.push_str("\t}\n");
}

fn chain(out: &mut String, name: &str, hook: Option<&str>, rules: &[String]) {
    let _ = writeln!(out, "\tchain {name} {{");
    if let Some(h) = hook {
        let _ = writeln!(out, "\t\t{h}");
    }
    for r in rules {
        let _ = writeln!(out, "\t\t{r}");
    }
    out.push_str("\t}\n");
}

fn service_rule(s: &HostService) -> String {
    let ports = if s.ports.0 == s.ports.1 {
        s.ports.0.to_string()
    } else {
        format!("{}-{}", s.ports.0, s.ports.1)
    };
    let addr = match s.address {
        Some(IpAddr::V4(a)) => format!("ip daddr {a} "),
        Some(IpAddr::V6(a)) => format!("ip6 daddr {a} "),
        None => String::new(),
    };
    format!(
        "{addr}{} dport {ports} accept comment \"host_allow {s}\"",
        s.proto
    )
}

fn inet_table(r: &Ruleset, hash: &str) -> String {
    let mut out = format!("table inet {TABLE} {{\n\tcomment \"{COMMENT_PREFIX}{hash}\"\n");
    // A bridge pattern (`brdr-*`) is an nftables interface wildcard, which a
    // set holds only with the interval flag.
    let wildcard = r.routed_bridges.iter().any(|b| b.ends_with('*'));
    set(
        &mut out,
        "routed_bridges",
        "ifname",
        if wildcard { "interval" } else { "" },
        &quoted(&r.routed_bridges),
    );
    let (gw4, gw6): (Vec<&IpAddr>, Vec<&IpAddr>) = r.gateways.iter().partition(|g| g.is_ipv4());
    set(
        &mut out,
        "gateways4",
        "ipv4_addr",
        "",
        &gw4.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    );
    set(
        &mut out,
        "gateways6",
        "ipv6_addr",
        "",
        &gw6.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    );
    let (p4, p6): (Vec<&IpNet>, Vec<&IpNet>) =
        r.protected.iter().partition(|n| matches!(n, IpNet::V4(_)));
    set(
        &mut out,
        "protected4",
        "ipv4_addr",
        "interval",
        &p4.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
    );
    set(
        &mut out,
        "protected6",
        "ipv6_addr",
        "interval",
        &p6.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
    );
    // Security groups (issue 16): global sets, one VM's rules are elements.
    security_sets(&mut out);
    chain(
        &mut out,
        "prerouting",
        Some("type filter hook prerouting priority raw; policy accept;"),
        &[
            "iifname @routed_bridges ip saddr != 0.0.0.0 fib saddr . iif oif missing counter drop comment \"reverse path\"".into(),
            "iifname @routed_bridges ip6 saddr != :: fib saddr . iif oif missing counter drop comment \"reverse path\"".into(),
        ],
    );
    // Before conntrack's defragmentation (-400): the kernel drops a first fragment
    // without the upper-layer header when it reassembles; this is the second line.
    chain(
        &mut out,
        "fragments",
        Some("type filter hook prerouting priority -450; policy accept;"),
        &[FIRST_FRAGMENT_RULE.into()],
    );
    chain(
        &mut out,
        "input",
        Some("type filter hook input priority filter; policy accept;"),
        &["iifname @routed_bridges jump guest_to_host".into()],
    );
    let mut to_host = vec![
        "ct state established,related accept".to_string(),
        "ct state invalid drop".into(),
        "ip6 hoplimit 255 icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept".into(),
        "ip daddr @gateways4 icmp type echo-request accept".into(),
        "ip6 daddr @gateways6 icmpv6 type echo-request accept".into(),
    ];
    to_host.extend(r.host_allow.iter().map(service_rule));
    to_host.push("counter drop comment \"guest to host\"".into());
    chain(&mut out, "guest_to_host", None, &to_host);
    chain(
        &mut out,
        "forward",
        Some("type filter hook forward priority filter; policy accept;"),
        &[
            "iifname @routed_bridges jump guest_egress".into(),
            "oifname @routed_bridges jump guest_ingress".into(),
        ],
    );
    chain(
        &mut out,
        "guest_egress",
        None,
        &[
            "ip daddr @protected4 jump protected".into(),
            "ip6 daddr @protected6 jump protected".into(),
            "ip saddr vmap @sg_egress_restricted4".into(),
            "ip6 saddr vmap @sg_egress_restricted6".into(),
        ],
    );
    chain(
        &mut out,
        "protected",
        None,
        &[
            "ct state established,related return".into(),
            "counter drop comment \"guest to a protected network\"".into(),
        ],
    );
    chain(
        &mut out,
        "guest_ingress",
        None,
        &[
            "ip daddr vmap @sg_vms4".into(),
            "ip6 daddr vmap @sg_vms6".into(),
        ],
    );
    security_chains(&mut out);
    out.push_str("}\n");
    out
}

/// The security groups' sets (issue 16): verdict maps to the shards' chains,
/// then each shard's interval sets; elements come from `security_group`.
fn security_sets(out: &mut String) {
    for d in SG_SETS.iter().filter(|d| !d.interval) {
        set(out, d.name, d.nft_type, "", &[]);
    }
    for shard in 0..SHARDS {
        for d in SG_SETS.iter().filter(|d| d.interval) {
            set(out, &sharded(d.name, shard), d.nft_type, "interval", &[]);
        }
    }
}

/// ICMPv6 a VM always sends and receives, as CloudStack's default rules allow
/// (RFC 4890: path MTU discovery and errors). Neighbour discovery is link-local
/// and never forwarded.
const ICMPV6_ESSENTIAL: &str =
    "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } return";

/// The security groups' static rules (issue 16, docs/SECURITY-GROUPS.md), one
/// chain per shard, direction and family: reached through the `sg_vms*`
/// (ingress) or `sg_egress_restricted*` (egress) verdict maps; a constant
/// number of set lookups per packet, whatever the number of VMs and rules.
/// Allowed traffic `return`s (the rest of the table applies: guest to guest,
/// the other VM's ingress).
fn security_chains(out: &mut String) {
    for shard in 0..SHARDS {
        for (dir, v6) in [("in", false), ("in", true), ("out", false), ("out", true)] {
            security_chain(out, shard, dir, v6);
        }
    }
}

fn security_chain(out: &mut String, shard: u32, dir: &str, v6: bool) {
    {
        let (f, ip, icmp) = if v6 {
            ("6", "ip6", "icmpv6")
        } else {
            ("4", "ip", "icmp")
        };
        // The VM's address first: daddr for ingress, saddr for egress.
        let (vm, other) = if dir == "in" {
            ("daddr", "saddr")
        } else {
            ("saddr", "daddr")
        };
        let mut rules = vec!["ct state established,related return".to_string()];
        if v6 {
            rules.push(ICMPV6_ESSENTIAL.into());
        }
        if dir == "out" {
            // security_group.py's default rules: outbound DNS always allowed.
            rules.push("udp dport 53 return".into());
            rules.push("tcp dport 53 return".into());
        }
        let pair = format!("{ip} {vm} . {ip} {other}");
        let set = |kind: &str| sharded(&format!("sg_{dir}{f}_{kind}"), shard);
        rules.push(format!(
            "{pair} . meta l4proto . th dport @{} return",
            set("ports")
        ));
        rules.push(format!("{pair} . meta l4proto @{} return", set("all")));
        rules.push(format!(
            "{pair} . {icmp} type . {icmp} code @{} return",
            set("icmp")
        ));
        let what = if dir == "in" { "ingress" } else { "egress" };
        rules.push(format!(
            "counter drop comment \"security group: {what} default\""
        ));
        chain(
            out,
            &sharded(&format!("security_{dir}{f}"), shard),
            None,
            &rules,
        );
    }
}

/// The bridge table: fail-closed ports and link-local control frames.
/// `meta ibrname` scopes the rules to the routed bridges where the kernel has
/// it; elsewhere the rules cover every bridge port but `foreign_ports`.
fn bridge_table(r: &Ruleset, hash: &str, elements: bool) -> String {
    let mut out = format!("table bridge {TABLE} {{\n\tcomment \"{COMMENT_PREFIX}{hash}\"\n");
    let accepted = if elements {
        quoted(&r.accepted_ports)
    } else {
        Vec::new()
    };
    set(&mut out, "accepted_ports", "ifname", "", &accepted);
    let (scope_in, scope_out) = if r.bridge_meta {
        set(
            &mut out,
            "routed_bridges",
            "ifname",
            "",
            &quoted(&r.routed_bridges),
        );
        (
            "meta ibrname @routed_bridges ",
            "meta obrname @routed_bridges ",
        )
    } else {
        set(
            &mut out,
            "foreign_ports",
            "ifname",
            "",
            &quoted(&r.foreign_ports),
        );
        ("iifname != @foreign_ports ", "oifname != @foreign_ports ")
    };
    let link_local = format!("{scope_in}ether daddr 01:80:c2:00:00:00-01:80:c2:00:00:0f counter drop comment \"link-local control frame\"");
    let from =
        format!("{scope_in}iifname != @accepted_ports counter drop comment \"port not accepted\"");
    let to =
        format!("{scope_out}oifname != @accepted_ports counter drop comment \"port not accepted\"");
    chain(
        &mut out,
        "prerouting",
        Some("type filter hook prerouting priority filter; policy accept;"),
        &[from.clone(), link_local.clone()],
    );
    chain(
        &mut out,
        "input",
        Some("type filter hook input priority filter; policy accept;"),
        &[from, link_local],
    );
    chain(
        &mut out,
        "forward",
        Some("type filter hook forward priority filter; policy accept;"),
        std::slice::from_ref(&to),
    );
    chain(
        &mut out,
        "output",
        Some("type filter hook output priority filter; policy accept;"),
        &[to],
    );
    out.push_str("}\n");
    out
}

/// The netdev table: drops link-local control frames on each accepted port
/// before the bridge (LLDP and, with STP on, BPDUs pass no bridge hook).
/// Without ports it holds no chain (a netdev base chain needs a device).
fn netdev_table(r: &Ruleset, hash: &str, devices: bool) -> String {
    let mut out = format!("table netdev {TABLE} {{\n\tcomment \"{COMMENT_PREFIX}{hash}\"\n");
    let ports: BTreeSet<&String> = if devices {
        r.accepted_ports.iter().collect()
    } else {
        BTreeSet::new()
    };
    if !ports.is_empty() {
        let hook = format!(
            "type filter hook ingress devices = {{ {} }} priority -500; policy accept;",
            quoted(ports).join(", ")
        );
        chain(
            &mut out,
            "guard",
            Some(&hook),
            &["ether daddr 01:80:c2:00:00:00-01:80:c2:00:00:0f counter drop comment \"link-local control frame\"".into()],
        );
    }
    out.push_str("}\n");
    out
}
