//! The output against the kernel (root): the same refusals as the hook, and the
//! addresses and MACs the hook really installs.

use super::*;

fn run_guest_config(lab: &Lab, xml: &[u8], format: &str) -> std::process::Output {
    lab.virt_l3(&["guest-config", "--format", format], xml)
}

#[test]
fn guest_config_refuses_what_the_hook_refuses_with_the_same_error() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    let unfiltered = String::from_utf8(fixture("dual-stack.xml"))
        .unwrap()
        .replace("<filterref filter='virt-l3-nic-52024576d235'/>", "");
    for (what, xml) in [
        ("invalid addresses", fixture("invalid-addresses.xml")),
        ("no filterref", unfiltered.into_bytes()),
    ] {
        let hook = lab.hook("d", "prepare", "begin", &xml);
        assert!(!hook.status.success(), "{what}: the hook accepted it");
        let gc = run_guest_config(&lab, &xml, "netplan");
        assert!(!gc.status.success(), "{what}: guest-config accepted it");
        assert!(
            gc.stdout.is_empty(),
            "{what}: guest-config printed a configuration"
        );
        assert_eq!(stderr(&gc), stderr(&hook), "{what}: different refusals");
    }
}

#[test]
fn guest_addresses_and_macs_equal_what_the_hook_installs() {
    require_root!();
    let lab = Lab::new(&["vnet101", "vnet102"]);
    let xml = fixture("multi-nic.xml");
    for op in ["prepare", "start", "started"] {
        let o = lab.hook("multi", op, "begin", &xml);
        assert!(o.status.success(), "{op}: {}", stderr(&o));
    }
    // The kernel's view: address -> MAC (neighbours), host routes, routed prefixes.
    // The pinned link-locals are neighbours too: each the EUI-64 one of its MAC,
    // which the netplan output makes the guest use (ipv6-address-generation).
    let mut kernel_pairs = BTreeSet::new();
    let mut link_locals = BTreeSet::new();
    for l in lab.neighbours() {
        let w: Vec<&str> = l.split_whitespace().collect();
        let pair = (w[0].to_string(), w[4].to_string());
        if w[0].starts_with("fe80:") {
            link_locals.insert(pair);
        } else {
            kernel_pairs.insert(pair);
        }
    }
    let eui64 = |mac: &str| virt_l3::address::eui64_link_local(mac.parse().unwrap()).to_string();
    let want: BTreeSet<(String, String)> = ["52:54:00:00:0a:01", "52:54:00:00:0a:02"]
        .iter()
        .map(|m| (eui64(m), m.to_string()))
        .collect();
    assert_eq!(link_locals, want, "the kernel's link-local neighbours");
    let mut host_routes = BTreeSet::new();
    let mut prefix_routes = BTreeSet::new();
    for r in lab.routes() {
        let w: Vec<&str> = r.split_whitespace().collect();
        if w[1] == "via" {
            prefix_routes.insert((w[0].to_string(), w[2].to_string()));
        } else {
            host_routes.insert(w[0].to_string());
        }
    }

    // network_data.json: every (address, MAC) of the guest.
    let o = run_guest_config(&lab, &xml, "network-data");
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mac_of = |link: &str| {
        j["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == link)
            .map(|l| l["ethernet_mac_address"].as_str().unwrap().to_string())
            .unwrap()
    };
    let guest_pairs: BTreeSet<(String, String)> = j["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["ip_address"].as_str().unwrap().to_string(),
                mac_of(n["link"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        guest_pairs, kernel_pairs,
        "network_data.json vs the kernel's neighbours"
    );
    let guest_addrs: BTreeSet<String> = guest_pairs.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(
        guest_addrs, host_routes,
        "network_data.json vs the kernel's host routes"
    );

    // netplan, through netplan's generator: the same pairs, and the routed prefix
    // as a source rule of the NIC whose address the kernel routes it via.
    let o = run_guest_config(&lab, &xml, "netplan");
    assert!(o.status.success(), "{}", stderr(&o));
    let files = netplan_generate(&String::from_utf8(o.stdout).unwrap());
    let mut netplan_pairs = BTreeSet::new();
    let mut netplan_prefixes = BTreeSet::new();
    for (_, f) in &files {
        let mac = f
            .lines()
            .find_map(|l| l.strip_prefix("PermanentMACAddress="))
            .unwrap()
            .to_string();
        let addrs: Vec<String> = f
            .lines()
            .filter_map(|l| l.strip_prefix("Address="))
            .map(|a| a.split('/').next().unwrap().to_string())
            .collect();
        for rule in sections(f, "RoutingPolicyRule") {
            let from = rule.iter().find_map(|l| l.strip_prefix("From=")).unwrap();
            if !addrs.iter().any(|a| from.starts_with(&format!("{a}/"))) {
                // Not an address: a routed prefix, sent from one of this NIC's addresses.
                for a in &addrs {
                    netplan_prefixes.insert((from.to_string(), a.clone()));
                }
            }
        }
        for a in addrs {
            netplan_pairs.insert((a, mac.clone()));
        }
    }
    assert_eq!(
        netplan_pairs, kernel_pairs,
        "netplan vs the kernel's neighbours"
    );
    for (prefix, via) in &prefix_routes {
        assert!(
            netplan_prefixes.contains(&(prefix.clone(), via.clone())),
            "the kernel routes {prefix} via {via}; the guest has no source rule for it on that NIC"
        );
    }
    assert_eq!(prefix_routes.len(), 1, "{prefix_routes:?}");
}
