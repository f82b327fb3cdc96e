//! `virt-l3 watch`: reconcile whenever something relevant changes.
//!
//! Listens to netlink (links, neighbours, IPv4/IPv6 routes) and to libvirt's
//! status directory (inotify). Events only mark the state dirty; a reconcile runs
//! once things have been quiet for a moment, so a burst costs one pass and memory
//! stays bounded. No polling: the process sleeps until the kernel wakes it.

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
use crate::reconcile::{reconcile_scoped, Scope};

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

/// Whether a netlink event may concern virt-l3.
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
                LinkAttribute::Controller(m) => bridge_indexes.contains(m),
                _ => false,
            })
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

    /// Resolves when events have been quiet for [`SETTLE`], or [`MAX_DELAY`]
    /// after the first of them; never when nothing is due.
    async fn settled(&self) {
        match self.first_event {
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

/// Resolves when libvirt's status directory changed; drains the events (their
/// content does not matter). Never without a watch.
async fn status_changed(status: &Option<AsyncFd<Watched>>) -> std::io::Result<()> {
    match status {
        Some(fd) => fd.readable().await.map(|mut g| {
            let _ = g.get_inner().0.read_events();
            g.clear_ready();
        }),
        None => std::future::pending().await,
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
    ])
    .map_err(WatchError::Netlink)?;
    tokio::spawn(conn);
    let mut kernel = NetlinkKernel::connect()
        .map_err(|e| WatchError::Netlink(std::io::Error::other(e.to_string())))?;

    let mut status = match inotify_on(&config.libvirt_status_dir) {
        Ok(i) => Some(i),
        Err(e) => {
            warn!("{e}; watching netlink only until the directory exists");
            None
        }
    };
    tokio::pin!(shutdown);
    // Reconcile once at start.
    let mut pending = Pending {
        dirty: true,
        first_event: Some(Instant::now()),
        next_change: None,
    };
    let mut bridge_indexes: Vec<u32> = Vec::new();
    // The first reconcile sweeps (strays included); the ones events trigger look
    // up the recorded entries only, at a cost that follows them.
    let mut scope = Scope::Sweep;
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
                }
            }
            r = status_changed(&status) => {
                if r.is_ok() {
                    pending.mark();
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
                pending.first_event = None;
                if reconcile_now(&mut kernel, config, scope, &mut pending.next_change).await {
                    scope = Scope::Records;
                }
                bridge_indexes = routed_bridge_indexes(&mut kernel, config).await;
            }
        }
    }
}

/// One reconcile, logged; sets when the next one is due by itself (left as it
/// was when the reconcile failed). Whether it ran.
async fn reconcile_now(
    kernel: &mut NetlinkKernel,
    config: &Config,
    scope: Scope,
    next_change: &mut Option<Instant>,
) -> bool {
    match reconcile_scoped(kernel, config, false, scope).await {
        Ok(report) => {
            // A metric due to change by itself (an arrived VM's hold ends).
            *next_change = report.next_change.map(|at| {
                let wait = at.saturating_sub(crate::state::now_ms());
                Instant::now() + Duration::from_millis(wait + 10)
            });
            for c in &report.changes {
                info!(
                    action = c.action.as_str(),
                    domain = c.domain.as_deref().unwrap_or("-"),
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
    for b in &config.bridges {
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
