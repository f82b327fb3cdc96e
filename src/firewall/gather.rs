//! The host's facts for the model, read from the kernel (one link and one
//! address dump) and from the installed tables.

use std::collections::HashMap;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo};

use super::{nft, FirewallError, HostNetworks};
use crate::config::Config;

struct Link {
    name: String,
    controller: Option<u32>,
    bridge: bool,
}

/// Connected networks, ports of other bridges, the accepted ports of the
/// installed table and whether the kernel has `meta ibrname`.
pub async fn gather(config: &Config) -> Result<HostNetworks, FirewallError> {
    Ok(HostNetworks {
        accepted_ports: nft::accepted_ports()?,
        bridge_meta: nft::probe_bridge_meta(),
        ..networks(config).await?
    })
}

/// Connected networks and ports of other bridges only (netlink, no `nft` fork):
/// what the version of the ruleset depends on, but the kernel capability.
pub async fn networks(config: &Config) -> Result<HostNetworks, FirewallError> {
    let (handle, task) =
        crate::kernel::rtnetlink_connection().map_err(|e| FirewallError::Gather(e.to_string()))?;
    let host = networks_with(&handle, config).await;
    if let Some(task) = task {
        task.abort();
    }
    host
}

/// [`networks`] over an open rtnetlink connection (the hook's own).
pub async fn networks_with(
    handle: &rtnetlink::Handle,
    config: &Config,
) -> Result<HostNetworks, FirewallError> {
    let fail = |e: rtnetlink::Error| FirewallError::Gather(e.to_string());
    let mut links: HashMap<u32, Link> = HashMap::new();
    let mut s = handle.link().get().execute();
    while let Some(msg) = s.try_next().await.map_err(fail)? {
        let mut link = Link {
            name: String::new(),
            controller: None,
            bridge: false,
        };
        for a in msg.attributes {
            match a {
                LinkAttribute::IfName(n) => link.name = n,
                LinkAttribute::Controller(i) => link.controller = Some(i),
                LinkAttribute::LinkInfo(infos) => {
                    link.bridge = infos
                        .iter()
                        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge)))
                }
                _ => {}
            }
        }
        links.insert(msg.header.index, link);
    }
    let mut connected = Vec::new();
    let mut s = handle.address().get().execute();
    while let Some(msg) = s.try_next().await.map_err(fail)? {
        let Some(link) = links.get(&msg.header.index) else {
            continue;
        };
        for a in msg.attributes {
            if let AddressAttribute::Address(ip) = a {
                if let Ok(net) = IpNet::new(ip, msg.header.prefix_len) {
                    connected.push((link.name.clone(), net.trunc()));
                }
            }
        }
    }
    let routed = |name: &str| config.is_routed_bridge(name);
    let mut foreign_ports: Vec<String> = links
        .values()
        .filter(|l| {
            l.controller
                .and_then(|c| links.get(&c))
                .is_some_and(|m| m.bridge && !routed(&m.name))
        })
        .map(|l| l.name.clone())
        .collect();
    foreign_ports.sort();
    connected.sort();
    connected.dedup();
    Ok(HostNetworks {
        connected,
        foreign_ports,
        accepted_ports: Vec::new(),
        bridge_meta: false,
    })
}
