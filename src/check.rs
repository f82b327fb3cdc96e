//! `virt-l3 check`: is this hypervisor ready for routed VMs? Item by item, each with a
//! status and, for every failure, the fix.
//!
//! Everything is read, nothing is changed. Kernel facts come from the network
//! namespace the command runs in (netlink, `/proc/sys/net`), so `ip netns exec NS
//! virt-l3 check` inspects NS. Files and programs are found at the paths of
//! [`CheckOptions`], all overridable. docs/TROUBLESHOOTING.md explains every item.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::stream::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo};
use serde::Serialize;

use crate::address::Mac;
use crate::config::Config;
use crate::kernel::KernelView;
use crate::kernel::{Kernel as _, NetlinkKernel as Kernel};
use crate::plan::HostFacts;
use crate::state::StateDir;

/// Where `check` finds what it inspects. Every path and program can be overridden,
/// so that a test lab (or an unusual host) can point it at its own files.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckOptions {
    /// Root of the sysctl tree (read in the current network namespace).
    #[arg(long, value_name = "DIR", default_value = "/proc/sys")]
    pub proc_sys: PathBuf,
    /// Root of sysfs (only the bridges' `addr_assign_type` is read there).
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    pub sysfs: PathBuf,
    /// libvirt's hook directory (holding `qemu` and `qemu.d/`).
    #[arg(long, value_name = "DIR", default_value = "/etc/libvirt/hooks")]
    pub libvirt_hooks_dir: PathBuf,
    /// The libvirt daemon, asked for its version with `--version`
    /// [default: libvirtd, else virtqemud].
    #[arg(long, value_name = "PROGRAM")]
    pub libvirtd: Option<PathBuf>,
    /// virsh, run as `virsh nwfilter-list` to see the nwfilter driver answer.
    #[arg(long, value_name = "PROGRAM", default_value = "virsh")]
    pub virsh: PathBuf,
    /// libvirt connection URI for virsh.
    #[arg(long, short = 'c', value_name = "URI")]
    pub connect: Option<String>,
    /// ebtables, run as `ebtables --version` (libvirt's nwfilter needs it).
    #[arg(long, value_name = "PROGRAM", default_value = "ebtables")]
    pub ebtables: PathBuf,
    /// birdc, run as `birdc -s SOCKET show status`.
    #[arg(long, value_name = "PROGRAM", default_value = "birdc")]
    pub birdc: PathBuf,
    /// BIRD's control socket.
    #[arg(long, value_name = "PATH", default_value = "/run/bird/bird.ctl")]
    pub bird_socket: PathBuf,
    /// BIRD's configuration file.
    #[arg(long, value_name = "PATH", default_value = "/etc/bird/bird.conf")]
    pub bird_config: PathBuf,
    /// vtysh, run as `vtysh [-N PATHSPACE] -c 'show running-config'`.
    #[arg(long, value_name = "PROGRAM", default_value = "vtysh")]
    pub vtysh: PathBuf,
    /// FRR pathspace (vtysh -N), for FRR running in a named namespace.
    #[arg(long, value_name = "NAME")]
    pub frr_pathspace: Option<String>,
    /// FRR's configuration file, read when FRR is not running.
    #[arg(long, value_name = "PATH", default_value = "/etc/frr/frr.conf")]
    pub frr_config: PathBuf,
    /// cloudstack-agent's properties (for its `control.cidr`).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/cloudstack/agent/agent.properties"
    )]
    pub agent_properties: PathBuf,
}

impl Default for CheckOptions {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            o: CheckOptions,
        }
        Wrap::parse_from(["check"]).o
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One inspected item.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Stable identifier (docs/TROUBLESHOOTING.md lists them all).
    pub id: &'static str,
    /// What the item is about when there can be several (a bridge's name).
    pub subject: Option<String>,
    pub status: Status,
    /// What was found, as a sentence.
    pub summary: String,
    /// For a failure or warning: what to do (commands or configuration lines).
    pub fix: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    /// No item failed (warnings do not make a host unready).
    pub ready: bool,
    pub items: Vec<Item>,
}

impl Report {
    pub fn failed(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.status == Status::Fail)
    }
}

fn ok(id: &'static str, subject: Option<&str>, summary: String) -> Item {
    Item {
        id,
        subject: subject.map(str::to_string),
        status: Status::Ok,
        summary,
        fix: None,
    }
}

fn fail(id: &'static str, subject: Option<&str>, summary: String, fix: String) -> Item {
    Item {
        id,
        subject: subject.map(str::to_string),
        status: Status::Fail,
        summary,
        fix: Some(fix),
    }
}

fn warn(id: &'static str, subject: Option<&str>, summary: String, fix: String) -> Item {
    Item {
        status: Status::Warn,
        ..fail(id, subject, summary, fix)
    }
}

/// An interface as netlink reports it.
#[derive(Debug, Clone)]
struct Link {
    index: u32,
    name: String,
    up: bool,
    kind: Option<String>,
    master: Option<u32>,
    mac: Option<Mac>,
}

#[derive(Debug, Clone)]
struct Addr {
    index: u32,
    net: IpNet,
    dad_failed: bool,
}

/// What the kernel of the current network namespace says.
struct KernelFacts {
    links: Vec<Link>,
    addresses: Vec<Addr>,
    /// Interfaces with at least one IPv6 proxy neighbour entry.
    ndp_proxied: HashSet<u32>,
}

impl KernelFacts {
    fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }
    fn name(&self, index: u32) -> String {
        self.links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.clone())
            .unwrap_or_else(|| format!("#{index}"))
    }
}

async fn kernel_facts() -> Result<KernelFacts, String> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("cannot open a netlink socket: {e}"))?;
    tokio::spawn(conn);
    let mut links = Vec::new();
    let mut s = handle.link().get().execute();
    while let Some(m) = s
        .try_next()
        .await
        .map_err(|e| format!("cannot list the interfaces: {e}"))?
    {
        let mut l = Link {
            index: m.header.index,
            name: String::new(),
            up: m.header.flags.contains(LinkFlags::Up),
            kind: None,
            master: None,
            mac: None,
        };
        for a in m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name = n,
                LinkAttribute::Controller(i) => l.master = Some(i),
                LinkAttribute::Address(b) if b.len() == 6 => {
                    let mut m = [0u8; 6];
                    m.copy_from_slice(&b);
                    l.mac = Some(Mac(m));
                }
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            l.kind = Some(match k {
                                InfoKind::Tun => "tun".to_string(),
                                InfoKind::Bridge => "bridge".to_string(),
                                other => other.to_string(),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        links.push(l);
    }
    let mut addresses = Vec::new();
    let mut s = handle.address().get().execute();
    while let Some(m) = s
        .try_next()
        .await
        .map_err(|e| format!("cannot list the addresses: {e}"))?
    {
        let mut ip = None;
        let mut dad_failed = m.header.flags.contains(AddressHeaderFlags::Dadfailed);
        for a in &m.attributes {
            match a {
                AddressAttribute::Local(x) => ip = Some(*x),
                AddressAttribute::Address(x) if ip.is_none() => ip = Some(*x),
                AddressAttribute::Flags(f) => {
                    dad_failed |= f.contains(netlink_packet_route::address::AddressFlags::Dadfailed)
                }
                _ => {}
            }
        }
        if let Some(net) = ip.and_then(|ip| IpNet::new(ip, m.header.prefix_len).ok()) {
            addresses.push(Addr {
                index: m.header.index,
                net,
                dad_failed,
            });
        }
    }
    let mut ndp_proxied = HashSet::new();
    let mut s = handle.neighbours().get().proxies().execute();
    while let Ok(Some(m)) = s.try_next().await {
        ndp_proxied.insert(m.header.ifindex);
    }
    Ok(KernelFacts {
        links,
        addresses,
        ndp_proxied,
    })
}

/// Reads one sysctl (`net/ipv4/ip_forward`) under the sysctl root.
fn sysctl(opts: &CheckOptions, key: &str) -> Option<i64> {
    std::fs::read_to_string(opts.proc_sys.join(key))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `net/ipv4/conf/eth0.100/rp_filter` → `net.ipv4.conf.eth0/100.rp_filter` (sysctl's
/// notation: a dot inside an interface name becomes a slash).
fn dotted(key: &str) -> String {
    key.split('/')
        .map(|c| c.replace('.', "/"))
        .collect::<Vec<_>>()
        .join(".")
}

/// Runs a program with a time limit; `None` when it cannot be started.
fn run(program: &Path, args: &[&str]) -> Option<std::process::Output> {
    let program = resolve(program)?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().ok(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let mut out = child.wait_with_output().ok()?;
                out.stderr
                    .extend_from_slice(b"timed out after 10 s (killed)");
                return Some(out);
            }
        }
    }
}

/// A program name is looked up in PATH and the sbin directories (not always in a
/// user's PATH); a path is taken as it is.
fn resolve(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.exists().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// Inspects the host. Never changes anything.
pub async fn check(config: &Config, opts: &CheckOptions) -> Result<Report, String> {
    let facts = kernel_facts().await?;
    let mut items = Vec::new();
    let existing: Vec<&str> = config
        .bridges
        .iter()
        .filter(|b| facts.link(b).is_some())
        .map(String::as_str)
        .collect();
    for b in &config.bridges {
        items.extend(bridge_items(config, opts, &facts, b));
    }
    let mut kernel = Kernel::connect().map_err(|e| e.to_string())?;
    let routes = kernel.routes().await.map_err(|e| e.to_string())?;
    // Uplinks: interfaces that routes with a next hop leave through (the fabric side).
    let mut uplinks: Vec<String> = routes
        .iter()
        .filter(|r| r.gateway.is_some() && r.protocol != config.route_protocol)
        .filter_map(|r| r.ifindex)
        .map(|i| facts.name(i))
        .filter(|n| !config.is_routed_bridge(n))
        .collect();
    uplinks.sort();
    uplinks.dedup();
    items.push(forwarding(opts, &existing, &uplinks, 4));
    items.push(forwarding(opts, &existing, &uplinks, 6));
    items.push(rp_filter(opts, &uplinks));
    items.extend(accept_ra(opts, &existing));
    items.push(proxy_arp(opts, &uplinks));
    items.push(proxy_ndp(opts, &facts, &uplinks));
    items.push(send_redirects(opts, &existing));
    items.push(control_network(config, opts, &facts));
    items.push(libvirt_version(opts));
    items.push(hook_installed(opts));
    items.push(nwfilter(opts));
    items.push(ebtables(opts));
    items.extend(routing_daemon(config, opts));
    items.push(state(config, &mut kernel).await);
    Ok(Report {
        ready: items.iter().all(|i| i.status != Status::Fail),
        items,
    })
}

fn expected_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => 64,
        IpAddr::V6(_) => 128,
    }
}

fn bridge_items(config: &Config, opts: &CheckOptions, facts: &KernelFacts, b: &str) -> Vec<Item> {
    let gateways: Vec<String> = config
        .gateways
        .iter()
        .map(|g| format!("{g}/{}", expected_prefix(*g)))
        .collect();
    let add_gateways = gateways
        .iter()
        .map(|g| format!("ip address add {g} dev {b}"))
        .collect::<Vec<_>>()
        .join("; ");
    let Some(link) = facts.link(b) else {
        return vec![fail(
            "bridge",
            Some(b),
            format!("The routed bridge {b} does not exist."),
            format!(
                "Create it in the host's network configuration (ifupdown, netplan or systemd-networkd); by hand: \
                 ip link add {b} type bridge; ip link set {b} up; {add_gateways}."
            ),
        )];
    };
    if link.kind.as_deref() != Some("bridge") {
        return vec![fail(
            "bridge",
            Some(b),
            format!(
                "{b} exists but is not a bridge (kind {}).",
                link.kind.as_deref().unwrap_or("none: a physical interface")
            ),
            format!("Name a bridge in `bridges` of virt-l3's configuration, or make {b} a bridge."),
        )];
    }
    if !link.up {
        // The kernel drops a link's IPv6 addresses when it goes down: say so in the fix.
        let missing: Vec<String> = missing_gateways(config, facts, link)
            .into_iter()
            .map(|g| format!("ip address add {g} dev {b}"))
            .collect();
        let mut fix = format!("ip link set {b} up");
        if !missing.is_empty() {
            fix.push_str(&format!(
                "; then put back the gateway addresses the kernel removed when it went down: {}",
                missing.join("; ")
            ));
        }
        fix.push_str(". Then run `virt-l3 reconcile` to restore the routes of running VMs.");
        return vec![fail(
            "bridge",
            Some(b),
            format!("The routed bridge {b} is down: guests on it are cut off."),
            fix,
        )];
    }
    let mut items = vec![ok(
        "bridge",
        Some(b),
        format!("{b} exists, is a bridge and is up."),
    )];
    // Gateways.
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for g in &config.gateways {
        let want = expected_prefix(*g);
        let on: Vec<&Addr> = facts
            .addresses
            .iter()
            .filter(|a| a.index == link.index && a.net.addr() == *g)
            .collect();
        match on.first() {
            None => {
                problems.push(format!("{g}/{want} is missing"));
                fixes.push(format!("ip address add {g}/{want} dev {b}"));
            }
            Some(a) if a.net.prefix_len() != want => {
                problems.push(format!("{} has the wrong prefix length", a.net));
                fixes.push(format!(
                    "ip address del {} dev {b}; ip address add {g}/{want} dev {b}",
                    a.net
                ));
            }
            Some(a) if a.dad_failed => {
                problems.push(format!(
                    "{} failed duplicate address detection (another machine on this bridge's layer 2 has it: an uplink in the bridge?)",
                    a.net
                ));
                fixes.push(format!(
                    "take the other machine off the bridge, then: ip address del {g}/{want} dev {b}; ip address add {g}/{want} nodad dev {b}"
                ));
            }
            Some(_) => {}
        }
    }
    items.push(if problems.is_empty() {
        ok(
            "bridge-gateways",
            Some(b),
            format!("{b} carries the gateways {}.", gateways.join(", ")),
        )
    } else {
        fail(
            "bridge-gateways",
            Some(b),
            format!("Guests' gateway addresses on {b}: {}.", problems.join("; ")),
            format!(
                "{} (and the same in the host's network configuration, so that it survives a reboot).",
                fixes.join("; ")
            ),
        )
    });
    // Ports: only guests' taps (tun driver, libvirt's vnetN).
    let ports: Vec<&Link> = facts
        .links
        .iter()
        .filter(|l| l.master == Some(link.index))
        .collect();
    let foreign: Vec<&&Link> = ports
        .iter()
        .filter(|l| l.kind.as_deref() != Some("tun"))
        .collect();
    items.push(if foreign.is_empty() {
        ok(
            "bridge-ports",
            Some(b),
            format!(
                "{b} has {} port(s), all guest taps (tun/tap devices).",
                ports.len()
            ),
        )
    } else {
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
                "{b} has ports that are not guest taps: {}. A routed bridge must not reach the fabric at layer 2: guests would see each other's and the fabric's broadcasts, and the gateway addresses would clash with other hypervisors'.",
                names.join(", ")
            ),
            format!(
                "{}; connect the uplink to the fabric as a routed interface of its own (and remove it from the bridge in the host's network configuration).",
                cmds.join("; ")
            ),
        )
    });
    // MAC.
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
    items.push(match config.gateway_mac {
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
    });
    items
}

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
        .map(|g| format!("{g}/{}", expected_prefix(*g)))
        .collect()
}

/// `sysctl -w` lines plus where to persist them.
fn sysctl_fix(settings: &[(String, i64)]) -> String {
    let w: Vec<String> = settings
        .iter()
        .map(|(k, v)| format!("{}={v}", dotted(k)))
        .collect();
    format!(
        "sysctl -w {}; persist it in /etc/sysctl.d/70-virt-l3-host.conf ({}).",
        w.join(" "),
        w.iter()
            .map(|l| l.replace('=', " = "))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// IPv4 forwards by the setting of the interface a packet arrives on: the bridges (from
/// guests) and the uplinks (to guests). IPv6 forwards by `all`; an interface's own
/// setting makes it act as a router there (the router flag in its neighbour adverts).
fn forwarding(opts: &CheckOptions, bridges: &[&str], uplinks: &[String], family: u8) -> Item {
    let id = if family == 4 {
        "forwarding-ipv4"
    } else {
        "forwarding-ipv6"
    };
    let mut keys = vec![if family == 4 {
        "net/ipv4/ip_forward".to_string()
    } else {
        "net/ipv6/conf/all/forwarding".to_string()
    }];
    for b in bridges {
        keys.push(format!("net/ipv{family}/conf/{b}/forwarding"));
    }
    if family == 4 {
        for u in uplinks {
            keys.push(format!("net/ipv4/conf/{u}/forwarding"));
        }
    }
    let bad: Vec<(String, Option<i64>)> = keys
        .iter()
        .map(|k| (k.clone(), sysctl(opts, k)))
        .filter(|(_, v)| *v != Some(1))
        .collect();
    if bad.is_empty() {
        return ok(
            id,
            None,
            format!(
                "IPv{family} forwarding is on ({}).",
                keys.iter()
                    .map(|k| dotted(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    let found: Vec<String> = bad
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{} = {v}", dotted(k)),
            None => format!("{} unreadable", dotted(k)),
        })
        .collect();
    let mut settings: Vec<(String, i64)> = vec![(keys[0].clone(), 1)];
    settings.extend(
        bad.iter()
            .skip_while(|(k, _)| *k == keys[0])
            .map(|(k, _)| (k.clone(), 1)),
    );
    settings.dedup();
    let note = if family == 6 {
        " Note: with IPv6 forwarding on, interfaces stop accepting router advertisements unless accept_ra = 2: give the uplinks static addresses and routes, or BGP-learned ones."
    } else {
        ""
    };
    fail(
        id,
        None,
        format!(
            "IPv{family} forwarding is off ({}): the host does not route guests' traffic.",
            found.join(", ")
        ),
        format!("{}{note}", sysctl_fix(&settings)),
    )
}

fn rp_filter(opts: &CheckOptions, uplinks: &[String]) -> Item {
    let all = sysctl(opts, "net/ipv4/conf/all/rp_filter").unwrap_or(0);
    let mut strict = Vec::new();
    if all == 1 {
        strict.push("net.ipv4.conf.all.rp_filter = 1 (makes every interface strict)".to_string());
    }
    let mut fix = Vec::new();
    if all == 1 {
        fix.push(("net/ipv4/conf/all/rp_filter".to_string(), 2));
    }
    for u in uplinks {
        let key = format!("net/ipv4/conf/{u}/rp_filter");
        if sysctl(opts, &key) == Some(1) {
            strict.push(format!("{} = 1", dotted(&key)));
            fix.push((key, 2));
        }
    }
    if strict.is_empty() {
        return ok(
            "rp_filter",
            None,
            format!(
                "No strict reverse-path filter on the uplinks ({}; all = {all}).",
                if uplinks.is_empty() {
                    "none found".to_string()
                } else {
                    uplinks.join(", ")
                }
            ),
        );
    }
    fail(
        "rp_filter",
        None,
        format!(
            "Strict reverse-path filtering: {}. In a routed fabric the traffic for a guest may arrive on an uplink other than the one this host's route back to the sender uses (ECMP, several upstream sessions); strict mode drops it.",
            strict.join(", ")
        ),
        format!("Use loose mode (2) or off (0): {}", sysctl_fix(&fix)),
    )
}

fn accept_ra(opts: &CheckOptions, bridges: &[&str]) -> Vec<Item> {
    bridges
        .iter()
        .map(|b| {
            let key = format!("net/ipv6/conf/{b}/accept_ra");
            let ra = sysctl(opts, &key).unwrap_or(0);
            let fwd = sysctl(opts, &format!("net/ipv6/conf/{b}/forwarding")).unwrap_or(0);
            // The kernel takes router advertisements when accept_ra is 2, or 1 without forwarding.
            if ra == 2 || (ra == 1 && fwd == 0) {
                fail(
                    "accept_ra",
                    Some(b),
                    format!(
                        "{b} accepts IPv6 router advertisements ({} = {ra}, forwarding {fwd}): a guest sending one could become this host's default router or give it addresses.",
                        dotted(&key)
                    ),
                    sysctl_fix(&[(key, 0)]),
                )
            } else {
                ok(
                    "accept_ra",
                    Some(b),
                    format!("{b} ignores router advertisements (accept_ra = {ra}, forwarding = {fwd})."),
                )
            }
        })
        .collect()
}

fn proxy_arp(opts: &CheckOptions, uplinks: &[String]) -> Item {
    let mut on = Vec::new();
    for i in std::iter::once("all").chain(uplinks.iter().map(String::as_str)) {
        let key = format!("net/ipv4/conf/{i}/proxy_arp");
        if sysctl(opts, &key).unwrap_or(0) != 0 {
            on.push(key);
        }
    }
    if on.is_empty() {
        return ok(
            "proxy_arp",
            None,
            "Proxy ARP is off on `all` and the uplinks.".to_string(),
        );
    }
    fail(
        "proxy_arp",
        None,
        format!(
            "Proxy ARP is on ({}): the host answers ARP on the fabric side for every address it routes, guests' included, outside BGP; during a live migration both hypervisors answer for the guest.",
            on.iter().map(|k| dotted(k)).collect::<Vec<_>>().join(", ")
        ),
        sysctl_fix(&on.into_iter().map(|k| (k, 0)).collect::<Vec<_>>()),
    )
}

fn proxy_ndp(opts: &CheckOptions, facts: &KernelFacts, uplinks: &[String]) -> Item {
    let all = sysctl(opts, "net/ipv6/conf/all/proxy_ndp").unwrap_or(0) != 0;
    let mut on = Vec::new();
    let mut proxied = Vec::new();
    for u in uplinks {
        let key = format!("net/ipv6/conf/{u}/proxy_ndp");
        let here = sysctl(opts, &key).unwrap_or(0) != 0;
        if here {
            on.push(key);
        }
        let index = facts.link(u).map(|l| l.index);
        if (all || here) && index.is_some_and(|i| facts.ndp_proxied.contains(&i)) {
            proxied.push(u.clone());
        }
    }
    if all {
        on.insert(0, "net/ipv6/conf/all/proxy_ndp".to_string());
    }
    let settings: Vec<(String, i64)> = on.iter().map(|k| (k.clone(), 0)).collect();
    let listed = on.iter().map(|k| dotted(k)).collect::<Vec<_>>().join(", ");
    if !proxied.is_empty() {
        return fail(
            "proxy_ndp",
            None,
            format!(
                "NDP proxying is on ({listed}) and {} hold proxy entries (ip -6 neighbour show proxy): the host answers neighbour solicitations on the fabric side outside BGP; during a live migration both hypervisors answer.",
                proxied.join(", ")
            ),
            format!(
                "Remove the entries (ip -6 neighbour del proxy ADDRESS dev IFACE) and whatever adds them (ndppd?), then {}",
                sysctl_fix(&settings)
            ),
        );
    }
    if !on.is_empty() {
        return warn(
            "proxy_ndp",
            None,
            format!("NDP proxying is on ({listed}) but no uplink has proxy entries: harmless until something adds one."),
            sysctl_fix(&settings),
        );
    }
    ok(
        "proxy_ndp",
        None,
        "NDP proxying is off on `all` and the uplinks.".to_string(),
    )
}

fn send_redirects(opts: &CheckOptions, bridges: &[&str]) -> Item {
    let mut on = Vec::new();
    for i in std::iter::once("all").chain(bridges.iter().copied()) {
        let key = format!("net/ipv4/conf/{i}/send_redirects");
        if sysctl(opts, &key).unwrap_or(1) != 0 {
            on.push(key);
        }
    }
    if on.is_empty() {
        return ok(
            "send_redirects",
            None,
            "IPv4 ICMP redirects are off (all and the routed bridges).".to_string(),
        );
    }
    fail(
        "send_redirects",
        None,
        format!(
            "IPv4 ICMP redirects are on ({}): guest-to-guest traffic hairpins through the gateway and the host would tell guests to talk directly at layer 2, which is blocked.",
            on.iter().map(|k| dotted(k)).collect::<Vec<_>>().join(", ")
        ),
        format!(
            "{} virt-l3 turns them off when it routes a VM (disable_redirects) and its package ships /usr/lib/sysctl.d/60-virt-l3.conf: run `sysctl --system` after installing it.",
            sysctl_fix(&on.into_iter().map(|k| (k, 0)).collect::<Vec<_>>())
        ),
    )
}

fn control_network(config: &Config, opts: &CheckOptions, facts: &KernelFacts) -> Item {
    let mut clashes = Vec::new();
    for a in &facts.addresses {
        let name = facts.name(a.index);
        if config.is_routed_bridge(&name) || !a.net.addr().is_ipv4() {
            continue;
        }
        for g in config.gateways.iter().filter(|g| g.is_ipv4()) {
            if a.net.trunc().contains(g) {
                clashes.push((name.clone(), a.net, *g));
            }
        }
    }
    if clashes.is_empty() {
        return ok(
            "control-network",
            None,
            "No other interface's IPv4 network holds the guests' gateway address.".to_string(),
        );
    }
    let current = std::fs::read_to_string(&opts.agent_properties)
        .ok()
        .and_then(|t| {
            t.lines().map(str::trim).find_map(|l| {
                l.strip_prefix("control.cidr")
                    .map(|v| v.trim_start_matches([' ', '=', ':']).trim().to_string())
            })
        });
    let list: Vec<String> = clashes
        .iter()
        .map(|(n, net, g)| format!("{net} on {n} holds the gateway {g}"))
        .collect();
    let cloudstack = clashes.iter().any(|(n, _, _)| n == "cloud0");
    let mut summary = format!(
        "The guests' gateway is also another interface's network: {}. Traffic the host sends to that network, and guests' traffic to it, goes out there instead of staying on the routed bridge",
        list.join("; ")
    );
    if cloudstack {
        summary.push_str(
            " (cloud0 is CloudStack's control network for system VMs: guests could reach it)",
        );
    }
    summary.push('.');
    let fix = format!(
        "Move CloudStack's control network off the gateway: set control.cidr in {} (now {}) to a link-local range without {}, e.g. `control.cidr=169.254.128.0/17` (cloud0 then gets 169.254.128.1), set the zone's control.cidr and control.gateway in the management server to match, restart cloudstack-agent and remove the old address (ip address del {} dev {}). Or choose other guest gateways (`gateways` in virt-l3's configuration) outside every local network.",
        opts.agent_properties.display(),
        current.as_deref().unwrap_or("unset: the default 169.254.0.0/16"),
        clashes[0].2,
        clashes[0].1,
        clashes[0].0,
    );
    fail("control-network", None, summary, fix)
}

/// `libvirtd (libvirt) 9.0.0` → (9, 0, 0).
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    text.split_whitespace().rev().find_map(|w| {
        let mut it = w.split('.').map(|p| p.parse::<u32>());
        let major = it.next()?.ok()?;
        let minor = it.next()?.ok()?;
        let micro = it.next().and_then(Result::ok).unwrap_or(0);
        Some((major, minor, micro))
    })
}

fn libvirt_version(opts: &CheckOptions) -> Item {
    let candidates: Vec<PathBuf> = match &opts.libvirtd {
        Some(p) => vec![p.clone()],
        None => vec!["libvirtd".into(), "virtqemud".into()],
    };
    let found = candidates
        .iter()
        .find_map(|p| run(p, &["--version"]).map(|o| (p, o)));
    let Some((program, out)) = found else {
        return fail(
            "libvirt",
            None,
            format!(
                "No libvirt daemon found ({}).",
                candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            "apt-get install libvirt-daemon-system (Debian, Ubuntu) or dnf install libvirt-daemon-driver-qemu (EL).".to_string(),
        );
    };
    let text = String::from_utf8_lossy(&out.stdout);
    match parse_version(&text) {
        Some(v) if v >= (6, 5, 0) => ok(
            "libvirt",
            None,
            format!(
                "libvirt {}.{}.{} ({}) runs the hooks in qemu.d/ (6.5 and later).",
                v.0,
                v.1,
                v.2,
                program.display()
            ),
        ),
        Some(v) => fail(
            "libvirt",
            None,
            format!(
                "libvirt {}.{}.{} is older than 6.5: it does not run hooks in qemu.d/, so virt-l3's hook never runs.",
                v.0, v.1, v.2
            ),
            "Upgrade libvirt to 6.5 or later (Debian 11 has 7.0, Debian 12 9.0). Where that is impossible and nothing else owns it: ln -s /usr/bin/virt-l3 /etc/libvirt/hooks/qemu (cloudstack-agent overwrites that file on upgrade).".to_string(),
        ),
        None => fail(
            "libvirt",
            None,
            format!(
                "Cannot read libvirt's version from `{} --version` ({}).",
                program.display(),
                first_line(&out.stdout).if_empty(first_line(&out.stderr))
            ),
            "Check the libvirt installation: libvirtd --version must print its version.".to_string(),
        ),
    }
}

trait IfEmpty {
    fn if_empty(self, other: String) -> String;
}
impl IfEmpty for String {
    fn if_empty(self, other: String) -> String {
        if self.is_empty() {
            other
        } else {
            self
        }
    }
}

/// Whether `p` is virt-l3: the running binary itself, or a file named virt-l3.
fn is_virt_l3(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(target) = std::fs::canonicalize(p) else {
        return false;
    };
    if target.file_name().is_some_and(|n| n == "virt-l3") {
        return true;
    }
    let same = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    };
    std::env::current_exe().is_ok_and(|exe| same(&exe, &target))
}

fn hook_installed(opts: &CheckOptions) -> Item {
    let entry = opts.libvirt_hooks_dir.join("qemu.d/virt-l3");
    let qemu = opts.libvirt_hooks_dir.join("qemu");
    let install = format!(
        "ln -sfn /usr/bin/virt-l3 {} (or `hooks/install.sh`), then make libvirt rescan its hooks: systemctl reload libvirtd (SIGHUP)",
        entry.display()
    );
    for p in [&entry, &qemu] {
        if is_virt_l3(p) && is_executable(p) {
            return ok(
                "hook",
                None,
                format!("The hook {} is virt-l3 and executable.", p.display()),
            );
        }
    }
    if std::fs::symlink_metadata(&entry).is_ok() {
        let why = if std::fs::metadata(&entry).is_err() {
            "is a dangling symbolic link".to_string()
        } else if !is_executable(&entry) {
            "is not executable: libvirt skips it".to_string()
        } else {
            "is not virt-l3".to_string()
        };
        return fail(
            "hook",
            None,
            format!("The hook entry {} {why}.", entry.display()),
            install,
        );
    }
    fail(
        "hook",
        None,
        format!(
            "virt-l3 is not installed as libvirt's qemu hook (neither {} nor {} is virt-l3): VMs start without routes.",
            entry.display(),
            qemu.display()
        ),
        install,
    )
}

fn nwfilter(opts: &CheckOptions) -> Item {
    let mut args = Vec::new();
    if let Some(c) = &opts.connect {
        args.extend(["-c", c.as_str()]);
    }
    args.push("nwfilter-list");
    let Some(out) = run(&opts.virsh, &args) else {
        return fail(
            "nwfilter",
            None,
            format!(
                "{} is not installed: cannot ask libvirt for its nwfilter driver.",
                opts.virsh.display()
            ),
            "apt-get install libvirt-clients (Debian) or dnf install libvirt-client (EL)."
                .to_string(),
        );
    };
    if out.status.success() {
        return ok(
            "nwfilter",
            None,
            "libvirt's nwfilter driver answers (virsh nwfilter-list).".to_string(),
        );
    }
    fail(
        "nwfilter",
        None,
        format!(
            "`virsh nwfilter-list` failed: {}. Without the nwfilter driver libvirt cannot attach virt-l3's filters and the hook refuses VMs (require_nwfilter).",
            first_line(&out.stderr).if_empty(first_line(&out.stdout))
        ),
        "Start libvirt (systemctl enable --now libvirtd); with modular daemons also the nwfilter driver (systemctl enable --now virtnwfilterd.socket; EL: dnf install libvirt-daemon-driver-nwfilter).".to_string(),
    )
}

fn ebtables(opts: &CheckOptions) -> Item {
    match run(&opts.ebtables, &["--version"]) {
        Some(o) if o.status.success() => ok(
            "ebtables",
            None,
            format!("ebtables is available ({}).", first_line(&o.stdout)),
        ),
        Some(o) => fail(
            "ebtables",
            None,
            format!("`ebtables --version` failed: {}.", first_line(&o.stderr)),
            "Reinstall ebtables (apt-get install --reinstall ebtables).".to_string(),
        ),
        None => fail(
            "ebtables",
            None,
            format!(
                "{} is not installed: libvirt's nwfilter needs it for the MAC and address rules.",
                opts.ebtables.display()
            ),
            "apt-get install ebtables (Debian) or dnf install ebtables-nft (EL), then restart libvirtd.".to_string(),
        ),
    }
}

// ---- routing daemons ----

enum Daemon {
    Bird,
    /// FRR with its running configuration.
    Frr(String),
}

fn bird_running(opts: &CheckOptions) -> bool {
    let sock = opts.bird_socket.to_string_lossy().into_owned();
    run(&opts.birdc, &["-s", &sock, "show", "status"])
        .is_some_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("BIRD"))
}

fn frr_running(opts: &CheckOptions) -> Option<String> {
    let mut args = Vec::new();
    if let Some(n) = &opts.frr_pathspace {
        args.extend(["-N", n.as_str()]);
    }
    args.extend(["-c", "show running-config"]);
    let o = run(&opts.vtysh, &args)?;
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    (o.status.success() && !text.trim().is_empty()).then_some(text)
}

fn routing_daemon(config: &Config, opts: &CheckOptions) -> Vec<Item> {
    let mut running = Vec::new();
    if bird_running(opts) {
        running.push(Daemon::Bird);
    }
    if let Some(c) = frr_running(opts) {
        running.push(Daemon::Frr(c));
    }
    let names: Vec<&str> = running
        .iter()
        .map(|d| match d {
            Daemon::Bird => "BIRD",
            Daemon::Frr(_) => "FRR",
        })
        .collect();
    let daemon = if running.is_empty() {
        fail(
            "routing-daemon",
            None,
            format!(
                "No routing daemon answers (BIRD on {}, FRR through {}): nothing announces the guests' routes to the fabric.",
                opts.bird_socket.display(),
                opts.vtysh.display()
            ),
            "Start BIRD (systemctl enable --now bird) or FRR (bgpd on in /etc/frr/daemons; systemctl enable --now frr) with packaging/examples/bird.conf or frr.conf.".to_string(),
        )
    } else {
        ok(
            "routing-daemon",
            None,
            format!("{} running.", names.join(" and ")),
        )
    };
    // The configuration: of each running daemon; with none running, of the files there are.
    let mut sources: Vec<(String, Result<(), String>)> = Vec::new();
    let bird_file = |sources: &mut Vec<(String, Result<(), String>)>| {
        let label = format!("BIRD ({})", opts.bird_config.display());
        match std::fs::read_to_string(&opts.bird_config) {
            Ok(t) => sources.push((label, bird_selects(&t, config.route_protocol))),
            Err(e) => sources.push((label, Err(format!("cannot read it: {e}")))),
        }
    };
    if running.is_empty() {
        if opts.bird_config.exists() {
            bird_file(&mut sources);
        }
        if let Ok(t) = std::fs::read_to_string(&opts.frr_config) {
            sources.push((
                format!("FRR ({})", opts.frr_config.display()),
                frr_selects(&t, &config.bridges),
            ));
        }
    }
    for d in &running {
        match d {
            Daemon::Bird => bird_file(&mut sources),
            Daemon::Frr(c) => sources.push((
                "FRR (running configuration)".to_string(),
                frr_selects(c, &config.bridges),
            )),
        }
    }
    let good: Vec<&String> = sources
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(l, _)| l)
        .collect();
    let config_item = if !good.is_empty() {
        ok(
            "routing-config",
            None,
            format!(
                "{} announces virt-l3's routes (protocol {}, IPv4 and IPv6).",
                good.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                config.route_protocol
            ),
        )
    } else if sources.is_empty() {
        fail(
            "routing-config",
            None,
            format!(
                "No routing daemon configuration found ({} or {}).",
                opts.bird_config.display(),
                opts.frr_config.display()
            ),
            "Install packaging/examples/bird.conf as /etc/bird/bird.conf or packaging/examples/frr.conf as /etc/frr/frr.conf and fill in the @...@ placeholders.".to_string(),
        )
    } else {
        fail(
            "routing-config",
            None,
            format!(
                "The routing daemon does not announce virt-l3's routes: {}.",
                sources
                    .iter()
                    .map(|(l, r)| format!("{l}: {}", r.as_ref().err().map(String::as_str).unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            format!(
                "BIRD: a kernel protocol per family with `learn;` and `import where krt_source = {};`, and a BGP protocol exporting them (packaging/examples/bird.conf), then `birdc configure`. FRR: `redistribute kernel route-map VIRT-L3` in address-family ipv4 unicast and ipv6 unicast of `router bgp`, with `route-map VIRT-L3 permit 10` / `match interface {}` (packaging/examples/frr.conf).",
                config.route_protocol,
                config.bridges.join("` and `match interface ")
            ),
        )
    };
    vec![daemon, config_item]
}

/// BIRD configuration tokens: comments removed, words and punctuation split.
fn bird_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            i += 1;
            out.push(chars[start..i.min(chars.len())].iter().collect());
        } else if c.is_alphanumeric() || c == '_' || c == '.' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | ':' | '/'))
            {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c.is_whitespace() {
            i += 1;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if matches!(two.as_str(), "!=" | "<=" | ">=" | "!~" | "&&" | "||") {
                out.push(two);
                i += 2;
            } else {
                out.push(c.to_string());
                i += 1;
            }
        }
    }
    out
}

/// The tokens of the `{ ... }` block whose `{` is at or after `from`, and the index after it.
fn block(tokens: &[String], from: usize) -> Option<(&[String], usize)> {
    let open = from + tokens[from..].iter().position(|t| t == "{")?;
    let mut depth = 0;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        if t == "{" {
            depth += 1;
        } else if t == "}" {
            depth -= 1;
            if depth == 0 {
                return Some((&tokens[open + 1..j], j + 1));
            }
        }
    }
    None
}

/// Whether an import expression (or a filter body) accepts routes of protocol `proto`
/// by `krt_source`.
fn selects_source(tokens: &[String], proto: u8, defines: &HashMap<String, String>) -> bool {
    let value = |t: &str| -> Option<u8> {
        t.parse()
            .ok()
            .or_else(|| defines.get(t).and_then(|v| v.parse().ok()))
    };
    tokens.windows(3).enumerate().any(|(i, w)| {
        w[0] == "krt_source"
            && ((w[1] == "=" && value(&w[2]) == Some(proto))
                || (w[1] == "~"
                    && w[2] == "["
                    && tokens[i + 3..]
                        .iter()
                        .take_while(|t| *t != "]")
                        .any(|t| value(t) == Some(proto))))
    })
}

/// Checks a BIRD 2 configuration: a kernel protocol with `learn` importing the routes of
/// protocol `proto` for each family, and a BGP protocol that exports something.
pub fn bird_selects(text: &str, proto: u8) -> Result<(), String> {
    let tokens = bird_tokens(text);
    let mut defines = HashMap::new();
    let mut filters: HashMap<String, Vec<String>> = HashMap::new();
    let mut kernels = Vec::new();
    let mut bgp_exports = false;
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].as_str() {
            "define" if i + 3 < tokens.len() && tokens[i + 2] == "=" => {
                defines.insert(tokens[i + 1].clone(), tokens[i + 3].clone());
                i += 4;
            }
            "filter" if i + 2 < tokens.len() && tokens[i + 2] == "{" => {
                if let Some((body, next)) = block(&tokens, i + 2) {
                    filters.insert(tokens[i + 1].clone(), body.to_vec());
                    i = next;
                } else {
                    i += 1;
                }
            }
            "protocol" if i + 1 < tokens.len() => {
                let kind = tokens[i + 1].clone();
                match block(&tokens, i + 1) {
                    Some((body, next)) => {
                        if kind == "kernel" {
                            kernels.push(body.to_vec());
                        } else if kind == "bgp" {
                            bgp_exports |=
                                body.windows(2).any(|w| w[0] == "export" && w[1] != "none");
                        }
                        i = next;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    let mut families = BTreeMap::from([("ipv4", false), ("ipv6", false)]);
    for k in &kernels {
        let learn = k
            .windows(2)
            .any(|w| w[0] == "learn" && !matches!(w[1].as_str(), "off" | "no"));
        if !learn {
            continue;
        }
        for fam in ["ipv4", "ipv6"] {
            let Some(pos) = k.iter().position(|t| t == fam) else {
                continue;
            };
            let channel: &[String] = match block(k, pos) {
                Some((b, _)) if k.get(pos + 1).map(String::as_str) == Some("{") => b,
                _ => continue,
            };
            let Some(imp) = channel.iter().position(|t| t == "import") else {
                continue;
            };
            let rest = &channel[imp + 1..];
            let stmt: Vec<String> = match rest.first().map(String::as_str) {
                Some("all") => {
                    families.insert(fam, true);
                    continue;
                }
                Some("filter") if rest.get(1).map(String::as_str) == Some("{") => {
                    block(rest, 1).map(|(b, _)| b.to_vec()).unwrap_or_default()
                }
                Some("filter") => rest
                    .get(1)
                    .and_then(|n| filters.get(n))
                    .cloned()
                    .unwrap_or_default(),
                _ => rest.iter().take_while(|t| *t != ";").cloned().collect(),
            };
            if selects_source(&stmt, proto, &defines) {
                families.insert(fam, true);
            }
        }
    }
    let missing: Vec<&str> = families
        .iter()
        .filter(|(_, v)| !**v)
        .map(|(f, _)| *f)
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "no kernel protocol with `learn` imports krt_source = {proto} for {}",
            missing.join(" and ")
        ));
    }
    if !bgp_exports {
        problems.push("no BGP protocol exports routes".to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join(", "))
    }
}

/// Checks an FRR configuration: `redistribute kernel` in `router bgp` for IPv4 and IPv6
/// unicast, through a route-map (if any) that permits routes on every routed bridge.
pub fn frr_selects(text: &str, bridges: &[String]) -> Result<(), String> {
    // route-map NAME -> [(seq, permit, matches)]
    let mut maps: HashMap<String, Vec<(u32, bool, Vec<String>)>> = HashMap::new();
    let mut redistribute: HashMap<&'static str, Option<String>> = HashMap::new();
    enum Ctx {
        Top,
        Map(String),
        Bgp(&'static str),
        Other,
    }
    let mut ctx = Ctx::Top;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('!') {
            continue;
        }
        let indented = raw.starts_with(char::is_whitespace);
        let words: Vec<&str> = line.split_whitespace().collect();
        if !indented {
            ctx = match words.as_slice() {
                ["route-map", name, action, seq, ..] => {
                    let e = (seq.parse().unwrap_or(0), *action == "permit", Vec::new());
                    maps.entry(name.to_string()).or_default().push(e);
                    Ctx::Map(name.to_string())
                }
                ["router", "bgp", _] | ["router", "bgp"] => Ctx::Bgp("ipv4"),
                ["exit"] | ["end"] => Ctx::Top,
                _ => match ctx {
                    // `address-family` lines may be flush left in a hand-written file.
                    Ctx::Bgp(_)
                        if words.first() == Some(&"address-family")
                            || words.first() == Some(&"exit-address-family")
                            || words.first() == Some(&"redistribute") =>
                    {
                        ctx
                    }
                    _ => Ctx::Other,
                },
            };
            if !matches!(ctx, Ctx::Bgp(_)) {
                continue;
            }
        }
        match &mut ctx {
            Ctx::Map(name) if words.first() == Some(&"match") => {
                if let Some(e) = maps.get_mut(name.as_str()).and_then(|v| v.last_mut()) {
                    e.2.push(words[1..].join(" "));
                }
            }
            Ctx::Bgp(af) => match words.as_slice() {
                ["address-family", "ipv4", "unicast"] | ["address-family", "ipv4"] => *af = "ipv4",
                ["address-family", "ipv6", "unicast"] | ["address-family", "ipv6"] => *af = "ipv6",
                ["address-family", ..] => *af = "other",
                ["exit-address-family"] => *af = "ipv4",
                ["redistribute", "kernel", rest @ ..] => {
                    let map = match rest {
                        ["route-map", m, ..] => Some(m.to_string()),
                        _ => None,
                    };
                    redistribute.insert(af, map);
                }
                _ => {}
            },
            _ => {}
        }
    }
    let mut problems = Vec::new();
    for fam in ["ipv4", "ipv6"] {
        match redistribute.get(fam) {
            None => problems.push(format!(
                "no `redistribute kernel` for {fam} unicast in `router bgp`"
            )),
            Some(None) => {}
            Some(Some(m)) => {
                let mut entries = maps.get(m).cloned().unwrap_or_default();
                entries.sort_by_key(|e| e.0);
                for b in bridges {
                    let want = format!("interface {b}");
                    let verdict = entries
                        .iter()
                        .find(|(_, _, matches)| matches.iter().all(|x| *x == want))
                        .map(|e| e.1);
                    if verdict != Some(true) {
                        problems.push(format!(
                            "route-map {m} ({fam}) does not permit routes on {b} (needs an entry with `match interface {b}`)"
                        ));
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join(", "))
    }
}

/// State and kernel agree when `virt-l3 reconcile` would change nothing: the same
/// decisions (records against libvirt's status files: adopt, prune, promote, demote)
/// and the same kernel diff, without its lock, its writes or its MAC pinning.
async fn state(config: &Config, kernel: &mut Kernel) -> Item {
    use crate::reconcile::{desired, diff, running_domains, Desired, ReconcileError};
    let store = StateDir::new(&config.state_dir);
    let records = match store.records() {
        Ok(r) => r,
        Err(e) => {
            return fail(
                "state",
                None,
                format!("Cannot read virt-l3's records: {e}."),
                format!(
                    "Check {} (virt-l3's state_dir): it must be readable by root.",
                    config.state_dir.display()
                ),
            )
        }
    };
    let recorded = records.len();
    let (d, libvirt_note) = match running_domains(&config.libvirt_status_dir) {
        Ok(running) => {
            let host = match kernel.host_addresses().await {
                Ok(a) => HostFacts { addresses: a },
                Err(e) => return cannot_read_kernel(e),
            };
            let incoming: HashSet<String> = store.incoming().into_iter().collect();
            let d = desired(
                config,
                records,
                &running,
                &incoming,
                &host,
                &store,
                crate::state::now_ms(),
            );
            (d, String::new())
        }
        Err(ReconcileError::NoStatusDir(dir)) => (
            Desired {
                keep: records,
                ..Desired::default()
            },
            format!(
                " (libvirt's status directory {dir} does not exist: records not compared with running domains)"
            ),
        ),
        Err(e) => {
            return fail(
                "state",
                None,
                format!("{e}."),
                "Run check as root.".to_string(),
            )
        }
    };
    let view = match KernelView::read(kernel, &config.bridges).await {
        Ok(v) => v,
        Err(e) => return cannot_read_kernel(e),
    };
    let mut wanted: Vec<crate::plan::Entry> = Vec::new();
    for r in &d.keep {
        wanted.extend(r.plan.entries(r.metric));
    }
    // As reconcile: entries of a missing bridge come back with the bridge (item `bridge`).
    wanted.retain(|e| {
        let b = match e {
            crate::plan::Entry::Route(r) => &r.bridge,
            crate::plan::Entry::Neighbour(n) => &n.bridge,
        };
        view.bridges.contains_key(b)
    });
    let kd = diff(&wanted, &view, config.route_protocol);
    let mut found: Vec<String> = d
        .changes
        .iter()
        .map(|c| {
            format!(
                "{} {}{}",
                c.action,
                c.what,
                c.domain
                    .as_ref()
                    .map(|n| format!(" (domain {n})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    found.extend(kd.add.iter().map(|e| format!("missing {e}")));
    found.extend(kd.remove_routes.iter().map(|r| {
        format!(
            "stray protocol-{} route {} metric {}",
            r.protocol, r.destination, r.metric
        )
    }));
    found.extend(
        kd.remove_neighbours
            .iter()
            .map(|n| format!("stray neighbour {}", n.address)),
    );
    if found.is_empty() {
        return ok(
            "state",
            None,
            format!(
                "virt-l3's records ({recorded}), libvirt's running domains and the kernel agree: reconcile would change nothing{libvirt_note}."
            ),
        );
    }
    fail(
        "state",
        None,
        format!(
            "virt-l3's records, libvirt's running domains and the kernel disagree{libvirt_note}: {}.",
            found.join("; ")
        ),
        "virt-l3 reconcile (`virt-l3 reconcile --dry-run` lists the same changes; `virt-l3 status` shows each domain's entries). Keep virt-l3-watch running: it does this by itself within a second, and promotes live-migrated VMs.".to_string(),
    )
}

fn cannot_read_kernel(e: crate::kernel::KernelError) -> Item {
    fail(
        "state",
        None,
        format!("Cannot read the kernel's routes and neighbours: {e}."),
        "Run check as root.".to_string(),
    )
}

/// The text report: one line per item, the fix indented under each failure or warning.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for i in &report.items {
        let mark = match i.status {
            Status::Ok => "ok  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        let subject = i
            .subject
            .as_deref()
            .map(|s| format!(" {s}"))
            .unwrap_or_default();
        out.push_str(&format!("{mark} {}{subject}: {}\n", i.id, i.summary));
        if let Some(f) = &i.fix {
            out.push_str(&format!("     fix: {f}\n"));
        }
    }
    let failed = report.failed().count();
    if report.ready {
        out.push_str("ready\n");
    } else {
        out.push_str(&format!("not ready: {failed} item(s) failed\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_BIRD: &str = include_str!("../packaging/examples/bird.conf");
    const EXAMPLE_FRR: &str = include_str!("../packaging/examples/frr.conf");

    #[test]
    fn shipped_examples_pass() {
        assert_eq!(bird_selects(EXAMPLE_BIRD, 52), Ok(()));
        assert_eq!(frr_selects(EXAMPLE_FRR, &["cloudbr0".to_string()]), Ok(()));
    }

    #[test]
    fn bird_without_the_protocol_filter_fails() {
        let t = EXAMPLE_BIRD.replace("krt_source = VIRT_L3_PROTO", "krt_source = 53");
        let e = bird_selects(&t, 52).unwrap_err();
        assert!(e.contains("ipv4 and ipv6"), "{e}");
        let t = EXAMPLE_BIRD.replace("  learn;\n", "");
        assert!(bird_selects(&t, 52).is_err());
        // Another protocol number configured in virt-l3 than in BIRD.
        assert!(bird_selects(EXAMPLE_BIRD, 60).is_err());
    }

    #[test]
    fn bird_comments_do_not_count() {
        let t =
            "protocol kernel k { ipv4 { import none; # import where krt_source = 52;\n }; learn; }";
        assert!(bird_selects(t, 52).is_err());
        let t = "protocol kernel k4 { ipv4 { import where krt_source ~ [ 52, 53 ]; }; learn; }\n\
                 protocol kernel k6 { ipv6 { import filter f; }; learn; }\n\
                 filter f { if krt_source = 52 then accept; reject; }\n\
                 protocol bgp up { ipv4 { export all; }; }";
        assert_eq!(bird_selects(t, 52), Ok(()));
    }

    #[test]
    fn frr_needs_both_families_and_the_bridge() {
        let b = ["cloudbr0".to_string()];
        let t = EXAMPLE_FRR.replace("match interface cloudbr0", "match interface eth0");
        assert!(frr_selects(&t, &b).unwrap_err().contains("cloudbr0"));
        let t = EXAMPLE_FRR.replacen("  redistribute kernel route-map VIRT-L3\n", "", 1);
        assert!(frr_selects(&t, &b).unwrap_err().contains("ipv4"));
        let two = ["cloudbr0".to_string(), "cloudbr1".to_string()];
        assert!(frr_selects(EXAMPLE_FRR, &two).is_err());
    }

    #[test]
    fn sysctl_names() {
        assert_eq!(dotted("net/ipv4/ip_forward"), "net.ipv4.ip_forward");
        assert_eq!(
            dotted("net/ipv4/conf/eth0.100/rp_filter"),
            "net.ipv4.conf.eth0/100.rp_filter"
        );
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("libvirtd (libvirt) 9.0.0"), Some((9, 0, 0)));
        assert_eq!(
            parse_version("virtqemud (libvirt) 6.5.0\n"),
            Some((6, 5, 0))
        );
        assert!(parse_version("libvirtd (libvirt) 6.4.0").unwrap() < (6, 5, 0));
        assert_eq!(parse_version("nothing"), None);
    }
}
