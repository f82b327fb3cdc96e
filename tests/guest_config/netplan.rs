//! netplan's own generator on the output, and the hypervisor's bridge examples
//! (docs/OPERATOR-GUIDE.md) through netplan and systemd-networkd.

use super::*;
use crate::networkd::Networkd;

#[test]
fn netplan_generator_accepts_the_two_nic_dual_stack_output() {
    let c = Config::default();
    let p = planned("multi-nic.xml", &c);
    let files = netplan_generate(&guest_config::netplan(&p, &c, &Options::default()).unwrap());
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["10-netplan-nic0.network", "10-netplan-nic1.network"]
    );
    let (nic0, nic1) = (&files[0].1, &files[1].1);

    assert!(
        nic0.contains("PermanentMACAddress=52:54:00:00:0a:01"),
        "{nic0}"
    );
    assert!(
        nic1.contains("PermanentMACAddress=52:54:00:00:0a:02"),
        "{nic1}"
    );
    for (file, addrs) in [
        (nic0, ["198.51.100.1/32", "2001:db8:a::1/128"]),
        (nic1, ["198.51.100.2/32", "2001:db8:a::2/128"]),
    ] {
        let got: Vec<&str> = file
            .lines()
            .filter_map(|l| l.strip_prefix("Address="))
            .collect();
        assert_eq!(got, addrs, "{file}");
        assert!(file.contains("IPv6AcceptRA=no"), "{file}");
        assert!(
            !file.contains("DHCP=yes") && !file.contains("DHCP=ipv"),
            "{file}"
        );
    }
    // NIC 0: the main table's defaults, and its own table; NIC 1: its own table only.
    let route4 = |t: Option<&str>| {
        let mut r = vec![
            "Destination=0.0.0.0/0",
            "Gateway=169.254.0.1",
            "GatewayOnLink=true",
        ];
        r.extend(t);
        v(&r)
    };
    let route6 = |t: Option<&str>| {
        let mut r = vec!["Destination=::/0", "Gateway=fe80::1"];
        r.extend(t);
        v(&r)
    };
    assert_eq!(
        sections(nic0, "Route"),
        [
            route4(None),
            route6(None),
            route4(Some("Table=100")),
            route6(Some("Table=100"))
        ]
    );
    assert_eq!(
        sections(nic1, "Route"),
        [route4(Some("Table=101")), route6(Some("Table=101"))]
    );
    assert_eq!(
        sections(nic1, "RoutingPolicyRule"),
        [
            v(&["From=198.51.100.2/32", "Table=101"]),
            v(&["From=2001:db8:a::2/128", "Table=101"]),
            v(&["From=203.0.113.0/28", "Table=101"]),
        ]
    );
}

/// Non-comment, non-empty lines.
fn config_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn the_netplan_bridge_example_generates_the_networkd_examples() {
    let examples = common::repo_path("packaging/examples");
    let read = |n: &str| std::fs::read_to_string(examples.join(n)).unwrap();
    let files = netplan_generate(&read("cloudbr0.netplan.yaml"));
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["10-netplan-cloudbr0.netdev", "10-netplan-cloudbr0.network"]
    );
    assert_eq!(
        config_lines(&files[0].1),
        config_lines(&read("cloudbr0.netdev"))
    );
    // netplan cannot turn off duplicate address detection: the gateways come
    // from the networkd drop-in shipped beside it.
    let network = read("cloudbr0.network");
    let mut rendered = config_lines(&files[1].1);
    rendered.extend(config_lines(&read("cloudbr0.netplan-gateways.conf")));
    assert_eq!(rendered, config_lines(&network));
    for want in [
        "Address=169.254.0.1/32",
        "Address=fe80::1/64",
        "ConfigureWithoutCarrier=yes",
    ] {
        assert!(network.contains(want), "{want} missing");
    }
    assert_eq!(
        sections(&network, "Address"),
        [
            v(&["Address=169.254.0.1/32", "DuplicateAddressDetection=none"]),
            v(&["Address=fe80::1/64", "DuplicateAddressDetection=none"]),
        ]
    );
    assert!(
        sections(&network, "Network")
            .concat()
            .iter()
            .all(|l| !l.starts_with("Address=")),
        "every gateway in an [Address] section"
    );
}

/// The gateways of a bridge configured by systemd-networkd from `files`, as
/// `ip address` shows them, once both are there (or after 10 s).
fn bridge_gateways_by_networkd(files: &[(String, String)]) -> Vec<String> {
    let ns = format!("vl3-br-{}", std::process::id());
    let _ = Command::new("ip")
        .args(["netns", "del", &ns])
        .stderr(std::process::Stdio::null())
        .status();
    let host = common::Guest { ns: ns.clone() };
    assert!(Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    host.ip(&["link", "set", "lo", "up"]);
    host.ip(&["link", "add", "cloudbr0", "type", "bridge"]);
    let mut networkd = Networkd::start(&host, files);
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = host
            .ip(&["-o", "address", "show", "dev", "cloudbr0"])
            .lines()
            .filter(|l| l.contains(" 169.254.0.1/") || l.contains(" fe80::1/"))
            .map(|l| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" "))
            .collect();
        if lines.len() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = networkd.stop();
    assert_eq!(lines.len(), 2, "{lines:?}\nnetworkd:\n{log}");
    lines.sort();
    lines
}

/// Run by the real systemd-networkd on a bridge without carrier (no guest yet):
/// both gateways there at once, fe80::1 `nodad` (never tentative, so no guest
/// can make it fail duplicate address detection), 169.254.0.1 not held back by
/// networkd's IPv4 address conflict detection either.
#[test]
fn the_networkd_bridge_example_adds_the_gateways_without_dad() {
    // Root: cloud-init's networkd renderer hands its files to systemd-network
    // (chown); systemd-networkd runs in a private namespace.
    require_root!();
    let examples = common::repo_path("packaging/examples");
    let read = |n: &str| std::fs::read_to_string(examples.join(n)).unwrap();
    let lines =
        bridge_gateways_by_networkd(&[("cloudbr0.network".into(), read("cloudbr0.network"))]);
    assert!(lines[0].starts_with("inet 169.254.0.1/32 "), "{lines:?}");
    assert!(
        lines[1].starts_with("inet6 fe80::1/64 scope link nodad"),
        "{lines:?}"
    );
    assert!(!lines[1].contains("tentative"), "{lines:?}");
    // The netplan example: what netplan renders plus the drop-in, the same.
    let mut files = netplan_generate(&read("cloudbr0.netplan.yaml"));
    files.retain(|(n, _)| n.ends_with(".network"));
    files.push((
        "10-netplan-cloudbr0.network.d/virt-l3-gateways.conf".into(),
        read("cloudbr0.netplan-gateways.conf"),
    ));
    assert_eq!(bridge_gateways_by_networkd(&files), lines);
}
