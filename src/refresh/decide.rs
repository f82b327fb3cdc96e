//! Deciding a refresh, pure: from a running domain's status XML, its record and
//! the host facts, what should happen to its routes.

use crate::address::Mac;
use crate::config::Config;
use crate::domain_xml::{DomainXml, RunState};
use crate::plan::{plan, Checks, HostFacts, Ownership, PlanError};
use crate::reconcile::{metric_for, standing_at_install, Standing};
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
            let current = standing_at_install(config, incoming);
            let Standing { metric, standby } = metric_for(config, current, now_ms, &rs, now_ms);
            Decision::Route(Record {
                plan: p,
                metric,
                protocol: config.route_protocol,
                standby,
                since_ms: now_ms,
            })
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
