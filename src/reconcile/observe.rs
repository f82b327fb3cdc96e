//! Observing, the I/O reconcile decides from: libvirt's status files of running
//! domains, virt-l3's records and marks, the host facts of the domains it may
//! adopt, and the kernel's tables as a [`KernelView`], read as the caller's
//! [`Scope`] says.

use std::collections::HashSet;
use std::path::Path;

use tracing::warn;

pub use super::decide::RunningDomain;
use super::decide::{adoption_candidates, DomainFacts};
use super::{ReconcileError, Scope};
use crate::config::Config;
use crate::domain_xml::DomainXml;
use crate::host_facts::host_facts;
use crate::kernel::{Kernel, KernelError, KernelView};
use crate::plan::Entry;
use crate::state::{Record, StateDir};

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
/// addresses fall into), so that reconcile adopts only what the hook would accept.
pub async fn adoption_facts<K: Kernel>(
    kernel: &K,
    config: &Config,
    records: &[Record],
    running: &[RunningDomain],
) -> Result<DomainFacts, KernelError> {
    let recorded: HashSet<String> = records.iter().map(|r| r.plan.uuid.clone()).collect();
    let mut out = DomainFacts::new();
    for (uuid, run) in adoption_candidates(config, &recorded, running) {
        out.insert(
            uuid.to_string(),
            host_facts(kernel, &run.xml, config).await?,
        );
    }
    Ok(out)
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
