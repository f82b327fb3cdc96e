//! The one host setting routed bridges need: no ICMP redirects.
//!
//! Guests reach each other through the gateway on the same bridge. Left on, the
//! kernel answers such traffic with "redirect: go directly to the other guest",
//! and guests then try a layer-2 path that the filters and port isolation
//! block. The kernel sends redirects when `all` OR the interface says so, so
//! both are turned off.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

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
        let current = read_short(&p)?;
        if current.trim() != "0" {
            std::fs::write(&p, b"0").map_err(|e| {
                io::Error::new(e.kind(), format!("cannot write {}: {e}", p.display()))
            })?;
            changed.push(format!("net.ipv4.conf.{iface}.send_redirects=0"));
        }
    }
    Ok(changed)
}

/// The text of a small /proc or /sys file (a setting, a MAC): open, one read,
/// close. Such files hand over their whole value in one read; `read_to_string`
/// would also stat the file and read again to see the end (a hook start reads
/// four of them).
pub fn read_short(path: &Path) -> io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = [0u8; 128];
    let n = f.read(&mut buf)?;
    let mut bytes = buf[..n].to_vec();
    if n == buf.len() {
        f.read_to_end(&mut bytes)?;
    }
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::read_short;

    #[test]
    fn reads_short_and_long_files_whole() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, 127, 128, 129, 5000] {
            let p = dir.path().join(format!("f{len}"));
            let text: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            std::fs::write(&p, &text).unwrap();
            assert_eq!(read_short(&p).unwrap(), text, "{len} bytes");
        }
        assert!(read_short(&dir.path().join("absent")).is_err());
    }
}
