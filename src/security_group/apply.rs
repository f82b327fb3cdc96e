//! The effects: one in-process nfnetlink transaction of set elements per VM
//! change (no `nft` fork), and the rules kept in the state directory
//! (`security-groups/`, see `state/security_groups.rs`). A VM's installed
//! elements are known from its stored rules and addresses (`applied`).
//!
//! With `security_groups = false` (the default) rules are stored but nothing is
//! installed: no element. With it on, a running VM always has its elements:
//! its stored rules, or CloudStack's default (ingress closed, egress open) when
//! none are known; never "open".

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::elements::{elements, SetElements};
use super::model::RuleSet;
use super::parse::parse_rules;
use super::render;
use super::SecurityGroupError;
use crate::config::Config;
use crate::firewall::nfnetlink::{self, Failed};
use crate::firewall::TABLE;
use crate::plan::{display_name, is_valid_uuid};
use crate::state::{now_ms, Record, SgKey, StateDir};

/// What is stored for a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The rules exactly as given (CloudStack's rule string).
    pub rules: String,
    /// When they were set (milliseconds since the epoch).
    pub set_at_ms: u64,
    /// The addresses whose map elements were last installed for these rules.
    #[serde(default)]
    pub applied: Vec<IpAddr>,
}

/// A domain named on the command line (or by CloudStack's agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: Option<String>,
    pub uuid: Option<String>,
    /// Its addresses on this host (from virt-l3's record; empty when it has none).
    pub addresses: Vec<IpAddr>,
    /// Whether virt-l3 has a record for it (it runs, or is about to, here).
    pub on_host: bool,
}

impl Target {
    /// How errors and output name it.
    pub fn label(&self) -> String {
        match (&self.name, &self.uuid) {
            (Some(n), _) => display_name(n),
            (None, Some(u)) => u.clone(),
            (None, None) => "?".to_string(),
        }
    }

    fn key(&self) -> SgKey {
        match (&self.uuid, &self.name) {
            (Some(u), _) => SgKey::Uuid(u.clone()),
            (None, Some(n)) => SgKey::Name(n.clone()),
            (None, None) => SgKey::Name(String::new()),
        }
    }

    /// A domain virt-l3 has a record for.
    pub fn from_record(r: &Record) -> Target {
        Target {
            name: Some(r.plan.name.clone()),
            uuid: Some(r.plan.uuid.clone()),
            addresses: addresses(r),
            on_host: true,
        }
    }
}

/// A domain's addresses (the map keys of its security group).
fn addresses(r: &Record) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = r.plan.addresses().collect();
    out.sort();
    out.dedup();
    out
}

/// Finds a domain by UUID or name through virt-l3's records. A name virt-l3
/// does not know yet (CloudStack programs rules before an incoming migration)
/// is kept as a name: its rules are stored and applied when the domain starts.
pub fn resolve(state: &StateDir, domain: &str) -> Result<Target, SecurityGroupError> {
    let record = if is_valid_uuid(domain) {
        state.record(domain)?
    } else {
        state.record_by_name(domain)?
    };
    Ok(match record {
        Some(r) => Target::from_record(&r),
        None if is_valid_uuid(domain) => Target {
            name: None,
            uuid: Some(domain.to_string()),
            addresses: Vec::new(),
            on_host: false,
        },
        None => Target {
            name: Some(domain.to_string()),
            uuid: None,
            addresses: Vec::new(),
            on_host: false,
        },
    })
}

/// The stored rules of a target (by UUID, then by name) and what they parse to.
pub fn load(
    state: &StateDir,
    target: &Target,
) -> Result<Option<(Stored, RuleSet)>, SecurityGroupError> {
    let mut keys = Vec::new();
    if let Some(u) = &target.uuid {
        keys.push(SgKey::Uuid(u.clone()));
    }
    if let Some(n) = &target.name {
        keys.push(SgKey::Name(n.clone()));
    }
    for key in keys {
        let Some(bytes) = state.security_group(&key)? else {
            continue;
        };
        let corrupt = |message: String| SecurityGroupError::Corrupt {
            domain: target.label(),
            message,
        };
        let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let rules = parse_rules(&stored.rules).map_err(|e| corrupt(e.to_string()))?;
        return Ok(Some((stored, rules)));
    }
    Ok(None)
}

/// What [`set`] and [`apply_domain`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Installed for these addresses.
    Installed(Vec<IpAddr>),
    /// Stored only: enforcement is off (`security_groups = false`).
    NotEnforced,
    /// Stored only: the domain does not run on this host (applied at its start).
    NotOnHost,
}

/// One set-element transaction replacing `old` by `new`.
fn transaction(
    full: bool,
    domain: &str,
    old: &[SetElements],
    new: &[SetElements],
    what: &str,
) -> Result<(), SecurityGroupError> {
    let changes = render::changes(old, new, full);
    nfnetlink::batch(nfnetlink::NFPROTO_INET, TABLE, &changes).map_err(|f| {
        let what = match &f {
            Failed::Errno(_, set) => format!("{what} (set {set})"),
            Failed::Io(_) => what.to_string(),
        };
        SecurityGroupError::Nft {
            domain: domain.to_string(),
            source: f.into_error(&what),
        }
    })
}

/// The elements installed for stored rules (`None`: the default's, for `addresses`).
fn installed(previous: Option<&(Stored, RuleSet)>, addresses: &[IpAddr]) -> Vec<SetElements> {
    match previous {
        Some((s, r)) => elements(r, &s.applied),
        None => elements(&RuleSet::cloudstack_default(), addresses),
    }
}

/// Installs `rules` for `target` (one transaction replacing the elements of
/// `previous`) when enforcement is on and the domain is on this host. `full`:
/// every element is sent, present or not (the hook, reconcile: the table may
/// have been reinstalled); otherwise only what changes (`security-group set`:
/// a jump element sent makes the kernel validate the whole table, in time
/// proportional to the number of VMs).
fn install(
    config: &Config,
    target: &Target,
    rules: &RuleSet,
    previous: &[SetElements],
    full: bool,
) -> Result<Outcome, SecurityGroupError> {
    if !config.security_groups {
        return Ok(Outcome::NotEnforced);
    }
    let (Some(_), true) = (&target.uuid, target.on_host) else {
        return Ok(Outcome::NotOnHost);
    };
    let new = elements(rules, &target.addresses);
    transaction(
        full,
        &target.label(),
        previous,
        &new,
        "apply a security group",
    )?;
    Ok(Outcome::Installed(target.addresses.clone()))
}

fn save(state: &StateDir, target: &Target, stored: &Stored) -> Result<(), SecurityGroupError> {
    let bytes = serde_json::to_vec_pretty(stored).expect("a security group serializes");
    state.save_security_group(&target.key(), &bytes)?;
    if let (Some(_), Some(n)) = (&target.uuid, &target.name) {
        // Rules given by name before the domain was known are now kept by UUID.
        state.forget_security_group(&SgKey::Name(n.clone()))?;
    }
    Ok(())
}

/// `security-group set`: parses `text` (refused as a whole, nothing changed),
/// installs the rules when enforcement is on and the domain runs here, then stores them.
pub fn set(
    config: &Config,
    state: &StateDir,
    target: &Target,
    text: &str,
) -> Result<Outcome, SecurityGroupError> {
    let rules = parse_rules(text).map_err(|source| SecurityGroupError::Refused {
        domain: target.label(),
        source,
    })?;
    let _lock = state.lock()?;
    let loaded = load(state, target)?;
    // Without stored rules a running VM has the default's elements (or none).
    let old = installed(loaded.as_ref(), &target.addresses);
    // Only what changes when the VM's previous rules were installed for these
    // addresses; everything the first time (the default's elements may be
    // missing: enforcement turned on after the VM started).
    let known = loaded
        .as_ref()
        .is_some_and(|(s, _)| s.applied == target.addresses);
    let outcome = install(config, target, &rules, &old, !known)?;
    let applied = match &outcome {
        Outcome::Installed(a) => a.clone(),
        _ => loaded.map(|(s, _)| s.applied).unwrap_or_default(),
    };
    let stored = Stored {
        name: target.name.clone(),
        uuid: target.uuid.clone(),
        rules: text.trim().to_string(),
        set_at_ms: now_ms(),
        applied,
    };
    save(state, target, &stored)?;
    Ok(outcome)
}

/// Removes a domain's elements (those of its stored rules and of the
/// default, for the addresses it had and has), then its stored rules. An
/// absent table is fine.
pub fn remove_domain(state: &StateDir, target: &Target) -> Result<(), SecurityGroupError> {
    let loaded = load(state, target)?;
    if target.uuid.is_some() {
        let mut addrs = target.addresses.clone();
        addrs.extend(loaded.iter().flat_map(|(s, _)| s.applied.iter().copied()));
        addrs.sort();
        addrs.dedup();
        let rules = loaded.as_ref().map(|(_, r)| r.clone()).unwrap_or_default();
        let old = elements(&rules, &addrs);
        let changes = render::changes(&old, &[], true);
        match nfnetlink::batch(nfnetlink::NFPROTO_INET, TABLE, &changes) {
            Ok(()) | Err(Failed::Errno(libc::ENOENT, _)) => {}
            Err(f) => {
                return Err(SecurityGroupError::Nft {
                    domain: target.label(),
                    source: f.into_error("remove a security group"),
                })
            }
        }
    }
    if let Some(u) = &target.uuid {
        state.forget_security_group(&SgKey::Uuid(u.clone()))?;
    }
    if let Some(n) = &target.name {
        state.forget_security_group(&SgKey::Name(n.clone()))?;
    }
    Ok(())
}

/// `security-group clear`: removes the rules from nftables and the state directory.
pub fn clear(state: &StateDir, target: &Target) -> Result<(), SecurityGroupError> {
    let _lock = state.lock()?;
    remove_domain(state, target)
}

/// The hook (`start`, an incoming migration) and reconcile: installs the
/// domain's stored rules, or CloudStack's default when none are known.
/// Call under the state lock.
pub fn apply_domain(
    config: &Config,
    state: &StateDir,
    record: &Record,
) -> Result<Outcome, SecurityGroupError> {
    if !config.security_groups {
        return Ok(Outcome::NotEnforced);
    }
    let target = Target::from_record(record);
    let loaded = load(state, &target)?;
    let rules = loaded.as_ref().map(|(_, r)| r.clone()).unwrap_or_default();
    let old = installed(loaded.as_ref(), &target.addresses);
    let outcome = install(config, &target, &rules, &old, true)?;
    if let (Some((stored, _)), Outcome::Installed(a)) = (loaded, &outcome) {
        if stored.applied != *a || stored.uuid.is_none() {
            let stored = Stored {
                applied: a.clone(),
                uuid: target.uuid.clone(),
                name: target.name.clone(),
                ..stored
            };
            save(state, &target, &stored)?;
        }
    }
    Ok(outcome)
}

/// `security-group render`: the transaction that installs the domain's rules.
pub fn render_for(
    config: &Config,
    state: &StateDir,
    target: &Target,
) -> Result<String, SecurityGroupError> {
    let loaded = load(state, target)?;
    let rules = loaded.as_ref().map(|(_, r)| r.clone()).unwrap_or_default();
    let old = match &loaded {
        Some((s, r)) => elements(r, &s.applied),
        None => Vec::new(),
    };
    let uuid = target.uuid.clone().unwrap_or_else(|| "<uuid>".to_string());
    let mut out = String::new();
    if !config.security_groups {
        out.push_str("# security_groups = false: enforcement is off, nothing is installed\n");
    }
    if !target.on_host {
        out.push_str("# the domain does not run on this host: no element\n");
    }
    out.push_str(&render::apply(&uuid, &rules, &target.addresses, &old));
    Ok(out)
}
