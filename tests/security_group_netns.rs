//! Security groups in network namespaces (root): a host namespace with cloudbr0,
//! a guest on a veth port (100.64.0.10/32, 2001:db8:64::10/128), an upstream
//! namespace routed through the host (203.0.113.1, 2001:db8:ff::1: "the
//! internet"). Real TCP, UDP and ICMP in both families, rules set with the CLI
//! (`virt-l3 security-group set`) run inside the host namespace.

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use virt_l3::config::Config;
use virt_l3::firewall::{self, FirewallConfig, HostNetworks, Ruleset};
use virt_l3::security_group::elements;
use virt_l3::state::{Record, StateDir};

const BIN: &str = env!("CARGO_BIN_EXE_virt-l3");
const UUID: &str = "5e1f0c2a-1111-4222-8333-444455556666";
const G4: &str = "100.64.0.10";
const G6: &str = "2001:db8:64::10";
const U4: &str = "203.0.113.1";
const U6: &str = "2001:db8:ff::1";

fn sh(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().unwrap()
}

fn ok(cmd: &str) -> String {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Lab {
    p: String,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let p = format!("sg{}", std::process::id() % 10000);
        let (h, u, g) = (format!("{p}h"), format!("{p}u"), format!("{p}g"));
        for ns in [&h, &u, &g] {
            ok(&format!("ip netns add {ns}; ip -n {ns} link set lo up"));
        }
        ok(&format!(
            "ip netns exec {h} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1;
             ip -n {h} link add cloudbr0 type bridge; ip -n {h} link set cloudbr0 up;
             ip -n {h} addr add 169.254.0.1/32 dev cloudbr0; ip -n {h} addr add fe80::1/64 dev cloudbr0 nodad;
             ip -n {h} link add up0 type veth peer name eth0 netns {u}; ip -n {h} link set up0 up;
             ip -n {h} addr add 198.51.100.1/24 dev up0; ip -n {h} addr add 2001:db8:1::1/64 dev up0 nodad;
             ip -n {u} link set eth0 up; ip -n {u} addr add 198.51.100.2/24 dev eth0; ip -n {u} addr add 2001:db8:1::2/64 dev eth0 nodad;
             ip -n {u} addr add {U4}/32 dev lo; ip -n {u} addr add {U6}/128 dev lo;
             ip -n {u} route add default via 198.51.100.1; ip -n {u} -6 route add default via 2001:db8:1::1;
             ip -n {h} route add {U4}/32 via 198.51.100.2; ip -n {h} -6 route add {U6}/128 via 2001:db8:1::2;
             ip -n {h} link add vg1 type veth peer name eth0 netns {g}; ip -n {h} link set vg1 master cloudbr0 up;
             ip -n {g} link set eth0 address 52:54:00:00:00:10; ip -n {g} link set eth0 up; ip -n {g} addr add {G4}/32 dev eth0; ip -n {g} addr add {G6}/128 dev eth0 nodad;
             ip -n {g} route add 169.254.0.1 dev eth0; ip -n {g} route add default via 169.254.0.1;
             ip -n {g} -6 route add default via fe80::1 dev eth0;
             ip -n {h} route add {G4}/32 dev cloudbr0; ip -n {h} -6 route add {G6}/128 dev cloudbr0"
        ));
        let lab = Lab {
            p,
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(
            lab.config(),
            format!(
                "state_dir = \"{}\"\nsecurity_groups = true\nlibvirt_status_dir = \"{}\"\nrequire_nwfilter = false\n",
                lab.dir.path().join("state").display(),
                lab.dir.path().join("status").display()
            ),
        )
        .unwrap();
        let record: Record = serde_json::from_value(serde_json::json!({
            "name": "i-2-55-VM", "uuid": UUID,
            "nics": [{"mac": "52:54:00:00:00:10", "bridge": "cloudbr0", "tap": "vg1", "addresses": [G4, G6]}],
            "metric": 100, "protocol": 52,
        }))
        .unwrap();
        let state = StateDir::new(lab.dir.path().join("state"));
        let _l = state.lock().unwrap();
        state.save(&record).unwrap();
        lab
    }
    fn ns(&self, x: &str) -> String {
        format!("{}{x}", self.p)
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }
    fn in_host<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.ns("h"));
        std::thread::spawn(move || {
            let file = std::fs::File::open(path).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: setns on an open namespace fd changes only this thread.
            assert_eq!(
                unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            f()
        })
        .join()
        .unwrap()
    }
    fn ruleset(&self) -> Ruleset {
        self.in_host(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut host: HostNetworks = rt.block_on(firewall::gather(&Config::default())).unwrap();
            host.accepted_ports = vec!["vg1".into()];
            let config = Config {
                security_groups: true,
                ..Config::default()
            };
            Ruleset::build(&config, &FirewallConfig::default(), &host)
        })
    }
    /// `virt-l3 security-group ARGS` in the host namespace.
    fn sg(&self, args: &str) -> Output {
        sh(&format!(
            "ip netns exec {} {BIN} --config {} security-group {args}",
            self.ns("h"),
            self.config().display()
        ))
    }
    /// libvirt's status file: the domain runs (for reconcile).
    fn running(&self) {
        let dir = self.dir.path().join("status");
        std::fs::create_dir_all(&dir).unwrap();
        let xml = format!("<domstatus state='running' reason='booted' pid='4242'>\n<domain type='kvm'>\n<name>i-2-55-VM</name>\n<uuid>{UUID}</uuid>\n<metadata>\n<cloudstack:network xmlns:cloudstack=\"https://download.cloudstack.org/libvirt/network\">\n<cloudstack:nic mac=\"52:54:00:00:00:10\">\n<cloudstack:address address=\"{G4}\" prefix=\"32\" family=\"ipv4\"/>\n<cloudstack:address address=\"{G6}\" prefix=\"128\" family=\"ipv6\"/>\n</cloudstack:nic>\n</cloudstack:network>\n</metadata>\n<devices>\n<interface type='bridge'>\n<mac address='52:54:00:00:00:10'/>\n<source bridge='cloudbr0'/>\n<target dev='vg1'/>\n</interface>\n</devices>\n</domain>\n</domstatus>\n");
        std::fs::write(dir.join("i-2-55-VM.xml"), xml).unwrap();
    }
    fn set(&self, rules: &str) {
        let o = self.sg(&format!("set i-2-55-VM '{rules}'"));
        assert!(
            o.status.success(),
            "set {rules}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = sh(&format!("for n in $(ip netns list | grep -o '^{}[a-z0-9]*'); do ip netns pids $n | xargs -r kill; ip netns del $n; done", self.p));
    }
}

fn tcp(ns: &str, addr: &str, port: u16) -> bool {
    sh(&format!("ip netns exec {ns} timeout 3 python3 -c 'import socket; socket.create_connection((\"{addr}\", {port}), timeout=1.5)'")).status.success()
}

/// A dual-stack TCP echo server on `ports` and UDP echo servers on `udp` at
/// `addrs` (bound to each address: a wildcard socket would answer from another
/// source, which is not the reply conntrack expects).
fn servers(ns: &str, ports: &[u16], udp: u16, addrs: [&str; 2]) {
    for p in ports {
        ok(&format!("ip netns exec {ns} python3 -c 'import socket,threading\ns=socket.socket(socket.AF_INET6);s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0);s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind((\"::\",{p}));s.listen(50)\ndef echo(c):\n  while True:\n    d=c.recv(100)\n    if not d: break\n    c.sendall(d)\nwhile True:\n  c,_=s.accept();threading.Thread(target=echo,args=(c,),daemon=True).start()' >/dev/null 2>&1 &"));
    }
    for a in addrs {
        let fam = if a.contains(':') {
            "AF_INET6"
        } else {
            "AF_INET"
        };
        ok(&format!("ip netns exec {ns} python3 -c 'import socket\ns=socket.socket(socket.{fam},socket.SOCK_DGRAM);s.bind((\"{a}\",{udp}))\nwhile True:\n  d,a=s.recvfrom(100);s.sendto(d,a)' >/dev/null 2>&1 &"));
    }
    ok("sleep 0.5");
}

/// A UDP datagram to `addr:port` from `src` ("" = the routing's choice) and its echo back.
fn udp(ns: &str, src: &str, addr: &str, port: u16) -> bool {
    let fam = if addr.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    sh(&format!("ip netns exec {ns} timeout 3 python3 -c 'import socket\ns=socket.socket(socket.{fam},socket.SOCK_DGRAM);s.bind((\"{src}\",0));s.settimeout(1.5);s.sendto(b\"x\",(\"{addr}\",{port}));s.recvfrom(10)'")).status.success()
}

fn ping(ns: &str, addr: &str) -> bool {
    sh(&format!("ip netns exec {ns} ping -c1 -W1 {addr}"))
        .status
        .success()
}

#[test]
fn security_groups_on_the_routed_path_netns() {
    require_root!();
    let lab = Lab::new();
    let (h, u, g) = (lab.ns("h"), lab.ns("u"), lab.ns("g"));
    let r = lab.ruleset();
    lab.in_host({
        let r = r.clone();
        move || firewall::install(&r)
    })
    .unwrap();
    servers(&g, &[22, 23, 8080], 5353, [G4, G6]);
    servers(&u, &[80, 81, 443], 5300, [U4, U6]);
    assert!(
        lab.in_host({
            let r = r.clone();
            move || firewall::installed_matches(&r)
        })
        .unwrap(),
        "installed"
    );
    // Without a security group (no chain, no element) everything passes.
    assert!(tcp(&u, G4, 23) && tcp(&u, G6, 23));

    // CloudStack's default: ingress closed, egress open, replies pass.
    lab.set("");
    for a in [G4, G6] {
        assert!(!tcp(&u, a, 22), "ingress default {a}");
        assert!(!udp(&u, "", a, 5353), "udp ingress default {a}");
        assert!(!ping(&u, a), "icmp ingress default {a}");
    }
    for a in [U4, U6] {
        assert!(tcp(&g, a, 80), "egress open {a}");
        assert!(udp(&g, "", a, 5300), "udp egress open {a}");
        assert!(ping(&g, a), "ping out {a}");
    }
    // The per-VM chains do not make the firewall's table look changed.
    assert!(lab
        .in_host({
            let r = r.clone();
            move || firewall::installed_matches(&r)
        })
        .unwrap());

    // Ingress only where a rule allows; ICMP by type.
    lab.set("I:tcp;22;22;0.0.0.0/0,::/0,NEXT;I:udp;5353;5353;203.0.113.1/32,NEXT;I:icmp;8;-1;0.0.0.0/0,NEXT;");
    assert!(tcp(&u, G4, 22) && tcp(&u, G6, 22));
    assert!(!tcp(&u, G4, 23) && !tcp(&u, G6, 23) && !tcp(&u, G4, 8080));
    assert!(udp(&u, U4, G4, 5353), "udp from the allowed source");
    assert!(!udp(&u, "", G4, 5353), "udp from another source");
    assert!(!udp(&u, U6, G6, 5353), "udp rule is IPv4 only");
    assert!(ping(&u, G4), "icmp type 8 allowed");
    assert!(!ping(&u, G6), "no ICMPv6 rule");
    // The elements sent in-process read back as nft lists them.
    let shard = format!("{:02x}", elements::shard(G4.parse().unwrap()));
    let listed = |set: &str| {
        ok(&format!(
            "ip netns exec {h} nft list set inet virt_l3 {set}"
        ))
    };
    let ports = listed(&format!("sg_in4_ports_{shard}"));
    assert!(
        ports.contains(&format!("{G4} . 0.0.0.0/0 . tcp . 22")),
        "{ports}"
    );
    assert!(
        ports.contains(&format!("{G4} . {U4} . udp . 5353")),
        "{ports}"
    );
    let icmp = listed(&format!("sg_in4_icmp_{shard}"));
    assert!(
        icmp.contains(&format!("{G4} . 0.0.0.0/0 . echo-request . ")),
        "{icmp}"
    );
    let vms = ok(&format!(
        "ip netns exec {h} nft list map inet virt_l3 sg_vms4"
    ));
    assert!(
        vms.contains(&format!("{G4} : jump security_in4_{shard}")),
        "{vms}"
    );
    // An ICMP type that is not echo request: ping refused.
    lab.set("I:icmp;13;-1;0.0.0.0/0,NEXT;I:icmp;129;-1;::/0,NEXT;");
    assert!(!ping(&u, G4) && !ping(&u, G6));
    lab.set("I:icmp;8;0;0.0.0.0/0,NEXT;I:icmp;128;0;::/0,NEXT;");
    assert!(ping(&u, G4) && ping(&u, G6), "type/code rules");

    // Egress: closed by the first egress rule of a family.
    lab.set("E:tcp;80;80;203.0.113.1/32,NEXT;");
    assert!(tcp(&g, U4, 80), "allowed egress");
    assert!(!tcp(&g, U4, 81), "IPv4 egress closed by the rule");
    assert!(!udp(&g, "", U4, 5300), "IPv4 udp egress closed");
    assert!(
        tcp(&g, U6, 81),
        "IPv6 egress still open: no IPv6 egress rule"
    );
    lab.set("E:tcp;80;80;203.0.113.1/32,2001:db8:ff::1/128,NEXT;");
    assert!(tcp(&g, U6, 80) && !tcp(&g, U6, 81));

    // A rule removed while a connection is open: the open one continues
    // (established is accepted first), new ones are refused.
    lab.set("I:tcp;22;22;0.0.0.0/0,::/0,NEXT;");
    let held = std::process::Command::new("ip")
        .args(["netns", "exec", &u, "python3", "-c"])
        .arg(format!("import socket,time,sys\nc=socket.create_connection((\"{G4}\",22),timeout=2)\nc.sendall(b\"a\");assert c.recv(10)==b\"a\"\nprint(\"open\",flush=True)\ntime.sleep(2)\nc.sendall(b\"b\");c.settimeout(2);print(\"after\",c.recv(10)==b\"b\",flush=True)"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    lab.set("");
    assert!(!tcp(&u, G4, 22), "new connection after the rule went");
    let out = held.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("after True"),
        "the open connection continues: {text}"
    );

    // Refused input changes nothing.
    lab.set("I:tcp;22;22;0.0.0.0/0,NEXT;");
    let bad = lab.sg("set i-2-55-VM 'I:tcp;22;22;0.0.0.0/33,NEXT;'");
    assert!(!bad.status.success());
    assert!(tcp(&u, G4, 22), "previous rules stay");

    // Rules survive reconcile after the table was flushed and reinstalled
    // (which empties the sets): reconcile applies every running VM's elements.
    lab.set("I:tcp;22;22;0.0.0.0/0,::/0,NEXT;");
    assert!(!tcp(&u, G4, 23));
    ok(&format!("ip netns exec {h} nft flush table inet virt_l3"));
    lab.in_host({
        let r = r.clone();
        move || firewall::install(&r)
    })
    .unwrap();
    assert!(tcp(&u, G4, 23), "the reinstalled table has no element");
    lab.running();
    let o = sh(&format!(
        "ip netns exec {h} {BIN} --config {} reconcile",
        lab.config().display()
    ));
    assert!(
        o.status.success(),
        "reconcile: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Reconcile pinned the bridge's MAC: the guest learns it again.
    ok(&format!("ip -n {g} neigh flush all"));
    let why = || {
        format!(
            "{}\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            ok(&format!("ip -n {h} route; ip -n {h} -6 route")),
            ok(&format!(
                "ip netns exec {h} nft list map inet virt_l3 sg_vms4"
            ))
        )
    };
    assert!(tcp(&u, G4, 22), "allowed after reconcile: {}", why());
    assert!(tcp(&u, G6, 22), "allowed after reconcile: {}", why());
    assert!(
        !tcp(&u, G4, 23) && !tcp(&u, G6, 23),
        "closed again after reconcile"
    );

    // clear: no chain, no element left.
    assert!(lab.sg("clear i-2-55-VM").status.success());
    let table = ok(&format!("ip netns exec {h} nft list table inet virt_l3"));
    assert!(
        !table.contains("sg_in_") && !table.contains("sg_out_"),
        "{table}"
    );
    assert!(
        !table.contains(G4) && !table.contains(G6),
        "no element of the VM left: {table}"
    );
    assert!(tcp(&u, G4, 23), "no security group: open again");

    // The hook's `stopped` removes the elements and the stored rules.
    lab.set("I:tcp;22;22;0.0.0.0/0,::/0,NEXT;");
    assert!(!tcp(&u, G4, 23));
    let stored = lab
        .dir
        .path()
        .join(format!("state/security-groups/{UUID}.json"));
    assert!(stored.exists());
    let status = std::fs::read_to_string(lab.dir.path().join("status/i-2-55-VM.xml")).unwrap();
    let xml = &status[status.find("<domain").unwrap()..status.find("</domstatus>").unwrap()];
    std::fs::write(lab.dir.path().join("domain.xml"), xml).unwrap();
    let o = sh(&format!(
        "ip netns exec {h} {BIN} --config {} hook i-2-55-VM stopped end - < {}",
        lab.config().display(),
        lab.dir.path().join("domain.xml").display()
    ));
    assert!(
        o.status.success(),
        "stopped: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let table = ok(&format!("ip netns exec {h} nft list table inet virt_l3"));
    assert!(
        !table.contains(G4) && !table.contains(G6),
        "after stopped: {table}"
    );
    let stored = lab
        .dir
        .path()
        .join(format!("state/security-groups/{UUID}.json"));
    assert!(!stored.exists(), "the stored rules go at stopped");
}
