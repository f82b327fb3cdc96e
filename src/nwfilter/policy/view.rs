//! What every layer needs to know of the NIC, and the rule builder they share.

use std::net::IpAddr;

use super::super::{Action, Direction, Rule};
use crate::address::is_link_local_v6;
use crate::config::Config;
use crate::plan::Nic;

pub(super) const BROADCAST: &str = "ff:ff:ff:ff:ff:ff";

/// One NIC as the layers see it: its MAC, the gateway's, its addresses by family.
pub(super) struct NicView<'a> {
    pub nic: &'a Nic,
    pub mac: String,
    pub gateway: Option<String>,
    pub v4: Vec<IpAddr>,
    pub v6: Vec<IpAddr>,
    /// The IPv6 link-local source(s) the guest may use, as (address, mask, label):
    /// its pinned address, or all of fe80::/10 when not pinned.
    pub link_local: (String, &'static str, String),
    /// The IPv6 link-local gateways (`fe80::1`).
    pub gateways6: Vec<String>,
}

impl<'a> NicView<'a> {
    pub fn new(nic: &'a Nic, config: &Config) -> Self {
        let family = |v6: bool| -> Vec<IpAddr> {
            nic.addresses
                .iter()
                .copied()
                .filter(|a| a.is_ipv6() == v6)
                .collect()
        };
        NicView {
            nic,
            mac: nic.mac.to_string(),
            gateway: config.gateway_mac_for(&nic.bridge).map(|m| m.to_string()),
            v4: family(false),
            v6: family(true),
            link_local: match nic.link_local {
                Some(ll) => (
                    ll.to_string(),
                    "128",
                    format!("its link-local address {ll}"),
                ),
                None => ("fe80::".into(), "10", "a link-local address".into()),
            },
            gateways6: config
                .gateways
                .iter()
                .filter(|g| matches!(g, IpAddr::V6(v6) if is_link_local_v6(v6)))
                .map(ToString::to_string)
                .collect(),
        }
    }

    /// The destination MAC of a unicast frame from the guest: the gateway only.
    pub fn unicast_out(&self) -> Vec<(&'static str, &str)> {
        match self.gateway.as_deref() {
            Some(g) => vec![("dstmacaddr", g)],
            None => Vec::new(),
        }
    }

    /// Said of unicast from the guest in comments: " to the gateway" when it is known.
    pub fn to_gateway(&self) -> &'static str {
        if self.gateway.is_some() {
            " to the gateway"
        } else {
            ""
        }
    }
}

/// The rules of one layer, all at the layer's priority.
pub(super) struct Rules {
    priority: i16,
    rules: Vec<Rule>,
}

impl Rules {
    pub fn at(priority: i16) -> Self {
        Rules {
            priority,
            rules: Vec::new(),
        }
    }

    pub fn add(
        &mut self,
        action: Action,
        direction: Direction,
        protocol: &'static str,
        attributes: &[(&'static str, &str)],
        comment: String,
    ) {
        self.rules.push(Rule {
            action,
            direction,
            priority: self.priority,
            protocol,
            attributes: attributes
                .iter()
                .map(|(k, v)| (*k, (*v).to_string()))
                .collect(),
            comment: format!("virt-l3: {comment}"),
        });
    }

    pub fn into_vec(self) -> Vec<Rule> {
        self.rules
    }
}
