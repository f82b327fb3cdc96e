//! The kernel facts `check` reads once by netlink: interfaces, addresses and which
//! interfaces hold IPv6 proxy neighbour entries.

use std::collections::HashSet;

use futures::stream::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};

use super::CheckError;
use crate::address::Mac;

/// An interface as netlink reports it.
#[derive(Debug, Clone)]
pub(super) struct Link {
    pub(super) index: u32,
    pub(super) name: String,
    pub(super) up: bool,
    pub(super) kind: Option<String>,
    pub(super) master: Option<u32>,
    pub(super) mac: Option<Mac>,
}

#[derive(Debug, Clone)]
pub(super) struct Addr {
    pub(super) index: u32,
    pub(super) net: IpNet,
    pub(super) dad_failed: bool,
    /// Duplicate address detection has not finished (`IFA_F_TENTATIVE`).
    pub(super) tentative: bool,
}

/// What the kernel of the current network namespace says.
pub(super) struct KernelFacts {
    pub(super) links: Vec<Link>,
    pub(super) addresses: Vec<Addr>,
    /// Interfaces with at least one IPv6 proxy neighbour entry.
    pub(super) ndp_proxied: HashSet<u32>,
}

impl KernelFacts {
    pub(super) fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }
    pub(super) fn name(&self, index: u32) -> String {
        self.links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.clone())
            .unwrap_or_else(|| format!("#{index}"))
    }
}

pub(super) async fn kernel_facts() -> Result<KernelFacts, CheckError> {
    let (handle, _task) =
        crate::kernel::rtnetlink_connection().map_err(CheckError::NetlinkSocket)?;
    let mut links = Vec::new();
    let mut s = handle.link().get().execute();
    while let Some(m) = s.try_next().await.map_err(CheckError::ListLinks)? {
        links.push(link_from(m));
    }
    let mut addresses = Vec::new();
    let mut s = handle.address().get().execute();
    while let Some(m) = s.try_next().await.map_err(CheckError::ListAddresses)? {
        addresses.extend(addr_from(&m));
    }
    let mut ndp_proxied = HashSet::new();
    let mut s = handle.neighbours().get().proxies().execute();
    while let Ok(Some(m)) = s.try_next().await {
        ndp_proxied.insert(m.header.ifindex);
    }
    Ok(KernelFacts {
        links,
        addresses,
        ndp_proxied,
    })
}

fn link_from(m: LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        up: m.header.flags.contains(LinkFlags::Up),
        kind: None,
        master: None,
        mac: None,
    };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Controller(i) => l.master = Some(i),
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(&b);
                l.mac = Some(Mac(m));
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = Some(match k {
                            InfoKind::Tun => "tun".to_string(),
                            InfoKind::Bridge => "bridge".to_string(),
                            other => other.to_string(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    l
}

/// An address message's local address (else its address) with its prefix and whether
/// it failed duplicate address detection; `None` without an address.
fn addr_from(m: &AddressMessage) -> Option<Addr> {
    let mut ip = None;
    let mut dad_failed = m.header.flags.contains(AddressHeaderFlags::Dadfailed);
    let mut tentative = m.header.flags.contains(AddressHeaderFlags::Tentative);
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(x) => ip = Some(*x),
            AddressAttribute::Address(x) if ip.is_none() => ip = Some(*x),
            AddressAttribute::Flags(f) => {
                dad_failed |= f.contains(AddressFlags::Dadfailed);
                tentative |= f.contains(AddressFlags::Tentative);
            }
            _ => {}
        }
    }
    let net = IpNet::new(ip?, m.header.prefix_len).ok()?;
    Some(Addr {
        index: m.header.index,
        net,
        dad_failed,
        tentative,
    })
}
