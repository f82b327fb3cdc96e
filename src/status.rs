//! `virt-l3 status`: each recorded domain and whether its entries are in the kernel now.

use serde::Serialize;

use crate::kernel::foreign::Foreign;
use crate::kernel::{Kernel, KernelError, KernelView};
use crate::state::{Record, Refusal, StateDir, StateError};

#[derive(Debug, Serialize)]
pub struct EntryStatus {
    pub entry: String,
    pub present: bool,
}

#[derive(Debug, Serialize)]
pub struct DomainStatus {
    pub name: String,
    pub uuid: String,
    pub standby: bool,
    pub metric: u32,
    pub addresses: Vec<String>,
    pub entries: Vec<EntryStatus>,
    /// Other tools' routes and permanent neighbours for the domain's addresses
    /// on the routed bridges (crate::kernel::foreign).
    pub conflicts: Vec<Foreign>,
    /// A change to the running domain that `refresh` refused (its routes stay
    /// as they were), until a later refresh succeeds or the domain stops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl DomainStatus {
    pub fn healthy(&self) -> bool {
        self.entries.iter().all(|e| e.present) && self.conflicts.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

pub fn domain_status(record: &Record, view: &KernelView) -> DomainStatus {
    let entries = record.plan.entries(record.metric);
    let mut conflicts: Vec<Foreign> = entries
        .iter()
        .flat_map(|e| view.foreign(e, record.protocol))
        .collect();
    conflicts.dedup();
    DomainStatus {
        name: record.plan.name.clone(),
        uuid: record.plan.uuid.clone(),
        standby: record.standby,
        metric: record.metric,
        addresses: record.plan.addresses().map(|a| a.to_string()).collect(),
        entries: entries
            .iter()
            .map(|e| EntryStatus {
                entry: e.to_string(),
                present: view.has(e, record.protocol),
            })
            .collect(),
        conflicts,
        refused: None,
    }
}

pub async fn status<K: Kernel>(
    kernel: &mut K,
    state: &StateDir,
    bridges: &[String],
) -> Result<Vec<DomainStatus>, StatusError> {
    let records = state.records()?;
    // Exactly the recorded entries, looked up: the cost follows them, not the
    // size of the host's routing table.
    let entries: Vec<_> = records
        .iter()
        .flat_map(|r| r.plan.entries(r.metric))
        .collect();
    let mut protocols: Vec<u8> = records.iter().map(|r| r.protocol).collect();
    protocols.sort_unstable();
    protocols.dedup();
    let view = KernelView::lookup(kernel, bridges, &entries, &protocols).await?;
    let mut out: Vec<DomainStatus> = records.iter().map(|r| domain_status(r, &view)).collect();
    with_refusals(&mut out, state.refusals()?);
    Ok(out)
}

/// Adds the pending refusals: to the domain's status, or (a domain without a
/// record: a refused first routed NIC) as a status of its own, with no entries.
pub fn with_refusals(out: &mut Vec<DomainStatus>, refusals: Vec<Refusal>) {
    for r in refusals {
        match out.iter_mut().find(|d| d.uuid == r.uuid) {
            Some(d) => d.refused = Some(r.reason),
            None => out.push(DomainStatus {
                name: r.name,
                uuid: r.uuid,
                standby: false,
                metric: 0,
                addresses: Vec::new(),
                entries: Vec::new(),
                conflicts: Vec::new(),
                refused: Some(r.reason),
            }),
        }
    }
}
