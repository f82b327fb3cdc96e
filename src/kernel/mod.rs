//! The kernel side: what routing, the hook and reconcile ask of the kernel, as
//! one trait ([`Kernel`]), with two implementations: [`NetlinkKernel`] (rtnetlink,
//! the real one) and [`fake::FakeKernel`] (an in-memory model for tests).
//!
//! Naming: the trait is `Kernel` because that is what callers program against
//! (`K: Kernel`, static dispatch: no boxing, no `dyn`); the rtnetlink struct is
//! `NetlinkKernel`, named after how it talks to the kernel.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::address::Mac;
use crate::plan::Entry;

pub mod batch;
pub mod bridges;
pub mod fake;
pub mod foreign;
mod lookup;
pub mod netlink;
mod reads;
pub mod sysctl;
pub mod view;
mod wire;

pub use netlink::NetlinkKernel;
pub use view::KernelView;

/// A new rtnetlink connection: its handle, and its task's handle to abort it.
/// The task runs on the current tokio runtime (the commands, `watch`); in a
/// process without one (a hook step runs on a plain executor,
/// `futures::executor::block_on`, and needs this connection only on rare
/// paths), on a thread of its own with its own runtime (then no task handle),
/// which ends with the process.
pub fn rtnetlink_connection(
) -> std::io::Result<(rtnetlink::Handle, Option<tokio::task::JoinHandle<()>>)> {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        return Ok((handle, Some(runtime.spawn(conn))));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build();
        let runtime = match runtime {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        // The socket registers with the runtime that creates it.
        runtime.block_on(async move {
            match rtnetlink::new_connection() {
                Ok((conn, handle, _)) => {
                    let _ = tx.send(Ok(handle));
                    conn.await
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })
    });
    let handle = rx
        .recv()
        .map_err(|_| std::io::Error::other("the rtnetlink connection's thread ended"))??;
    Ok((handle, None))
}

/// A failed netlink request, described for an operator.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot open a netlink socket")]
    Socket(#[source] std::io::Error),
    #[error("bridge {0} does not exist on this host")]
    NoBridge(String),
    #[error("interface {0} does not exist on this host")]
    NoInterface(String),
    #[error("the kernel refused to {what}: {message}")]
    Refused {
        what: String,
        errno: i32,
        message: String,
    },
    /// virt-l3's nftables tables (docs/FIREWALL.md).
    #[error(transparent)]
    Firewall(#[from] crate::firewall::FirewallError),
}

/// The text of an errno, with what to do about the one an operator can fix.
pub(crate) fn errno_text(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    if errno == libc::EPERM {
        format!("{text}: virt-l3 needs CAP_NET_ADMIN (libvirt runs its hooks as root)")
    } else {
        text
    }
}

/// A route as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    pub destination: IpNet,
    pub ifindex: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub metric: u32,
    pub protocol: u8,
    pub table: u32,
}

/// A neighbour entry as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelNeighbour {
    pub address: IpAddr,
    pub ifindex: u32,
    pub mac: Option<Mac>,
    pub permanent: bool,
    pub protocol: u8,
}

/// What the kernel answered for one looked-up entry ([`Kernel::lookup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The route the kernel uses for the entry's destination through its bridge
    /// (not necessarily the entry: another metric or protocol may come first).
    Route(KernelRoute),
    /// The neighbour entry of that address on that bridge.
    Neighbour(KernelNeighbour),
    /// No answer: no such neighbour, no route through that bridge, no bridge.
    Nothing,
}

/// What a FIB lookup of one address found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLookup {
    pub address: IpAddr,
    /// The address is one of the host's (a `local` route answers).
    pub local: bool,
    /// The main-table unicast route the address matches, if any (the default
    /// route included).
    pub route: Option<KernelRoute>,
}

/// The routed bridges now: the literal names of `bridges` and the kernel's
/// bridges matching one of its patterns, sorted.
pub async fn routed_bridges<K: Kernel>(
    kernel: &K,
    config: &crate::config::Config,
) -> Result<Vec<String>, KernelError> {
    if !config
        .bridges
        .iter()
        .any(|b| crate::plan::bridge_names::is_pattern(b))
    {
        return Ok(config.bridges.clone());
    }
    let names = kernel.bridge_names().await?;
    Ok(config.routed_bridges_among(names.iter().map(String::as_str)))
}

/// The bridge an entry is on.
pub(crate) fn bridge_of(e: &Entry) -> &str {
    match e {
        Entry::Route(r) => &r.bridge,
        Entry::Neighbour(n) => &n.bridge,
    }
}

/// What virt-l3 asks of the kernel. Every caller is generic over it (`K: Kernel`),
/// so the hook's hot path is the same machine code as with the concrete type.
///
/// The futures are not `Send`: virt-l3 runs them on a current-thread runtime.
#[allow(async_fn_in_trait)]
pub trait Kernel {
    /// The index of an interface, or `None` if it does not exist.
    async fn link_index(&mut self, name: &str) -> Result<Option<u32>, KernelError>;

    /// Forgets cached interface indexes (after a link event).
    fn forget_links(&mut self);

    /// Why `name` cannot carry routes now, if it cannot: it does not exist, is
    /// not a Linux bridge, or is administratively down. `None` when it is usable.
    async fn bridge_problem(&mut self, name: &str) -> Result<Option<String>, KernelError>;

    /// The current MAC of an interface (one link read), or `None` if it does not exist.
    async fn link_mac(&self, name: &str) -> Result<Option<Mac>, KernelError>;

    /// Which of `candidates` are addresses of this host.
    async fn local_among(&self, candidates: &[IpAddr]) -> Result<Vec<IpAddr>, KernelError>;

    /// One FIB lookup per address (one request each, pipelined): is it local,
    /// and which route of the main table does it match.
    async fn lookup_routes(&self, addresses: &[IpAddr]) -> Result<Vec<RouteLookup>, KernelError>;

    /// The name of the interface with this index, if it exists.
    async fn link_name(&self, index: u32) -> Result<Option<String>, KernelError>;

    /// Every address configured on the host's interfaces.
    async fn host_addresses(&self) -> Result<Vec<IpAddr>, KernelError>;

    /// Installs (replacing) every entry. Returns, in order, the result of each.
    async fn install(&mut self, entries: &[Entry], protocol: u8) -> Vec<Result<(), KernelError>>;

    /// Removes every entry; an entry already gone counts as removed.
    async fn remove(&mut self, entries: &[Entry], protocol: u8) -> Vec<Result<(), KernelError>>;

    /// Removes routes and neighbours exactly as the kernel holds them; one already
    /// gone counts as removed.
    fn remove_kernel_entries(
        &mut self,
        routes: &[KernelRoute],
        neighbours: &[KernelNeighbour],
    ) -> Vec<Result<(), KernelError>>;

    /// Whether each bridge port is isolated, by interface name.
    async fn isolated_ports(&self) -> Result<HashMap<String, bool>, KernelError>;

    /// Whether the bridge port `port` is isolated (`None`: no such interface,
    /// or not a bridge port): one lookup by name, not a dump of every link.
    async fn port_isolated(&self, port: &str) -> Result<Option<bool>, KernelError>;

    /// Every route in the main table (both families).
    async fn routes(&self) -> Result<Vec<KernelRoute>, KernelError>;

    /// The main table's routes of `protocol` (both families): a dump the kernel
    /// filters itself where it can (strict checking, like `ip route show proto
    /// 52`), else every route, filtered here. Its cost follows the table's size.
    async fn routes_of(&mut self, protocol: u8) -> Result<Vec<KernelRoute>, KernelError>;

    /// Looks up each entry, one request per entry, pipelined: for a route, the
    /// route the kernel uses for its destination through its bridge (a FIB
    /// match); for a neighbour, the entry of its address on its bridge. Returns
    /// one answer per entry, in order. Its cost follows the number of entries,
    /// not the table's size.
    async fn lookup(&mut self, entries: &[Entry]) -> Result<Vec<Found>, KernelError>;

    /// Every neighbour entry (both families) on the given interface.
    async fn neighbours(&self, ifindex: u32) -> Result<Vec<KernelNeighbour>, KernelError>;

    /// Gives a bridge a fixed MAC: `mac` if given, else the one it has now.
    /// Returns a description if something changed (or would, without `apply`).
    async fn pin_bridge_mac(
        &mut self,
        bridge: &str,
        mac: Option<Mac>,
        apply: bool,
    ) -> Result<Option<String>, KernelError>;

    /// The names of every Linux bridge on the host (for bridge patterns).
    async fn bridge_names(&self) -> Result<Vec<String>, KernelError>;

    /// Puts the missing `gateways` on `bridge` (IPv4 /32, IPv6 link-local /64
    /// without DAD); returns what was added (or would be, without `apply`).
    /// A bridge that does not exist gets nothing.
    async fn add_gateways(
        &mut self,
        bridge: &str,
        gateways: &[IpAddr],
        apply: bool,
    ) -> Result<Vec<String>, KernelError>;

    /// Sets or clears bridge port isolation on a bridge port (a VM's tap).
    async fn set_port_isolation(&mut self, port: &str, isolated: bool) -> Result<(), KernelError>;

    /// [`Kernel::set_port_isolation`] on each of `ports` (a domain's taps), in
    /// order; the netlink kernel sends them in one batch.
    async fn isolate_ports(
        &mut self,
        ports: &[&str],
        isolated: bool,
    ) -> Vec<Result<(), KernelError>> {
        let mut out = Vec::with_capacity(ports.len());
        for port in ports {
            out.push(self.set_port_isolation(port, isolated).await);
        }
        out
    }

    /// Turns IPv4 ICMP redirects off for `all` and the bridge; returns what was
    /// changed, as `net.ipv4.conf.IFACE.send_redirects=0`.
    fn disable_redirects(&mut self, bridge: &str) -> std::io::Result<Vec<String>>;

    /// Whether this process may change the network (`CAP_NET_ADMIN`).
    fn has_net_admin(&self) -> bool;

    /// Makes sure virt-l3's nftables tables are installed and current for
    /// `config` (docs/FIREWALL.md), keeping the accepted ports; cheap when they
    /// are. Returns whether they were (re)installed.
    async fn ensure_firewall(
        &mut self,
        config: &crate::config::Config,
    ) -> Result<bool, KernelError>;

    /// The hook's cheaper [`Kernel::ensure_firewall`]: installs the tables only
    /// when one is missing (or the bridge table's `accepted_ports`), without
    /// checking that existing ones are current (watch and reconcile do).
    /// Returns whether they were installed.
    async fn ensure_firewall_present(
        &mut self,
        config: &crate::config::Config,
    ) -> Result<bool, KernelError>;

    /// Lets bridge ports pass frames (the tables' `accepted_ports`), in one
    /// transaction; idempotent.
    fn accept_ports(&mut self, ports: &[&str]) -> Result<(), KernelError>;

    /// Stops a bridge port passing frames; a port not accepted is fine.
    fn forget_port(&mut self, port: &str) -> Result<(), KernelError>;

    /// The ports the tables accept (none without the tables).
    fn accepted_ports(&self) -> Result<Vec<String>, KernelError>;
}
