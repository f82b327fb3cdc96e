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
    let h = sha256(bridge.as_bytes());
    Mac([0x02, h[0], h[1], h[2], h[3], h[4]])
}

/// SHA-256 (FIPS 180-4), enough for short names; no dependency for one use.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
        }
        for (a, b) in h.iter_mut().zip(v) {
            *a = a.wrapping_add(b);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answers() {
        let hex = |d: [u8; 32]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
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
