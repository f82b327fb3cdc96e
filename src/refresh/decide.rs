//! Deciding a refresh, pure: from a running domain's status XML, its record and
//! the host facts, what should happen to its routes.

use crate::address::Mac;
use crate::config::Config;
use crate::domain_xml::{DomainXml, RunState};
use crate::plan::{plan, Checks, HostFacts, Ownership, PlanError};
use crate::reconcile::adopted_record;
use crate::state::Record;

/// What a refresh does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The plan is the recorded one (or the domain routes nothing and has no record).
    Nothing,
    /// Record and install this, over the previous record if any.
    Route(Record),
    /// The domain routes nothing any more: remove what the record says.
    Unroute(Record),
    /// virt-l3 refuses the domain as it is now: change nothing.
    Refuse(PlanError),
}

/// What a running domain's status XML and record call for.
///
/// The checks are the hook's at `prepare` (`require_nwfilter`, ownership, host
/// facts). A recorded domain keeps its metric, standing and `since_ms` (a
/// refresh is not a migration step); a domain without a record is taken as
/// reconcile adopts it. The metadata block of a NIC that was routed and is gone
/// (detached) is ignored: the NIC is unrouted, not the whole change refused.
pub fn decide(
    config: &Config,
    dom: &DomainXml,
    host: &HostFacts,
    owners: &dyn Ownership,
    previous: Option<&Record>,
    incoming: bool,
    now_ms: u64,
) -> Decision {
    let dom = without_detached(dom, previous);
    let checks = Checks {
        require_filter: config.require_nwfilter,
    };
    let p = match plan(&dom, config, host, owners, checks) {
        Ok(p) => p,
        Err(e) => return Decision::Refuse(e),
    };
    match previous {
        Some(prev) if p.nics.is_empty() => Decision::Unroute(prev.clone()),
        None if p.nics.is_empty() => Decision::Nothing,
        Some(prev) if prev.plan == p && prev.protocol == config.route_protocol => Decision::Nothing,
        Some(prev) => Decision::Route(Record {
            plan: p,
            protocol: config.route_protocol,
            ..prev.clone()
        }),
        None => {
            let rs = dom.run_state.clone().unwrap_or(RunState {
                state: "running".into(),
                reason: String::new(),
            });
            Decision::Route(adopted_record(config, p, incoming, &rs, now_ms))
        }
    }
}

/// The domain without the metadata blocks (and flat addresses) of NICs the
/// record routed and the domain no longer has.
fn without_detached(dom: &DomainXml, previous: Option<&Record>) -> DomainXml {
    let mut out = dom.clone();
    let Some(prev) = previous else {
        return out;
    };
    let present: Vec<Mac> = dom
        .interfaces
        .iter()
        .filter_map(|i| i.mac.as_deref()?.parse().ok())
        .collect();
    let detached = |mac: &Option<String>| {
        mac.as_deref()
            .and_then(|m| m.parse::<Mac>().ok())
            .is_some_and(|m| !present.contains(&m) && prev.plan.nics.iter().any(|n| n.mac == m))
    };
    out.nic_metadata.retain(|n| !detached(&n.mac));
    out.flat_addresses.retain(|f| !detached(&f.mac));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::NoOwnership;

    const UUID: &str = "0a0a0a0a-1111-4222-8333-444455556666";

    /// A running domain with these NICs on cloudbr0: (MAC, addresses, in the metadata).
    fn dom(nics: &[(&str, &[&str], bool)]) -> DomainXml {
        let mut meta = String::new();
        let mut devices = String::new();
        for (mac, addresses, annotated) in nics {
            if *annotated {
                meta.push_str(&format!("<cs:nic mac='{mac}'>"));
                for a in addresses.iter() {
                    meta.push_str(&format!(
                        "<cs:address address='{a}' prefix='32' family='ipv4'/>"
                    ));
                }
                meta.push_str("</cs:nic>");
            }
            if !addresses.is_empty() || !*annotated {
                devices.push_str(&format!(
                    "<interface type='bridge'><mac address='{mac}'/><source bridge='cloudbr0'/>\
                     <filterref filter='virt-l3-nic-{}'/></interface>",
                    mac.replace(':', "")
                ));
            }
        }
        let xml = format!(
            "<domstatus state='running' reason='booted'><domain><name>a</name><uuid>{UUID}</uuid>\
             <metadata><cs:network xmlns:cs='https://download.cloudstack.org/libvirt/network'>{meta}\
             </cs:network></metadata><devices>{devices}</devices></domain></domstatus>"
        );
        DomainXml::parse(xml.as_bytes()).unwrap()
    }

    fn decided(d: &DomainXml, previous: Option<&Record>) -> Decision {
        decide(
            &Config::default(),
            d,
            &HostFacts::default(),
            &NoOwnership,
            previous,
            false,
            1000,
        )
    }

    fn routed(d: &DomainXml) -> Record {
        match decided(d, None) {
            Decision::Route(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_domain_without_a_record_is_taken_as_adopted() {
        let r = routed(&dom(&[("52:54:00:00:00:01", &["192.0.2.1"], true)]));
        assert_eq!((r.metric, r.standby, r.since_ms), (100, false, 1000));
        assert_eq!(r.plan.nics.len(), 1);
    }

    #[test]
    fn the_recorded_plan_is_nothing_to_do_and_a_change_keeps_the_standing() {
        let one = dom(&[("52:54:00:00:00:01", &["192.0.2.1"], true)]);
        let mut prev = routed(&one);
        prev.metric = 1500;
        prev.since_ms = 7;
        assert_eq!(decided(&one, Some(&prev)), Decision::Nothing);
        let two = dom(&[("52:54:00:00:00:01", &["192.0.2.1", "192.0.2.2"], true)]);
        match decided(&two, Some(&prev)) {
            Decision::Route(r) => {
                assert_eq!((r.metric, r.since_ms), (1500, 7));
                assert_eq!(r.plan.nics[0].addresses.len(), 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_detached_nics_metadata_is_ignored_an_unknown_ones_refused() {
        let both = dom(&[
            ("52:54:00:00:00:01", &["192.0.2.1"], true),
            ("52:54:00:00:00:02", &["192.0.2.2"], true),
        ]);
        let prev = routed(&both);
        // The second interface gone, its metadata block still there.
        let detached = dom(&[
            ("52:54:00:00:00:01", &["192.0.2.1"], true),
            ("52:54:00:00:00:02", &[], true),
        ]);
        match decided(&detached, Some(&prev)) {
            Decision::Route(r) => assert_eq!(r.plan.nics.len(), 1),
            other => panic!("{other:?}"),
        }
        // Without a record naming it, a block for a MAC the domain lacks is refused.
        assert!(matches!(decided(&detached, None), Decision::Refuse(_)));
    }

    #[test]
    fn a_domain_that_routes_nothing_any_more_is_unrouted() {
        let one = dom(&[("52:54:00:00:00:01", &["192.0.2.1"], true)]);
        let prev = routed(&one);
        let none = dom(&[]);
        assert_eq!(decided(&none, Some(&prev)), Decision::Unroute(prev));
        assert_eq!(decided(&none, None), Decision::Nothing);
    }
}
