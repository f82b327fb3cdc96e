//! The prepared hypervisor of the `check` tests: a namespace with a routed bridge, an
//! uplink, sysctls, a hook directory, a real BIRD and libvirt stand-ins.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{fixture, repo_path, run, stderr, Lab};

pub const GATEWAY_MAC: &str = "02:00:00:00:00:01";

/// A prepared hypervisor in a namespace, with its BIRD.
pub struct Host {
    pub lab: Lab,
    bird_running: bool,
    /// Extra `check` arguments a case adds (overrides).
    pub extra: Vec<String>,
}

impl Host {
    pub fn dir(&self) -> &Path {
        self.lab.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir().join(rel)
    }

    /// Sets `key=value` in the namespace (written under /proc/sys, as `sysctl -w` does).
    pub fn sysctl(&self, setting: &str) {
        let (key, value) = setting.split_once('=').unwrap();
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        run(Command::new("ip")
            .args(["netns", "exec", &self.lab.ns, "sh", "-c"])
            .arg(format!("echo {value} > {path}")));
    }

    /// A stand-in program: a shell script.
    pub fn script(&self, name: &str, body: &str) {
        let p = self.path(&format!("bin/{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub fn bird_config(&self, text: &str) {
        std::fs::write(self.path("bird.conf"), text).unwrap();
    }

    pub fn birdc(&self, args: &[&str]) -> Output {
        Command::new("birdc")
            .arg("-s")
            .arg(self.path("bird.ctl"))
            .args(args)
            .output()
            .unwrap()
    }

    pub fn stop_bird(&mut self) {
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
    pub fn check(&self) -> (i32, serde_json::Value, Output) {
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
pub fn example_bird_conf(dir: &Path) -> String {
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
pub fn host(gateway_mac: bool) -> Host {
    let lab = Lab::new(&[]);
    std::fs::create_dir_all(lab.status_dir()).unwrap();
    let mut extra = format!(
        "require_nwfilter = false\nreconcile_grace_seconds = 0\nlibvirt_status_dir = {:?}\n",
        lab.status_dir()
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
pub fn route_domain(h: &Host) {
    let o = h
        .lab
        .hook("i-2-10-VM", "start", "begin", &fixture("dual-stack.xml"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!h.lab.routes().is_empty());
    set_running(h, "running", "booted");
}

/// Writes libvirt's status file of the dual-stack domain, as a running libvirtd would.
pub fn set_running(h: &Host, state: &str, reason: &str) {
    h.lab
        .set_status("i-2-10-VM", &fixture("dual-stack.xml"), state, reason);
}

/// A vtysh stand-in answering `show running-config` with the shipped FRR example
/// (its `match interface` set to `iface`).
pub fn frr_vtysh(h: &Host, iface: &str) {
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
