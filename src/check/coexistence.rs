//! The `foreign-entries` item: another tool's routes or permanent neighbours for
//! the addresses virt-l3 routes on its bridges (crate::kernel::foreign).

use super::{fail, ok, warn, Item};
use crate::config::Config;
use crate::kernel::{KernelView, NetlinkKernel};
use crate::plan::display_name;
use crate::state::StateDir;

const ID: &str = "foreign-entries";

/// One item per foreign entry (fail when it takes precedence over virt-l3's),
/// or one ok item. `bridges`: the routed bridges.
pub(super) async fn foreign_entries(
    config: &Config,
    kernel: &mut NetlinkKernel,
    bridges: &[String],
) -> Vec<Item> {
    let Ok(records) = StateDir::new(&config.state_dir).records() else {
        return Vec::new(); // the `state` item says why
    };
    let Ok(view) = KernelView::read(kernel, bridges).await else {
        return Vec::new(); // the `state` item says why
    };
    let mut items = Vec::new();
    for r in &records {
        let mut seen = Vec::new();
        for e in r.plan.entries(r.metric) {
            for f in view.foreign(&e, r.protocol) {
                if seen.contains(&f) {
                    continue;
                }
                let summary = format!(
                    "Another tool manages {} of domain {} on a routed bridge: {}{}.",
                    f.address,
                    display_name(&r.plan.name),
                    f.entry,
                    if f.wins {
                        ", which takes precedence over virt-l3's (its metric classes and live migration no longer decide)"
                    } else {
                        ""
                    }
                );
                let fix = format!(
                    "Stop that tool from managing the addresses of VMs on virt-l3's bridges (CloudStack: the agent's modifymacip.sh for networks on these bridges), then remove its entry: {}. virt-l3 keeps its own.",
                    f.remove
                );
                let subject = Some(f.address.as_str());
                items.push(if f.wins {
                    fail(ID, subject, summary, fix)
                } else {
                    warn(ID, subject, summary, fix)
                });
                seen.push(f);
            }
        }
    }
    if items.is_empty() {
        items.push(ok(
            ID,
            None,
            "No other tool's routes or permanent neighbours for the routed guests' addresses on the routed bridges.".into(),
        ));
    }
    items
}
