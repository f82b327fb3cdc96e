//! cloud-init's network_data.json reader on the output, with every cloud-init version
//! that runs here.

use super::*;

#[test]
fn cloud_init_reads_the_network_data_json() {
    let c = with_nameservers();
    let p = planned("dual-stack.xml", &c);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("network_data.json");
    std::fs::write(&json, guest_config::network_data_text(&p, &c).unwrap()).unwrap();
    let out = Command::new("cloud-init")
        .args([
            "devel",
            "net-convert",
            "-k",
            "network_data.json",
            "-D",
            "debian",
            "-O",
            "netplan",
        ])
        .arg("-p")
        .arg(&json)
        .arg("-d")
        .arg(dir.path().join("out"))
        .args(["-m", "eth0,52:02:45:76:d2:35"])
        .output()
        .unwrap_or_else(|e| panic!("cloud-init (scripts/deps.sh test installs it): {e}"));
    assert!(
        out.status.success(),
        "cloud-init net-convert: {}",
        stderr(&out)
    );
    let yaml =
        std::fs::read_to_string(dir.path().join("out/etc/netplan/50-cloud-init.yaml")).unwrap();
    for want in [
        "macaddress: 52:02:45:76:d2:35",
        "- 2.57.57.30/32",
        "- 2001:678:3a4:100::80/128",
        "accept-ra: false",
        "2620:fe::fe",
        "9.9.9.9",
    ] {
        assert!(
            yaml.contains(want),
            "{want:?} missing from cloud-init's rendering:\n{yaml}"
        );
    }
    assert!(
        !yaml.contains("8000"),
        "a routed prefix became a guest setting:\n{yaml}"
    );
    // The default routes: cloud_init_renders_usable_default_routes_with_every_version.
}

/// The routes of a netplan rendering, each as its `key: value` lines, and the
/// interface-level `gatewayN: ...` lines.
fn netplan_routes(yaml: &str) -> (Vec<BTreeSet<String>>, Vec<String>) {
    let mut routes: Vec<BTreeSet<String>> = Vec::new();
    let mut gateways = Vec::new();
    let mut in_routes = false;
    for line in yaml.lines() {
        let t = line.trim();
        if t.starts_with("gateway4:") || t.starts_with("gateway6:") {
            gateways.push(t.to_string());
        }
        if t == "routes:" {
            in_routes = true;
            continue;
        }
        if let Some(rest) = t.strip_prefix("- ").filter(|_| in_routes) {
            routes.push(BTreeSet::from([rest.trim().to_string()]));
        } else if in_routes && line.starts_with("                ") {
            if let Some(r) = routes.last_mut() {
                r.insert(t.to_string());
            }
        } else {
            in_routes = false;
        }
    }
    (routes, gateways)
}

/// The `[Route]` sections of networkd files, each as its lines.
fn networkd_routes(files: &[(String, String)]) -> Vec<BTreeSet<String>> {
    let mut out = Vec::new();
    for (_, text) in files {
        for section in text.split("[Route]").skip(1) {
            let body = section.split("\n[").next().unwrap_or("");
            out.push(
                body.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect(),
            );
        }
    }
    out
}

/// Every cloud-init version that runs here (Debian's packaged one, and the
/// releases `scripts/deps.sh cloud-init` unpacked), both renderers: the default
/// routes via 169.254.0.1 and fe80::1 come out on-link from the versions that
/// mark a network's `gateway` on-link (netplan renderer from 23.1, networkd from
/// 24.2); older ones write them plain, with the host route to 169.254.0.1
/// virt-l3 adds for them. Never a default route in a network's `routes`.
#[test]
fn cloud_init_renders_usable_default_routes_with_every_version() {
    // Root: cloud-init's networkd renderer hands its files to systemd-network
    // (chown); systemd-networkd runs in a private namespace.
    require_root!();
    let c = Config::default();
    let p = planned("dual-stack.xml", &c);
    let json = guest_config::network_data_text(&p, &c).unwrap();
    let versions = common::cloud_init::available();
    assert!(
        !versions.is_empty(),
        "no cloud-init (scripts/deps.sh test installs it)"
    );
    common::cloud_init::announce(
        "cloud_init_renders_usable_default_routes_with_every_version",
        &versions,
    );
    let mac = "52:02:45:76:d2:35";
    let set = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<BTreeSet<_>>();
    for ci in &versions {
        eprintln!("checking {}", ci.label);
        let yaml = cloud_init_render(ci, &json, "netplan", mac);
        assert_eq!(yaml.len(), 1, "{}: {yaml:?}", ci.label);
        let (routes, gateways) = netplan_routes(&yaml[0].1);
        let what = format!("{} netplan renderer:\n{}", ci.label, yaml[0].1);
        assert!(
            routes.contains(&set(&["to: 169.254.0.1/32", "via: 0.0.0.0"])),
            "{what}"
        );
        if ci.marks_gateway_on_link("netplan") {
            for g in ["169.254.0.1", "fe80::1"] {
                let want = set(&["on-link: true", "to: default", &format!("via: {g}")]);
                assert!(routes.contains(&want), "{what}");
            }
            assert!(gateways.is_empty(), "{what}");
        } else {
            assert_eq!(
                gateways,
                ["gateway4: 169.254.0.1", "gateway6: fe80::1"],
                "{what}"
            );
        }
        // The host route, and the two default routes when they are route entries.
        let expected = if ci.marks_gateway_on_link("netplan") {
            3
        } else {
            1
        };
        assert_eq!(routes.len(), expected, "{what}");

        let files = cloud_init_render(ci, &json, "networkd", mac);
        let routes = networkd_routes(&files);
        let what = format!("{} networkd renderer: {files:?}", ci.label);
        assert!(
            routes.contains(&set(&["Destination=169.254.0.1/32", "Gateway=0.0.0.0"])),
            "{what}"
        );
        for g in ["169.254.0.1", "fe80::1"] {
            let mut want = vec![format!("Gateway={g}")];
            if ci.marks_gateway_on_link("networkd") {
                want.push("GatewayOnLink=yes".into());
            }
            let want: BTreeSet<String> = want.into_iter().collect();
            assert!(routes.contains(&want), "{what}");
        }
        assert_eq!(routes.len(), 3, "{what}");
    }
}

/// The coverage message names every version run and each wanted release not
/// found (the optional extras scripts/deps.sh could not fetch).
#[test]
fn the_cloud_init_coverage_names_what_ran_and_what_was_skipped() {
    use common::cloud_init::{coverage, CloudInit};
    let packaged = CloudInit {
        source: None,
        version: (22, 4),
        label: "packaged cloud-init 22.4.2".into(),
    };
    let source = CloudInit {
        source: Some("/c/23.1".into()),
        version: (23, 1),
        label: "cloud-init 23.1 (/c/23.1)".into(),
    };
    let wanted: Vec<String> = ["23.1", "24.2", "26.2"].map(String::from).to_vec();
    let text = coverage(&[packaged.clone(), source], &wanted);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "cloud-init versions covered: packaged cloud-init 22.4.2, cloud-init 23.1 (/c/23.1)"
    );
    assert!(
        lines[1].starts_with("cloud-init versions SKIPPED"),
        "{text}"
    );
    assert!(lines[1].ends_with(": 24.2, 26.2"), "{text}");
    assert_eq!(lines.len(), 2);
    // Everything wanted was found: no skip line.
    assert_eq!(coverage(&[packaged], &[]).lines().count(), 1);
}
