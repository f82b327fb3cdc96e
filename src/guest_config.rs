//! The guest side of the routes: the network configuration a VM needs so that
//! its addresses and default routes match what the hook installs on the
//! hypervisor.
//!
//! Input is a [`DomainPlan`], produced by the same planner as the hook's (so a
//! domain the hook refuses gets no guest configuration either). Two renderings:
//!
//! - [`netplan`]: netplan / cloud-init network-config version 2. Per routed
//!   NIC, matched by MAC: its addresses as /32 and /128, no DHCP, no router
//!   advertisements, default routes via the on-link gateways.
//! - [`network_data`]: OpenStack's `network_data.json` as a ConfigDrive
//!   carries it (the field names cloud-init's `convert_net_json` reads).
//!
//! IPv6 link-local: the NIC's filter accepts IPv6 only from its pinned link-local
//! (configuration `link_local`). netplan gets `ipv6-address-generation: eui64`
//! (EUI-64 pin) or the pinned address with `link-local: []` (metadata pin).
//! `network_data.json` has no such field (cloud-init 22.4's `convert_net_json`
//! reads none): the guest must use EUI-64 by itself (docs/SECURITY-MODEL.md).
//!
//! Routed prefixes are not guest addresses: the hypervisor routes them *via*
//! one of the NIC's addresses, and what the guest does with them (a container
//! bridge, a VPN) is its own business. With several NICs, the guest must send
//! traffic from a NIC's addresses and prefixes out of that NIC (the NIC's
//! filter drops anything else), so the netplan rendering adds a routing table
//! and source rules per NIC; `network_data.json` cannot say that (see
//! docs/OPERATOR-GUIDE.md).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::address::eui64_link_local;
use crate::config::Config;
use crate::plan::{DomainPlan, Nic};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "virt-l3 cannot write the guest network configuration of domain {domain}: NIC {nic}: {message}"
)]
pub struct GuestConfigError {
    pub domain: String,
    pub nic: String,
    pub message: String,
}

/// Rendering options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Rename NIC `i` to `<prefix><i>` (netplan `set-name`); `None` keeps the guest's names.
    pub set_name_prefix: Option<String>,
}

/// The first routing table used for per-NIC source routing (NIC `i` gets `BASE + i`).
pub const SOURCE_TABLE_BASE: u32 = 100;

/// One NIC's guest configuration, both renderings are made from this.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GuestNic<'a> {
    index: usize,
    nic: &'a Nic,
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    gateway4: Option<Ipv4Addr>,
    gateway6: Option<Ipv6Addr>,
}

fn gateways(config: &Config) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let v4 = config.gateways.iter().find_map(|g| match g {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    });
    let v6 = config.gateways.iter().find_map(|g| match g {
        IpAddr::V6(a) => Some(*a),
        IpAddr::V4(_) => None,
    });
    (v4, v6)
}

fn guest_nics<'a>(
    plan: &'a DomainPlan,
    config: &Config,
) -> Result<Vec<GuestNic<'a>>, GuestConfigError> {
    let (g4, g6) = gateways(config);
    let mut out = Vec::new();
    for (index, nic) in plan.nics.iter().enumerate() {
        let err = |message: String| GuestConfigError {
            domain: plan.name.clone(),
            nic: nic.mac.to_string(),
            message,
        };
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for a in &nic.addresses {
            match a {
                IpAddr::V4(x) => v4.push(*x),
                IpAddr::V6(x) => v6.push(*x),
            }
        }
        if let (Some(a), None) = (v4.first(), g4) {
            return Err(err(format!(
                "it has the IPv4 address {a} but `gateways` in the configuration has no IPv4 gateway"
            )));
        }
        if let (Some(a), None) = (v6.first(), g6) {
            return Err(err(format!(
                "it has the IPv6 address {a} but `gateways` in the configuration has no IPv6 gateway"
            )));
        }
        out.push(GuestNic {
            index,
            nic,
            gateway4: g4.filter(|_| !v4.is_empty()),
            gateway6: g6.filter(|_| !v6.is_empty()),
            v4,
            v6,
        });
    }
    Ok(out)
}

fn nic_id(index: usize) -> String {
    format!("nic{index}")
}

/// netplan / cloud-init network-config version 2, deterministic.
pub fn netplan(
    plan: &DomainPlan,
    config: &Config,
    options: &Options,
) -> Result<String, GuestConfigError> {
    let nics = guest_nics(plan, config)?;
    let multi = nics.len() > 1;
    let mut y = String::new();
    // Writing to a String cannot fail.
    let mut w = |line: String| {
        y.push_str(&line);
        y.push('\n');
    };
    w(format!(
        "# virt-l3 guest-config for domain {} ({}): the guest side of the routes",
        plan.name,
        if plan.uuid.is_empty() {
            "no uuid"
        } else {
            &plan.uuid
        }
    ));
    w("# virt-l3 installs on the hypervisor. Generated; do not edit.".into());
    w("network:".into());
    w("  version: 2".into());
    if nics.is_empty() {
        w("  ethernets: {}".into());
        return Ok(y);
    }
    w("  ethernets:".into());
    for n in &nics {
        w(format!("    {}:", nic_id(n.index)));
        w("      match:".into());
        w(format!("        macaddress: \"{}\"", n.nic.mac));
        if let Some(prefix) = &options.set_name_prefix {
            w(format!(
                "      set-name: \"{}\"",
                interface_name(plan, n, prefix)?
            ));
        }
        w("      dhcp4: false".into());
        w("      dhcp6: false".into());
        w("      accept-ra: false".into());
        // The hypervisor's filter accepts IPv6 only from the NIC's pinned link-local.
        let static_ll = match n.nic.link_local {
            Some(ll) if ll == eui64_link_local(n.nic.mac) => {
                w("      ipv6-address-generation: eui64".into());
                None
            }
            Some(ll) => {
                w("      link-local: []".into());
                Some(ll)
            }
            None => None,
        };
        w("      addresses:".into());
        for a in &n.v4 {
            w(format!("        - \"{a}/32\""));
        }
        if let Some(ll) = static_ll {
            w(format!("        - \"{ll}/64\""));
        }
        for a in &n.v6 {
            w(format!("        - \"{a}/128\""));
        }
        if !config.guest_nameservers.is_empty() {
            w("      nameservers:".into());
            w("        addresses:".into());
            for s in &config.guest_nameservers {
                w(format!("          - \"{s}\""));
            }
        }
        // The first NIC carries the main table's default routes; with several
        // NICs each one also gets its own table, selected by source address.
        let table = SOURCE_TABLE_BASE + n.index as u32;
        let mut tables: Vec<Option<u32>> = Vec::new();
        if n.index == 0 {
            tables.push(None);
        }
        if multi {
            tables.push(Some(table));
        }
        w("      routes:".into());
        for t in &tables {
            if let Some(g) = n.gateway4 {
                w("        - to: \"0.0.0.0/0\"".into());
                w(format!("          via: \"{g}\""));
                w("          on-link: true".into());
                if let Some(t) = t {
                    w(format!("          table: {t}"));
                }
            }
            if let Some(g) = n.gateway6 {
                w("        - to: \"::/0\"".into());
                w(format!("          via: \"{g}\""));
                if let Some(t) = t {
                    w(format!("          table: {t}"));
                }
            }
        }
        if multi {
            w("      routing-policy:".into());
            let sources =
                n.v4.iter()
                    .map(|a| format!("{a}/32"))
                    .chain(n.v6.iter().map(|a| format!("{a}/128")))
                    .chain(n.nic.routed_prefixes.iter().map(|p| p.prefix.to_string()));
            for s in sources {
                w(format!("        - from: \"{s}\""));
                w(format!("          table: {table}"));
            }
        }
        for p in &n.nic.routed_prefixes {
            w(format!(
                "      # routed to this NIC via {} (not an address of the guest): {}",
                p.via, p.prefix
            ));
        }
    }
    Ok(y)
}

/// `<prefix><index>`, if it is a valid Linux interface name (at most 15 bytes of
/// letters, digits, `-`, `_`, `.`): it goes into YAML unescaped.
fn interface_name(
    plan: &DomainPlan,
    n: &GuestNic<'_>,
    prefix: &str,
) -> Result<String, GuestConfigError> {
    let name = format!("{prefix}{}", n.index);
    let ok = name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(name)
    } else {
        Err(GuestConfigError {
            domain: plan.name.clone(),
            nic: n.nic.mac.to_string(),
            message: format!(
                "{name:?} (--set-name) is not a valid interface name (at most 15 letters, digits, '-', '_', '.')"
            ),
        })
    }
}

fn v4_mask(len: u8) -> String {
    let bits: u32 = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ipv4Addr::from(bits).to_string()
}

fn v6_mask(len: u8) -> String {
    let bits: u128 = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    Ipv6Addr::from(bits).to_string()
}

/// OpenStack `network_data.json` (links, networks, services), deterministic.
///
/// One `ipv4`/`ipv6` network per address, netmask all ones. The default routes
/// go on the first NIC only (the format has no source routing), as the
/// network-level `gateway` key of its first network of each family, never as a
/// default route in `routes`: cloud-init marks the default route of a `gateway`
/// outside the network's prefix on-link (netplan renderer from 23.1, networkd
/// renderer from 24.2) and nothing in `routes` (cloud-init 26.1 with a default
/// route via 169.254.0.1 in `routes`: "Nexthop has invalid gateway"). The IPv4
/// network also keeps a host route to the gateway without a next hop, for the
/// renderers that write the gateway without on-link (cloud-init 22.4; the
/// networkd renderer before 24.2): the gateway is then reachable all the same.
/// docs/OPERATOR-GUIDE.md lists the versions tested.
pub fn network_data(
    plan: &DomainPlan,
    config: &Config,
) -> Result<serde_json::Value, GuestConfigError> {
    use serde_json::json;
    let nics = guest_nics(plan, config)?;
    let mut links = Vec::new();
    let mut networks = Vec::new();
    for n in &nics {
        let link = nic_id(n.index);
        links.push(json!({
            "id": link,
            "type": "phy",
            "ethernet_mac_address": n.nic.mac.to_string(),
        }));
        for (k, a) in n.v4.iter().enumerate() {
            let id = format!("{link}-ipv4-{k}");
            let mut net = json!({
                "id": id, "network_id": id, "link": link, "type": "ipv4",
                "ip_address": a.to_string(), "netmask": v4_mask(32), "routes": [],
            });
            if let (0, 0, Some(g)) = (n.index, k, n.gateway4) {
                net["gateway"] = json!(g.to_string());
                net["routes"] = json!([
                    {"network": g.to_string(), "netmask": v4_mask(32), "gateway": "0.0.0.0"}
                ]);
            }
            networks.push(net);
        }
        for (k, a) in n.v6.iter().enumerate() {
            let id = format!("{link}-ipv6-{k}");
            let mut net = json!({
                "id": id, "network_id": id, "link": link, "type": "ipv6",
                "ip_address": a.to_string(), "netmask": v6_mask(128), "routes": [],
            });
            if let (0, 0, Some(g)) = (n.index, k, n.gateway6) {
                net["gateway"] = json!(g.to_string());
            }
            networks.push(net);
        }
    }
    let services: Vec<serde_json::Value> = config
        .guest_nameservers
        .iter()
        .map(|s| json!({"type": "dns", "address": s.to_string()}))
        .collect();
    Ok(json!({"links": links, "networks": networks, "services": services}))
}

/// `network_data.json` as text: pretty, keys sorted (serde_json's map is ordered), newline at the end.
pub fn network_data_text(plan: &DomainPlan, config: &Config) -> Result<String, GuestConfigError> {
    let v = network_data(plan, config)?;
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_nic(link_local: Option<&str>) -> DomainPlan {
        DomainPlan {
            name: "vm".into(),
            uuid: "c7a5fdbd-edaf-9455-926a-d65c16db1809".into(),
            nics: vec![Nic {
                mac: "52:54:00:4c:33:0a".parse().unwrap(),
                bridge: "cloudbr0".into(),
                tap: None,
                addresses: vec!["2001:db8::10".parse().unwrap()],
                routed_prefixes: Vec::new(),
                link_local: link_local.map(|a| a.parse().unwrap()),
            }],
        }
    }

    #[test]
    fn netplan_makes_the_guest_use_its_pinned_link_local() {
        let c = Config::default();
        let o = Options::default();
        let eui64 = netplan(&one_nic(Some("fe80::5054:ff:fe4c:330a")), &c, &o).unwrap();
        assert!(
            eui64.contains("      ipv6-address-generation: eui64\n"),
            "{eui64}"
        );
        assert!(!eui64.contains("link-local"), "{eui64}");
        let named = netplan(&one_nic(Some("fe80::99")), &c, &o).unwrap();
        assert!(named.contains("      link-local: []\n"), "{named}");
        assert!(named.contains("        - \"fe80::99/64\"\n"), "{named}");
        assert!(!named.contains("ipv6-address-generation"), "{named}");
        let any = netplan(&one_nic(None), &c, &o).unwrap();
        assert!(!any.contains("link-local") && !any.contains("address-generation"));
    }

    #[test]
    fn masks() {
        assert_eq!(v4_mask(32), "255.255.255.255");
        assert_eq!(v4_mask(0), "0.0.0.0");
        assert_eq!(v6_mask(128), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(v6_mask(0), "::");
    }
}
