//! `virt-l3 status`: each recorded domain and whether its entries are in the kernel now.

use std::collections::HashMap;

use serde::Serialize;

use crate::netlink::{Entry, Kernel, KernelError, KernelNeighbour, KernelRoute};
use crate::routing::entries;
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

/// What the kernel holds on the routed bridges, indexed for lookups.
pub struct KernelView {
    pub routes: Vec<KernelRoute>,
    pub neighbours: Vec<KernelNeighbour>,
    pub bridges: HashMap<String, u32>,
}

impl KernelView {
    pub async fn read(kernel: &mut Kernel, bridges: &[String]) -> Result<KernelView, KernelError> {
        let mut idx = HashMap::new();
        let mut neighbours = Vec::new();
        for b in bridges {
            if let Some(i) = kernel.link_index(b).await? {
                idx.insert(b.clone(), i);
                neighbours.extend(kernel.neighbours(i).await?);
            }
        }
        Ok(KernelView {
            routes: kernel.routes().await?,
            neighbours,
            bridges: idx,
        })
    }

    /// Whether the kernel holds exactly this entry, installed by `protocol`.
    pub fn has(&self, e: &Entry, protocol: u8) -> bool {
        match e {
            Entry::Route(r) => {
                let Some(i) = self.bridges.get(&r.bridge) else {
                    return false;
                };
                self.routes.iter().any(|k| {
                    k.destination == r.destination
                        && k.ifindex == Some(*i)
                        && k.metric == r.metric
                        && k.gateway == r.via
                        && k.protocol == protocol
                })
            }
            Entry::Neighbour(n) => {
                let Some(i) = self.bridges.get(&n.bridge) else {
                    return false;
                };
                self.neighbours.iter().any(|k| {
                    k.address == n.address && k.ifindex == *i && k.mac == Some(n.mac) && k.permanent
                })
            }
        }
    }
}

pub fn domain_status(record: &Record, view: &KernelView) -> DomainStatus {
    DomainStatus {
        name: record.plan.name.clone(),
        uuid: record.plan.uuid.clone(),
        standby: record.standby,
        metric: record.metric,
        addresses: record.plan.addresses().map(|a| a.to_string()).collect(),
        entries: entries(&record.plan, record.metric)
            .iter()
            .map(|e| EntryStatus {
                entry: e.to_string(),
                present: view.has(e, record.protocol),
            })
            .collect(),
    }
}

pub async fn status(
    kernel: &mut Kernel,
    state: &StateDir,
    bridges: &[String],
) -> Result<Vec<DomainStatus>, StatusError> {
    let records = state.records()?;
    let view = KernelView::read(kernel, bridges).await?;
    Ok(records.iter().map(|r| domain_status(r, &view)).collect())
}
