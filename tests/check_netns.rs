//! `virt-l3 check` against the real kernel: a correctly prepared namespace lab (routed
//! bridge with a guest tap, an uplink with a default route, sysctls, a hook directory,
//! a real BIRD with the shipped example configuration, libvirt and virsh stand-ins)
//! is ready; each single misconfiguration makes exactly its item fail, with a fix, and
//! the exit code 1.

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fixture, repo_path, run, stderr, Lab};

const GATEWAY_MAC: &str = "02:00:00:00:00:01";

/// A prepared hypervisor in a namespace, with its BIRD.
struct Host {
    lab: Lab,
    bird_running: bool,
    /// Extra `check` arguments a case adds (overrides).
    extra: Vec<String>,
}

impl Host {
    fn dir(&self) -> &Path {
        self.lab.dir.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir().join(rel)
    }

    /// Sets `key=value` in the namespace (written under /proc/sys, as `sysctl -w` does).
    fn sysctl(&self, setting: &str) {
        let (key, value) = setting.split_once('=').unwrap();
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        run(Command::new("ip")
            .args(["netns", "exec", &self.lab.ns, "sh", "-c"])
            .arg(format!("echo {value} > {path}")));
    }

    /// A stand-in program: a shell script.
    fn script(&self, name: &str, body: &str) {
        let p = self.path(&format!("bin/{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn bird_config(&self, text: &str) {
        std::fs::write(self.path("bird.conf"), text).unwrap();
    }

    fn birdc(&self, args: &[&str]) -> Output {
        Command::new("birdc")
            .arg("-s")
            .arg(self.path("bird.ctl"))
            .args(args)
            .output()
            .unwrap()
    }

    fn stop_bird(&mut self) {
        if self.bird_running {
            let _ = self.birdc(&["down"]);
            // `down` returns once BIRD has begun to exit; wait for the socket to go.
            for _ in 0..200 {
                if !self.birdc(&["show", "status"]).status.success() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            self.bird_running = false;
        }
    }

    /// Runs `virt-l3 check --json` with the lab's overrides; returns the exit code and the
    /// parsed report.
    fn check(&self) -> (i32, serde_json::Value, Output) {
        let d = self.dir().display().to_string();
        let mut args: Vec<String> = vec![
            "check".into(),
            "--json".into(),
            "--libvirt-hooks-dir".into(),
            format!("{d}/hooks"),
            "--libvirtd".into(),
            format!("{d}/bin/libvirtd"),
            "--virsh".into(),
            format!("{d}/bin/virsh"),
            "--bird-socket".into(),
            format!("{d}/bird.ctl"),
            "--bird-config".into(),
            format!("{d}/bird.conf"),
            "--vtysh".into(),
            format!("{d}/bin/vtysh"),
            "--frr-config".into(),
            format!("{d}/frr.conf"),
            "--agent-properties".into(),
            format!("{d}/agent.properties"),
        ];
        args.extend(self.extra.iter().cloned());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = self.lab.virt_l3(&a, b"");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "check --json printed no JSON ({e}): {}{}",
                String::from_utf8_lossy(&o.stdout),
                stderr(&o)
            )
        });
        (o.status.code().unwrap_or(-1), v, o)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop_bird();
        if let Ok(pid) = std::fs::read_to_string(self.path("bird.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The shipped BIRD example with its placeholders filled in, logging to a file.
fn example_bird_conf(dir: &Path) -> String {
    std::fs::read_to_string(repo_path("packaging/examples/bird.conf"))
        .unwrap()
        .replace(
            "log syslog all;",
            &format!("log \"{}/bird.log\" all;", dir.display()),
        )
        .replace("@ROUTER_ID@", "192.0.2.2")
        .replace("@LOCAL_AS@", "65010")
        .replace("@PEER_AS@", "65001")
        .replace("@PEER_V4@", "192.0.2.1")
        .replace("@PEER_V6@", "2001:db8::1")
}

/// A hypervisor prepared the way docs/TROUBLESHOOTING.md says it should be.
fn host(gateway_mac: bool) -> Host {
    let lab = Lab::new(&[]);
    std::fs::create_dir_all(lab.dir.path().join("libvirt-qemu")).unwrap();
    let mut extra = format!(
        "require_nwfilter = false\nreconcile_grace_seconds = 0\nlibvirt_status_dir = {:?}\n",
        lab.dir.path().join("libvirt-qemu")
    );
    if gateway_mac {
        extra.push_str(&format!("gateway_mac = \"{GATEWAY_MAC}\"\n"));
    }
    lab.write_config(&extra);
    let mut h = Host {
        lab,
        bird_running: false,
        extra: Vec::new(),
    };
    let ip = |a: &[&str]| {
        h.lab.ip(a);
    };
    // A guest's tap (tun driver, as libvirt's vnetN) in the bridge.
    ip(&["tuntap", "add", "dev", "vnet3", "mode", "tap"]);
    ip(&["link", "set", "vnet3", "master", "cloudbr0", "up"]);
    ip(&["link", "set", "cloudbr0", "address", GATEWAY_MAC]);
    // The uplink to the fabric, with the default route.
    ip(&[
        "link", "add", "uplink0", "type", "veth", "peer", "name", "fabric0",
    ]);
    ip(&["link", "set", "uplink0", "up"]);
    ip(&["link", "set", "fabric0", "up"]);
    ip(&["addr", "add", "192.0.2.2/24", "dev", "uplink0"]);
    ip(&[
        "route",
        "add",
        "default",
        "via",
        "192.0.2.1",
        "dev",
        "uplink0",
    ]);
    for s in [
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.uplink0.rp_filter=2",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.cloudbr0.send_redirects=0",
        "net.ipv6.conf.cloudbr0.accept_ra=0",
        "net.ipv4.conf.all.proxy_arp=0",
        "net.ipv6.conf.all.proxy_ndp=0",
    ] {
        h.sysctl(s);
    }
    // libvirt's hook directory with virt-l3 in qemu.d/, as hooks/install.sh makes it.
    std::fs::create_dir_all(h.path("hooks/qemu.d")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_virt-l3"),
        h.path("hooks/qemu.d/virt-l3"),
    )
    .unwrap();
    // Stand-ins for libvirt's programs (no libvirtd runs in the lab).
    std::fs::create_dir_all(h.path("bin")).unwrap();
    h.script("libvirtd", "echo 'libvirtd (libvirt) 9.0.0'");
    h.script(
        "virsh",
        "[ \"$1\" = nwfilter-list ] || exit 1\necho ' UUID   Name'\necho '-----------'",
    );
    // A real BIRD with the shipped example, in the namespace.
    h.bird_config(&example_bird_conf(h.dir()));
    run(Command::new("ip")
        .args(["netns", "exec", &h.lab.ns, "bird"])
        .args([
            "-c",
            &h.path("bird.conf").display().to_string(),
            "-s",
            &h.path("bird.ctl").display().to_string(),
            "-P",
            &h.path("bird.pid").display().to_string(),
        ]));
    h.bird_running = true;
    // virt-l3's nftables tables, as the reconcile unit installs them at boot.
    let o = h.lab.virt_l3(&["firewall", "install"], b"");
    assert!(o.status.success(), "firewall install: {}", stderr(&o));
    h
}

/// Routes the dual-stack domain on vnet3 through its `start` hook; libvirt's status
/// file says it runs.
fn route_domain(h: &Host) {
    let o = h
        .lab
        .hook("i-2-10-VM", "start", "begin", &fixture("dual-stack.xml"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!h.lab.routes().is_empty());
    set_running(h, "running", "booted");
}

/// Writes libvirt's status file of the dual-stack domain, as a running libvirtd would.
fn set_running(h: &Host, state: &str, reason: &str) {
    let body = format!(
        "<domstatus state='{state}' reason='{reason}' pid='4242'>\n{}\n</domstatus>\n",
        String::from_utf8_lossy(&fixture("dual-stack.xml"))
    );
    let tmp = h.path("libvirt-qemu/.i-2-10-VM.tmp");
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(tmp, h.path("libvirt-qemu/i-2-10-VM.xml")).unwrap();
}

struct Case {
    name: &'static str,
    gateway_mac: bool,
    routed: bool,
    breakage: fn(&mut Host),
    /// The ids that must fail, and nothing else.
    fails: &'static [&'static str],
    /// Text the failing item's fix must contain.
    fix: &'static str,
    /// Text the failing item's summary must contain.
    summary: &'static str,
}

fn cases() -> Vec<Case> {
    fn nothing(_: &mut Host) {}
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
            breakage: |h| std::fs::remove_file(h.path("libvirt-qemu/i-2-10-VM.xml")).unwrap(),
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

/// A vtysh stand-in answering `show running-config` with the shipped FRR example
/// (its `match interface` set to `iface`).
fn frr_vtysh(h: &Host, iface: &str) {
    let conf = std::fs::read_to_string(repo_path("packaging/examples/frr.conf"))
        .unwrap()
        .replace(
            "match interface cloudbr0",
            &format!("match interface {iface}"),
        );
    std::fs::write(h.path("frr-running.conf"), conf).unwrap();
    h.script(
        "vtysh",
        &format!(
            "[ \"$2\" = 'show running-config' ] || exit 1\ncat '{}'",
            h.path("frr-running.conf").display()
        ),
    );
}

#[test]
fn check_reports_exactly_the_broken_item() {
    require_root!();
    let mut problems = Vec::new();
    for case in cases() {
        let mut h = host(case.gateway_mac);
        if case.routed {
            route_domain(&h);
        }
        (case.breakage)(&mut h);
        let (code, report, out) = h.check();
        let items = report["items"].as_array().unwrap();
        let failed: BTreeSet<String> = items
            .iter()
            .filter(|i| i["status"] == "fail")
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        let want: BTreeSet<String> = case.fails.iter().map(|s| s.to_string()).collect();
        let mut wrong = Vec::new();
        if failed != want {
            wrong.push(format!("failed {failed:?}, expected {want:?}"));
        }
        let want_code = if want.is_empty() { 0 } else { 1 };
        if code != want_code || report["ready"] != want.is_empty() {
            wrong.push(format!(
                "exit {code}, ready {}, expected exit {want_code}",
                report["ready"]
            ));
        }
        for i in items.iter().filter(|i| i["status"] == "fail") {
            let fix = i["fix"].as_str().unwrap_or("");
            if !fix.contains(case.fix) || fix.is_empty() {
                wrong.push(format!("{} fix {fix:?} lacks {:?}", i["id"], case.fix));
            }
            let summary = i["summary"].as_str().unwrap_or("");
            if !summary.contains(case.summary) {
                wrong.push(format!(
                    "{} summary {summary:?} lacks {:?}",
                    i["id"], case.summary
                ));
            }
        }
        if !wrong.is_empty() {
            problems.push(format!(
                "{}: {}\n{}{}",
                case.name,
                wrong.join("; "),
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn check_covers_every_item_and_explains_in_text() {
    require_root!();
    let mut h = host(false);
    let (code, report, _) = h.check();
    assert_eq!(code, 0, "{report}");
    let ids: BTreeSet<&str> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    let all = [
        "bridge",
        "bridge-gateways",
        "bridge-ports",
        "bridge-mac",
        "forwarding-ipv4",
        "forwarding-ipv6",
        "rp_filter",
        "accept_ra",
        "proxy_arp",
        "proxy_ndp",
        "send_redirects",
        "control-network",
        "allow",
        "libvirt",
        "hook",
        "nwfilter",
        "ebtables",
        "routing-daemon",
        "routing-config",
        "state",
        "firewall",
        "ports",
        "foreign-entries",
    ];
    assert_eq!(ids, all.into_iter().collect::<BTreeSet<_>>());
    // Without gateway_mac the bridge MAC is a warning, with its fix.
    let mac = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "bridge-mac")
        .unwrap();
    assert_eq!(mac["status"], "warn");
    assert!(mac["fix"].as_str().unwrap().contains("gateway_mac"));
    // Text output: one line per item, the fix under a failure, the verdict last.
    h.sysctl("net.ipv4.ip_forward=0");
    h.extra.clear();
    let d = h.dir().display().to_string();
    let o = h.lab.virt_l3(
        &[
            "check",
            "--libvirt-hooks-dir",
            &format!("{d}/hooks"),
            "--libvirtd",
            &format!("{d}/bin/libvirtd"),
            "--virsh",
            &format!("{d}/bin/virsh"),
            "--bird-socket",
            &format!("{d}/bird.ctl"),
            "--bird-config",
            &format!("{d}/bird.conf"),
            "--vtysh",
            &format!("{d}/bin/vtysh"),
        ],
        b"",
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL forwarding-ipv4: IPv4 forwarding is off"),
        "{text}"
    );
    assert!(
        text.contains("     fix: sysctl -w net.ipv4.ip_forward=1"),
        "{text}"
    );
    assert!(text.contains("ok   bridge cloudbr0:"), "{text}");
    assert!(
        text.contains("ok   firewall: virt-l3's nftables tables are installed and current"),
        "{text}"
    );
    assert!(text.ends_with("not ready: 1 item(s) failed\n"), "{text}");
}

/// `ports` names each blocked port of a routed bridge and, from libvirt's status
/// files, its domain; a port virt-l3 accepted is not named; the firewall disabled
/// is a warning.
#[test]
fn check_names_blocked_ports_and_their_domain() {
    require_root!();
    let h = host(true);
    h.lab.add_tap("vnet7", "cloudbr0");
    set_running(&h, "running", "booted");
    let item = |report: &serde_json::Value, id: &str| {
        report["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .unwrap()
            .clone()
    };
    let (_, report, _) = h.check();
    let ports = item(&report, "ports");
    assert_eq!(ports["status"], "warn", "{ports}");
    let summary = ports["summary"].as_str().unwrap();
    assert!(summary.contains("vnet3 (domain i-2-10-VM)"), "{summary}");
    assert!(
        summary.contains("vnet7 (no running domain names it)"),
        "{summary}"
    );
    assert!(ports["fix"].as_str().unwrap().contains("virsh start"));
    run(Command::new("ip").args([
        "netns",
        "exec",
        &h.lab.ns,
        "nft",
        "add",
        "element",
        "bridge",
        "virt_l3",
        "accepted_ports",
        "{ vnet3, vnet7 }",
    ]));
    let (_, report, _) = h.check();
    assert_eq!(item(&report, "ports")["status"], "ok", "{report}");
    h.lab.write_config(&format!(
        "require_nwfilter = false\nreconcile_grace_seconds = 0\nlibvirt_status_dir = {:?}\n[firewall]\nenabled = false\n",
        h.path("libvirt-qemu")
    ));
    let (_, report, _) = h.check();
    assert_eq!(item(&report, "firewall")["status"], "warn", "{report}");
    assert!(item(&report, "firewall")["fix"]
        .as_str()
        .unwrap()
        .contains("enabled = false"));
}
