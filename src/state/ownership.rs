//! Who owns an address, MAC or prefix on this host, as planning asks it
//! ([`Ownership`]): from the claims, one `readlinkat(2)` per question; or
//! through an [`OwnershipView`], the claim directories opened once.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::dirfd::Dir;
use super::StateDir;
use super::StateError;
use crate::address::Mac;
use crate::plan::{Owner, Ownership};

impl Ownership for StateDir {
    fn owner_of_address(&self, address: IpAddr) -> Option<Owner> {
        let dir = self.open_sub("owners").ok()??;
        Self::read_owner(&dir, &address.to_string())
    }

    fn routed_prefixes(&self) -> Vec<(IpNet, Owner)> {
        let Some(dir) = self.open_sub("prefixes").ok().flatten() else {
            return Vec::new();
        };
        let Ok(names) = dir.names() else {
            return Vec::new();
        };
        names
            .into_iter()
            .filter_map(|n| {
                let net: IpNet = n.replace('_', "/").parse().ok()?;
                Some((net, Self::read_owner(&dir, &n)?))
            })
            .collect()
    }

    fn owner_of_mac(&self, mac: Mac) -> Option<Owner> {
        let dir = self.open_sub("macs").ok()??;
        Self::read_owner(&dir, &mac.to_string())
    }

    fn address_within(&self, prefix: &IpNet) -> Option<(IpAddr, Owner)> {
        Self::address_within_at(&self.open_sub("owners").ok()??, prefix)
    }
}

impl StateDir {
    /// [`Ownership::address_within`] in the open claims directory `dir`.
    fn address_within_at(dir: &Dir, prefix: &IpNet) -> Option<(IpAddr, Owner)> {
        // A small prefix (a /28 is typical for IPv4) is cheaper to probe address by
        // address, one failed readlink(2) each, than the claims directory, which holds
        // every address of every domain on the host (see docs/BENCHMARKS.md).
        if prefix.max_prefix_len() - prefix.prefix_len() <= PROBE_HOST_BITS {
            return prefix_addresses(prefix)
                .find_map(|a| Some((a, Self::read_owner(dir, &a.to_string())?)));
        }
        dir.names().ok()?.into_iter().find_map(|n| {
            let a: IpAddr = n.parse().ok()?;
            if prefix.contains(&a) {
                Some((a, Self::read_owner(dir, &n)?))
            } else {
                None
            }
        })
    }
}

/// Prefixes with at most this many host bits are checked address by address.
const PROBE_HOST_BITS: u8 = 8;

/// Every address of a prefix, network and broadcast addresses included.
fn prefix_addresses(prefix: &IpNet) -> Box<dyn Iterator<Item = IpAddr>> {
    match prefix {
        IpNet::V4(p) => {
            Box::new(ipnet::Ipv4AddrRange::new(p.network(), p.broadcast()).map(IpAddr::V4))
        }
        IpNet::V6(p) => {
            Box::new(ipnet::Ipv6AddrRange::new(p.network(), p.broadcast()).map(IpAddr::V6))
        }
    }
}

/// What other domains own, for planning many domains in a row under the lock
/// (reconcile adopting every running domain): the claim directories listed
/// once (with `list`, see [`StateDir::ownership_view`]) and the routed
/// prefixes read once, where [`StateDir`]'s own [`Ownership`] asks the claim
/// directories at every question and reads the prefixes each time they are
/// asked for. The same answers: nothing changes the claims while the lock is
/// held.
pub struct OwnershipView {
    owners: Claims,
    macs: Claims,
    prefixes: Vec<(IpNet, Owner)>,
}

/// One open claim directory, and, when listed, the names it holds (a name
/// not among them is not claimed: no `readlinkat` to say so).
struct Claims {
    dir: Option<Dir>,
    names: Option<HashSet<String>>,
}

impl Claims {
    fn open(state: &StateDir, sub: &'static str, list: bool) -> Result<Claims, StateError> {
        let dir = state.open_sub(sub)?;
        let names = match (&dir, list) {
            (Some(d), true) => Some(d.names()?.into_iter().collect()),
            _ => None,
        };
        Ok(Claims { dir, names })
    }

    fn owner(&self, name: &str) -> Option<Owner> {
        if self.names.as_ref().is_some_and(|n| !n.contains(name)) {
            return None;
        }
        StateDir::read_owner(self.dir.as_ref()?, name)
    }
}

impl StateDir {
    /// The claims as they stand, for many questions (see [`OwnershipView`]).
    /// With `list`, the claim directories are listed once (worth it when the
    /// questions outnumber the claims: a boot, where none are left after the
    /// sweep); else every question is one `readlinkat`.
    pub fn ownership_view(&self, list: bool) -> Result<OwnershipView, StateError> {
        Ok(OwnershipView {
            owners: Claims::open(self, "owners", list)?,
            macs: Claims::open(self, "macs", list)?,
            prefixes: Ownership::routed_prefixes(self),
        })
    }
}

impl Ownership for OwnershipView {
    fn owner_of_address(&self, address: IpAddr) -> Option<Owner> {
        self.owners.owner(&address.to_string())
    }

    fn owner_of_mac(&self, mac: Mac) -> Option<Owner> {
        self.macs.owner(&mac.to_string())
    }

    fn routed_prefixes(&self) -> Vec<(IpNet, Owner)> {
        self.prefixes.clone()
    }

    fn address_within(&self, prefix: &IpNet) -> Option<(IpAddr, Owner)> {
        StateDir::address_within_at(self.owners.dir.as_ref()?, prefix)
    }
}
