//! Coexistence: routes and permanent neighbours another tool manages for the
//! addresses virt-l3 routes on its bridges. CloudStack's `modifymacip.sh`, for
//! one, installs `ip route replace ADDR/32 dev BRIDGE` (protocol boot, metric 0,
//! which beats every metric class of virt-l3's) and `ip neigh replace ADDR lladdr
//! MAC dev BRIDGE nud permanent`. Reconcile leaves other protocols' routes alone,
//! so such a route outlives the VM's migration; `check` and `status` name them.

use std::fmt;

use serde::Serialize;

use super::{KernelNeighbour, KernelRoute, KernelView};
use crate::plan::Entry;

/// One entry of another tool's for an address virt-l3 routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Foreign {
    /// The guest address or routed prefix.
    pub address: String,
    /// The foreign entry, as `ip` would show it.
    pub entry: String,
    /// Whether it takes precedence over virt-l3's entry (a route with a metric
    /// no worse than virt-l3's; a neighbour with another MAC).
    pub wins: bool,
    /// The `ip` command that removes it.
    pub remove: String,
}

impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({})",
            self.address,
            self.entry,
            if self.wins {
                "takes precedence over virt-l3's"
            } else {
                "not virt-l3's"
            }
        )
    }
}

/// The name iproute2 gives a route protocol number.
pub fn protocol_name(p: u8) -> String {
    match p {
        0 => "unspec".into(),
        1 => "redirect".into(),
        2 => "kernel".into(),
        3 => "boot".into(),
        4 => "static".into(),
        _ => p.to_string(),
    }
}

impl KernelView {
    /// Other tools' routes and permanent neighbours for the address of `e`, on
    /// the routed bridges (`protocol`: virt-l3's).
    pub fn foreign(&self, e: &Entry, protocol: u8) -> Vec<Foreign> {
        let name_of = |i: u32| {
            self.bridges
                .iter()
                .find(|(_, x)| **x == i)
                .map(|(n, _)| n.clone())
        };
        match e {
            Entry::Route(r) => self
                .routes
                .iter()
                .filter(|k| k.destination == r.destination && k.protocol != protocol)
                .filter_map(|k| Some((k, name_of(k.ifindex?)?)))
                .map(|(k, dev)| foreign_route(k, &dev, r.metric))
                .collect(),
            Entry::Neighbour(n) => {
                let Some(i) = self.bridges.get(&n.bridge) else {
                    return Vec::new();
                };
                self.neighbours
                    .iter()
                    .filter(|k| k.ifindex == *i && k.address == n.address && k.permanent)
                    .filter(|k| k.protocol != protocol || k.mac != Some(n.mac))
                    .map(|k| foreign_neighbour(k, &n.bridge, k.mac != Some(n.mac)))
                    .collect()
            }
        }
    }
}

fn foreign_route(k: &KernelRoute, dev: &str, ours: u32) -> Foreign {
    let via = k.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
    let proto = protocol_name(k.protocol);
    let entry = format!(
        "route {}{via} dev {dev} proto {proto} metric {}",
        k.destination, k.metric
    );
    Foreign {
        address: k.destination.to_string(),
        remove: format!(
            "ip route del {}{via} dev {dev} proto {proto} metric {}",
            k.destination, k.metric
        ),
        entry,
        wins: k.metric <= ours,
    }
}

fn foreign_neighbour(k: &KernelNeighbour, dev: &str, other_mac: bool) -> Foreign {
    let mac = k
        .mac
        .map(|m| m.to_string())
        .unwrap_or_else(|| "none".into());
    Foreign {
        address: k.address.to_string(),
        entry: format!(
            "neighbour {} lladdr {mac} dev {dev} permanent proto {}",
            k.address,
            protocol_name(k.protocol)
        ),
        wins: other_mac,
        remove: format!("ip neigh del {} dev {dev}", k.address),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::plan::{Neighbour, Route};

    fn route(dst: &str, ifindex: u32, metric: u32, protocol: u8) -> KernelRoute {
        KernelRoute {
            destination: dst.parse().unwrap(),
            ifindex: Some(ifindex),
            gateway: None,
            metric,
            protocol,
            table: 254,
        }
    }

    #[test]
    fn another_tools_route_and_neighbour_are_named_with_their_fix() {
        let mac = "52:54:00:00:00:01".parse().unwrap();
        let view = KernelView::new(
            vec![
                route("192.0.2.5/32", 7, 100, 52),
                route("192.0.2.5/32", 7, 0, 3),
                route("192.0.2.6/32", 7, 500, 3),
                // Elsewhere than on a routed bridge: not ours to judge.
                route("192.0.2.5/32", 9, 0, 3),
            ],
            vec![KernelNeighbour {
                address: "192.0.2.5".parse().unwrap(),
                ifindex: 7,
                mac: Some("52:54:00:00:00:99".parse().unwrap()),
                permanent: true,
                protocol: 52,
            }],
            HashMap::from([("cloudbr0".to_string(), 7)]),
        );
        let r = Entry::Route(Route {
            destination: "192.0.2.5/32".parse().unwrap(),
            bridge: "cloudbr0".into(),
            via: None,
            metric: 100,
        });
        let f = view.foreign(&r, 52);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            f[0].to_string(),
            "192.0.2.5/32: route 192.0.2.5/32 dev cloudbr0 proto boot metric 0 (takes precedence over virt-l3's)"
        );
        assert_eq!(
            f[0].remove,
            "ip route del 192.0.2.5/32 dev cloudbr0 proto boot metric 0"
        );
        let n = Entry::Neighbour(Neighbour {
            address: "192.0.2.5".parse().unwrap(),
            mac,
            bridge: "cloudbr0".into(),
        });
        let f = view.foreign(&n, 52);
        assert_eq!(f.len(), 1);
        assert!(
            f[0].wins && f[0].entry.contains("52:54:00:00:00:99"),
            "{f:?}"
        );
        assert_eq!(f[0].remove, "ip neigh del 192.0.2.5 dev cloudbr0");
        // A worse metric does not win but is still someone else's.
        let worse = Entry::Route(Route {
            destination: "192.0.2.6/32".parse().unwrap(),
            bridge: "cloudbr0".into(),
            via: None,
            metric: 100,
        });
        let f = view.foreign(&worse, 52);
        assert_eq!(f.len(), 1);
        assert!(!f[0].wins, "{f:?}");
    }
}
