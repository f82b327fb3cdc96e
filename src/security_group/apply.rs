//! The effects: one `nft -f` transaction per VM change, and the rules kept in
//! the state directory (`security-groups/`, see `state/security_groups.rs`).
//!
//! With `security_groups = false` (the default) rules are stored but nothing is
//! installed: no chain, no map element. With it on, a running VM always has its
//! chains: its stored rules, or CloudStack's default (ingress closed, egress
//! open) when none are known; never "open".

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::model::RuleSet;
use super::parse::parse_rules;
use super::render;
use super::SecurityGroupError;
use crate::config::Config;
use crate::firewall::FirewallError;
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

    fn from_record(r: &Record) -> Target {
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
    let mut out: Vec<IpAddr> = r
        .plan
        .nics
        .iter()
        .flat_map(|n| n.addresses.iter().copied())
        .collect();
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

fn nft(domain: &str, text: &str, what: &str) -> Result<(), SecurityGroupError> {
    crate::firewall::nft::run(&["-f", "-"], Some(text), what)
        .map(drop)
        .map_err(|source| SecurityGroupError::Nft {
            domain: domain.to_string(),
            source,
        })
}

/// Installs `rules` for `target` (one transaction) when enforcement is on and
/// the domain is on this host.
fn install(
    config: &Config,
    target: &Target,
    rules: &RuleSet,
    previous: &[IpAddr],
) -> Result<Outcome, SecurityGroupError> {
    if !config.security_groups {
        return Ok(Outcome::NotEnforced);
    }
    let (Some(uuid), true) = (&target.uuid, target.on_host) else {
        return Ok(Outcome::NotOnHost);
    };
    let stale: Vec<IpAddr> = previous
        .iter()
        .filter(|a| !target.addresses.contains(a))
        .copied()
        .collect();
    let text = render::apply(uuid, rules, &target.addresses, &stale);
    nft(&target.label(), &text, "apply a security group")?;
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
    let previous = load(state, target)?
        .map(|(s, _)| s.applied)
        .unwrap_or_default();
    let outcome = install(config, target, &rules, &previous)?;
    let applied = match &outcome {
        Outcome::Installed(a) => a.clone(),
        _ => previous,
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

/// Whether an nft error says virt-l3's table (or chain) is not there.
fn absent(e: &SecurityGroupError) -> bool {
    matches!(e, SecurityGroupError::Nft { source: FirewallError::Nft { detail, .. }, .. }
        if detail.contains("No such file"))
}

/// Removes a domain's chains and map elements (for the addresses it had), then
/// its stored rules. An absent table or chain is fine.
pub fn remove_domain(state: &StateDir, target: &Target) -> Result<(), SecurityGroupError> {
    let stored = load(state, target)?.map(|(s, _)| s);
    if let Some(uuid) = &target.uuid {
        let mut addrs = target.addresses.clone();
        addrs.extend(stored.iter().flat_map(|s| s.applied.iter().copied()));
        addrs.sort();
        addrs.dedup();
        match nft(
            &target.label(),
            &render::remove(uuid, &addrs),
            "remove a security group",
        ) {
            Err(e) if !absent(&e) => return Err(e),
            _ => {}
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
    let (rules, previous) = match &loaded {
        Some((s, r)) => (r.clone(), s.applied.clone()),
        None => (RuleSet::cloudstack_default(), Vec::new()),
    };
    let outcome = install(config, &target, &rules, &previous)?;
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
    let (rules, previous) = match load(state, target)? {
        Some((s, r)) => (r, s.applied),
        None => (RuleSet::cloudstack_default(), Vec::new()),
    };
    let uuid = target.uuid.clone().unwrap_or_else(|| "<uuid>".to_string());
    let mut out = String::new();
    if !config.security_groups {
        out.push_str("# security_groups = false: enforcement is off, nothing is installed\n");
    }
    if !target.on_host {
        out.push_str("# the domain does not run on this host: no map element\n");
    }
    let stale: Vec<IpAddr> = previous
        .into_iter()
        .filter(|a| !target.addresses.contains(a))
        .collect();
    out.push_str(&render::apply(&uuid, &rules, &target.addresses, &stale));
    Ok(out)
}
