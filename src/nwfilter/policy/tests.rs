//! The layers keep to the priority table: in the table's order, each at its row.

use std::path::PathBuf;

use super::*;
use crate::nwfilter::plan_for_filters;

/// Every row of the table, in order: the layers of this module and the templates.
const TABLE: [i16; 10] = [
    PRIO_SOURCE_MAC,
    PRIO_NO_VLAN,
    PRIO_NO_ROUTER,
    PRIO_ARP,
    PRIO_ANNOUNCE,
    PRIO_ND,
    PRIO_ND_OTHER,
    PRIO_NO_MULTICAST,
    PRIO_ADDRESSES,
    PRIO_NO_OTHER,
];

const TEMPLATE_ROWS: [(&str, i16); 4] = [
    ("virt-l3-no-vlan", PRIO_NO_VLAN),
    ("virt-l3-no-router", PRIO_NO_ROUTER),
    ("virt-l3-no-multicast", PRIO_NO_MULTICAST),
    ("virt-l3-no-other", PRIO_NO_OTHER),
];

fn configs() -> [Config; 2] {
    [
        Config::default(),
        Config {
            gateway_mac: Some("02:56:4c:33:00:01".parse().unwrap()),
            ..Config::default()
        },
    ]
}

/// Every routed NIC of the test domains.
fn nics(config: &Config) -> Vec<Nic> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for f in [
        "dual-stack",
        "ipv4-only",
        "ipv6-only",
        "multi-nic",
        "flat-metadata",
    ] {
        let xml = std::fs::read(root.join(format!("testdata/domains/{f}.xml"))).unwrap();
        out.extend(plan_for_filters(&xml, config).unwrap().nics);
    }
    out.extend(
        plan_for_filters(
            &std::fs::read(root.join("tests/nwfilter-lab/domains/guest-a.xml")).unwrap(),
            config,
        )
        .unwrap()
        .nics,
    );
    assert!(out.len() >= 6);
    out
}

fn priorities(xml: &str) -> Vec<i16> {
    xml.split("priority=")
        .skip(1)
        .map(|s| {
            let q = s.chars().next().unwrap();
            s[1..].split(q).next().unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn the_documented_table_is_the_constants() {
    let rows: Vec<i16> = include_str!("mod.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//! | "))
        .filter_map(|l| l.split('|').next()?.trim().parse().ok())
        .collect();
    assert_eq!(rows, TABLE);
    assert!(TABLE.windows(2).all(|w| w[0] < w[1]), "{TABLE:?}");
}

#[test]
fn layers_are_in_table_order_and_keep_to_their_row() {
    let layers: Vec<i16> = LAYERS.iter().map(|(p, _)| *p).collect();
    assert!(layers.windows(2).all(|w| w[0] < w[1]), "{layers:?}");
    assert!(layers.iter().all(|p| TABLE.contains(p)));
    assert!(layers
        .iter()
        .all(|p| !TEMPLATE_ROWS.iter().any(|t| t.1 == *p)));
    for config in configs() {
        for nic in nics(&config) {
            let view = NicView::new(&nic, &config);
            for (priority, layer) in LAYERS {
                for rule in layer(&view) {
                    assert_eq!(rule.priority, priority, "{}", rule.comment);
                }
            }
            let xml = String::from_utf8(nic_filter(&nic, &config).to_xml()).unwrap();
            let rendered = priorities(&xml);
            assert!(!rendered.is_empty());
            assert!(
                rendered.windows(2).all(|w| w[0] <= w[1]),
                "priorities go down in the filter of {}: {rendered:?}",
                nic.mac
            );
        }
    }
}

#[test]
fn templates_sit_at_their_table_rows() {
    assert_eq!(
        TEMPLATES.map(|t| t.name),
        TEMPLATE_ROWS.map(|(name, _)| name)
    );
    for (t, (_, priority)) in TEMPLATES.iter().zip(TEMPLATE_ROWS) {
        let found = priorities(t.xml);
        assert!(!found.is_empty(), "{}", t.name);
        assert!(
            found.iter().all(|p| *p == priority),
            "{}: {found:?}",
            t.name
        );
    }
}

#[test]
fn a_derived_gateway_mac_is_the_one_of_the_nics_bridge() {
    let config = Config {
        bridges: vec!["cloudbr0".into(), "brdr-*".into()],
        gateway_mac: Some(crate::config::GatewayMac::Derive),
        ..Config::default()
    };
    for nic in nics(&Config::default()) {
        let mut on_brdr = nic.clone();
        on_brdr.bridge = "brdr-7".into();
        for n in [&nic, &on_brdr] {
            let want = crate::plan::bridge_names::derived_mac(&n.bridge).to_string();
            assert_eq!(
                view::NicView::new(n, &config).gateway.as_deref(),
                Some(want.as_str())
            );
        }
    }
}
