//! Puts virt-l3's `<filterref>` on every managed NIC of a domain XML.
//!
//! Works on byte spans found by quick-xml's event reader: only the managed
//! interfaces' `<filterref>` elements are replaced (or, when missing, inserted
//! before `</interface>`); every other byte of the document is copied as it was.
//! The filterref carries the NIC's addresses as `IP` / `IPV6` parameters: the
//! filter does not use them (addresses are written into its rules), but they are
//! virt-l3's third address source, so they must agree with the NIC's addresses.

use std::net::IpAddr;

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};

use super::{nic_filter_name, plan_for_filters, NwfilterError};
use crate::address::Mac;
use crate::config::Config;
use crate::plan::Nic;

/// Where an interface's filterref is, or where one goes.
#[derive(Debug, Default)]
struct InterfaceSpans {
    /// The `<filterref>` element, start and end byte offsets.
    filterref: Option<(usize, usize)>,
    /// End of the interface's last child element (insertion point).
    last_child_end: Option<usize>,
    /// End of the `<interface>` start tag.
    start_tag_end: usize,
    /// Whitespace before the first child element (its indentation).
    child_indent: Option<String>,
    mac: Option<String>,
    /// `<source bridge>`, as the plan reads it (the last one that has the attribute).
    bridge: Option<String>,
    /// The `<filterref filter>` the interface carries.
    filter: Option<String>,
}

/// An attribute's value, unescaped as `DomainXml` reads it.
fn attribute(e: &BytesStart<'_>, name: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

fn malformed(domain: &str, message: impl Into<String>) -> NwfilterError {
    NwfilterError::Inject {
        domain: domain.to_string(),
        message: message.into(),
    }
}

fn scan(xml: &[u8], domain: &str) -> Result<Vec<InterfaceSpans>, NwfilterError> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut out: Vec<InterfaceSpans> = Vec::new();
    let mut pending_text = String::new();
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event_into(&mut buf).map_err(|e| {
            malformed(
                domain,
                format!("the XML is malformed near byte {before}: {e}"),
            )
        })?;
        let after = reader.buffer_position() as usize;
        let in_devices = stack.len() == 2 && stack[0] == b"domain" && stack[1] == b"devices";
        let in_interface = stack.len() == 3
            && stack[0] == b"domain"
            && stack[1] == b"devices"
            && stack[2] == b"interface";
        match &event {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.name().as_ref().to_vec();
                let empty = matches!(event, Event::Empty(_));
                if in_devices && name == b"interface" {
                    out.push(InterfaceSpans {
                        start_tag_end: after,
                        ..Default::default()
                    });
                } else if in_interface {
                    let iface = out
                        .last_mut()
                        .ok_or_else(|| malformed(domain, "no interface"))?;
                    if iface.child_indent.is_none() {
                        let indent = pending_text.rsplit('\n').next().unwrap_or("");
                        iface.child_indent = Some(indent.to_string());
                    }
                    let local = e.local_name();
                    if local.as_ref() == b"mac" {
                        iface.mac = attribute(e, b"address");
                    }
                    if local.as_ref() == b"source" {
                        if let Some(b) = attribute(e, b"bridge") {
                            iface.bridge = Some(b);
                        }
                    }
                    if local.as_ref() == b"filterref" {
                        iface.filterref = Some((before, after));
                        iface.filter = Some(attribute(e, b"filter").unwrap_or_default());
                    }
                    if empty {
                        iface.last_child_end = Some(after);
                    }
                }
                if !empty {
                    stack.push(name);
                }
            }
            Event::End(_) => {
                let closed = stack.pop();
                if stack.len() == 3 && stack[2] == b"interface" {
                    // A child of an interface ends.
                    if let Some(iface) = out.last_mut() {
                        iface.last_child_end = Some(after);
                        if closed.as_deref().map(local_name) == Some(&b"filterref"[..]) {
                            if let Some((start, _)) = iface.filterref {
                                iface.filterref = Some((start, after));
                            }
                        }
                    }
                }
            }
            Event::Text(t) => {
                pending_text = String::from_utf8_lossy(t.as_ref()).into_owned();
            }
            Event::Eof => break,
            _ => {}
        }
        if !matches!(event, Event::Text(_)) {
            pending_text.clear();
        }
        buf.clear();
    }
    Ok(out)
}

/// Whether `filter` is one of virt-l3's per-NIC filters (`<nwfilter_name>-<12
/// hex digits>`), this NIC's or another's (a cloned domain's XML): those are
/// replaced.
fn is_virt_l3_filter(config: &Config, filter: &str) -> bool {
    filter
        .strip_prefix(config.nwfilter_name.as_str())
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `name` without its namespace prefix.
fn local_name(name: &[u8]) -> &[u8] {
    name.iter()
        .position(|b| *b == b':')
        .map_or(name, |i| &name[i + 1..])
}

/// The `<filterref>` element for a NIC, with `indent` before its closing tag.
pub fn filterref_xml(nic: &Nic, config: &Config, indent: &str) -> Vec<u8> {
    let mut w = Writer::new(Vec::new());
    let io = |r: std::io::Result<()>| r.expect("writing XML to memory cannot fail");
    let name = nic_filter_name(config, &nic.mac);
    let mut f = BytesStart::new("filterref");
    f.push_attribute(("filter", name.as_str()));
    let params: Vec<(&str, String)> = nic
        .addresses
        .iter()
        .map(|a| {
            let n = if matches!(a, IpAddr::V4(_)) {
                "IP"
            } else {
                "IPV6"
            };
            (n, a.to_string())
        })
        .collect();
    if params.is_empty() {
        io(w.write_event(Event::Empty(f)));
        return w.into_inner();
    }
    io(w.write_event(Event::Start(f)));
    for (n, v) in &params {
        io(w.write_event(Event::Text(BytesText::from_escaped(format!(
            "\n{indent}  "
        )))));
        let mut p = BytesStart::new("parameter");
        p.push_attribute(("name", *n));
        p.push_attribute(("value", v.as_str()));
        io(w.write_event(Event::Empty(p)));
    }
    io(w.write_event(Event::Text(BytesText::from_escaped(format!("\n{indent}")))));
    io(w.write_event(Event::End(BytesEnd::new("filterref"))));
    w.into_inner()
}

/// The domain XML with virt-l3's filterref on every managed NIC, everything else
/// byte for byte as it was.
pub fn inject(xml: &[u8], config: &Config) -> Result<Vec<u8>, NwfilterError> {
    let plan = plan_for_filters(xml, config)?;
    let spans = scan(xml, &plan.name)?;
    // (start, end, replacement), in document order.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    for nic in &plan.nics {
        // The interface with this MAC on this bridge: another interface may carry the
        // same MAC on a bridge virt-l3 does not route (found by fuzzing: the filterref
        // went to that one, and the routed NIC kept its old filter).
        let iface = spans
            .iter()
            .find(|s| {
                s.mac.as_deref().and_then(|m| m.parse::<Mac>().ok()) == Some(nic.mac)
                    && s.bridge.as_deref() == Some(nic.bridge.as_str())
            })
            .ok_or_else(|| {
                malformed(
                    &plan.name,
                    format!(
                        "NIC {} on {}: its <interface> element was not found",
                        nic.mac, nic.bridge
                    ),
                )
            })?;
        // Another filter (libvirt's clean-traffic, an operator's own) is not
        // virt-l3's to replace: dropping it silently could drop rules someone relies on.
        if let Some(filter) = iface
            .filter
            .as_deref()
            .filter(|f| !is_virt_l3_filter(config, f))
        {
            return Err(NwfilterError::ForeignFilter {
                domain: plan.name.clone(),
                nic: nic.mac,
                bridge: nic.bridge.clone(),
                filter: filter.to_string(),
                prefix: config.nwfilter_name.clone(),
            });
        }
        let indent = iface.child_indent.clone().unwrap_or_default();
        match iface.filterref {
            Some((start, end)) => edits.push((start, end, filterref_xml(nic, config, &indent))),
            None => {
                let at = iface.last_child_end.unwrap_or(iface.start_tag_end);
                let mut text = format!("\n{indent}").into_bytes();
                text.extend(filterref_xml(nic, config, &indent));
                edits.push((at, at, text));
            }
        }
    }
    edits.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(xml.len() + 256);
    let mut pos = 0;
    for (start, end, text) in edits {
        out.extend_from_slice(&xml[pos..start]);
        out.extend_from_slice(&text);
        pos = end;
    }
    out.extend_from_slice(&xml[pos..]);
    Ok(out)
}
