//! A VM's security group as elements of virt-l3's global sets (pure).
//!
//! The table's static rules (firewall/render.rs, docs/SECURITY-GROUPS.md) look
//! packets up in sets with concatenated, interval keys (nftables' "pipapo"
//! sets): `VM address . rule network . protocol . port range` and the like. A
//! VM's rules are only elements: a change is a set-element transaction whose
//! cost does not depend on the number of VMs, and a packet costs a few set
//! lookups whatever the number of VMs and rules.
//!
//! The kernel's pipapo sets remove an element in time proportional to the
//! set's size, so the interval sets are split in [`SHARDS`] shards: a VM
//! address belongs to shard [`shard`] (a hash), the verdict maps `sg_vms4/6`
//! (ingress) and `sg_egress_restricted4/6` (egress: only VMs with an egress
//! rule of that family) send its packets to its shard's chain, which looks up
//! that shard's sets. Per packet: one hash lookup and at most five pipapo
//! lookups in sets of about N/SHARDS VMs.
//!
//! The kernel refuses elements of one set that partly overlap, so each VM's
//! boxes are made disjoint first ([`disjoint`]); two VMs never overlap (their
//! addresses differ).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::model::{Direction, Match, Protocol, RuleSet};
use crate::firewall::nfnetlink::Element;

/// What a set's key field holds (for the key bytes and the nft text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    V4,
    V6,
    Proto,
    Port,
    Byte,
}

impl Field {
    fn width(self) -> usize {
        match self {
            Field::V4 => 4,
            Field::V6 => 16,
            Field::Proto | Field::Byte => 1,
            Field::Port => 2,
        }
    }
    fn max(self) -> u128 {
        match self {
            Field::V6 => u128::MAX,
            f => (1u128 << (8 * f.width())) - 1,
        }
    }
}

/// The number of shards of each interval set.
pub const SHARDS: u32 = 64;

/// The shard of a VM address (FNV-1a of its bytes).
pub fn shard(a: IpAddr) -> u32 {
    let bytes = match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let h = bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    });
    h % SHARDS
}

/// The name of a set or chain in a shard: `sg_in4_ports_1f`.
pub fn sharded(base: &str, shard: u32) -> String {
    format!("{base}_{shard:02x}")
}

/// One kind of security-group set: base name, nft type, fields, interval
/// (sharded) or a verdict map (global).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetDef {
    pub name: &'static str,
    pub nft_type: &'static str,
    pub fields: &'static [Field],
    pub interval: bool,
}

const fn def(
    name: &'static str,
    nft_type: &'static str,
    fields: &'static [Field],
    interval: bool,
) -> SetDef {
    SetDef {
        name,
        nft_type,
        fields,
        interval,
    }
}

use Field::{Byte, Port, Proto, V4, V6};

/// Every security-group set, in the order the table declares them.
pub const SETS: [SetDef; 16] = [
    def("sg_vms4", "ipv4_addr : verdict", &[V4], false),
    def("sg_vms6", "ipv6_addr : verdict", &[V6], false),
    def("sg_egress_restricted4", "ipv4_addr : verdict", &[V4], false),
    def("sg_egress_restricted6", "ipv6_addr : verdict", &[V6], false),
    def(
        "sg_in4_ports",
        "ipv4_addr . ipv4_addr . inet_proto . inet_service",
        &[V4, V4, Proto, Port],
        true,
    ),
    def(
        "sg_in4_all",
        "ipv4_addr . ipv4_addr . inet_proto",
        &[V4, V4, Proto],
        true,
    ),
    def(
        "sg_in4_icmp",
        "ipv4_addr . ipv4_addr . icmp_type . icmp_code",
        &[V4, V4, Byte, Byte],
        true,
    ),
    def(
        "sg_in6_ports",
        "ipv6_addr . ipv6_addr . inet_proto . inet_service",
        &[V6, V6, Proto, Port],
        true,
    ),
    def(
        "sg_in6_all",
        "ipv6_addr . ipv6_addr . inet_proto",
        &[V6, V6, Proto],
        true,
    ),
    def(
        "sg_in6_icmp",
        "ipv6_addr . ipv6_addr . icmpv6_type . icmpv6_code",
        &[V6, V6, Byte, Byte],
        true,
    ),
    def(
        "sg_out4_ports",
        "ipv4_addr . ipv4_addr . inet_proto . inet_service",
        &[V4, V4, Proto, Port],
        true,
    ),
    def(
        "sg_out4_all",
        "ipv4_addr . ipv4_addr . inet_proto",
        &[V4, V4, Proto],
        true,
    ),
    def(
        "sg_out4_icmp",
        "ipv4_addr . ipv4_addr . icmp_type . icmp_code",
        &[V4, V4, Byte, Byte],
        true,
    ),
    def(
        "sg_out6_ports",
        "ipv6_addr . ipv6_addr . inet_proto . inet_service",
        &[V6, V6, Proto, Port],
        true,
    ),
    def(
        "sg_out6_all",
        "ipv6_addr . ipv6_addr . inet_proto",
        &[V6, V6, Proto],
        true,
    ),
    def(
        "sg_out6_icmp",
        "ipv6_addr . ipv6_addr . icmpv6_type . icmpv6_code",
        &[V6, V6, Byte, Byte],
        true,
    ),
];

/// A box: one inclusive range per field.
pub type Ranges = Vec<(u128, u128)>;

/// The elements of one VM in one set (for a map: with one verdict).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElements {
    pub set: SetDef,
    /// The set's name (with its shard for an interval set).
    pub name: String,
    /// For a verdict map: the chain its elements jump to.
    pub jump: Option<String>,
    pub elements: Vec<Ranges>,
}

/// The chain a map kind's elements jump to, for a shard.
fn chain_of(map: &str, shard: u32) -> String {
    let base = match map {
        "sg_vms4" => "security_in4",
        "sg_vms6" => "security_in6",
        "sg_egress_restricted4" => "security_out4",
        _ => "security_out6",
    };
    sharded(base, shard)
}

fn set_index(name: &str) -> usize {
    SETS.iter()
        .position(|s| s.name == name)
        .expect("a security-group set")
}

fn ip(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn net(n: IpNet) -> (u128, u128) {
    (ip(n.network()), ip(n.broadcast()))
}

/// A VM's elements, set by set (only sets with elements; in [`SETS`] order, then by shard).
pub fn elements(rules: &RuleSet, addresses: &[IpAddr]) -> Vec<SetElements> {
    let mut boxes: std::collections::BTreeMap<(usize, u32), Vec<Ranges>> = Default::default();
    for v6 in [false, true] {
        let mine: Vec<(u128, u32)> = addresses
            .iter()
            .filter(|a| a.is_ipv6() == v6)
            .map(|a| (ip(*a), shard(*a)))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let fam = if v6 { "6" } else { "4" };
        let closed = if v6 {
            rules.egress_closed_v6()
        } else {
            rules.egress_closed_v4()
        };
        for &(a, sh) in &mine {
            let mut add = |name: String| {
                boxes
                    .entry((set_index(&name), sh))
                    .or_default()
                    .push(vec![(a, a)]);
            };
            add(format!("sg_vms{fam}"));
            if closed {
                add(format!("sg_egress_restricted{fam}"));
            }
        }
        for r in &rules.rules {
            let dir = match r.direction {
                Direction::Ingress => "in",
                Direction::Egress => "out",
            };
            let nets: Vec<(u128, u128)> = if v6 {
                r.ipv6.iter().map(|n| net(IpNet::V6(*n))).collect()
            } else {
                r.ipv4.iter().map(|n| net(IpNet::V4(*n))).collect()
            };
            let (kind, tail): (&str, Ranges) = match (r.protocol, r.matches) {
                (Protocol::Tcp, Match::Ports { first, last }) => {
                    ("ports", vec![(6, 6), (first.into(), last.into())])
                }
                (Protocol::Udp, Match::Ports { first, last }) => {
                    ("ports", vec![(17, 17), (first.into(), last.into())])
                }
                (Protocol::Tcp, _) => ("all", vec![(6, 6)]),
                (Protocol::Udp, _) => ("all", vec![(17, 17)]),
                (Protocol::All, _) => ("all", vec![(0, 255)]),
                (Protocol::Number(n), _) => ("all", vec![(n.into(), n.into())]),
                (Protocol::Icmp, Match::Icmp { r#type, code }) => {
                    let one = |v: Option<u8>| v.map_or((0, 255), |v| (v.into(), v.into()));
                    ("icmp", vec![one(r#type), one(code)])
                }
                (Protocol::Icmp, _) => ("icmp", vec![(0, 255), (0, 255)]),
            };
            let i = set_index(&format!("sg_{dir}{fam}_{kind}"));
            for &(a, sh) in &mine {
                for n in &nets {
                    let mut b = vec![(a, a), *n];
                    b.extend(tail.iter().copied());
                    boxes.entry((i, sh)).or_default().push(b);
                }
            }
        }
    }
    boxes
        .into_iter()
        .map(|((i, sh), b)| {
            let set = SETS[i];
            let (name, jump) = if set.interval {
                (sharded(set.name, sh), None)
            } else {
                (set.name.to_string(), Some(chain_of(set.name, sh)))
            };
            SetElements {
                set,
                name,
                jump,
                elements: disjoint(&b),
            }
        })
        .collect()
}

/// The union of `boxes` (all of the same dimension) as disjoint boxes. Boxes
/// are taken largest first; each keeps only its part outside those already
/// taken (cut along one field at a time), so a box inside another disappears
/// and boxes that do not overlap stay as they are (ranges the kernel expands
/// into many prefixes appear only where rules really overlap).
pub fn disjoint(boxes: &[Ranges]) -> Vec<Ranges> {
    let volume = |b: &Ranges| -> f64 { b.iter().map(|r| (r.1 - r.0) as f64 + 1.0).product() };
    let mut sorted: Vec<&Ranges> = boxes.iter().collect();
    sorted.sort_by(|a, b| volume(b).total_cmp(&volume(a)).then_with(|| a.cmp(b)));
    let mut out: Vec<Ranges> = Vec::new();
    for b in sorted {
        let mut pieces = vec![b.clone()];
        for taken in &out {
            pieces = pieces.into_iter().flat_map(|p| minus(&p, taken)).collect();
        }
        out.extend(pieces);
    }
    out.sort();
    out
}

/// `b` without `r`, as disjoint boxes.
fn minus(b: &Ranges, r: &Ranges) -> Vec<Ranges> {
    if b.iter().zip(r).any(|(x, y)| x.1 < y.0 || y.1 < x.0) {
        return vec![b.clone()];
    }
    let mut out = Vec::new();
    let mut rest = b.clone();
    for i in 0..b.len() {
        let (lo, hi) = rest[i];
        if lo < r[i].0 {
            let mut below = rest.clone();
            below[i] = (lo, r[i].0 - 1);
            out.push(below);
        }
        if r[i].1 < hi {
            let mut above = rest.clone();
            above[i] = (r[i].1 + 1, hi);
            out.push(above);
        }
        rest[i] = (lo.max(r[i].0), hi.min(r[i].1));
    }
    out
}

/// The key bytes of one value per field (each padded to 4 bytes).
fn key(fields: &[Field], values: impl Iterator<Item = u128>) -> Vec<u8> {
    let mut out = Vec::new();
    for (f, v) in fields.iter().zip(values) {
        let w = f.width();
        out.extend_from_slice(&v.to_be_bytes()[16 - w..]);
        out.resize((out.len() + 3) & !3, 0);
    }
    out
}

/// A box as a netlink element of `s`.
pub fn netlink(s: &SetElements, b: &Ranges) -> Element {
    let set = &s.set;
    let start = key(set.fields, b.iter().map(|r| r.0));
    let key_end = set.interval.then(|| key(set.fields, b.iter().map(|r| r.1)));
    Element {
        key: start,
        key_end,
        jump: s.jump.clone(),
    }
}

/// A box as nft text: `100.64.0.10 . 0.0.0.0/0 . 6 . 22-80`, or
/// `100.64.0.10 : jump security_in4_1f` in a map.
pub fn text(s: &SetElements, b: &Ranges) -> String {
    let parts: Vec<String> = s
        .set
        .fields
        .iter()
        .zip(b)
        .map(|(f, &(lo, hi))| field_text(*f, lo, hi))
        .collect();
    match &s.jump {
        Some(chain) => format!("{} : jump {chain}", parts.join(" . ")),
        None => parts.join(" . "),
    }
}

fn field_text(f: Field, lo: u128, hi: u128) -> String {
    let one = |v: u128| match f {
        Field::V4 => Ipv4Addr::from(v as u32).to_string(),
        Field::V6 => Ipv6Addr::from(v).to_string(),
        _ => v.to_string(),
    };
    if lo == hi {
        return one(lo);
    }
    if matches!(f, Field::V4 | Field::V6) {
        // A prefix when the range is one.
        let size = hi.wrapping_sub(lo).wrapping_add(1);
        let bits = 8 * f.width() as u32;
        if (size == 0 && lo == 0 && hi == f.max()) || (size.is_power_of_two() && lo % size == 0) {
            let len = if size == 0 {
                0
            } else {
                bits - size.trailing_zeros()
            };
            return format!("{}/{len}", one(lo));
        }
    }
    format!("{}-{}", one(lo), one(hi))
}
