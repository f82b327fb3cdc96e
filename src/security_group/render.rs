//! One VM's security group as nft text (pure, deterministic): the set-element
//! transaction `apply` sends in-process, for audit
//! (`virt-l3 security-group render`) and for loading with `nft -f`.
//!
//! The static rules live in the table (firewall/render.rs); a VM's rules are
//! only elements of its global sets ([`super::elements`]). A change deletes the
//! VM's old elements that are not in its new rules and adds the new ones, in
//! one transaction: a packet sees the old rules or the new ones. Established
//! connections are accepted before any set lookup, so a change only affects
//! new connections.

use std::fmt::Write;
use std::net::IpAddr;

use super::elements::{self, SetElements};
use super::model::RuleSet;
use crate::firewall::nfnetlink::SetChange;
use crate::firewall::TABLE;

/// The elements of `old` that are not in `new`, set by set.
pub fn stale(old: &[SetElements], new: &[SetElements]) -> Vec<SetElements> {
    old.iter()
        .filter_map(|o| {
            let keep = new.iter().find(|n| n.name == o.name && n.jump == o.jump);
            let gone: Vec<_> = o
                .elements
                .iter()
                .filter(|e| !keep.is_some_and(|k| k.elements.contains(e)))
                .cloned()
                .collect();
            (!gone.is_empty()).then_some(SetElements {
                elements: gone,
                ..o.clone()
            })
        })
        .collect()
}

/// The netlink changes of one transaction replacing `old` by `new`: the stale
/// elements are added first (a no-op when present: after a flush of the table
/// they are not, and deleting an absent element would fail the transaction),
/// then deleted, then the new elements added: all of them when `full`
/// (present ones stay), else only those not in `old`.
pub fn changes(old: &[SetElements], new: &[SetElements], full: bool) -> Vec<SetChange> {
    let gone = stale(old, new);
    let added = if full { new.to_vec() } else { stale(new, old) };
    let new = &added;
    let nl = |s: &SetElements, add: bool| SetChange {
        set: s.name.clone(),
        add,
        elements: s.elements.iter().map(|b| elements::netlink(s, b)).collect(),
    };
    let mut out: Vec<SetChange> = gone.iter().map(|s| nl(s, true)).collect();
    out.extend(gone.iter().map(|s| nl(s, false)));
    out.extend(new.iter().map(|s| nl(s, true)));
    out
}

fn lines(out: &mut String, verb: &str, sets: &[SetElements]) {
    for s in sets {
        for b in &s.elements {
            let _ = writeln!(
                out,
                "{verb} element inet {TABLE} {} {{ {} }}",
                s.name,
                elements::text(s, b)
            );
        }
    }
}

/// The transaction installing (or replacing) a VM's elements: `old` are the
/// elements of its previous rules and addresses (empty when none).
pub fn apply(uuid: &str, rules: &RuleSet, addresses: &[IpAddr], old: &[SetElements]) -> String {
    let new = elements::elements(rules, addresses);
    let mut out = format!("# security group of {uuid}: elements of virt-l3's sets\n");
    lines(&mut out, "delete", &stale(old, &new));
    lines(&mut out, "add", &new);
    out
}

/// The transaction removing a VM's elements.
pub fn remove(uuid: &str, old: &[SetElements]) -> String {
    let mut out = format!("# remove the security group of {uuid}\n");
    lines(&mut out, "delete", old);
    out
}
