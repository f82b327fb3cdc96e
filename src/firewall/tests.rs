use std::path::PathBuf;

use super::model::*;
use super::render::*;
use crate::config::Config;

fn host() -> HostNetworks {
    HostNetworks {
        connected: vec![
            ("eth0".into(), "192.0.2.0/24".parse().unwrap()),
            ("eth0".into(), "2001:db8:1::/64".parse().unwrap()),
            ("eth0".into(), "fe80::/64".parse().unwrap()),
            ("lo".into(), "127.0.0.0/8".parse().unwrap()),
            ("cloudbr0".into(), "169.254.0.1/32".parse().unwrap()),
            ("cloud0".into(), "169.254.0.0/16".parse().unwrap()),
        ],
        foreign_ports: vec!["eth1".into(), "vnet9".into()],
        accepted_ports: vec!["vnet1".into(), "vnet0".into()],
        bridge_meta: false,
    }
}

fn fw(toml_text: &str) -> FirewallConfig {
    toml::from_str(toml_text).unwrap()
}

#[test]
fn host_allow_parses_and_prints_back() {
    for (text, proto, ports, addr) in [
        (
            "tcp/80@169.254.169.254",
            Proto::Tcp,
            (80, 80),
            Some("169.254.169.254"),
        ),
        ("udp/53", Proto::Udp, (53, 53), None),
        (
            "tcp/8000-8080@fe80::1",
            Proto::Tcp,
            (8000, 8080),
            Some("fe80::1"),
        ),
    ] {
        let s: HostService = text.parse().unwrap();
        assert_eq!(
            (s.proto, s.ports, s.address),
            (proto, ports, addr.map(|a| a.parse().unwrap()))
        );
        assert_eq!(s.to_string(), text);
    }
}

#[test]
fn malformed_host_allow_is_an_error_naming_the_entry() {
    for bad in [
        "tcp80",
        "icmp/1",
        "tcp/0",
        "tcp/70000",
        "tcp/90-80",
        "tcp/80@nowhere",
        "",
        "tcp/",
    ] {
        let e = bad.parse::<HostService>().unwrap_err().to_string();
        assert!(e.contains(&format!("{bad:?}")), "{e}");
        assert!(e.contains("host_allow"), "{e}");
    }
    let e = toml::from_str::<FirewallConfig>("host_allow = [\"tcp/22\", \"ssh\"]")
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"ssh\""), "{e}");
}

#[test]
fn protected_entries() {
    assert_eq!(
        "connected".parse::<Protected>().unwrap(),
        Protected::Connected
    );
    assert_eq!(
        "10.1.2.3/8".parse::<Protected>().unwrap().to_string(),
        "10.0.0.0/8"
    );
    let e = "mgmt".parse::<Protected>().unwrap_err().to_string();
    assert!(
        e.contains("\"mgmt\"") && e.contains("protected_networks"),
        "{e}"
    );
    assert!(toml::from_str::<FirewallConfig>("protected_networks = [\"storage\"]").is_err());
}

#[test]
fn default_protects_connected_non_routed_networks_and_link_local() {
    let r = Ruleset::from_config(&Config::default(), &host());
    let nets: Vec<String> = r.protected.iter().map(|n| n.to_string()).collect();
    // 169.254.0.1/32 on cloudbr0 (routed) is not protected; cloud0's /16 and the default merge.
    assert_eq!(nets, ["169.254.0.0/16", "192.0.2.0/24", "2001:db8:1::/64"]);
}

#[test]
fn explicit_protected_networks_replace_the_default() {
    let r = Ruleset::build(
        &Config::default(),
        &fw("protected_networks = [\"10.0.0.0/8\", \"10.1.0.0/16\"]"),
        &host(),
    );
    assert_eq!(r.protected, vec!["10.0.0.0/8".parse().unwrap()]);
}

#[test]
fn render_is_deterministic_and_atomic() {
    let mut h = host();
    let a = render(&Ruleset::from_config(&Config::default(), &h));
    h.connected.reverse();
    h.accepted_ports.reverse();
    assert_eq!(a, render(&Ruleset::from_config(&Config::default(), &h)));
    // Each table is created, deleted and defined in the one file.
    for fam in ["inet", "bridge", "netdev"] {
        let create = a.find(&format!("table {fam} virt_l3\n")).unwrap();
        let delete = a.find(&format!("delete table {fam} virt_l3\n")).unwrap();
        let define = a.find(&format!("table {fam} virt_l3 {{")).unwrap();
        assert!(create < delete && delete < define);
    }
}

#[test]
fn version_ignores_accepted_ports_only() {
    let base = Ruleset::from_config(&Config::default(), &host());
    let mut other = base.clone();
    other.accepted_ports.insert("vnet7".into());
    assert_eq!(version(&base), version(&other));
    assert_ne!(render(&base), render(&other));
    let mut bridges = base.clone();
    bridges.routed_bridges.insert("cloudbr1".into());
    assert_ne!(version(&base), version(&bridges));
    let allowed = Ruleset::build(
        &Config::default(),
        &fw("host_allow = [\"tcp/80@169.254.169.254\"]"),
        &host(),
    );
    assert_ne!(version(&base), version(&allowed));
}

#[test]
fn rules_hold_what_issue_14_asks() {
    let text = render(&Ruleset::build(
        &Config::default(),
        &fw("host_allow = [\"tcp/80@169.254.169.254\", \"udp/53\"]"),
        &host(),
    ));
    for needle in [
        "iifname @routed_bridges jump guest_to_host",
        "ip daddr 169.254.169.254 tcp dport 80 accept",
        "udp dport 53 accept",
        "fib saddr . iif oif missing counter drop",
        "ip daddr @protected4 jump protected",
        "ip saddr vmap @sg_egress_restricted4",
        "ip6 daddr vmap @sg_vms6",
        "ip daddr . ip saddr . meta l4proto . th dport @sg_in4_ports_00 return",
        "ip6 saddr . ip6 daddr . icmpv6 type . icmpv6 code @sg_out6_icmp_3f return",
        "iifname != @foreign_ports iifname != @accepted_ports counter drop",
        "oifname != @foreign_ports oifname != @accepted_ports counter drop",
        "devices = { \"vnet0\", \"vnet1\" }",
        "elements = { 169.254.0.1 }",
        "elements = { fe80::1 }",
        "type filter hook prerouting priority -450; policy accept;",
        "exthdr frag exists frag frag-off 0 frag nexthdr { 0, 43, 44, 60 } counter drop",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn with_bridge_meta_the_bridge_rules_name_the_routed_bridges() {
    let mut h = host();
    h.bridge_meta = true;
    let text = render(&Ruleset::from_config(&Config::default(), &h));
    assert!(text.contains("meta ibrname @routed_bridges iifname != @accepted_ports"));
    assert!(!text.contains("foreign_ports"));
}

#[test]
fn without_ports_the_netdev_table_is_empty() {
    let mut h = host();
    h.accepted_ports.clear();
    let text = render(&Ruleset::from_config(&Config::default(), &h));
    assert!(text.contains("table netdev virt_l3 {\n\tcomment"));
    assert!(!text.contains("hook ingress"));
}

#[test]
fn set_listing_is_parsed() {
    let listed = "table bridge virt_l3 {\n\tset accepted_ports {\n\t\ttype ifname\n\t\telements = { \"vnet0\",\n\t\t\t     \"vnet1\" }\n\t}\n}\n";
    assert_eq!(super::nft::parse_elements(listed), ["vnet0", "vnet1"]);
    assert!(super::nft::parse_elements("set x {\n type ifname\n}").is_empty());
}

/// Golden files: `UPDATE_GOLDEN=1 cargo test --lib firewall` rewrites them.
#[test]
fn golden_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/firewall");
    let mut meta = host();
    meta.bridge_meta = true;
    let cases = [
        ("default.nft", Ruleset::from_config(&Config::default(), &host())),
        (
            "host-allow.nft",
            Ruleset::build(&Config::default(), &fw("host_allow = [\"tcp/80@169.254.169.254\", \"udp/53@169.254.0.1\", \"tcp/8000-8080@fe80::1\"]\nprotected_networks = [\"connected\", \"10.0.0.0/8\", \"fd00::/8\"]"), &host()),
        ),
        ("bridge-meta.nft", Ruleset::from_config(&Config::default(), &meta)),
    ];
    for (name, r) in cases {
        let path = dir.join(name);
        let text = render(&r);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
        assert_eq!(text, want, "{name} differs (UPDATE_GOLDEN=1 rewrites it)");
    }
}

#[test]
fn a_bridge_pattern_is_an_interface_wildcard_in_an_interval_set() {
    let base = render(&Ruleset::from_config(&Config::default(), &host()));
    assert!(
        base.contains("set routed_bridges {\n\t\ttype ifname\n\t\telements"),
        "{base}"
    );
    let config = Config {
        bridges: vec!["cloudbr0".into(), "brdr-*".into()],
        ..Config::default()
    };
    let text = render(&Ruleset::from_config(&config, &host()));
    assert!(
        text.contains(
            "set routed_bridges {\n\t\ttype ifname\n\t\tflags interval\n\t\telements = { \"brdr-*\", \"cloudbr0\" }"
        ),
        "{text}"
    );
}

#[test]
fn rule_counts_from_the_model_match_the_rendering() {
    let mut meta = host();
    meta.bridge_meta = true;
    for r in [
        Ruleset::from_config(&Config::default(), &host()),
        Ruleset::from_config(&Config::default(), &meta),
        Ruleset::build(
            &Config::default(),
            &fw("host_allow = [\"tcp/80@169.254.169.254\", \"udp/53\", \"tcp/1-9\"]"),
            &host(),
        ),
    ] {
        let mut bare = r.clone();
        bare.accepted_ports.clear();
        let text = render(&bare);
        let counted = ["inet", "bridge", "netdev"].map(|f| super::nft::expected_rules(&text, f));
        assert_eq!(rule_counts(&r), counted);
    }
}
