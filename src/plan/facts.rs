//! What planning needs from outside the domain XML: the host's addresses, what
//! other domains own, and the checks of the lifecycle step.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::address::Mac;

/// Who owns an address or prefix on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub uuid: String,
    pub name: String,
}

/// What other domains on this host own. Implemented by the state directory.
pub trait Ownership {
    fn owner_of_address(&self, address: IpAddr) -> Option<Owner>;
    /// Who uses this MAC on a routed bridge.
    fn owner_of_mac(&self, mac: Mac) -> Option<Owner>;
    /// Other domains' routed prefixes (usually few).
    fn routed_prefixes(&self) -> Vec<(IpNet, Owner)>;
    /// An address owned by any domain inside `prefix`, if one exists.
    fn address_within(&self, prefix: &IpNet) -> Option<(IpAddr, Owner)>;
}

/// Nobody owns anything (a host without other domains).
pub struct NoOwnership;

impl Ownership for NoOwnership {
    fn owner_of_address(&self, _: IpAddr) -> Option<Owner> {
        None
    }
    fn owner_of_mac(&self, _: Mac) -> Option<Owner> {
        None
    }
    fn routed_prefixes(&self) -> Vec<(IpNet, Owner)> {
        Vec::new()
    }
    fn address_within(&self, _: &IpNet) -> Option<(IpAddr, Owner)> {
        None
    }
}

/// A route of the host that a domain's address or prefix falls into (or whose
/// next hop it is), read by a FIB lookup.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostRoute {
    pub destination: IpNet,
    pub gateway: Option<IpAddr>,
    /// The interface the route goes through, by name.
    pub interface: String,
}

/// Facts about the hypervisor that validation needs.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// Every address configured on any of the host's interfaces (or, without
    /// routed prefixes, those of them the domain claims).
    pub addresses: Vec<IpAddr>,
    /// The current MAC of each routed bridge the domain uses (no NIC may have it).
    pub bridge_macs: Vec<(String, Mac)>,
    /// The routes the domain's addresses (and its routed prefixes' first
    /// addresses) match that are on-link (not the default route) or whose next
    /// hop is the address itself; on any interface, routed bridges included
    /// (the rules skip those).
    pub routes: Vec<HostRoute>,
}

/// Validation options that depend on the lifecycle step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checks {
    /// Refuse managed NICs without virt-l3's nwfilter (`require_nwfilter` at prepare).
    pub require_filter: bool,
}
