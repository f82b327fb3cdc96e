//! From domain XML to the desired state: which NICs virt-l3 manages, with which
//! addresses, and therefore which routes and neighbours. Pure: the host and the
//! other domains come in through [`HostFacts`] and [`Ownership`].

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::address::{family_name, host_net, overlaps, unroutable_reason, Mac};
use crate::config::Config;
use crate::domain_xml::{AddressXml, DomainXml, InterfaceXml};

/// A prefix routed to the VM through one of its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedPrefix {
    pub prefix: IpNet,
    pub via: IpAddr,
}

/// A NIC virt-l3 manages: on a routed bridge, with its validated addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub mac: Mac,
    pub bridge: String,
    /// The tap libvirt created (`<target dev>`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    pub addresses: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routed_prefixes: Vec<RoutedPrefix>,
}

/// Everything virt-l3 does for one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainPlan {
    pub name: String,
    pub uuid: String,
    pub nics: Vec<Nic>,
}

/// A route virt-l3 installs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Route {
    pub destination: IpNet,
    pub bridge: String,
    /// For a routed prefix: the VM address it goes through (`via ... onlink`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
    pub metric: u32,
}

/// A permanent neighbour entry virt-l3 installs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Neighbour {
    pub address: IpAddr,
    pub mac: Mac,
    pub bridge: String,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.destination)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        write!(f, " dev {}", self.bridge)?;
        if self.via.is_some() {
            write!(f, " onlink")?;
        }
        write!(f, " metric {}", self.metric)
    }
}

impl fmt::Display for Neighbour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lladdr {} dev {} nud permanent",
            self.address, self.mac, self.bridge
        )
    }
}

/// One entry virt-l3 manages in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entry {
    Route(Route),
    Neighbour(Neighbour),
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Route(r) => write!(f, "route {r}"),
            Entry::Neighbour(n) => write!(f, "neighbour {n}"),
        }
    }
}

impl DomainPlan {
    /// Every kernel entry a record of this plan with `metric` stands for.
    pub fn entries(&self, metric: u32) -> Vec<Entry> {
        let mut out: Vec<Entry> = self.routes(metric).into_iter().map(Entry::Route).collect();
        out.extend(self.neighbours().into_iter().map(Entry::Neighbour));
        out
    }

    pub fn routes(&self, metric: u32) -> Vec<Route> {
        let mut out = Vec::new();
        for nic in &self.nics {
            for a in &nic.addresses {
                out.push(Route {
                    destination: host_net(*a),
                    bridge: nic.bridge.clone(),
                    via: None,
                    metric,
                });
            }
            for p in &nic.routed_prefixes {
                out.push(Route {
                    destination: p.prefix,
                    bridge: nic.bridge.clone(),
                    via: Some(p.via),
                    metric,
                });
            }
        }
        out
    }

    pub fn neighbours(&self) -> Vec<Neighbour> {
        let mut out = Vec::new();
        for nic in &self.nics {
            for a in &nic.addresses {
                out.push(Neighbour {
                    address: *a,
                    mac: nic.mac,
                    bridge: nic.bridge.clone(),
                });
            }
        }
        out
    }

    /// Every address the domain owns.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.nics.iter().flat_map(|n| n.addresses.iter().copied())
    }

    /// Every prefix routed to the domain.
    pub fn prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.nics
            .iter()
            .flat_map(|n| n.routed_prefixes.iter().map(|p| p.prefix))
    }
}

/// Who owns an address or prefix on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub uuid: String,
    pub name: String,
}

/// What other domains on this host own. Implemented by the state directory.
pub trait Ownership {
    fn owner_of_address(&self, address: IpAddr) -> Option<Owner>;
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
    fn routed_prefixes(&self) -> Vec<(IpNet, Owner)> {
        Vec::new()
    }
    fn address_within(&self, _: &IpNet) -> Option<(IpAddr, Owner)> {
        None
    }
}

/// Facts about the hypervisor that validation needs.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// Every address configured on any of the host's interfaces.
    pub addresses: Vec<IpAddr>,
}

/// One reason a domain is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// "NIC 52:54:00:aa:bb:cc on cloudbr0", or the metadata element concerned.
    pub nic: Option<String>,
    pub text: String,
}

/// How many of a refused domain's problems its error message lists.
pub const MAX_PROBLEMS_SHOWN: usize = 10;

/// A domain virt-l3 refuses, with every reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanError {
    pub domain: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for PlanError {
    /// One line: control characters the XML carried (in a name, a MAC) are escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        self.write_to(&mut line)?;
        f.write_str(&crate::domain_xml::printable(&line))
    }
}

impl PlanError {
    fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        write!(f, "virt-l3 refuses domain {}: ", display_name(&self.domain))?;
        let mut last: Option<&Option<String>> = None;
        for (i, p) in self.problems.iter().enumerate() {
            if i == MAX_PROBLEMS_SHOWN {
                // A hostile domain may have thousands of NICs: the operator sees a line.
                let more = self.problems.len() - i;
                return write!(
                    f,
                    "; and {more} more problem{}",
                    if more == 1 { "" } else { "s" }
                );
            }
            if i > 0 {
                write!(f, "; ")?;
            }
            // Consecutive problems of one NIC share its label.
            match (&p.nic, last == Some(&p.nic)) {
                (Some(nic), false) => write!(f, "{nic}: {}", p.text)?,
                _ => write!(f, "{}", p.text)?,
            }
            last = Some(&p.nic);
        }
        Ok(())
    }
}

/// Validation options that depend on the lifecycle step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checks {
    /// Refuse managed NICs without virt-l3's nwfilter (`require_nwfilter` at prepare).
    pub require_filter: bool,
}

/// Whether an interface's `filterref` names virt-l3's filter for that very NIC
/// (`<nwfilter_name>-<its MAC>`): another NIC's filter would bind it to the wrong
/// addresses.
pub fn carries_virt_l3_filter(nic: &InterfaceXml, config: &Config) -> bool {
    let Some(mac) = nic.mac.as_deref().and_then(|m| m.parse::<Mac>().ok()) else {
        return false;
    };
    nic.filterref
        .as_ref()
        .is_some_and(|f| f.filter == crate::nwfilter::nic_filter_name(config, &mac))
}

/// Every address the domain XML claims anywhere (parsable ones), for host lookups
/// before planning.
pub fn candidate_addresses(dom: &DomainXml) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let meta = dom.nic_metadata.iter().flat_map(|n| n.addresses.iter());
    let flat = dom.flat_addresses.iter().map(|f| &f.address);
    for a in meta.chain(flat) {
        if let Some(ip) = a.address.as_deref().and_then(|t| t.trim().parse().ok()) {
            out.push(ip);
        }
    }
    for f in dom.interfaces.iter().filter_map(|i| i.filterref.as_ref()) {
        out.extend(
            f.values("IP")
                .chain(f.values("IPV6"))
                .filter_map(|v| v.trim().parse::<IpAddr>().ok()),
        );
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether the domain XML routes whole prefixes to a NIC (they are checked
/// against every host address, not only their own).
pub fn has_routed_prefixes(dom: &DomainXml) -> bool {
    dom.nic_metadata.iter().any(|n| !n.routes.is_empty())
}

/// A syntactically valid libvirt UUID (it names files in the state directory).
pub fn is_valid_uuid(u: &str) -> bool {
    u.len() == 36
        && u.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The longest domain name accepted: libvirt keeps every domain as `NAME.xml`
/// in its configuration and status directories, and a file name has at most
/// 255 bytes, so no domain libvirt can run has a longer name.
pub const MAX_NAME_BYTES: usize = 251;

/// Why a domain name is refused, if it is: a name with a `/` (libvirt refuses
/// those itself), a control character (it would break the one-line error libvirt
/// shows) or longer than [`MAX_NAME_BYTES`].
pub fn name_problem(name: &str) -> Option<String> {
    if name.len() > MAX_NAME_BYTES {
        Some(format!(
            "the domain name is {} bytes long, more than the {MAX_NAME_BYTES} bytes libvirt can store",
            name.len()
        ))
    } else if name.contains('/') {
        Some(format!("the domain name {} contains '/'", shown(name)))
    } else if name.chars().any(char::is_control) {
        Some(format!(
            "the domain name {} contains a control character",
            shown(name)
        ))
    } else {
        None
    }
}

/// A value from the XML, quoted for an error message: control characters
/// escaped, and cut after 64 characters (a hostile attribute may be megabytes).
pub fn shown(value: &str) -> String {
    const MAX: usize = 64;
    let count = value.chars().count();
    if count <= MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head:?}... ({} bytes)", value.len())
    }
}

/// A domain name for the head of an error message: as is when it is harmless,
/// else [`shown`].
pub fn display_name(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES && !name.chars().any(char::is_control) {
        name.to_string()
    } else {
        shown(name)
    }
}

struct Collector<'a> {
    problems: Vec<Problem>,
    nic: Option<String>,
    _config: &'a Config,
}

impl Collector<'_> {
    fn refuse(&mut self, text: impl Into<String>) {
        self.problems.push(Problem {
            nic: self.nic.clone(),
            text: text.into(),
        });
    }
}

/// The interfaces virt-l3 manages: those on a routed bridge.
pub fn managed_interfaces<'a>(
    dom: &'a DomainXml,
    config: &'a Config,
) -> impl Iterator<Item = &'a InterfaceXml> + 'a {
    dom.interfaces.iter().filter(|i| {
        i.bridge
            .as_deref()
            .is_some_and(|b| config.is_routed_bridge(b))
    })
}

fn nic_label(i: &InterfaceXml) -> String {
    format!(
        "NIC {} (interface {}) on {}",
        i.mac.as_deref().map_or("without MAC".into(), label_value),
        i.index,
        i.bridge.as_deref().map_or("-".into(), label_value)
    )
}

/// A value in a label: as written when short and printable, else [`shown`].
fn label_value(v: &str) -> String {
    if v.len() <= 64 && !v.chars().any(char::is_control) {
        v.to_string()
    } else {
        shown(v)
    }
}

/// Parses one address annotation, checking its family and prefix attributes.
fn parse_address(a: &AddressXml, c: &mut Collector<'_>) -> Option<IpAddr> {
    let Some(text) = a.address.as_deref() else {
        c.refuse("an <address> element has no address attribute");
        return None;
    };
    let ip: IpAddr = match text.trim().parse() {
        Ok(ip) => ip,
        Err(_) => {
            c.refuse(format!("address {} is not an IP address", shown(text)));
            return None;
        }
    };
    if let Some(fam) = a.family.as_deref() {
        if !fam.eq_ignore_ascii_case(family_name(ip)) {
            c.refuse(format!(
                "address {ip} is {}, but its family says {}",
                family_name(ip),
                shown(fam)
            ));
            return None;
        }
    }
    if let Some(p) = a.prefix.as_deref() {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match p.trim().parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => {
                c.refuse(format!(
                    "address {ip} has an invalid prefix length {}",
                    shown(p)
                ));
                return None;
            }
        }
    }
    Some(ip)
}

/// Validates a domain and computes what virt-l3 should do for it.
///
/// Every problem is collected; nothing is decided half-way.
pub fn plan(
    dom: &DomainXml,
    config: &Config,
    host: &HostFacts,
    owners: &dyn Ownership,
    checks: Checks,
) -> Result<DomainPlan, PlanError> {
    let mut c = Collector {
        problems: Vec::new(),
        nic: None,
        _config: config,
    };
    let uuid = match dom.uuid.as_deref() {
        Some(u) if is_valid_uuid(u) => u.to_string(),
        Some(u) => {
            c.refuse(format!("the domain UUID {} is not a valid UUID", shown(u)));
            String::new()
        }
        None => {
            c.refuse("the domain XML has no <uuid>");
            String::new()
        }
    };

    if let Some(why) = name_problem(&dom.name) {
        c.refuse(why);
    }

    let managed: Vec<&InterfaceXml> = managed_interfaces(dom, config).collect();
    let all_macs: Vec<Option<Mac>> = dom
        .interfaces
        .iter()
        .map(|i| i.mac.as_deref().and_then(|m| m.parse().ok()))
        .collect();

    // Metadata blocks must each belong to an interface.
    for (k, meta) in dom.nic_metadata.iter().enumerate() {
        c.nic = Some(format!("metadata <nic> block {k}"));
        match meta.mac.as_deref().map(|m| (m, m.parse::<Mac>())) {
            None => c.refuse("it has no mac attribute"),
            Some((m, Err(_))) => c.refuse(format!("its mac {} is not a MAC address", shown(m))),
            Some((m, Ok(mac))) => {
                if !all_macs.contains(&Some(mac)) {
                    c.refuse(format!("no interface of the domain has MAC {m}"));
                }
                if dom.nic_metadata[..k]
                    .iter()
                    .any(|o| o.mac.as_deref().and_then(|x| x.parse().ok()) == Some(mac))
                {
                    c.refuse(format!("MAC {m} has more than one metadata block"));
                }
            }
        }
    }
    // Flat addresses must resolve to exactly one interface.
    let mut flat_for: Vec<Vec<&AddressXml>> = vec![Vec::new(); managed.len()];
    for (k, flat) in dom.flat_addresses.iter().enumerate() {
        c.nic = Some(format!(
            "flat metadata address {k} ({})",
            flat.address
                .address
                .as_deref()
                .map_or("-".into(), label_value)
        ));
        let target: Vec<usize> = if let Some(m) = flat.mac.as_deref() {
            let Ok(mac) = m.parse::<Mac>() else {
                c.refuse(format!("its mac {} is not a MAC address", shown(m)));
                continue;
            };
            let hits: Vec<usize> = managed
                .iter()
                .enumerate()
                .filter(|(_, i)| i.mac.as_deref().and_then(|x| x.parse().ok()) == Some(mac))
                .map(|(n, _)| n)
                .collect();
            if hits.is_empty() {
                if !all_macs.contains(&Some(mac)) {
                    c.refuse(format!("no interface of the domain has MAC {m}"));
                }
                continue; // an unmanaged interface: not ours
            }
            hits
        } else {
            let bridge = flat.bridge.as_deref();
            if let Some(b) = bridge {
                if !config.is_routed_bridge(b) {
                    continue; // addresses for a bridge virt-l3 does not route
                }
            }
            let hits: Vec<usize> = managed
                .iter()
                .enumerate()
                .filter(|(_, i)| bridge.is_none() || i.bridge.as_deref() == bridge)
                .map(|(n, _)| n)
                .collect();
            match hits.len() {
                0 => {
                    c.refuse(format!(
                        "no interface of the domain is on bridge {}",
                        bridge.unwrap_or("(any routed bridge)")
                    ));
                    continue;
                }
                1 => hits,
                _ => {
                    c.refuse(format!(
                        "{} interfaces are on {}; add a mac attribute to say which one owns the address",
                        hits.len(),
                        bridge.unwrap_or("the routed bridges")
                    ));
                    continue;
                }
            }
        };
        for n in target {
            flat_for[n].push(&flat.address);
        }
    }

    let gateways: BTreeSet<IpAddr> = config.gateways.iter().copied().collect();
    let other_prefixes = owners.routed_prefixes();
    let mut seen_addresses: BTreeSet<IpAddr> = BTreeSet::new();
    let mut seen_macs: BTreeSet<Mac> = BTreeSet::new();
    let mut nics = Vec::new();
    let mut pending_prefixes: Vec<(usize, String, IpNet)> = Vec::new();

    for (n, iface) in managed.iter().enumerate() {
        c.nic = Some(nic_label(iface));
        let mac = match iface.mac.as_deref() {
            None => {
                c.refuse("the interface has no MAC address");
                continue;
            }
            Some(m) => match m.parse::<Mac>() {
                Err(_) => {
                    c.refuse(format!("MAC {} is not a MAC address", shown(m)));
                    continue;
                }
                Ok(mac) if mac.is_zero() => {
                    c.refuse(format!("MAC {m} is all zeros"));
                    continue;
                }
                Ok(mac) if mac.0 == [0xff; 6] => {
                    c.refuse(format!("MAC {m} is the broadcast MAC, not a NIC's"));
                    continue;
                }
                Ok(mac) if mac.is_multicast() => {
                    c.refuse(format!("MAC {m} is a multicast MAC, not a NIC's"));
                    continue;
                }
                Ok(mac) => mac,
            },
        };
        if !seen_macs.insert(mac) {
            c.refuse(format!("MAC {mac} is used by two routed interfaces"));
        }
        if checks.require_filter && !carries_virt_l3_filter(iface, config) {
            c.refuse(format!(
                "the interface does not carry virt-l3's nwfilter ({}), so the VM could spoof addresses; \
                 run `virt-l3 nwfilter inject` on the XML, or set require_nwfilter = false",
                match &iface.filterref {
                    Some(f) => format!(
                        "it has filter {:?}, not {:?}",
                        f.filter,
                        crate::nwfilter::nic_filter_name(config, &mac)
                    ),
                    None => "it has no <filterref>".to_string(),
                }
            ));
        }

        // Address sources, in precedence order: per-NIC metadata, flat metadata, filterref.
        let meta = dom
            .nic_metadata
            .iter()
            .find(|m| m.mac.as_deref().and_then(|x| x.parse::<Mac>().ok()) == Some(mac));
        let mut raw: Vec<AddressXml> = Vec::new();
        let mut from_filterref = false;
        let mut routes = Vec::new();
        if let Some(meta) = meta.filter(|m| !m.addresses.is_empty() || !m.routes.is_empty()) {
            raw.extend(meta.addresses.iter().cloned());
            routes.extend(meta.routes.iter().cloned());
        } else if !flat_for[n].is_empty() {
            raw.extend(flat_for[n].iter().map(|a| (*a).clone()));
        } else if let Some(f) = &iface.filterref {
            from_filterref = true;
            for (name, family) in [("IP", "ipv4"), ("IPV6", "ipv6")] {
                for v in f.values(name) {
                    raw.push(AddressXml {
                        address: Some(v.to_string()),
                        prefix: None,
                        family: Some(family.to_string()),
                    });
                }
            }
        }

        let mut addresses = Vec::new();
        let mut parsed: Vec<IpAddr> = Vec::new();
        for a in &raw {
            let Some(ip) = parse_address(a, &mut c) else {
                continue;
            };
            parsed.push(ip);
            if let Some(why) = unroutable_reason(ip) {
                c.refuse(format!("address {ip} {why}"));
                continue;
            }
            if gateways.contains(&ip) {
                c.refuse(format!("address {ip} is the guests' gateway"));
                continue;
            }
            if host.addresses.contains(&ip) {
                c.refuse(format!(
                    "address {ip} is configured on the hypervisor itself"
                ));
                continue;
            }
            if let Some(d) = config.deny.iter().find(|d| d.contains(&ip)) {
                c.refuse(format!("address {ip} is inside the denied prefix {d}"));
                continue;
            }
            if !config.allow.is_empty() && !config.allow.iter().any(|p| p.contains(&ip)) {
                c.refuse(format!("address {ip} is outside every allowed prefix"));
                continue;
            }
            if !seen_addresses.insert(ip) {
                c.refuse(format!("address {ip} appears twice in the domain"));
                continue;
            }
            if let Some(o) = owners.owner_of_address(ip) {
                if o.uuid != uuid {
                    c.refuse(format!(
                        "address {ip} is already owned by domain {} ({})",
                        o.name, o.uuid
                    ));
                    continue;
                }
            }
            if let Some((p, o)) = other_prefixes
                .iter()
                .find(|(p, o)| o.uuid != uuid && p.contains(&ip))
            {
                c.refuse(format!(
                    "address {ip} is inside prefix {p} routed to domain {} ({})",
                    o.name, o.uuid
                ));
                continue;
            }
            addresses.push(ip);
        }
        if let (Some(f), false) = (&iface.filterref, from_filterref) {
            // The IP/IPV6 filter parameters are the third address source: when
            // present beside metadata, they must say the same.
            let mut given: Vec<IpAddr> = f
                .values("IP")
                .chain(f.values("IPV6"))
                .filter_map(|v| v.trim().parse().ok())
                .collect();
            let mut wanted: Vec<IpAddr> = raw
                .iter()
                .filter_map(|a| a.address.as_deref()?.trim().parse().ok())
                .collect();
            given.sort();
            wanted.sort();
            if f.values("IP").chain(f.values("IPV6")).next().is_some() && given != wanted {
                let list = |v: &[IpAddr]| {
                    v.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                c.refuse(format!(
                    "the filterref's IP/IPV6 parameters ({}) differ from the metadata's addresses ({}); \
                     run `virt-l3 nwfilter inject` on the XML",
                    list(&given),
                    list(&wanted)
                ));
            }
        }
        if raw.is_empty() {
            c.refuse(
                "the interface is on a routed bridge but has no address (no metadata and no IP/IPV6 filter parameter)",
            );
        }

        let mut routed_prefixes = Vec::new();
        for r in &routes {
            let (Some(ptext), Some(vtext)) = (r.prefix.as_deref(), r.via.as_deref()) else {
                c.refuse("a <route> element needs both prefix and via");
                continue;
            };
            let prefix: IpNet = match ptext.trim().parse() {
                Ok(p) => p,
                Err(_) => {
                    c.refuse(format!("routed prefix {} is not a prefix", shown(ptext)));
                    continue;
                }
            };
            let via: IpAddr = match vtext.trim().parse() {
                Ok(v) => v,
                Err(_) => {
                    c.refuse(format!(
                        "routed prefix {prefix}: via {} is not an IP address",
                        shown(vtext)
                    ));
                    continue;
                }
            };
            if prefix.trunc() != prefix {
                c.refuse(format!(
                    "routed prefix {prefix} has host bits set (did you mean {}?)",
                    prefix.trunc()
                ));
                continue;
            }
            if prefix.prefix_len() == 0 {
                c.refuse(format!("routed prefix {prefix} is a default route"));
                continue;
            }
            if let Some(why) = unroutable_reason(prefix.network()) {
                c.refuse(format!("routed prefix {prefix} {why}"));
                continue;
            }
            if !addresses.contains(&via) && parsed.contains(&via) {
                continue; // the address itself was refused, and said so
            }
            if !addresses.contains(&via) {
                c.refuse(format!(
                    "routed prefix {prefix}: via {via} is not one of this NIC's addresses"
                ));
                continue;
            }
            if prefix.addr().is_ipv4() != via.is_ipv4() {
                c.refuse(format!(
                    "routed prefix {prefix}: via {via} is of the other address family"
                ));
                continue;
            }
            if let Some(h) = host.addresses.iter().find(|h| prefix.contains(*h)) {
                c.refuse(format!(
                    "routed prefix {prefix} contains {h}, an address of the hypervisor"
                ));
                continue;
            }
            if let Some(g) = gateways.iter().find(|g| prefix.contains(*g)) {
                c.refuse(format!("routed prefix {prefix} contains the gateway {g}"));
                continue;
            }
            if let Some(d) = config.deny.iter().find(|d| overlaps(d, &prefix)) {
                c.refuse(format!(
                    "routed prefix {prefix} overlaps the denied prefix {d}"
                ));
                continue;
            }
            if !config.allow.is_empty() && !config.allow.iter().any(|a| a.contains(&prefix)) {
                c.refuse(format!(
                    "routed prefix {prefix} is outside every allowed prefix"
                ));
                continue;
            }
            if let Some((p, o)) = other_prefixes
                .iter()
                .find(|(p, o)| o.uuid != uuid && overlaps(p, &prefix))
            {
                c.refuse(format!(
                    "routed prefix {prefix} overlaps {p}, routed to domain {} ({})",
                    o.name, o.uuid
                ));
                continue;
            }
            if let Some((a, o)) = owners
                .address_within(&prefix)
                .filter(|(_, o)| o.uuid != uuid)
            {
                c.refuse(format!(
                    "routed prefix {prefix} contains {a}, owned by domain {} ({})",
                    o.name, o.uuid
                ));
                continue;
            }
            pending_prefixes.push((nics.len(), c.nic.clone().unwrap_or_default(), prefix));
            routed_prefixes.push(RoutedPrefix { prefix, via });
        }

        nics.push(Nic {
            mac,
            bridge: iface.bridge.clone().unwrap_or_default(),
            tap: iface.target_dev.clone(),
            addresses,
            routed_prefixes,
        });
    }

    // Prefixes of this domain must not overlap each other, nor its other NICs' addresses
    // in a way that steals them from the NIC that owns them.
    for (i, (ni, label, p)) in pending_prefixes.iter().enumerate() {
        for (_, _, q) in &pending_prefixes[i + 1..] {
            if overlaps(p, q) {
                c.nic = Some(label.clone());
                c.refuse(format!(
                    "routed prefix {p} overlaps the domain's other routed prefix {q}"
                ));
            }
        }
        for (k, nic) in nics.iter().enumerate() {
            if k == *ni {
                continue;
            }
            if let Some(a) = nic.addresses.iter().find(|a| p.contains(*a)) {
                c.nic = Some(label.clone());
                c.refuse(format!(
                    "routed prefix {p} contains {a}, an address of another NIC ({})",
                    nic.mac
                ));
            }
        }
    }

    if c.problems.is_empty() {
        Ok(DomainPlan {
            name: dom.name.clone(),
            uuid,
            nics,
        })
    } else {
        Err(PlanError {
            domain: dom.name.clone(),
            problems: c.problems,
        })
    }
}
