//! Guests (network namespaces behind a tap of the lab's cloudbr0) configured by the
//! real systemd-networkd from the output, reaching both gateways (root).

use super::*;

/// systemd-networkd running in a guest's namespace with these .network files
/// (tests/lib/networkd-guest.sh).
pub(crate) struct Networkd {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Networkd {
    pub(crate) fn start(guest: &common::Guest, files: &[(String, String)]) -> Networkd {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            // A veth has no permanent MAC (a virtio NIC has): match the current one.
            let text = text.replace("PermanentMACAddress=", "MACAddress=");
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let script = common::repo_path("tests/lib/networkd-guest.sh");
        let child = Command::new("ip")
            .args(["netns", "exec", &guest.ns])
            .args(["unshare", "-m", "--propagation", "private", "bash"])
            .arg(&script)
            .arg(dir.path())
            .arg("30")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("networkd.log")).unwrap())
            .spawn()
            .unwrap();
        Networkd { child, dir }
    }

    /// Stops networkd (SIGTERM to the script; SIGKILL would orphan networkd); returns its log.
    pub(crate) fn stop(&mut self) -> String {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        std::fs::read_to_string(self.dir.path().join("networkd.log")).unwrap_or_default()
    }
}

impl Drop for Networkd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A dual-stack guest behind tap vnet3, configured by systemd-networkd from `files`
/// (.network), must get its default routes and reach both gateways from its own
/// addresses, the replies coming back through the host route and permanent neighbour.
fn networkd_guest_reaches_both_gateways(what: &str, files: &[(String, String)]) {
    let lab = Lab::new(&["vnet3"]);
    let xml = fixture("dual-stack.xml");
    for op in ["prepare", "start", "started"] {
        let o = lab.hook("i-2-10-VM", op, "begin", &xml);
        assert!(o.status.success(), "{what}: {op}: {}", stderr(&o));
    }
    let guest = lab.guest("vnet3", "52:02:45:76:d2:35");
    let mut networkd = Networkd::start(&guest, files);
    let mut configured = false;
    for _ in 0..100 {
        let v4 = guest.ip(&["-4", "route", "show", "default"]);
        let v6 = guest.ip(&["-6", "route", "show", "default"]);
        let tentative = guest.ip(&["-6", "addr", "show", "dev", "eth0", "tentative"]);
        if v4.contains("via 169.254.0.1") && v6.contains("via fe80::1") && tentative.is_empty() {
            configured = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let routes = guest.ip(&["route", "show"])
        + &guest.ip(&["-6", "route", "show"])
        + &guest.ip(&["addr", "show", "dev", "eth0"]);
    let mut results = Vec::new();
    if configured {
        for (family, target, source) in [
            ("-4", "169.254.0.1", "2.57.57.30"),
            ("-6", "fe80::1%eth0", "2001:678:3a4:100::80"),
        ] {
            let mut last = String::new();
            let ok = (0..5).any(|_| {
                let o = guest.exec(&["ping", family, "-c1", "-W1", "-I", source, target]);
                last = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
                o.status.success()
            });
            results.push((target, ok, last));
        }
    }
    let link_local = guest.ip(&["-6", "addr", "show", "dev", "eth0", "scope", "link"]);
    let log = networkd.stop();
    assert!(
        configured,
        "{what}: networkd did not install both default routes; guest:\n{routes}\nnetworkd:\n{log}"
    );
    // The NIC's filter accepts IPv6 only from the EUI-64 link-local of its MAC.
    assert!(
        link_local.contains("inet6 fe80::5002:45ff:fe76:d235/64"),
        "{what}: the guest's link-local is not the EUI-64 one of its MAC:\n{link_local}"
    );
    for (target, ok, last) in results {
        assert!(
            ok,
            "{what}: the guest cannot ping {target}: {last}\nguest:\n{routes}\nnetworkd:\n{log}"
        );
    }
}

#[test]
fn a_guest_configured_by_networkd_from_the_netplan_output_reaches_both_gateways() {
    require_root!();
    let c = Config::default();
    let p = planned("dual-stack.xml", &c);
    let files = netplan_generate(&guest_config::netplan(&p, &c, &Options::default()).unwrap());
    networkd_guest_reaches_both_gateways("netplan output", &files);
}

#[test]
fn a_guest_configured_from_network_data_json_by_cloud_init_and_networkd_reaches_both_gateways() {
    require_root!();
    let c = Config::default();
    let p = planned("dual-stack.xml", &c);
    let json = guest_config::network_data_text(&p, &c).unwrap();
    let mac = "52:02:45:76:d2:35";
    // Every cloud-init that runs here (common::cloud_init).
    let versions = common::cloud_init::available();
    common::cloud_init::announce(
        "a_guest_configured_from_network_data_json_by_cloud_init_and_networkd_reaches_both_gateways",
        &versions,
    );
    for ci in versions {
        // Debian-style guests: cloud-init writes systemd-networkd files itself.
        let files = cloud_init_render(&ci, &json, "networkd", mac);
        let what = format!("network_data.json, {} networkd renderer", ci.label);
        networkd_guest_reaches_both_gateways(&what, &files);
        // Ubuntu-style guests: cloud-init writes netplan, netplan writes networkd files.
        let yaml = cloud_init_render(&ci, &json, "netplan", mac);
        assert_eq!(yaml.len(), 1, "{yaml:?}");
        let files = netplan_generate(&yaml[0].1);
        let what = format!("network_data.json, {} netplan renderer", ci.label);
        networkd_guest_reaches_both_gateways(&what, &files);
    }
}

#[test]
fn a_two_nic_guest_configured_by_networkd_sends_each_nics_traffic_out_of_that_nic() {
    require_root!();
    let lab = Lab::new(&["vnet101", "vnet102"]);
    let xml = fixture("multi-nic.xml");
    for op in ["prepare", "start", "started"] {
        let o = lab.hook("multi", op, "begin", &xml);
        assert!(o.status.success(), "{op}: {}", stderr(&o));
    }
    let guest = lab.guest("vnet101", "52:54:00:00:0a:01");
    guest.add_nic(&lab, "vnet102", "eth1", "52:54:00:00:0a:02");
    let c = Config::default();
    let p = planned("multi-nic.xml", &c);
    let files = netplan_generate(&guest_config::netplan(&p, &c, &Options::default()).unwrap());
    let mut networkd = Networkd::start(&guest, &files);
    // Ready: both NICs' tables filled, no address still in DAD.
    let ready = |g: &common::Guest| {
        let show = |args: &[&str]| {
            String::from_utf8_lossy(&g.exec(&[&["ip"], args].concat()).stdout).into_owned()
        };
        let t101 = show(&["-6", "route", "show", "table", "101"]);
        let t100 = show(&["-4", "route", "show", "table", "100"]);
        let tentative = show(&["-6", "addr", "show", "tentative"]);
        t101.contains("default via fe80::1")
            && t100.contains("default via 169.254.0.1")
            && tentative.is_empty()
    };
    let configured = (0..100).any(|_| {
        let r = ready(&guest);
        if !r {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        r
    });
    let mut out = Vec::new();
    if configured {
        for (source, target) in [
            ("198.51.100.1", "169.254.0.1"),
            ("198.51.100.2", "169.254.0.1"),
            ("2001:db8:a::1", "fe80::1"),
            ("2001:db8:a::2", "fe80::1"),
        ] {
            out.push((source, guest.ip(&["route", "get", target, "from", source])));
        }
        for (family, source, target) in [
            ("-4", "198.51.100.2", "169.254.0.1"),
            ("-6", "2001:db8:a::2", "fe80::1%eth1"),
        ] {
            let ok = (0..5).any(|_| {
                guest
                    .exec(&["ping", family, "-c1", "-W1", "-I", source, target])
                    .status
                    .success()
            });
            assert!(ok, "the second NIC cannot ping {target} from {source}");
        }
    }
    let log = networkd.stop();
    assert!(configured, "networkd did not configure both NICs:\n{log}");
    for (source, route) in out {
        let want = if source.ends_with(".1") || source.ends_with("::1") {
            "dev eth0"
        } else {
            "dev eth1"
        };
        assert!(
            route.contains(want),
            "from {source}: {route} (wanted {want})"
        );
    }
}
