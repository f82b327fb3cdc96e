//! The routed bridges' items: `bridge` (exists, is a bridge, is up), `bridge-gateways`,
//! `bridge-ports` and `bridge-mac`.

use super::facts::{Addr, KernelFacts, Link};
use super::{fail, ok, warn, CheckOptions, Item};
use crate::config::Config;
use crate::kernel::bridges::gateway_prefix;

/// Why a routed bridge must hold guest taps only (after the ports found).
const FOREIGN_PORTS_WHY: &str = "A routed bridge must not reach the fabric at layer 2: guests would see each other's and the fabric's broadcasts, and the gateway addresses would clash with other hypervisors'.";

/// After the `nomaster` commands of the `bridge-ports` fix.
const FOREIGN_PORTS_FIX: &str = "; connect the uplink to the fabric as a routed interface of its own (and remove it from the bridge in the host's network configuration).";

/// The items of routed bridge `b`: one `bridge` failure when it is missing, not a bridge
/// or down; else `bridge` ok, `bridge-gateways`, `bridge-ports` and `bridge-mac`.
pub(super) fn bridge_items(
    config: &Config,
    opts: &CheckOptions,
    facts: &KernelFacts,
    b: &str,
) -> Vec<Item> {
    let Some(link) = facts.link(b) else {
        return vec![absent(config, b)];
    };
    if link.kind.as_deref() != Some("bridge") {
        return vec![not_a_bridge(link, b)];
    }
    if !link.up {
        return vec![down(config, facts, link, b)];
    }
    vec![
        ok(
            "bridge",
            Some(b),
            format!("{b} exists, is a bridge and is up."),
        ),
        gateways_item(config, facts, link, b),
        ports_item(facts, link, b),
        mac_item(config, opts, link, b),
    ]
}

/// One `bridge` item per pattern of `bridges` that matches no bridge yet (not a
/// failure: its bridges come and go).
pub(super) fn idle_patterns(config: &Config, routed: &[String]) -> Vec<Item> {
    config
        .bridges
        .iter()
        .filter(|p| crate::plan::bridge_names::is_pattern(p))
        .filter(|p| {
            !routed
                .iter()
                .any(|b| crate::plan::bridge_names::glob_matches(p, b))
        })
        .map(|p| {
            ok(
                "bridge",
                Some(p),
                format!(
                    "No bridge matches the pattern {p} yet; virt-l3 routes on those created later."
                ),
            )
        })
        .collect()
}

/// `ip address add` for a gateway: an IPv6 gateway without duplicate address
/// detection, which a guest could otherwise fail (it answers for fe80::1 while the
/// address is tentative: IPv6 breaks for every guest on the bridge).
fn add_gateway(g: &str, b: &str) -> String {
    if g.contains(':') {
        format!("ip address add {g} dev {b} nodad")
    } else {
        format!("ip address add {g} dev {b}")
    }
}

fn absent(config: &Config, b: &str) -> Item {
    let add_gateways = config
        .gateways
        .iter()
        .map(|g| add_gateway(&format!("{g}/{}", gateway_prefix(*g)), b))
        .collect::<Vec<_>>()
        .join("; ");
    fail(
        "bridge",
        Some(b),
        format!("The routed bridge {b} does not exist."),
        format!(
            "Create it in the host's network configuration (ifupdown, netplan or systemd-networkd); by hand: \
             ip link add {b} type bridge; ip link set {b} up; {add_gateways}."
        ),
    )
}

fn not_a_bridge(link: &Link, b: &str) -> Item {
    fail(
        "bridge",
        Some(b),
        format!(
            "{b} exists but is not a bridge (kind {}).",
            link.kind.as_deref().unwrap_or("none: a physical interface")
        ),
        format!("Name a bridge in `bridges` of virt-l3's configuration, or make {b} a bridge."),
    )
}

fn down(config: &Config, facts: &KernelFacts, link: &Link, b: &str) -> Item {
    // The kernel drops a link's IPv6 addresses when it goes down: say so in the fix.
    let missing: Vec<String> = missing_gateways(config, facts, link)
        .into_iter()
        .map(|g| add_gateway(&g, b))
        .collect();
    let mut fix = format!("ip link set {b} up");
    if !missing.is_empty() {
        fix.push_str(&format!(
            "; then put back the gateway addresses the kernel removed when it went down: {}",
            missing.join("; ")
        ));
    }
    fix.push_str(". Then run `virt-l3 reconcile` to restore the routes of running VMs.");
    fail(
        "bridge",
        Some(b),
        format!("The routed bridge {b} is down: guests on it are cut off."),
        fix,
    )
}

/// `bridge-gateways`: every configured gateway on the bridge, with its prefix length
/// and not failed duplicate address detection.
fn gateways_item(config: &Config, facts: &KernelFacts, link: &Link, b: &str) -> Item {
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for g in &config.gateways {
        let want = gateway_prefix(*g);
        let on: Vec<&Addr> = facts
            .addresses
            .iter()
            .filter(|a| a.index == link.index && a.net.addr() == *g)
            .collect();
        match on.first() {
            None => {
                problems.push(format!("{g}/{want} is missing"));
                fixes.push(add_gateway(&format!("{g}/{want}"), b));
            }
            Some(a) if a.net.prefix_len() != want => {
                problems.push(format!("{} has the wrong prefix length", a.net));
                fixes.push(format!(
                    "ip address del {} dev {b}; {}",
                    a.net,
                    add_gateway(&format!("{g}/{want}"), b)
                ));
            }
            Some(a) if a.dad_failed => {
                problems.push(format!(
                    "{} failed duplicate address detection (something on this bridge's layer 2 answered for it: an uplink in the bridge, or a guest)",
                    a.net
                ));
                fixes.push(format!(
                    "take the other machine off the bridge, then: ip address del {g}/{want} dev {b}; ip address add {g}/{want} dev {b} nodad"
                ));
            }
            Some(a) if a.tentative => {
                problems.push(format!(
                    "{} is tentative (duplicate address detection is running: any guest can make it fail)",
                    a.net
                ));
                fixes.push(format!(
                    "ip address del {g}/{want} dev {b}; ip address add {g}/{want} dev {b} nodad"
                ));
            }
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        let gateways: Vec<String> = config
            .gateways
            .iter()
            .map(|g| format!("{g}/{}", gateway_prefix(*g)))
            .collect();
        return ok(
            "bridge-gateways",
            Some(b),
            format!("{b} carries the gateways {}.", gateways.join(", ")),
        );
    }
    fail(
        "bridge-gateways",
        Some(b),
        format!("Guests' gateway addresses on {b}: {}.", problems.join("; ")),
        format!(
            "{} (and the same in the host's network configuration, so that it survives a reboot).",
            fixes.join("; ")
        ),
    )
}

/// `bridge-ports`: only guests' taps (tun driver, libvirt's vnetN).
fn ports_item(facts: &KernelFacts, link: &Link, b: &str) -> Item {
    let ports: Vec<&Link> = facts
        .links
        .iter()
        .filter(|l| l.master == Some(link.index))
        .collect();
    let foreign: Vec<&&Link> = ports
        .iter()
        .filter(|l| l.kind.as_deref() != Some("tun"))
        .collect();
    if foreign.is_empty() {
        return ok(
            "bridge-ports",
            Some(b),
            format!(
                "{b} has {} port(s), all guest taps (tun/tap devices).",
                ports.len()
            ),
        );
    }
    let names: Vec<String> = foreign
        .iter()
        .map(|l| {
            format!(
                "{} ({})",
                l.name,
                l.kind.as_deref().unwrap_or("physical interface")
            )
        })
        .collect();
    let cmds: Vec<String> = foreign
        .iter()
        .map(|l| format!("ip link set {} nomaster", l.name))
        .collect();
    fail(
        "bridge-ports",
        Some(b),
        format!(
            "{b} has ports that are not guest taps: {}. {FOREIGN_PORTS_WHY}",
            names.join(", ")
        ),
        format!("{}{FOREIGN_PORTS_FIX}", cmds.join("; ")),
    )
}

/// `bridge-mac`: the configured gateway_mac, else a warning (fixed or following its ports).
fn mac_item(config: &Config, opts: &CheckOptions, link: &Link, b: &str) -> Item {
    let assign = std::fs::read_to_string(
        opts.sysfs
            .join("class/net")
            .join(b)
            .join("addr_assign_type"),
    )
    .map(|s| s.trim().to_string())
    .unwrap_or_default();
    let pinned = assign == "3";
    let current = link
        .mac
        .map(|m| m.to_string())
        .unwrap_or_else(|| "none".into());
    match config.gateway_mac_for(b) {
        Some(want) if link.mac == Some(want) => ok(
            "bridge-mac",
            Some(b),
            format!("{b} has the configured gateway_mac {want}."),
        ),
        Some(want) => fail(
            "bridge-mac",
            Some(b),
            format!("{b} has MAC {current}, not the configured gateway_mac {want}: guests migrated here keep the old gateway MAC in their neighbour cache."),
            format!("ip link set {b} address {want} (virt-l3 also sets it when it next routes a VM), and set the same MAC in the host's bridge configuration."),
        ),
        None if pinned => warn(
            "bridge-mac",
            Some(b),
            format!("{b}'s MAC {current} is fixed, but gateway_mac is not set: unless every hypervisor uses the same MAC, a live-migrated guest keeps a stale gateway MAC until it re-resolves it."),
            format!("Set gateway_mac = \"{current}\" (the same value on every hypervisor) in virt-l3's configuration."),
        ),
        None => warn(
            "bridge-mac",
            Some(b),
            format!("{b}'s MAC {current} follows its ports (never set) and gateway_mac is not set: virt-l3 pins it when it first routes a VM, but it differs between hypervisors."),
            format!("Set gateway_mac = \"02:00:00:00:00:01\" (any unicast MAC, the same on every hypervisor) in virt-l3's configuration, or pin it: ip link set {b} address {current}."),
        ),
    }
}

/// The configured gateways missing on `link`, as `ADDRESS/PREFIX`.
fn missing_gateways(config: &Config, facts: &KernelFacts, link: &Link) -> Vec<String> {
    config
        .gateways
        .iter()
        .filter(|g| {
            !facts
                .addresses
                .iter()
                .any(|a| a.index == link.index && a.net.addr() == **g)
        })
        .map(|g| format!("{g}/{}", gateway_prefix(*g)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::check::Status;

    fn link(index: u32, name: &str, kind: Option<&str>, master: Option<u32>) -> Link {
        Link {
            index,
            name: name.to_string(),
            up: true,
            kind: kind.map(str::to_string),
            master,
            mac: None,
        }
    }

    fn addr(index: u32, net: &str) -> Addr {
        Addr {
            index,
            net: net.parse().unwrap(),
            dad_failed: false,
            tentative: false,
        }
    }

    fn facts(links: Vec<Link>, addresses: Vec<Addr>) -> KernelFacts {
        KernelFacts {
            links,
            addresses,
            ndp_proxied: HashSet::new(),
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(gateway_prefix("169.254.0.1".parse().unwrap()), 32);
        assert_eq!(gateway_prefix("fe80::1".parse().unwrap()), 64);
        assert_eq!(gateway_prefix("2001:db8::1".parse().unwrap()), 128);
    }

    #[test]
    fn a_missing_bridge_is_one_failure_with_the_commands() {
        let items = bridge_items(
            &Config::default(),
            &CheckOptions::default(),
            &facts(vec![], vec![]),
            "cloudbr0",
        );
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].status, Status::Fail);
        assert_eq!(
            items[0].fix.as_deref(),
            Some(
                "Create it in the host's network configuration (ifupdown, netplan or systemd-networkd); by hand: \
                 ip link add cloudbr0 type bridge; ip link set cloudbr0 up; \
                 ip address add 169.254.0.1/32 dev cloudbr0; ip address add fe80::1/64 dev cloudbr0 nodad."
            )
        );
    }

    #[test]
    fn a_down_bridge_names_the_gateways_to_put_back() {
        let mut br = link(2, "cloudbr0", Some("bridge"), None);
        br.up = false;
        let f = facts(vec![br], vec![addr(2, "169.254.0.1/32")]);
        let items = bridge_items(&Config::default(), &CheckOptions::default(), &f, "cloudbr0");
        assert_eq!(
            items[0].fix.as_deref(),
            Some(
                "ip link set cloudbr0 up; then put back the gateway addresses the kernel removed when it went down: \
                 ip address add fe80::1/64 dev cloudbr0 nodad. Then run `virt-l3 reconcile` to restore the routes of running VMs."
            )
        );
    }

    #[test]
    fn a_healthy_bridge_and_a_foreign_port() {
        let f = facts(
            vec![
                link(2, "cloudbr0", Some("bridge"), None),
                link(3, "vnet0", Some("tun"), Some(2)),
                link(4, "eth1", None, Some(2)),
            ],
            vec![addr(2, "169.254.0.1/32"), addr(2, "fe80::1/64")],
        );
        let items = bridge_items(&Config::default(), &CheckOptions::default(), &f, "cloudbr0");
        let ids: Vec<(&str, Status)> = items.iter().map(|i| (i.id, i.status)).collect();
        assert_eq!(
            ids,
            [
                ("bridge", Status::Ok),
                ("bridge-gateways", Status::Ok),
                ("bridge-ports", Status::Fail),
                ("bridge-mac", Status::Warn),
            ]
        );
        assert_eq!(
            items[1].summary,
            "cloudbr0 carries the gateways 169.254.0.1/32, fe80::1/64."
        );
        assert_eq!(
            items[2].fix.as_deref(),
            Some(
                "ip link set eth1 nomaster; connect the uplink to the fabric as a routed interface of its own \
                 (and remove it from the bridge in the host's network configuration)."
            )
        );
    }

    #[test]
    fn a_tentative_or_dadfailed_gateway_fails_with_a_nodad_fix() {
        for (tentative, dad_failed, word) in [
            (true, false, "tentative"),
            (false, true, "failed duplicate"),
        ] {
            let mut fe80 = addr(2, "fe80::1/64");
            fe80.tentative = tentative;
            fe80.dad_failed = dad_failed;
            let f = facts(
                vec![link(2, "cloudbr0", Some("bridge"), None)],
                vec![addr(2, "169.254.0.1/32"), fe80],
            );
            let items = bridge_items(&Config::default(), &CheckOptions::default(), &f, "cloudbr0");
            let gw = items.iter().find(|i| i.id == "bridge-gateways").unwrap();
            assert_eq!(gw.status, Status::Fail);
            assert!(gw.summary.contains(word), "{}", gw.summary);
            let fix = gw.fix.as_deref().unwrap();
            assert!(
                fix.contains("ip address add fe80::1/64 dev cloudbr0 nodad"),
                "{fix}"
            );
        }
    }

    #[test]
    fn a_missing_ipv6_gateway_is_added_without_dad_and_ipv4_as_is() {
        let f = facts(vec![link(2, "cloudbr0", Some("bridge"), None)], vec![]);
        let items = bridge_items(&Config::default(), &CheckOptions::default(), &f, "cloudbr0");
        let gw = items.iter().find(|i| i.id == "bridge-gateways").unwrap();
        let fix = gw.fix.as_deref().unwrap();
        assert!(
            fix.contains("ip address add 169.254.0.1/32 dev cloudbr0;"),
            "{fix}"
        );
        assert!(
            fix.contains("ip address add fe80::1/64 dev cloudbr0 nodad"),
            "{fix}"
        );
    }
}
