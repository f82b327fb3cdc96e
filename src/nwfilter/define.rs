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

use super::NwfilterError;

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

/// Defines every filter, in the order given (building blocks before the per-NIC
/// filters that reference them, as [`super::render`] returns them).
pub fn define_all(
    virsh: &Virsh,
    filters: &[(String, Vec<u8>)],
) -> Result<Vec<(String, Defined)>, NwfilterError> {
    let existing = virsh.existing()?;
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
