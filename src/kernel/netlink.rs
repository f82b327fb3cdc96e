//! The real kernel: routes, neighbours, links and addresses over rtnetlink.
//!
//! Requests are sent together and their acknowledgements awaited together, so a
//! domain's dozen entries cost one round trip's worth of waiting, and a bulk
//! reconcile keeps many requests in flight.

use std::collections::HashMap;
use std::net::IpAddr;

use futures::stream::TryStreamExt;
use netlink_packet_core::DefaultNla;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoBridgePort, LinkAttribute, LinkMessage, LinkProtoInfoBridge};
use netlink_packet_route::neighbour::{NeighbourAttribute, NeighbourMessage, NeighbourState};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;

use super::batch::BatchSocket;
use super::reads::{filtered_routes, kernel_neighbour, kernel_route, lookup_request};
use super::wire::{errno_of, family, neighbour_address, route_address};
use super::{
    bridge_of, errno_text, Found, Kernel, KernelError, KernelNeighbour, KernelRoute, RouteLookup,
};
use crate::address::Mac;
use crate::plan::{Entry, Neighbour, Route};

impl KernelError {
    pub(crate) fn from_rtnetlink(what: String, e: rtnetlink::Error) -> KernelError {
        let errno = errno_of(&e).unwrap_or(0);
        let message = if errno != 0 {
            errno_text(errno)
        } else {
            e.to_string()
        };
        KernelError::Refused {
            what,
            errno,
            message,
        }
    }
}

/// The kernel over rtnetlink. What a hook
/// step needs (lookups, one interface, route and neighbour changes, port
/// isolation) goes through a blocking [`BatchSocket`]; the asynchronous
/// connection (dumps, address changes, the firewall's view of the host) is
/// opened on first use, so a hook `start` never opens it.
pub struct NetlinkKernel {
    connection: std::cell::OnceCell<Handle>,
    links: HashMap<String, u32>,
    /// The last link [`Kernel::link_mac`] read, for the [`Kernel::bridge_problem`]
    /// that follows it in a hook step (host facts, then the host check): taken
    /// by the first read of the same name, so it serves once, moments later.
    just_read: std::cell::RefCell<Option<(String, LinkMessage)>>,
    /// Opened on first use: route and neighbour changes go through it in batches.
    batch: std::cell::RefCell<Option<BatchSocket>>,
    /// Whether to ask the kernel for filtered dumps: true until the kernel turns
    /// strict checking down (before Linux 4.20), or when `VIRT_L3_STRICT_DUMPS=0`
    /// says not to (to exercise the fallback).
    strict_dumps: bool,
}

/// The environment switch that forces the fallback of [`Kernel::routes_of`]:
/// `VIRT_L3_STRICT_DUMPS=0` dumps every route and filters here, as a kernel
/// without strict checking makes virt-l3 do.
pub const STRICT_DUMPS_ENV: &str = "VIRT_L3_STRICT_DUMPS";

impl NetlinkKernel {
    pub fn connect() -> Result<NetlinkKernel, KernelError> {
        Ok(NetlinkKernel {
            connection: std::cell::OnceCell::new(),
            links: HashMap::new(),
            just_read: std::cell::RefCell::new(None),
            batch: std::cell::RefCell::new(None),
            strict_dumps: std::env::var(STRICT_DUMPS_ENV).map_or(true, |v| v != "0"),
        })
    }

    async fn bridge_index(&mut self, bridge: &str) -> Result<u32, KernelError> {
        self.link_index(bridge)
            .await?
            .ok_or_else(|| KernelError::NoBridge(bridge.to_string()))
    }

    /// One interface by name (`RTM_GETLINK` through the batch socket), or `None`
    /// if there is none.
    async fn get_link(&self, name: &str) -> Result<Option<LinkMessage>, KernelError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        // Without the per-family statistics (IPv6's alone are ~400 bytes), which
        // virt-l3 never reads: a smaller reply, less to parse.
        msg.attributes.push(LinkAttribute::ExtMask(vec![
            netlink_packet_route::link::LinkExtentMask::SkipStats,
        ]));
        let answer = self
            .with_batch(|b| b.query(vec![RouteNetlinkMessage::GetLink(msg)]))
            .map_err(|e| refused(format!("look up interface {name}"), e))?;
        match answer.into_iter().next() {
            Some(Ok(RouteNetlinkMessage::NewLink(link))) => Ok(Some(link)),
            Some(Err(libc::ENODEV)) | None => Ok(None),
            Some(Ok(_)) => Ok(None),
            Some(Err(errno)) => Err(KernelError::Refused {
                what: format!("look up interface {name}"),
                errno,
                message: errno_text(errno),
            }),
        }
    }

    /// FIB lookups of `addresses` through the batch socket: one `sendmsg` per
    /// 128 lookups, the answers read together.
    fn query_routes(&self, addresses: &[IpAddr]) -> Result<Vec<RouteLookup>, KernelError> {
        let requests = addresses
            .iter()
            .map(|a| super::lookup::request(*a))
            .collect();
        let answers = self
            .with_batch(|b| b.query(requests))
            .map_err(|e| refused("look up the domains' addresses".into(), e))?;
        Ok(addresses
            .iter()
            .zip(answers)
            .map(|(a, r)| super::lookup::answer(*a, r))
            .collect())
    }

    /// The asynchronous rtnetlink connection, opened on first use (its task:
    /// [`super::rtnetlink_connection`]).
    fn handle(&self) -> Result<&Handle, KernelError> {
        if let Some(h) = self.connection.get() {
            return Ok(h);
        }
        let (handle, _task) = super::rtnetlink_connection().map_err(KernelError::Socket)?;
        Ok(self.connection.get_or_init(|| handle))
    }

    /// Runs `f` on the batch socket, opened on first use.
    fn with_batch<R>(
        &self,
        f: impl FnOnce(&mut BatchSocket) -> std::io::Result<R>,
    ) -> std::io::Result<R> {
        let mut batch = self.batch.borrow_mut();
        let socket = match batch.as_mut() {
            Some(b) => b,
            None => batch.insert(BatchSocket::open()?),
        };
        f(socket)
    }

    /// Sends a batch and turns each errno into a result for its entry.
    fn run_batch<L: std::fmt::Display>(
        &mut self,
        entries: &[L],
        requests: Vec<(RouteNetlinkMessage, u16)>,
        verb: &str,
        gone_is_fine: bool,
    ) -> Vec<Result<(), KernelError>> {
        let codes = match self.with_batch(|b| b.execute(requests)) {
            Ok(c) => c,
            Err(e) => {
                return entries
                    .iter()
                    .map(|en| {
                        Err(KernelError::Refused {
                            what: format!("{verb} {en}"),
                            errno: e.raw_os_error().unwrap_or(0),
                            message: e.to_string(),
                        })
                    })
                    .collect()
            }
        };
        entries
            .iter()
            .zip(codes)
            .map(|(en, (code, said))| match code {
                0 => Ok(()),
                libc::ENOENT | libc::ESRCH | libc::ENODEV if gone_is_fine => Ok(()),
                errno => Err(KernelError::Refused {
                    what: format!("{verb} {en}"),
                    errno,
                    // The kernel's own words first: "IPv6 is disabled on nexthop device".
                    message: match said {
                        Some(said) => format!("{said}: {}", errno_text(errno)),
                        None => errno_text(errno),
                    },
                }),
            })
            .collect()
    }
}

/// A failure of the batch socket itself, as the refusal of `what`.
fn refused(what: String, e: std::io::Error) -> KernelError {
    KernelError::Refused {
        what,
        errno: e.raw_os_error().unwrap_or(0),
        message: e.to_string(),
    }
}

/// `IFLA_BRPORT_ISOLATED` (linux/if_link.h), inside `IFLA_PROTINFO`.
const IFLA_BRPORT_ISOLATED: u16 = 33;

impl Kernel for NetlinkKernel {
    /// The index of an interface, or `None` if it does not exist.
    async fn link_index(&mut self, name: &str) -> Result<Option<u32>, KernelError> {
        if let Some(i) = self.links.get(name) {
            return Ok(Some(*i));
        }
        let index = self
            .with_batch(|b| b.index_of(name))
            .map_err(|e| refused(format!("look up interface {name}"), e))?;
        if let Some(i) = index {
            self.links.insert(name.to_string(), i);
        }
        Ok(index)
    }

    /// Forgets cached interface indexes (after a link event).
    fn forget_links(&mut self) {
        self.links.clear();
        self.just_read.take();
    }

    /// The current MAC of an interface: one `RTM_GETLINK` for that name.
    async fn link_mac(&self, name: &str) -> Result<Option<Mac>, KernelError> {
        let Some(link) = self.get_link(name).await? else {
            return Ok(None);
        };
        let mac = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(b);
                Some(Mac(m))
            }
            _ => None,
        });
        self.just_read.replace(Some((name.to_string(), link)));
        Ok(mac)
    }

    /// Why `name` cannot carry routes now, if it cannot: it does not exist, is
    /// not a Linux bridge, or is administratively down (the kernel refuses
    /// routes through a device that is down). `None` when it is usable.
    async fn bridge_problem(&mut self, name: &str) -> Result<Option<String>, KernelError> {
        let just_read = match self.just_read.take() {
            Some((n, link)) if n == name => Some(link),
            _ => None,
        };
        let link = match just_read {
            Some(link) => link,
            None => match self.get_link(name).await? {
                Some(link) => link,
                None => return Ok(Some(format!("bridge {name} does not exist on this host"))),
            },
        };
        self.links.insert(name.to_string(), link.header.index);
        let is_bridge = link.attributes.iter().any(|a| {
            matches!(a, LinkAttribute::LinkInfo(infos) if infos.iter().any(|i| matches!(
                i,
                netlink_packet_route::link::LinkInfo::Kind(netlink_packet_route::link::InfoKind::Bridge)
            )))
        });
        if !is_bridge {
            return Ok(Some(format!("{name} exists but is not a Linux bridge")));
        }
        if !link
            .header
            .flags
            .contains(netlink_packet_route::link::LinkFlags::Up)
        {
            return Ok(Some(format!(
                "bridge {name} is down (ip link set {name} up)"
            )));
        }
        Ok(None)
    }

    /// Which of `candidates` are addresses of this host: one FIB lookup per
    /// address (a `local` route answers), all in flight together, so the cost does
    /// not grow with the number of interfaces (each VM's tap has addresses too).
    async fn local_among(&self, candidates: &[IpAddr]) -> Result<Vec<IpAddr>, KernelError> {
        let found = self.query_routes(candidates)?;
        Ok(found
            .into_iter()
            .filter(|l| l.local)
            .map(|l| l.address)
            .collect())
    }

    async fn lookup_routes(&self, addresses: &[IpAddr]) -> Result<Vec<RouteLookup>, KernelError> {
        self.query_routes(addresses)
    }

    async fn link_name(&self, index: u32) -> Result<Option<String>, KernelError> {
        super::lookup::link_name(self.handle()?, index).await
    }

    /// Every address configured on the host's interfaces.
    async fn host_addresses(&self) -> Result<Vec<IpAddr>, KernelError> {
        let mut out = Vec::new();
        let mut s = self.handle()?.address().get().execute();
        while let Some(msg) = s
            .try_next()
            .await
            .map_err(|e| KernelError::from_rtnetlink("list the host's addresses".into(), e))?
        {
            for a in msg.attributes {
                if let AddressAttribute::Address(ip) | AddressAttribute::Local(ip) = a {
                    if !out.contains(&ip) {
                        out.push(ip);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Installs (replacing) every entry, in batches (see [`crate::kernel::batch`]).
    /// Returns, in order, the result of each.
    async fn install(&mut self, entries: &[Entry], protocol: u8) -> Vec<Result<(), KernelError>> {
        let mut requests = Vec::with_capacity(entries.len());
        for e in entries {
            let index = match self.bridge_index(bridge_of(e)).await {
                Ok(i) => i,
                // Without its bridge nothing of the domain can be installed.
                Err(_) => {
                    return entries
                        .iter()
                        .map(|x| Err(KernelError::NoBridge(bridge_of(x).to_string())))
                        .collect()
                }
            };
            requests.push(match e {
                Entry::Route(r) => (
                    RouteNetlinkMessage::NewRoute(route_message(r, index, protocol)),
                    NLM_F_CREATE | NLM_F_REPLACE,
                ),
                Entry::Neighbour(n) => {
                    let mut m = neighbour_message(n, index);
                    m.attributes
                        .push(NeighbourAttribute::LinkLayerAddress(n.mac.0.to_vec()));
                    m.attributes
                        .push(NeighbourAttribute::Protocol(RouteProtocol::from(protocol)));
                    (
                        RouteNetlinkMessage::NewNeighbour(m),
                        NLM_F_CREATE | NLM_F_REPLACE,
                    )
                }
            });
        }
        self.run_batch(entries, requests, "add", false)
    }

    /// Removes every entry; an entry already gone counts as removed.
    async fn remove(&mut self, entries: &[Entry], protocol: u8) -> Vec<Result<(), KernelError>> {
        let mut present = Vec::with_capacity(entries.len());
        let mut requests = Vec::with_capacity(entries.len());
        let mut out: Vec<Option<Result<(), KernelError>>> = Vec::with_capacity(entries.len());
        for e in entries {
            // A bridge that no longer exists took its routes and neighbours with it.
            let index = match self.link_index(bridge_of(e)).await {
                Ok(Some(i)) => i,
                Ok(None) => {
                    out.push(Some(Ok(())));
                    continue;
                }
                Err(err) => {
                    out.push(Some(Err(err)));
                    continue;
                }
            };
            out.push(None);
            present.push(e.clone());
            requests.push(match e {
                Entry::Route(r) => {
                    let mut m = route_message(r, index, protocol);
                    m.header.scope = RouteScope::NoWhere;
                    (RouteNetlinkMessage::DelRoute(m), 0)
                }
                Entry::Neighbour(n) => (
                    RouteNetlinkMessage::DelNeighbour(neighbour_message(n, index)),
                    0,
                ),
            });
        }
        let mut results = self
            .run_batch(&present, requests, "remove", true)
            .into_iter();
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| results.next().unwrap_or(Ok(()))))
            .collect()
    }

    /// Removes routes and neighbours exactly as the kernel holds them, in batches;
    /// one already gone counts as removed.
    fn remove_kernel_entries(
        &mut self,
        routes: &[KernelRoute],
        neighbours: &[KernelNeighbour],
    ) -> Vec<Result<(), KernelError>> {
        let mut labels = Vec::new();
        let mut requests = Vec::new();
        for r in routes {
            let mut m = RouteMessage::default();
            m.header.address_family = family(r.destination.addr());
            m.header.destination_prefix_length = r.destination.prefix_len();
            m.header.table = netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN;
            m.header.protocol = RouteProtocol::from(r.protocol);
            m.header.scope = RouteScope::NoWhere;
            m.attributes.push(RouteAttribute::Destination(route_address(
                r.destination.addr(),
            )));
            if let Some(i) = r.ifindex {
                m.attributes.push(RouteAttribute::Oif(i));
            }
            if let Some(g) = r.gateway {
                m.attributes.push(RouteAttribute::Gateway(route_address(g)));
            }
            m.attributes.push(RouteAttribute::Priority(r.metric));
            labels.push(format!("route {} metric {}", r.destination, r.metric));
            requests.push((RouteNetlinkMessage::DelRoute(m), 0));
        }
        for n in neighbours {
            let mut m = NeighbourMessage::default();
            m.header.family = family(n.address);
            m.header.ifindex = n.ifindex;
            m.attributes
                .push(NeighbourAttribute::Destination(neighbour_address(
                    n.address,
                )));
            labels.push(format!("neighbour {}", n.address));
            requests.push((RouteNetlinkMessage::DelNeighbour(m), 0));
        }
        self.run_batch(&labels, requests, "remove", true)
    }

    /// Whether each bridge port is isolated, by interface name (one link dump).
    async fn isolated_ports(&self) -> Result<HashMap<String, bool>, KernelError> {
        let mut out = HashMap::new();
        let mut s = self.handle()?.link().get().execute();
        while let Some(link) = s
            .try_next()
            .await
            .map_err(|e| KernelError::from_rtnetlink("list interfaces".into(), e))?
        {
            if let (Some(n), Some(i)) = port_isolation(link.attributes) {
                out.insert(n, i);
            }
        }
        Ok(out)
    }

    async fn port_isolated(&self, port: &str) -> Result<Option<bool>, KernelError> {
        Ok(self
            .get_link(port)
            .await?
            .and_then(|link| port_isolation(link.attributes).1))
    }

    /// Every route in the main table (both families).
    async fn routes(&self) -> Result<Vec<KernelRoute>, KernelError> {
        let mut out = Vec::new();
        for builder in [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ] {
            let mut s = self.handle()?.route().get(builder).execute();
            while let Some(m) = s
                .try_next()
                .await
                .map_err(|e| KernelError::from_rtnetlink("list routes".into(), e))?
            {
                if let Some(r) = kernel_route(&m) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// The main table's routes of `protocol`: a kernel-filtered dump, or (a
    /// kernel without strict checking, or `VIRT_L3_STRICT_DUMPS=0`) every route
    /// filtered here.
    async fn routes_of(&mut self, protocol: u8) -> Result<Vec<KernelRoute>, KernelError> {
        if self.strict_dumps {
            if let Some(routes) = filtered_routes(protocol) {
                return Ok(routes);
            }
            self.strict_dumps = false;
        } else {
            tracing::debug!("{STRICT_DUMPS_ENV}=0: dumping every route");
        }
        let mut routes = self.routes().await?;
        routes.retain(|r| r.protocol == protocol);
        Ok(routes)
    }

    /// One get request per entry, pipelined through the batch socket: a route
    /// is looked up with `RTM_F_FIB_MATCH` through its bridge, a neighbour by
    /// address and bridge (`RTM_GETNEIGH`, Linux 4.20).
    async fn lookup(&mut self, entries: &[Entry]) -> Result<Vec<Found>, KernelError> {
        let mut asked = Vec::with_capacity(entries.len());
        let mut requests = Vec::with_capacity(entries.len());
        for e in entries {
            match self.link_index(bridge_of(e)).await? {
                Some(i) => {
                    asked.push(true);
                    requests.push(lookup_request(e, i));
                }
                None => asked.push(false),
            }
        }
        let answers = self
            .with_batch(|b| b.query(requests))
            .map_err(|e| refused("look up virt-l3's routes and neighbours".into(), e))?;
        let mut answers = answers.into_iter();
        Ok(asked
            .into_iter()
            .map(|a| match a.then(|| answers.next()).flatten() {
                Some(Ok(RouteNetlinkMessage::NewRoute(m))) => {
                    kernel_route(&m).map_or(Found::Nothing, Found::Route)
                }
                Some(Ok(RouteNetlinkMessage::NewNeighbour(m))) => {
                    kernel_neighbour(&m).map_or(Found::Nothing, Found::Neighbour)
                }
                _ => Found::Nothing,
            })
            .collect())
    }

    /// Every neighbour entry (both families) on the given interface.
    async fn neighbours(&self, ifindex: u32) -> Result<Vec<KernelNeighbour>, KernelError> {
        let mut out = Vec::new();
        let mut s = self.handle()?.neighbours().get().execute();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(|e| KernelError::from_rtnetlink("list neighbours".into(), e))?
        {
            if m.header.ifindex != ifindex {
                continue;
            }
            if let Some(n) = kernel_neighbour(&m) {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Gives a bridge a fixed MAC: `mac` if given, else the one it has now.
    ///
    /// A bridge whose MAC was never set takes the lowest MAC of its ports, so a
    /// VM's tap joining or leaving changes it; every MAC change flushes the
    /// bridge's neighbour table, permanent entries included, and changes the
    /// guests' gateway MAC under them. Returns a description if something changed.
    async fn pin_bridge_mac(
        &mut self,
        bridge: &str,
        mac: Option<Mac>,
        apply: bool,
    ) -> Result<Option<String>, KernelError> {
        let sys = format!("/sys/class/net/{bridge}");
        let read = |f: &str| {
            super::sysctl::read_short(std::path::Path::new(&format!("{sys}/{f}")))
                .map(|s| s.trim().to_string())
        };
        let (Ok(assign), Ok(current)) = (read("addr_assign_type"), read("address")) else {
            return Ok(None); // no such bridge (yet): nothing to pin
        };
        let current: Option<Mac> = current.parse().ok();
        // NET_ADDR_SET (3): set by an administrator, never follows the ports.
        let pinned = assign == "3";
        let target = match mac.or(current) {
            Some(m) => m,
            None => return Ok(None),
        };
        if pinned && current == Some(target) {
            return Ok(None);
        }
        let done = format!("bridge {bridge} MAC pinned to {target}");
        if !apply {
            return Ok(Some(done));
        }
        let index = self.bridge_index(bridge).await?;
        let msg = rtnetlink::LinkUnspec::new_with_index(index)
            .address(target.0.to_vec())
            .build();
        self.handle()?
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| {
                KernelError::from_rtnetlink(format!("set the MAC of {bridge} to {target}"), e)
            })?;
        Ok(Some(done))
    }

    async fn bridge_names(&self) -> Result<Vec<String>, KernelError> {
        super::bridges::bridge_names(self.handle()?).await
    }

    async fn add_gateways(
        &mut self,
        bridge: &str,
        gateways: &[IpAddr],
        apply: bool,
    ) -> Result<Vec<String>, KernelError> {
        let Some(index) = self.link_index(bridge).await? else {
            return Ok(Vec::new());
        };
        super::bridges::add_gateways(self.handle()?, index, bridge, gateways, apply).await
    }

    /// Sets or clears bridge port isolation on a bridge port (a VM's tap).
    async fn set_port_isolation(&mut self, port: &str, isolated: bool) -> Result<(), KernelError> {
        self.isolate_ports(&[port], isolated)
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    /// All in one batch: `bridge link set dev PORT isolated on` is RTM_SETLINK
    /// of family AF_BRIDGE with IFLA_PROTINFO, which the bridge applies alone.
    /// The `ip link set PORT type bridge_slave` form (RTM_NEWLINK with
    /// IFLA_LINKINFO) also announces a device state change, on which the kernel
    /// walks tables that grow with the VMs: 5–10 ms per tap on a host routing
    /// 10,000 VMs, 14–19 µs this way (docs/BENCHMARKS.md).
    async fn isolate_ports(
        &mut self,
        ports: &[&str],
        isolated: bool,
    ) -> Vec<Result<(), KernelError>> {
        let mut out: Vec<Option<Result<(), KernelError>>> = Vec::with_capacity(ports.len());
        let mut asked = Vec::new();
        let mut requests = Vec::new();
        for port in ports {
            match self.link_index(port).await {
                Ok(Some(index)) => {
                    let mut msg = LinkMessage::default();
                    msg.header.interface_family = AddressFamily::Bridge;
                    msg.header.index = index;
                    msg.attributes.push(LinkAttribute::ProtoInfoBridge(vec![
                        LinkProtoInfoBridge::Other(DefaultNla::new(
                            IFLA_BRPORT_ISOLATED,
                            vec![u8::from(isolated)],
                        )),
                    ]));
                    asked.push(format!("bridge port isolation on {port}"));
                    requests.push((RouteNetlinkMessage::SetLink(msg), 0));
                    out.push(None);
                }
                Ok(None) => out.push(Some(Err(KernelError::NoInterface(port.to_string())))),
                Err(e) => out.push(Some(Err(e))),
            }
        }
        let mut done = self.run_batch(&asked, requests, "set", false).into_iter();
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| done.next().unwrap_or(Ok(()))))
            .collect()
    }

    fn disable_redirects(&mut self, bridge: &str) -> std::io::Result<Vec<String>> {
        super::sysctl::disable_redirects(bridge)
    }

    async fn ensure_firewall(
        &mut self,
        config: &crate::config::Config,
    ) -> Result<bool, KernelError> {
        let ensured = crate::firewall::ensure_quick_with(self.handle()?, config).await?;
        Ok(ensured == crate::firewall::Ensured::Installed)
    }

    async fn ensure_firewall_present(
        &mut self,
        config: &crate::config::Config,
    ) -> Result<bool, KernelError> {
        let ensured = crate::firewall::ensure_present(config).await?;
        Ok(ensured == crate::firewall::Ensured::Installed)
    }

    fn accept_ports(&mut self, ports: &[&str]) -> Result<(), KernelError> {
        Ok(crate::firewall::accept_ports(ports)?)
    }

    fn forget_port(&mut self, port: &str) -> Result<(), KernelError> {
        Ok(crate::firewall::forget_port(port)?)
    }

    fn accepted_ports(&self) -> Result<Vec<String>, KernelError> {
        Ok(crate::firewall::nft::accepted_ports()?)
    }

    /// `CAP_NET_ADMIN` in the effective set (`capget`; when the kernel does
    /// not answer, assume so and let the kernel say).
    fn has_net_admin(&self) -> bool {
        const CAP_NET_ADMIN: u32 = 12;
        effective_capabilities().map_or(true, |caps| caps & (1 << CAP_NET_ADMIN) != 0)
    }
}

/// This process's effective capabilities (`capget`, version 3: 64 bits), or
/// `None` if the kernel does not answer.
fn effective_capabilities() -> Option<u64> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two `Data` (version 3) through valid, exclusive pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    };
    (rc == 0).then(|| u64::from(data[1].effective) << 32 | u64::from(data[0].effective))
}

/// The netlink message for one of virt-l3's routes.
pub fn route_message(r: &Route, ifindex: u32, protocol: u8) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family(r.destination.addr());
    m.header.destination_prefix_length = r.destination.prefix_len();
    m.header.table = netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::from(protocol);
    m.header.kind = RouteType::Unicast;
    m.header.scope = if r.via.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    m.attributes
        .push(RouteAttribute::Destination(match r.destination.addr() {
            IpAddr::V4(a) => RouteAddress::Inet(a),
            IpAddr::V6(a) => RouteAddress::Inet6(a),
        }));
    if let Some(via) = r.via {
        m.header.flags |= RouteFlags::Onlink;
        m.attributes.push(RouteAttribute::Gateway(match via {
            IpAddr::V4(a) => RouteAddress::Inet(a),
            IpAddr::V6(a) => RouteAddress::Inet6(a),
        }));
    }
    m.attributes.push(RouteAttribute::Oif(ifindex));
    m.attributes.push(RouteAttribute::Priority(r.metric));
    m
}

fn neighbour_message(n: &Neighbour, ifindex: u32) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family(n.address);
    m.header.ifindex = ifindex;
    m.header.state = NeighbourState::Permanent;
    m.attributes
        .push(NeighbourAttribute::Destination(neighbour_address(
            n.address,
        )));
    m
}

/// A link's name and, when it is a bridge port, whether it is isolated.
fn port_isolation(attributes: Vec<LinkAttribute>) -> (Option<String>, Option<bool>) {
    let mut name = None;
    let mut isolated = None;
    for a in attributes {
        match a {
            LinkAttribute::IfName(n) => name = Some(n),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let netlink_packet_route::link::LinkInfo::PortData(
                        netlink_packet_route::link::InfoPortData::BridgePort(ports),
                    ) = i
                    {
                        isolated = Some(
                            ports
                                .iter()
                                .any(|p| matches!(p, InfoBridgePort::Isolated(true))),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    (name, isolated)
}
