//! Ownership as reconcile sees it while it adopts many domains in one pass:
//! the claims on disk, plus what the domains adopted earlier in the same pass
//! claim (their claims are written only once every domain is decided). Two
//! running domains without records that name the same address, MAC or prefix
//! are then decided as the hook decides two starts: the first is adopted, the
//! second refused, never both (which would hand the claim to the last one).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::address::Mac;
use crate::plan::{DomainPlan, Owner, Ownership};

/// The claims on disk (`base`) and those of the plans [`Adopting::add`]ed.
pub struct Adopting<'a> {
    base: &'a dyn Ownership,
    addresses: BTreeMap<IpAddr, Owner>,
    macs: HashMap<Mac, Owner>,
    prefixes: Vec<(IpNet, Owner)>,
}

impl<'a> Adopting<'a> {
    pub fn new(base: &'a dyn Ownership) -> Adopting<'a> {
        Adopting {
            base,
            addresses: BTreeMap::new(),
            macs: HashMap::new(),
            prefixes: Vec::new(),
        }
    }

    /// Counts a plan's addresses, MACs and prefixes as claimed by its domain.
    pub fn add(&mut self, plan: &DomainPlan) {
        let owner = Owner {
            uuid: plan.uuid.clone(),
            name: plan.name.clone(),
        };
        for a in plan.addresses() {
            self.addresses.insert(a, owner.clone());
        }
        for m in plan.macs() {
            self.macs.insert(m, owner.clone());
        }
        for p in plan.prefixes() {
            self.prefixes.push((p, owner.clone()));
        }
    }
}

impl Ownership for Adopting<'_> {
    fn owner_of_address(&self, address: IpAddr) -> Option<Owner> {
        match self.addresses.get(&address) {
            Some(o) => Some(o.clone()),
            None => self.base.owner_of_address(address),
        }
    }

    fn owner_of_mac(&self, mac: Mac) -> Option<Owner> {
        match self.macs.get(&mac) {
            Some(o) => Some(o.clone()),
            None => self.base.owner_of_mac(mac),
        }
    }

    fn routed_prefixes(&self) -> Vec<(IpNet, Owner)> {
        let mut out = self.base.routed_prefixes();
        out.extend(self.prefixes.iter().cloned());
        out
    }

    fn address_within(&self, prefix: &IpNet) -> Option<(IpAddr, Owner)> {
        if let Some(found) = self.base.address_within(prefix) {
            return Some(found);
        }
        self.addresses
            .range(prefix.network()..=prefix.broadcast())
            .next()
            .map(|(a, o)| (*a, o.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::NoOwnership;

    fn owner(uuid: &str) -> Owner {
        Owner {
            uuid: uuid.into(),
            name: format!("vm-{uuid}"),
        }
    }

    #[test]
    fn a_prefix_finds_an_address_adopted_inside_it_and_only_inside() {
        let mut a = Adopting::new(&NoOwnership);
        a.addresses.insert("10.0.0.20".parse().unwrap(), owner("a"));
        a.addresses
            .insert("2001:db8::1".parse().unwrap(), owner("b"));
        let inside: IpNet = "10.0.0.16/28".parse().unwrap();
        let outside: IpNet = "10.0.0.32/28".parse().unwrap();
        let v6: IpNet = "2001:db8::/64".parse().unwrap();
        assert_eq!(
            a.address_within(&inside),
            Some(("10.0.0.20".parse().unwrap(), owner("a")))
        );
        assert_eq!(a.address_within(&outside), None);
        assert_eq!(a.address_within(&v6).map(|(_, o)| o), Some(owner("b")));
        assert_eq!(a.owner_of_address("10.0.0.21".parse().unwrap()), None);
    }
}
