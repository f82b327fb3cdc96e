//! Routing a VM: put a domain's routes and neighbours in the kernel and record
//! them, or take them out using the record. The hook and reconcile both build
//! on these two functions.

use tracing::{info, warn};

use crate::kernel::{Kernel, KernelError};
use crate::plan::{display_name, Entry};
use crate::state::{Record, StateDir, StateError};

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "{failed} of {total} kernel changes for domain {domain} failed, all rolled back: {}",
        join(failures)
    )]
    Apply {
        domain: String,
        total: usize,
        failed: usize,
        failures: Vec<String>,
    },
    #[error(
        "{failed} of {total} kernel changes for domain {domain} failed: {}",
        join(failures)
    )]
    Partial {
        domain: String,
        total: usize,
        failed: usize,
        failures: Vec<String>,
    },
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

fn join(v: &[String]) -> String {
    v.join("; ")
}

/// Failures as sentences, one per distinct reason: refusals with the same errno
/// and message (every change refused for lack of CAP_NET_ADMIN, or because the
/// bridge went down) are told once, listing what was refused.
fn describe(errors: Vec<KernelError>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut groups: Vec<(i32, String, Vec<String>)> = Vec::new();
    for e in errors {
        match e {
            KernelError::Refused {
                what,
                errno,
                message,
            } if errno != 0 => match groups
                .iter_mut()
                .find(|(n, m, _)| *n == errno && *m == message)
            {
                Some((_, _, whats)) => whats.push(what),
                None => groups.push((errno, message, vec![what])),
            },
            other => out.push(other.to_string()),
        }
    }
    for (_, message, whats) in groups {
        out.push(format!(
            "the kernel refused to {}: {message}",
            whats.join(", ")
        ));
    }
    out
}

/// Host-side settings applied with a domain's routes.
#[derive(Debug, Clone, Copy)]
pub struct HostSettings<'a> {
    /// Set bridge port isolation on the domain's taps.
    pub isolate_taps: bool,
    /// Turn off IPv4 ICMP redirects on the domain's bridges.
    pub disable_redirects: bool,
    /// The MAC every routed bridge should have (else: keep the current one, fixed).
    pub gateway_mac: Option<crate::config::GatewayMac>,
    /// With `[firewall] enabled`: the configuration the nftables tables are
    /// ensured for before the domain's taps are accepted.
    pub firewall: Option<&'a crate::config::Config>,
    /// With `security_groups = true`: apply the domain's security group (its
    /// stored rules or CloudStack's default) once the tables are ensured.
    pub security_groups: Option<&'a crate::config::Config>,
}

impl HostSettings<'_> {
    pub fn from_config(config: &crate::config::Config) -> HostSettings<'_> {
        HostSettings {
            isolate_taps: config.port_isolation,
            disable_redirects: config.disable_redirects,
            gateway_mac: config.gateway_mac,
            firewall: config.firewall.enabled.then_some(config),
            security_groups: config.security_groups.then_some(config),
        }
    }
}

/// What to do when some kernel change fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Undo everything this call did and forget the record (at `start`: the VM will not run).
    RollBack,
    /// Keep what worked and the record (at `reconnect`: the VM runs; reconcile retries).
    Keep,
}

/// Records and installs a domain's routes, neighbours and tap isolation.
/// Call under the state lock.
pub async fn route_domain<K: Kernel>(
    kernel: &mut K,
    state: &StateDir,
    record: &Record,
    previous: Option<Record>,
    host: HostSettings<'_>,
    on_failure: OnFailure,
) -> Result<(), RoutingError> {
    let mut bridges: Vec<&str> = record.plan.nics.iter().map(|n| n.bridge.as_str()).collect();
    bridges.sort_unstable();
    bridges.dedup();
    pin_bridges(kernel, state, record, &bridges, host).await?;
    // Record first: if we die half-way, stopped/release or reconcile find what to remove.
    state.save_over(record, previous.as_ref())?;
    let wanted = record.plan.entries(record.metric);
    // A re-apply (`started` after `start`, `reconnect`) installs only what is missing.
    let reapply = previous.as_ref().is_some_and(|p| {
        p.plan == record.plan && p.metric == record.metric && p.protocol == record.protocol
    });
    let to_install = if reapply {
        missing(kernel, &bridges, &wanted, record.protocol).await
    } else {
        wanted.clone()
    };
    let results = kernel.install(&to_install, record.protocol).await;
    // What went in, and so what a rollback takes out (removing what the kernel
    // refused would only fail again, or take out an entry this call never touched).
    let installed: Vec<Entry> = to_install
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(e, _)| e.clone())
        .collect();
    let refused: Vec<KernelError> = results.into_iter().filter_map(Result::err).collect();
    let refused_count = refused.len();
    let mut failures = describe(refused);
    let described = failures.len();
    if failures.is_empty() {
        failures = apply_host_settings(kernel, record, &bridges, host, reapply).await;
    }
    if let (true, Some(config)) = (failures.is_empty(), host.security_groups) {
        // One in-process set-element transaction; a failure at `start` rolls
        // the domain back (fail closed).
        if let Err(e) = crate::security_group::apply_domain(config, state, record) {
            failures.push(e.to_string());
        }
    }
    if failures.is_empty() {
        if let Some(prev) = previous.filter(|p| p != record) {
            remove_stale(kernel, record, &prev, &wanted).await;
        }
        info!(domain = %display_name(&record.plan.name), uuid = %record.plan.uuid, entries = wanted.len(), metric = record.metric, "routed");
        return Ok(());
    }
    let domain = record.plan.name.clone();
    let total = wanted.len();
    let failed = refused_count + failures.len() - described;
    match on_failure {
        OnFailure::RollBack => {
            for r in kernel.remove(&installed, record.protocol).await {
                if let Err(e) = r {
                    warn!(domain = %display_name(&record.plan.name), "rollback could not remove an entry: {e}");
                }
            }
            state.forget(record)?;
            Err(RoutingError::Apply {
                domain,
                total,
                failed,
                failures,
            })
        }
        OnFailure::Keep => Err(RoutingError::Partial {
            domain,
            total,
            failed,
            failures,
        }),
    }
}

/// The entries of `wanted` the kernel does not hold as wanted (all of them when
/// it cannot be read). A re-apply of an unchanged record (`started` after `start`,
/// `reconnect`) then changes nothing: the kernel replaces an identical IPv6 route
/// (and tells every listener, BGP daemons included) where it leaves IPv4 alone.
/// Each entry is looked up ([`KernelView::lookup`](crate::kernel::KernelView::lookup)),
/// so the cost follows the domain's entries, not the host's tables.
async fn missing<K: Kernel>(
    kernel: &mut K,
    bridges: &[&str],
    wanted: &[Entry],
    protocol: u8,
) -> Vec<Entry> {
    let names: Vec<String> = bridges.iter().map(|b| b.to_string()).collect();
    match crate::kernel::KernelView::lookup(kernel, &names, wanted, &[protocol]).await {
        Ok(view) => wanted
            .iter()
            .filter(|e| !view.has(e, protocol))
            .cloned()
            .collect(),
        Err(_) => wanted.to_vec(),
    }
}

/// Pins the MAC of the domain's bridges before installing anything: a bridge MAC
/// that follows its ports would flush these neighbours at the next tap change.
async fn pin_bridges<K: Kernel>(
    kernel: &mut K,
    state: &StateDir,
    record: &Record,
    bridges: &[&str],
    host: HostSettings<'_>,
) -> Result<(), RoutingError> {
    let mut repinned: Vec<&str> = Vec::new();
    for b in bridges {
        let mac = host.gateway_mac.map(|g| g.for_bridge(b));
        match kernel.pin_bridge_mac(b, mac, true).await {
            Ok(Some(done)) => {
                warn!("{done} (it followed its ports; set gateway_mac to choose it)");
                repinned.push(b);
            }
            Ok(None) => {}
            Err(e) => warn!("{e}"),
        }
    }
    if repinned.is_empty() {
        return Ok(());
    }
    // Setting a bridge's MAC, even to the one it has, flushes its neighbour
    // table, permanent entries included: put the other domains' back now
    // rather than leave them to reconcile.
    for other in state.records()? {
        if other.plan.uuid == record.plan.uuid {
            continue;
        }
        let lost: Vec<Entry> = other
            .plan
            .neighbours()
            .into_iter()
            .filter(|n| repinned.contains(&n.bridge.as_str()))
            .map(Entry::Neighbour)
            .collect();
        for r in kernel.install(&lost, other.protocol).await {
            if let Err(e) = r {
                warn!(domain = %display_name(&other.plan.name), "could not restore a neighbour after pinning the bridge MAC: {e}");
            }
        }
    }
    Ok(())
}

/// ICMP redirects off on the bridges, isolation on the taps, then virt-l3's
/// nftables tables ensured (cheap when current) and the taps accepted: a
/// failure fails the step like any other (at `start`: rolled back, the domain
/// refused; fail closed, its taps would pass nothing). Returns the failures.
async fn apply_host_settings<K: Kernel>(
    kernel: &mut K,
    record: &Record,
    bridges: &[&str],
    host: HostSettings<'_>,
    reapply: bool,
) -> Vec<String> {
    let mut failures = Vec::new();
    if host.disable_redirects {
        for b in bridges.iter().copied() {
            match kernel.disable_redirects(b) {
                Ok(changed) => {
                    for c in changed {
                        info!("set {c}");
                    }
                }
                Err(e) => failures.push(format!("cannot turn off ICMP redirects on {b}: {e}")),
            }
        }
    }
    if failures.is_empty() && host.isolate_taps {
        let mut taps = Vec::new();
        for tap in record.plan.nics.iter().filter_map(|n| n.tap.as_deref()) {
            // A re-apply leaves a tap that is isolated already alone (one
            // lookup of that tap, not a dump of every link on the host).
            if reapply && matches!(kernel.port_isolated(tap).await, Ok(Some(true))) {
                continue;
            }
            taps.push(tap);
        }
        for r in kernel.isolate_ports(&taps, true).await {
            if let Err(e) = r {
                failures.push(e.to_string());
            }
        }
    }
    if let (true, Some(config)) = (failures.is_empty(), host.firewall) {
        // Only whether the tables exist: staleness is watch's and reconcile's.
        match kernel.ensure_firewall_present(config).await {
            Ok(true) => {
                info!(domain = %record.plan.name, "installed virt-l3's nftables tables (missing)")
            }
            Ok(false) => {}
            Err(e) => return vec![e.to_string()],
        }
        let taps: Vec<&str> = record
            .plan
            .nics
            .iter()
            .filter_map(|n| n.tap.as_deref())
            .collect();
        if let Err(e) = kernel.accept_ports(&taps) {
            failures.push(e.to_string());
        }
    }
    failures
}

/// Removes the entries of a previous record that the new one no longer has
/// (metric or address changed).
async fn remove_stale<K: Kernel>(kernel: &mut K, record: &Record, prev: &Record, wanted: &[Entry]) {
    let stale: Vec<Entry> = prev
        .plan
        .entries(prev.metric)
        .into_iter()
        .filter(|e| !wanted.contains(e))
        .collect();
    for r in kernel.remove(&stale, prev.protocol).await {
        if let Err(e) = r {
            warn!(domain = %display_name(&record.plan.name), "could not remove a stale entry: {e}");
        }
    }
}

/// Removes everything a record says was installed, then forgets the record.
/// Every removal is attempted; if one fails the record stays, so that
/// reconcile can finish the job. Call under the state lock.
pub async fn unroute_domain<K: Kernel>(
    kernel: &mut K,
    state: &StateDir,
    record: &Record,
) -> Result<(), RoutingError> {
    // The taps stop passing frames first (libvirt may give the names to other domains).
    for tap in record.plan.nics.iter().filter_map(|n| n.tap.as_deref()) {
        if let Err(e) = kernel.forget_port(tap) {
            warn!(domain = %record.plan.name, "{e}");
        }
    }
    let installed = record.plan.entries(record.metric);
    let failures: Vec<String> = kernel
        .remove(&installed, record.protocol)
        .await
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    if failures.is_empty() {
        state.forget(record)?;
        info!(domain = %display_name(&record.plan.name), uuid = %record.plan.uuid, entries = installed.len(), "unrouted");
        Ok(())
    } else {
        Err(RoutingError::Partial {
            domain: record.plan.name.clone(),
            total: installed.len(),
            failed: failures.len(),
            failures,
        })
    }
}
