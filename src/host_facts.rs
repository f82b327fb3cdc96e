//! The host facts a domain is planned against, read from the kernel. One step
//! for the hook (`prepare`, `start`, ...) and the `plan` / `guest-config`
//! commands, so that those refuse exactly what the hook refuses.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::Config;
use crate::domain_xml::DomainXml;
use crate::kernel::{Kernel, KernelError, RouteLookup};
use crate::plan::{
    candidate_addresses, has_routed_prefixes, managed_interfaces, HostFacts, HostRoute,
};

/// The host's addresses and routes that matter to `dom`: one FIB lookup per
/// address the domain claims (and per routed prefix's first address), which says
/// both whether it is the host's and which route it falls into. A domain that
/// routes whole prefixes also needs every host address (one dump). And the
/// current MAC of each routed bridge the domain uses (one link read per bridge),
/// which none of its NICs may have.
pub async fn host_facts<K: Kernel>(
    kernel: &K,
    dom: &DomainXml,
    config: &Config,
) -> Result<HostFacts, KernelError> {
    let claimed = candidate_addresses(dom);
    let mut lookups = claimed.clone();
    lookups.extend(prefix_starts(dom));
    lookups.sort_unstable();
    lookups.dedup();
    let found = kernel.lookup_routes(&lookups).await?;
    let addresses = if has_routed_prefixes(dom) {
        kernel.host_addresses().await?
    } else {
        found
            .iter()
            .filter(|l| l.local)
            .map(|l| l.address)
            .collect()
    };
    let routes = named_routes(kernel, &found, &mut HashMap::new()).await?;
    let bridges: BTreeSet<&str> = managed_interfaces(dom, config)
        .filter_map(|i| i.bridge.as_deref())
        .collect();
    let mut bridge_macs = Vec::new();
    for b in bridges {
        if let Some(mac) = kernel.link_mac(b).await? {
            bridge_macs.push((b.to_string(), mac));
        }
    }
    Ok(HostFacts {
        addresses,
        routes,
        bridge_macs,
    })
}

/// The first address of every routed prefix the domain's metadata names.
fn prefix_starts(dom: &DomainXml) -> impl Iterator<Item = IpAddr> + '_ {
    dom.nic_metadata
        .iter()
        .flat_map(|n| n.routes.iter())
        .filter_map(|r| r.prefix.as_deref()?.trim().parse::<IpNet>().ok())
        .map(|p| p.network())
}

/// Whether a looked-up route can make an address unfit for a VM: on-link (no
/// gateway, not a default route) or the address is its next hop.
fn matters(l: &RouteLookup) -> bool {
    l.route.as_ref().is_some_and(|r| {
        r.ifindex.is_some()
            && ((r.gateway.is_none() && r.destination.prefix_len() > 0)
                || r.gateway == Some(l.address))
    })
}

/// The routes that matter, with their interface's name (one request per
/// interface, only for those: usually none).
async fn named_routes<K: Kernel>(
    kernel: &K,
    found: &[RouteLookup],
    names: &mut HashMap<u32, Option<String>>,
) -> Result<Vec<HostRoute>, KernelError> {
    let mut out: Vec<HostRoute> = Vec::new();
    let mut seen: HashSet<HostRoute> = HashSet::new();
    for r in found
        .iter()
        .filter(|l| matters(l))
        .filter_map(|l| l.route.as_ref())
    {
        let Some(index) = r.ifindex else { continue };
        let name = match names.get(&index) {
            Some(n) => n.clone(),
            None => {
                let n = kernel.link_name(index).await?;
                names.insert(index, n.clone());
                n
            }
        };
        let interface = name.unwrap_or_else(|| format!("#{index}"));
        let route = HostRoute {
            destination: r.destination,
            gateway: r.gateway,
            interface,
        };
        if seen.insert(route.clone()) {
            out.push(route);
        }
    }
    Ok(out)
}

/// [`host_facts`] of many domains (reconcile adopting every running domain),
/// read together: every domain's lookups in one pipelined batch
/// ([`Kernel::lookup_routes`]), each bridge's MAC and each interface's
/// name once, the host's addresses once (when a domain routes prefixes). The
/// same facts as [`host_facts`] gives each domain, in order.
pub async fn host_facts_many<K: Kernel>(
    kernel: &mut K,
    doms: &[&DomainXml],
    config: &Config,
) -> Result<Vec<HostFacts>, KernelError> {
    let wanted: Vec<Vec<IpAddr>> = doms
        .iter()
        .map(|dom| {
            let mut lookups = candidate_addresses(dom);
            lookups.extend(prefix_starts(dom));
            lookups.sort_unstable();
            lookups.dedup();
            lookups
        })
        .collect();
    let mut all: Vec<IpAddr> = wanted.iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    let found: HashMap<IpAddr, RouteLookup> = kernel
        .lookup_routes(&all)
        .await?
        .into_iter()
        .map(|l| (l.address, l))
        .collect();
    let host_addresses = if doms.iter().any(|d| has_routed_prefixes(d)) {
        Some(kernel.host_addresses().await?)
    } else {
        None
    };
    let mut names = HashMap::new();
    let mut macs: HashMap<&str, Option<crate::address::Mac>> = HashMap::new();
    let mut out = Vec::with_capacity(doms.len());
    for (dom, lookups) in doms.iter().zip(&wanted) {
        let found: Vec<RouteLookup> = lookups
            .iter()
            .filter_map(|a| found.get(a).cloned())
            .collect();
        let addresses = match (&host_addresses, has_routed_prefixes(dom)) {
            (Some(all), true) => all.clone(),
            _ => found
                .iter()
                .filter(|l| l.local)
                .map(|l| l.address)
                .collect(),
        };
        let routes = named_routes(kernel, &found, &mut names).await?;
        let bridges: BTreeSet<&str> = managed_interfaces(dom, config)
            .filter_map(|i| i.bridge.as_deref())
            .collect();
        let mut bridge_macs = Vec::new();
        for b in bridges {
            let mac = match macs.get(b) {
                Some(m) => *m,
                None => *macs.entry(b).or_insert(kernel.link_mac(b).await?),
            };
            if let Some(mac) = mac {
                bridge_macs.push((b.to_string(), mac));
            }
        }
        out.push(HostFacts {
            addresses,
            routes,
            bridge_macs,
        });
    }
    Ok(out)
}
