use super::*;
use crate::plan::facts::NoOwnership;

const UUID: &str = "c7a5fdbd-edaf-9455-926a-d65c16db1809";
const OTHER: &str = "0b8a2a3e-1f4d-4c59-9d7e-2a6d0f5e7c11";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
fn owner(uuid: &str) -> Owner {
    Owner {
        uuid: uuid.into(),
        name: "db".into(),
    }
}

#[test]
fn uuid_must_be_there_and_valid() {
    assert_eq!(domain_uuid(Some(UUID)), Ok(UUID.to_string()));
    assert_eq!(
        domain_uuid(Some("x")),
        Err("the domain UUID \"x\" is not a valid UUID".into())
    );
    assert_eq!(
        domain_uuid(None),
        Err("the domain XML has no <uuid>".into())
    );
}

#[test]
fn macs_must_be_a_nics() {
    assert!(nic_mac(Some("52:54:00:aa:bb:cc")).is_ok());
    let err = |m: Option<&str>| nic_mac(m).unwrap_err();
    assert_eq!(err(None), "the interface has no MAC address");
    assert_eq!(err(Some("zz")), "MAC \"zz\" is not a MAC address");
    assert_eq!(
        err(Some("00:00:00:00:00:00")),
        "MAC 00:00:00:00:00:00 is all zeros"
    );
    assert_eq!(
        err(Some("ff:ff:ff:ff:ff:ff")),
        "MAC ff:ff:ff:ff:ff:ff is the broadcast MAC, not a NIC's"
    );
    assert_eq!(
        err(Some("01:00:5e:00:00:01")),
        "MAC 01:00:5e:00:00:01 is a multicast MAC, not a NIC's"
    );
    let mut seen = BTreeSet::new();
    let mac: Mac = "52:54:00:aa:bb:cc".parse().unwrap();
    assert_eq!(duplicate_mac(mac, &mut seen), None);
    assert_eq!(
        duplicate_mac(mac, &mut seen).as_deref(),
        Some("MAC 52:54:00:aa:bb:cc is used by two routed interfaces")
    );
}

#[test]
fn macs_of_the_gateway_bridges_and_other_domains() {
    let mac: Mac = "52:54:00:aa:bb:cc".parse().unwrap();
    let other: Mac = "02:00:00:00:00:01".parse().unwrap();
    assert_eq!(mac_is_gateway(mac, None), None);
    assert_eq!(mac_is_gateway(mac, Some(other)), None);
    assert_eq!(
        mac_is_gateway(mac, Some(mac)).as_deref(),
        Some("MAC 52:54:00:aa:bb:cc is the guests' gateway MAC (gateway_mac)")
    );
    let bridges = [("cloudbr0".to_string(), other), ("br1".to_string(), mac)];
    assert_eq!(mac_is_bridge(mac, &bridges[..1]), None);
    assert_eq!(
        mac_is_bridge(mac, &bridges).as_deref(),
        Some("MAC 52:54:00:aa:bb:cc is the MAC of the routed bridge br1 (the guests' gateway)")
    );
    assert_eq!(mac_owned_by_other(mac, None, UUID), None);
    assert_eq!(mac_owned_by_other(mac, Some(owner(UUID)), UUID), None);
    assert_eq!(
        mac_owned_by_other(mac, Some(owner(OTHER)), UUID),
        Some(format!(
            "MAC 52:54:00:aa:bb:cc is already used on a routed bridge by domain db ({OTHER})"
        ))
    );
    let config = Config {
        gateway_mac: Some(crate::config::GatewayMac::Fixed(mac)),
        ..Config::default()
    };
    let host = HostFacts {
        bridge_macs: bridges.to_vec(),
        ..HostFacts::default()
    };
    let ctx = Context::new(&config, &host, &NoOwnership, UUID);
    assert!(mac_problem(mac, &ctx).unwrap().contains("gateway MAC"));
    assert_eq!(
        mac_problem("52:54:00:00:00:01".parse().unwrap(), &ctx),
        None
    );
    // Derived: each routed bridge's own gateway MAC is refused.
    let derive = Config {
        gateway_mac: Some(crate::config::GatewayMac::Derive),
        ..Config::default()
    };
    let ctx = Context::new(&derive, &host, &NoOwnership, UUID);
    let br1 = crate::plan::bridge_names::derived_mac("br1");
    assert!(mac_problem(br1, &ctx).unwrap().contains("gateway MAC"));
    assert_eq!(
        mac_problem("52:54:00:00:00:01".parse().unwrap(), &ctx),
        None
    );
}

#[test]
fn the_filter_must_be_the_nics_own() {
    let config = Config::default();
    let mac: Mac = "52:54:00:aa:bb:cc".parse().unwrap();
    let mut iface = InterfaceXml {
        mac: Some(mac.to_string()),
        ..InterfaceXml::default()
    };
    let none = missing_filter(&iface, &config, &mac).unwrap();
    assert!(none.contains("(it has no <filterref>)"), "{none}");
    iface.filterref = Some(crate::domain_xml::FilterRef {
        filter: nic_filter_name(&config, &mac),
        parameters: Vec::new(),
    });
    assert_eq!(missing_filter(&iface, &config, &mac), None);
    iface.filterref.as_mut().unwrap().filter = "other".into();
    let wrong = missing_filter(&iface, &config, &mac).unwrap();
    assert!(wrong.contains("it has filter \"other\", not \""), "{wrong}");
}

#[test]
fn address_rules_one_by_one() {
    assert_eq!(unroutable_address(ip("192.0.2.1")), None);
    assert!(unroutable_address(ip("127.0.0.1"))
        .unwrap()
        .starts_with("address 127.0.0.1 "));
    let gateways: BTreeSet<IpAddr> = [ip("192.0.2.1")].into();
    assert_eq!(
        gateway_address(ip("192.0.2.1"), &gateways).as_deref(),
        Some("address 192.0.2.1 is the guests' gateway")
    );
    assert_eq!(gateway_address(ip("192.0.2.2"), &gateways), None);
    assert_eq!(
        hosts_own_address(ip("192.0.2.5"), &[ip("192.0.2.5")]).as_deref(),
        Some("address 192.0.2.5 is configured on the hypervisor itself")
    );
    assert_eq!(
        denied_address(ip("10.1.2.3"), &[net("10.0.0.0/8")]).as_deref(),
        Some("address 10.1.2.3 is inside the denied prefix 10.0.0.0/8")
    );
    assert_eq!(denied_address(ip("11.1.2.3"), &[net("10.0.0.0/8")]), None);
    assert_eq!(address_not_allowed(ip("11.1.2.3"), &[]), None);
    assert_eq!(
        address_not_allowed(ip("11.1.2.3"), &[net("10.0.0.0/8")]).as_deref(),
        Some("address 11.1.2.3 is outside every allowed prefix")
    );
    let mut seen = BTreeSet::new();
    assert_eq!(duplicate_address(ip("192.0.2.9"), &mut seen), None);
    assert_eq!(
        duplicate_address(ip("192.0.2.9"), &mut seen).as_deref(),
        Some("address 192.0.2.9 appears twice in the domain")
    );
}

#[test]
fn addresses_of_other_domains() {
    let a = ip("192.0.2.9");
    assert_eq!(address_owned_by_other(a, Some(owner(UUID)), UUID), None);
    assert_eq!(address_owned_by_other(a, None, UUID), None);
    assert_eq!(
        address_owned_by_other(a, Some(owner(OTHER)), UUID),
        Some(format!(
            "address 192.0.2.9 is already owned by domain db ({OTHER})"
        ))
    );
    let prefixes = [(net("192.0.2.0/24"), owner(UUID))];
    assert_eq!(address_in_other_prefix(a, &prefixes, UUID), None);
    assert_eq!(
        address_in_other_prefix(a, &prefixes, OTHER),
        Some(format!(
            "address 192.0.2.9 is inside prefix 192.0.2.0/24 routed to domain db ({UUID})"
        ))
    );
}

#[test]
fn the_first_address_rule_that_refuses_is_said_and_duplicates_count_only_past_it() {
    let config = Config {
        gateways: vec![ip("192.0.2.1")],
        ..Config::default()
    };
    let host = HostFacts::default();
    let ctx = Context::new(&config, &host, &NoOwnership, UUID);
    let mut seen = BTreeSet::new();
    assert!(address_problem(ip("192.0.2.1"), &ctx, &mut seen)
        .unwrap()
        .ends_with("is the guests' gateway"));
    assert!(seen.is_empty());
    assert_eq!(address_problem(ip("192.0.2.7"), &ctx, &mut seen), None);
    assert!(address_problem(ip("192.0.2.7"), &ctx, &mut seen)
        .unwrap()
        .ends_with("appears twice in the domain"));
}

#[test]
fn routes_must_parse() {
    let route = |p: Option<&str>, v: Option<&str>| RouteXml {
        prefix: p.map(Into::into),
        via: v.map(Into::into),
    };
    assert_eq!(
        parse_route(&route(Some(" 198.51.100.0/24"), Some("192.0.2.7 "))),
        Ok((net("198.51.100.0/24"), ip("192.0.2.7")))
    );
    assert_eq!(
        parse_route(&route(None, Some("192.0.2.7"))),
        Err("a <route> element needs both prefix and via".into())
    );
    assert_eq!(
        parse_route(&route(Some("x"), Some("192.0.2.7"))),
        Err("routed prefix \"x\" is not a prefix".into())
    );
    assert_eq!(
        parse_route(&route(Some("198.51.100.0/24"), Some("y"))),
        Err("routed prefix 198.51.100.0/24: via \"y\" is not an IP address".into())
    );
}

#[test]
fn prefix_shapes() {
    assert_eq!(prefix_shape_problem(net("198.51.100.0/24")), None);
    assert_eq!(
        prefix_shape_problem(net("198.51.100.1/24")).as_deref(),
        Some("routed prefix 198.51.100.1/24 has host bits set (did you mean 198.51.100.0/24?)")
    );
    assert_eq!(
        prefix_shape_problem(net("::/0")).as_deref(),
        Some("routed prefix ::/0 is a default route")
    );
    assert!(prefix_shape_problem(net("127.0.0.0/8"))
        .unwrap()
        .starts_with("routed prefix 127.0.0.0/8 "));
}

#[test]
fn prefix_rules_one_by_one() {
    let p = net("198.51.100.0/24");
    let via = ip("192.0.2.7");
    assert!(via_refused(via, &[], &[via]));
    assert!(!via_refused(via, &[via], &[via]));
    assert!(!via_refused(via, &[], &[]));
    assert_eq!(via_not_of_nic(p, via, &[via]), None);
    assert_eq!(
        via_not_of_nic(p, via, &[]).as_deref(),
        Some("routed prefix 198.51.100.0/24: via 192.0.2.7 is not one of this NIC's addresses")
    );
    assert_eq!(
        via_of_other_family(p, ip("2001:db8::7")).as_deref(),
        Some("routed prefix 198.51.100.0/24: via 2001:db8::7 is of the other address family")
    );
    assert_eq!(via_of_other_family(p, via), None);
    assert_eq!(
        prefix_contains_host(p, &[ip("192.0.2.2"), ip("198.51.100.2")]).as_deref(),
        Some("routed prefix 198.51.100.0/24 contains 198.51.100.2, an address of the hypervisor")
    );
    let gateways: BTreeSet<IpAddr> = [ip("198.51.100.9"), ip("198.51.100.1")].into();
    assert_eq!(
        prefix_contains_gateway(p, &gateways).as_deref(),
        Some("routed prefix 198.51.100.0/24 contains the gateway 198.51.100.1")
    );
    assert_eq!(
        prefix_denied(p, &[net("198.51.0.0/16")]).as_deref(),
        Some("routed prefix 198.51.100.0/24 overlaps the denied prefix 198.51.0.0/16")
    );
    assert_eq!(
        prefix_denied(p, &[net("198.51.100.128/25")]).as_deref(),
        Some("routed prefix 198.51.100.0/24 overlaps the denied prefix 198.51.100.128/25")
    );
    assert_eq!(prefix_not_allowed(p, &[]), None);
    assert_eq!(prefix_not_allowed(p, &[net("198.51.0.0/16")]), None);
    assert_eq!(
        prefix_not_allowed(p, &[net("198.51.100.0/25")]).as_deref(),
        Some("routed prefix 198.51.100.0/24 is outside every allowed prefix")
    );
}

#[test]
fn prefixes_of_other_domains_and_nics() {
    let p = net("198.51.100.0/24");
    let theirs = [(net("198.51.100.128/25"), owner(OTHER))];
    assert_eq!(prefix_overlaps_other_domain(p, &theirs, OTHER), None);
    assert_eq!(
        prefix_overlaps_other_domain(p, &theirs, UUID),
        Some(format!(
            "routed prefix 198.51.100.0/24 overlaps 198.51.100.128/25, routed to domain db ({OTHER})"
        ))
    );
    let within = Some((ip("198.51.100.3"), owner(OTHER)));
    assert_eq!(prefix_contains_other_domain(p, within.clone(), OTHER), None);
    assert_eq!(
        prefix_contains_other_domain(p, within, UUID),
        Some(format!(
            "routed prefix 198.51.100.0/24 contains 198.51.100.3, owned by domain db ({OTHER})"
        ))
    );
    assert_eq!(
        own_prefixes_overlap(&p, &net("198.51.0.0/16")).as_deref(),
        Some(
            "routed prefix 198.51.100.0/24 overlaps the domain's other routed prefix 198.51.0.0/16"
        )
    );
    assert_eq!(own_prefixes_overlap(&p, &net("198.51.101.0/24")), None);
    let nic = Nic {
        mac: "52:54:00:aa:bb:cc".parse().unwrap(),
        bridge: "br0".into(),
        tap: None,
        addresses: vec![ip("192.0.2.7"), ip("198.51.100.4")],
        routed_prefixes: Vec::new(),
        link_local: None,
    };
    assert_eq!(
        prefix_contains_other_nic(&p, &nic).as_deref(),
        Some("routed prefix 198.51.100.0/24 contains 198.51.100.4, an address of another NIC (52:54:00:aa:bb:cc)")
    );
}

#[test]
fn addresses_and_prefixes_the_host_uses_on_other_interfaces() {
    let lan = HostRoute {
        destination: net("192.0.2.0/24"),
        gateway: None,
        interface: "eth0".into(),
    };
    let default = HostRoute {
        destination: net("0.0.0.0/0"),
        gateway: Some(ip("192.0.2.1")),
        interface: "eth0".into(),
    };
    let onlink_default = HostRoute {
        destination: net("0.0.0.0/0"),
        gateway: None,
        interface: "ppp0".into(),
    };
    let routes = [&lan, &default, &onlink_default];
    assert_eq!(
        address_on_host_link(ip("192.0.2.1"), &routes).as_deref(),
        Some("address 192.0.2.1 is on-link on eth0 (192.0.2.0/24), an interface that is not a routed bridge")
    );
    assert_eq!(
        address_on_host_link(ip("192.0.2.1"), &[&default]).as_deref(),
        Some("address 192.0.2.1 is the next hop of a route via eth0 (0.0.0.0/0), an interface that is not a routed bridge")
    );
    assert_eq!(
        address_on_host_link(ip("198.51.100.7"), &routes),
        None,
        "a default route makes nothing on-link"
    );
    assert_eq!(
        prefix_on_host_link(net("192.0.2.128/25"), &routes).as_deref(),
        Some("routed prefix 192.0.2.128/25 overlaps 192.0.2.0/24, on-link on eth0, an interface that is not a routed bridge")
    );
    assert_eq!(
        prefix_on_host_link(net("192.0.2.0/30"), &[&default]).as_deref(),
        Some("routed prefix 192.0.2.0/30 contains 192.0.2.1, the next hop of a route via eth0 (0.0.0.0/0), an interface that is not a routed bridge")
    );
    assert_eq!(prefix_on_host_link(net("198.51.100.0/24"), &routes), None);
}

#[test]
fn routes_on_routed_bridges_are_not_the_hosts() {
    let config = Config::default();
    let host = HostFacts {
        routes: vec![
            HostRoute {
                destination: net("198.51.100.7/32"),
                gateway: None,
                interface: "cloudbr0".into(),
            },
            HostRoute {
                destination: net("192.0.2.0/24"),
                gateway: None,
                interface: "eth0".into(),
            },
        ],
        ..HostFacts::default()
    };
    let ctx = Context::new(&config, &host, &NoOwnership, UUID);
    let mut seen = BTreeSet::new();
    assert_eq!(address_problem(ip("198.51.100.7"), &ctx, &mut seen), None);
    assert!(address_problem(ip("192.0.2.9"), &ctx, &mut seen)
        .unwrap()
        .contains("is on-link on eth0 (192.0.2.0/24)"));
}
