//! The hook, routing and reconcile against the fake kernel
//! (`virt_l3::kernel::fake`): no root, no network namespace.
#![allow(clippy::unwrap_used)] // test helpers panic with the failing call
#[path = "../common/mod.rs"]
mod common;
mod hook;
mod logging;
mod migration;
mod reconcile;
mod status;

use std::path::PathBuf;

use common::fake::FakeLab;

use virt_l3::config::Config;
use virt_l3::hook::{run_with, HookError, Invocation, Operation};
use virt_l3::kernel::fake::Fault;
use virt_l3::kernel::{KernelNeighbour, KernelRoute};
use virt_l3::reconcile::{reconcile_scoped, Action, Report, Scope};

const NAME: &str = "i-2-10-VM";
const UUID: &str = "6f5a3b2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b";
const PROTO: u8 = 52;

fn xml() -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/domains/dual-stack.xml"))
        .unwrap()
}

/// The fake host with the domain's tap vnet3.
type Lab = FakeLab;

impl FakeLab {
    fn new() -> Lab {
        Lab::with_taps(&["vnet3"])
    }

    fn hook(&self, op: &str) -> Result<(), HookError> {
        self.hook_with(op, NAME, &xml())
    }

    fn hook_with(&self, op: &str, name: &str, xml: &[u8]) -> Result<(), HookError> {
        let inv = Invocation {
            domain: name.to_string(),
            op: Operation::parse(op),
            op_text: op.to_string(),
            subop: "begin".to_string(),
            extra: "-".to_string(),
        };
        let kernel = self.kernel.clone();
        run_with(&self.config, &inv, xml, move || Ok(kernel))
    }

    fn routes(&self) -> Vec<String> {
        self.kernel.route_lines(PROTO)
    }

    fn neighbours(&self) -> usize {
        self.kernel
            .snapshot()
            .neighbours
            .iter()
            .filter(|n| n.protocol == PROTO)
            .count()
    }

    /// libvirt's status file of the domain, in this run state.
    fn running(&self, state: &str, reason: &str) {
        self.write_status(NAME, &String::from_utf8_lossy(&xml()), state, reason);
    }

    /// A reconcile reading the kernel as `scope` says; the reads it made.
    fn reconcile_scoped(&self, scope: Scope) -> (Report, Vec<String>) {
        let mut kernel = self.kernel.clone();
        self.kernel.with(|m| m.reads.clear());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let r = rt
            .block_on(reconcile_scoped(&mut kernel, &self.config, false, scope))
            .unwrap();
        (r, self.kernel.with(|m| std::mem::take(&mut m.reads)))
    }

    /// `virt-l3 status`: (entry, present) of every recorded entry; the reads made.
    fn status(&self) -> (Vec<(String, bool)>, Vec<String>) {
        let mut kernel = self.kernel.clone();
        self.kernel.with(|m| m.reads.clear());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let s = rt
            .block_on(virt_l3::status::status(
                &mut kernel,
                &self.state(),
                &self.config.bridges,
            ))
            .unwrap();
        let entries = s
            .iter()
            .flat_map(|d| d.entries.iter().map(|e| (e.entry.clone(), e.present)))
            .collect();
        (entries, self.kernel.with(|m| std::mem::take(&mut m.reads)))
    }
}

fn ifindex(lab: &Lab) -> u32 {
    lab.kernel.index_of("cloudbr0").unwrap()
}

fn expected_routes(lab: &Lab, metric: u32) -> Vec<String> {
    let i = ifindex(lab);
    let mut v = vec![
        format!("2.57.57.30/32 dev {i} metric {metric}"),
        format!("2001:678:3a4:100::80/128 dev {i} metric {metric}"),
        format!("2001:678:3a4:8000::/56 via 2001:678:3a4:100::80 dev {i} metric {metric}"),
    ];
    v.sort();
    v
}

/// Damages the routed domain's entries: one route missing, one neighbour with
/// another MAC; a protocol-52 route and neighbour nobody wants (strays).
fn damage(lab: &Lab) {
    let i = ifindex(lab);
    lab.kernel.with(|m| {
        m.routes
            .retain(|r| r.destination.to_string() != "2.57.57.30/32");
        m.neighbours[0].mac = Some(virt_l3::address::Mac([0x52, 0, 0, 0, 0, 9]));
        m.routes.push(KernelRoute {
            destination: "192.0.2.99/32".parse().unwrap(),
            ifindex: Some(i),
            gateway: None,
            metric: 100,
            protocol: PROTO,
            table: 254,
        });
        m.neighbours.push(KernelNeighbour {
            address: "192.0.2.99".parse().unwrap(),
            ifindex: i,
            mac: None,
            permanent: true,
            protocol: PROTO,
        });
    });
}
