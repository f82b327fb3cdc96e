//! What the kernel holds on the routed bridges, read once and indexed: the
//! view reconcile, status and check compare the records with.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::{Kernel, KernelError, KernelNeighbour, KernelRoute};
use crate::address::Mac;
use crate::plan::Entry;

/// What the kernel holds on the routed bridges, indexed for lookups.
pub struct KernelView {
    pub routes: Vec<KernelRoute>,
    pub neighbours: Vec<KernelNeighbour>,
    pub bridges: HashMap<String, u32>,
    /// (destination, ifindex, metric, gateway, protocol) of every route.
    route_keys: HashSet<RouteKey>,
    /// (address, ifindex) → (MAC, protocol) of every permanent neighbour.
    neighbour_macs: HashMap<(IpAddr, u32), (Mac, u8)>,
}

type RouteKey = (IpNet, u32, u32, Option<IpAddr>, u8);

impl KernelView {
    pub async fn read<K: Kernel>(
        kernel: &mut K,
        bridges: &[String],
    ) -> Result<KernelView, KernelError> {
        let mut idx = HashMap::new();
        let mut neighbours = Vec::new();
        for b in bridges {
            if let Some(i) = kernel.link_index(b).await? {
                idx.insert(b.clone(), i);
                neighbours.extend(kernel.neighbours(i).await?);
            }
        }
        Ok(KernelView::new(kernel.routes().await?, neighbours, idx))
    }

    pub fn new(
        routes: Vec<KernelRoute>,
        neighbours: Vec<KernelNeighbour>,
        bridges: HashMap<String, u32>,
    ) -> KernelView {
        let route_keys = routes
            .iter()
            .map(|k| {
                (
                    k.destination,
                    k.ifindex.unwrap_or(0),
                    k.metric,
                    k.gateway,
                    k.protocol,
                )
            })
            .collect();
        let neighbour_macs = neighbours
            .iter()
            .filter(|k| k.permanent)
            .filter_map(|k| Some(((k.address, k.ifindex), (k.mac?, k.protocol))))
            .collect();
        KernelView {
            routes,
            neighbours,
            bridges,
            route_keys,
            neighbour_macs,
        }
    }

    /// Whether the kernel holds exactly this entry, installed by `protocol`.
    pub fn has(&self, e: &Entry, protocol: u8) -> bool {
        match e {
            Entry::Route(r) => {
                let Some(i) = self.bridges.get(&r.bridge) else {
                    return false;
                };
                self.route_keys
                    .contains(&(r.destination, *i, r.metric, r.via, protocol))
            }
            Entry::Neighbour(n) => {
                let Some(i) = self.bridges.get(&n.bridge) else {
                    return false;
                };
                // The protocol too, as for routes: an entry someone else wrote with
                // the right MAC is not virt-l3's until replaced (found by the diff's
                // property test: one pass left it protocol 0, outside `proto 52`).
                self.neighbour_macs.get(&(n.address, *i)) == Some(&(n.mac, protocol))
            }
        }
    }
}
