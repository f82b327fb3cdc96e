//! Reading libvirt's domain XML: the parts virt-l3 needs, nothing more.
//!
//! Values are kept as the text the XML holds; `plan` validates them, so that
//! every error can name the domain, the NIC and the offending value.
//! Metadata elements are matched by namespace URI, never by prefix.

use std::ops::Range;

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::{NamespaceResolver, ResolveResult};
use quick_xml::Reader;

use crate::plan::text::printable;

mod attrs;
use attrs::{local_name, Attrs, Scan};

/// The namespace of CloudStack's per-NIC network metadata.
pub const CLOUDSTACK_NETWORK_NS: &str = "https://download.cloudstack.org/libvirt/network";
/// The same namespace spelled with `http://`: a different namespace to XML, which
/// virt-l3 does not read but refuses (metadata an operator meant for virt-l3 would
/// otherwise be silently ignored).
pub const CLOUDSTACK_NETWORK_NS_HTTP: &str = "http://download.cloudstack.org/libvirt/network";

/// Domain XML larger than this is refused (libvirt's own limit for a domain
/// definition is 10 MiB; a sane domain is a few kilobytes).
pub const MAX_XML_BYTES: usize = 4 * 1024 * 1024;
/// Element nesting deeper than this is refused.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum XmlError {
    /// The number of bytes read, which stops one byte past the limit.
    #[error("the domain XML is larger than {MAX_XML_BYTES} bytes, the most virt-l3 accepts")]
    TooLarge(usize),
    #[error("the domain XML carries a DOCTYPE declaration, which virt-l3 refuses (entity definitions could expand without bound)")]
    Doctype,
    #[error("the domain XML uses the undefined entity &{};", printable(.0))]
    UndefinedEntity(String),
    #[error("the domain XML nests elements deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("the domain XML is malformed near byte {position}: {}", printable(.message))]
    Malformed { position: u64, message: String },
    #[error("the domain XML has no <domain> root element")]
    NotADomain,
    #[error("the domain XML has no <name>")]
    NoName,
    #[error("the domain XML ends inside <{0}>, which is never closed")]
    Unclosed(String),
    #[error("the domain XML has more than one root element")]
    SecondRoot,
    #[error("the domain XML has text outside its root element near byte {0}")]
    TextOutsideRoot(u64),
}

/// Text taken from the document for an error message: control characters
/// escaped, cut after 64 characters (it may be megabytes of hostile input).
fn excerpt(text: &str) -> String {
    let mut out = escaped_prefix(text, 64);
    if text.chars().count() > 64 {
        out.push_str(&format!(" ({} bytes)", text.len()));
    }
    out
}

fn malformed(position: u64, message: impl std::fmt::Display) -> XmlError {
    // quick-xml quotes the offending input in its messages: keep them short.
    let message = message.to_string();
    let message = if message.len() > 200 || message.chars().any(char::is_control) {
        excerpt_long(&message)
    } else {
        message
    };
    XmlError::Malformed { position, message }
}

fn excerpt_long(text: &str) -> String {
    escaped_prefix(text, 200)
}

/// The first `max` characters of `text`, control characters and quotes
/// escaped, and "..." when there was more.
fn escaped_prefix(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > max {
        out.push_str("...");
    }
    out
}

/// A `<filterref>`: the filter's name and its parameters, in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilterRef {
    pub filter: String,
    pub parameters: Vec<(String, String)>,
}

impl FilterRef {
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.parameters
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One `<interface>` under `<devices>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InterfaceXml {
    /// Position among the domain's interfaces (0-based), for error messages.
    pub index: usize,
    /// `<interface type=...>`.
    pub kind: String,
    pub mac: Option<String>,
    /// `<source bridge=...>`.
    pub bridge: Option<String>,
    /// `<target dev=...>`: the tap, known once libvirt created it.
    pub target_dev: Option<String>,
    pub filterref: Option<FilterRef>,
    /// `<virtualport type=...>` (empty when it has no type): the port belongs to
    /// another switch than a Linux bridge (Open vSwitch, MidoNet).
    pub virtualport: Option<String>,
}

/// An `<address>` annotation, as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressXml {
    pub address: Option<String>,
    pub prefix: Option<String>,
    pub family: Option<String>,
}

/// A `<route prefix via>` annotation, as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteXml {
    pub prefix: Option<String>,
    pub via: Option<String>,
}

/// `<cloudstack:nic mac=...>` with its addresses and routes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NicMetadata {
    pub mac: Option<String>,
    pub addresses: Vec<AddressXml>,
    pub routes: Vec<RouteXml>,
    /// `<cloudstack:link-local address=.../>`: the NIC's IPv6 link-local address
    /// (read when `link_local = "metadata"`), as written.
    pub link_local: Option<String>,
}

/// A flat `<network:address ... bridge= mac=>` annotation (the upstream proposal's shape).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlatAddress {
    pub address: AddressXml,
    pub bridge: Option<String>,
    pub mac: Option<String>,
}

/// The run state libvirt records in its live status file (`<domstatus state reason>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunState {
    pub state: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainXml {
    /// Present when the XML is one of libvirt's status files (`/run/libvirt/qemu/NAME.xml`).
    pub run_state: Option<RunState>,
    pub name: String,
    pub uuid: Option<String>,
    pub interfaces: Vec<InterfaceXml>,
    pub nic_metadata: Vec<NicMetadata>,
    pub flat_addresses: Vec<FlatAddress>,
    /// Whether `<metadata>` holds an element in [`CLOUDSTACK_NETWORK_NS_HTTP`].
    pub http_namespace_metadata: bool,
}

/// Where the parser is, as far as virt-l3 cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    DomStatus,
    Domain,
    Name,
    Uuid,
    Metadata,
    CsNetwork,
    CsNic,
    Devices,
    Interface,
    FilterRef,
    Other,
}

/// The state of one parse: the document read so far and where the reader is.
struct Parser<'x> {
    /// The whole document.
    xml: &'x [u8],
    dom: DomainXml,
    stack: Vec<Ctx>,
    /// Where the names of the open elements are in `xml`, parallel to `stack`
    /// (for an unclosed document).
    open_names: Vec<Range<usize>>,
    /// The namespace bindings in scope (`xmlns`, `xmlns:p`).
    namespaces: NamespaceResolver,
    /// Whether the last element was empty or ended: its bindings go out of
    /// scope before the next event.
    pending_pop: bool,
    /// An element without attributes: what enters a scope that binds nothing.
    no_bindings: BytesStart<'static>,
    saw_root: bool,
    /// The text of the open `<name>` or `<uuid>`.
    text: String,
}

impl DomainXml {
    /// Parses domain XML, refusing DOCTYPEs, undefined entities, oversize input
    /// and absurd nesting.
    pub fn parse(xml: &[u8]) -> Result<DomainXml, XmlError> {
        if xml.len() > MAX_XML_BYTES {
            return Err(XmlError::TooLarge(xml.len()));
        }
        let mut reader = Reader::from_reader(xml);
        reader.config_mut().check_end_names = true;
        let mut p = Parser::new(xml);
        loop {
            if std::mem::take(&mut p.pending_pop) {
                p.namespaces.pop();
            }
            let position = reader.buffer_position();
            // Events borrow from `xml` (the slice reader): nothing is copied.
            let event = reader.read_event().map_err(|e| malformed(position, e))?;
            if !p.event(event, position)? {
                break;
            }
        }
        p.finish()
    }
}

impl<'x> Parser<'x> {
    fn new(xml: &'x [u8]) -> Self {
        Parser {
            xml,
            dom: DomainXml::default(),
            stack: Vec::new(),
            open_names: Vec::new(),
            namespaces: NamespaceResolver::default(),
            pending_pop: false,
            no_bindings: BytesStart::new(""),
            saw_root: false,
            text: String::new(),
        }
    }

    /// Handles one event; false at the end of the document.
    fn event(&mut self, event: Event<'x>, position: u64) -> Result<bool, XmlError> {
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Start(ref e) => self.start(e, position, false)?,
            Event::Empty(ref e) => self.start(e, position, true)?,
            Event::Text(ref t) if self.stack.is_empty() => {
                let bytes: &[u8] = t.as_ref();
                let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
                if !bytes.iter().all(u8::is_ascii_whitespace) {
                    return Err(XmlError::TextOutsideRoot(position));
                }
            }
            Event::GeneralRef(_) | Event::CData(_) if self.stack.is_empty() => {
                return Err(XmlError::TextOutsideRoot(position));
            }
            Event::Text(ref t) if self.in_text() => {
                let s = t.decode().map_err(|e| malformed(position, e))?;
                self.text.push_str(&s);
            }
            Event::GeneralRef(ref r) => self.general_ref(r, position)?,
            Event::CData(ref c) if self.in_text() => {
                self.text.push_str(&String::from_utf8_lossy(c.as_ref()));
            }
            Event::End(_) => {
                self.pending_pop = true;
                self.end();
            }
            Event::Eof => {
                if let Some(open) = self.open_names.last() {
                    let name = self.xml.get(open.clone()).unwrap_or_default();
                    return Err(XmlError::Unclosed(excerpt(&String::from_utf8_lossy(name))));
                }
                return Ok(false);
            }
            _ => {}
        }
        Ok(true)
    }

    /// Whether the open element's text is kept (`<name>`, `<uuid>`).
    fn in_text(&self) -> bool {
        matches!(self.stack.last(), Some(Ctx::Name | Ctx::Uuid))
    }

    /// An element starts (or is empty: it also ends).
    fn start(&mut self, e: &BytesStart<'x>, position: u64, empty: bool) -> Result<(), XmlError> {
        // Attributes in the plain shape are checked here, others by quick-xml.
        let scan = attrs::scan(e.attributes_raw());
        // The element's namespace bindings come into scope (as quick-xml's
        // NsReader does it, before anything else is checked).
        let bindings = match scan {
            Some(s) if !s.binds_namespace() => &self.no_bindings,
            _ => e,
        };
        self.namespaces
            .push(bindings)
            .map_err(|err| malformed(position, quick_xml::Error::from(err)))?;
        self.pending_pop = empty;
        if self.stack.is_empty() && self.saw_root {
            return Err(XmlError::SecondRoot);
        }
        // Every element's attributes must be well-formed (quoted, not
        // repeated), also those of elements virt-l3 does not read.
        if scan.is_none() {
            attrs::check(e, position)?;
        }
        let parent = self.stack.last().copied();
        // The namespace matters in CloudStack's metadata alone.
        let ns = match parent {
            Some(Ctx::Metadata | Ctx::CsNetwork | Ctx::CsNic) => self.namespace_of(e),
            _ => Ns::Other,
        };
        let el = Element {
            local: local_name(e.name().into_inner()),
            start: e,
            scan: scan.as_ref(),
            is_cs: ns == Ns::Cs,
            position,
        };
        let ctx = match parent {
            None => self.root(&el)?,
            Some(Ctx::DomStatus) if el.local == b"domain" => self.root(&el)?,
            Some(Ctx::Domain) => domain_child(el.local),
            Some(Ctx::Metadata) => {
                self.dom.http_namespace_metadata |= ns == Ns::CsHttp;
                metadata_child(&el)
            }
            Some(Ctx::CsNetwork) => self.cs_network_child(&el)?,
            Some(Ctx::CsNic) => self.cs_nic_child(&el)?,
            Some(Ctx::Devices) => self.devices_child(&el)?,
            Some(Ctx::Interface) => self.interface_child(&el)?,
            Some(Ctx::FilterRef) => self.filterref_child(&el)?,
            Some(_) => Ctx::Other,
        };
        if !empty {
            if self.stack.len() >= MAX_DEPTH {
                return Err(XmlError::TooDeep);
            }
            self.stack.push(ctx);
            let name = e.name().into_inner();
            // The name is a slice of `xml` (the reader borrows): kept as its place.
            let at = (name.as_ptr() as usize).wrapping_sub(self.xml.as_ptr() as usize);
            self.open_names.push(at..at + name.len());
            self.text.clear();
        }
        Ok(())
    }

    /// The namespace of an element, resolved by URI (never by prefix).
    fn namespace_of(&self, e: &BytesStart<'_>) -> Ns {
        match self.namespaces.resolve_element(e.name()).0 {
            ResolveResult::Bound(n) if n.as_ref() == CLOUDSTACK_NETWORK_NS.as_bytes() => Ns::Cs,
            ResolveResult::Bound(n) if n.as_ref() == CLOUDSTACK_NETWORK_NS_HTTP.as_bytes() => {
                Ns::CsHttp
            }
            _ => Ns::Other,
        }
    }

    /// The root element (`<domain>`, or `<domstatus>` around it), or `<domain>` in `<domstatus>`.
    fn root(&mut self, el: &Element<'_, '_>) -> Result<Ctx, XmlError> {
        match el.local {
            b"domain" => {
                self.saw_root = true;
                Ok(Ctx::Domain)
            }
            b"domstatus" if self.stack.is_empty() => {
                let a = el.attrs()?;
                self.dom.run_state = Some(RunState {
                    state: a.get("state").unwrap_or_default(),
                    reason: a.get("reason").unwrap_or_default(),
                });
                Ok(Ctx::DomStatus)
            }
            _ => Err(XmlError::NotADomain),
        }
    }

    /// `<network:nic>` or a flat `<network:address>` in CloudStack's metadata.
    fn cs_network_child(&mut self, el: &Element<'_, '_>) -> Result<Ctx, XmlError> {
        if !el.is_cs {
            return Ok(Ctx::Other);
        }
        match el.local {
            b"nic" => {
                let a = el.attrs()?;
                self.dom.nic_metadata.push(NicMetadata {
                    mac: a.get("mac"),
                    ..Default::default()
                });
                Ok(Ctx::CsNic)
            }
            b"address" => {
                let a = el.attrs()?;
                self.dom.flat_addresses.push(FlatAddress {
                    address: address_xml(&a),
                    bridge: a.get("bridge"),
                    mac: a.get("mac"),
                });
                Ok(Ctx::Other)
            }
            _ => Ok(Ctx::Other),
        }
    }

    /// `<network:address>` or `<network:route>` in a `<network:nic>`.
    fn cs_nic_child(&mut self, el: &Element<'_, '_>) -> Result<Ctx, XmlError> {
        if !el.is_cs || !matches!(el.local, b"address" | b"route" | b"link-local") {
            return Ok(Ctx::Other);
        }
        let a = el.attrs()?;
        if let Some(nic) = self.dom.nic_metadata.last_mut() {
            match el.local {
                b"address" => nic.addresses.push(address_xml(&a)),
                b"link-local" => nic.link_local = a.get("address"),
                _ => nic.routes.push(RouteXml {
                    prefix: a.get("prefix"),
                    via: a.get("via"),
                }),
            }
        }
        Ok(Ctx::Other)
    }

    /// `<interface>` in `<devices>`.
    fn devices_child(&mut self, el: &Element<'_, '_>) -> Result<Ctx, XmlError> {
        if el.local != b"interface" {
            return Ok(Ctx::Other);
        }
        let a = el.attrs()?;
        self.dom.interfaces.push(InterfaceXml {
            index: self.dom.interfaces.len(),
            kind: a.get("type").unwrap_or_default(),
            ..Default::default()
        });
        Ok(Ctx::Interface)
    }

    /// A child of an `<interface>`: `<mac>`, `<source>`, `<target>`, `<filterref>`.
    fn interface_child(&mut self, el: &Element<'_, '_>) -> Result<Ctx, XmlError> {
        let a = el.attrs()?;
        let nic = self.dom.interfaces.last_mut().ok_or(XmlError::NotADomain)?;
        match el.local {
            b"mac" => nic.mac = a.get("address"),
            b"source" => {
                if let Some(b) = a.get("bridge") {
                    nic.bridge = Some(b);
                }
            }
            b"target" => nic.target_dev = a.get("dev"),
            b"virtualport" => nic.virtualport = Some(a.get("type").unwrap_or_default()),
            b"filterref" => {
                nic.filterref = Some(FilterRef {
                    filter: a.get("filter").unwrap_or_default(),
                    parameters: Vec::new(),
                });
                return Ok(Ctx::FilterRef);
            }
            _ => {}
        }
        Ok(Ctx::Other)
    }

    /// A `<parameter name value>` of a `<filterref>`.
    fn filterref_child(&mut self, el: &Element<'_, '_>) -> Result<Ctx, XmlError> {
        if el.local != b"parameter" {
            return Ok(Ctx::Other);
        }
        let a = el.attrs()?;
        let filterref = self
            .dom
            .interfaces
            .last_mut()
            .and_then(|n| n.filterref.as_mut());
        if let (Some(f), Some(n), Some(v)) = (filterref, a.get("name"), a.get("value")) {
            f.parameters.push((n, v));
        }
        Ok(Ctx::Other)
    }

    /// An entity or character reference: resolved, kept in `<name>` and `<uuid>`.
    fn general_ref(&mut self, r: &BytesRef<'_>, position: u64) -> Result<(), XmlError> {
        let resolved = match r.resolve_char_ref() {
            Ok(Some(c)) => Some(c),
            Err(e) => return Err(malformed(position, e)),
            Ok(None) => {
                let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                match quick_xml::escape::resolve_predefined_entity(&name) {
                    Some(s) => s.chars().next(),
                    None => return Err(XmlError::UndefinedEntity(excerpt(&name))),
                }
            }
        };
        if let (true, Some(c)) = (self.in_text(), resolved) {
            self.text.push(c);
        }
        Ok(())
    }

    /// An element ends.
    fn end(&mut self) {
        self.open_names.pop();
        match self.stack.pop() {
            Some(Ctx::Name) => self.dom.name = self.text.trim().to_string(),
            Some(Ctx::Uuid) => self.dom.uuid = Some(self.text.trim().to_ascii_lowercase()),
            _ => {}
        }
        self.text.clear();
    }

    /// The document, once read to its end.
    fn finish(self) -> Result<DomainXml, XmlError> {
        if !self.saw_root {
            return Err(XmlError::NotADomain);
        }
        if self.dom.name.is_empty() {
            return Err(XmlError::NoName);
        }
        Ok(self.dom)
    }
}

/// The namespace of an element, as far as virt-l3 cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    /// [`CLOUDSTACK_NETWORK_NS`].
    Cs,
    /// [`CLOUDSTACK_NETWORK_NS_HTTP`].
    CsHttp,
    Other,
}

/// An element being started, with what its handler needs.
struct Element<'a, 'e> {
    local: &'a [u8],
    start: &'a BytesStart<'e>,
    /// Its attributes, when they are in the plain shape.
    scan: Option<&'a Scan>,
    /// Whether it is in CloudStack's network metadata namespace.
    is_cs: bool,
    position: u64,
}

impl<'a> Element<'a, '_> {
    fn attrs(&self) -> Result<Attrs<'a>, XmlError> {
        attrs::read(self.start, self.scan, self.position)
    }
}

/// The children of `<domain>` virt-l3 reads.
fn domain_child(local: &[u8]) -> Ctx {
    match local {
        b"name" => Ctx::Name,
        b"uuid" => Ctx::Uuid,
        b"metadata" => Ctx::Metadata,
        b"devices" => Ctx::Devices,
        _ => Ctx::Other,
    }
}

/// CloudStack's `<network>` in `<metadata>`, matched by namespace.
fn metadata_child(el: &Element<'_, '_>) -> Ctx {
    if el.is_cs && el.local == b"network" {
        Ctx::CsNetwork
    } else {
        Ctx::Other
    }
}

fn address_xml(a: &Attrs<'_>) -> AddressXml {
    AddressXml {
        address: a.get("address"),
        prefix: a.get("prefix"),
        family: a.get("family"),
    }
}

#[cfg(test)]
mod tests;
