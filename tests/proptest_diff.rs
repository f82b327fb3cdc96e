//! Property tests of reconcile's kernel diff (issue 8): `reconcile::diff(wanted,
//! view, protocol)` against a model of the kernel's route and neighbour tables
//! (NLM_F_REPLACE replaces the route of the same destination and metric, or the
//! neighbour of the same address and interface; RTM_DELROUTE removes the first
//! route matching what the request gives; RTM_DELNEIGH the entry of that address
//! and interface), applied in reconcile's order: additions, then removals.
//! The model's install and delete are the fake kernel's (`virt_l3::kernel::fake`).
//! `PROPTEST_CASES` raises the number of cases (default 2000).
#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;
use virt_l3::address::Mac;
use virt_l3::kernel::fake::{FakeKernel, Link};
use virt_l3::kernel::{Kernel, KernelNeighbour, KernelRoute, KernelView};
use virt_l3::plan::{Entry, Neighbour, Route};
use virt_l3::reconcile::{diff, KernelDiff};

const PROTO: u8 = 52;
const MAIN: u32 = 254;
/// The routed bridges and their interface indexes; 12 is some other interface.
const BRIDGES: [(&str, u32); 2] = [("cloudbr0", 10), ("br-pub", 11)];
const DESTINATIONS: [&str; 6] = [
    "192.0.2.10/32",
    "192.0.2.11/32",
    "2001:db8::10/128",
    "2001:db8::11/128",
    "10.20.0.0/24",
    "2001:db8:8000::/56",
];
const VIAS: [Option<&str>; 3] = [None, Some("192.0.2.10"), Some("2001:db8::10")];
const METRICS: [u32; 5] = [100, 1500, 2000, 4000, 1024];
const ADDRESSES: [&str; 4] = ["192.0.2.10", "192.0.2.11", "2001:db8::10", "2001:db8::11"];
const MACS: [[u8; 6]; 3] = [
    [0x52, 0x54, 0, 0, 0, 1],
    [0x52, 0x54, 0, 0, 0, 2],
    [0x52, 0x54, 0, 0, 0, 3],
];
/// Route protocols in the kernel: virt-l3's, kernel (2), static (4), BGP (186).
const PROTOCOLS: [u8; 5] = [PROTO, PROTO, 2, 4, 186];

fn dest(i: usize) -> IpNet {
    DESTINATIONS[i].parse().unwrap()
}
fn via(i: usize) -> Option<IpAddr> {
    VIAS[i].map(|v| v.parse().unwrap())
}
fn address(i: usize) -> IpAddr {
    ADDRESSES[i].parse().unwrap()
}
fn index_of(bridge: &str) -> u32 {
    BRIDGES.iter().find(|(b, _)| *b == bridge).unwrap().1
}

/// The kernel's main table and the routed bridges' neighbour tables, as a model.
#[derive(Debug, Clone, Default)]
struct Model {
    routes: Vec<KernelRoute>,
    neighbours: Vec<KernelNeighbour>,
}

impl Model {
    fn view(&self) -> KernelView {
        let bridges: HashMap<String, u32> =
            BRIDGES.iter().map(|(b, i)| (b.to_string(), *i)).collect();
        let on_bridges = self
            .neighbours
            .iter()
            .filter(|n| BRIDGES.iter().any(|(_, i)| *i == n.ifindex))
            .cloned()
            .collect();
        KernelView::new(self.routes.clone(), on_bridges, bridges)
    }

    /// The fake kernel (`virt_l3::kernel::fake`) holding this model's tables,
    /// with the routed bridges at their indexes; `f` runs on it, and its tables
    /// become the model's.
    fn on_fake_kernel(&mut self, f: impl FnOnce(&mut FakeKernel)) {
        let mut k = FakeKernel::new();
        k.with(|m| {
            for (b, i) in BRIDGES {
                m.links.insert(
                    b.to_string(),
                    Link {
                        index: i,
                        bridge: true,
                        up: true,
                        mac: None,
                        mac_pinned: true,
                        isolated: None,
                    },
                );
            }
            m.routes = std::mem::take(&mut self.routes);
            m.neighbours = std::mem::take(&mut self.neighbours);
        });
        f(&mut k);
        let after = k.snapshot();
        self.routes = after.routes;
        self.neighbours = after.neighbours;
    }

    /// `Kernel::install`: NLM_F_CREATE | NLM_F_REPLACE, as the fake kernel models
    /// it (the route of the same destination and metric, the neighbour of the
    /// same address and interface, is replaced).
    fn install(&mut self, e: &Entry) {
        self.on_fake_kernel(|k| {
            for r in futures::executor::block_on(k.install(std::slice::from_ref(e), PROTO)) {
                r.unwrap();
            }
        });
    }

    /// `Kernel::remove_kernel_entries`, as the fake kernel models it: a route is
    /// matched on destination, metric and protocol, and on interface and gateway
    /// when it has them; a neighbour on address and interface.
    fn delete(&mut self, routes: &[KernelRoute], neighbours: &[KernelNeighbour]) {
        self.on_fake_kernel(|k| {
            for r in k.remove_kernel_entries(routes, neighbours) {
                r.unwrap();
            }
        });
    }

    /// What `reconcile` does with a diff: install, then remove.
    fn apply(&mut self, d: &KernelDiff) {
        for e in &d.add {
            self.install(e);
        }
        self.delete(&d.remove_routes, &d.remove_neighbours);
    }
}

fn is_empty(d: &KernelDiff) -> bool {
    d.add.is_empty() && d.remove_routes.is_empty() && d.remove_neighbours.is_empty()
}

/// Wanted entries as records produce them: one route per destination (addresses
/// and prefixes are owned once), one neighbour per address, on existing bridges.
fn wanted() -> impl Strategy<Value = Vec<Entry>> {
    (
        proptest::collection::vec((0..6usize, 0..2usize, 0..3usize, 0..3usize), 0..6),
        proptest::collection::vec((0..4usize, 0..3usize, 0..2usize), 0..4),
    )
        .prop_map(|(routes, neighbours)| {
            let mut out = Vec::new();
            let mut seen = BTreeSet::new();
            for (d, b, v, m) in routes {
                if seen.insert(d) {
                    out.push(Entry::Route(Route {
                        destination: dest(d),
                        bridge: BRIDGES[b].0.to_string(),
                        via: via(v),
                        metric: METRICS[m],
                    }));
                }
            }
            let mut seen = BTreeSet::new();
            for (a, m, b) in neighbours {
                if seen.insert(a) {
                    out.push(Entry::Neighbour(Neighbour {
                        address: address(a),
                        mac: Mac(MACS[m]),
                        bridge: BRIDGES[b].0.to_string(),
                    }));
                }
            }
            out
        })
}

/// A kernel with anything in it: virt-l3's entries (right, stale or wrong) and
/// other protocols' routes and neighbours; routes without an interface (multipath,
/// nexthop objects) too. One route per destination and metric, one neighbour per
/// address and interface, as the kernel keeps them.
fn kernel() -> impl Strategy<Value = Model> {
    (
        proptest::collection::vec(
            (
                0..6usize,
                0..5usize,
                0..3usize,
                0..5usize,
                0..PROTOCOLS.len(),
            ),
            0..10,
        ),
        proptest::collection::vec(
            (0..4usize, 0..3u32, 0..4usize, any::<bool>(), any::<bool>()),
            0..8,
        ),
    )
        .prop_map(|(routes, neighbours)| {
            let mut m = Model::default();
            for (d, i, g, metric, p) in routes {
                let r = KernelRoute {
                    destination: dest(d),
                    ifindex: [Some(10), Some(11), Some(12), Some(10), None][i],
                    gateway: via(g),
                    metric: METRICS[metric],
                    protocol: PROTOCOLS[p],
                    table: MAIN,
                };
                if !m
                    .routes
                    .iter()
                    .any(|k| k.destination == r.destination && k.metric == r.metric)
                {
                    m.routes.push(r);
                }
            }
            for (a, i, mac, permanent, ours) in neighbours {
                let n = KernelNeighbour {
                    address: address(a),
                    ifindex: 10 + i,
                    mac: MACS.get(mac).map(|x| Mac(*x)),
                    permanent,
                    protocol: if ours { PROTO } else { 0 },
                };
                if !m
                    .neighbours
                    .iter()
                    .any(|k| k.address == n.address && k.ifindex == n.ifindex)
                {
                    m.neighbours.push(n);
                }
            }
            m
        })
}

/// virt-l3's entries in a model (routes anywhere, neighbours on the routed
/// bridges), as comparable keys.
fn ours(m: &Model) -> (BTreeSet<String>, BTreeSet<String>) {
    let routes = m
        .routes
        .iter()
        .filter(|r| r.protocol == PROTO)
        .map(|r| {
            format!(
                "{} {:?} {:?} {}",
                r.destination, r.ifindex, r.gateway, r.metric
            )
        })
        .collect();
    let neighbours = m
        .neighbours
        .iter()
        // Reconcile looks at the routed bridges' neighbour tables only.
        .filter(|n| n.protocol == PROTO && BRIDGES.iter().any(|(_, i)| *i == n.ifindex))
        .map(|n| format!("{} {} {:?} {}", n.address, n.ifindex, n.mac, n.permanent))
        .collect();
    (routes, neighbours)
}

/// The same keys for the wanted entries.
fn keys(wanted: &[Entry]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut routes = BTreeSet::new();
    let mut neighbours = BTreeSet::new();
    for e in wanted {
        match e {
            Entry::Route(r) => {
                routes.insert(format!(
                    "{} {:?} {:?} {}",
                    r.destination,
                    Some(index_of(&r.bridge)),
                    r.via,
                    r.metric
                ));
            }
            Entry::Neighbour(n) => {
                neighbours.insert(format!(
                    "{} {} {:?} true",
                    n.address,
                    index_of(&n.bridge),
                    Some(n.mac)
                ));
            }
        }
    }
    (routes, neighbours)
}

proptest! {
    #![proptest_config(common::proptest_config())]

    /// One reconcile pass makes virt-l3's entries exactly the wanted ones, after
    /// which the diff is empty; only virt-l3's entries are ever removed; other
    /// protocols' entries stay unless a wanted entry takes their very place.
    #[test]
    fn one_pass_converges_and_only_touches_virt_l3_entries(wanted in wanted(), mut model in kernel()) {
        let before = model.clone();
        let d = diff(&wanted, &model.view(), PROTO);
        // Additions are exactly the wanted entries the kernel lacks.
        let view = model.view();
        for e in &wanted {
            prop_assert_eq!(d.add.contains(e), !view.has(e, PROTO), "{}", e);
        }
        for e in &d.add {
            prop_assert!(wanted.contains(e));
        }
        // Removals: only protocol-52 entries, never a wanted one.
        for r in &d.remove_routes {
            prop_assert_eq!(r.protocol, PROTO, "{:?}", r);
        }
        for n in &d.remove_neighbours {
            prop_assert_eq!(n.protocol, PROTO, "{:?}", n);
        }
        model.apply(&d);
        prop_assert_eq!(ours(&model), keys(&wanted), "after one pass from {:?}", before);
        let again = diff(&wanted, &model.view(), PROTO);
        prop_assert!(is_empty(&again), "second pass: add {:?} remove {:?} {:?}", again.add, again.remove_routes, again.remove_neighbours);
        // Other protocols' entries survive, except where a wanted entry replaced them.
        for r in before.routes.iter().filter(|r| r.protocol != PROTO) {
            let replaced = wanted.iter().any(|e| matches!(e, Entry::Route(w) if w.destination == r.destination && w.metric == r.metric));
            prop_assert!(replaced || model.routes.contains(r), "{:?} was removed", r);
        }
        for n in before.neighbours.iter().filter(|n| n.protocol != PROTO) {
            let replaced = wanted.iter().any(|e| matches!(e, Entry::Neighbour(w) if w.address == n.address && index_of(&w.bridge) == n.ifindex));
            prop_assert!(replaced || model.neighbours.contains(n), "{:?} was removed", n);
        }
    }

    /// diff(a, a) is empty: a kernel that holds exactly the wanted entries (beside
    /// other protocols' entries) needs no change.
    #[test]
    fn a_kernel_that_matches_needs_nothing(wanted in wanted(), foreign in kernel()) {
        let mut model = Model {
            routes: foreign.routes.into_iter().filter(|r| r.protocol != PROTO).collect(),
            neighbours: foreign.neighbours.into_iter().filter(|n| n.protocol != PROTO).collect(),
        };
        for e in &wanted {
            model.install(e);
        }
        let d = diff(&wanted, &model.view(), PROTO);
        prop_assert!(is_empty(&d), "add {:?} remove {:?} {:?}", d.add, d.remove_routes, d.remove_neighbours);
        // And nothing wanted means every virt-l3 entry goes, and only those.
        let d = diff(&[], &model.view(), PROTO);
        prop_assert!(d.add.is_empty());
        let n52 = model.routes.iter().filter(|r| r.protocol == PROTO).count();
        prop_assert_eq!(d.remove_routes.len(), n52);
    }
}

/// The property test's first finding: a permanent neighbour with the right MAC
/// but another protocol (0: `ip neigh replace` by hand) counted as virt-l3's, so
/// reconcile left it outside `ip neigh show proto 52` and `status` called it present.
#[test]
fn a_foreign_neighbour_with_the_right_mac_is_taken_over() {
    let mac = Mac(MACS[0]);
    let wanted = vec![Entry::Neighbour(Neighbour {
        address: address(0),
        mac,
        bridge: "cloudbr0".into(),
    })];
    let mut model = Model {
        routes: Vec::new(),
        neighbours: vec![KernelNeighbour {
            address: address(0),
            ifindex: 10,
            mac: Some(mac),
            permanent: true,
            protocol: 0,
        }],
    };
    assert!(!model.view().has(&wanted[0], PROTO));
    let d = diff(&wanted, &model.view(), PROTO);
    assert_eq!(d.add, wanted);
    assert!(d.remove_neighbours.is_empty());
    model.apply(&d);
    assert_eq!(model.neighbours[0].protocol, PROTO);
    assert!(is_empty(&diff(&wanted, &model.view(), PROTO)));
}

/// The property test's second finding: a protocol-52 route without an interface
/// (multipath, nexthop object) at a wanted route's destination and metric was
/// replaced by the addition, then its deletion (matched on destination, metric and
/// protocol alone) deleted the addition: the route was missing until the next pass.
#[test]
fn an_interfaceless_route_is_replaced_not_deleted() {
    let wanted = vec![Entry::Route(Route {
        destination: dest(0),
        bridge: "cloudbr0".into(),
        via: None,
        metric: 100,
    })];
    let mut model = Model {
        routes: vec![KernelRoute {
            destination: dest(0),
            ifindex: None,
            gateway: None,
            metric: 100,
            protocol: PROTO,
            table: MAIN,
        }],
        neighbours: Vec::new(),
    };
    let d = diff(&wanted, &model.view(), PROTO);
    assert_eq!(d.add, wanted);
    assert!(d.remove_routes.is_empty(), "{:?}", d.remove_routes);
    model.apply(&d);
    assert_eq!(model.routes.len(), 1);
    assert_eq!(model.routes[0].ifindex, Some(10));
    assert!(is_empty(&diff(&wanted, &model.view(), PROTO)));
    // A stale route with an interface, at another metric, still goes.
    model.routes.push(KernelRoute {
        metric: 4000,
        ..model.routes[0].clone()
    });
    let d = diff(&wanted, &model.view(), PROTO);
    assert_eq!(d.remove_routes.len(), 1);
    assert_eq!(d.remove_routes[0].metric, 4000);
}
