//! FIB lookups of single addresses (`RTM_GETROUTE` with `RTM_F_FIB_MATCH`): one
//! request per address, pipelined through the batch socket, so the cost does not
//! grow with the number of interfaces or routes on the host.

use std::net::IpAddr;

use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::route::{RouteAttribute, RouteFlags, RouteMessage, RouteType};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::Handle;

use super::reads::kernel_route;
use super::wire::{errno_of, family, route_address};
use super::{KernelError, RouteLookup};

/// The FIB lookup request of one address (`RTM_GETROUTE`, `RTM_F_FIB_MATCH`).
pub(super) fn request(ip: IpAddr) -> RouteNetlinkMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family(ip);
    m.header.destination_prefix_length = if ip.is_ipv4() { 32 } else { 128 };
    m.header.flags = RouteFlags::FibMatch;
    m.attributes
        .push(RouteAttribute::Destination(route_address(ip)));
    RouteNetlinkMessage::GetRoute(m)
}

/// What the kernel answered to [`request`] (an error: no route at all).
pub(super) fn answer(ip: IpAddr, answer: Result<RouteNetlinkMessage, i32>) -> RouteLookup {
    match answer {
        Ok(RouteNetlinkMessage::NewRoute(r)) => RouteLookup {
            address: ip,
            local: r.header.kind == RouteType::Local,
            route: kernel_route(&r),
        },
        _ => RouteLookup {
            address: ip,
            local: false,
            route: None,
        },
    }
}

/// The name of the interface with this index, if it exists.
pub(super) async fn link_name(handle: &Handle, index: u32) -> Result<Option<String>, KernelError> {
    let mut s = handle.link().get().match_index(index).execute();
    match futures::TryStreamExt::try_next(&mut s).await {
        Ok(Some(link)) => Ok(link.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })),
        Ok(None) => Ok(None),
        Err(e) if matches!(errno_of(&e), Some(libc::ENODEV)) => Ok(None),
        Err(e) => Err(KernelError::from_rtnetlink(
            format!("look up interface index {index}"),
            e,
        )),
    }
}
