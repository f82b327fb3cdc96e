//! Applying what was decided: kernel changes, host settings, then the records.

use std::collections::HashSet;

use super::decide::{changes, Action, Change, Desired, KernelDiff};
use super::{ReconcileError, Report};
use crate::config::Config;
use crate::kernel::{Kernel, KernelView};
use crate::state::{StateDir, StateError};

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

/// Makes the kernel changes of a diff: additions, then removals. Every change is
/// attempted; returns the failures.
pub async fn apply_diff<K: Kernel>(kernel: &mut K, kd: &KernelDiff, protocol: u8) -> Vec<String> {
    let mut errors = Vec::new();
    for (r, e) in kd.add.iter().zip(kernel.install(&kd.add, protocol).await) {
        if let Err(err) = e {
            errors.push(format!("{r}: {err}"));
        }
    }
    for err in kernel
        .remove_kernel_entries(&kd.remove_routes, &kd.remove_neighbours)
        .into_iter()
        .filter_map(Result::err)
    {
        errors.push(err.to_string());
    }
    errors
}

/// Applies a decided reconcile: the records first (claims, then records, in bulk;
/// as the hook does, the state before the kernel), then the kernel diff (one
/// batch), then the host settings.
pub async fn apply<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    state: &StateDir,
    d: &Desired,
    kd: &KernelDiff,
    view: &KernelView,
    report: &mut Report,
) -> Result<(), ReconcileError> {
    write_records(state, d)?;
    let errors = apply_diff(kernel, kd, config.route_protocol).await;
    report.errors.extend(errors);
    if config.port_isolation {
        isolate_taps(kernel, d, report).await?;
    }
    if config.firewall.enabled {
        firewall(kernel, config, d, report).await;
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

/// virt-l3's nftables tables: installed and current (restored after a flush or
/// a deletion), the taps of every kept record accepted, any other accepted port
/// forgotten. Failures go to the report.
async fn firewall<K: Kernel>(kernel: &mut K, config: &Config, d: &Desired, report: &mut Report) {
    match kernel.ensure_firewall(config).await {
        Ok(true) => report.changes.push(Change {
            action: Action::Firewall,
            domain: None,
            what: "virt-l3's nftables tables (missing or stale)".into(),
        }),
        Ok(false) => {}
        Err(e) => {
            report.errors.push(e.to_string());
            return;
        }
    }
    let accepted: HashSet<String> = match kernel.accepted_ports() {
        Ok(a) => a.into_iter().collect(),
        Err(e) => {
            report.errors.push(e.to_string());
            return;
        }
    };
    let mut taps = HashSet::new();
    for rec in &d.keep {
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
            if let Err(e) = kernel.accept_ports(&[tap]) {
                report.errors.push(e.to_string());
            }
        }
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

/// Saves the records whose standing changed (adopted, promoted, demoted), all
/// at once ([`StateDir::save_all`]: reconcile never changes a record's plan),
/// and forgets the pruned ones.
fn write_records(state: &StateDir, d: &Desired) -> Result<(), StateError> {
    let changed: HashSet<&str> = d
        .changes
        .iter()
        .filter_map(|c| c.domain.as_deref())
        .collect();
    let saved: Vec<_> = d
        .keep
        .iter()
        .filter(|r| changed.contains(r.plan.name.as_str()))
        .collect();
    state.save_all(&saved)?;
    for rec in saved {
        if !rec.standby {
            state.clear_incoming(&rec.plan.uuid)?;
        }
    }
    for rec in &d.prune {
        state.forget(rec)?;
    }
    Ok(())
}
