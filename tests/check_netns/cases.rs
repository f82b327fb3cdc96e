//! The cases of `check_reports_exactly_the_broken_item`: a prepared host, then one
//! misconfiguration each, with the items that must fail, their fix and summary.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::common::{fixture, run, stderr};
use crate::host::{example_bird_conf, frr_vtysh, set_running, Host};

pub struct Case {
    pub name: &'static str,
    pub gateway_mac: bool,
    pub routed: bool,
    pub breakage: fn(&mut Host),
    /// The ids that must fail, and nothing else.
    pub fails: &'static [&'static str],
    /// Text the failing item's fix must contain.
    pub fix: &'static str,
    /// Text the failing item's summary must contain.
    pub summary: &'static str,
}

fn nothing(_: &mut Host) {}

/// Every case, grouped by topic.
pub fn cases() -> Vec<Case> {
    [
        bridge_cases(),
        forwarding_cases(),
        proxy_and_redirect_cases(),
        libvirt_cases(),
        routing_daemon_cases(),
        state_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The prepared host, then the bridge, its gateways, ports and MAC.
fn bridge_cases() -> Vec<Case> {
    vec![
        Case {
            name: "prepared host",
            gateway_mac: true,
            routed: false,
            breakage: nothing,
            fails: &[],
            fix: "",
            summary: "",
        },
        Case {
            name: "prepared host with a routed VM",
            gateway_mac: true,
            routed: true,
            breakage: nothing,
            fails: &[],
            fix: "",
            summary: "",
        },
        Case {
            name: "no gateway_mac: a warning only",
            gateway_mac: false,
            routed: true,
            breakage: nothing,
            fails: &[],
            fix: "",
            summary: "",
        },
        Case {
            name: "bridge missing",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                h.lab.ip(&["link", "del", "cloudbr0"]);
            },
            fails: &["bridge"],
            fix: "ip link add cloudbr0 type bridge",
            summary: "",
        },
        Case {
            name: "bridge down",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                h.lab.ip(&["link", "set", "cloudbr0", "down"]);
            },
            fails: &["bridge"],
            // The kernel dropped fe80::1 with the link: the fix says to put it back.
            fix: "ip address add fe80::1/64 dev cloudbr0 nodad",
            summary: "is down",
        },
        Case {
            name: "gateway address missing",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                h.lab
                    .ip(&["addr", "del", "169.254.0.1/32", "dev", "cloudbr0"]);
            },
            fails: &["bridge-gateways"],
            fix: "ip address add 169.254.0.1/32 dev cloudbr0",
            summary: "",
        },
        Case {
            name: "gateway with a subnet prefix",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                h.lab
                    .ip(&["addr", "del", "169.254.0.1/32", "dev", "cloudbr0"]);
                h.lab
                    .ip(&["addr", "add", "169.254.0.1/24", "dev", "cloudbr0"]);
            },
            fails: &["bridge-gateways"],
            fix: "ip address del 169.254.0.1/24 dev cloudbr0",
            summary: "",
        },
        Case {
            name: "uplink enslaved to the bridge",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                h.lab.ip(&[
                    "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p",
                ]);
                h.lab
                    .ip(&["link", "set", "eth1", "master", "cloudbr0", "up"]);
            },
            fails: &["bridge-ports"],
            fix: "ip link set eth1 nomaster",
            summary: "eth1 (veth)",
        },
        Case {
            name: "bridge MAC is not gateway_mac",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                h.lab
                    .ip(&["link", "set", "cloudbr0", "address", "02:00:00:00:00:99"]);
            },
            fails: &["bridge-mac"],
            fix: "ip link set cloudbr0 address 02:00:00:00:00:01",
            summary: "",
        },
    ]
}

/// Forwarding, rp_filter, router advertisements and proxy ARP.
fn forwarding_cases() -> Vec<Case> {
    vec![
        Case {
            name: "IPv4 forwarding off",
            gateway_mac: true,
            routed: false,
            breakage: |h| h.sysctl("net.ipv4.ip_forward=0"),
            fails: &["forwarding-ipv4"],
            fix: "sysctl -w net.ipv4.ip_forward=1",
            summary: "",
        },
        Case {
            name: "IPv4 forwarding off on the bridge only",
            gateway_mac: true,
            routed: false,
            breakage: |h| h.sysctl("net.ipv4.conf.cloudbr0.forwarding=0"),
            fails: &["forwarding-ipv4"],
            fix: "net.ipv4.conf.cloudbr0.forwarding=1",
            summary: "",
        },
        Case {
            name: "IPv4 forwarding off on the uplink only",
            gateway_mac: true,
            routed: false,
            breakage: |h| h.sysctl("net.ipv4.conf.uplink0.forwarding=0"),
            fails: &["forwarding-ipv4"],
            fix: "net.ipv4.conf.uplink0.forwarding=1",
            summary: "net.ipv4.conf.uplink0.forwarding = 0",
        },
        Case {
            name: "IPv6 forwarding off",
            gateway_mac: true,
            routed: false,
            breakage: |h| h.sysctl("net.ipv6.conf.all.forwarding=0"),
            fails: &["forwarding-ipv6"],
            fix: "sysctl -w net.ipv6.conf.all.forwarding=1",
            summary: "",
        },
        Case {
            name: "strict rp_filter everywhere",
            gateway_mac: true,
            routed: false,
            breakage: |h| h.sysctl("net.ipv4.conf.all.rp_filter=1"),
            fails: &["rp_filter"],
            fix: "net.ipv4.conf.all.rp_filter=2",
            summary: "",
        },
        Case {
            name: "strict rp_filter on the uplink",
            gateway_mac: true,
            routed: false,
            breakage: |h| h.sysctl("net.ipv4.conf.uplink0.rp_filter=1"),
            fails: &["rp_filter"],
            fix: "net.ipv4.conf.uplink0.rp_filter=2",
            summary: "",
        },
        Case {
            name: "bridge accepts router advertisements",
            gateway_mac: true,
            routed: false,
            breakage: |h| h.sysctl("net.ipv6.conf.cloudbr0.accept_ra=2"),
            fails: &["accept_ra"],
            fix: "net.ipv6.conf.cloudbr0.accept_ra=0",
            summary: "",
        },
        Case {
            name: "proxy ARP on",
            gateway_mac: true,
            routed: false,
            breakage: |h| h.sysctl("net.ipv4.conf.all.proxy_arp=1"),
            fails: &["proxy_arp"],
            fix: "net.ipv4.conf.all.proxy_arp=0",
            summary: "",
        },
    ]
}

/// NDP proxying, a --proc-sys tree, ICMP redirects and CloudStack's cloud0.
fn proxy_and_redirect_cases() -> Vec<Case> {
    vec![
        Case {
            name: "NDP proxy entries on the uplink",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                h.sysctl("net.ipv6.conf.uplink0.proxy_ndp=1");
                h.lab.ip(&[
                    "-6",
                    "neigh",
                    "add",
                    "proxy",
                    "2001:db8::5",
                    "dev",
                    "uplink0",
                ]);
            },
            fails: &["proxy_ndp"],
            fix: "net.ipv6.conf.uplink0.proxy_ndp=0",
            summary: "uplink0 hold proxy entries",
        },
        Case {
            name: "NDP proxying on without proxy entries: a warning only",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                h.sysctl("net.ipv6.conf.all.proxy_ndp=1");
                // An ordinary neighbour is not a proxy entry.
                h.lab.ip(&[
                    "-6",
                    "neigh",
                    "add",
                    "2001:db8::9",
                    "lladdr",
                    "02:00:00:00:00:09",
                    "dev",
                    "uplink0",
                ]);
            },
            fails: &[],
            fix: "",
            summary: "",
        },
        Case {
            name: "sysctls read from a --proc-sys tree instead",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                // The namespace is fine; the tree says IPv4 forwarding is off.
                for (key, value) in [
                    ("net/ipv4/ip_forward", "0"),
                    ("net/ipv4/conf/cloudbr0/forwarding", "1"),
                    ("net/ipv6/conf/all/forwarding", "1"),
                    ("net/ipv6/conf/cloudbr0/forwarding", "1"),
                    ("net/ipv4/conf/all/send_redirects", "0"),
                    ("net/ipv4/conf/cloudbr0/send_redirects", "0"),
                ] {
                    let p = h.path("proc-sys").join(key);
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(p, format!("{value}\n")).unwrap();
                }
                let tree = h.path("proc-sys").display().to_string();
                h.extra.extend(["--proc-sys".to_string(), tree]);
            },
            fails: &["forwarding-ipv4"],
            fix: "sysctl -w net.ipv4.ip_forward=1",
            summary: "",
        },
        Case {
            name: "ICMP redirects on",
            gateway_mac: true,
            routed: false,
            breakage: |h| h.sysctl("net.ipv4.conf.all.send_redirects=1"),
            fails: &["send_redirects"],
            fix: "net.ipv4.conf.all.send_redirects=0",
            summary: "",
        },
        Case {
            name: "CloudStack's cloud0 holds 169.254.0.1",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                h.lab.ip(&["link", "add", "cloud0", "type", "bridge"]);
                h.lab.ip(&["link", "set", "cloud0", "up"]);
                h.lab
                    .ip(&["addr", "add", "169.254.0.1/16", "dev", "cloud0"]);
            },
            fails: &["control-network"],
            fix: "control.cidr",
            summary: "169.254.0.1/16 on cloud0",
        },
    ]
}

/// libvirt's hook, version, nwfilter driver and ebtables.
fn libvirt_cases() -> Vec<Case> {
    vec![
        Case {
            name: "hook installed as hooks/qemu (libvirt older than 6.5 style)",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                std::fs::remove_file(h.path("hooks/qemu.d/virt-l3")).unwrap();
                std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_virt-l3"), h.path("hooks/qemu"))
                    .unwrap();
            },
            fails: &[],
            fix: "",
            summary: "",
        },
        Case {
            name: "hook missing",
            gateway_mac: true,
            routed: false,
            breakage: |h| std::fs::remove_file(h.path("hooks/qemu.d/virt-l3")).unwrap(),
            fails: &["hook"],
            fix: "ln -sfn /usr/bin/virt-l3",
            summary: "",
        },
        Case {
            name: "hook not executable",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                let p = h.path("hooks/qemu.d/virt-l3");
                std::fs::remove_file(&p).unwrap();
                std::fs::copy(env!("CARGO_BIN_EXE_virt-l3"), &p).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            },
            fails: &["hook"],
            fix: "ln -sfn /usr/bin/virt-l3",
            summary: "not executable",
        },
        Case {
            name: "libvirt too old for qemu.d",
            gateway_mac: true,
            routed: false,
            breakage: |h| h.script("libvirtd", "echo 'libvirtd (libvirt) 6.0.0'"),
            fails: &["libvirt"],
            fix: "Upgrade libvirt",
            summary: "6.0.0 is older than 6.5",
        },
        Case {
            name: "nwfilter driver unavailable",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                h.script("virsh", "echo 'error: this function is not supported by the connection driver: virConnectListAllNWFilters' >&2; exit 1")
            },
            fails: &["nwfilter"],
            fix: "virtnwfilterd",
            summary: "",
        },
        Case {
            name: "ebtables missing",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                let p = h.path("bin/ebtables-missing").display().to_string();
                h.extra.extend(["--ebtables".to_string(), p]);
            },
            fails: &["ebtables"],
            fix: "apt-get install ebtables",
            summary: "",
        },
    ]
}

/// BIRD and FRR.
fn routing_daemon_cases() -> Vec<Case> {
    vec![
        Case {
            name: "no routing daemon",
            gateway_mac: true,
            routed: false,
            breakage: |h| h.stop_bird(),
            fails: &["routing-daemon"],
            fix: "systemctl enable --now bird",
            summary: "",
        },
        Case {
            name: "BIRD does not redistribute virt-l3's routes",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                // The running BIRD is reconfigured without the protocol-52 import.
                let t = example_bird_conf(h.dir())
                    .replace("import where krt_source = VIRT_L3_PROTO;", "import none;");
                h.bird_config(&t);
                let o = h.birdc(&["configure"]);
                assert!(
                    String::from_utf8_lossy(&o.stdout).contains("Reconfigured"),
                    "{o:?}"
                );
            },
            fails: &["routing-config"],
            fix: "krt_source = 52",
            summary: "krt_source = 52 for ipv4 and ipv6",
        },
        Case {
            name: "FRR running with the shipped example",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                h.stop_bird();
                frr_vtysh(h, "cloudbr0");
            },
            fails: &[],
            fix: "",
            summary: "",
        },
        Case {
            name: "FRR redistributing another interface",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                h.stop_bird();
                frr_vtysh(h, "eth0");
            },
            fails: &["routing-config"],
            fix: "match interface cloudbr0",
            summary: "",
        },
    ]
}

/// The routed VM's entries, records, stray routes and virt-l3's nftables tables.
fn state_cases() -> Vec<Case> {
    vec![
        Case {
            name: "a route of the routed VM deleted",
            gateway_mac: true,
            routed: true,
            breakage: |h| {
                h.lab.ip(&[
                    "route",
                    "del",
                    "2.57.57.30",
                    "dev",
                    "cloudbr0",
                    "proto",
                    "52",
                ]);
            },
            fails: &["state"],
            fix: "virt-l3 reconcile",
            summary: "missing route 2.57.57.30",
        },
        Case {
            name: "a record of a domain libvirt no longer runs",
            gateway_mac: true,
            routed: true,
            breakage: |h| std::fs::remove_file(h.lab.status_dir().join("i-2-10-VM.xml")).unwrap(),
            fails: &["state"],
            fix: "virt-l3 reconcile",
            summary: "prune record",
        },
        Case {
            name: "a running domain the hook never routed",
            gateway_mac: true,
            routed: false,
            breakage: |h| set_running(h, "running", "booted"),
            fails: &["state"],
            fix: "virt-l3 reconcile",
            summary: "adopt running domain",
        },
        Case {
            name: "a live-migrated domain left at standby (no watch)",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                for op in ["migrate", "prepare", "start", "started"] {
                    let o = h
                        .lab
                        .hook("i-2-10-VM", op, "begin", &fixture("dual-stack.xml"));
                    assert!(o.status.success(), "{op}: {}", stderr(&o));
                }
                set_running(h, "running", "migrated");
            },
            fails: &["state"],
            fix: "promotes live-migrated VMs",
            summary: "promote metric 4000 -> 1500",
        },
        Case {
            name: "a protocol-52 route of no domain",
            gateway_mac: true,
            routed: true,
            breakage: |h| {
                h.lab.ip(&[
                    "route",
                    "add",
                    "198.51.100.7",
                    "dev",
                    "cloudbr0",
                    "proto",
                    "52",
                ]);
            },
            fails: &["state"],
            fix: "virt-l3 reconcile",
            summary: "stray protocol-52 route 198.51.100.7/32",
        },
        Case {
            name: "virt-l3's nftables tables missing",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                let o = h.lab.virt_l3(&["firewall", "remove"], b"");
                assert!(o.status.success(), "{}", stderr(&o));
            },
            fails: &["firewall"],
            fix: "virt-l3 firewall install",
            summary: "missing or stale",
        },
        Case {
            name: "virt-l3's inet table flushed",
            gateway_mac: true,
            routed: true,
            breakage: |h| {
                run(Command::new("ip").args([
                    "netns", "exec", &h.lab.ns, "nft", "flush", "table", "inet", "virt_l3",
                ]));
            },
            fails: &["firewall"],
            fix: "systemctl restart virt-l3-reconcile",
            summary: "missing or stale",
        },
        Case {
            name: "tables made for another host (a new protected network)",
            gateway_mac: true,
            routed: false,
            breakage: |h| {
                h.lab.ip(&["addr", "add", "10.9.0.1/24", "dev", "uplink0"]);
            },
            fails: &["firewall"],
            fix: "virt-l3 firewall install",
            summary: "stale",
        },
    ]
}
