//! Routed bridges named by patterns, and the gateway MAC derived from a bridge's name.
//!
//! `bridges` in the configuration holds names and patterns (a name's start then
//! `*`; the configuration refuses other globs, which nftables' interface
//! wildcards could not express): `["cloudbr0", "brdr-*"]`. The routed bridges are
//! the literal names plus the kernel's bridges that match a pattern.
//!
//! `gateway_mac = "derive"` gives each routed bridge the MAC
//! `02:` followed by the first 5 bytes of SHA-256(bridge name as UTF-8 bytes):
//! locally administered (bit 1 of the first octet set), unicast (bit 0 clear),
//! the same on every hypervisor without configuration.

use sha2::{Digest, Sha256};

use crate::address::Mac;

/// Whether `name` holds a glob metacharacter.
pub fn is_pattern(name: &str) -> bool {
    name.contains(['*', '?'])
}

/// Whether `name` matches the glob `pattern` (`*` any run, `?` one character;
/// every other character stands for itself).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // The last `*` seen and the name position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The gateway MAC derived from a bridge's name: `02` then the first 5 bytes of
/// SHA-256 of the name.
pub fn derived_mac(bridge: &str) -> Mac {
    let h = Sha256::digest(bridge.as_bytes());
    Mac([0x02, h[0], h[1], h[2], h[3], h[4]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answers() {
        let sha256 = |d: &[u8]| Sha256::digest(d);
        let hex = |d: sha2::digest::Output<Sha256>| {
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        assert_eq!(
            hex(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Two blocks.
        assert_eq!(
            hex(sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn globs_match_names() {
        assert!(glob_matches("brdr-*", "brdr-12"));
        assert!(glob_matches("brdr-*", "brdr-"));
        assert!(!glob_matches("brdr-*", "brd-12"));
        assert!(glob_matches("cloudbr0", "cloudbr0"));
        assert!(!glob_matches("cloudbr0", "cloudbr01"));
        assert!(glob_matches("br?-*x", "br1-abcx"));
        assert!(!glob_matches("br?-*x", "br12-abcx"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a*b*c", "aXXbYYbc"));
        assert!(!glob_matches("a*b*c", "aXXbYYb"));
        assert!(is_pattern("brdr-*") && is_pattern("br?") && !is_pattern("cloudbr0"));
    }

    #[test]
    fn derived_macs_are_stable_local_unicast_and_differ() {
        let a = derived_mac("brdr-1");
        assert_eq!(a, derived_mac("brdr-1"));
        assert_ne!(a, derived_mac("brdr-2"));
        assert_ne!(derived_mac("cloudbr0"), derived_mac("cloudbr1"));
        for name in ["brdr-1", "brdr-2", "cloudbr0", "x", "brdr-123456789a"] {
            let m = derived_mac(name);
            assert_eq!(m.0[0] & 0x02, 0x02, "{m}: locally administered");
            assert_eq!(m.0[0] & 0x01, 0, "{m}: unicast");
            assert!(!m.is_multicast() && !m.is_zero());
        }
        // The documented rule: 02 then SHA-256("abc")'s first 5 bytes.
        assert_eq!(derived_mac("abc").to_string(), "02:ba:78:16:bf:8f");
        // As the operator guide's python3 hashlib one-liner prints it.
        assert_eq!(derived_mac("brdr-42").to_string(), "02:ea:ba:d3:45:2e");
    }
}
