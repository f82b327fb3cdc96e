//! `virt-l3 status`: each recorded domain and whether its entries are in the kernel now.

use serde::Serialize;

use crate::kernel::{Kernel, KernelError, KernelView};
use crate::state::{Record, StateDir, StateError};

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
}

impl DomainStatus {
    pub fn healthy(&self) -> bool {
        self.entries.iter().all(|e| e.present)
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
    DomainStatus {
        name: record.plan.name.clone(),
        uuid: record.plan.uuid.clone(),
        standby: record.standby,
        metric: record.metric,
        addresses: record.plan.addresses().map(|a| a.to_string()).collect(),
        entries: record
            .plan
            .entries(record.metric)
            .iter()
            .map(|e| EntryStatus {
                entry: e.to_string(),
                present: view.has(e, record.protocol),
            })
            .collect(),
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
    Ok(records.iter().map(|r| domain_status(r, &view)).collect())
}
