use super::*;
use crate::domain_xml::{FlatAddress, NicMetadata};

const M1: &str = "52:54:00:00:00:01";
const M2: &str = "52:54:00:00:00:02";

fn iface(index: usize, mac: &str, bridge: &str) -> InterfaceXml {
    InterfaceXml {
        index,
        kind: "bridge".into(),
        mac: Some(mac.into()),
        bridge: Some(bridge.into()),
        ..InterfaceXml::default()
    }
}

fn addr(a: &str) -> AddressXml {
    AddressXml {
        address: Some(a.into()),
        ..AddressXml::default()
    }
}

fn filter(params: &[(&str, &str)]) -> FilterRef {
    FilterRef {
        filter: "f".into(),
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn texts(c: Collector) -> Vec<String> {
    c.problems
        .into_iter()
        .map(|p| format!("{}: {}", p.nic.unwrap_or_default(), p.text))
        .collect()
}

#[test]
fn managed_interfaces_are_those_on_routed_bridges() {
    let dom = DomainXml {
        interfaces: vec![iface(0, M1, "virbr0"), iface(1, M2, "cloudbr0")],
        ..DomainXml::default()
    };
    let config = Config::default();
    let managed: Vec<usize> = managed_interfaces(&dom, &config).map(|i| i.index).collect();
    assert_eq!(managed, [1]);
    assert_eq!(
        nic_label(&dom.interfaces[1]),
        format!("NIC {M2} (interface 1) on cloudbr0")
    );
    let bare = InterfaceXml::default();
    assert_eq!(nic_label(&bare), "NIC without MAC (interface 0) on -");
}

#[test]
fn candidate_addresses_come_from_every_source_once() {
    let mut i = iface(0, M1, "cloudbr0");
    i.filterref = Some(filter(&[
        ("IP", "192.0.2.7"),
        ("IPV6", "bad"),
        ("IPV6", "2001:db8::7"),
    ]));
    let dom = DomainXml {
        interfaces: vec![i],
        nic_metadata: vec![NicMetadata {
            mac: Some(M1.into()),
            addresses: vec![addr(" 192.0.2.7"), addr("x")],
            routes: Vec::new(),
            link_local: None,
        }],
        flat_addresses: vec![FlatAddress {
            address: addr("192.0.2.8"),
            ..FlatAddress::default()
        }],
        ..DomainXml::default()
    };
    let got: Vec<String> = candidate_addresses(&dom)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got, ["192.0.2.7", "192.0.2.8", "2001:db8::7"]);
    assert!(!has_routed_prefixes(&dom));
}

#[test]
fn metadata_blocks_must_name_one_interface_each() {
    let meta = |mac: Option<&str>| NicMetadata {
        mac: mac.map(Into::into),
        ..NicMetadata::default()
    };
    let dom = DomainXml {
        interfaces: vec![iface(0, M1, "cloudbr0")],
        nic_metadata: vec![
            meta(None),
            meta(Some("zz")),
            meta(Some(M2)),
            meta(Some(M1)),
            meta(Some(M1)),
        ],
        ..DomainXml::default()
    };
    let mut c = Collector::default();
    check_metadata_blocks(&dom, &interface_macs(&dom), &mut c);
    assert_eq!(
        texts(c),
        [
            "metadata <nic> block 0: it has no mac attribute".to_string(),
            "metadata <nic> block 1: its mac \"zz\" is not a MAC address".into(),
            format!("metadata <nic> block 2: no interface of the domain has MAC {M2}"),
            format!("metadata <nic> block 4: MAC {M1} has more than one metadata block"),
        ]
    );
}

#[test]
fn flat_addresses_go_to_exactly_one_managed_interface() {
    let flat = |a: &str, mac: Option<&str>, bridge: Option<&str>| FlatAddress {
        address: addr(a),
        mac: mac.map(Into::into),
        bridge: bridge.map(Into::into),
    };
    let dom = DomainXml {
        interfaces: vec![
            iface(0, M1, "cloudbr0"),
            iface(1, M2, "cloudbr0"),
            iface(2, "52:54:00:00:00:03", "virbr0"),
        ],
        flat_addresses: vec![
            flat("192.0.2.1", Some(M2), None),
            flat("192.0.2.2", Some("52:54:00:00:00:03"), None),
            flat("192.0.2.3", Some("52:54:00:00:00:09"), None),
            flat("192.0.2.4", None, Some("virbr0")),
            flat("192.0.2.5", None, None),
            flat("192.0.2.6", None, Some("cloudbr1")),
        ],
        ..DomainXml::default()
    };
    let config = Config {
        bridges: vec!["cloudbr0".into(), "cloudbr1".into()],
        ..Config::default()
    };
    let managed: Vec<&InterfaceXml> = managed_interfaces(&dom, &config).collect();
    let mut c = Collector::default();
    let got = assign_flat_addresses(&dom, &config, &managed, &interface_macs(&dom), &mut c);
    assert_eq!(got, [vec![], vec![&dom.flat_addresses[0].address]]);
    assert_eq!(
        texts(c),
        [
            "flat metadata address 2 (192.0.2.3): no interface of the domain has MAC 52:54:00:00:00:09",
            "flat metadata address 4 (192.0.2.5): 2 interfaces are on the routed bridges; add a mac attribute to say which one owns the address",
            "flat metadata address 5 (192.0.2.6): no interface of the domain is on bridge cloudbr1",
        ]
    );
}

#[test]
fn sources_in_precedence_order() {
    let mac: Mac = M1.parse().unwrap();
    let mut i = iface(0, M1, "cloudbr0");
    i.filterref = Some(filter(&[("IP", "192.0.2.9"), ("IPV6", "2001:db8::9")]));
    let mut dom = DomainXml {
        interfaces: vec![i.clone()],
        nic_metadata: vec![NicMetadata {
            mac: Some(M1.into()),
            addresses: vec![addr("192.0.2.7")],
            routes: Vec::new(),
            link_local: None,
        }],
        ..DomainXml::default()
    };
    let flat = addr("192.0.2.8");
    let s = address_sources(&metadata_by_mac(&dom), &i, mac, &[&flat]);
    assert_eq!(
        (s.addresses, s.from_filterref),
        (vec![addr("192.0.2.7")], false)
    );
    dom.nic_metadata.clear();
    let s = address_sources(&metadata_by_mac(&dom), &i, mac, &[&flat]);
    assert_eq!(s.addresses, vec![flat.clone()]);
    let s = address_sources(&metadata_by_mac(&dom), &i, mac, &[]);
    assert!(s.from_filterref);
    assert_eq!(
        s.addresses
            .iter()
            .map(|a| (a.address.clone().unwrap(), a.family.clone().unwrap()))
            .collect::<Vec<_>>(),
        [
            ("192.0.2.9".to_string(), "ipv4".to_string()),
            ("2001:db8::9".into(), "ipv6".into())
        ]
    );
}

#[test]
fn filter_parameters_must_agree_with_the_metadata() {
    let f = filter(&[("IPV6", "2001:db8::9"), ("IP", "192.0.2.9")]);
    assert_eq!(
        filterref_disagreement(&f, &[addr("2001:db8::9"), addr("192.0.2.9")]),
        None
    );
    assert_eq!(
        filterref_disagreement(&filter(&[]), &[addr("192.0.2.1")]),
        None
    );
    assert_eq!(
        filterref_disagreement(&f, &[addr("192.0.2.9")]).as_deref(),
        Some(
            "the filterref's IP/IPV6 parameters (192.0.2.9, 2001:db8::9) differ from the metadata's addresses (192.0.2.9); \
             run `virt-l3 nwfilter inject` on the XML"
        )
    );
}

#[test]
fn address_annotations() {
    let full = |a: Option<&str>, family: Option<&str>, prefix: Option<&str>| AddressXml {
        address: a.map(Into::into),
        family: family.map(Into::into),
        prefix: prefix.map(Into::into),
    };
    assert_eq!(
        parse_address(&full(Some(" 192.0.2.1 "), Some("IPv4"), Some("32"))),
        Ok("192.0.2.1".parse().unwrap())
    );
    assert_eq!(
        parse_address(&full(None, None, None)),
        Err("an <address> element has no address attribute".into())
    );
    assert_eq!(
        parse_address(&full(Some("nope"), None, None)),
        Err("address \"nope\" is not an IP address".into())
    );
    assert_eq!(
        parse_address(&full(Some("2001:db8::1"), Some("ipv4"), None)),
        Err("address 2001:db8::1 is ipv6, but its family says \"ipv4\"".into())
    );
    assert_eq!(
        parse_address(&full(Some("192.0.2.1"), None, Some("33"))),
        Err("address 192.0.2.1 has an invalid prefix length \"33\"".into())
    );
    assert!(parse_address(&full(Some("2001:db8::1"), None, Some("128"))).is_ok());
}

/// The quadratic readings this replaces, kept as the reference (issue 15).
mod reference {
    use super::*;

    pub fn blocks(dom: &DomainXml, c: &mut Collector) {
        let all: Vec<Option<Mac>> = dom
            .interfaces
            .iter()
            .map(|i| parse_mac(i.mac.as_deref()))
            .collect();
        for (k, meta) in dom.nic_metadata.iter().enumerate() {
            c.nic = Some(format!("metadata <nic> block {k}"));
            match meta.mac.as_deref().map(|m| (m, m.parse::<Mac>())) {
                None => c.refuse("it has no mac attribute"),
                Some((m, Err(_))) => c.refuse(format!("its mac {} is not a MAC address", shown(m))),
                Some((m, Ok(mac))) => {
                    if !all.contains(&Some(mac)) {
                        c.refuse(format!("no interface of the domain has MAC {m}"));
                    }
                    if dom.nic_metadata[..k]
                        .iter()
                        .any(|o| parse_mac(o.mac.as_deref()) == Some(mac))
                    {
                        c.refuse(format!("MAC {m} has more than one metadata block"));
                    }
                }
            }
        }
    }

    pub fn flat_target(
        flat: &FlatAddress,
        config: &Config,
        managed: &[&InterfaceXml],
        dom: &DomainXml,
    ) -> FlatTarget {
        if let Some(m) = flat.mac.as_deref() {
            let Ok(mac) = m.parse::<Mac>() else {
                return FlatTarget::Refused(format!("its mac {} is not a MAC address", shown(m)));
            };
            let hits: Vec<usize> = managed
                .iter()
                .enumerate()
                .filter(|(_, i)| parse_mac(i.mac.as_deref()) == Some(mac))
                .map(|(n, _)| n)
                .collect();
            return if !hits.is_empty() {
                FlatTarget::Nics(hits)
            } else if !dom
                .interfaces
                .iter()
                .any(|i| parse_mac(i.mac.as_deref()) == Some(mac))
            {
                FlatTarget::Refused(format!("no interface of the domain has MAC {m}"))
            } else {
                FlatTarget::NotOurs
            };
        }
        let bridge = flat.bridge.as_deref();
        if bridge.is_some_and(|b| !config.is_routed_bridge(b)) {
            return FlatTarget::NotOurs;
        }
        let hits: Vec<usize> = managed
            .iter()
            .enumerate()
            .filter(|(_, i)| bridge.is_none() || i.bridge.as_deref() == bridge)
            .map(|(n, _)| n)
            .collect();
        match hits.len() {
            0 => FlatTarget::Refused(format!(
                "no interface of the domain is on bridge {}",
                bridge.unwrap_or("(any routed bridge)")
            )),
            1 => FlatTarget::Nics(hits),
            _ => {
                FlatTarget::Refused(format!(
                "{} interfaces are on {}; add a mac attribute to say which one owns the address",
                hits.len(), bridge.unwrap_or("the routed bridges")))
            }
        }
    }

    pub fn sources(dom: &DomainXml, mac: Mac) -> Option<&NicMetadata> {
        dom.nic_metadata
            .iter()
            .find(|m| parse_mac(m.mac.as_deref()) == Some(mac))
    }
}

use proptest::prelude::*;

/// A MAC among few (often shared), sometimes invalid or absent.
fn mac_text() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        8 => (0..6u8).prop_map(|k| Some(format!("52:54:00:00:00:0{k}"))),
        1 => Just(Some("zz".to_string())),
        1 => Just(None),
    ]
}

fn bridge() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(Some("cloudbr0".to_string())),
        Just(Some("cloudbr1".to_string())),
        Just(Some("virbr0".to_string())),
        Just(None),
    ]
}

fn domain() -> impl Strategy<Value = DomainXml> {
    (
        proptest::collection::vec((mac_text(), bridge()), 0..12),
        proptest::collection::vec(mac_text(), 0..12),
        proptest::collection::vec((mac_text(), bridge(), any::<bool>()), 0..12),
    )
        .prop_map(|(ifaces, metas, flats)| DomainXml {
            interfaces: ifaces
                .into_iter()
                .enumerate()
                .map(|(index, (mac, bridge))| InterfaceXml {
                    index,
                    kind: "bridge".into(),
                    mac,
                    bridge,
                    ..InterfaceXml::default()
                })
                .collect(),
            nic_metadata: metas
                .into_iter()
                .enumerate()
                .map(|(k, mac)| NicMetadata {
                    mac,
                    addresses: vec![addr(&format!("192.0.2.{k}"))],
                    routes: Vec::new(),
                    link_local: None,
                })
                .collect(),
            flat_addresses: flats
                .into_iter()
                .enumerate()
                .map(|(k, (mac, bridge, with_mac))| FlatAddress {
                    address: addr(&format!("198.51.100.{k}")),
                    mac: mac.filter(|_| with_mac),
                    bridge,
                })
                .collect(),
            ..DomainXml::default()
        })
}

proptest! {
    /// The indexed readings give exactly what the quadratic ones gave.
    #[test]
    fn indexed_readings_equal_the_reference(dom in domain()) {
        let config = Config { bridges: vec!["cloudbr0".into(), "cloudbr1".into()], ..Config::default() };
        let managed: Vec<&InterfaceXml> = managed_interfaces(&dom, &config).collect();
        let macs = interface_macs(&dom);
        let (mut fast, mut slow) = (Collector::default(), Collector::default());
        check_metadata_blocks(&dom, &macs, &mut fast);
        reference::blocks(&dom, &mut slow);
        prop_assert_eq!(&fast.problems, &slow.problems);

        let mut fast = Collector::default();
        let got = assign_flat_addresses(&dom, &config, &managed, &macs, &mut fast);
        let mut want: Vec<Vec<&AddressXml>> = vec![Vec::new(); managed.len()];
        let mut slow = Collector::default();
        for (k, flat) in dom.flat_addresses.iter().enumerate() {
            slow.nic = Some(format!("flat metadata address {k} ({})", label_value(flat.address.address.as_deref().unwrap())));
            match reference::flat_target(flat, &config, &managed, &dom) {
                FlatTarget::Nics(hits) => hits.into_iter().for_each(|n| want[n].push(&flat.address)),
                FlatTarget::NotOurs => {}
                FlatTarget::Refused(why) => slow.refuse(why),
            }
        }
        prop_assert_eq!(got, want);
        prop_assert_eq!(&fast.problems, &slow.problems);

        let index = metadata_by_mac(&dom);
        for mac in dom.interfaces.iter().filter_map(|i| parse_mac(i.mac.as_deref())) {
            prop_assert_eq!(index.get(&mac).map(|m| *m as *const NicMetadata),
                reference::sources(&dom, mac).map(|m| m as *const NicMetadata));
        }
    }
}
