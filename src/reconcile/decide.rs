//! Deciding, pure: which records to keep (with which metric), adopt or prune;
//! which kernel entries to add and remove; and the one migration metric policy,
//! which the hook uses too ([`standing_at_install`], [`metric_for`]).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::address::Mac;
use crate::config::Config;
use crate::domain_xml::{DomainXml, RunState};
use crate::kernel::{bridge_of, KernelNeighbour, KernelRoute, KernelView};
use crate::plan::{
    display_name, managed_interfaces, plan, Checks, DomainPlan, Entry, HostFacts, Ownership,
};
use crate::state::Record;

/// A domain libvirt reports running on this host.
#[derive(Debug, Clone)]
pub struct RunningDomain {
    pub xml: DomainXml,
    pub run_state: RunState,
}

/// What a [`Change`] does, serialized as its word ("add", "pin-mac", ...).
/// Ordered as those words sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A tap accepted by virt-l3's nftables tables.
    Accept,
    Add,
    Adopt,
    Demote,
    /// A port the tables accepted that belongs to no running domain.
    Forget,
    /// A gateway address put on a routed bridge (`manage_gateways`).
    Gateway,
    /// virt-l3's nftables tables (re)installed.
    Firewall,
    Isolate,
    PinMac,
    Promote,
    Prune,
    /// A running domain reconcile will not adopt: the hook would refuse it.
    Refuse,
    Remove,
    Sysctl,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Add => "add",
            Action::Adopt => "adopt",
            Action::Demote => "demote",
            Action::Forget => "forget",
            Action::Gateway => "gateway",
            Action::Firewall => "install",
            Action::Isolate => "isolate",
            Action::PinMac => "pin-mac",
            Action::Promote => "promote",
            Action::Prune => "prune",
            Action::Refuse => "refuse",
            Action::Remove => "remove",
            Action::Sysctl => "sysctl",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change reconcile makes (or would make, with `--dry-run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, PartialOrd, Ord)]
pub struct Change {
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub what: String,
}

/// What the records should become.
#[derive(Debug, Default)]
pub struct Desired {
    /// Records to keep, each with the metric it should have now.
    pub keep: Vec<Record>,
    /// Records of domains that no longer run here.
    pub prune: Vec<Record>,
    /// Record changes (adopt, promote, demote, prune), for the report.
    pub changes: Vec<Change>,
    /// When the earliest grace period of a kept record whose domain libvirt does
    /// not list ends (ms since the epoch): a reconcile then prunes it if it is
    /// still not listed, even on a host where nothing else happens.
    pub grace_ends: Option<u64>,
}

/// Where a domain's routes stand, as far as the metric goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub metric: u32,
    /// Still an incoming live migration (not yet running here).
    pub standby: bool,
}

/// The standing of routes installed before anything is known of how the domain
/// runs (by the hook at start, or adopted by reconcile): `standby_metric` for the
/// destination of an incoming live migration, else `route_metric`.
pub fn standing_at_install(config: &Config, standby: bool) -> Standing {
    Standing {
        metric: if standby {
            config.standby_metric
        } else {
            config.route_metric
        },
        standby,
    }
}

/// The metric a domain's routes should carry now, given its run state, its
/// current standing and when that was last changed (`since_ms`).
///
/// Classes, best first: `route_metric` (running), `arrived_metric` (just
/// migrated in: running here, but the source may not have let go yet),
/// `leaving_metric` (the source of a migration, paused for the switch-over),
/// `standby_metric` (the destination before it runs). The destination goes
/// standby → arrived → (after `arrived_hold_seconds`) running, so whichever of
/// the two hosts' changes reaches the network first, exactly one path is preferred.
pub fn metric_for(
    config: &Config,
    current: Standing,
    since_ms: u64,
    rs: &RunState,
    now_ms: u64,
) -> Standing {
    let running = rs.state == "running";
    let arriving = current.standby
        || (current.metric == config.arrived_metric
            && now_ms.saturating_sub(since_ms) < config.arrived_hold_seconds * 1000);
    let metric = if running && arriving {
        config.arrived_metric
    } else if running {
        config.route_metric
    } else if current.standby {
        config.standby_metric
    } else if rs.state == "paused" && rs.reason == "migration" {
        // The source of a live migration, paused for the switch-over.
        config.leaving_metric
    } else {
        config.route_metric
    };
    Standing {
        metric,
        standby: current.standby && !running,
    }
}

/// Drops from `running` the domains whose `stopped` hook ran while libvirt has not
/// removed their status file yet (not running any more: not to be adopted), unless
/// they have a record. Returns the marks that have served (their status file is
/// gone: their `release` was lost).
pub fn still_running(
    running: &mut Vec<RunningDomain>,
    records: &[Record],
    stopping: &HashSet<String>,
) -> Vec<String> {
    let recorded: HashSet<&str> = records.iter().map(|r| r.plan.uuid.as_str()).collect();
    let listed: HashSet<String> = running.iter().filter_map(|r| r.xml.uuid.clone()).collect();
    running.retain(|r| match r.xml.uuid.as_deref() {
        Some(u) => !stopping.contains(u) || recorded.contains(u),
        None => true,
    });
    stopping
        .iter()
        .filter(|u| !listed.contains(*u))
        .cloned()
        .collect()
}

/// The UUIDs among `uuids` of no running domain.
pub fn gone(uuids: impl Iterator<Item = String>, running: &[RunningDomain]) -> Vec<String> {
    uuids
        .filter(|u| {
            !running
                .iter()
                .any(|r| r.xml.uuid.as_deref() == Some(u.as_str()))
        })
        .collect()
}

/// The host facts each domain reconcile may adopt is planned against, by UUID
/// (`observe::adoption_facts`).
pub type DomainFacts = HashMap<String, HostFacts>;

/// The running domains reconcile may adopt, with their UUIDs: a UUID, no record,
/// and an interface on a routed bridge.
pub fn adoption_candidates<'a>(
    config: &'a Config,
    recorded: &'a HashSet<String>,
    running: &'a [RunningDomain],
) -> impl Iterator<Item = (&'a str, &'a RunningDomain)> + 'a {
    running.iter().filter_map(move |run| {
        let uuid = run.xml.uuid.as_deref()?;
        let managed = managed_interfaces(&run.xml, config).next().is_some();
        (managed && !recorded.contains(uuid)).then_some((uuid, run))
    })
}

/// Decides, from the records and the running domains, which records to keep
/// (with which metric), which to adopt and which to prune. Pure.
pub fn desired(
    config: &Config,
    records: Vec<Record>,
    running: &[RunningDomain],
    incoming: &HashSet<String>,
    facts: &DomainFacts,
    state: &dyn Ownership,
    now_ms: u64,
) -> Desired {
    let mut out = Desired::default();
    let by_uuid: HashMap<&str, &RunningDomain> = running
        .iter()
        .filter_map(|r| r.xml.uuid.as_deref().map(|u| (u, r)))
        .collect();
    let mut recorded: HashSet<String> = HashSet::new();
    for mut rec in records {
        recorded.insert(rec.plan.uuid.clone());
        match by_uuid.get(rec.plan.uuid.as_str()) {
            Some(run) => {
                if let Some(change) = restand(config, &mut rec, &run.run_state, now_ms) {
                    out.changes.push(change);
                }
                out.keep.push(rec);
            }
            None if now_ms.saturating_sub(rec.since_ms) < config.reconcile_grace_seconds * 1000 => {
                // Between the start hook and QEMU running: not in the status dir yet.
                let ends = rec.since_ms + config.reconcile_grace_seconds * 1000;
                out.grace_ends = Some(out.grace_ends.map_or(ends, |e| e.min(ends)));
                out.keep.push(rec);
            }
            None => {
                out.changes.push(Change {
                    action: Action::Prune,
                    domain: Some(rec.plan.name.clone()),
                    what: format!("record {} (domain no longer runs here)", rec.plan.uuid),
                });
                out.prune.push(rec);
            }
        }
    }
    // Running domains with routed NICs but no record (virt-l3 installed after they
    // started, a state dir lost): adopt them if the hook would accept them, each
    // against the claims on disk and those of the domains adopted before it.
    let mut owners = super::adopting::Adopting::new(state);
    for (uuid, run) in adoption_candidates(config, &recorded, running) {
        // The checks and host facts the hook applies at prepare: what it would
        // refuse is not adopted. (`watch` logs the refusal once per domain.)
        let checks = Checks {
            require_filter: config.require_nwfilter,
        };
        let no_facts = HostFacts::default();
        let host = facts.get(uuid).unwrap_or(&no_facts);
        match plan(&run.xml, config, host, &owners, checks) {
            Ok(p) => {
                owners.add(&p);
                let standby = incoming.contains(uuid);
                let (rec, change) = adopt(config, p, standby, &run.run_state, now_ms);
                out.changes.push(change);
                out.keep.push(rec);
            }
            Err(e) => out.changes.push(Change {
                action: Action::Refuse,
                domain: Some(display_name(&run.xml.name)),
                what: format!("not adopting running domain {uuid}: {e}"),
            }),
        }
    }
    out
}

/// Whether a record's metric or standby flag is due to change for its run state
/// (what [`restand`] would change).
pub fn restand_due(config: &Config, rec: &Record, rs: &RunState, now_ms: u64) -> bool {
    let current = Standing {
        metric: rec.metric,
        standby: rec.standby,
    };
    metric_for(config, current, rec.since_ms, rs, now_ms) != current
}

/// Gives a kept record the metric its run state calls for; the change, if any.
fn restand(config: &Config, rec: &mut Record, rs: &RunState, now_ms: u64) -> Option<Change> {
    let current = Standing {
        metric: rec.metric,
        standby: rec.standby,
    };
    let Standing { metric, standby } = metric_for(config, current, rec.since_ms, rs, now_ms);
    if metric == rec.metric && standby == rec.standby {
        return None;
    }
    let action = match metric.cmp(&rec.metric) {
        std::cmp::Ordering::Less => Action::Promote,
        _ => Action::Demote,
    };
    let change = Change {
        action,
        domain: Some(rec.plan.name.clone()),
        what: format!("metric {} -> {metric}", rec.metric),
    };
    rec.metric = metric;
    rec.standby = standby;
    rec.since_ms = now_ms;
    Some(change)
}

/// The record of a running domain found without one: as if the hook had just
/// installed it, then given the metric its run state calls for.
fn adopt(
    config: &Config,
    p: DomainPlan,
    standby: bool,
    rs: &RunState,
    now_ms: u64,
) -> (Record, Change) {
    let change = Change {
        action: Action::Adopt,
        domain: Some(p.name.clone()),
        what: format!("running domain {} without a record", p.uuid),
    };
    (adopted_record(config, p, standby, rs, now_ms), change)
}

/// The record of plan `p` for a running domain without one (reconcile's
/// adoption, refresh's first plan): as if the hook had just installed it
/// (`standby` for an incoming migration), then given the metric its run state
/// calls for, since `now_ms`.
pub fn adopted_record(
    config: &Config,
    p: DomainPlan,
    standby: bool,
    rs: &RunState,
    now_ms: u64,
) -> Record {
    let current = standing_at_install(config, standby);
    let Standing { metric, standby } = metric_for(config, current, now_ms, rs, now_ms);
    Record {
        plan: p,
        metric,
        protocol: config.route_protocol,
        standby,
        since_ms: now_ms,
    }
}

/// When reconcile has something to do by itself: an arrived domain's hold ends, or
/// the grace period of a record libvirt does not list (ms since the epoch).
pub fn next_change(config: &Config, d: &Desired) -> Option<u64> {
    d.keep
        .iter()
        .filter(|r| r.metric == config.arrived_metric && !r.standby)
        .map(|r| r.since_ms + config.arrived_hold_seconds * 1000)
        .chain(d.grace_ends)
        .min()
}

/// Every entry the kept records stand for, on bridges that exist: entries of
/// bridges that do not exist (yet) cannot be added; they come back with the bridge.
pub fn wanted_entries(keep: &[Record], view: &KernelView) -> Vec<Entry> {
    let mut wanted: Vec<Entry> = Vec::new();
    for rec in keep {
        wanted.extend(rec.plan.entries(rec.metric));
    }
    wanted.retain(|e| view.bridges.contains_key(bridge_of(e)));
    wanted
}

/// Kernel changes that make `view` match `wanted`. Pure.
pub struct KernelDiff {
    pub add: Vec<Entry>,
    pub remove_routes: Vec<KernelRoute>,
    pub remove_neighbours: Vec<KernelNeighbour>,
}

pub fn diff(wanted: &[Entry], view: &KernelView, protocol: u8) -> KernelDiff {
    let add: Vec<Entry> = wanted
        .iter()
        .filter(|e| !view.has(e, protocol))
        .cloned()
        .collect();
    // Index what should be there, keyed as the kernel reports it.
    let mut want_routes: HashSet<(IpNet, u32, u32, Option<IpAddr>)> = HashSet::new();
    let mut want_neigh: HashMap<(IpAddr, u32), Mac> = HashMap::new();
    for e in wanted {
        match e {
            Entry::Route(r) => {
                if let Some(i) = view.bridges.get(&r.bridge) {
                    want_routes.insert((r.destination, *i, r.metric, r.via));
                }
            }
            Entry::Neighbour(n) => {
                if let Some(i) = view.bridges.get(&n.bridge) {
                    want_neigh.insert((n.address, *i), n.mac);
                }
            }
        }
    }
    // An addition (NLM_F_REPLACE) takes the place of the route with its destination
    // and metric; deleting that one afterwards could delete the addition instead (a
    // route without an interface, multipath or a nexthop object, is matched on
    // destination, metric and protocol alone). Found by the diff's property test.
    let replaced: HashSet<(IpNet, u32)> = add
        .iter()
        .filter_map(|e| match e {
            Entry::Route(r) => Some((r.destination, r.metric)),
            Entry::Neighbour(_) => None,
        })
        .collect();
    let remove_routes = view
        .routes
        .iter()
        .filter(|k| k.protocol == protocol)
        .filter(|k| {
            !want_routes.contains(&(k.destination, k.ifindex.unwrap_or(0), k.metric, k.gateway))
        })
        .filter(|k| !replaced.contains(&(k.destination, k.metric)))
        .cloned()
        .collect();
    let remove_neighbours = view
        .neighbours
        .iter()
        .filter(|k| k.protocol == protocol)
        // A wrong MAC is fixed by the replace in `add`; only unwanted addresses go.
        .filter(|k| !want_neigh.contains_key(&(k.address, k.ifindex)))
        .cloned()
        .collect();
    KernelDiff {
        add,
        remove_routes,
        remove_neighbours,
    }
}

/// The report lines of a kernel diff: each addition with its domain, each removal
/// as the kernel holds it.
pub fn diff_changes(kd: &KernelDiff, keep: &[Record], view: &KernelView) -> Vec<Change> {
    let mut out = Vec::new();
    if !kd.add.is_empty() {
        // Name the domain of each addition (only additions need it).
        let owners = addition_records(&kd.add, keep);
        for (e, owner) in kd.add.iter().zip(owners) {
            out.push(Change {
                action: Action::Add,
                domain: owner.map(|i| keep[i].plan.name.clone()),
                what: e.to_string(),
            });
        }
    }
    let name_of_if: HashMap<u32, &String> = view.bridges.iter().map(|(n, i)| (*i, n)).collect();
    for r in &kd.remove_routes {
        let dev = r
            .ifindex
            .and_then(|i| name_of_if.get(&i).map(|s| s.to_string()))
            .unwrap_or_else(|| format!("ifindex {:?}", r.ifindex));
        out.push(Change {
            action: Action::Remove,
            domain: None,
            what: format!(
                "route {}{} dev {dev} metric {} proto {}",
                r.destination,
                r.gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
                r.metric,
                r.protocol
            ),
        });
    }
    for n in &kd.remove_neighbours {
        out.push(Change {
            action: Action::Remove,
            domain: None,
            what: format!(
                "neighbour {} lladdr {} dev {}",
                n.address,
                n.mac.map(|m| m.to_string()).unwrap_or_default(),
                name_of_if
                    .get(&n.ifindex)
                    .map(|s| s.as_str())
                    .unwrap_or("?")
            ),
        });
    }
    out
}

/// The kept record (its index in `keep`) each addition is an entry of, in
/// order. The additions are the kept records' entries in their order, some
/// left out ([`wanted_entries`], [`diff`]): one walk through both finds them;
/// any it leaves are looked up.
pub fn addition_records(add: &[Entry], keep: &[Record]) -> Vec<Option<usize>> {
    let mut out: Vec<Option<usize>> = Vec::with_capacity(add.len());
    for (i, rec) in keep.iter().enumerate() {
        for e in rec.plan.entries(rec.metric) {
            if add.get(out.len()) == Some(&e) {
                out.push(Some(i));
            }
        }
    }
    if out.len() < add.len() {
        let owned: Vec<Vec<Entry>> = keep
            .iter()
            .map(|rec| rec.plan.entries(rec.metric))
            .collect();
        let mut owner_of: HashMap<&Entry, usize> = HashMap::new();
        for (i, es) in owned.iter().enumerate() {
            for e in es {
                owner_of.insert(e, i);
            }
        }
        let rest: Vec<Option<usize>> = add[out.len()..]
            .iter()
            .map(|e| owner_of.get(e).copied())
            .collect();
        out.extend(rest);
    }
    out
}

/// Changes described by text only (swept files, pinned MACs, sysctls).
pub fn changes(action: Action, whats: Vec<String>) -> impl Iterator<Item = Change> {
    whats.into_iter().map(move |what| Change {
        action,
        domain: None,
        what,
    })
}
