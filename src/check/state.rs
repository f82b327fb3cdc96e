//! The `state` item: virt-l3's records, libvirt's running domains and the kernel agree.

use std::collections::HashSet;

use super::{fail, ok, Item};
use crate::config::Config;
use crate::kernel::{KernelError, KernelView, NetlinkKernel};
use crate::reconcile::decide::wanted_entries;
use crate::reconcile::observe::adoption_facts;
use crate::reconcile::{desired, diff, running_domains, Desired, KernelDiff, ReconcileError};
use crate::state::StateDir;

/// Fix of `state` when they disagree.
const RUN_RECONCILE: &str = "virt-l3 reconcile (`virt-l3 reconcile --dry-run` lists the same changes; `virt-l3 status` shows each domain's entries). Keep virt-l3-watch running: it does this by itself within a second, and promotes live-migrated VMs.";

/// State and kernel agree when `virt-l3 reconcile` would change nothing: the same
/// decisions (records against libvirt's status files: adopt, prune, promote, demote)
/// and the same kernel diff, without its lock, its writes or its MAC pinning.
/// `bridges`: the routed bridges (literal names and the bridges patterns match).
pub(super) async fn state(config: &Config, kernel: &mut NetlinkKernel, bridges: &[String]) -> Item {
    let store = StateDir::new(&config.state_dir);
    let records = match store.records() {
        Ok(r) => r,
        Err(e) => {
            return fail(
                "state",
                None,
                format!("Cannot read virt-l3's records: {e}."),
                format!(
                    "Check {} (virt-l3's state_dir): it must be readable by root.",
                    config.state_dir.display()
                ),
            )
        }
    };
    let recorded = records.len();
    let (d, libvirt_note) = match running_domains(&config.libvirt_status_dir) {
        Ok(running) => {
            // The host facts the hook (and reconcile) plan each adoptable domain against.
            let facts = match adoption_facts(kernel, config, &records, &running).await {
                Ok(f) => f,
                Err(e) => return cannot_read_kernel(e),
            };
            let incoming: HashSet<String> = store.incoming().into_iter().collect();
            let d = desired(
                config,
                records,
                &running,
                &incoming,
                &facts,
                &store,
                crate::state::now_ms(),
            );
            (d, String::new())
        }
        Err(ReconcileError::NoStatusDir(dir)) => (
            Desired {
                keep: records,
                ..Desired::default()
            },
            format!(
                " (libvirt's status directory {dir} does not exist: records not compared with running domains)"
            ),
        ),
        Err(e) => {
            return fail(
                "state",
                None,
                format!("{e}."),
                "Run check as root.".to_string(),
            )
        }
    };
    let view = match KernelView::sweep(kernel, bridges, config.route_protocol).await {
        Ok(v) => v,
        Err(e) => return cannot_read_kernel(e),
    };
    let kd = kernel_diff(config, &d, &view);
    let found = disagreements(&d, &kd);
    if found.is_empty() {
        return ok(
            "state",
            None,
            format!(
                "virt-l3's records ({recorded}), libvirt's running domains and the kernel agree: reconcile would change nothing{libvirt_note}."
            ),
        );
    }
    fail(
        "state",
        None,
        format!(
            "virt-l3's records, libvirt's running domains and the kernel disagree{libvirt_note}: {}.",
            found.join("; ")
        ),
        RUN_RECONCILE.to_string(),
    )
}

fn cannot_read_kernel(e: KernelError) -> Item {
    fail(
        "state",
        None,
        format!("Cannot read the kernel's routes and neighbours: {e}."),
        "Run check as root.".to_string(),
    )
}

/// What reconcile would change, one phrase each: its decisions, then the kernel diff.
fn disagreements(d: &Desired, kd: &KernelDiff) -> Vec<String> {
    let mut found: Vec<String> = d
        .changes
        .iter()
        .map(|c| {
            format!(
                "{} {}{}",
                c.action,
                c.what,
                c.domain
                    .as_ref()
                    .map(|n| format!(" (domain {n})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    found.extend(kd.add.iter().map(|e| format!("missing {e}")));
    found.extend(kd.remove_routes.iter().map(|r| {
        format!(
            "stray protocol-{} route {} metric {}",
            r.protocol, r.destination, r.metric
        )
    }));
    found.extend(
        kd.remove_neighbours
            .iter()
            .map(|n| format!("stray neighbour {}", n.address)),
    );
    found
}

/// The kernel changes reconcile would make for the records it keeps: reconcile's
/// own decision (entries of a missing bridge come back with the bridge: item `bridge`).
fn kernel_diff(config: &Config, d: &Desired, view: &KernelView) -> KernelDiff {
    diff(&wanted_entries(&d.keep, view), view, config.route_protocol)
}
