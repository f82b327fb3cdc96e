//! The kernel's bridges (for bridge patterns) and the gateway addresses on a
//! routed bridge (`manage_gateways`), over rtnetlink.

use std::net::IpAddr;

use futures::stream::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
use rtnetlink::Handle;

use super::KernelError;
use crate::address::is_link_local_v6;

/// The prefix length a gateway address gets on a bridge: /32, /64 link-local, /128.
pub fn gateway_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(a) if is_link_local_v6(&a) => 64,
        IpAddr::V6(_) => 128,
    }
}

/// The names of every Linux bridge on the host.
pub(super) async fn bridge_names(handle: &Handle) -> Result<Vec<String>, KernelError> {
    let mut out = Vec::new();
    let mut s = handle.link().get().execute();
    while let Some(link) = s
        .try_next()
        .await
        .map_err(|e| KernelError::from_rtnetlink("list the host's links".into(), e))?
    {
        let is_bridge = link.attributes.iter().any(|a| {
            matches!(a, LinkAttribute::LinkInfo(i)
                if i.iter().any(|x| matches!(x, LinkInfo::Kind(InfoKind::Bridge))))
        });
        if !is_bridge {
            continue;
        }
        for a in &link.attributes {
            if let LinkAttribute::IfName(n) = a {
                out.push(n.clone());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Adds the `gateways` missing on the bridge with index `index` (IPv6 without
/// duplicate address detection: a guest answering for fe80::1 would otherwise
/// make it fail). Returns what was added (or would be, without `apply`).
pub(super) async fn add_gateways(
    handle: &Handle,
    index: u32,
    bridge: &str,
    gateways: &[IpAddr],
    apply: bool,
) -> Result<Vec<String>, KernelError> {
    let mut present = Vec::new();
    let mut s = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(msg) = s
        .try_next()
        .await
        .map_err(|e| KernelError::from_rtnetlink(format!("list the addresses of {bridge}"), e))?
    {
        for a in msg.attributes {
            if let AddressAttribute::Address(ip) | AddressAttribute::Local(ip) = a {
                present.push(ip);
            }
        }
    }
    let mut done = Vec::new();
    for g in gateways.iter().filter(|g| !present.contains(g)) {
        let prefix = gateway_prefix(*g);
        let what = format!("gateway address {g}/{prefix} added to {bridge}");
        if apply {
            let mut req = handle.address().add(index, *g, prefix);
            if g.is_ipv6() {
                let m = req.message_mut();
                m.header.flags |= AddressHeaderFlags::Nodad;
                m.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            req.execute().await.map_err(|e| {
                KernelError::from_rtnetlink(format!("add {g}/{prefix} to {bridge}"), e)
            })?;
        }
        done.push(what);
    }
    Ok(done)
}
