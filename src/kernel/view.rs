//! What the kernel holds on the routed bridges, read once and indexed: the
//! view reconcile, status and check compare the records with.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::{bridge_of, Found, Kernel, KernelError, KernelNeighbour, KernelRoute};
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
        let (idx, neighbours) = Self::bridge_neighbours(kernel, bridges).await?;
        Ok(KernelView::new(kernel.routes().await?, neighbours, idx))
    }

    /// What the orphan sweep needs (boot, `virt-l3 reconcile`, check): the main
    /// table's routes of `protocol` (a dump the kernel filters, see
    /// [`Kernel::routes_of`]) and the neighbours on the bridges.
    pub async fn sweep<K: Kernel>(
        kernel: &mut K,
        bridges: &[String],
        protocol: u8,
    ) -> Result<KernelView, KernelError> {
        let (idx, neighbours) = Self::bridge_neighbours(kernel, bridges).await?;
        Ok(KernelView::new(
            kernel.routes_of(protocol).await?,
            neighbours,
            idx,
        ))
    }

    /// Exactly what `entries` need (`status`, a reconcile `watch` triggers): each
    /// entry looked up ([`Kernel::lookup`]), so the cost follows virt-l3's entries,
    /// not the table's size. A route whose answer is not the entry itself (another
    /// route comes first for that destination, or none answers) may still be
    /// there behind it: then the routes of `protocols` are read as the sweep reads
    /// them, so the view is exact either way (only the cost differs).
    pub async fn lookup<K: Kernel>(
        kernel: &mut K,
        bridges: &[String],
        entries: &[Entry],
        protocols: &[u8],
    ) -> Result<KernelView, KernelError> {
        let mut idx = HashMap::new();
        for b in bridges {
            if let Some(i) = kernel.link_index(b).await? {
                idx.insert(b.clone(), i);
            }
        }
        let mut seen = HashSet::new();
        let entries: Vec<Entry> = entries
            .iter()
            .filter(|e| idx.contains_key(bridge_of(e)) && seen.insert(*e))
            .cloned()
            .collect();
        let answers = kernel.lookup(&entries).await?;
        let mut routes: Vec<KernelRoute> = Vec::new();
        let mut neighbours: Vec<KernelNeighbour> = Vec::new();
        let mut uncertain = false;
        for (e, a) in entries.iter().zip(answers) {
            match (e, a) {
                (Entry::Route(r), Found::Route(k)) => {
                    let exact = k.destination == r.destination
                        && k.ifindex == idx.get(&r.bridge).copied()
                        && k.metric == r.metric
                        && k.gateway == r.via
                        && protocols.contains(&k.protocol);
                    uncertain |= !exact;
                    // Another tool's route of that destination is kept too:
                    // status names it (crate::kernel::foreign).
                    if k.destination == r.destination && !routes.contains(&k) {
                        routes.push(k);
                    }
                }
                (Entry::Route(_), _) => uncertain = true,
                (Entry::Neighbour(_), Found::Neighbour(k)) => {
                    if !neighbours.contains(&k) {
                        neighbours.push(k);
                    }
                }
                (Entry::Neighbour(_), _) => {}
            }
        }
        if uncertain {
            for p in protocols {
                for k in kernel.routes_of(*p).await? {
                    if !routes.contains(&k) {
                        routes.push(k);
                    }
                }
            }
        }
        Ok(KernelView::new(routes, neighbours, idx))
    }

    /// The bridges' indexes and the neighbours on them.
    async fn bridge_neighbours<K: Kernel>(
        kernel: &mut K,
        bridges: &[String],
    ) -> Result<(HashMap<String, u32>, Vec<KernelNeighbour>), KernelError> {
        let mut idx = HashMap::new();
        let mut neighbours = Vec::new();
        for b in bridges {
            if let Some(i) = kernel.link_index(b).await? {
                idx.insert(b.clone(), i);
                neighbours.extend(kernel.neighbours(i).await?);
            }
        }
        Ok((idx, neighbours))
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
