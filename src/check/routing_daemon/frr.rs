//! FRR configurations (`show running-config` or frr.conf): what `routing-config` asks
//! of them.

use std::collections::HashMap;

/// A route-map entry: sequence number, permit (else deny), its `match` lines.
type MapEntry = (u32, bool, Vec<String>);

/// What `frr_selects` reads of an FRR configuration.
struct Frr {
    /// route-map NAME -> its entries, in the order written.
    maps: HashMap<String, Vec<MapEntry>>,
    /// Address family (`ipv4`, `ipv6`) -> `redistribute kernel`'s route-map, if any.
    redistribute: HashMap<&'static str, Option<String>>,
}

/// The route-maps and the `redistribute kernel` lines of `router bgp`.
fn parse(text: &str) -> Frr {
    let mut maps: HashMap<String, Vec<MapEntry>> = HashMap::new();
    let mut redistribute: HashMap<&'static str, Option<String>> = HashMap::new();
    enum Ctx {
        Top,
        Map(String),
        Bgp(&'static str),
        Other,
    }
    let mut ctx = Ctx::Top;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('!') {
            continue;
        }
        let indented = raw.starts_with(char::is_whitespace);
        let words: Vec<&str> = line.split_whitespace().collect();
        if !indented {
            ctx = match words.as_slice() {
                ["route-map", name, action, seq, ..] => {
                    let e = (seq.parse().unwrap_or(0), *action == "permit", Vec::new());
                    maps.entry(name.to_string()).or_default().push(e);
                    Ctx::Map(name.to_string())
                }
                ["router", "bgp", _] | ["router", "bgp"] => Ctx::Bgp("ipv4"),
                ["exit"] | ["end"] => Ctx::Top,
                _ => match ctx {
                    // `address-family` lines may be flush left in a hand-written file.
                    Ctx::Bgp(_)
                        if words.first() == Some(&"address-family")
                            || words.first() == Some(&"exit-address-family")
                            || words.first() == Some(&"redistribute") =>
                    {
                        ctx
                    }
                    _ => Ctx::Other,
                },
            };
            if !matches!(ctx, Ctx::Bgp(_)) {
                continue;
            }
        }
        match &mut ctx {
            Ctx::Map(name) if words.first() == Some(&"match") => {
                if let Some(e) = maps.get_mut(name.as_str()).and_then(|v| v.last_mut()) {
                    e.2.push(words[1..].join(" "));
                }
            }
            Ctx::Bgp(af) => match words.as_slice() {
                ["address-family", "ipv4", "unicast"] | ["address-family", "ipv4"] => *af = "ipv4",
                ["address-family", "ipv6", "unicast"] | ["address-family", "ipv6"] => *af = "ipv6",
                ["address-family", ..] => *af = "other",
                ["exit-address-family"] => *af = "ipv4",
                ["redistribute", "kernel", rest @ ..] => {
                    let map = match rest {
                        ["route-map", m, ..] => Some(m.to_string()),
                        _ => None,
                    };
                    redistribute.insert(af, map);
                }
                _ => {}
            },
            _ => {}
        }
    }
    Frr { maps, redistribute }
}

/// Checks an FRR configuration: `redistribute kernel` in `router bgp` for IPv4 and IPv6
/// unicast, through a route-map (if any) that permits routes on every routed bridge.
pub fn frr_selects(text: &str, bridges: &[String]) -> Result<(), String> {
    let Frr { maps, redistribute } = parse(text);
    let mut problems = Vec::new();
    for fam in ["ipv4", "ipv6"] {
        match redistribute.get(fam) {
            None => problems.push(format!(
                "no `redistribute kernel` for {fam} unicast in `router bgp`"
            )),
            Some(None) => {}
            Some(Some(m)) => {
                let mut entries = maps.get(m).cloned().unwrap_or_default();
                entries.sort_by_key(|e| e.0);
                for b in bridges {
                    let want = format!("interface {b}");
                    let verdict = entries
                        .iter()
                        .find(|(_, _, matches)| matches.iter().all(|x| *x == want))
                        .map(|e| e.1);
                    if verdict != Some(true) {
                        problems.push(format!(
                            "route-map {m} ({fam}) does not permit routes on {b} (needs an entry with `match interface {b}`)"
                        ));
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_FRR: &str = include_str!("../../../packaging/examples/frr.conf");

    #[test]
    fn shipped_example_passes() {
        assert_eq!(frr_selects(EXAMPLE_FRR, &["cloudbr0".to_string()]), Ok(()));
    }

    #[test]
    fn frr_needs_both_families_and_the_bridge() {
        let b = ["cloudbr0".to_string()];
        let t = EXAMPLE_FRR.replace("match interface cloudbr0", "match interface eth0");
        assert!(frr_selects(&t, &b).unwrap_err().contains("cloudbr0"));
        let t = EXAMPLE_FRR.replacen("  redistribute kernel route-map VIRT-L3\n", "", 1);
        assert!(frr_selects(&t, &b).unwrap_err().contains("ipv4"));
        let two = ["cloudbr0".to_string(), "cloudbr1".to_string()];
        assert!(frr_selects(EXAMPLE_FRR, &two).is_err());
    }

    #[test]
    fn parses_maps_and_redistribution() {
        let t = "route-map M deny 20\n match interface eth0\n\
                 route-map M permit 10\n match interface br0\n\
                 !\n\
                 router bgp 65000\n\
                 address-family ipv6 unicast\n\
                 redistribute kernel route-map M\n\
                 exit-address-family\n\
                 redistribute kernel\n";
        let f = parse(t);
        assert_eq!(
            f.maps["M"],
            vec![
                (20, false, vec!["interface eth0".to_string()]),
                (10, true, vec!["interface br0".to_string()])
            ]
        );
        assert_eq!(f.redistribute["ipv4"], None);
        assert_eq!(f.redistribute["ipv6"], Some("M".to_string()));
        // The lowest sequence number decides: 10 permits br0.
        assert_eq!(frr_selects(t, &["br0".to_string()]), Ok(()));
        assert!(frr_selects(t, &["eth0".to_string()]).is_err());
    }

    #[test]
    fn a_denying_entry_does_not_permit() {
        let t = "route-map M deny 10\n match interface br0\n\
                 router bgp 65000\n\
                 \x20redistribute kernel route-map M\n\
                 \x20address-family ipv6 unicast\n\
                 \x20 redistribute kernel route-map M\n";
        let e = frr_selects(t, &["br0".to_string()]).unwrap_err();
        assert_eq!(
            e,
            "route-map M (ipv4) does not permit routes on br0 (needs an entry with `match interface br0`), \
             route-map M (ipv6) does not permit routes on br0 (needs an entry with `match interface br0`)"
        );
    }
}
