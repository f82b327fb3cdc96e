//! virt-l3's nftables tables in network namespaces (root): each test builds a
//! host namespace with cloudbr0 (169.254.0.1/32, fe80::1/64), guest namespaces
//! on veth ports, an upstream namespace (203.0.113.1 "the internet") and a
//! management namespace (192.0.2.0/24, protected by default).
#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
mod common;

use std::process::{Command, Output};

use virt_l3::config::Config;
use virt_l3::firewall::{self, FirewallConfig, HostNetworks, Ruleset};

fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("sh runs")
}

fn ok(cmd: &str) {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

struct Lab {
    p: String,
}

impl Lab {
    fn new(name: &str) -> Lab {
        let p = format!("fw{}{name}", std::process::id() % 10000);
        let (h, u, m) = (format!("{p}h"), format!("{p}u"), format!("{p}m"));
        for ns in [&h, &u, &m] {
            ok(&format!("ip netns add {ns}; ip -n {ns} link set lo up"));
        }
        ok(&format!(
            "ip netns exec {h} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1;
             ip -n {h} link add cloudbr0 type bridge; ip -n {h} link set cloudbr0 up;
             ip -n {h} addr add 169.254.0.1/32 dev cloudbr0; ip -n {h} addr add fe80::1/64 dev cloudbr0 nodad;
             ip -n {h} link add up0 type veth peer name eth0 netns {u}; ip -n {h} link set up0 up;
             ip -n {h} addr add 198.51.100.1/24 dev up0; ip -n {u} link set eth0 up; ip -n {u} addr add 198.51.100.2/24 dev eth0;
             ip -n {u} addr add 203.0.113.1/32 dev lo; ip -n {u} route add default via 198.51.100.1;
             ip -n {h} route add 203.0.113.1/32 via 198.51.100.2;
             ip -n {h} link add mg0 type veth peer name eth0 netns {m}; ip -n {h} link set mg0 up;
             ip -n {h} addr add 192.0.2.1/24 dev mg0; ip -n {m} link set eth0 up; ip -n {m} addr add 192.0.2.2/24 dev eth0;
             ip -n {m} route add default via 192.0.2.1"
        ));
        Lab { p }
    }
    fn h(&self) -> String {
        format!("{}h", self.p)
    }
    /// A guest `n` on port `tap`, address 100.64.0.n/32.
    fn guest(&self, n: u8, tap: &str) -> String {
        let (h, g) = (self.h(), format!("{}g{n}", self.p));
        ok(&format!(
            "ip netns add {g}; ip -n {g} link set lo up;
             ip -n {h} link add {tap} type veth peer name eth0 netns {g}; ip -n {h} link set {tap} master cloudbr0 up;
             ip -n {g} link set eth0 up; ip -n {g} addr add 100.64.0.{n}/32 dev eth0;
             ip -n {g} route add 169.254.0.1 dev eth0; ip -n {g} route add default via 169.254.0.1;
             ip -n {h} route add 100.64.0.{n}/32 dev cloudbr0"
        ));
        g
    }
    /// Runs `f` on a thread inside the host namespace.
    fn in_host<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.h());
        std::thread::spawn(move || {
            let file = std::fs::File::open(path).expect("namespace file");
            use std::os::fd::AsRawFd;
            // SAFETY: setns on an open namespace fd changes only this thread.
            assert_eq!(
                unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            f()
        })
        .join()
        .expect("namespace thread")
    }
    fn ruleset(&self, ports: &[&str]) -> Ruleset {
        let ports: Vec<String> = ports.iter().map(|s| s.to_string()).collect();
        self.in_host(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let mut host: HostNetworks = rt
                .block_on(firewall::gather(&Config::default()))
                .expect("gather");
            host.accepted_ports = ports;
            Ruleset::build(&Config::default(), &FirewallConfig::default(), &host)
        })
    }
    fn install(&self, r: &Ruleset) {
        let r = r.clone();
        self.in_host(move || firewall::install(&r))
            .expect("install");
    }
    fn matches(&self, r: &Ruleset) -> bool {
        let r = r.clone();
        self.in_host(move || firewall::installed_matches(&r))
            .expect("compare")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = sh(&format!("for n in $(ip netns list | grep -o '^{}[a-z0-9]*'); do ip netns pids $n | xargs -r kill; ip netns del $n; done", self.p));
    }
}

fn works(ns: &str, cmd: &str) -> bool {
    sh(&format!("ip netns exec {ns} {cmd}")).status.success()
}

fn tcp(ns: &str, addr: &str, port: u16) -> bool {
    works(ns, &format!("timeout 3 python3 -c 'import socket; socket.create_connection((\"{addr}\", {port}), timeout=2)'"))
}

fn listen(ns: &str, port: u16) {
    ok(&format!("ip netns exec {ns} python3 -c 'import socket,time\ns=socket.socket(socket.AF_INET6);s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0);s.bind((\"::\",{port}));s.listen(50)\nwhile True: s.accept()' >/dev/null 2>&1 & sleep 0.3"));
}

#[test]
fn install_is_atomic_idempotent_and_restorable_netns() {
    require_root!();
    let lab = Lab::new("a");
    let r = lab.ruleset(&["vg1"]);
    assert!(!lab.matches(&r));
    lab.install(&r);
    assert!(lab.matches(&r));
    lab.install(&r);
    assert!(lab.matches(&r));
    let h = lab.h();
    ok(&format!("ip netns exec {h} nft flush table inet virt_l3"));
    assert!(
        !lab.matches(&r),
        "a flushed table keeps its comment but is not current"
    );
    lab.install(&r);
    ok(&format!(
        "ip netns exec {h} nft delete table bridge virt_l3"
    ));
    assert!(!lab.matches(&r));
    lab.install(&r);
    assert!(lab.matches(&r));
    lab.in_host(firewall::remove).expect("remove");
    assert!(!lab.matches(&r));
    lab.in_host(firewall::remove).expect("remove twice");
}

#[test]
fn guests_reach_gateways_and_the_internet_not_the_host_netns() {
    require_root!();
    let lab = Lab::new("b");
    let g = lab.guest(10, "vg1");
    let (h, u, m) = (lab.h(), format!("{}u", lab.p), format!("{}m", lab.p));
    listen(&h, 22);
    listen(&m, 22);
    listen(&u, 80);
    listen(&g, 8080);
    // Without the table, a guest reaches the host's sshd and the management network.
    assert!(tcp(&g, "192.0.2.1", 22));
    assert!(tcp(&g, "192.0.2.2", 22));
    let r = lab.ruleset(&["vg1"]);
    lab.install(&r);
    assert!(!tcp(&g, "192.0.2.1", 22), "the host's other address");
    assert!(!tcp(&g, "169.254.0.1", 22), "the gateway's TCP");
    assert!(!tcp(&g, "192.0.2.2", 22), "a protected network");
    assert!(works(&g, "ping -c1 -W2 169.254.0.1"));
    assert!(works(&g, "ping -6 -c1 -W2 fe80::1%eth0"));
    assert!(tcp(&g, "203.0.113.1", 80), "guest to upstream");
    assert!(tcp(&u, "100.64.0.10", 8080), "upstream to guest");
    assert!(
        tcp(&m, "100.64.0.10", 8080),
        "the management network opens connections to guests"
    );
    // A spoofed source fails the reverse-path check.
    ok(&format!("ip -n {g} addr add 198.51.100.77/32 dev eth0"));
    assert!(!works(&g, "timeout 3 python3 -c 'import socket; s=socket.socket(); s.bind((\"198.51.100.77\",0)); s.settimeout(2); s.connect((\"203.0.113.1\",80))'"));
}

#[test]
fn only_accepted_ports_pass_frames_netns() {
    require_root!();
    let lab = Lab::new("c");
    let g = lab.guest(11, "vg2");
    let r = lab.ruleset(&[]);
    lab.install(&r);
    assert!(
        !works(&g, "ping -c1 -W2 169.254.0.1"),
        "an unaccepted port passes nothing"
    );
    lab.in_host(|| firewall::accept_port("vg2"))
        .expect("accept");
    lab.in_host(|| firewall::accept_port("vg2"))
        .expect("accept twice");
    assert!(
        works(&g, "ping -c1 -W2 169.254.0.1"),
        "an accepted port passes"
    );
    assert!(lab.matches(&r), "accepting a port keeps the version");
    assert_eq!(
        lab.in_host(firewall::nft::accepted_ports).expect("list"),
        ["vg2"]
    );
    lab.in_host(|| firewall::forget_port("vg2"))
        .expect("forget");
    lab.in_host(|| firewall::forget_port("vg2"))
        .expect("forget twice");
    assert!(!works(&g, "ping -c1 -W2 169.254.0.1"));
}

/// `virt-l3 --config FILE ARGS` in the lab's host namespace.
fn cli(lab: &Lab, config: &str, args: &str) -> Output {
    let path = format!("/tmp/{}-config.toml", lab.p);
    std::fs::write(&path, config).expect("write the config");
    sh(&format!(
        "ip netns exec {} {} --config {path} {args}",
        lab.h(),
        env!("CARGO_BIN_EXE_virt-l3")
    ))
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const CLI_CONFIG: &str = "[firewall]\nhost_allow = [\"tcp/80@169.254.169.254\", \"udp/53\"]\nprotected_networks = [\"connected\", \"10.0.0.0/8\"]\n";

/// Golden file of `virt-l3 firewall render` through the binary, in a namespace
/// whose networks are known (`UPDATE_GOLDEN=1` rewrites it). The bridge table
/// depends on the kernel's `meta ibrname`: one file per capability.
#[test]
fn firewall_render_golden_through_the_binary_netns() {
    require_root!();
    let lab = Lab::new("r");
    let meta = lab.in_host(firewall::nft::probe_bridge_meta);
    let name = if meta {
        "cli-render-meta.nft"
    } else {
        "cli-render.nft"
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/firewall")
        .join(name);
    let text = stdout(&cli(&lab, CLI_CONFIG, "firewall render"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("write the golden file");
    }
    let Ok(want) = std::fs::read_to_string(&path) else {
        eprintln!("note: no {name} for this kernel (UPDATE_GOLDEN=1 writes it)");
        return;
    };
    assert_eq!(text, want, "{name} differs (UPDATE_GOLDEN=1 rewrites it)");
    for needle in [
        "tcp dport 80 accept comment \"host_allow tcp/80@169.254.169.254\"",
        "elements = { 10.0.0.0/8, 192.0.2.0/24, 198.51.100.0/24 }",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
}

#[test]
fn firewall_install_and_remove_through_the_binary_netns() {
    require_root!();
    let lab = Lab::new("i");
    let h = lab.h();
    assert_eq!(
        stdout(&cli(&lab, CLI_CONFIG, "firewall install")),
        "installed virt-l3's nftables tables\n"
    );
    assert_eq!(
        stdout(&cli(&lab, CLI_CONFIG, "firewall install")),
        "virt-l3's nftables tables are installed and current\n"
    );
    // Accepted ports survive a reinstall (a changed configuration).
    lab.in_host(|| firewall::accept_port("vg9"))
        .expect("accept");
    assert_eq!(
        stdout(&cli(&lab, "", "firewall install")),
        "installed virt-l3's nftables tables\n"
    );
    assert!(lab
        .in_host(firewall::nft::accepted_ports)
        .expect("list")
        .contains(&"vg9".to_string()));
    ok(&format!("ip netns exec {h} nft flush table inet virt_l3"));
    assert_eq!(
        stdout(&cli(&lab, "", "firewall install")),
        "installed virt-l3's nftables tables\n",
        "a flushed table is restored"
    );
    assert_eq!(
        stdout(&cli(&lab, "", "firewall remove")),
        "removed virt-l3's nftables tables\n"
    );
    assert!(!works(&h, "nft list table inet virt_l3"));
    stdout(&cli(&lab, "", "firewall install"));
    // Disabled: `install` removes the tables.
    assert!(stdout(&cli(
        &lab,
        "[firewall]\nenabled = false\n",
        "firewall install"
    ))
    .contains("disabled"));
    assert!(!works(&h, "nft list table bridge virt_l3"));
    // A malformed entry: exit 2, the value named.
    let o = cli(
        &lab,
        "[firewall]\nprotected_networks = [\"storage\"]\n",
        "firewall render",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"storage\""));
}

/// The hook's check: current tables are seen in-process (no `nft` fork); a
/// flushed or deleted table is reinstalled; accepted ports are kept.
#[test]
fn ensure_quick_sees_current_flushed_and_deleted_tables_netns() {
    require_root!();
    let lab = Lab::new("q");
    let h = lab.h();
    let ensure = |lab: &Lab| {
        lab.in_host(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(firewall::ensure_quick(&Config::default()))
                .expect("ensure")
        })
    };
    let quick = |lab: &Lab| {
        lab.in_host(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(firewall::quick_current(&Config::default()))
                .expect("quick check")
        })
    };
    assert!(!quick(&lab));
    assert_eq!(ensure(&lab), firewall::Ensured::Installed);
    assert!(quick(&lab), "current tables are seen without nft");
    assert_eq!(ensure(&lab), firewall::Ensured::Current);
    lab.in_host(|| firewall::accept_port("vg5"))
        .expect("accept");
    // A netdev guard appears only at the next full install; still current.
    assert!(quick(&lab), "an accepted port keeps the tables current");
    assert_eq!(ensure(&lab), firewall::Ensured::Current);
    for breakage in [
        "nft flush table inet virt_l3",
        "nft flush chain bridge virt_l3 forward",
        "nft delete table bridge virt_l3",
    ] {
        ok(&format!("ip netns exec {h} {breakage}"));
        assert!(!quick(&lab), "{breakage}");
        assert_eq!(ensure(&lab), firewall::Ensured::Installed, "{breakage}");
        assert!(quick(&lab), "{breakage}");
        // Deleting the bridge table loses its set: reconcile accepts the recorded taps again.
        let kept = lab
            .in_host(firewall::nft::accepted_ports)
            .expect("list")
            .contains(&"vg5".to_string());
        assert_eq!(kept, !breakage.contains("delete"), "{breakage}");
    }
    // A new protected network makes the tables stale.
    ok(&format!("ip -n {h} addr add 10.7.0.1/24 dev mg0"));
    assert_eq!(ensure(&lab), firewall::Ensured::Installed);
}

/// The start hook's check: only whether the tables (and `accepted_ports`)
/// exist. A missing table is installed; a stale or flushed one is left to watch
/// and reconcile (`ensure_quick`), which reinstall it.
#[test]
fn ensure_present_installs_missing_tables_and_leaves_staleness_to_ensure_quick_netns() {
    require_root!();
    let lab = Lab::new("p");
    let h = lab.h();
    let run = |lab: &Lab, quick: bool| {
        lab.in_host(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let c = Config::default();
            rt.block_on(async {
                if quick {
                    firewall::ensure_quick(&c).await
                } else {
                    firewall::ensure_present(&c).await
                }
            })
            .expect("ensure")
        })
    };
    assert_eq!(run(&lab, false), firewall::Ensured::Installed);
    assert_eq!(run(&lab, false), firewall::Ensured::Current);
    assert_eq!(run(&lab, true), firewall::Ensured::Current);
    for table in ["inet", "bridge", "netdev"] {
        ok(&format!(
            "ip netns exec {h} nft delete table {table} virt_l3"
        ));
        assert_eq!(run(&lab, false), firewall::Ensured::Installed, "{table}");
        assert_eq!(run(&lab, true), firewall::Ensured::Current, "{table}");
    }
    // A new protected network: stale, but present; ensure_quick reinstalls.
    ok(&format!("ip -n {h} addr add 10.7.0.1/24 dev mg0"));
    assert_eq!(run(&lab, false), firewall::Ensured::Current);
    assert_eq!(run(&lab, true), firewall::Ensured::Installed);
    // A flushed chain: present; ensure_quick restores it.
    ok(&format!(
        "ip netns exec {h} nft flush chain bridge virt_l3 forward"
    ));
    assert_eq!(run(&lab, false), firewall::Ensured::Current);
    assert_eq!(run(&lab, true), firewall::Ensured::Installed);
}
