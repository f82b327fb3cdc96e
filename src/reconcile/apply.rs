//! Applying what was decided: kernel changes, host settings, then the records.

use std::collections::HashSet;

use super::decide::{addition_records, changes, Action, Change, Desired, KernelDiff};
use super::write::RecordWriter;
use super::{ReconcileError, Report};
use crate::config::Config;
use crate::kernel::{Kernel, KernelView};
use crate::plan::Entry;
use crate::state::{Record, StateDir, StateError};

/// Pins the routed bridges' MACs (or, in a dry run, says which it would pin):
/// pinning may flush neighbours, which the same pass re-adds. Failures are logged.
pub async fn pin_bridges<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    bridges: &[String],
    dry_run: bool,
) -> Vec<String> {
    let mut pinned = Vec::new();
    for b in bridges {
        match kernel
            .pin_bridge_mac(b, config.gateway_mac_for(b), !dry_run)
            .await
        {
            Ok(Some(done)) => pinned.push(done),
            Ok(None) => {}
            Err(e) => tracing::warn!("{e}"),
        }
    }
    pinned
}

/// Puts the missing gateway addresses on the routed bridges when
/// `manage_gateways` is set (or, in a dry run, says which). Failures are logged.
pub async fn add_gateways<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    bridges: &[String],
    dry_run: bool,
) -> Vec<String> {
    let mut added = Vec::new();
    if !config.manage_gateways {
        return added;
    }
    for b in bridges {
        match kernel.add_gateways(b, &config.gateways, !dry_run).await {
            Ok(done) => added.extend(done),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    added
}

/// Applies a decided reconcile: the additions, each domain's once its record
/// is whole (`writer`: claims, then records, in bulk; as the hook does, the
/// state before the kernel), the pruned records forgotten, the removals, then
/// the host settings.
#[allow(clippy::too_many_arguments)]
pub async fn apply<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    state: &StateDir,
    d: &Desired,
    kd: &KernelDiff,
    view: &KernelView,
    writer: &mut RecordWriter,
    report: &mut Report,
) -> Result<(), ReconcileError> {
    let t0 = std::time::Instant::now();
    let (mut errors, accepted) =
        install_after_records(kernel, config, d, kd, writer, report).await?;
    tracing::debug!(elapsed = ?t0.elapsed(), "records written, entries added");
    forget_records(state, d)?;
    for err in kernel
        .remove_kernel_entries(&kd.remove_routes, &kd.remove_neighbours)
        .into_iter()
        .filter_map(Result::err)
    {
        errors.push(err.to_string());
    }
    report.errors.extend(errors);
    if config.port_isolation {
        isolate_taps(kernel, d, report).await?;
    }
    if let Some(accepted) = accepted {
        firewall_ports(kernel, d.keep.iter(), &accepted, true, report);
        tracing::debug!(elapsed = ?t0.elapsed(), "firewall ensured");
    }
    if config.security_groups {
        // Every running VM's elements again, after the tables were ensured
        // (present elements stay): after a flush or a reinstall of the table, or
        // a reboot, the rules are back.
        for r in &d.keep {
            if let Err(e) = crate::security_group::apply_domain(config, state, r) {
                report.errors.push(e.to_string());
            }
        }
    }
    if config.disable_redirects && !d.keep.is_empty() {
        for b in view.bridges.keys() {
            match kernel.disable_redirects(b) {
                Ok(changed) => report.changes.extend(changes(Action::Sysctl, changed)),
                Err(e) => report
                    .errors
                    .push(format!("cannot turn off ICMP redirects on {b}: {e}")),
            }
        }
    }
    Ok(())
}

/// Isolation of running taps (a tap re-created by libvirt, a flapped bridge).
async fn isolate_taps<K: Kernel>(
    kernel: &mut K,
    d: &Desired,
    report: &mut Report,
) -> Result<(), ReconcileError> {
    let isolated = kernel.isolated_ports().await?;
    for rec in &d.keep {
        for tap in rec.plan.nics.iter().filter_map(|n| n.tap.as_deref()) {
            if isolated.get(tap) == Some(&false) {
                report.changes.push(Change {
                    action: Action::Isolate,
                    domain: Some(rec.plan.name.clone()),
                    what: format!("bridge port {tap}"),
                });
                if let Err(e) = kernel.set_port_isolation(tap, true).await {
                    report.errors.push(e.to_string());
                }
            }
        }
    }
    Ok(())
}

/// virt-l3's nftables tables installed and current (restored after a flush or
/// a deletion); the ports they accept. `None` when that failed (in the report).
async fn firewall_tables<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    report: &mut Report,
) -> Option<HashSet<String>> {
    match kernel.ensure_firewall(config).await {
        Ok(true) => report.changes.push(Change {
            action: Action::Firewall,
            domain: None,
            what: "virt-l3's nftables tables (missing or stale)".into(),
        }),
        Ok(false) => {}
        Err(e) => {
            report.errors.push(e.to_string());
            return None;
        }
    }
    match kernel.accepted_ports() {
        Ok(a) => Some(a.into_iter().collect()),
        Err(e) => {
            report.errors.push(e.to_string());
            None
        }
    }
}

/// With the tables ensured ([`firewall_tables`]: `accepted`), the taps of
/// the kept records (`keep`) accepted; with `forget` (`keep` is every kept
/// record), any other accepted port forgotten. Failures go to the report.
fn firewall_ports<'a, K: Kernel>(
    kernel: &mut K,
    keep: impl Iterator<Item = &'a Record>,
    accepted: &HashSet<String>,
    forget: bool,
    report: &mut Report,
) {
    let mut taps = HashSet::new();
    let mut accept = Vec::new();
    for rec in keep {
        for tap in rec.plan.nics.iter().filter_map(|n| n.tap.as_deref()) {
            taps.insert(tap);
            if accepted.contains(tap) {
                continue;
            }
            report.changes.push(Change {
                action: Action::Accept,
                domain: Some(rec.plan.name.clone()),
                what: format!("bridge port {tap}"),
            });
            accept.push(tap);
        }
    }
    accept_ports(kernel, &accept, report);
    if !forget {
        return;
    }
    let mut stale: Vec<&String> = accepted
        .iter()
        .filter(|p| !taps.contains(p.as_str()))
        .collect();
    stale.sort();
    for port in stale {
        report.changes.push(Change {
            action: Action::Forget,
            domain: None,
            what: format!("bridge port {port} (no running domain)"),
        });
        if let Err(e) = kernel.forget_port(port) {
            report.errors.push(e.to_string());
        }
    }
}

/// Ports accepted per transaction: a boot accepts every running domain's taps.
/// (The elements of one set-element message are limited to 64 KiB.)
const ACCEPT_CHUNK: usize = 512;

/// Accepts `ports`, [`ACCEPT_CHUNK`] per transaction; a transaction that fails
/// is tried again port by port, so that each failure names its port.
fn accept_ports<K: Kernel>(kernel: &mut K, ports: &[&str], report: &mut Report) {
    for chunk in ports.chunks(ACCEPT_CHUNK) {
        if chunk.len() > 1 && kernel.accept_ports(chunk).is_ok() {
            continue;
        }
        for port in chunk {
            if let Err(e) = kernel.accept_ports(&[port]) {
                report.errors.push(e.to_string());
            }
        }
    }
}

/// Installs the additions: those of domains whose record is not being saved
/// at once, then those of each chunk of records once [`RecordWriter`] has
/// written it (an addition of no known domain last). Meanwhile, with the
/// firewall on, its tables are ensured ([`firewall_tables`]; its ports are
/// accepted once every record is whole and the taps isolated). Returns the
/// failed entries and the accepted ports; the writer's error if it failed
/// (what it had not written is not installed).
async fn install_after_records<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    d: &Desired,
    kd: &KernelDiff,
    writer: &mut RecordWriter,
    report: &mut Report,
) -> Result<(Vec<String>, Option<HashSet<String>>), ReconcileError> {
    // Group 0: ready now; 1 + k: after chunk k; last: after every chunk.
    let mut groups: Vec<Vec<Entry>> = vec![Vec::new(); writer.chunks + 2];
    for (e, owner) in kd.add.iter().zip(addition_records(&kd.add, &d.keep)) {
        let group = match owner {
            Some(i) => writer.chunk_of[i].map_or(0, |k| k + 1),
            None => writer.chunks + 1,
        };
        groups[group].push(e.clone());
    }
    let mut errors = Vec::new();
    install(kernel, config, &groups[0], &mut errors).await;
    let accepted = match config.firewall.enabled {
        true => firewall_tables(kernel, config, report).await,
        false => None,
    };
    let mut written = 0;
    while let Some(k) = writer.next_written() {
        install(kernel, config, &groups[k + 1], &mut errors).await;
        written = k + 1;
    }
    if let Err(e) = writer.finish() {
        // The tables may be new: the ports of the records that are whole
        // pass again, as they did before.
        if let Some(accepted) = &accepted {
            let whole = (0..d.keep.len())
                .filter(|i| writer.chunk_of[*i].map_or(true, |k| k < written))
                .map(|i| &d.keep[i]);
            firewall_ports(kernel, whole, accepted, false, report);
        }
        return Err(e.into());
    }
    install(kernel, config, &groups[writer.chunks + 1], &mut errors).await;
    Ok((errors, accepted))
}

/// Installs `entries` (one batch); each failure into `errors`.
async fn install<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    entries: &[Entry],
    errors: &mut Vec<String>,
) {
    if entries.is_empty() {
        return;
    }
    for (r, e) in entries
        .iter()
        .zip(kernel.install(entries, config.route_protocol).await)
    {
        if let Err(err) = e {
            errors.push(format!("{r}: {err}"));
        }
    }
}

/// After the saved records: the incoming marks of those no longer standby
/// cleared, and the pruned records forgotten.
fn forget_records(state: &StateDir, d: &Desired) -> Result<(), StateError> {
    let changed: HashSet<&str> = d
        .changes
        .iter()
        .filter_map(|c| c.domain.as_deref())
        .collect();
    // The marks listed once: clearing each saved record's (absent) mark would
    // open the directory once per record.
    let incoming = super::observe::incoming(state);
    for rec in d
        .keep
        .iter()
        .filter(|r| changed.contains(r.plan.name.as_str()))
    {
        if !rec.standby && incoming.contains(&rec.plan.uuid) {
            state.clear_incoming(&rec.plan.uuid)?;
        }
    }
    for rec in &d.prune {
        state.forget(rec)?;
    }
    Ok(())
}
