//! Observing, the I/O reconcile decides from: libvirt's status files of running
//! domains, virt-l3's records and marks, the host facts of the domains it may
//! adopt, and the kernel's tables as a [`KernelView`], read as the caller's
//! [`Scope`] says.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tracing::warn;

pub use super::decide::RunningDomain;
use super::decide::{adoption_candidates, DomainFacts};
use super::{ReconcileError, Scope};
use crate::config::Config;
use crate::domain_xml::DomainXml;
use crate::host_facts::host_facts_many;
use crate::kernel::{Kernel, KernelError, KernelView};
use crate::plan::Entry;
use crate::state::{Record, StateDir};

/// Reads every status file; unreadable ones are reported and skipped. In the
/// order of their names; parsed on every CPU when there are many (a host's
/// boot adopts every running domain).
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
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|x| x.to_str()) == Some("xml"))
        .collect();
    paths.sort_unstable();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(paths.len() / PER_THREAD)
        .max(1);
    if threads == 1 {
        return Ok(read_status_files(&paths));
    }
    let chunk = paths.len().div_ceil(threads);
    Ok(std::thread::scope(|s| {
        let parts: Vec<_> = paths
            .chunks(chunk)
            .map(|part| s.spawn(|| read_status_files(part)))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    }))
}

/// Status files per parsing thread, at least: below that, one thread.
const PER_THREAD: usize = 256;

/// The running domains of these status files, in order.
fn read_status_files(paths: &[PathBuf]) -> Vec<RunningDomain> {
    let mut out = Vec::new();
    for path in paths {
        let Ok(bytes) = std::fs::read(path) else {
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
    out
}

/// Domains whose `stopped` hook ran, by UUID.
pub fn stopping(state: &StateDir) -> HashSet<String> {
    state.stopping().into_iter().collect()
}

/// Incoming live migrations, by UUID.
pub fn incoming(state: &StateDir) -> HashSet<String> {
    state.incoming().into_iter().collect()
}

/// The host facts of every domain reconcile may adopt, by UUID: read as the
/// hook reads them at `prepare` ([`crate::host_facts::host_facts`]: the host's
/// addresses and the routes through other interfaces that the domain's
/// addresses fall into), so that reconcile adopts only what the hook would accept;
/// read for all of them together ([`host_facts_many`]).
pub async fn adoption_facts<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    records: &[Record],
    running: &[RunningDomain],
) -> Result<DomainFacts, KernelError> {
    let recorded: HashSet<String> = records.iter().map(|r| r.plan.uuid.clone()).collect();
    let (uuids, doms): (Vec<&str>, Vec<&DomainXml>) =
        adoption_candidates(config, &recorded, running)
            .map(|(uuid, run)| (uuid, &run.xml))
            .unzip();
    let facts = host_facts_many(kernel, &doms, config).await?;
    Ok(uuids.into_iter().map(str::to_string).zip(facts).collect())
}

/// Tap -> domain, from libvirt's status files (`<target dev=...>`); empty when
/// they cannot be read (`check`'s `ports`, `watch` naming a blocked port).
pub fn tap_owners(dir: &std::path::Path) -> std::collections::HashMap<String, String> {
    let Ok(running) = running_domains(dir) else {
        return Default::default();
    };
    running
        .into_iter()
        .flat_map(|d| {
            let name = d.xml.name.clone();
            d.xml
                .interfaces
                .into_iter()
                .filter_map(move |i| i.target_dev.map(|t| (t, name.clone())))
        })
        .collect()
}

/// Whether one of libvirt's status files just written (`names`, in the status
/// directory) calls for a new metric for its domain's routes: the destination of
/// a live migration resumed (standby → arrived), or the source paused for the
/// switch-over (active → leaving) or resumed after a failed one. `watch`
/// reconciles at once then, without waiting for events to settle: the upstream
/// path follows the guest. Reads those files and their records only.
pub fn standing_due(config: &Config, names: &[std::ffi::OsString]) -> bool {
    let state = StateDir::new(&config.state_dir);
    names.iter().any(|n| {
        let Ok(bytes) = std::fs::read(config.libvirt_status_dir.join(n)) else {
            return false;
        };
        let Ok(xml) = DomainXml::parse(&bytes) else {
            return false;
        };
        let (Some(rs), Some(uuid)) = (xml.run_state.as_ref(), xml.uuid.as_deref()) else {
            return false;
        };
        match state.record(uuid) {
            Ok(Some(rec)) => super::decide::restand_due(config, &rec, rs, crate::state::now_ms()),
            _ => false,
        }
    })
}

/// The entries the records name as they stand before deciding (a record pruned
/// or given another metric leaves entries to remove): only a [`Scope::Records`]
/// reconcile needs them.
pub fn recorded_entries(scope: Scope, records: &[Record]) -> Vec<Entry> {
    match scope {
        Scope::Sweep => Vec::new(),
        Scope::Records => records
            .iter()
            .flat_map(|r| r.plan.entries(r.metric))
            .collect(),
    }
}

/// The kernel's tables as the reconcile needs them: for a sweep, everything of
/// virt-l3's protocol ([`KernelView::sweep`]); for a records reconcile, the
/// entries of the records before (`recorded`) and after (`keep`) deciding,
/// looked up ([`KernelView::lookup`]).
pub async fn kernel_view<K: Kernel>(
    kernel: &mut K,
    bridges: &[String],
    config: &Config,
    scope: Scope,
    mut recorded: Vec<Entry>,
    keep: &[Record],
) -> Result<KernelView, KernelError> {
    match scope {
        Scope::Sweep => KernelView::sweep(kernel, bridges, config.route_protocol).await,
        Scope::Records => {
            recorded.extend(keep.iter().flat_map(|r| r.plan.entries(r.metric)));
            KernelView::lookup(kernel, bridges, &recorded, &[config.route_protocol]).await
        }
    }
}
