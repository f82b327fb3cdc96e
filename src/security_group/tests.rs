use std::net::IpAddr;
use std::path::PathBuf;

use super::model::*;
use super::parse::parse_rules;
use super::{elements, render};

const UUID: &str = "4f6c1d2e-0000-4000-8000-00000000abcd";

/// The string the agent passes for a group opening SSH from everywhere and DNS
/// out (SecurityGroupRulesCmd.stringifyRules() then addNetworkRules' replace(" ", ";")).
const AGENT: &str = "I:tcp;22;22;0.0.0.0/0,::/0,NEXT;E:udp;53;53;0.0.0.0/0,NEXT;";

fn addrs() -> Vec<IpAddr> {
    vec![
        "100.64.0.10".parse().unwrap(),
        "2001:db8::10".parse().unwrap(),
    ]
}

#[test]
fn parses_the_agent_string() {
    let r = parse_rules(AGENT).unwrap();
    assert_eq!(r.rules.len(), 2);
    let ssh = &r.rules[0];
    assert_eq!(ssh.direction, Direction::Ingress);
    assert_eq!(ssh.protocol, Protocol::Tcp);
    assert_eq!(
        ssh.matches,
        Match::Ports {
            first: 22,
            last: 22
        }
    );
    assert_eq!(ssh.ipv4, vec!["0.0.0.0/0".parse().unwrap()]);
    assert_eq!(ssh.ipv6, vec!["::/0".parse().unwrap()]);
    let dns = &r.rules[1];
    assert_eq!(dns.direction, Direction::Egress);
    assert_eq!(dns.protocol, Protocol::Udp);
    assert!(dns.ipv6.is_empty());
    assert!(r.egress_closed_v4());
    assert!(!r.egress_closed_v6());
}

#[test]
fn every_cloudstack_form_parses_alike() {
    let forms = [
        // The agent's string; without the comma before NEXT (routed-filtering.md);
        // as stringifyRules() builds it, before the spaces become ';'; a last NEXT without ';'.
        "I:tcp;22;22;0.0.0.0/0,NEXT;",
        "I:tcp;22;22;0.0.0.0/0NEXT;",
        "I:tcp;22;22;0.0.0.0/0,NEXT ",
        "I:tcp;22;22;0.0.0.0/0,NEXT",
    ];
    let first = parse_rules(forms[0]).unwrap();
    for f in forms {
        assert_eq!(parse_rules(f).unwrap(), first, "{f}");
    }
}

#[test]
fn cloudstack_examples() {
    // No rule at all (the agent passes no --rules): CloudStack's default.
    assert_eq!(parse_rules("").unwrap(), RuleSet::cloudstack_default());
    // ICMP echo request from one network, any ICMP from IPv6.
    let r = parse_rules("I:icmp;8;-1;192.0.2.0/24,NEXT;I:icmp;-1;-1;2001:db8::/32,NEXT;").unwrap();
    assert_eq!(
        r.rules[0].matches,
        Match::Icmp {
            r#type: Some(8),
            code: None
        }
    );
    assert_eq!(
        r.rules[1].matches,
        Match::Icmp {
            r#type: None,
            code: None
        }
    );
    // ICMP type 3 code 4 (fragmentation needed).
    let r = parse_rules("I:icmp;3;4;0.0.0.0/0,NEXT;").unwrap();
    assert_eq!(
        r.rules[0].matches,
        Match::Icmp {
            r#type: Some(3),
            code: Some(4)
        }
    );
    // all, a protocol number, a port range, several networks, host bits.
    let r = parse_rules(
        "I:all;0;0;10.0.0.0/8,NEXT;I:47;0;0;198.51.100.7/32,NEXT;I:udp;1000;2000;203.0.113.9/24,198.51.100.0/24,NEXT;E:tcp;0;0;::/0,NEXT;",
    )
    .unwrap();
    assert_eq!(r.rules[0].protocol, Protocol::All);
    assert_eq!(r.rules[1].protocol, Protocol::Number(47));
    assert_eq!(
        r.rules[2].matches,
        Match::Ports {
            first: 1000,
            last: 2000
        }
    );
    assert_eq!(
        r.rules[2].ipv4,
        vec![
            "198.51.100.0/24".parse().unwrap(),
            "203.0.113.0/24".parse().unwrap()
        ]
    );
    assert_eq!(r.rules[3].matches, Match::Any);
    assert!(r.egress_closed_v6() && !r.egress_closed_v4());
    // A rule for a group without members: no network, no effect.
    let r = parse_rules("I:tcp;80;80;NEXT;").unwrap();
    assert!(r.rules[0].ipv4.is_empty() && r.rules[0].ipv6.is_empty());
}

#[test]
fn refusals_name_the_rule() {
    for (text, index, why) in [
        ("I:tcp;22;22;0.0.0.0/0", 1, "does not end with NEXT;"),
        ("I:tcp;22;0.0.0.0/0,NEXT;", 1, "fewer than four fields"),
        ("X:tcp;22;22;0.0.0.0/0,NEXT;", 1, "unknown rule type"),
        (
            "I:tcp;22;22;0.0.0.0/0,NEXT;I:sctp;1;1;0.0.0.0/0,NEXT;",
            2,
            "unknown protocol",
        ),
        (
            "I:tcp;22;70000;0.0.0.0/0,NEXT;",
            1,
            "port 70000 is out of range",
        ),
        ("I:udp;-5;10;0.0.0.0/0,NEXT;", 1, "port -5 is out of range"),
        ("I:tcp;80;22;0.0.0.0/0,NEXT;", 1, "reversed"),
        ("I:icmp;300;-1;0.0.0.0/0,NEXT;", 1, "ICMP type 300"),
        ("I:icmp;-1;3;0.0.0.0/0,NEXT;", 1, "needs an ICMP type"),
        (
            "I:tcp;22;22;10.0.0.0/33,NEXT;",
            1,
            "not an IPv4 or IPv6 network",
        ),
        ("I:tcp;a;22;0.0.0.0/0,NEXT;", 1, "is not a number"),
    ] {
        let e = parse_rules(text).unwrap_err();
        assert_eq!(e.index, index, "{text}");
        assert!(e.to_string().contains(why), "{text}: {e}");
        assert!(!e.to_string().contains('\n'));
    }
}

fn names(e: &[elements::SetElements]) -> Vec<&'static str> {
    e.iter().map(|s| s.set.name).collect()
}

fn texts(e: &[elements::SetElements], set: &str) -> Vec<String> {
    e.iter()
        .filter(|s| s.set.name == set)
        .flat_map(|s| s.elements.iter().map(|b| elements::text(s, b)))
        .collect()
}

#[test]
fn egress_is_open_until_the_first_egress_rule_of_a_family() {
    let open = elements::elements(
        &parse_rules("I:tcp;22;22;0.0.0.0/0,NEXT;").unwrap(),
        &addrs(),
    );
    assert!(!names(&open)
        .iter()
        .any(|n| n.starts_with("sg_egress_restricted")));
    let closed = elements::elements(&parse_rules(AGENT).unwrap(), &addrs());
    let shard = elements::shard("100.64.0.10".parse().unwrap());
    assert_eq!(
        texts(&closed, "sg_egress_restricted4"),
        [format!("100.64.0.10 : jump security_out4_{shard:02x}")]
    );
    assert!(texts(&closed, "sg_egress_restricted6").is_empty());
    // The default: ingress closed (the VM's addresses in sg_vms*), nothing allowed.
    let ingress = elements::elements(&RuleSet::cloudstack_default(), &addrs());
    assert_eq!(names(&ingress), ["sg_vms4", "sg_vms6"]);
}

#[test]
fn families_stay_apart() {
    let e = elements::elements(
        &parse_rules("I:icmp;8;0;192.0.2.0/24,2001:db8::/64,NEXT;").unwrap(),
        &addrs(),
    );
    assert_eq!(
        texts(&e, "sg_in4_icmp"),
        ["100.64.0.10 . 192.0.2.0/24 . 8 . 0"]
    );
    assert_eq!(
        texts(&e, "sg_in6_icmp"),
        ["2001:db8::10 . 2001:db8::/64 . 8 . 0"]
    );
}

#[test]
fn elements_per_address_and_family() {
    let e = elements::elements(
        &parse_rules("I:tcp;22;22;0.0.0.0/0,::/0,NEXT;I:all;0;0;10.0.0.0/8,NEXT;I:icmp;-1;-1;::/0,NEXT;E:udp;53;53;0.0.0.0/0,NEXT;").unwrap(),
        &addrs(),
    );
    // Each address's interval elements are in its shard's sets.
    for s in e.iter().filter(|s| s.set.interval) {
        let a = if s.name.contains('4') {
            addrs()[0]
        } else {
            addrs()[1]
        };
        assert_eq!(s.name, elements::sharded(s.set.name, elements::shard(a)));
    }
    assert_eq!(
        names(&e),
        [
            "sg_vms4",
            "sg_vms6",
            "sg_egress_restricted4",
            "sg_in4_ports",
            "sg_in4_all",
            "sg_in6_ports",
            "sg_in6_icmp",
            "sg_out4_ports"
        ]
    );
    assert_eq!(
        texts(&e, "sg_in4_ports"),
        ["100.64.0.10 . 0.0.0.0/0 . 6 . 22"]
    );
    assert_eq!(
        texts(&e, "sg_in4_all"),
        ["100.64.0.10 . 10.0.0.0/8 . 0-255"]
    );
    assert_eq!(
        texts(&e, "sg_in6_icmp"),
        ["2001:db8::10 . ::/0 . 0-255 . 0-255"]
    );
    assert_eq!(
        texts(&e, "sg_out4_ports"),
        ["100.64.0.10 . 0.0.0.0/0 . 17 . 53"]
    );
}

#[test]
fn overlapping_rules_become_disjoint_elements() {
    // The kernel refuses partly overlapping elements in one set.
    let e = elements::elements(
        &parse_rules("I:tcp;20;30;10.0.0.0/8,NEXT;I:tcp;25;40;10.1.0.0/16,NEXT;I:tcp;22;22;0.0.0.0/0,NEXT;I:tcp;20;30;10.0.0.0/8,NEXT;").unwrap(),
        &addrs()[..1],
    );
    let boxes = &e
        .iter()
        .find(|s| s.set.name == "sg_in4_ports")
        .unwrap()
        .elements;
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            assert!(
                a.iter().zip(b).any(|(x, y)| x.1 < y.0 || y.1 < x.0),
                "{a:?} overlaps {b:?}"
            );
        }
    }
    // Every probe is covered exactly as the rules say.
    let covered = |addr: u128, port: u128| {
        boxes
            .iter()
            .any(|b| b[1].0 <= addr && addr <= b[1].1 && b[3].0 <= port && port <= b[3].1)
    };
    let ip = |s: &str| u128::from(u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()));
    assert!(covered(ip("10.1.2.3"), 40) && covered(ip("10.2.0.1"), 20));
    assert!(!covered(ip("10.2.0.1"), 31) && covered(ip("192.0.2.1"), 22));
    assert!(!covered(ip("192.0.2.1"), 23));
}

#[test]
fn keys_are_padded_fields_in_network_order() {
    let e = elements::elements(
        &parse_rules("I:tcp;22;80;10.0.0.0/8,NEXT;").unwrap(),
        &addrs()[..1],
    );
    let s = e.iter().find(|s| s.set.name == "sg_in4_ports").unwrap();
    let nl = elements::netlink(s, &s.elements[0]);
    // As `nft --debug=netlink add element` prints it for this element.
    assert_eq!(
        nl.key,
        [100, 64, 0, 10, 10, 0, 0, 0, 6, 0, 0, 0, 0, 22, 0, 0]
    );
    assert_eq!(
        nl.key_end.unwrap(),
        [100, 64, 0, 10, 10, 255, 255, 255, 6, 0, 0, 0, 0, 80, 0, 0]
    );
}

/// Golden files: `UPDATE_GOLDEN=1 cargo test --lib security_group` rewrites them.
#[test]
fn renderings_match_the_golden_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/security-groups");
    let many = "I:tcp;22;22;0.0.0.0/0,::/0,NEXT;I:tcp;80;443;198.51.100.0/24,203.0.113.0/24,2001:db8:1::/48,NEXT;I:icmp;8;-1;0.0.0.0/0,NEXT;I:icmp;128;-1;::/0,NEXT;I:udp;0;0;192.0.2.7/32,NEXT;I:47;0;0;192.0.2.0/24,NEXT;E:udp;53;53;0.0.0.0/0,NEXT;E:tcp;443;443;0.0.0.0/0,::/0,NEXT;E:all;0;0;10.0.0.0/8,NEXT;";
    let stale = elements::elements(
        &parse_rules(many).unwrap(),
        &["100.64.0.9".parse().unwrap()],
    );
    let cases = [
        (
            "default.nft",
            render::apply(UUID, &RuleSet::cloudstack_default(), &addrs(), &[]),
        ),
        (
            "agent.nft",
            render::apply(UUID, &parse_rules(AGENT).unwrap(), &addrs(), &[]),
        ),
        (
            "many.nft",
            render::apply(UUID, &parse_rules(many).unwrap(), &addrs(), &stale),
        ),
        (
            "remove.nft",
            render::remove(
                UUID,
                &elements::elements(&parse_rules(AGENT).unwrap(), &addrs()),
            ),
        ),
    ];
    for (name, text) in cases {
        let path = dir.join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(text, want, "{name} differs (UPDATE_GOLDEN=1 to rewrite)");
    }
}
