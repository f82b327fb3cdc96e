//! The properties every fuzz target checks, one function per target.
//!
//! Each function takes the fuzzer's raw bytes, runs them through virt-l3's own
//! API and panics if a property does not hold. The fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) call them; so does `tests/fuzz_regressions.rs`
//! (it includes this file), which replays every input in `testdata/fuzz/`
//! under a plain `cargo test`. A failed property is a panic, by design.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use virt_l3::address::{host_net, unroutable_reason, Mac};
use virt_l3::config::Config;
use virt_l3::domain_xml::DomainXml;
use virt_l3::plan::{
    candidate_addresses, is_valid_uuid, managed_interfaces, plan, Checks, DomainPlan, HostFacts,
    Owner, Ownership, PlanError,
};

/// An error message for a log line: not empty, one line, no control characters.
pub fn assert_one_line(what: &str, msg: &str) {
    assert!(!msg.trim().is_empty(), "{what}: empty error message");
    assert!(
        !msg.chars().any(char::is_control),
        "{what}: the error message spans lines or holds control characters: {msg:?}"
    );
}

/// Other domains of the fuzzed host: one owns 198.51.100.7 and routes 198.51.100.128/25,
/// one owns 2001:db8:ffff::7.
pub struct Owners {
    pub addresses: Vec<(IpAddr, Owner)>,
    pub prefixes: Vec<(IpNet, Owner)>,
}

fn other(n: u8) -> Owner {
    Owner {
        uuid: format!("00000000-0000-4000-8000-0000000000{n:02x}"),
        name: format!("other-{n}"),
    }
}

impl Owners {
    pub fn fixture() -> Owners {
        Owners {
            addresses: vec![
                ("198.51.100.7".parse().unwrap(), other(1)),
                ("2001:db8:ffff::7".parse().unwrap(), other(2)),
            ],
            prefixes: vec![("198.51.100.128/25".parse().unwrap(), other(1))],
        }
    }
}

impl Ownership for Owners {
    fn owner_of_address(&self, address: IpAddr) -> Option<Owner> {
        self.addresses
            .iter()
            .find(|(a, _)| *a == address)
            .map(|(_, o)| o.clone())
    }
    fn owner_of_mac(&self, _: virt_l3::address::Mac) -> Option<Owner> {
        None
    }
    fn routed_prefixes(&self) -> Vec<(IpNet, Owner)> {
        self.prefixes.clone()
    }
    fn address_within(&self, prefix: &IpNet) -> Option<(IpAddr, Owner)> {
        self.addresses
            .iter()
            .find(|(a, _)| prefix.contains(a))
            .cloned()
    }
}

/// The fuzzed host: configuration variant `variant` (0..4), one host address per family.
pub fn host_config(variant: usize) -> (Config, HostFacts) {
    let mut config = Config {
        deny: vec!["203.0.113.0/24".parse().unwrap()],
        ..Config::default()
    };
    if variant & 1 == 1 {
        config.allow = vec![
            "2.57.57.0/24".parse().unwrap(),
            "192.0.2.0/24".parse().unwrap(),
            "2001:678:3a4::/48".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
    }
    if variant & 2 == 2 {
        config.bridges.push("br-pub".into());
    }
    let host = HostFacts {
        addresses: vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
        ..HostFacts::default()
    };
    (config, host)
}

/// Domain XML parsing: never panics; an accepted document has a name and
/// numbered interfaces; an error is one line.
pub fn domain_xml(data: &[u8]) {
    match DomainXml::parse(data) {
        Ok(d) => {
            assert!(!d.name.is_empty());
            assert_eq!(d.name, d.name.trim());
            for (k, i) in d.interfaces.iter().enumerate() {
                assert_eq!(i.index, k);
            }
            if let Some(u) = &d.uuid {
                assert_eq!(*u, u.to_ascii_lowercase());
            }
            // Parsing is a function of the bytes.
            assert_eq!(DomainXml::parse(data), Ok(d));
        }
        Err(e) => assert_one_line("domain XML", &e.to_string()),
    }
}

/// Checks an accepted plan against every rule of docs/metadata.md.
pub fn check_plan(
    dom: &DomainXml,
    p: &DomainPlan,
    config: &Config,
    host: &HostFacts,
    owners: &Owners,
) {
    assert_eq!(p.name, dom.name);
    if virt_l3::plan::routes_nothing(dom, config) {
        // Nothing routed: accepted with nothing to do whatever the <uuid>, as the
        // hook accepts it unread (issue 15, item 10).
        assert!(p.nics.is_empty(), "{p:?}");
        return;
    }
    assert!(is_valid_uuid(&p.uuid), "{:?}", p.uuid);
    assert_eq!(dom.uuid.as_deref(), Some(p.uuid.as_str()));
    // One planned NIC per interface on a routed bridge, in order.
    let managed: Vec<_> = managed_interfaces(dom, config).collect();
    assert_eq!(managed.len(), p.nics.len());
    let candidates = candidate_addresses(dom);
    let mut addresses = BTreeSet::new();
    let mut macs = BTreeSet::new();
    for (nic, iface) in p.nics.iter().zip(&managed) {
        assert_eq!(Some(nic.bridge.as_str()), iface.bridge.as_deref());
        assert!(config.is_routed_bridge(&nic.bridge));
        assert_eq!(
            iface.mac.as_deref().and_then(|m| m.parse::<Mac>().ok()),
            Some(nic.mac)
        );
        assert!(!nic.mac.is_multicast() && !nic.mac.is_zero(), "{}", nic.mac);
        assert!(macs.insert(nic.mac), "MAC {} twice", nic.mac);
        assert!(!nic.addresses.is_empty(), "a managed NIC without addresses");
        for a in &nic.addresses {
            assert!(candidates.contains(a), "{a} appears nowhere in the XML");
            assert_eq!(unroutable_reason(*a), None, "{a}");
            assert!(!config.gateways.contains(a), "{a} is a gateway");
            assert!(!host.addresses.contains(a), "{a} is the host's");
            assert!(!config.deny.iter().any(|d| d.contains(a)), "{a} denied");
            assert!(
                config.allow.is_empty() || config.allow.iter().any(|n| n.contains(a)),
                "{a} not allowed"
            );
            assert!(addresses.insert(*a), "{a} twice");
            if let Some(o) = owners.owner_of_address(*a) {
                assert_eq!(o.uuid, p.uuid, "{a} is another domain's");
            }
            assert!(
                !owners
                    .prefixes
                    .iter()
                    .any(|(n, o)| o.uuid != p.uuid && n.contains(a)),
                "{a} inside another domain's prefix"
            );
        }
        for r in &nic.routed_prefixes {
            assert!(r.prefix.prefix_len() > 0, "default route {}", r.prefix);
            assert_eq!(r.prefix.trunc(), r.prefix);
            assert!(
                nic.addresses.contains(&r.via),
                "via {} not the NIC's",
                r.via
            );
            assert_eq!(r.prefix.addr().is_ipv4(), r.via.is_ipv4());
            assert_eq!(unroutable_reason(r.prefix.network()), None);
            assert!(!host.addresses.iter().any(|h| r.prefix.contains(h)));
            assert!(!config.gateways.iter().any(|g| r.prefix.contains(g)));
            assert!(!config
                .deny
                .iter()
                .any(|d| d.contains(&r.prefix) || r.prefix.contains(d)));
            assert!(config.allow.is_empty() || config.allow.iter().any(|n| n.contains(&r.prefix)));
            for (a, _) in &owners.addresses {
                assert!(
                    !r.prefix.contains(a),
                    "{} holds another domain's {a}",
                    r.prefix
                );
            }
        }
    }
    // Routes: a host route per address (/32 or /128, no via), a via route per routed
    // prefix; one neighbour per address with its NIC's MAC.
    let routes = p.routes(100);
    let hosts: BTreeSet<IpNet> = routes
        .iter()
        .filter(|r| r.via.is_none())
        .map(|r| r.destination)
        .collect();
    assert_eq!(
        hosts,
        addresses
            .iter()
            .map(|a| host_net(*a))
            .collect::<BTreeSet<_>>()
    );
    for r in &routes {
        if r.via.is_none() {
            let max = if r.destination.addr().is_ipv4() {
                32
            } else {
                128
            };
            assert_eq!(r.destination.prefix_len(), max, "{r}");
        }
        assert_eq!(r.metric, 100);
    }
    // ...and one per pinned link-local (an IPv6 NIC's), with its NIC's MAC.
    let neighbours = p.neighbours();
    let pinned = p.nics.iter().filter(|x| x.link_local.is_some()).count();
    assert_eq!(neighbours.len(), addresses.len() + pinned);
    for n in &neighbours {
        let nic = p.nics.iter().find(|x| {
            x.addresses.contains(&n.address) || x.link_local.map(IpAddr::V6) == Some(n.address)
        });
        assert_eq!(nic.map(|x| x.mac), Some(n.mac));
    }
    for x in &p.nics {
        assert_eq!(
            x.link_local.is_some(),
            x.addresses.iter().any(IpAddr::is_ipv6),
            "the default (eui64) pins exactly the IPv6 NICs"
        );
    }
    // Routed prefixes of the domain never overlap each other.
    let prefixes: Vec<IpNet> = p.prefixes().collect();
    for (i, a) in prefixes.iter().enumerate() {
        for b in &prefixes[i + 1..] {
            assert!(!a.contains(b) && !b.contains(a), "{a} overlaps {b}");
        }
    }
    // The plan is what the state directory records: JSON must give it back.
    let json = serde_json::to_vec(p).expect("a plan serialises");
    let back: DomainPlan = serde_json::from_slice(&json).expect("a recorded plan reads back");
    assert_eq!(&back, p);
}

/// Checks a refusal: at least one reason, one line, naming the domain.
pub fn check_refusal(dom: &DomainXml, e: &PlanError) {
    assert!(!e.problems.is_empty());
    assert_eq!(e.domain, dom.name);
    for p in &e.problems {
        assert!(!p.text.is_empty());
    }
    let msg = e.to_string();
    assert_one_line("plan", &msg);
    assert!(msg.starts_with("virt-l3 refuses domain "), "{msg}");
}

/// Annotation extraction, validation and planning.
pub fn plan_input(data: &[u8]) {
    let Ok(dom) = DomainXml::parse(data) else {
        return;
    };
    let (config, host) = host_config(data.len() & 3);
    let owners = Owners::fixture();
    for require_filter in [false, true] {
        let checks = Checks { require_filter };
        match plan(&dom, &config, &host, &owners, checks) {
            Ok(p) => {
                check_plan(&dom, &p, &config, &host, &owners);
                if require_filter {
                    for iface in managed_interfaces(&dom, &config) {
                        assert!(virt_l3::plan::carries_virt_l3_filter(iface, &config));
                    }
                }
                assert_eq!(plan(&dom, &config, &host, &owners, checks), Ok(p));
            }
            Err(e) => check_refusal(&dom, &e),
        }
    }
}

/// Configuration parsing: never panics; an accepted file keeps the documented
/// invariants and survives a write/read round trip; an error is one line.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/virt-l3/config.toml");
    match Config::from_toml(text, path) {
        Ok(c) => {
            assert!(!c.bridges.is_empty());
            assert!(c.route_protocol > 4);
            assert!(c.route_metric < c.arrived_metric);
            assert!(c.arrived_metric < c.leaving_metric);
            assert!(c.leaving_metric < c.standby_metric);
            if let Some(g) = c.gateway_mac {
                // Fixed or derived per bridge: a unicast, non-zero MAC either way.
                for b in &c.bridges {
                    let m = g.for_bridge(b);
                    assert!(!m.is_multicast() && !m.is_zero());
                }
            }
            let written = toml::to_string(&c).expect("a configuration serialises");
            let back = Config::from_toml(&written, path)
                .unwrap_or_else(|e| panic!("{e}\nin the written configuration:\n{written}"));
            assert_eq!(back, c);
        }
        Err(e) => {
            let msg = e.to_string();
            assert_one_line("config", &msg);
            assert!(msg.contains("/etc/virt-l3/config.toml"), "{msg}");
        }
    }
}

/// XML is well formed as far as quick-xml can tell.
fn assert_well_formed(xml: &[u8]) {
    let mut r = quick_xml::Reader::from_reader(xml);
    r.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    let mut depth = 0i64;
    loop {
        match r.read_event_into(&mut buf) {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(quick_xml::events::Event::Start(_)) => depth += 1,
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(_) => {}
            Err(e) => panic!(
                "rendered XML is malformed: {e}\n{}",
                String::from_utf8_lossy(xml)
            ),
        }
        buf.clear();
    }
    assert_eq!(
        depth,
        0,
        "unclosed elements:\n{}",
        String::from_utf8_lossy(xml)
    );
}

/// nwfilter render and inject: filters are well-formed XML naming the NIC's MAC
/// and addresses; injected domain XML plans the same and then carries virt-l3's
/// filter on every managed NIC; injecting twice changes nothing more.
pub fn nwfilter(data: &[u8]) {
    let config = Config::default();
    let Ok(p) = virt_l3::nwfilter::plan_for_filters(data, &config) else {
        return;
    };
    let filters = virt_l3::nwfilter::render(&p, &config);
    for (name, xml) in &filters {
        assert_well_formed(xml);
        assert!(
            {
                let t = String::from_utf8_lossy(xml);
                t.contains(&format!("name=\"{name}\"")) || t.contains(&format!("name='{name}'"))
            },
            "{name}"
        );
    }
    for nic in &p.nics {
        let name = virt_l3::plan::nic_filter_name(&config, &nic.mac);
        let (_, xml) = filters
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no filter {name}"));
        let text = String::from_utf8_lossy(xml);
        for a in &nic.addresses {
            assert!(text.contains(&a.to_string()), "{name} lacks {a}");
        }
    }
    match virt_l3::nwfilter::inject::inject(data, &config) {
        Ok(out) => {
            let dom = DomainXml::parse(&out).unwrap_or_else(|e| {
                panic!(
                    "injected XML does not parse: {e}\n{}",
                    String::from_utf8_lossy(&out)
                )
            });
            let after = plan(
                &dom,
                &config,
                &HostFacts::default(),
                &virt_l3::plan::NoOwnership,
                Checks {
                    require_filter: true,
                },
            )
            .unwrap_or_else(|e| {
                panic!(
                    "injected XML is refused: {e}\n{}",
                    String::from_utf8_lossy(&out)
                )
            });
            assert_eq!(after.nics.len(), p.nics.len());
            for (a, b) in after.nics.iter().zip(&p.nics) {
                assert_eq!((a.mac, &a.addresses), (b.mac, &b.addresses));
            }
            let again = virt_l3::nwfilter::inject::inject(&out, &config)
                .unwrap_or_else(|e| panic!("re-injecting fails: {e}"));
            assert_eq!(
                String::from_utf8_lossy(&again),
                String::from_utf8_lossy(&out),
                "inject is not idempotent"
            );
        }
        Err(e) => assert_one_line("inject", &e.to_string()),
    }
}
