//! In-process set element changes (the hook's path: no `nft` fork): one
//! nfnetlink batch `BATCH_BEGIN, NEWSETELEM|DELSETELEM..., BATCH_END` on a
//! NETLINK_NETFILTER socket, acknowledged by the kernel message by message;
//! the kernel applies the whole batch or none of it.
//!
//! Keys as nftables encodes them (libnftnl, the kernel's nft_set_pipapo.c):
//! each field of a concatenation in network byte order, padded with zeros to
//! 4 bytes; an interval element carries `NFTA_SET_ELEM_KEY` (first value) and
//! `NFTA_SET_ELEM_KEY_END` (last value).

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::FirewallError;
use crate::kernel::batch::{error_code, messages, recv};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFT_JUMP: i32 = -3;
const NFTA_DATA_VALUE: u16 = 1;
/// `NFPROTO_*` of the table.
pub const NFPROTO_BRIDGE: u8 = 7;
/// `NFPROTO_INET`.
pub const NFPROTO_INET: u8 = 1;

/// The `NFPROTO_*` number of an nft family name (0 for an unknown one).
pub fn family(name: &str) -> u8 {
    match name {
        "inet" => 1,
        "ip" => 2,
        "arp" => 3,
        "netdev" => 5,
        "bridge" => NFPROTO_BRIDGE,
        "ip6" => 10,
        _ => 0,
    }
}

/// Adds (`add = true`) or deletes one interface name in the set `table`/`set`
/// of `family`. Adding a present name or deleting an absent one is not an error.
pub fn change_ifname(
    family: u8,
    table: &str,
    set: &str,
    name: &str,
    add: bool,
) -> Result<(), FirewallError> {
    change_ifnames(family, table, set, &[name], add)
}

/// [`change_ifname`] for several names in one transaction (all or none).
pub fn change_ifnames(
    family: u8,
    table: &str,
    set: &str,
    names: &[&str],
    add: bool,
) -> Result<(), FirewallError> {
    if names.is_empty() {
        return Ok(());
    }
    let what = format!(
        "{} port(s) {} {} the set {table}/{set}",
        if add { "add" } else { "remove" },
        names.join(", "),
        if add { "to" } else { "from" }
    );
    let mut elements = Vec::new();
    for name in names {
        if name.is_empty() || name.len() > 15 {
            return Err(FirewallError::Netlink {
                what,
                detail: format!("{name:?} is not an interface name"),
            });
        }
        let mut key = vec![0u8; 16];
        key[..name.len()].copy_from_slice(name.as_bytes());
        elements.push(Element {
            key,
            key_end: None,
            jump: None,
        });
    }
    let change = SetChange {
        set: set.to_string(),
        add,
        elements,
    };
    match batch(family, table, &[change]) {
        Err(Failed::Errno(libc::ENOENT, _)) if !add => Ok(()),
        r => r.map_err(|f| f.into_error(&what)),
    }
}

/// One set element: its key and, in an interval set, the key of its last value.
/// Keys are the set's fields in order, each padded to 4 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Element {
    pub key: Vec<u8>,
    pub key_end: Option<Vec<u8>>,
    /// In a verdict map: the chain the element jumps to.
    pub jump: Option<String>,
}

/// Elements added to (NEWSETELEM, present ones kept) or deleted from one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetChange {
    pub set: String,
    pub add: bool,
    pub elements: Vec<Element>,
}

/// Why a batch failed.
#[derive(Debug)]
pub enum Failed {
    /// The kernel refused a message (the whole batch was undone).
    Errno(i32, String),
    /// The socket failed.
    Io(String),
}

impl Failed {
    pub fn into_error(self, what: &str) -> FirewallError {
        let detail = match self {
            Failed::Errno(errno, _) => std::io::Error::from_raw_os_error(errno).to_string(),
            Failed::Io(d) => d,
        };
        FirewallError::Netlink {
            what: what.to_string(),
            detail,
        }
    }
}

/// Elements per message (a nested attribute is at most 64 KiB).
const CHUNK: usize = 128;

/// Applies `changes` to sets of `family`/`table` in ONE nfnetlink batch: the
/// kernel applies all of it or nothing.
pub fn batch(family: u8, table: &str, changes: &[SetChange]) -> Result<(), Failed> {
    let base = std::process::id().wrapping_mul(0x10000) ^ (now_nanos() & 0xffff);
    let mut seq = base;
    let mut batch = message(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    // (seq, set) of each message that is acknowledged.
    let mut pending: Vec<(u32, &str)> = Vec::new();
    for c in changes {
        for chunk in c.elements.chunks(CHUNK) {
            seq = seq.wrapping_add(1);
            let mut body = Vec::new();
            attr(&mut body, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
            attr(&mut body, NFTA_SET_ELEM_LIST_SET, &cstr(&c.set));
            let mut elems = Vec::new();
            for e in chunk {
                let mut inner = nla(
                    NFTA_SET_ELEM_KEY | NLA_F_NESTED,
                    &nla(NFTA_DATA_VALUE, &e.key),
                );
                if let (Some(chain), true) = (&e.jump, c.add) {
                    let mut verdict = nla(NFTA_VERDICT_CODE, &NFT_JUMP.to_be_bytes());
                    attr(&mut verdict, NFTA_VERDICT_CHAIN, &cstr(chain));
                    attr(
                        &mut inner,
                        NFTA_SET_ELEM_DATA | NLA_F_NESTED,
                        &nla(NFTA_DATA_VERDICT | NLA_F_NESTED, &verdict),
                    );
                }
                if let Some(end) = &e.key_end {
                    attr(
                        &mut inner,
                        NFTA_SET_ELEM_KEY_END | NLA_F_NESTED,
                        &nla(NFTA_DATA_VALUE, end),
                    );
                }
                attr(&mut elems, NFTA_LIST_ELEM | NLA_F_NESTED, &inner);
            }
            attr(
                &mut body,
                NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED,
                &elems,
            );
            let (ty, flags) = if c.add {
                (NFT_MSG_NEWSETELEM, NLM_F_CREATE)
            } else {
                (NFT_MSG_DELSETELEM, 0)
            };
            batch.extend(message(
                (NFNL_SUBSYS_NFTABLES << 8) | ty,
                NLM_F_REQUEST | NLM_F_ACK | flags,
                seq,
                family,
                0,
                &body,
            ));
            pending.push((seq, &c.set));
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    seq = seq.wrapping_add(1);
    batch.extend(message(
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    ));
    send_and_wait(&batch, pending)
}

fn now_nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

/// Sends a batch and reads the acknowledgements: Ok when every message is
/// acknowledged, the first error otherwise.
fn send_and_wait(batch: &[u8], mut pending: Vec<(u32, &str)>) -> Result<(), Failed> {
    let mut socket = Socket::new(NETLINK_NETFILTER)
        .map_err(|e| Failed::Io(format!("cannot open a netfilter socket: {e}")))?;
    socket
        .bind_auto()
        .map_err(|e| Failed::Io(format!("cannot bind a netfilter socket: {e}")))?;
    socket
        .send_to(batch, &SocketAddr::new(0, 0), 0)
        .map_err(|e| Failed::Io(format!("cannot send: {e}")))?;
    let mut buf = Vec::with_capacity(65536);
    while !pending.is_empty() {
        let n = recv(&socket, &mut buf).map_err(|e| Failed::Io(format!("no answer: {e}")))?;
        for (ty, mseq, msg) in messages(&buf[..n]) {
            if ty == NLMSG_ERROR {
                if let Some(i) = pending.iter().position(|(s, _)| *s == mseq) {
                    let (_, set) = pending.swap_remove(i);
                    let errno = error_code(msg);
                    if errno != 0 {
                        return Err(Failed::Errno(errno, set.to_string()));
                    }
                }
            }
        }
    }
    Ok(())
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn nla(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    attr(&mut v, ty, payload);
    v
}

fn attr(out: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    out.extend(((4 + payload.len()) as u16).to_ne_bytes());
    out.extend(ty.to_ne_bytes());
    out.extend(payload);
    out.resize((out.len() + 3) & !3, 0);
}

fn message(ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, body: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + body.len();
    let mut v = Vec::with_capacity(len);
    v.extend((len as u32).to_ne_bytes());
    v.extend(ty.to_ne_bytes());
    v.extend(flags.to_ne_bytes());
    v.extend(seq.to_ne_bytes());
    v.extend(0u32.to_ne_bytes());
    v.extend([family, 0]);
    v.extend(res_id.to_be_bytes());
    v.extend(body);
    v
}

const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_GETRULE: u16 = 7;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_DONE: u16 = 3;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_USERDATA: u16 = 6;
const NFTA_RULE_TABLE: u16 = 1;
/// libnftnl's user data type of a table's comment.
const NFTNL_UDATA_TABLE_COMMENT: u8 = 0;

/// One table as the kernel lists it: its family, name, comment and rule count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledTable {
    pub family: u8,
    pub name: String,
    pub comment: Option<String>,
    pub rules: usize,
}

/// Every table named `name` (any family) with its comment and number of
/// rules: two netlink dumps, no `nft` fork (the hook's cheap check).
pub fn installed_tables(name: &str) -> Result<Vec<InstalledTable>, FirewallError> {
    let fail = |detail: String| FirewallError::Netlink {
        what: "list the nftables tables".into(),
        detail,
    };
    let mut tables: Vec<InstalledTable> = Vec::new();
    dump(NFT_MSG_GETTABLE, &[], |family, attrs| {
        if find_attr(attrs, NFTA_TABLE_NAME).map(c_str) != Some(name.as_bytes()) {
            return;
        }
        tables.push(InstalledTable {
            family,
            name: name.to_string(),
            comment: find_attr(attrs, NFTA_TABLE_USERDATA).and_then(table_comment),
            rules: 0,
        });
    })
    .map_err(fail)?;
    if tables.is_empty() {
        return Ok(tables);
    }
    // Not filtered by table in the request: the kernel then stops after the
    // first family's table of that name.
    dump(NFT_MSG_GETRULE, &[], |family, attrs| {
        if find_attr(attrs, NFTA_RULE_TABLE).map(c_str) != Some(name.as_bytes()) {
            return;
        }
        if let Some(t) = tables.iter_mut().find(|t| t.family == family) {
            t.rules += 1;
        }
    })
    .map_err(fail)?;
    Ok(tables)
}

/// The comment in a table's user data (libnftnl TLVs: type, length, value).
fn table_comment(mut data: &[u8]) -> Option<String> {
    while data.len() >= 2 {
        let (ty, len) = (data[0], data[1] as usize);
        let value = data.get(2..2 + len)?;
        if ty == NFTNL_UDATA_TABLE_COMMENT {
            let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
            return Some(String::from_utf8_lossy(&value[..end]).into_owned());
        }
        data = &data[2 + len..];
    }
    None
}

/// A NUL-terminated string attribute without its NUL.
fn c_str(v: &[u8]) -> &[u8] {
    &v[..v.iter().position(|b| *b == 0).unwrap_or(v.len())]
}

const NFT_MSG_GETSET: u16 = 10;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;

/// Whether the table `name` exists in each of `families` and holds the set
/// `set` in the family `set_family` (the hook's check at `start`): one datagram
/// of plain requests (`NFT_MSG_GETTABLE` per family, `NFT_MSG_GETSET`), each
/// answered by the object or by an error (`ENOENT`: absent). Neither rules nor
/// comments are compared (see [`super::ensure_present`]).
pub fn tables_present(
    name: &str,
    families: &[u8],
    set_family: u8,
    set: &str,
) -> Result<bool, FirewallError> {
    let fail = |detail: String| FirewallError::Netlink {
        what: "look up the nftables tables".into(),
        detail,
    };
    let seq0 = std::process::id() ^ 0x7ab1_0000;
    let mut request = Vec::new();
    for (i, family) in families.iter().enumerate() {
        request.extend(message(
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE,
            NLM_F_REQUEST,
            seq0.wrapping_add(i as u32),
            *family,
            0,
            &nla(NFTA_TABLE_NAME, &cstr(name)),
        ));
    }
    let mut body = nla(NFTA_SET_TABLE, &cstr(name));
    body.extend(nla(NFTA_SET_NAME, &cstr(set)));
    request.extend(message(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSET,
        NLM_F_REQUEST,
        seq0.wrapping_add(families.len() as u32),
        set_family,
        0,
        &body,
    ));
    let mut socket = Socket::new(NETLINK_NETFILTER)
        .map_err(|e| fail(format!("cannot open a netfilter socket: {e}")))?;
    socket
        .bind_auto()
        .map_err(|e| fail(format!("cannot bind a netfilter socket: {e}")))?;
    socket
        .send_to(&request, &SocketAddr::new(0, 0), 0)
        .map_err(|e| fail(format!("cannot send: {e}")))?;
    let mut answered = vec![false; families.len() + 1];
    let mut present = true;
    let mut buf = Vec::with_capacity(32768);
    while answered.iter().any(|a| !a) {
        let n = recv(&socket, &mut buf).map_err(|e| fail(format!("no answer: {e}")))?;
        let mut at = 0;
        while at + 16 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            let ty = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
            let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().expect("4 bytes"));
            if len < 16 || at + len > n {
                return Err(fail("a malformed answer".into()));
            }
            let i = seq.wrapping_sub(seq0) as usize;
            if i < answered.len() {
                if ty == NLMSG_ERROR && len >= 20 {
                    let code =
                        i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4 bytes"));
                    match -code {
                        0 => {}
                        libc::ENOENT => present = false,
                        e => return Err(fail(std::io::Error::from_raw_os_error(e).to_string())),
                    }
                }
                answered[i] = true;
            }
            at += (len + 3) & !3;
        }
    }
    Ok(present)
}

/// The payload of the first top-level attribute of type `ty`.
fn find_attr(mut data: &[u8], ty: u16) -> Option<&[u8]> {
    while data.len() >= 4 {
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let t = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            return None;
        }
        if t == ty {
            return Some(&data[4..len]);
        }
        data = &data[((len + 3) & !3).min(data.len())..];
    }
    None
}

/// A dump request of the nftables subsystem (every family): `each` gets every
/// answer's family and attributes.
fn dump(msg: u16, body: &[u8], mut each: impl FnMut(u8, &[u8])) -> Result<(), String> {
    let seq = std::process::id() ^ 0x5e71_0000;
    let request = message(
        (NFNL_SUBSYS_NFTABLES << 8) | msg,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        0,
        0,
        body,
    );
    let mut socket = Socket::new(NETLINK_NETFILTER)
        .map_err(|e| format!("cannot open a netfilter socket: {e}"))?;
    socket
        .bind_auto()
        .map_err(|e| format!("cannot bind a netfilter socket: {e}"))?;
    socket
        .send_to(&request, &SocketAddr::new(0, 0), 0)
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut buf = Vec::with_capacity(32768);
    loop {
        let n = recv(&socket, &mut buf).map_err(|e| format!("no answer: {e}"))?;
        let mut at = 0;
        while at + 16 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            let ty = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
            if len < 16 || at + len > n {
                return Err("a malformed answer".into());
            }
            match ty {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code =
                        i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4 bytes"));
                    if code == 0 {
                        return Ok(());
                    }
                    return Err(std::io::Error::from_raw_os_error(-code).to_string());
                }
                _ if len >= 20 => each(buf[at + 16], &buf[at + 20..at + len]),
                _ => {}
            }
            at += (len + 3) & !3;
        }
    }
}

/// `NFNLGRP_NFTABLES`: the multicast group of nftables changes.
const NFNLGRP_NFTABLES: u32 = 7;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_DELSET: u16 = 11;

/// A non-blocking netfilter socket that receives every nftables change (`watch`).
pub fn subscribe() -> Result<Socket, FirewallError> {
    let fail = |detail: String| FirewallError::Netlink {
        what: "subscribe to nftables changes".into(),
        detail,
    };
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|e| fail(e.to_string()))?;
    socket.bind_auto().map_err(|e| fail(e.to_string()))?;
    socket
        .add_membership(NFNLGRP_NFTABLES)
        .map_err(|e| fail(e.to_string()))?;
    socket
        .set_non_blocking(true)
        .map_err(|e| fail(e.to_string()))?;
    Ok(socket)
}

/// Whether a datagram of nftables changes removes something of table `table`
/// (a table, chain, rule, set or set element deleted: a flush is rule deletions).
pub fn removes_from(datagram: &[u8], table: &str) -> bool {
    messages(datagram).any(|(ty, _, msg)| {
        let deletion = ty >> 8 == NFNL_SUBSYS_NFTABLES
            && [
                NFT_MSG_DELTABLE,
                NFT_MSG_DELCHAIN,
                NFT_MSG_DELRULE,
                NFT_MSG_DELSET,
                NFT_MSG_DELSETELEM,
            ]
            .contains(&(ty & 0xff));
        // Attribute 1 names the table in every one of these messages.
        deletion
            && msg
                .get(20..)
                .and_then(|attrs| find_attr(attrs, 1))
                .map(c_str)
                == Some(table.as_bytes())
    })
}
