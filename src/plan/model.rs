//! The desired state of one domain: its managed NICs, and the routes and
//! neighbours (the kernel [`Entry`]s) they make, and the name of each NIC's nwfilter.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::address::{host_net, Mac};
use crate::config::Config;

/// A prefix routed to the VM through one of its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedPrefix {
    pub prefix: IpNet,
    pub via: IpAddr,
}

/// A NIC virt-l3 manages: on a routed bridge, with its validated addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub mac: Mac,
    pub bridge: String,
    /// The tap libvirt created (`<target dev>`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    pub addresses: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routed_prefixes: Vec<RoutedPrefix>,
    /// The one IPv6 link-local address the guest may use on this NIC (config
    /// `link_local`): the filter accepts IPv6 from it and the NIC's addresses only,
    /// and the hypervisor pins it with a permanent neighbour. `None`: an IPv4-only
    /// NIC, or `link_local = "any"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_local: Option<Ipv6Addr>,
}

/// Everything virt-l3 does for one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainPlan {
    pub name: String,
    pub uuid: String,
    pub nics: Vec<Nic>,
}

/// A route virt-l3 installs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Route {
    pub destination: IpNet,
    pub bridge: String,
    /// For a routed prefix: the VM address it goes through (`via ... onlink`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
    pub metric: u32,
}

/// A permanent neighbour entry virt-l3 installs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Neighbour {
    pub address: IpAddr,
    pub mac: Mac,
    pub bridge: String,
}

/// One entry virt-l3 manages in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entry {
    Route(Route),
    Neighbour(Neighbour),
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.destination)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        write!(f, " dev {}", self.bridge)?;
        if self.via.is_some() {
            write!(f, " onlink")?;
        }
        write!(f, " metric {}", self.metric)
    }
}

impl fmt::Display for Neighbour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lladdr {} dev {} nud permanent",
            self.address, self.mac, self.bridge
        )
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Route(r) => write!(f, "route {r}"),
            Entry::Neighbour(n) => write!(f, "neighbour {n}"),
        }
    }
}

impl DomainPlan {
    pub fn routes(&self, metric: u32) -> Vec<Route> {
        let mut out = Vec::new();
        for nic in &self.nics {
            for a in &nic.addresses {
                out.push(Route {
                    destination: host_net(*a),
                    bridge: nic.bridge.clone(),
                    via: None,
                    metric,
                });
            }
            for p in &nic.routed_prefixes {
                out.push(Route {
                    destination: p.prefix,
                    bridge: nic.bridge.clone(),
                    via: Some(p.via),
                    metric,
                });
            }
        }
        out
    }

    pub fn neighbours(&self) -> Vec<Neighbour> {
        let mut out = Vec::new();
        for nic in &self.nics {
            for a in &nic.addresses {
                out.push(Neighbour {
                    address: *a,
                    mac: nic.mac,
                    bridge: nic.bridge.clone(),
                });
            }
            // Pinned, no route: fe80::/10 is on-link on every bridge.
            if let Some(ll) = nic.link_local {
                out.push(Neighbour {
                    address: IpAddr::V6(ll),
                    mac: nic.mac,
                    bridge: nic.bridge.clone(),
                });
            }
        }
        out
    }

    /// Every kernel entry of the domain at `metric`: its routes, then its neighbours.
    pub fn entries(&self, metric: u32) -> Vec<Entry> {
        let mut out: Vec<Entry> = self.routes(metric).into_iter().map(Entry::Route).collect();
        out.extend(self.neighbours().into_iter().map(Entry::Neighbour));
        out
    }

    /// Every address the domain owns.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.nics.iter().flat_map(|n| n.addresses.iter().copied())
    }

    /// The MAC of every routed NIC of the domain.
    pub fn macs(&self) -> impl Iterator<Item = Mac> + '_ {
        self.nics.iter().map(|n| n.mac)
    }

    /// Every prefix routed to the domain.
    pub fn prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.nics
            .iter()
            .flat_map(|n| n.routed_prefixes.iter().map(|p| p.prefix))
    }
}

/// The name of the filter of the NIC with this MAC: `virt-l3-nic-52024576d235`.
pub fn nic_filter_name(config: &Config, mac: &Mac) -> String {
    let hex: String = mac.0.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", config.nwfilter_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DomainPlan {
        DomainPlan {
            name: "web".into(),
            uuid: "c7a5fdbd-edaf-9455-926a-d65c16db1809".into(),
            nics: vec![Nic {
                mac: "52:54:00:aa:bb:cc".parse().unwrap(),
                bridge: "br0".into(),
                tap: None,
                addresses: vec![
                    "192.0.2.10".parse().unwrap(),
                    "2001:db8::10".parse().unwrap(),
                ],
                routed_prefixes: vec![RoutedPrefix {
                    prefix: "198.51.100.0/24".parse().unwrap(),
                    via: "192.0.2.10".parse().unwrap(),
                }],
                link_local: None,
            }],
        }
    }

    #[test]
    fn entries_are_routes_then_neighbours() {
        let shown: Vec<String> = sample()
            .entries(7)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "route 192.0.2.10/32 dev br0 metric 7",
                "route 2001:db8::10/128 dev br0 metric 7",
                "route 198.51.100.0/24 via 192.0.2.10 dev br0 onlink metric 7",
                "neighbour 192.0.2.10 lladdr 52:54:00:aa:bb:cc dev br0 nud permanent",
                "neighbour 2001:db8::10 lladdr 52:54:00:aa:bb:cc dev br0 nud permanent",
            ]
        );
    }

    #[test]
    fn the_pinned_link_local_is_a_neighbour_without_a_route() {
        let mut p = sample();
        p.nics[0].link_local = Some("fe80::5054:ff:feaa:bbcc".parse().unwrap());
        let shown: Vec<String> = p.entries(7).iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 6);
        assert_eq!(
            shown[5],
            "neighbour fe80::5054:ff:feaa:bbcc lladdr 52:54:00:aa:bb:cc dev br0 nud permanent"
        );
        assert_eq!(p.routes(7).len(), 3);
        assert_eq!(
            p.addresses().count(),
            2,
            "the link-local is not an owned address"
        );
    }

    #[test]
    fn addresses_and_prefixes() {
        let p = sample();
        assert_eq!(p.addresses().count(), 2);
        assert_eq!(
            p.prefixes().collect::<Vec<_>>(),
            ["198.51.100.0/24".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn filter_name_is_the_prefix_and_the_mac_in_hex() {
        let mac: Mac = "52:02:45:76:d2:35".parse().unwrap();
        let config = Config::default();
        assert_eq!(
            nic_filter_name(&config, &mac),
            format!("{}-52024576d235", config.nwfilter_name)
        );
    }
}
