//! The one host setting routed bridges need: no ICMP redirects.
//!
//! Guests reach each other through the gateway on the same bridge. Left on, the
//! kernel answers such traffic with "redirect: go directly to the other guest",
//! and guests then try a layer-2 path that the filters and port isolation
//! block. The kernel sends redirects when `all` OR the interface says so, so
//! both are turned off.

use std::io;
use std::path::PathBuf;

fn path(interface: &str) -> PathBuf {
    PathBuf::from(format!(
        "/proc/sys/net/ipv4/conf/{interface}/send_redirects"
    ))
}

/// Turns IPv4 redirects off for `all` and the bridge; returns what was changed.
pub fn disable_redirects(bridge: &str) -> io::Result<Vec<String>> {
    let mut changed = Vec::new();
    for iface in ["all", bridge] {
        let p = path(iface);
        let current = std::fs::read_to_string(&p)?;
        if current.trim() != "0" {
            std::fs::write(&p, b"0").map_err(|e| {
                io::Error::new(e.kind(), format!("cannot write {}: {e}", p.display()))
            })?;
            changed.push(format!("net.ipv4.conf.{iface}.send_redirects=0"));
        }
    }
    Ok(changed)
}
