//! `virt-l3 reconcile`: make the kernel match what should be there.
//!
//! What should be there comes from two files-only sources: virt-l3's records
//! (what the hook applied) and libvirt's live status files of running domains
//! (`/run/libvirt/qemu/*.xml`; libvirt itself is never called). [`reconcile`] is
//! a pipeline: [`observe`] (I/O) → [`decide`] (pure: desired records, the kernel
//! diff) → [`apply`] (the kernel, then the records).
//!
//! To compare without changing anything (`check`'s state item), call the same
//! steps: [`running_domains`], [`observe::adoption_facts`], [`observe::incoming`],
//! [`desired`], [`crate::kernel::KernelView::sweep`], [`decide::wanted_entries`], [`diff`].

use serde::Serialize;
use tracing::info;

use crate::config::Config;
use crate::kernel::{Kernel, KernelError};
use crate::state::{now_ms, StateDir, StateError};

mod adopting;
pub mod apply;
pub mod decide;
pub mod observe;
mod write;

pub use decide::{
    adopted_record, desired, diff, metric_for, standing_at_install, Action, Change, Desired,
    KernelDiff, Standing,
};
pub use observe::{running_domains, RunningDomain};

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

/// Which read of the kernel a reconcile makes (see [`observe::kernel_view`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything virt-l3's protocol holds in the main table, strays included:
    /// boot and `virt-l3 reconcile` (a dump the kernel filters).
    Sweep,
    /// Exactly the entries the records name, before and after (a reconcile
    /// `watch` triggers): looked up one by one; strays are left to the sweep.
    Records,
}

/// Reconciles once, sweeping (see [`Scope::Sweep`]): records, kernel, state.
/// Holds the state lock throughout, so it is safe to run concurrently with hooks.
pub async fn reconcile<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    dry_run: bool,
) -> Result<Report, ReconcileError> {
    reconcile_scoped(kernel, config, dry_run, Scope::Sweep).await
}

/// Reconciles once, reading the kernel as `scope` says.
pub async fn reconcile_scoped<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    dry_run: bool,
    scope: Scope,
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
    let served = decide::still_running(&mut running, &records, &observe::stopping(&state));
    if !dry_run {
        for u in &served {
            state.clear_stopping(u)?;
        }
        // A refused change's note outlives its domain only when no hook saw it stop.
        for u in decide::gone(state.refusals()?.into_iter().map(|r| r.uuid), &running) {
            state.clear_refused(&u)?;
        }
    }
    let incoming = observe::incoming(&state);
    let recorded = observe::recorded_entries(scope, &records);
    let facts = observe::adoption_facts(kernel, config, &records, &running).await?;
    tracing::debug!(elapsed = ?t0.elapsed(), domains = facts.len(), "read host facts");
    // Adoptions plan against the claims opened once (listed when they are
    // about as many as the records: a boot), other reconciles need no claim.
    let claims = match facts.is_empty() {
        true => None,
        false => Some(state.ownership_view(facts.len() >= records.len())?),
    };
    let owners: &dyn crate::plan::Ownership = match &claims {
        Some(v) => v,
        None => &state,
    };
    let d = desired(
        config,
        records,
        &running,
        &incoming,
        &facts,
        owners,
        now_ms(),
    );
    tracing::debug!(elapsed = ?t0.elapsed(), "decided records");
    // The records are written meanwhile (declared after the lock: dropped, and
    // so waited for, before it is released).
    let mut writer = (!dry_run).then(|| write::RecordWriter::start(&state, &d));
    let many = running.len() >= DROP_ASIDE;
    drop(claims);
    drop_aside(many, (running, facts));
    kernel.forget_links();
    let bridges = crate::kernel::routed_bridges(kernel, config).await?;
    let pinned = if d.keep.is_empty() && !config.manage_gateways {
        Vec::new()
    } else {
        apply::pin_bridges(kernel, config, &bridges, dry_run).await
    };
    let gateways = apply::add_gateways(kernel, config, &bridges, dry_run).await;
    let view = observe::kernel_view(kernel, &bridges, config, scope, recorded, &d.keep).await?;
    tracing::debug!(elapsed = ?t0.elapsed(), routes = view.routes.len(), neighbours = view.neighbours.len(), "read kernel");
    let kd = diff(
        &decide::wanted_entries(&d.keep, &view),
        &view,
        config.route_protocol,
    );
    let mut report = Report {
        next_change: decide::next_change(config, &d),
        dry_run,
        domains: d.keep.len(),
        changes: d.changes.clone(),
        errors: Vec::new(),
    };
    report.changes.extend(
        decide::changes(Action::Remove, swept)
            .chain(decide::changes(Action::PinMac, pinned))
            .chain(decide::changes(Action::Gateway, gateways))
            .chain(decide::diff_changes(&kd, &d.keep, &view)),
    );
    tracing::debug!(elapsed = ?t0.elapsed(), add = kd.add.len(), "diffed");
    let Some(writer) = writer.as_mut() else {
        return Ok(report);
    };
    apply::apply(kernel, config, &state, &d, &kd, &view, writer, &mut report).await?;
    tracing::debug!(elapsed = ?t0.elapsed(), "kernel changed, state written");
    // A refused domain is refused again on every run: not a change made.
    let made = report
        .changes
        .iter()
        .filter(|c| c.action != Action::Refuse)
        .count();
    if made > 0 {
        info!(changes = made, errors = report.errors.len(), "reconciled");
    }
    drop_aside(many, (d, kd, view));
    Ok(report)
}

/// Parsed domains from which [`drop_aside`] frees on another thread.
const DROP_ASIDE: usize = 256;

/// Frees `what` (a boot's 10,000 parsed status files, plans and entries: a
/// few hundred thousand allocations) on a thread of its own when `many`, so
/// that the caller goes on at once.
fn drop_aside<T: Send + 'static>(many: bool, what: T) {
    if many {
        std::thread::spawn(move || drop(what));
    }
}
