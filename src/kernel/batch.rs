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
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Messages per `sendmsg`: keeps error replies far below the socket's receive buffer.
const CHUNK: usize = 512;
const NLMSG_ERROR: u16 = 2;
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
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut buf[..], 0)?;
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
