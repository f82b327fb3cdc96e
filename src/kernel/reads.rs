//! Reading the kernel's tables at a cost that does not follow their size: the
//! dump the kernel filters itself (strict checking), the requests that look one
//! entry up, and the parsing of what the kernel answers.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::batch::BatchSocket;
use super::wire::{family, neighbour_address, route_address};
use super::{KernelNeighbour, KernelRoute};
use crate::address::Mac;
use crate::plan::Entry;

/// The main table's routes of `protocol`, as a dump the kernel filters
/// (strict checking, `rtm_protocol` and `rtm_table` set): `None` when the
/// kernel cannot (no strict checking, or it refuses the filtered request).
/// Filtered here too, in case the kernel ignored the filter.
pub(super) fn filtered_routes(protocol: u8) -> Option<Vec<KernelRoute>> {
    let mut socket = BatchSocket::open().ok()?;
    if let Err(e) = socket.set_strict() {
        tracing::debug!("no strict netlink checking ({e}): dumping every route");
        return None;
    }
    let mut out = Vec::new();
    let mut ignored = false;
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut m = RouteMessage::default();
        m.header.address_family = family;
        m.header.table = netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::from(protocol);
        let answers = match socket.dump(RouteNetlinkMessage::GetRoute(m)) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(
                    "the kernel refused a filtered route dump ({e}): dumping every route"
                );
                return None;
            }
        };
        for a in answers {
            if let RouteNetlinkMessage::NewRoute(m) = a {
                ignored |= u8::from(m.header.protocol) != protocol;
                out.extend(kernel_route(&m).filter(|r| r.protocol == protocol));
            }
        }
    }
    if ignored {
        tracing::debug!("the kernel ignored the route dump's protocol filter; filtered here");
    }
    Some(out)
}

/// The request that looks an entry up (see [`super::Kernel::lookup`]).
pub(super) fn lookup_request(e: &Entry, ifindex: u32) -> RouteNetlinkMessage {
    match e {
        Entry::Route(r) => {
            let ip = r.destination.addr();
            let mut m = RouteMessage::default();
            m.header.address_family = family(ip);
            m.header.destination_prefix_length = if ip.is_ipv4() { 32 } else { 128 };
            m.header.flags = RouteFlags::FibMatch;
            m.attributes
                .push(RouteAttribute::Destination(route_address(ip)));
            m.attributes.push(RouteAttribute::Oif(ifindex));
            RouteNetlinkMessage::GetRoute(m)
        }
        Entry::Neighbour(n) => {
            // No state, type or flags: the kernel refuses a get that has any.
            let mut m = NeighbourMessage::default();
            m.header.family = family(n.address);
            m.header.ifindex = ifindex;
            m.attributes
                .push(NeighbourAttribute::Destination(neighbour_address(
                    n.address,
                )));
            RouteNetlinkMessage::GetNeighbour(m)
        }
    }
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

pub(super) fn kernel_route(m: &RouteMessage) -> Option<KernelRoute> {
    if m.header.kind != RouteType::Unicast {
        return None;
    }
    let mut dest = None;
    let mut ifindex = None;
    let mut gateway = None;
    let mut metric = 0;
    let mut table = u32::from(m.header.table);
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dest = route_addr(d),
            RouteAttribute::Oif(i) => ifindex = Some(*i),
            RouteAttribute::Gateway(g) => gateway = route_addr(g),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    let len = m.header.destination_prefix_length;
    let dest = match dest {
        Some(d) => d,
        None if m.header.address_family == AddressFamily::Inet => IpAddr::from([0u8; 4]),
        None => IpAddr::from([0u16; 8]),
    };
    if table != u32::from(netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    Some(KernelRoute {
        destination: IpNet::new(dest, len).ok()?,
        ifindex,
        gateway,
        metric,
        protocol: u8::from(m.header.protocol),
        table,
    })
}

pub(super) fn kernel_neighbour(m: &NeighbourMessage) -> Option<KernelNeighbour> {
    let mut address = None;
    let mut mac = None;
    let mut protocol = 0;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => {
                address = Some(IpAddr::V4(*v))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                address = Some(IpAddr::V6(*v))
            }
            NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                let mut b = [0u8; 6];
                b.copy_from_slice(l);
                mac = Some(Mac(b));
            }
            NeighbourAttribute::Protocol(p) => protocol = u8::from(*p),
            _ => {}
        }
    }
    Some(KernelNeighbour {
        address: address?,
        ifindex: m.header.ifindex,
        mac,
        permanent: m.header.state == NeighbourState::Permanent,
        protocol,
    })
}
