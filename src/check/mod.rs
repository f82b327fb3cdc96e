//! `virt-l3 check`: is this hypervisor ready for routed VMs? Item by item, each with a
//! status and, for every failure, the fix.
//!
//! Everything is read, nothing is changed. Kernel facts come from the network
//! namespace the command runs in (netlink, `/proc/sys/net`), so `ip netns exec NS
//! virt-l3 check` inspects NS. Files and programs are found at the paths of
//! [`CheckOptions`], all overridable. docs/TROUBLESHOOTING.md explains every item.

mod allow;
mod bridge;
mod cloudstack;
mod coexistence;
mod facts;
mod firewall;
mod libvirt;
mod routing_daemon;
mod run;
mod state;
mod sysctls;

use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::kernel::{Kernel as _, KernelError, NetlinkKernel};

pub use libvirt::parse_version;
pub use routing_daemon::{bird_selects, frr_selects};

/// Where `check` finds what it inspects. Every path and program can be overridden,
/// so that a test lab (or an unusual host) can point it at its own files. The
/// command line's flags for these are in the binary (`virt-l3 check --help`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Root of the sysctl tree (read in the current network namespace).
    pub proc_sys: PathBuf,
    /// Root of sysfs (only the bridges' `addr_assign_type` is read there).
    pub sysfs: PathBuf,
    /// libvirt's hook directory (holding `qemu` and `qemu.d/`).
    pub libvirt_hooks_dir: PathBuf,
    /// The libvirt daemon, asked for its version with `--version`
    /// [default: libvirtd, else virtqemud].
    pub libvirtd: Option<PathBuf>,
    /// virsh, run as `virsh nwfilter-list` to see the nwfilter driver answer.
    pub virsh: PathBuf,
    /// libvirt connection URI for virsh.
    pub connect: Option<String>,
    /// ebtables, run as `ebtables --version` (libvirt's nwfilter needs it).
    pub ebtables: PathBuf,
    /// birdc, run as `birdc -s SOCKET show status`.
    pub birdc: PathBuf,
    /// BIRD's control socket.
    pub bird_socket: PathBuf,
    /// BIRD's configuration file.
    pub bird_config: PathBuf,
    /// vtysh, run as `vtysh [-N PATHSPACE] -c 'show running-config'`.
    pub vtysh: PathBuf,
    /// FRR pathspace (vtysh -N), for FRR running in a named namespace.
    pub frr_pathspace: Option<String>,
    /// FRR's configuration file, read when FRR is not running.
    pub frr_config: PathBuf,
    /// cloudstack-agent's properties (for its `control.cidr`).
    pub agent_properties: PathBuf,
}

impl Default for CheckOptions {
    /// The paths of a Debian or EL hypervisor (the command line's defaults).
    fn default() -> Self {
        CheckOptions {
            proc_sys: "/proc/sys".into(),
            sysfs: "/sys".into(),
            libvirt_hooks_dir: "/etc/libvirt/hooks".into(),
            libvirtd: None,
            virsh: "virsh".into(),
            connect: None,
            ebtables: "ebtables".into(),
            birdc: "birdc".into(),
            bird_socket: "/run/bird/bird.ctl".into(),
            bird_config: "/etc/bird/bird.conf".into(),
            vtysh: "vtysh".into(),
            frr_pathspace: None,
            frr_config: "/etc/frr/frr.conf".into(),
            agent_properties: "/etc/cloudstack/agent/agent.properties".into(),
        }
    }
}

/// Why `check` could not inspect the host at all (an item's own failure is in the report).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot open a netlink socket: {0}")]
    NetlinkSocket(std::io::Error),
    #[error("cannot list the interfaces: {0}")]
    ListLinks(rtnetlink::Error),
    #[error("cannot list the addresses: {0}")]
    ListAddresses(rtnetlink::Error),
    #[error(transparent)]
    Kernel(#[from] KernelError),
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

/// Inspects the host. Never changes anything. The items come in a fixed order
/// (docs/TROUBLESHOOTING.md): bridges, sysctls, the CloudStack control network,
/// libvirt, the routing daemon, virt-l3's state, its nftables tables, blocked ports,
/// other tools' entries for routed addresses.
pub async fn check(config: &Config, opts: &CheckOptions) -> Result<Report, CheckError> {
    let facts = facts::kernel_facts().await?;
    let mut items = Vec::new();
    // The literal names (present or not) and every bridge a pattern matches.
    let routed = config.routed_bridges_among(
        facts
            .links
            .iter()
            .filter(|l| l.kind.as_deref() == Some("bridge"))
            .map(|l| l.name.as_str()),
    );
    let existing: Vec<&str> = routed
        .iter()
        .filter(|b| facts.link(b).is_some())
        .map(String::as_str)
        .collect();
    for b in &routed {
        items.extend(bridge::bridge_items(config, opts, &facts, b));
    }
    items.extend(bridge::idle_patterns(config, &routed));
    let mut kernel = NetlinkKernel::connect()?;
    let uplinks = uplinks(config, &facts, &mut kernel).await?;
    items.push(sysctls::forwarding(opts, &existing, &uplinks, 4));
    items.push(sysctls::forwarding(opts, &existing, &uplinks, 6));
    items.push(sysctls::rp_filter(opts, &uplinks));
    items.extend(sysctls::accept_ra(opts, &existing));
    items.push(sysctls::proxy_arp(opts, &uplinks));
    items.push(sysctls::proxy_ndp(opts, &facts, &uplinks));
    items.push(sysctls::send_redirects(opts, &existing));
    items.push(cloudstack::control_network(config, opts, &facts));
    items.push(allow::allow_list(config));
    items.push(libvirt::libvirt_version(opts));
    items.push(libvirt::hook_installed(opts));
    items.push(libvirt::nwfilter(opts));
    items.push(libvirt::ebtables(opts));
    items.extend(routing_daemon::routing_daemon(config, opts, &routed));
    items.push(state::state(config, &mut kernel, &routed).await);
    items.push(firewall::firewall(config).await);
    items.push(firewall::ports(config, &facts));
    items.extend(coexistence::foreign_entries(config, &mut kernel, &routed).await);
    Ok(Report {
        ready: items.iter().all(|i| i.status != Status::Fail),
        items,
    })
}

/// Uplinks: interfaces that routes with a next hop leave through (the fabric side),
/// sorted, without the routed bridges.
async fn uplinks(
    config: &Config,
    facts: &facts::KernelFacts,
    kernel: &mut NetlinkKernel,
) -> Result<Vec<String>, CheckError> {
    let routes = kernel.routes().await?;
    let mut uplinks: Vec<String> = routes
        .iter()
        .filter(|r| r.gateway.is_some() && r.protocol != config.route_protocol)
        .filter_map(|r| r.ifindex)
        .map(|i| facts.name(i))
        .filter(|n| !config.is_routed_bridge(n))
        .collect();
    uplinks.sort();
    uplinks.dedup();
    Ok(uplinks)
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

    #[test]
    fn text_report() {
        let items = vec![
            ok("hook", None, "Fine.".to_string()),
            warn(
                "bridge-mac",
                Some("br0"),
                "Unset.".to_string(),
                "Set it.".to_string(),
            ),
            fail(
                "ebtables",
                None,
                "Missing.".to_string(),
                "Install it.".to_string(),
            ),
        ];
        let report = Report {
            ready: false,
            items,
        };
        assert_eq!(report.failed().count(), 1);
        assert_eq!(
            render_text(&report),
            "ok   hook: Fine.\n\
             WARN bridge-mac br0: Unset.\n     fix: Set it.\n\
             FAIL ebtables: Missing.\n     fix: Install it.\n\
             not ready: 1 item(s) failed\n"
        );
    }

    #[test]
    fn error_sentences() {
        let e = CheckError::NetlinkSocket(std::io::Error::from_raw_os_error(1));
        assert!(
            e.to_string().starts_with("cannot open a netlink socket: "),
            "{e}"
        );
    }
}
