//! What a VM address, MAC or routed prefix may be, independent of any host.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// An Ethernet MAC address of a guest NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl FromStr for Mac {
    type Err = ();
    fn from_str(s: &str) -> Result<Mac, ()> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let p = parts.next().ok_or(())?;
            if p.is_empty() || p.len() > 2 {
                return Err(());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom(format!("invalid MAC address {s:?}")))
    }
}

/// Why an address can never belong to a VM, whatever the host: `None` if it can.
pub fn unroutable_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => {
            if v6.is_unspecified() {
                Some("is the unspecified address")
            } else if v6.is_loopback() {
                Some("is a loopback address")
            } else if v6.is_multicast() {
                Some("is a multicast address")
            } else if is_link_local_v6(&v6) {
                Some("is a link-local address (fe80::/10)")
            } else if v6.to_ipv4_mapped().is_some() {
                Some("is an IPv4-mapped IPv6 address (::ffff:0:0/96)")
            } else {
                None
            }
        }
    }
}

fn v4_reason(v4: Ipv4Addr) -> Option<&'static str> {
    if v4.is_unspecified() || v4.octets()[0] == 0 {
        Some("is in 0.0.0.0/8 (this network)")
    } else if v4.is_loopback() {
        Some("is a loopback address (127.0.0.0/8)")
    } else if v4.is_multicast() {
        Some("is a multicast address (224.0.0.0/4)")
    } else if v4.is_broadcast() {
        Some("is the limited broadcast address")
    } else if v4.is_link_local() {
        Some("is a link-local address (169.254.0.0/16)")
    } else if v4.octets()[0] >= 240 {
        Some("is in the reserved range 240.0.0.0/4")
    } else {
        None
    }
}

/// The host route that carries one VM address.
pub fn host_net(ip: IpAddr) -> IpNet {
    match ip {
        IpAddr::V4(a) => {
            IpNet::V4(ipnet::Ipv4Net::new(a, 32).expect("32 is a valid IPv4 prefix length"))
        }
        IpAddr::V6(a) => {
            IpNet::V6(ipnet::Ipv6Net::new(a, 128).expect("128 is a valid IPv6 prefix length"))
        }
    }
}

/// The family name used by CloudStack's metadata.
pub fn family_name(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "ipv4",
        IpAddr::V6(_) => "ipv6",
    }
}

/// Whether two prefixes share any address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// Whether `a` is an IPv6 link-local unicast address (fe80::/10).
pub fn is_link_local_v6(a: &Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

/// The modified EUI-64 link-local address of `mac` (RFC 4291 appendix A):
/// `52:54:00:4c:33:0a` gives `fe80::5054:ff:fe4c:330a`.
pub fn eui64_link_local(mac: Mac) -> Ipv6Addr {
    let m = mac.0;
    let seg = |a: u8, b: u8| u16::from_be_bytes([a, b]);
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        seg(m[0] ^ 0x02, m[1]),
        seg(m[2], 0xff),
        seg(0xfe, m[3]),
        seg(m[4], m[5]),
    )
}

/// `fe80::1`, the guests' IPv6 gateway, used in tests and defaults.
pub const FE80_1: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_print() {
        let m: Mac = "52:02:45:76:D2:35".parse().unwrap();
        assert_eq!(m.to_string(), "52:02:45:76:d2:35");
        assert!(!m.is_multicast());
        assert!("01:00:5e:00:00:01".parse::<Mac>().unwrap().is_multicast());
        assert!("00:00:00:00:00:00".parse::<Mac>().unwrap().is_zero());
        for bad in [
            "",
            "52:02:45:76:d2",
            "52:02:45:76:d2:35:00",
            "52:02:45:76:d2:3g",
            "520:2:45:76:d2:35",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }

    #[test]
    fn eui64_link_locals() {
        for (mac, ll) in [
            ("52:54:00:4c:33:0a", "fe80::5054:ff:fe4c:330a"),
            ("52:02:45:76:d2:35", "fe80::5002:45ff:fe76:d235"),
            ("00:16:3e:00:00:01", "fe80::216:3eff:fe00:1"),
        ] {
            let mac: Mac = mac.parse().unwrap();
            assert_eq!(eui64_link_local(mac).to_string(), ll);
        }
    }

    #[test]
    fn unroutable_addresses() {
        for bad in [
            "0.0.0.0",
            "127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "169.254.0.1",
            "240.0.0.1",
            "::",
            "::1",
            "ff02::1",
            "fe80::1",
            "febf::1",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(unroutable_reason(ip).is_some(), "{bad} should be refused");
        }
        for good in [
            "192.0.2.5",
            "2.57.57.30",
            "2001:db8::100",
            "fec0::1",
            "10.0.0.1",
        ] {
            let ip: IpAddr = good.parse().unwrap();
            assert_eq!(unroutable_reason(ip), None, "{good}");
        }
    }

    #[test]
    fn overlap() {
        let a: IpNet = "2001:db8::/56".parse().unwrap();
        let b: IpNet = "2001:db8:0:10::/64".parse().unwrap();
        let c: IpNet = "2001:db8:1::/64".parse().unwrap();
        assert!(overlaps(&a, &b) && overlaps(&b, &a));
        assert!(!overlaps(&a, &c));
    }
}
