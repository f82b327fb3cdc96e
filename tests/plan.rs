//! Validation and planning, without root: XML in, desired state or errors out.

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

mod common;

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use virt_l3::config::Config;
use virt_l3::domain_xml::DomainXml;
use virt_l3::plan::{
    plan, Checks, DomainPlan, HostFacts, NoOwnership, Owner, Ownership, PlanError,
};

fn plan_of(xml: &str, config: &Config) -> Result<DomainPlan, PlanError> {
    let dom = DomainXml::parse(xml.as_bytes()).expect("parse");
    plan(
        &dom,
        config,
        &HostFacts::default(),
        &NoOwnership,
        Checks {
            require_filter: true,
        },
    )
}

fn err_of(xml: &str) -> String {
    plan_of(xml, &Config::default())
        .expect_err("should be refused")
        .to_string()
}

/// A domain with one routed NIC and the given metadata body.
fn domain(meta: &str, nics: &str) -> String {
    format!(
        "<domain type='qemu'><name>vm1</name><uuid>aaaaaaaa-0000-4000-8000-000000000001</uuid>\
         <metadata><cs:network xmlns:cs='https://download.cloudstack.org/libvirt/network'>{meta}</cs:network></metadata>\
         <devices>{nics}</devices></domain>"
    )
}

fn nic(mac: &str, bridge: &str) -> String {
    let filter = format!("virt-l3-nic-{}", mac.replace(':', "").to_lowercase());
    format!("<interface type='bridge'><mac address='{mac}'/><source bridge='{bridge}'/><filterref filter='{filter}'/></interface>")
}

fn addrs(mac: &str, list: &[&str]) -> String {
    let body: String = list
        .iter()
        .map(|a| format!("<cs:address address='{a}'/>"))
        .collect();
    format!("<cs:nic mac='{mac}'>{body}</cs:nic>")
}

const M1: &str = "52:54:00:00:00:01";
const M2: &str = "52:54:00:00:00:02";

#[test]
fn per_nic_metadata_gives_routes_and_neighbours() {
    let xml = String::from_utf8(common::fixture("dual-stack.xml")).unwrap();
    let p = plan_of(&xml, &Config::default()).unwrap();
    let routes: Vec<String> = p.routes(100).iter().map(|r| r.to_string()).collect();
    assert_eq!(
        routes,
        vec![
            "2.57.57.30/32 dev cloudbr0 metric 100",
            "2001:678:3a4:100::80/128 dev cloudbr0 metric 100",
            "2001:678:3a4:8000::/56 via 2001:678:3a4:100::80 dev cloudbr0 onlink metric 100",
        ]
    );
    let neigh: Vec<String> = p.neighbours().iter().map(|n| n.to_string()).collect();
    assert_eq!(
        neigh,
        vec![
            "2.57.57.30 lladdr 52:02:45:76:d2:35 dev cloudbr0 nud permanent",
            "2001:678:3a4:100::80 lladdr 52:02:45:76:d2:35 dev cloudbr0 nud permanent",
            "fe80::5002:45ff:fe76:d235 lladdr 52:02:45:76:d2:35 dev cloudbr0 nud permanent",
        ]
    );
    assert_eq!(p.nics[0].tap.as_deref(), Some("vnet3"));
}

#[test]
fn flat_metadata_attaches_to_the_only_nic_on_the_bridge() {
    let xml = String::from_utf8(common::fixture("flat-metadata.xml")).unwrap();
    let p = plan_of(&xml, &Config::default()).unwrap();
    assert_eq!(
        p.nics[0].addresses,
        vec![
            "192.0.2.5".parse::<IpAddr>().unwrap(),
            "2001:db8::100".parse().unwrap()
        ]
    );
}

#[test]
fn flat_metadata_with_two_nics_on_the_bridge_is_ambiguous_unless_mac_says() {
    let meta = "<cs:address address='192.0.2.5' family='ipv4' bridge='cloudbr0'/>";
    let two = format!("{}{}", nic(M1, "cloudbr0"), nic(M2, "cloudbr0"));
    let e = err_of(&domain(meta, &two));
    assert!(e.contains("2 interfaces are on cloudbr0"), "{e}");
    let meta = format!(
        "<cs:address address='192.0.2.5' bridge='cloudbr0' mac='{M2}'/><cs:address address='192.0.2.6' bridge='cloudbr0' mac='{M1}'/>"
    );
    let p = plan_of(&domain(&meta, &two), &Config::default()).unwrap();
    assert_eq!(
        p.nics[0].addresses,
        vec!["192.0.2.6".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        p.nics[1].addresses,
        vec!["192.0.2.5".parse::<IpAddr>().unwrap()]
    );
}

#[test]
fn filterref_parameters_are_the_last_source() {
    let xml = String::from_utf8(common::fixture("filterref-params.xml")).unwrap();
    let p = plan_of(&xml, &Config::default()).unwrap();
    assert_eq!(p.nics[0].addresses.len(), 3);
    // Beside metadata, filterref parameters must agree with it (libvirt's filter
    // would otherwise bind the NIC to addresses that are not routed to it).
    let nics = format!(
        "<interface type='bridge'><mac address='{M1}'/><source bridge='cloudbr0'/>\
         <filterref filter='virt-l3-nic-525400000001'><parameter name='IP' value='192.0.2.99'/></filterref></interface>"
    );
    let e = plan_of(
        &domain(&addrs(M1, &["192.0.2.1"]), &nics),
        &Config::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("192.0.2.99") && e.contains("differ from the metadata"),
        "{e}"
    );
}

#[test]
fn unrouted_bridges_are_ignored_entirely() {
    let nics = format!("{}{}", nic(M1, "cloudbr0"), nic(M2, "br-private"));
    let p = plan_of(
        &domain(&addrs(M1, &["192.0.2.1"]), &nics),
        &Config::default(),
    )
    .unwrap();
    assert_eq!(p.nics.len(), 1);
    assert_eq!(p.nics[0].mac.to_string(), M1);
}

#[test]
fn refusals_name_the_nic_and_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (&["0.0.0.0"], "0.0.0.0"),
        (&["127.0.0.2"], "loopback"),
        (&["224.0.0.5"], "multicast"),
        (&["255.255.255.255"], "broadcast"),
        (&["169.254.9.9"], "link-local"),
        (&["fe80::5"], "link-local"),
        (&["::ffff:192.0.2.1"], "IPv4-mapped"),
        (&["169.254.0.1"], "link-local"),
        (&["not-an-ip"], "\"not-an-ip\" is not an IP address"),
        (&["192.0.2.1", "192.0.2.1"], "192.0.2.1 appears twice"),
    ];
    for (list, needle) in cases {
        let e = err_of(&domain(&addrs(M1, list), &nic(M1, "cloudbr0")));
        assert!(e.contains(needle), "{list:?}: {e}");
        assert!(e.contains("vm1") && e.contains(M1), "{e}");
    }
}

#[test]
fn gateway_deny_and_allow_lists() {
    let mut c = Config::default();
    c.gateways.push("192.0.2.254".parse().unwrap());
    c.deny = vec!["192.0.2.128/25".parse().unwrap()];
    c.allow = vec![
        "192.0.2.0/24".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    let n = nic(M1, "cloudbr0");
    for (a, needle) in [
        ("192.0.2.254", "gateway"),
        ("192.0.2.200", "denied prefix 192.0.2.128/25"),
        ("198.51.100.1", "outside every allowed prefix"),
    ] {
        let e = plan_of(&domain(&addrs(M1, &[a]), &n), &c)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{a}: {e}");
    }
    assert!(plan_of(&domain(&addrs(M1, &["192.0.2.10", "2001:db8::1"]), &n), &c).is_ok());
}

#[test]
fn family_and_prefix_attributes_are_checked() {
    let meta =
        format!("<cs:nic mac='{M1}'><cs:address address='192.0.2.1' family='ipv6'/></cs:nic>");
    assert!(err_of(&domain(&meta, &nic(M1, "cloudbr0"))).contains("its family says"));
    let meta = format!("<cs:nic mac='{M1}'><cs:address address='192.0.2.1' prefix='33'/></cs:nic>");
    assert!(err_of(&domain(&meta, &nic(M1, "cloudbr0"))).contains("invalid prefix length"));
}

#[test]
fn macs_must_be_unicast_nonzero_and_known() {
    for (mac, needle) in [
        ("01:00:5e:00:00:01", "multicast"),
        ("00:00:00:00:00:00", "all zeros"),
    ] {
        let e = err_of(&domain(&addrs(mac, &["192.0.2.1"]), &nic(mac, "cloudbr0")));
        assert!(e.contains(needle), "{e}");
    }
    let e = err_of(&domain(
        &format!("{}{}", addrs(M1, &["192.0.2.1"]), addrs(M2, &["192.0.2.2"])),
        &nic(M1, "cloudbr0"),
    ));
    assert!(
        e.contains(&format!("no interface of the domain has MAC {M2}")),
        "{e}"
    );
}

#[test]
fn a_routed_nic_without_addresses_is_refused() {
    let e = err_of(&domain("", &nic(M1, "cloudbr0")));
    assert!(e.contains("has no address"), "{e}");
}

#[test]
fn routed_prefix_rules() {
    let n = nic(M1, "cloudbr0");
    let with_route = |prefix: &str, via: &str| {
        domain(
            &format!(
                "<cs:nic mac='{M1}'><cs:address address='192.0.2.1'/><cs:address address='2001:db8::1'/>\
                 <cs:route prefix='{prefix}' via='{via}'/></cs:nic>"
            ),
            &n,
        )
    };
    assert!(plan_of(
        &with_route("203.0.113.0/24", "192.0.2.1"),
        &Config::default()
    )
    .is_ok());
    for (p, v, needle) in [
        ("0.0.0.0/0", "192.0.2.1", "default route"),
        ("203.0.113.1/24", "192.0.2.1", "host bits"),
        (
            "203.0.113.0/24",
            "192.0.2.9",
            "not one of this NIC's addresses",
        ),
        ("203.0.113.0/24", "2001:db8::1", "other address family"),
        ("169.254.0.0/24", "192.0.2.1", "link-local"),
        ("garbage", "192.0.2.1", "is not a prefix"),
    ] {
        let e = plan_of(&with_route(p, v), &Config::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{p} via {v}: {e}");
    }
}

/// Other domains' ownership, as the state directory would report it.
struct Owned(HashMap<IpAddr, Owner>, Vec<(IpNet, Owner)>);

impl Ownership for Owned {
    fn owner_of_address(&self, a: IpAddr) -> Option<Owner> {
        self.0.get(&a).cloned()
    }
    fn owner_of_mac(&self, _: virt_l3::address::Mac) -> Option<Owner> {
        None
    }
    fn routed_prefixes(&self) -> Vec<(IpNet, Owner)> {
        self.1.clone()
    }
    fn address_within(&self, p: &IpNet) -> Option<(IpAddr, Owner)> {
        self.0
            .iter()
            .find(|(a, _)| p.contains(*a))
            .map(|(a, o)| (*a, o.clone()))
    }
}

#[test]
fn ownership_conflicts_name_the_owner() {
    let other = Owner {
        uuid: "bbbbbbbb-0000-4000-8000-000000000002".into(),
        name: "vm2".into(),
    };
    let owned = Owned(
        [("192.0.2.7".parse().unwrap(), other.clone())]
            .into_iter()
            .collect(),
        vec![("203.0.113.0/24".parse().unwrap(), other.clone())],
    );
    let check = |meta: &str| {
        let dom = DomainXml::parse(domain(meta, &nic(M1, "cloudbr0")).as_bytes()).unwrap();
        plan(
            &dom,
            &Config::default(),
            &HostFacts::default(),
            &owned,
            Checks::default(),
        )
    };
    let e = check(&addrs(M1, &["192.0.2.7"])).unwrap_err().to_string();
    assert!(
        e.contains("192.0.2.7 is already owned by domain vm2"),
        "{e}"
    );
    let e = check(&addrs(M1, &["203.0.113.9"])).unwrap_err().to_string();
    assert!(
        e.contains("inside prefix 203.0.113.0/24 routed to domain vm2"),
        "{e}"
    );
    let e = check(&format!(
        "<cs:nic mac='{M1}'><cs:address address='192.0.2.1'/><cs:route prefix='192.0.2.0/29' via='192.0.2.1'/></cs:nic>"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("contains 192.0.2.7, owned by domain vm2"), "{e}");
    // The same domain (same UUID) may re-claim its own addresses (re-start, migration).
    let mine = Owned(
        [(
            "192.0.2.7".parse().unwrap(),
            Owner {
                uuid: "aaaaaaaa-0000-4000-8000-000000000001".into(),
                name: "vm1".into(),
            },
        )]
        .into_iter()
        .collect(),
        vec![],
    );
    let dom = DomainXml::parse(domain(&addrs(M1, &["192.0.2.7"]), &nic(M1, "cloudbr0")).as_bytes())
        .unwrap();
    assert!(plan(
        &dom,
        &Config::default(),
        &HostFacts::default(),
        &mine,
        Checks::default()
    )
    .is_ok());
}

#[test]
fn the_uuid_must_be_a_uuid() {
    let xml = domain(&addrs(M1, &["192.0.2.1"]), &nic(M1, "cloudbr0"))
        .replace("aaaaaaaa-0000-4000-8000-000000000001", "../../etc/passwd");
    assert!(err_of(&xml).contains("not a valid UUID"));
}

#[test]
fn the_link_local_is_pinned_per_configuration() {
    use virt_l3::config::LinkLocal;
    let with = |ll: &str| {
        domain(
            &format!(
                "<cs:nic mac='{M1}'><cs:address address='2001:db8::7'/><cs:address address='192.0.2.7'/>{ll}</cs:nic>"
            ),
            &nic(M1, "cloudbr0"),
        )
    };
    let config = |mode| Config {
        link_local: mode,
        ..Config::default()
    };
    let pinned = |xml: &str, mode| {
        plan_of(xml, &config(mode)).unwrap().nics[0]
            .link_local
            .map(|a| a.to_string())
    };
    let named = with("<cs:link-local address='fe80::7'/>");
    assert_eq!(
        pinned(&named, LinkLocal::Eui64).as_deref(),
        Some("fe80::5054:ff:fe00:1")
    );
    assert_eq!(
        pinned(&named, LinkLocal::Metadata).as_deref(),
        Some("fe80::7")
    );
    assert_eq!(pinned(&named, LinkLocal::Any), None);
    // An IPv4-only NIC pins nothing.
    let v4 = domain(&addrs(M1, &["192.0.2.7"]), &nic(M1, "cloudbr0"));
    assert_eq!(pinned(&v4, LinkLocal::Eui64), None);
    // In mode metadata, an IPv6 NIC without the element, or with a bad one, is refused.
    for (ll, why) in [
        ("", "has no <link-local"),
        (
            "<cs:link-local address='2001:db8::1'/>",
            "is not a unicast fe80::/10",
        ),
        ("<cs:link-local address='fe80::1'/>", "is a gateway address"),
    ] {
        let e = plan_of(&with(ll), &config(LinkLocal::Metadata))
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{ll}: {e}");
    }
    // The configuration key reads as documented.
    let c = Config::from_toml("link_local = \"metadata\"", std::path::Path::new("x")).unwrap();
    assert_eq!(c.link_local, LinkLocal::Metadata);
    assert!(Config::from_toml("link_local = \"random\"", std::path::Path::new("x")).is_err());
}

// --- From libvirt's own test corpus (issue 15, item 10) ----------------------

#[test]
fn a_domain_without_uuid_and_nothing_routed_is_accepted_like_the_hook_does() {
    // No <uuid>, one NIC on a bridge virt-l3 does not route: the hook accepts it
    // unread, so `plan`, `guest-config` and `nwfilter` accept it with nothing to do.
    let xml = "<domain type='qemu'><name>plain</name><devices>\
               <interface type='bridge'><mac address='52:54:00:00:00:09'/><source bridge='virbr0'/></interface>\
               </devices></domain>";
    let p = plan_of(xml, &Config::default()).unwrap();
    assert!(p.nics.is_empty());
    assert_eq!((p.name.as_str(), p.uuid.as_str()), ("plain", ""));
    let none = "<domain><name>bare</name></domain>";
    assert!(plan_of(none, &Config::default()).unwrap().nics.is_empty());
    // A routed NIC still needs the <uuid>.
    let routed = domain(&addrs(M1, &["192.0.2.10"]), &nic(M1, "cloudbr0"))
        .replace("<uuid>aaaaaaaa-0000-4000-8000-000000000001</uuid>", "");
    assert!(err_of(&routed).contains("the domain XML has no <uuid>"));
}

#[test]
fn an_open_vswitch_port_on_a_routed_bridge_is_refused() {
    let ovs = nic(M1, "cloudbr0").replace(
        "</interface>",
        "<virtualport type='openvswitch'><parameters interfaceid='09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f'/></virtualport></interface>",
    );
    let e = err_of(&domain(&addrs(M1, &["192.0.2.10"]), &ovs));
    assert!(
        e.starts_with("virt-l3 refuses domain vm1: NIC 52:54:00:00:00:01 (interface 0) on cloudbr0: \
                       it is a <virtualport type=\"openvswitch\"> port: virt-l3 routes Linux bridge ports only \
                       (port isolation and nwfilter, which hold a guest to its addresses, do not apply to it)"),
        "{e}"
    );
    // On a bridge virt-l3 does not route, it is none of virt-l3's business.
    let unrouted = ovs.replace("cloudbr0", "br-ovs");
    assert!(plan_of(&domain("", &unrouted), &Config::default()).is_ok());
}

#[test]
fn metadata_in_the_http_spelling_of_the_namespace_is_refused() {
    let https = domain(&addrs(M1, &["192.0.2.10"]), &nic(M1, "cloudbr0"));
    let http = https.replace("https://download.cloudstack", "http://download.cloudstack");
    let e = err_of(&http);
    assert!(
        e.contains(
            "its <metadata> uses the namespace http://download.cloudstack.org/libvirt/network, \
             which virt-l3 does not read: the namespace of CloudStack's network metadata is \
             https://download.cloudstack.org/libvirt/network"
        ),
        "{e}"
    );
    // Also without a routed NIC: the metadata was meant for virt-l3 (the hook refuses it too).
    let unrouted = http.replace("cloudbr0", "virbr0");
    assert!(err_of(&unrouted).contains("uses the namespace http://"));
}

#[test]
fn inject_refuses_to_replace_a_foreign_filterref() {
    use virt_l3::nwfilter::inject::inject;
    let c = Config::default();
    let foreign = nic(M1, "cloudbr0").replace(
        "filter='virt-l3-nic-525400000001'/>",
        "filter='clean-traffic'><parameter name='IP' value='192.0.2.10'/></filterref>",
    );
    let xml = domain(&addrs(M1, &["192.0.2.10"]), &foreign);
    let e = inject(xml.as_bytes(), &c).unwrap_err().to_string();
    assert_eq!(
        e,
        "virt-l3 will not replace the nwfilter \"clean-traffic\" of NIC 52:54:00:00:00:01 on cloudbr0 \
         of domain vm1: it is not one of virt-l3's filters (virt-l3-nic-<mac>), so an operator must \
         decide: remove that <filterref> and run `virt-l3 nwfilter inject` again, or keep it and set \
         require_nwfilter = false"
    );
    // virt-l3's own filter, this NIC's or another NIC's (a cloned XML), is replaced.
    for own in ["virt-l3-nic-525400000001", "virt-l3-nic-525400000002"] {
        let xml = domain(
            &addrs(M1, &["192.0.2.10"]),
            &nic(M1, "cloudbr0").replace("virt-l3-nic-525400000001", own),
        );
        let out = String::from_utf8(inject(xml.as_bytes(), &c).unwrap()).unwrap();
        assert!(out.contains("filter=\"virt-l3-nic-525400000001\""), "{out}");
    }
}
