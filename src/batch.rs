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
        // Error replies carry only the failing request's header, not its body.
        let _ = socket.set_cap_ack(true);
        Ok(BatchSocket {
            socket,
            seq: 1,
            buf: Vec::new(),
        })
    }

    /// Sends each request (with its own `NLM_F_*` flags besides REQUEST/ACK) and
    /// returns, in order, 0 or the errno the kernel answered for it.
    pub fn execute(&mut self, requests: Vec<(RouteNetlinkMessage, u16)>) -> io::Result<Vec<i32>> {
        let mut results = vec![0i32; requests.len()];
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
        results: &mut [i32],
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
                        *slot = -code;
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
