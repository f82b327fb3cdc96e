//! `virt-l3 reconcile`: make the kernel match what should be there.
//!
//! What should be there comes from two files-only sources: virt-l3's records
//! (what the hook applied) and libvirt's live status files of running domains
//! (`/run/libvirt/qemu/*.xml`; libvirt itself is never called). Deciding is
//! pure ([`desired`], [`diff`]); applying sits in [`reconcile`].

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;
use tracing::{info, warn};

use crate::config::Config;
use crate::domain_xml::{DomainXml, RunState};
use crate::netlink::{Kernel, KernelError, KernelNeighbour, KernelRoute};
use crate::plan::{plan, Checks, Entry, HostFacts};
use crate::state::{now_ms, Record, StateDir, StateError};
use crate::status::KernelView;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("libvirt's status directory {0} does not exist (is libvirtd running?); refusing to decide that no domain runs")]
    NoStatusDir(String),
    #[error("cannot read libvirt's status directory {path}")]
    StatusDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// A domain libvirt reports running on this host.
#[derive(Debug, Clone)]
pub struct RunningDomain {
    pub xml: DomainXml,
    pub run_state: RunState,
}

/// Reads every status file; unreadable ones are reported and skipped.
pub fn running_domains(dir: &Path) -> Result<Vec<RunningDomain>, ReconcileError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ReconcileError::NoStatusDir(dir.display().to_string()))
        }
        Err(source) => {
            return Err(ReconcileError::StatusDir {
                path: dir.display().to_string(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("xml") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        match DomainXml::parse(&bytes) {
            Ok(xml) => {
                let Some(run_state) = xml.run_state.clone() else {
                    continue;
                };
                out.push(RunningDomain { xml, run_state });
            }
            Err(err) => {
                warn!(file = %path.display(), "skipping an unreadable libvirt status file: {err}")
            }
        }
    }
    Ok(out)
}

/// One change reconcile makes (or would make, with `--dry-run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, PartialOrd, Ord)]
pub struct Change {
    pub action: &'static str,
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
}

/// Where a domain's routes stand, as far as the metric goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub metric: u32,
    /// Still an incoming live migration (not yet running here).
    pub standby: bool,
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

/// Decides, from the records and the running domains, which records to keep
/// (with which metric), which to adopt and which to prune. Pure.
pub fn desired(
    config: &Config,
    records: Vec<Record>,
    running: &[RunningDomain],
    incoming: &HashSet<String>,
    host: &HostFacts,
    state: &dyn crate::plan::Ownership,
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
                let current = Standing {
                    metric: rec.metric,
                    standby: rec.standby,
                };
                let Standing { metric, standby } =
                    metric_for(config, current, rec.since_ms, &run.run_state, now_ms);
                if metric != rec.metric || standby != rec.standby {
                    let action = match metric.cmp(&rec.metric) {
                        std::cmp::Ordering::Less => "promote",
                        _ => "demote",
                    };
                    out.changes.push(Change {
                        action,
                        domain: Some(rec.plan.name.clone()),
                        what: format!("metric {} -> {metric}", rec.metric),
                    });
                    rec.metric = metric;
                    rec.standby = standby;
                    rec.since_ms = now_ms;
                }
                out.keep.push(rec);
            }
            None if now_ms.saturating_sub(rec.since_ms) < config.reconcile_grace_seconds * 1000 => {
                // Between the start hook and QEMU running: not in the status dir yet.
                out.keep.push(rec);
            }
            None => {
                out.changes.push(Change {
                    action: "prune",
                    domain: Some(rec.plan.name.clone()),
                    what: format!("record {} (domain no longer runs here)", rec.plan.uuid),
                });
                out.prune.push(rec);
            }
        }
    }
    // Running domains with routed NICs but no record (virt-l3 installed after they
    // started, a state dir lost): adopt them if their XML is valid.
    for run in running {
        let Some(uuid) = run.xml.uuid.as_deref() else {
            continue;
        };
        if recorded.contains(uuid) {
            continue;
        }
        if crate::plan::managed_interfaces(&run.xml, config)
            .next()
            .is_none()
        {
            continue;
        }
        match plan(&run.xml, config, host, state, Checks::default()) {
            Ok(p) => {
                // Adopted as if the hook had just installed it.
                let current = if incoming.contains(uuid) {
                    Standing {
                        metric: config.standby_metric,
                        standby: true,
                    }
                } else {
                    Standing {
                        metric: config.route_metric,
                        standby: false,
                    }
                };
                let Standing { metric, standby } =
                    metric_for(config, current, now_ms, &run.run_state, now_ms);
                out.changes.push(Change {
                    action: "adopt",
                    domain: Some(p.name.clone()),
                    what: format!("running domain {} without a record", p.uuid),
                });
                out.keep.push(Record {
                    plan: p,
                    metric,
                    protocol: config.route_protocol,
                    standby,
                    since_ms: now_ms,
                });
            }
            Err(e) => warn!("not adopting a running domain: {e}"),
        }
    }
    out
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
    let mut want_routes: HashSet<(ipnet::IpNet, u32, u32, Option<std::net::IpAddr>)> =
        HashSet::new();
    let mut want_neigh: HashMap<(std::net::IpAddr, u32), crate::address::Mac> = HashMap::new();
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
    let replaced: HashSet<(ipnet::IpNet, u32)> = add
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

#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// When a domain's metric is due to change by itself (an arrived domain's hold
    /// ends), in milliseconds since the epoch: `watch` reconciles again then.
    #[serde(skip)]
    pub next_change: Option<u64>,
    pub dry_run: bool,
    pub domains: usize,
    pub changes: Vec<Change>,
    pub errors: Vec<String>,
}

/// Reconciles once: records, kernel, state. Holds the state lock throughout, so
/// it is safe to run concurrently with hooks.
pub async fn reconcile(
    kernel: &mut Kernel,
    config: &Config,
    dry_run: bool,
) -> Result<Report, ReconcileError> {
    let t0 = std::time::Instant::now();
    let state = StateDir::new(&config.state_dir);
    let _lock = state.lock()?;
    let mut running = running_domains(&config.libvirt_status_dir)?;
    tracing::debug!(elapsed = ?t0.elapsed(), domains = running.len(), "read libvirt status files");
    let records = state.records()?;
    tracing::debug!(elapsed = ?t0.elapsed(), records = records.len(), "read records");
    // What killed hooks left (temporary files, claims without a record) goes
    // first: such a claim would keep a running domain from being adopted.
    let swept = state.sweep(&records, !dry_run)?;
    // A domain whose `stopped` hook ran and whose status file libvirt has not
    // removed yet is not running any more: not adopted. A mark whose status file
    // is gone has served (its `release` was lost): removed.
    let stopping: HashSet<String> = state.stopping().into_iter().collect();
    let recorded: HashSet<&str> = records.iter().map(|r| r.plan.uuid.as_str()).collect();
    let listed: HashSet<String> = running.iter().filter_map(|r| r.xml.uuid.clone()).collect();
    running.retain(|r| match r.xml.uuid.as_deref() {
        Some(u) => !stopping.contains(u) || recorded.contains(u),
        None => true,
    });
    if !dry_run {
        for u in stopping.iter().filter(|u| !listed.contains(*u)) {
            state.clear_stopping(u)?;
        }
    }
    let incoming: HashSet<String> = state.incoming().into_iter().collect();
    let host = HostFacts {
        addresses: kernel.host_addresses().await?,
    };
    let d = desired(
        config,
        records,
        &running,
        &incoming,
        &host,
        &state,
        now_ms(),
    );
    tracing::debug!(elapsed = ?t0.elapsed(), "decided records");
    kernel.forget_links();
    // Pin the bridges' MACs first: pinning may flush neighbours, which this pass re-adds.
    let mut pinned = Vec::new();
    if !d.keep.is_empty() {
        for b in &config.bridges {
            match kernel.pin_bridge_mac(b, config.gateway_mac, !dry_run).await {
                Ok(Some(done)) => pinned.push(done),
                Ok(None) => {}
                Err(e) => warn!("{e}"),
            }
        }
    }
    let view = KernelView::read(kernel, &config.bridges).await?;
    tracing::debug!(elapsed = ?t0.elapsed(), routes = view.routes.len(), neighbours = view.neighbours.len(), "read kernel");

    let mut wanted: Vec<Entry> = Vec::new();
    for rec in &d.keep {
        wanted.extend(rec.plan.entries(rec.metric));
    }
    // Entries of bridges that do not exist (yet) cannot be added; they come back with the bridge.
    wanted.retain(|e| {
        let b = match e {
            Entry::Route(r) => &r.bridge,
            Entry::Neighbour(n) => &n.bridge,
        };
        view.bridges.contains_key(b)
    });
    let kd = diff(&wanted, &view, config.route_protocol);
    let mut report = Report {
        next_change: d
            .keep
            .iter()
            .filter(|r| r.metric == config.arrived_metric && !r.standby)
            .map(|r| r.since_ms + config.arrived_hold_seconds * 1000)
            .min(),
        dry_run,
        domains: d.keep.len(),
        changes: d.changes.clone(),
        errors: Vec::new(),
    };
    report.changes.extend(swept.into_iter().map(|what| Change {
        action: "remove",
        domain: None,
        what,
    }));
    report.changes.extend(pinned.into_iter().map(|what| Change {
        action: "pin-mac",
        domain: None,
        what,
    }));
    if !kd.add.is_empty() {
        // Name the domain of each addition (only additions need it).
        let mut owner_of: HashMap<&Entry, &str> = HashMap::new();
        let owned: Vec<(Vec<Entry>, &str)> = d
            .keep
            .iter()
            .map(|rec| (rec.plan.entries(rec.metric), rec.plan.name.as_str()))
            .collect();
        for (es, name) in &owned {
            for e in es {
                owner_of.insert(e, name);
            }
        }
        for e in &kd.add {
            report.changes.push(Change {
                action: "add",
                domain: owner_of.get(e).map(|s| s.to_string()),
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
        report.changes.push(Change {
            action: "remove",
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
        report.changes.push(Change {
            action: "remove",
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
    tracing::debug!(elapsed = ?t0.elapsed(), add = kd.add.len(), "diffed");
    if dry_run {
        return Ok(report);
    }

    for (r, e) in kd
        .add
        .iter()
        .zip(kernel.install(&kd.add, config.route_protocol).await)
    {
        if let Err(err) = e {
            report.errors.push(format!("{r}: {err}"));
        }
    }
    for err in kernel
        .remove_kernel_entries(&kd.remove_routes, &kd.remove_neighbours)
        .into_iter()
        .filter_map(Result::err)
    {
        report.errors.push(err.to_string());
    }
    tracing::debug!(elapsed = ?t0.elapsed(), "kernel changed");
    // Isolation of running taps (a tap re-created by libvirt, a flapped bridge).
    if config.port_isolation {
        let isolated = kernel.isolated_ports().await?;
        for rec in &d.keep {
            for tap in rec.plan.nics.iter().filter_map(|n| n.tap.as_deref()) {
                if isolated.get(tap) == Some(&false) {
                    report.changes.push(Change {
                        action: "isolate",
                        domain: Some(rec.plan.name.clone()),
                        what: format!("bridge port {tap}"),
                    });
                    if let Err(e) = kernel.set_port_isolation(tap, true).await {
                        report.errors.push(e.to_string());
                    }
                }
            }
        }
    }
    if config.disable_redirects && !d.keep.is_empty() {
        for b in view.bridges.keys() {
            match crate::sysctl::disable_redirects(b) {
                Ok(changed) => report.changes.extend(changed.into_iter().map(|c| Change {
                    action: "sysctl",
                    domain: None,
                    what: c,
                })),
                Err(e) => report
                    .errors
                    .push(format!("cannot turn off ICMP redirects on {b}: {e}")),
            }
        }
    }
    let changed: HashSet<&str> = d
        .changes
        .iter()
        .filter_map(|c| c.domain.as_deref())
        .collect();
    for rec in d
        .keep
        .iter()
        .filter(|r| changed.contains(r.plan.name.as_str()))
    {
        state.save(rec)?;
        if !rec.standby {
            state.clear_incoming(&rec.plan.uuid)?;
        }
    }
    for rec in &d.prune {
        state.forget(rec)?;
    }
    tracing::debug!(elapsed = ?t0.elapsed(), "state written");
    if !report.changes.is_empty() {
        info!(
            changes = report.changes.len(),
            errors = report.errors.len(),
            "reconciled"
        );
    }
    Ok(report)
}
