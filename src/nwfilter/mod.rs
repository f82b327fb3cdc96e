//! virt-l3's security group: libvirt nwfilter XML that binds each routed NIC to
//! its MAC and addresses.
//!
//! Design (docs/SECURITY-GROUPS.md): one filter per NIC, `<nwfilter_name>-<mac>`,
//! with the NIC's MAC and addresses written into the rules (no libvirt
//! variables), plus four address-independent building blocks from
//! `nwfilter-templates/` that every per-NIC filter references. Everything sits in
//! libvirt's root chain, ordered by priority; the first accept or drop decides.
//!
//! [`policy`] turns a planned NIC into a [`Filter`], [`inject`] puts the
//! `<filterref>` into domain XML, [`define`] loads filters into libvirtd (never
//! from hook mode: libvirt forbids calling back into it from a hook).

pub mod define;
pub mod inject;
pub mod policy;

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use crate::address::Mac;
use crate::config::Config;
use crate::domain_xml::{DomainXml, XmlError};
use crate::plan::{nic_filter_name, plan, Checks, DomainPlan, HostFacts, NoOwnership, PlanError};

/// libvirt refuses rule comments longer than this.
pub const MAX_COMMENT_LEN: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum NwfilterError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("cannot write filter {filter} to {path}")]
    Write {
        filter: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("virt-l3 cannot rewrite the domain XML of {}: {}", crate::plan::printable(.domain), crate::plan::printable(.message))]
    Inject { domain: String, message: String },
    #[error(
        "virt-l3 will not replace the nwfilter {} of NIC {nic} on {} of domain {}: it is not one of \
         virt-l3's filters ({prefix}-<mac>), so an operator must decide: remove that <filterref> and run \
         `virt-l3 nwfilter inject` again, or keep it and set require_nwfilter = false",
        crate::plan::shown(.filter), crate::plan::printable(.bridge), crate::plan::display_name(.domain)
    )]
    ForeignFilter {
        domain: String,
        nic: Mac,
        bridge: String,
        filter: String,
        prefix: String,
    },
    #[error("cannot define nwfilter {filter} in libvirtd: {message}")]
    Define { filter: String, message: String },
    /// The filter (or its NIC's MAC) belongs to another domain: defining it
    /// would re-instantiate that domain's live filter with this one's addresses.
    #[error("refusing to define nwfilter {filter} for domain {} ({uuid}): {why}", crate::plan::printable(.domain))]
    OtherDomain {
        filter: String,
        domain: String,
        uuid: String,
        why: String,
    },
}

/// Which way a rule looks, in libvirt's words: `out` leaves the guest, `in` goes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    FromGuest,
    ToGuest,
}

impl Direction {
    fn libvirt(self) -> &'static str {
        match self {
            Direction::FromGuest => "out",
            Direction::ToGuest => "in",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
}

impl Action {
    fn libvirt(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Drop => "drop",
        }
    }
}

/// One nwfilter rule: a single protocol element (`mac`, `arp`, `rarp`, `ip`, `ipv6`)
/// whose `comment` attribute says what the rule is for. The comment survives
/// `virsh nwfilter-define` and shows in `virsh nwfilter-dumpxml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub direction: Direction,
    pub priority: i16,
    pub protocol: &'static str,
    pub attributes: Vec<(&'static str, String)>,
    pub comment: String,
}

/// A filter in libvirt's root chain: references to building blocks, then rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    /// Lines of the XML comment written above `<filter>` (lost by `virsh`, kept in files).
    pub header: Vec<String>,
    pub references: Vec<String>,
    pub rules: Vec<Rule>,
}

/// An address-independent building block, shipped in `nwfilter-templates/`.
pub struct Template {
    pub name: &'static str,
    pub xml: &'static str,
}

/// The building blocks, in the order a per-NIC filter references them.
pub const TEMPLATES: [Template; 4] = [
    Template {
        name: "virt-l3-no-vlan",
        xml: include_str!("../../nwfilter-templates/virt-l3-no-vlan.xml"),
    },
    Template {
        name: "virt-l3-no-router",
        xml: include_str!("../../nwfilter-templates/virt-l3-no-router.xml"),
    },
    Template {
        name: "virt-l3-no-multicast",
        xml: include_str!("../../nwfilter-templates/virt-l3-no-multicast.xml"),
    },
    Template {
        name: "virt-l3-no-other",
        xml: include_str!("../../nwfilter-templates/virt-l3-no-other.xml"),
    },
];

impl Filter {
    /// The filter as libvirt nwfilter XML.
    pub fn to_xml(&self) -> Vec<u8> {
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
        let io = |r: std::io::Result<()>| r.expect("writing XML to memory cannot fail");
        if !self.header.is_empty() {
            // Header lines come from virt-l3 itself (names, addresses, MACs): never `--`.
            let text = format!(" {} ", self.header.join("\n     "));
            io(w.write_event(Event::Comment(BytesText::from_escaped(
                text.replace("--", "- -"),
            ))));
        }
        let mut filter = BytesStart::new("filter");
        filter.push_attribute(("name", self.name.as_str()));
        filter.push_attribute(("chain", "root"));
        io(w.write_event(Event::Start(filter)));
        for r in &self.references {
            let mut e = BytesStart::new("filterref");
            e.push_attribute(("filter", r.as_str()));
            io(w.write_event(Event::Empty(e)));
        }
        for r in &self.rules {
            let mut e = BytesStart::new("rule");
            let priority = r.priority.to_string();
            e.push_attribute(("action", r.action.libvirt()));
            e.push_attribute(("direction", r.direction.libvirt()));
            e.push_attribute(("priority", priority.as_str()));
            io(w.write_event(Event::Start(e)));
            let mut p = BytesStart::new(r.protocol);
            for (k, v) in &r.attributes {
                p.push_attribute((*k, v.as_str()));
            }
            p.push_attribute(("comment", r.comment.as_str()));
            io(w.write_event(Event::Empty(p)));
            io(w.write_event(Event::End(BytesEnd::new("rule"))));
        }
        io(w.write_event(Event::End(BytesEnd::new("filter"))));
        let mut out = w.into_inner();
        out.push(b'\n');
        out
    }
}

/// Plans a domain the way `render` and `inject` need it: validated like at
/// `prepare`, without host facts or other domains (those are the hook's business).
pub fn plan_for_filters(xml: &[u8], config: &Config) -> Result<DomainPlan, NwfilterError> {
    plan_domain_for_filters(&DomainXml::parse(xml)?, config)
}

/// [`plan_for_filters`] for a domain XML already parsed (a libvirt status file).
pub fn plan_domain_for_filters(
    dom: &DomainXml,
    config: &Config,
) -> Result<DomainPlan, NwfilterError> {
    Ok(plan(
        dom,
        config,
        &HostFacts::default(),
        &NoOwnership,
        Checks {
            require_filter: false,
        },
    )?)
}

/// Every filter the domain's managed NICs need, as (name, XML): the building
/// blocks first (the per-NIC filters reference them), then one filter per NIC.
/// The contents are deterministic.
pub fn render(plan: &DomainPlan, config: &Config) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if plan.nics.is_empty() {
        return out;
    }
    for t in &TEMPLATES {
        out.push((t.name.to_string(), t.xml.as_bytes().to_vec()));
    }
    for nic in &plan.nics {
        let f = policy::nic_filter_of(&plan.uuid, nic, config);
        out.push((f.name.clone(), f.to_xml()));
    }
    out
}

/// Writes every rendered filter to `dir/<name>.xml`.
pub fn write_all(
    filters: &[(String, Vec<u8>)],
    dir: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>, NwfilterError> {
    let mut written = Vec::new();
    std::fs::create_dir_all(dir).map_err(|source| NwfilterError::Write {
        filter: "(directory)".into(),
        path: dir.display().to_string(),
        source,
    })?;
    for (name, xml) in filters {
        let path = dir.join(format!("{name}.xml"));
        std::fs::write(&path, xml).map_err(|source| NwfilterError::Write {
            filter: name.clone(),
            path: path.display().to_string(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests;
