//! A test double: an in-memory model of the kernel tables virt-l3 touches, with
//! fault injection. Not used by virt-l3 itself; public so that unit tests and
//! integration tests (`tests/*.rs`) can run routing, the hook and reconcile
//! without root or network namespaces.
//!
//! The model follows the kernel where virt-l3 depends on it:
//! - an install (`NLM_F_CREATE | NLM_F_REPLACE`) replaces the route of the same
//!   destination and metric, or the neighbour of the same address and interface;
//! - a route deletion removes the first route matching what the request gives
//!   (destination, metric, protocol; interface and gateway when given), a
//!   neighbour deletion the entry of that address and interface; one already
//!   gone counts as removed;
//! - changing a bridge's MAC flushes its neighbour table, permanent entries included;
//! - entries on a bridge that does not exist fail as [`KernelError::NoBridge`]
//!   (install) or count as removed (remove).
//!
//! A `FakeKernel` is a handle: clones share the same model, so a test can give
//! one to the code under test and look at the tables afterwards.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::rc::Rc;

use super::{
    bridge_of, errno_text, Found, Kernel, KernelError, KernelNeighbour, KernelRoute, RouteLookup,
};
use crate::address::Mac;
use crate::plan::Entry;

/// The main routing table's number.
pub const MAIN_TABLE: u32 = 254;

/// An interface of the fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub bridge: bool,
    pub up: bool,
    /// The bridge's MAC (bridges only).
    pub mac: Option<Mac>,
    /// Whether the MAC was set by an administrator (else it follows the ports).
    pub mac_pinned: bool,
    /// A bridge port's isolation flag (`None`: not a bridge port).
    pub isolated: Option<bool>,
}

/// A failure to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The Nth change (counting from 1 over every entry installed or removed, every
    /// port isolation and MAC set) fails with this errno.
    Nth { n: usize, errno: i32 },
    /// Every change whose description contains this text ("add route 192.0.2.10/32",
    /// "remove neighbour ...", "set bridge port isolation on vnet0") fails.
    Matching { text: String, errno: i32 },
    /// Reading the kernel (routes, neighbours, addresses, links) fails.
    Reads { errno: i32 },
}

/// The fake kernel's tables.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub links: BTreeMap<String, Link>,
    pub routes: Vec<KernelRoute>,
    pub neighbours: Vec<KernelNeighbour>,
    pub host_addresses: Vec<IpAddr>,
    /// `send_redirects` per interface (`all` included); absent reads as 1.
    pub send_redirects: BTreeMap<String, bool>,
    pub has_net_admin: bool,
    pub faults: Vec<Fault>,
    /// Changes attempted so far (see [`Fault::Nth`]).
    pub changes: usize,
    /// Every change made, in order, as described in errors ("add route ...").
    pub log: Vec<String>,
    /// Every table read, in order: "routes" (a whole dump), "routes proto N"
    /// (a filtered dump), "lookup N" (N entries looked up).
    pub reads: Vec<String>,
    /// virt-l3's nftables tables are installed (and current).
    pub firewall: bool,
    /// How many times the tables were (re)installed.
    pub firewall_installs: usize,
    /// The tables' accepted ports.
    pub accepted_ports: std::collections::BTreeSet<String>,
}

/// An in-memory kernel; see the module documentation.
#[derive(Debug, Clone)]
pub struct FakeKernel {
    model: Rc<RefCell<Model>>,
}

impl Default for FakeKernel {
    fn default() -> Self {
        FakeKernel::new()
    }
}

impl FakeKernel {
    /// A host with no interface, no address, and `CAP_NET_ADMIN`.
    pub fn new() -> FakeKernel {
        FakeKernel {
            model: Rc::new(RefCell::new(Model {
                has_net_admin: true,
                ..Model::default()
            })),
        }
    }

    /// Reads or changes the model.
    pub fn with<T>(&self, f: impl FnOnce(&mut Model) -> T) -> T {
        f(&mut self.model.borrow_mut())
    }

    /// A copy of the model as it is now.
    pub fn snapshot(&self) -> Model {
        self.model.borrow().clone()
    }

    fn next_index(&self) -> u32 {
        self.with(|m| m.links.values().map(|l| l.index).max().unwrap_or(1) + 1)
    }

    /// Adds a bridge that is up, with a MAC that follows its ports; returns its index.
    pub fn add_bridge(&self, name: &str) -> u32 {
        let index = self.next_index();
        let mac = Mac([0x02, 0, 0, 0, 0, index as u8]);
        self.with(|m| {
            m.links.insert(
                name.to_string(),
                Link {
                    index,
                    bridge: true,
                    up: true,
                    mac: Some(mac),
                    mac_pinned: false,
                    isolated: None,
                },
            )
        });
        index
    }

    /// Adds a bridge port (a VM's tap), not isolated; returns its index.
    pub fn add_port(&self, name: &str) -> u32 {
        let index = self.next_index();
        self.with(|m| {
            m.links.insert(
                name.to_string(),
                Link {
                    index,
                    bridge: false,
                    up: true,
                    mac: None,
                    mac_pinned: false,
                    isolated: Some(false),
                },
            )
        });
        index
    }

    /// Removes an interface, and the routes and neighbours through it.
    pub fn remove_link(&self, name: &str) {
        self.with(|m| {
            if let Some(l) = m.links.remove(name) {
                m.routes.retain(|r| r.ifindex != Some(l.index));
                m.neighbours.retain(|n| n.ifindex != l.index);
            }
        })
    }

    pub fn inject(&self, fault: Fault) {
        self.with(|m| m.faults.push(fault))
    }

    pub fn clear_faults(&self) {
        self.with(|m| m.faults.clear())
    }

    pub fn index_of(&self, name: &str) -> Option<u32> {
        self.with(|m| m.links.get(name).map(|l| l.index))
    }

    /// The routes of `protocol`, each as `DEST [via GW] dev IFINDEX metric M`, sorted.
    pub fn route_lines(&self, protocol: u8) -> Vec<String> {
        let mut out: Vec<String> = self.with(|m| {
            m.routes
                .iter()
                .filter(|r| r.protocol == protocol)
                .map(|r| {
                    format!(
                        "{}{} dev {} metric {}",
                        r.destination,
                        r.gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
                        r.ifindex.map_or("-".to_string(), |i| i.to_string()),
                        r.metric
                    )
                })
                .collect()
        });
        out.sort();
        out
    }

    /// A [`Fault::Matching`] for a firewall change (not counted as a change, so
    /// that [`Fault::Nth`] keeps numbering routes, neighbours and links).
    fn firewall_fault(&self, what: &str) -> Result<(), KernelError> {
        self.with(|m| {
            match m.faults.iter().find_map(|f| match f {
                Fault::Matching { text, errno } if what.contains(text.as_str()) => Some(*errno),
                _ => None,
            }) {
                Some(errno) => Err(KernelError::Refused {
                    what: what.to_string(),
                    errno,
                    message: errno_text(errno),
                }),
                None => Ok(()),
            }
        })
    }

    /// The fault for the next change described as `what`, counting it.
    fn fault(&self, what: &str) -> Option<KernelError> {
        self.with(|m| {
            m.changes += 1;
            let n = m.changes;
            let errno = m.faults.iter().find_map(|f| match f {
                Fault::Nth { n: at, errno } if *at == n => Some(*errno),
                Fault::Matching { text, errno } if what.contains(text.as_str()) => Some(*errno),
                _ => None,
            })?;
            Some(KernelError::Refused {
                what: what.to_string(),
                errno,
                message: errno_text(errno),
            })
        })
    }

    fn read_fault(&self, what: &str) -> Result<(), KernelError> {
        self.with(|m| {
            match m.faults.iter().find_map(|f| match f {
                Fault::Reads { errno } => Some(*errno),
                _ => None,
            }) {
                Some(errno) => Err(KernelError::Refused {
                    what: what.to_string(),
                    errno,
                    message: errno_text(errno),
                }),
                None => Ok(()),
            }
        })
    }

    fn install_one(&self, e: &Entry, index: u32, protocol: u8) {
        self.with(|m| match e {
            Entry::Route(r) => {
                let new = KernelRoute {
                    destination: r.destination,
                    ifindex: Some(index),
                    gateway: r.via,
                    metric: r.metric,
                    protocol,
                    table: MAIN_TABLE,
                };
                match m
                    .routes
                    .iter()
                    .position(|k| k.destination == new.destination && k.metric == new.metric)
                {
                    Some(i) => m.routes[i] = new,
                    None => m.routes.push(new),
                }
            }
            Entry::Neighbour(n) => {
                let new = KernelNeighbour {
                    address: n.address,
                    ifindex: index,
                    mac: Some(n.mac),
                    permanent: true,
                    protocol,
                };
                match m
                    .neighbours
                    .iter()
                    .position(|k| k.address == new.address && k.ifindex == new.ifindex)
                {
                    Some(i) => m.neighbours[i] = new,
                    None => m.neighbours.push(new),
                }
            }
        })
    }

    fn delete_route(&self, r: &KernelRoute) {
        self.with(|m| {
            if let Some(i) = m.routes.iter().position(|k| {
                k.destination == r.destination
                    && k.metric == r.metric
                    && k.protocol == r.protocol
                    && r.ifindex.map_or(true, |x| k.ifindex == Some(x))
                    && r.gateway.map_or(true, |g| k.gateway == Some(g))
            }) {
                m.routes.remove(i);
            }
        })
    }

    fn delete_neighbour(&self, address: IpAddr, ifindex: u32) {
        self.with(|m| {
            m.neighbours
                .retain(|k| !(k.address == address && k.ifindex == ifindex))
        })
    }

    fn logged(&self, what: String) {
        self.with(|m| m.log.push(what))
    }
}

impl Kernel for FakeKernel {
    async fn link_index(&mut self, name: &str) -> Result<Option<u32>, KernelError> {
        self.read_fault(&format!("look up interface {name}"))?;
        Ok(self.index_of(name))
    }

    fn forget_links(&mut self) {}

    async fn bridge_problem(&mut self, name: &str) -> Result<Option<String>, KernelError> {
        self.read_fault(&format!("look up interface {name}"))?;
        Ok(match self.with(|m| m.links.get(name).cloned()) {
            None => Some(format!("bridge {name} does not exist on this host")),
            Some(l) if !l.bridge => Some(format!("{name} exists but is not a Linux bridge")),
            Some(l) if !l.up => Some(format!("bridge {name} is down (ip link set {name} up)")),
            Some(_) => None,
        })
    }

    async fn link_mac(&self, name: &str) -> Result<Option<Mac>, KernelError> {
        self.read_fault(&format!("look up interface {name}"))?;
        Ok(self.with(|m| m.links.get(name).and_then(|l| l.mac)))
    }

    async fn local_among(&self, candidates: &[IpAddr]) -> Result<Vec<IpAddr>, KernelError> {
        self.read_fault("look up an address")?;
        Ok(self.with(|m| {
            candidates
                .iter()
                .filter(|c| m.host_addresses.contains(c))
                .copied()
                .collect()
        }))
    }

    async fn lookup_routes(&self, addresses: &[IpAddr]) -> Result<Vec<RouteLookup>, KernelError> {
        self.read_fault("look up an address")?;
        Ok(self.with(|m| {
            addresses
                .iter()
                .map(|a| RouteLookup {
                    address: *a,
                    local: m.host_addresses.contains(a),
                    route: longest_match(&m.routes, *a),
                })
                .collect()
        }))
    }

    async fn link_name(&self, index: u32) -> Result<Option<String>, KernelError> {
        self.read_fault("look up an interface")?;
        Ok(self.with(|m| {
            m.links
                .iter()
                .find(|(_, l)| l.index == index)
                .map(|(n, _)| n.clone())
        }))
    }

    async fn host_addresses(&self) -> Result<Vec<IpAddr>, KernelError> {
        self.read_fault("list the host's addresses")?;
        Ok(self.with(|m| m.host_addresses.clone()))
    }

    async fn install(&mut self, entries: &[Entry], protocol: u8) -> Vec<Result<(), KernelError>> {
        if entries
            .iter()
            .any(|e| self.index_of(bridge_of(e)).is_none())
        {
            return entries
                .iter()
                .map(|x| Err(KernelError::NoBridge(bridge_of(x).to_string())))
                .collect();
        }
        entries
            .iter()
            .map(|e| {
                let what = format!("add {e}");
                if let Some(err) = self.fault(&what) {
                    return Err(err);
                }
                let index = self.index_of(bridge_of(e)).unwrap_or_default();
                self.install_one(e, index, protocol);
                self.logged(what);
                Ok(())
            })
            .collect()
    }

    async fn remove(&mut self, entries: &[Entry], protocol: u8) -> Vec<Result<(), KernelError>> {
        entries
            .iter()
            .map(|e| {
                let Some(index) = self.index_of(bridge_of(e)) else {
                    return Ok(());
                };
                let what = format!("remove {e}");
                if let Some(err) = self.fault(&what) {
                    return Err(err);
                }
                match e {
                    Entry::Route(r) => self.delete_route(&KernelRoute {
                        destination: r.destination,
                        ifindex: Some(index),
                        gateway: r.via,
                        metric: r.metric,
                        protocol,
                        table: MAIN_TABLE,
                    }),
                    Entry::Neighbour(n) => self.delete_neighbour(n.address, index),
                }
                self.logged(what);
                Ok(())
            })
            .collect()
    }

    fn remove_kernel_entries(
        &mut self,
        routes: &[KernelRoute],
        neighbours: &[KernelNeighbour],
    ) -> Vec<Result<(), KernelError>> {
        let mut out = Vec::new();
        for r in routes {
            let what = format!("remove route {} metric {}", r.destination, r.metric);
            out.push(match self.fault(&what) {
                Some(err) => Err(err),
                None => {
                    self.delete_route(r);
                    self.logged(what);
                    Ok(())
                }
            });
        }
        for n in neighbours {
            let what = format!("remove neighbour {}", n.address);
            out.push(match self.fault(&what) {
                Some(err) => Err(err),
                None => {
                    self.delete_neighbour(n.address, n.ifindex);
                    self.logged(what);
                    Ok(())
                }
            });
        }
        out
    }

    async fn port_isolated(&self, port: &str) -> Result<Option<bool>, KernelError> {
        self.read_fault("look up interface")?;
        Ok(self.with(|m| m.links.get(port).and_then(|l| l.isolated)))
    }

    async fn isolated_ports(&self) -> Result<HashMap<String, bool>, KernelError> {
        self.read_fault("list interfaces")?;
        Ok(self.with(|m| {
            m.links
                .iter()
                .filter_map(|(n, l)| Some((n.clone(), l.isolated?)))
                .collect()
        }))
    }

    async fn routes(&self) -> Result<Vec<KernelRoute>, KernelError> {
        self.read_fault("list routes")?;
        Ok(self.with(|m| {
            m.reads.push("routes".into());
            m.routes.clone()
        }))
    }

    async fn routes_of(&mut self, protocol: u8) -> Result<Vec<KernelRoute>, KernelError> {
        self.read_fault("list routes")?;
        Ok(self.with(|m| {
            m.reads.push(format!("routes proto {protocol}"));
            m.routes
                .iter()
                .filter(|r| r.protocol == protocol)
                .cloned()
                .collect()
        }))
    }

    /// As the kernel answers: for a route, the lowest-metric route of that
    /// destination through that bridge; for a neighbour, its entry.
    async fn lookup(&mut self, entries: &[Entry]) -> Result<Vec<Found>, KernelError> {
        self.read_fault("look up entries")?;
        Ok(self.with(|m| {
            m.reads.push(format!("lookup {}", entries.len()));
            entries
                .iter()
                .map(|e| {
                    let Some(index) = m.links.get(bridge_of(e)).map(|l| l.index) else {
                        return Found::Nothing;
                    };
                    let found = match e {
                        Entry::Route(r) => m
                            .routes
                            .iter()
                            .filter(|k| k.destination == r.destination && k.ifindex == Some(index))
                            .min_by_key(|k| k.metric)
                            .cloned()
                            .map(Found::Route),
                        Entry::Neighbour(n) => m
                            .neighbours
                            .iter()
                            .find(|k| k.address == n.address && k.ifindex == index)
                            .cloned()
                            .map(Found::Neighbour),
                    };
                    found.unwrap_or(Found::Nothing)
                })
                .collect()
        }))
    }

    async fn neighbours(&self, ifindex: u32) -> Result<Vec<KernelNeighbour>, KernelError> {
        self.read_fault("list neighbours")?;
        Ok(self.with(|m| {
            m.neighbours
                .iter()
                .filter(|n| n.ifindex == ifindex)
                .cloned()
                .collect()
        }))
    }

    async fn pin_bridge_mac(
        &mut self,
        bridge: &str,
        mac: Option<Mac>,
        apply: bool,
    ) -> Result<Option<String>, KernelError> {
        let Some(link) = self.with(|m| m.links.get(bridge).cloned()) else {
            return Ok(None);
        };
        let Some(target) = mac.or(link.mac) else {
            return Ok(None);
        };
        if link.mac_pinned && link.mac == Some(target) {
            return Ok(None);
        }
        let done = format!("bridge {bridge} MAC pinned to {target}");
        if !apply {
            return Ok(Some(done));
        }
        if let Some(err) = self.fault(&format!("set the MAC of {bridge} to {target}")) {
            return Err(err);
        }
        self.with(|m| {
            if let Some(l) = m.links.get_mut(bridge) {
                l.mac = Some(target);
                l.mac_pinned = true;
            }
            // Every MAC change flushes the bridge's neighbour table.
            m.neighbours.retain(|n| n.ifindex != link.index);
        });
        self.logged(done.clone());
        Ok(Some(done))
    }

    async fn bridge_names(&self) -> Result<Vec<String>, KernelError> {
        Ok(self.with(|m| {
            m.links
                .iter()
                .filter(|(_, l)| l.bridge)
                .map(|(n, _)| n.clone())
                .collect()
        }))
    }

    /// The model keeps the host's addresses in one list, not per interface.
    async fn add_gateways(
        &mut self,
        bridge: &str,
        gateways: &[IpAddr],
        apply: bool,
    ) -> Result<Vec<String>, KernelError> {
        if self.with(|m| !m.links.contains_key(bridge)) {
            return Ok(Vec::new());
        }
        let missing: Vec<IpAddr> = self.with(|m| {
            gateways
                .iter()
                .filter(|g| !m.host_addresses.contains(g))
                .copied()
                .collect()
        });
        if apply {
            self.with(|m| m.host_addresses.extend(missing.iter().copied()));
        }
        Ok(missing
            .iter()
            .map(|g| format!("gateway address {g} added to {bridge}"))
            .collect())
    }

    async fn set_port_isolation(&mut self, port: &str, isolated: bool) -> Result<(), KernelError> {
        if self.index_of(port).is_none() {
            return Err(KernelError::NoInterface(port.to_string()));
        }
        let what = format!("set bridge port isolation on {port}");
        if let Some(err) = self.fault(&what) {
            return Err(err);
        }
        self.with(|m| {
            if let Some(l) = m.links.get_mut(port) {
                l.isolated = Some(isolated);
            }
        });
        self.logged(what);
        Ok(())
    }

    fn disable_redirects(&mut self, bridge: &str) -> std::io::Result<Vec<String>> {
        let mut changed = Vec::new();
        for iface in ["all", bridge] {
            if iface != "all" && self.index_of(iface).is_none() {
                // No /proc/sys/net/ipv4/conf/IFACE/ for an interface that does not exist.
                return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
            }
            let on = self.with(|m| *m.send_redirects.get(iface).unwrap_or(&true));
            if on {
                self.with(|m| m.send_redirects.insert(iface.to_string(), false));
                changed.push(format!("net.ipv4.conf.{iface}.send_redirects=0"));
            }
        }
        Ok(changed)
    }

    fn has_net_admin(&self) -> bool {
        self.with(|m| m.has_net_admin)
    }

    async fn ensure_firewall(
        &mut self,
        _config: &crate::config::Config,
    ) -> Result<bool, KernelError> {
        self.firewall_fault("install virt-l3's nftables tables")?;
        Ok(self.with(|m| {
            let install = !m.firewall;
            if install {
                m.firewall = true;
                m.firewall_installs += 1;
                m.log.push("install virt-l3's nftables tables".into());
            }
            install
        }))
    }

    /// As [`Kernel::ensure_firewall`]: the model's tables are never stale.
    async fn ensure_firewall_present(
        &mut self,
        config: &crate::config::Config,
    ) -> Result<bool, KernelError> {
        self.ensure_firewall(config).await
    }

    fn accept_ports(&mut self, ports: &[&str]) -> Result<(), KernelError> {
        if ports.is_empty() {
            return Ok(());
        }
        let what = format!("accept port(s) {}", ports.join(", "));
        self.firewall_fault(&what)?;
        self.with(|m| {
            if !m.firewall {
                // As the kernel: no set without the table.
                return Err(KernelError::Refused {
                    what,
                    errno: libc::ENOENT,
                    message: errno_text(libc::ENOENT),
                });
            }
            m.accepted_ports.extend(ports.iter().map(|p| p.to_string()));
            Ok(())
        })
    }

    fn forget_port(&mut self, port: &str) -> Result<(), KernelError> {
        self.firewall_fault(&format!("forget port {port}"))?;
        self.with(|m| m.accepted_ports.remove(port));
        Ok(())
    }

    fn accepted_ports(&self) -> Result<Vec<String>, KernelError> {
        Ok(self.with(|m| m.accepted_ports.iter().cloned().collect()))
    }
}

/// The main-table route the kernel would match for `a`: the longest prefix, then
/// the lowest metric.
fn longest_match(routes: &[KernelRoute], a: IpAddr) -> Option<KernelRoute> {
    routes
        .iter()
        .filter(|r| r.table == 254 && r.destination.contains(&a))
        .min_by_key(|r| (std::cmp::Reverse(r.destination.prefix_len()), r.metric))
        .cloned()
}
