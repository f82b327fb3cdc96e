//! The sysctl items: forwarding, rp_filter, accept_ra, proxy_arp, proxy_ndp and
//! send_redirects, read under [`CheckOptions::proc_sys`].

use super::facts::KernelFacts;
use super::{fail, ok, warn, CheckOptions, Item};

/// Said with an IPv6 forwarding fix.
const IPV6_FORWARDING_NOTE: &str = " Note: with IPv6 forwarding on, interfaces stop accepting router advertisements unless accept_ra = 2: give the uplinks static addresses and routes, or BGP-learned ones.";

/// Why strict reverse-path filtering breaks a routed fabric (after the settings found).
const RP_FILTER_WHY: &str = "In a routed fabric the traffic for a guest may arrive on an uplink other than the one this host's route back to the sender uses (ECMP, several upstream sessions); strict mode drops it.";

/// Before the sysctl lines of the proxy_ndp fix.
const PROXY_NDP_REMOVE: &str = "Remove the entries (ip -6 neighbour del proxy ADDRESS dev IFACE) and whatever adds them (ndppd?), then ";

/// After the sysctl lines of the send_redirects fix.
const SEND_REDIRECTS_PACKAGED: &str = " virt-l3 turns them off when it routes a VM (disable_redirects) and its package ships /usr/lib/sysctl.d/60-virt-l3.conf: run `sysctl --system` after installing it.";

/// Reads one sysctl (`net/ipv4/ip_forward`) under the sysctl root.
fn sysctl(opts: &CheckOptions, key: &str) -> Option<i64> {
    std::fs::read_to_string(opts.proc_sys.join(key))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `net/ipv4/conf/eth0.100/rp_filter` → `net.ipv4.conf.eth0/100.rp_filter` (sysctl's
/// notation: a dot inside an interface name becomes a slash).
fn dotted(key: &str) -> String {
    key.split('/')
        .map(|c| c.replace('.', "/"))
        .collect::<Vec<_>>()
        .join(".")
}

/// `sysctl -w` lines plus where to persist them.
fn sysctl_fix(settings: &[(String, i64)]) -> String {
    let w: Vec<String> = settings
        .iter()
        .map(|(k, v)| format!("{}={v}", dotted(k)))
        .collect();
    format!(
        "sysctl -w {}; persist it in /etc/sysctl.d/70-virt-l3-host.conf ({}).",
        w.join(" "),
        w.iter()
            .map(|l| l.replace('=', " = "))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// IPv4 forwards by the setting of the interface a packet arrives on: the bridges (from
/// guests) and the uplinks (to guests). IPv6 forwards by `all`; an interface's own
/// setting makes it act as a router there (the router flag in its neighbour adverts).
pub(super) fn forwarding(
    opts: &CheckOptions,
    bridges: &[&str],
    uplinks: &[String],
    family: u8,
) -> Item {
    let id = if family == 4 {
        "forwarding-ipv4"
    } else {
        "forwarding-ipv6"
    };
    let mut keys = vec![if family == 4 {
        "net/ipv4/ip_forward".to_string()
    } else {
        "net/ipv6/conf/all/forwarding".to_string()
    }];
    for b in bridges {
        keys.push(format!("net/ipv{family}/conf/{b}/forwarding"));
    }
    if family == 4 {
        for u in uplinks {
            keys.push(format!("net/ipv4/conf/{u}/forwarding"));
        }
    }
    let bad: Vec<(String, Option<i64>)> = keys
        .iter()
        .map(|k| (k.clone(), sysctl(opts, k)))
        .filter(|(_, v)| *v != Some(1))
        .collect();
    if bad.is_empty() {
        return ok(
            id,
            None,
            format!(
                "IPv{family} forwarding is on ({}).",
                keys.iter()
                    .map(|k| dotted(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    let found: Vec<String> = bad
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{} = {v}", dotted(k)),
            None => format!("{} unreadable", dotted(k)),
        })
        .collect();
    let mut settings: Vec<(String, i64)> = vec![(keys[0].clone(), 1)];
    settings.extend(
        bad.iter()
            .skip_while(|(k, _)| *k == keys[0])
            .map(|(k, _)| (k.clone(), 1)),
    );
    settings.dedup();
    let note = if family == 6 {
        IPV6_FORWARDING_NOTE
    } else {
        ""
    };
    fail(
        id,
        None,
        format!(
            "IPv{family} forwarding is off ({}): the host does not route guests' traffic.",
            found.join(", ")
        ),
        format!("{}{note}", sysctl_fix(&settings)),
    )
}

pub(super) fn rp_filter(opts: &CheckOptions, uplinks: &[String]) -> Item {
    let all = sysctl(opts, "net/ipv4/conf/all/rp_filter").unwrap_or(0);
    let mut strict = Vec::new();
    if all == 1 {
        strict.push("net.ipv4.conf.all.rp_filter = 1 (makes every interface strict)".to_string());
    }
    let mut fix = Vec::new();
    if all == 1 {
        fix.push(("net/ipv4/conf/all/rp_filter".to_string(), 2));
    }
    for u in uplinks {
        let key = format!("net/ipv4/conf/{u}/rp_filter");
        if sysctl(opts, &key) == Some(1) {
            strict.push(format!("{} = 1", dotted(&key)));
            fix.push((key, 2));
        }
    }
    if strict.is_empty() {
        return ok(
            "rp_filter",
            None,
            format!(
                "No strict reverse-path filter on the uplinks ({}; all = {all}).",
                if uplinks.is_empty() {
                    "none found".to_string()
                } else {
                    uplinks.join(", ")
                }
            ),
        );
    }
    fail(
        "rp_filter",
        None,
        format!(
            "Strict reverse-path filtering: {}. {RP_FILTER_WHY}",
            strict.join(", ")
        ),
        format!("Use loose mode (2) or off (0): {}", sysctl_fix(&fix)),
    )
}

pub(super) fn accept_ra(opts: &CheckOptions, bridges: &[&str]) -> Vec<Item> {
    bridges
        .iter()
        .map(|b| {
            let key = format!("net/ipv6/conf/{b}/accept_ra");
            let ra = sysctl(opts, &key).unwrap_or(0);
            let fwd = sysctl(opts, &format!("net/ipv6/conf/{b}/forwarding")).unwrap_or(0);
            // The kernel takes router advertisements when accept_ra is 2, or 1 without forwarding.
            if ra == 2 || (ra == 1 && fwd == 0) {
                fail(
                    "accept_ra",
                    Some(b),
                    format!(
                        "{b} accepts IPv6 router advertisements ({} = {ra}, forwarding {fwd}): a guest sending one could become this host's default router or give it addresses.",
                        dotted(&key)
                    ),
                    sysctl_fix(&[(key, 0)]),
                )
            } else {
                ok(
                    "accept_ra",
                    Some(b),
                    format!("{b} ignores router advertisements (accept_ra = {ra}, forwarding = {fwd})."),
                )
            }
        })
        .collect()
}

pub(super) fn proxy_arp(opts: &CheckOptions, uplinks: &[String]) -> Item {
    let mut on = Vec::new();
    for i in std::iter::once("all").chain(uplinks.iter().map(String::as_str)) {
        let key = format!("net/ipv4/conf/{i}/proxy_arp");
        if sysctl(opts, &key).unwrap_or(0) != 0 {
            on.push(key);
        }
    }
    if on.is_empty() {
        return ok(
            "proxy_arp",
            None,
            "Proxy ARP is off on `all` and the uplinks.".to_string(),
        );
    }
    fail(
        "proxy_arp",
        None,
        format!(
            "Proxy ARP is on ({}): the host answers ARP on the fabric side for every address it routes, guests' included, outside BGP; during a live migration both hypervisors answer for the guest.",
            on.iter().map(|k| dotted(k)).collect::<Vec<_>>().join(", ")
        ),
        sysctl_fix(&on.into_iter().map(|k| (k, 0)).collect::<Vec<_>>()),
    )
}

pub(super) fn proxy_ndp(opts: &CheckOptions, facts: &KernelFacts, uplinks: &[String]) -> Item {
    let all = sysctl(opts, "net/ipv6/conf/all/proxy_ndp").unwrap_or(0) != 0;
    let mut on = Vec::new();
    let mut proxied = Vec::new();
    for u in uplinks {
        let key = format!("net/ipv6/conf/{u}/proxy_ndp");
        let here = sysctl(opts, &key).unwrap_or(0) != 0;
        if here {
            on.push(key);
        }
        let index = facts.link(u).map(|l| l.index);
        if (all || here) && index.is_some_and(|i| facts.ndp_proxied.contains(&i)) {
            proxied.push(u.clone());
        }
    }
    if all {
        on.insert(0, "net/ipv6/conf/all/proxy_ndp".to_string());
    }
    let settings: Vec<(String, i64)> = on.iter().map(|k| (k.clone(), 0)).collect();
    let listed = on.iter().map(|k| dotted(k)).collect::<Vec<_>>().join(", ");
    if !proxied.is_empty() {
        return fail(
            "proxy_ndp",
            None,
            format!(
                "NDP proxying is on ({listed}) and {} hold proxy entries (ip -6 neighbour show proxy): the host answers neighbour solicitations on the fabric side outside BGP; during a live migration both hypervisors answer.",
                proxied.join(", ")
            ),
            format!("{PROXY_NDP_REMOVE}{}", sysctl_fix(&settings)),
        );
    }
    if !on.is_empty() {
        return warn(
            "proxy_ndp",
            None,
            format!("NDP proxying is on ({listed}) but no uplink has proxy entries: harmless until something adds one."),
            sysctl_fix(&settings),
        );
    }
    ok(
        "proxy_ndp",
        None,
        "NDP proxying is off on `all` and the uplinks.".to_string(),
    )
}

pub(super) fn send_redirects(opts: &CheckOptions, bridges: &[&str]) -> Item {
    let mut on = Vec::new();
    for i in std::iter::once("all").chain(bridges.iter().copied()) {
        let key = format!("net/ipv4/conf/{i}/send_redirects");
        if sysctl(opts, &key).unwrap_or(1) != 0 {
            on.push(key);
        }
    }
    if on.is_empty() {
        return ok(
            "send_redirects",
            None,
            "IPv4 ICMP redirects are off (all and the routed bridges).".to_string(),
        );
    }
    fail(
        "send_redirects",
        None,
        format!(
            "IPv4 ICMP redirects are on ({}): guest-to-guest traffic hairpins through the gateway and the host would tell guests to talk directly at layer 2, which is blocked.",
            on.iter().map(|k| dotted(k)).collect::<Vec<_>>().join(", ")
        ),
        format!(
            "{}{SEND_REDIRECTS_PACKAGED}",
            sysctl_fix(&on.into_iter().map(|k| (k, 0)).collect::<Vec<_>>())
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names() {
        assert_eq!(dotted("net/ipv4/ip_forward"), "net.ipv4.ip_forward");
        assert_eq!(
            dotted("net/ipv4/conf/eth0.100/rp_filter"),
            "net.ipv4.conf.eth0/100.rp_filter"
        );
    }

    #[test]
    fn fix_lines() {
        assert_eq!(
            sysctl_fix(&[
                ("net/ipv4/ip_forward".to_string(), 1),
                ("net/ipv4/conf/eth0.100/forwarding".to_string(), 1)
            ]),
            "sysctl -w net.ipv4.ip_forward=1 net.ipv4.conf.eth0/100.forwarding=1; persist it in \
             /etc/sysctl.d/70-virt-l3-host.conf (net.ipv4.ip_forward = 1, net.ipv4.conf.eth0/100.forwarding = 1)."
        );
    }
}
