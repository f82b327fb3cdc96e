//! Loads rendered filters into a running libvirtd through `virsh`, keeping the
//! UUID of a filter that already exists so that redefining is an in-place update
//! (libvirt refuses a second filter of the same name with another UUID).
//!
//! Never call this from hook mode: libvirt waits on the hook, and a hook that
//! calls back into libvirtd can deadlock it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use quick_xml::events::Event;
use quick_xml::Reader;

use super::policy::recorded_owner;
use super::{NwfilterError, TEMPLATES};
use crate::config::Config;
use crate::plan::{nic_filter_name, printable, DomainPlan, Ownership};

/// How to reach libvirtd.
#[derive(Debug, Clone)]
pub struct Virsh {
    pub program: PathBuf,
    /// `virsh --connect URI`; libvirt's default when `None`.
    pub connect: Option<String>,
}

/// What `define` did with one filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Defined {
    Created,
    /// Redefined in place, keeping this UUID.
    Updated(String),
}

impl Virsh {
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(&self.program);
        cmd.env("LC_ALL", "C");
        if let Some(uri) = &self.connect {
            cmd.args(["--connect", uri]);
        }
        let out = cmd
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`virsh {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Every defined filter's UUID, by name (`virsh nwfilter-list`).
    pub fn existing(&self) -> Result<BTreeMap<String, String>, NwfilterError> {
        let text = self
            .run(&["-q", "nwfilter-list"])
            .map_err(|message| NwfilterError::Define {
                filter: "(listing)".into(),
                message,
            })?;
        Ok(parse_list(&text))
    }
}

/// Parses `virsh -q nwfilter-list`: ` <uuid>  <name>` per line.
pub fn parse_list(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (uuid, name) = (it.next()?, it.next()?);
            crate::plan::is_valid_uuid(uuid).then(|| (name.to_string(), uuid.to_string()))
        })
        .collect()
}

/// The filter XML with `<uuid>` as the first child of `<filter>`.
pub fn with_uuid(xml: &[u8], uuid: &str, filter: &str) -> Result<Vec<u8>, NwfilterError> {
    let err = |message: String| NwfilterError::Define {
        filter: filter.to_string(),
        message,
    };
    if !crate::plan::is_valid_uuid(uuid) {
        return Err(err(format!("libvirt reported an invalid UUID {uuid:?}")));
    }
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) if e.name().as_ref() == b"filter" => {
                let at = reader.buffer_position() as usize;
                let mut out = xml[..at].to_vec();
                out.extend_from_slice(format!("\n  <uuid>{uuid}</uuid>").as_bytes());
                out.extend_from_slice(&xml[at..]);
                return Ok(out);
            }
            Ok(Event::Eof) => return Err(err("the filter XML has no <filter> element".into())),
            Err(e) => return Err(err(format!("the filter XML is malformed: {e}"))),
            _ => {}
        }
        buf.clear();
    }
}

impl Virsh {
    /// A defined filter's XML (`virsh nwfilter-dumpxml`).
    pub fn dump(&self, name: &str) -> Result<String, NwfilterError> {
        self.run(&["nwfilter-dumpxml", name])
            .map_err(|message| NwfilterError::Define {
                filter: name.to_string(),
                message,
            })
    }
}

/// Refuses when a NIC's MAC is in use on a routed bridge by another domain
/// (its claim in the state directory): that domain's filter has this name.
pub fn refuse_claimed_macs(
    plan: &DomainPlan,
    config: &Config,
    owners: &dyn Ownership,
) -> Result<(), NwfilterError> {
    for nic in &plan.nics {
        if let Some(o) = owners.owner_of_mac(nic.mac).filter(|o| o.uuid != plan.uuid) {
            return Err(NwfilterError::OtherDomain {
                filter: nic_filter_name(config, &nic.mac),
                domain: plan.name.clone(),
                uuid: plan.uuid.clone(),
                why: format!(
                    "MAC {} of its NIC on {} is in use on a routed bridge by domain {} ({}), whose filter has this name",
                    nic.mac,
                    nic.bridge,
                    printable(&o.name),
                    o.uuid
                ),
            });
        }
    }
    Ok(())
}

/// Refuses when a per-NIC filter that exists already records another domain as
/// its owner: redefining it would change that domain's live filter. A filter
/// without a recorded owner (rendered before owners were recorded) is taken
/// over; [`refuse_claimed_macs`] covers a running domain's.
fn refuse_foreign_filters(
    virsh: &Virsh,
    plan: &DomainPlan,
    filters: &[(String, Vec<u8>)],
    existing: &BTreeMap<String, String>,
) -> Result<(), NwfilterError> {
    for (name, _) in filters {
        if TEMPLATES.iter().any(|t| t.name == name) || !existing.contains_key(name) {
            continue;
        }
        let Some(owner) = recorded_owner(&virsh.dump(name)?) else {
            continue;
        };
        if owner != plan.uuid {
            return Err(NwfilterError::OtherDomain {
                filter: name.clone(),
                domain: plan.name.clone(),
                uuid: plan.uuid.clone(),
                why: format!(
                    "the filter that exists belongs to domain {owner} (two domains with one MAC); \
                     if that domain is gone for good, remove it first: virsh nwfilter-undefine {name}"
                ),
            });
        }
    }
    Ok(())
}

/// Defines every filter of `plan`, in the order given (building blocks before
/// the per-NIC filters that reference them, as [`super::render`] returns them),
/// after checking that none of them belongs to another domain: nothing is
/// defined when one does.
pub fn define_all(
    virsh: &Virsh,
    plan: &DomainPlan,
    config: &Config,
    owners: &dyn Ownership,
    filters: &[(String, Vec<u8>)],
) -> Result<Vec<(String, Defined)>, NwfilterError> {
    refuse_claimed_macs(plan, config, owners)?;
    let existing = virsh.existing()?;
    refuse_foreign_filters(virsh, plan, filters, &existing)?;
    let mut done = Vec::new();
    for (name, xml) in filters {
        let (xml, outcome) = match existing.get(name) {
            Some(uuid) => (with_uuid(xml, uuid, name)?, Defined::Updated(uuid.clone())),
            None => (xml.clone(), Defined::Created),
        };
        let mut file = tempfile::Builder::new()
            .prefix("virt-l3-nwfilter-")
            .suffix(".xml")
            .tempfile()
            .map_err(|e| NwfilterError::Define {
                filter: name.clone(),
                message: format!("cannot create a temporary file: {e}"),
            })?;
        file.write_all(&xml).map_err(|e| NwfilterError::Define {
            filter: name.clone(),
            message: format!("cannot write a temporary file: {e}"),
        })?;
        let path = file.path().to_string_lossy().into_owned();
        virsh
            .run(&["nwfilter-define", &path])
            .map_err(|message| NwfilterError::Define {
                filter: name.clone(),
                message,
            })?;
        done.push((name.clone(), outcome));
    }
    Ok(done)
}
