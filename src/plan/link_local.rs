//! The NIC's pinned IPv6 link-local address (configuration key `link_local`).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};

use crate::address::{eui64_link_local, is_link_local_v6, Mac};
use crate::config::LinkLocal;

use super::text::shown;

/// The link-local address the NIC's guest may use, `None` when not pinned (an
/// IPv4-only NIC, or mode `any`), or why the NIC is refused.
/// `written`: the NIC metadata's `<link-local address=...>`, read in mode `metadata`.
pub(super) fn pinned(
    mode: LinkLocal,
    mac: Mac,
    written: Option<&str>,
    has_ipv6: bool,
    gateways: &BTreeSet<IpAddr>,
) -> Result<Option<Ipv6Addr>, String> {
    if !has_ipv6 {
        return Ok(None);
    }
    match mode {
        LinkLocal::Any => Ok(None),
        LinkLocal::Eui64 => Ok(Some(eui64_link_local(mac))),
        LinkLocal::Metadata => {
            let Some(text) = written else {
                return Err(
                    "link_local is \"metadata\" but the NIC's metadata has no <link-local address=\"fe80::...\"/>"
                        .into(),
                );
            };
            let Ok(ll) = text.trim().parse::<Ipv6Addr>() else {
                return Err(format!(
                    "link-local address {} is not an IPv6 address",
                    shown(text)
                ));
            };
            if !is_link_local_v6(&ll) || ll.segments()[4..] == [0, 0, 0, 0] {
                return Err(format!(
                    "link-local address {ll} is not a unicast fe80::/10 address with an interface identifier"
                ));
            }
            if gateways.contains(&IpAddr::V6(ll)) {
                return Err(format!(
                    "link-local address {ll} is a gateway address of the routed bridges"
                ));
            }
            Ok(Some(ll))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: &str = "52:54:00:4c:33:0a";

    fn run(mode: LinkLocal, written: Option<&str>, v6: bool) -> Result<Option<String>, String> {
        let gateways: BTreeSet<IpAddr> = ["fe80::1".parse().unwrap()].into();
        pinned(mode, MAC.parse().unwrap(), written, v6, &gateways).map(|o| o.map(|a| a.to_string()))
    }

    #[test]
    fn eui64_is_derived_from_the_mac_and_ignores_the_metadata() {
        assert_eq!(
            run(LinkLocal::Eui64, Some("fe80::99"), true)
                .unwrap()
                .as_deref(),
            Some("fe80::5054:ff:fe4c:330a")
        );
    }

    #[test]
    fn ipv4_only_nics_and_mode_any_pin_nothing() {
        for mode in [LinkLocal::Eui64, LinkLocal::Metadata, LinkLocal::Any] {
            assert_eq!(run(mode, None, false), Ok(None));
        }
        assert_eq!(run(LinkLocal::Any, Some("fe80::99"), true), Ok(None));
    }

    #[test]
    fn metadata_must_name_a_usable_link_local() {
        assert_eq!(
            run(LinkLocal::Metadata, Some(" fe80::99 "), true)
                .unwrap()
                .as_deref(),
            Some("fe80::99")
        );
        for (bad, why) in [
            (None, "has no <link-local"),
            (Some("x"), "is not an IPv6 address"),
            (Some("2001:db8::1"), "is not a unicast fe80::/10"),
            (Some("fe80::"), "is not a unicast fe80::/10"),
            (Some("fe80::1"), "is a gateway address"),
        ] {
            let e = run(LinkLocal::Metadata, bad, true).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
