//! From domain XML to the desired state: which NICs virt-l3 manages, with which
//! addresses, and therefore which routes and neighbours. Pure: the host and the
//! other domains come in through [`HostFacts`] and [`Ownership`].
//!
//! - [`model`]: the desired state ([`DomainPlan`], [`Nic`], [`Route`], [`Neighbour`], [`Entry`]).
//! - `metadata`: reading the managed interfaces and their address sources from the XML.
//! - `rules`: each address and prefix rule, a small function.
//! - `nic`: one managed interface, through the rules; `link_local`: its pinned IPv6 link-local.
//! - `error`, `text`: the refusal and its one-line text.

pub mod bridge_names;
mod error;
mod facts;
mod link_local;
mod metadata;
pub mod model;
mod nic;
mod rules;
pub mod text;

pub use error::{PlanError, Problem, MAX_PROBLEMS_SHOWN};
pub use facts::{Checks, HostFacts, HostRoute, NoOwnership, Owner, Ownership};
pub use metadata::{
    candidate_addresses, carries_virt_l3_filter, has_routed_prefixes, managed_interfaces,
    routes_nothing,
};
pub use model::{nic_filter_name, DomainPlan, Entry, Neighbour, Nic, Route, RoutedPrefix};
pub use text::{display_name, is_valid_uuid, name_problem, printable, shown, MAX_NAME_BYTES};

use crate::config::Config;
use crate::domain_xml::{DomainXml, InterfaceXml};

use error::Collector;
use nic::Seen;
use rules::Context;

/// Validates a domain and computes what virt-l3 should do for it.
///
/// Every problem is collected; nothing is decided half-way.
pub fn plan(
    dom: &DomainXml,
    config: &Config,
    host: &HostFacts,
    owners: &dyn Ownership,
    checks: Checks,
) -> Result<DomainPlan, PlanError> {
    if routes_nothing(dom, config) {
        // What the hook accepts unread: nothing to plan, nothing to refuse.
        return Ok(DomainPlan {
            name: dom.name.clone(),
            uuid: rules::domain_uuid(dom.uuid.as_deref()).unwrap_or_default(),
            nics: Vec::new(),
        });
    }
    let mut c = Collector::default();
    let uuid = rules::domain_uuid(dom.uuid.as_deref()).unwrap_or_else(|why| {
        c.refuse(why);
        String::new()
    });
    if let Some(why) = name_problem(&dom.name) {
        c.refuse(why);
    }
    c.refused(rules::http_namespace(dom));

    let managed: Vec<&InterfaceXml> = managed_interfaces(dom, config).collect();
    let all_macs = metadata::interface_macs(dom);
    // Metadata blocks must each belong to an interface.
    metadata::check_metadata_blocks(dom, &all_macs, &mut c);
    // Flat addresses must resolve to exactly one interface.
    let flat_for = metadata::assign_flat_addresses(dom, config, &managed, &all_macs, &mut c);

    let meta = metadata::metadata_by_mac(dom);
    let ctx = Context::new(config, host, owners, &uuid);
    let mut seen = Seen::default();
    let mut nics: Vec<Nic> = Vec::new();
    let mut pending_prefixes = Vec::new();
    for (iface, flat) in managed.iter().zip(&flat_for) {
        c.nic = Some(metadata::nic_label(iface));
        c.refused(rules::foreign_virtualport(iface));
        let Some(nic) = nic::plan_nic(iface, &meta, flat, &ctx, checks, &mut seen, &mut c) else {
            continue;
        };
        let label = c.nic.clone().unwrap_or_default();
        pending_prefixes.extend(
            nic.routed_prefixes
                .iter()
                .map(|p| (nics.len(), label.clone(), p.prefix)),
        );
        nics.push(nic);
    }
    nic::check_across_nics(&pending_prefixes, &nics, &mut c);

    if c.problems.is_empty() {
        Ok(DomainPlan {
            name: dom.name.clone(),
            uuid,
            nics,
        })
    } else {
        Err(PlanError {
            domain: dom.name.clone(),
            problems: c.problems,
        })
    }
}
