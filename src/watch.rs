//! `virt-l3 watch`: reconcile whenever something relevant changes.
//!
//! Listens to netlink (links, neighbours, IPv4/IPv6 routes) and to libvirt's
//! status directory (inotify). Events only mark the state dirty; a reconcile runs
//! once things have been quiet for a moment, so a burst costs one pass and memory
//! stays bounded. No polling: the process sleeps until the kernel wakes it.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::RouteNetlinkMessage;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use rtnetlink::MulticastGroup;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::kernel::{Kernel as _, NetlinkKernel};
use crate::reconcile::{reconcile_scoped, Action, Change, Scope};

/// How long events must be quiet before reconciling.
pub const SETTLE: Duration = Duration::from_millis(50);
/// A reconcile runs at the latest this long after the first event of a burst.
pub const MAX_DELAY: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot subscribe to netlink events")]
    Netlink(#[source] std::io::Error),
    #[error("cannot watch {path} with inotify")]
    Inotify {
        path: String,
        #[source]
        source: nix::Error,
    },
}

/// Whether a netlink event may concern virt-l3. With the firewall on, a port
/// joining or leaving any bridge is one: a port of a bridge virt-l3 does not
/// route must join the tables' `foreign_ports` (kernels without `meta ibrname`),
/// which the reconcile's ensure does. So is an address added or removed on
/// any interface: the tables' version follows the host's connected networks,
/// and the start hook only checks that the tables exist (docs/FIREWALL.md).
fn relevant(msg: &RouteNetlinkMessage, config: &Config, bridge_indexes: &[u32]) -> bool {
    match msg {
        RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) => {
            u8::from(r.header.protocol) == config.route_protocol
        }
        RouteNetlinkMessage::NewNeighbour(n) | RouteNetlinkMessage::DelNeighbour(n) => {
            bridge_indexes.is_empty() || bridge_indexes.contains(&n.header.ifindex)
        }
        RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) => {
            l.attributes.iter().any(|a| match a {
                LinkAttribute::IfName(n) => config.is_routed_bridge(n),
                LinkAttribute::Controller(m) => {
                    config.firewall.enabled || bridge_indexes.contains(m)
                }
                _ => false,
            })
        }
        RouteNetlinkMessage::NewAddress(_) | RouteNetlinkMessage::DelAddress(_) => {
            config.firewall.enabled
        }
        _ => false,
    }
}

/// An inotify instance that tokio can wait on.
struct Watched(Inotify);

impl AsRawFd for Watched {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

fn inotify_on(dir: &Path) -> Result<AsyncFd<Watched>, WatchError> {
    let err = |source| WatchError::Inotify {
        path: dir.display().to_string(),
        source,
    };
    let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(err)?;
    ino.add_watch(
        dir,
        AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_CREATE,
    )
    .map_err(err)?;
    // SAFETY: `Watched` owns the inotify descriptor, which stays open and the
    // same for as long as the AsyncFd (its only owner) lives.
    unsafe { AsyncFd::register(Watched(ino)) }.map_err(|e| WatchError::Inotify {
        path: dir.display().to_string(),
        source: nix::Error::from_raw(std::io::Error::from(e).raw_os_error().unwrap_or(libc::EIO)),
    })
}

/// Whether a reconcile is due, and since when.
struct Pending {
    dirty: bool,
    /// The first event of the current burst.
    first_event: Option<Instant>,
    /// When a domain's metric is due to change by itself.
    next_change: Option<Instant>,
    /// A domain's metric is due to change now (a migration's switch-over):
    /// reconcile without waiting for events to settle.
    urgent: bool,
}

impl Pending {
    /// An event: a reconcile is due once things settle.
    fn mark(&mut self) {
        if !self.dirty {
            self.first_event = Some(Instant::now());
        }
        self.dirty = true;
    }

    /// A reconcile is due, counting from now.
    fn restart(&mut self) {
        self.dirty = true;
        self.first_event = Some(Instant::now());
    }

    /// A reconcile is due at once.
    fn urgent(&mut self) {
        self.mark();
        self.urgent = true;
    }

    /// Resolves when events have been quiet for [`SETTLE`], or [`MAX_DELAY`]
    /// after the first of them, or at once when urgent; never when nothing is due.
    async fn settled(&self) {
        match self.first_event {
            Some(_) if self.dirty && self.urgent => {}
            Some(t0) if self.dirty => {
                let deadline = (Instant::now() + SETTLE).min(t0 + MAX_DELAY);
                tokio::time::sleep_until(deadline).await
            }
            _ => std::future::pending().await,
        }
    }

    /// Resolves when a domain's metric is due to change by itself.
    async fn metric_due(&self) {
        match self.next_change {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// Resolves when libvirt's status directory changed; drains the events and
/// returns the status files written (see [`refresh_changed`]). Never without a watch.
async fn status_changed(status: &Option<AsyncFd<Watched>>) -> std::io::Result<Vec<OsString>> {
    match status {
        Some(fd) => fd.readable().await.map(|mut g| {
            let events = g.get_inner().0.read_events().unwrap_or_default();
            g.clear_ready();
            let written = AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MOVED_TO;
            let mut names: Vec<OsString> = events
                .into_iter()
                .filter(|e| e.mask.intersects(written))
                .filter_map(|e| e.name)
                .filter(|n| Path::new(n).extension().is_some_and(|x| x == "xml"))
                .collect();
            names.sort_unstable();
            names.dedup();
            names
        }),
        None => std::future::pending().await,
    }
}

/// libvirt rewrote running domains' status files (a NIC attached or detached,
/// live metadata; libvirt runs no hook then): refresh each domain now, before
/// the reconcile the event also marks. A refusal is logged once (until its reason changes).
async fn refresh_changed(kernel: &mut NetlinkKernel, config: &Config, names: Vec<OsString>) {
    if !names.is_empty() {
        // A hot-plugged tap may be newer than the netlink event that says so.
        kernel.forget_links();
    }
    for n in names {
        let path = config.libvirt_status_dir.join(&n);
        match crate::refresh::refresh_file(kernel, config, &path).await {
            Ok(_) | Err(crate::refresh::RefreshError::Refused { first: false, .. }) => {}
            Err(e) => warn!("{e}"),
        }
    }
}

/// Resolves after a while when there is no status directory watch to retry.
async fn retry_due(status: &Option<AsyncFd<Watched>>) {
    if status.is_none() {
        tokio::time::sleep(Duration::from_secs(5)).await
    } else {
        std::future::pending().await
    }
}

/// Resolves when nftables changes arrived; whether one removed something of
/// virt-l3's tables (drains what is there). Never without a subscription.
async fn tables_changed(nft: &Option<AsyncFd<netlink_sys::Socket>>) -> bool {
    let Some(fd) = nft else {
        return std::future::pending().await;
    };
    let Ok(mut guard) = fd.readable().await else {
        return false;
    };
    let mut ours = false;
    let mut buf = vec![0u8; 65536];
    loop {
        match guard.get_inner().recv(&mut &mut buf[..], 0) {
            Ok(n) => {
                ours |= crate::firewall::nfnetlink::removes_from(&buf[..n], crate::firewall::TABLE)
            }
            // ENOBUFS: events were lost; assume one was ours.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => ours = true,
            Err(_) => {
                guard.clear_ready();
                return ours;
            }
        }
    }
}

/// Ports that joined a routed bridge since the last pass (`watch`).
#[derive(Default)]
struct NewPorts {
    joined: std::collections::BTreeSet<String>,
    /// Blocked ports already logged (forgotten when they go).
    logged: std::collections::HashSet<String>,
}

impl NewPorts {
    fn event(&mut self, msg: &RouteNetlinkMessage, bridge_indexes: &[u32]) {
        let (RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l)) = msg else {
            return;
        };
        let name = l.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        let Some(name) = name else { return };
        let on_routed = l
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::Controller(m) if bridge_indexes.contains(m)));
        if matches!(msg, RouteNetlinkMessage::NewLink(_)) && on_routed {
            self.joined.insert(name);
        } else {
            self.logged.remove(&name);
        }
    }

    /// After a reconcile: a joined port that no record names stays blocked by
    /// the tables (never accepted: routing a hot-plugged NIC is issue 18), gets
    /// port isolation, and is logged once with its domain from libvirt's status files.
    async fn handle(&mut self, kernel: &mut NetlinkKernel, config: &Config) {
        if self.joined.is_empty() {
            return;
        }
        let joined = std::mem::take(&mut self.joined);
        let recorded: std::collections::HashSet<String> =
            crate::state::StateDir::new(&config.state_dir)
                .records()
                .unwrap_or_default()
                .into_iter()
                .flat_map(|r| r.plan.nics.into_iter().filter_map(|n| n.tap))
                .collect();
        let unknown: Vec<String> = joined
            .into_iter()
            .filter(|p| !recorded.contains(p))
            .collect();
        if unknown.is_empty() {
            return;
        }
        let isolated = kernel.isolated_ports().await.unwrap_or_default();
        let owners = crate::reconcile::observe::tap_owners(&config.libvirt_status_dir);
        for port in unknown {
            if config.port_isolation && isolated.get(&port) == Some(&false) {
                if let Err(e) = kernel.set_port_isolation(&port, true).await {
                    warn!("{e}");
                }
            }
            if config.firewall.enabled && self.logged.insert(port.clone()) {
                let domain = owners
                    .get(&port)
                    .map(|d| format!("domain {d}"))
                    .unwrap_or_else(|| "no running domain names it".into());
                warn!("port {port} ({domain}) joined a routed bridge without virt-l3's start hook: it stays blocked and isolated (a hot-plugged NIC is not routed; restart the domain to route it)");
            }
        }
    }
}

/// libvirt's status directory, watched by inotify (none until it exists).
fn status_events(config: &Config) -> Option<AsyncFd<Watched>> {
    match inotify_on(&config.libvirt_status_dir) {
        Ok(i) => Some(i),
        Err(e) => {
            warn!("{e}; watching netlink only until the directory exists");
            None
        }
    }
}

/// nftables change notifications, when the firewall is on.
fn nft_events(config: &Config) -> Option<AsyncFd<netlink_sys::Socket>> {
    if config.firewall.enabled {
        // SAFETY: the AsyncFd owns the socket, whose descriptor stays open and
        // the same for as long as the AsyncFd lives.
        match crate::firewall::nfnetlink::subscribe().map(|s| unsafe { AsyncFd::register(s) }) {
            Ok(Ok(fd)) => Some(fd),
            Ok(Err(e)) => {
                warn!("cannot wait on nftables changes: {e}; a flushed table is restored at the next event only");
                None
            }
            Err(e) => {
                warn!("{e}; a flushed table is restored at the next event only");
                None
            }
        }
    } else {
        None
    }
}

/// Runs until `shutdown` resolves.
pub async fn watch(
    config: &Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), WatchError> {
    let (conn, _handle, mut events) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Neigh,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
    ])
    .map_err(WatchError::Netlink)?;
    tokio::spawn(conn);
    let mut kernel = NetlinkKernel::connect()
        .map_err(|e| WatchError::Netlink(std::io::Error::other(e.to_string())))?;

    let mut status = status_events(config);
    let nft = nft_events(config);
    let mut new_ports = NewPorts::default();
    tokio::pin!(shutdown);
    // Reconcile once at start.
    let mut pending = Pending {
        dirty: true,
        first_event: Some(Instant::now()),
        next_change: None,
        urgent: false,
    };
    let mut bridge_indexes: Vec<u32> = Vec::new();
    // The first reconcile sweeps (strays included); the ones events trigger look
    // up the recorded entries only, at a cost that follows them.
    let mut scope = Scope::Sweep;
    let mut refused = Refused::default();
    info!(status_dir = %config.libvirt_status_dir.display(), "watching");
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                info!("stopping");
                return Ok(());
            }
            ev = events.next() => {
                let Some((msg, _)) = ev else {
                    error!("the netlink event stream ended");
                    return Err(WatchError::Netlink(std::io::Error::other("netlink event stream ended")));
                };
                if let NetlinkPayload::InnerMessage(m) = &msg.payload {
                    if matches!(m, RouteNetlinkMessage::NewLink(_) | RouteNetlinkMessage::DelLink(_)) {
                        kernel.forget_links();
                    }
                    if relevant(m, config, &bridge_indexes) {
                        pending.mark();
                    }
                    new_ports.event(m, &bridge_indexes);
                }
            }
            ours = tables_changed(&nft) => {
                if ours {
                    pending.mark();
                }
            }
            r = status_changed(&status) => {
                if let Ok(names) = r {
                    let urgent = crate::reconcile::observe::standing_due(config, &names);
                    refresh_changed(&mut kernel, config, names).await;
                    if urgent {
                        pending.urgent();
                    } else {
                        pending.mark();
                    }
                }
            }
            _ = pending.metric_due() => {
                pending.next_change = None;
                pending.restart();
            }
            _ = retry_due(&status) => {
                if let Ok(i) = inotify_on(&config.libvirt_status_dir) {
                    info!("libvirt's status directory appeared");
                    status = Some(i);
                    pending.restart();
                }
            }
            _ = pending.settled() => {
                pending.dirty = false;
                pending.urgent = false;
                pending.first_event = None;
                if reconcile_now(&mut kernel, config, scope, &mut pending.next_change, &mut refused).await {
                    scope = Scope::Records;
                }
                bridge_indexes = routed_bridge_indexes(&mut kernel, config).await;
                new_ports.handle(&mut kernel, config).await;
            }
        }
    }
}

/// The running domains reconcile refuses to adopt, as last reported: each run
/// reports them again, but a refusal is logged once, when it appears (or its
/// reason changes), not on every event.
#[derive(Debug, Default)]
pub struct Refused(BTreeSet<Change>);

impl Refused {
    /// The refusals of this run that were not in the previous one; remembers this run's.
    pub fn new_ones<'a>(&mut self, changes: &'a [Change]) -> Vec<&'a Change> {
        let now: BTreeSet<Change> = changes
            .iter()
            .filter(|c| c.action == Action::Refuse)
            .cloned()
            .collect();
        let fresh = changes
            .iter()
            .filter(|c| c.action == Action::Refuse && !self.0.contains(*c))
            .collect();
        self.0 = now;
        fresh
    }
}

/// One reconcile, logged; sets when the next one is due by itself (left as it
/// was when the reconcile failed). Whether it ran.
async fn reconcile_now(
    kernel: &mut NetlinkKernel,
    config: &Config,
    scope: Scope,
    next_change: &mut Option<Instant>,
    refused: &mut Refused,
) -> bool {
    match reconcile_scoped(kernel, config, false, scope).await {
        Ok(report) => {
            // A metric due to change by itself (an arrived VM's hold ends).
            *next_change = report.next_change.map(|at| {
                let wait = at.saturating_sub(crate::state::now_ms());
                Instant::now() + Duration::from_millis(wait + 10)
            });
            for c in refused.new_ones(&report.changes) {
                warn!(
                    domain = %c.domain.as_deref().unwrap_or("-"),
                    "{}",
                    c.what
                );
            }
            for c in report.changes.iter().filter(|c| c.action != Action::Refuse) {
                info!(
                    action = c.action.as_str(),
                    domain = %c.domain.as_deref().map_or("-".into(), crate::plan::display_name),
                    "{}",
                    c.what
                );
            }
            for e in &report.errors {
                warn!("{e}");
            }
            true
        }
        Err(e) => {
            warn!("reconcile failed: {e}");
            false
        }
    }
}

/// The interface indexes of the routed bridges that exist.
async fn routed_bridge_indexes(kernel: &mut NetlinkKernel, config: &Config) -> Vec<u32> {
    let mut out = Vec::new();
    let bridges = crate::kernel::routed_bridges(kernel, config)
        .await
        .unwrap_or_else(|_| config.bridges.clone());
    for b in &bridges {
        if let Ok(Some(i)) = kernel.link_index(b).await {
            out.push(i);
        }
    }
    out
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(action: Action, domain: &str, what: &str) -> Change {
        Change {
            action,
            domain: Some(domain.into()),
            what: what.into(),
        }
    }

    #[test]
    fn an_urgent_event_skips_the_settle_delay() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut p = Pending {
                dirty: false,
                first_event: None,
                next_change: None,
                urgent: false,
            };
            let quick = Duration::from_millis(10);
            p.mark();
            assert!(tokio::time::timeout(quick, p.settled()).await.is_err());
            p.urgent();
            assert!(tokio::time::timeout(quick, p.settled()).await.is_ok());
        });
    }

    #[test]
    fn a_refusal_is_logged_once_until_it_changes_or_returns() {
        let mut refused = Refused::default();
        let a = change(Action::Refuse, "a", "not adopting running domain A: x");
        let b = change(Action::Refuse, "b", "not adopting running domain B: y");
        let add = change(Action::Add, "c", "route 192.0.2.1/32");
        assert_eq!(refused.new_ones(&[a.clone(), add.clone()]), [&a]);
        // Every later run reports it again: not logged again.
        assert!(refused.new_ones(&[a.clone(), add]).is_empty());
        assert_eq!(refused.new_ones(&[a.clone(), b.clone()]), [&b]);
        // A new reason is news; so is a refusal that went away and came back.
        let a2 = change(Action::Refuse, "a", "not adopting running domain A: z");
        assert_eq!(refused.new_ones(&[a2.clone(), b.clone()]), [&a2]);
        assert!(refused.new_ones(std::slice::from_ref(&b)).is_empty());
        assert_eq!(refused.new_ones(&[a2.clone(), b]), [&a2]);
    }

    /// The start hook only checks that the tables exist: an address change (the
    /// tables' version follows the connected networks) must make watch reconcile.
    #[test]
    fn an_address_change_is_relevant_with_the_firewall_on() {
        use netlink_packet_route::address::AddressMessage;
        let mut config = Config::default();
        for m in [
            RouteNetlinkMessage::NewAddress(AddressMessage::default()),
            RouteNetlinkMessage::DelAddress(AddressMessage::default()),
        ] {
            config.firewall.enabled = true;
            assert!(relevant(&m, &config, &[]));
            config.firewall.enabled = false;
            assert!(!relevant(&m, &config, &[]));
        }
    }
}
