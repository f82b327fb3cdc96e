//! Many netlink requests per system call.
//!
//! The kernel handles rtnetlink requests synchronously, inside `sendmsg`, one
//! message after another, and reports a failing message with an error message
//! whether or not an acknowledgement was asked for. So a whole batch of route
//! and neighbour changes goes down in one `sendmsg`, only its last message asks
//! for an acknowledgement, and one `recv` usually collects the lot: two system
//! calls for a domain's dozen entries, where `ip` makes two per entry.

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Messages per `sendmsg`: keeps error replies far below the socket's receive buffer.
const CHUNK: usize = 512;
/// Lookups per `sendmsg`: every one is answered (a route or neighbour message of
/// a few hundred bytes), and answers that do not fit the receive buffer are lost.
const QUERY_CHUNK: usize = 128;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;

/// A blocking rtnetlink socket for batched changes.
pub struct BatchSocket {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl BatchSocket {
    pub fn open() -> io::Result<BatchSocket> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Error replies carry only the failing request's header, not its body,
        // and the kernel's own explanation (extended ACK), when it has one.
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_ext_ack(true);
        Ok(BatchSocket {
            socket,
            seq: 1,
            buf: Vec::new(),
        })
    }

    /// The index of the interface `name` (`SIOCGIFINDEX` on this socket: one
    /// system call, nothing to parse), or `None` if there is none.
    pub fn index_of(&self, name: &str) -> io::Result<Option<u32>> {
        use std::os::fd::AsRawFd;
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Ok(None); // no interface can have this name
        }
        // SAFETY: ifreq is plain data; all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        // SAFETY: SIOCGIFINDEX reads ifr_name and writes ifr_ifindex of `req`,
        // which outlives the call; the descriptor is this socket's.
        let rc = unsafe { libc::ioctl(self.socket.as_raw_fd(), libc::SIOCGIFINDEX as _, &mut req) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENODEV) => Ok(None),
                _ => Err(e),
            };
        }
        // SAFETY: a successful SIOCGIFINDEX wrote the index.
        let index = unsafe { req.ifr_ifru.ifru_ifindex };
        Ok(u32::try_from(index).ok())
    }

    /// Turns on strict checking of get requests (`NETLINK_GET_STRICT_CHK`, Linux
    /// 4.20): dumps then honour the filters set in the request's header and
    /// attributes (route protocol, table, interface). Fails on older kernels.
    pub fn set_strict(&mut self) -> io::Result<()> {
        self.socket.set_netlink_get_strict_chk(true)
    }

    /// Serializes `msg` with `flags` (besides REQUEST) and the next sequence number.
    fn push(&mut self, msg: RouteNetlinkMessage, flags: u16) -> u32 {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let start = self.buf.len();
        self.buf.resize(start + m.buffer_len(), 0);
        m.serialize(&mut self.buf[start..]);
        seq
    }

    /// Sends each get request (no dump: one answer each) and returns, in order,
    /// the kernel's answer: the message, or the errno it answered instead
    /// (`ENOENT`: no such neighbour; `ENETUNREACH`: no route). Pipelined: one
    /// `sendmsg` per [`QUERY_CHUNK`] requests, the answers read together.
    pub fn query(
        &mut self,
        requests: Vec<RouteNetlinkMessage>,
    ) -> io::Result<Vec<Result<RouteNetlinkMessage, i32>>> {
        let mut out: Vec<Result<RouteNetlinkMessage, i32>> = Vec::with_capacity(requests.len());
        let mut requests = requests.into_iter().peekable();
        let mut buf = Vec::with_capacity(64 * 1024);
        while requests.peek().is_some() {
            let chunk: Vec<RouteNetlinkMessage> = requests.by_ref().take(QUERY_CHUNK).collect();
            let n = chunk.len();
            self.buf.clear();
            let first_seq = self.seq;
            for (i, msg) in chunk.into_iter().enumerate() {
                // The last asks for an acknowledgement too: it marks the end.
                self.push(msg, if i == n - 1 { NLM_F_ACK } else { 0 });
            }
            self.socket.send(&self.buf, 0)?;
            let base = out.len();
            out.resize_with(base + n, || Err(0));
            let last_seq = first_seq.wrapping_add(n as u32 - 1);
            'chunk: loop {
                recv(&self.socket, &mut buf)?;
                for (kind, seq, msg) in messages(&buf) {
                    let index = seq.wrapping_sub(first_seq) as usize;
                    if index >= n {
                        continue;
                    }
                    if kind == NLMSG_ERROR {
                        let code = error_code(msg);
                        if code != 0 {
                            out[base + index] = Err(code);
                        }
                        if seq == last_seq {
                            break 'chunk;
                        }
                    } else if let Ok(m) = parse(msg) {
                        out[base + index] = Ok(m);
                    }
                }
            }
        }
        Ok(out)
    }

    /// One dump (`NLM_F_DUMP`), every message of it.
    pub fn dump(&mut self, request: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.buf.clear();
        let seq = self.push(request, NLM_F_DUMP);
        self.socket.send(&self.buf, 0)?;
        let mut out = Vec::new();
        let mut buf = Vec::with_capacity(256 * 1024);
        loop {
            recv(&self.socket, &mut buf)?;
            for (kind, s, msg) in messages(&buf) {
                if s != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = error_code(msg);
                        return Err(io::Error::from_raw_os_error(if code == 0 {
                            libc::EIO
                        } else {
                            code
                        }));
                    }
                    _ => {
                        if let Ok(m) = parse(msg) {
                            out.push(m);
                        }
                    }
                }
            }
        }
    }

    /// Sends each request (with its own `NLM_F_*` flags besides REQUEST/ACK) and
    /// returns, in order, 0 or the errno the kernel answered for it, with the
    /// kernel's message ("Nexthop device is not up") when it gave one.
    pub fn execute(
        &mut self,
        requests: Vec<(RouteNetlinkMessage, u16)>,
    ) -> io::Result<Vec<(i32, Option<String>)>> {
        let mut results = vec![(0i32, None); requests.len()];
        let mut offset = 0;
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            let chunk: Vec<(RouteNetlinkMessage, u16)> = requests.by_ref().take(CHUNK).collect();
            let first_seq = self.seq;
            let last = chunk.len() - 1;
            self.buf.clear();
            for (i, (msg, flags)) in chunk.into_iter().enumerate() {
                let mut header = NetlinkHeader::default();
                header.flags = NLM_F_REQUEST | flags | if i == last { NLM_F_ACK } else { 0 };
                header.sequence_number = self.seq;
                self.seq = self.seq.wrapping_add(1);
                let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
                m.finalize();
                let start = self.buf.len();
                self.buf.resize(start + m.buffer_len(), 0);
                m.serialize(&mut self.buf[start..]);
            }
            self.socket.send(&self.buf, 0)?;
            let last_seq = first_seq.wrapping_add(last as u32);
            self.collect_replies(first_seq, last_seq, &mut results[offset..offset + last + 1])?;
            offset += last + 1;
        }
        Ok(results)
    }

    /// Reads replies until the acknowledgement of `last_seq`, recording errors.
    fn collect_replies(
        &mut self,
        first_seq: u32,
        last_seq: u32,
        results: &mut [(i32, Option<String>)],
    ) -> io::Result<()> {
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            let n = recv(&self.socket, &mut buf)?;
            let mut at = 0;
            while at + NLMSG_HDRLEN <= n {
                let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
                if len < NLMSG_HDRLEN || at + len > n {
                    break;
                }
                let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
                let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().expect("4 bytes"));
                if kind == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 {
                    let code =
                        i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4 bytes"));
                    let index = seq.wrapping_sub(first_seq) as usize;
                    if let Some(slot) = results.get_mut(index) {
                        let flags =
                            u16::from_ne_bytes(buf[at + 6..at + 8].try_into().expect("2 bytes"));
                        *slot = (-code, ext_ack_message(&buf[at..at + len], flags));
                    }
                    if seq == last_seq {
                        return Ok(());
                    }
                }
                at += (len + 3) & !3;
            }
        }
    }
}

/// The netlink messages in a datagram: (type, sequence number, whole message).
/// Receives one datagram into `buf`'s capacity (its contents replaced) and
/// returns its length. `buf` is allocated once with `Vec::with_capacity` and
/// reused, so no receive zeroes a buffer first.
pub fn recv(socket: &Socket, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    socket.recv(buf, 0)?;
    Ok(buf.len())
}

/// The netlink messages of a datagram: type, sequence number and the whole
/// message; stops at the first one that is truncated or shorter than a header.
pub(crate) fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + NLMSG_HDRLEN > buf.len() {
            return None;
        }
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().ok()?);
        let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().ok()?);
        let msg = &buf[at..at + len];
        at += (len + 3) & !3;
        Some((kind, seq, msg))
    })
}

/// The errno of an error message (0 for an acknowledgement).
pub(crate) fn error_code(msg: &[u8]) -> i32 {
    msg.get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(libc::EIO, |b| -i32::from_ne_bytes(b))
}

/// A route or neighbour message.
fn parse(msg: &[u8]) -> Result<RouteNetlinkMessage, ()> {
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg) {
        Ok(NetlinkMessage {
            payload: NetlinkPayload::InnerMessage(m),
            ..
        }) => Ok(m),
        _ => Err(()),
    }
}

/// The `NLMSGERR_ATTR_MSG` of an error reply (`msg` is the whole message): with
/// `NETLINK_CAP_ACK` the attributes follow the error code and the failing
/// request's header, when `NLM_F_ACK_TLVS` says there are any.
fn ext_ack_message(msg: &[u8], flags: u16) -> Option<String> {
    const NLM_F_ACK_TLVS: u16 = 0x200;
    const NLMSGERR_ATTR_MSG: u16 = 1;
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let mut at = NLMSG_HDRLEN + 4 + NLMSG_HDRLEN;
    while at + 4 <= msg.len() {
        let len = u16::from_ne_bytes(msg[at..at + 2].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(msg[at + 2..at + 4].try_into().ok()?) & 0x3fff;
        if len < 4 || at + len > msg.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &msg[at + 4..at + len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            let text = String::from_utf8_lossy(text).trim().to_string();
            return (!text.is_empty()).then_some(text);
        }
        at += (len + 3) & !3;
    }
    None
}
