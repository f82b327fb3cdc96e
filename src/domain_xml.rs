//! Reading libvirt's domain XML: the parts virt-l3 needs, nothing more.
//!
//! Values are kept as the text the XML holds; `plan` validates them, so that
//! every error can name the domain, the NIC and the offending value.
//! Metadata elements are matched by namespace URI, never by prefix.

use quick_xml::events::attributes::Attributes;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::plan::text::printable;

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

fn attrs(attributes: Attributes<'_>, position: u64) -> Result<Vec<(String, String)>, XmlError> {
    let mut out = Vec::new();
    for a in attributes {
        let a = a.map_err(|e| malformed(position, e))?;
        let key = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
        let value = a.unescape_value().map_err(|e| match e {
            quick_xml::Error::Escape(quick_xml::escape::EscapeError::UnrecognizedEntity(
                _,
                name,
            )) => XmlError::UndefinedEntity(excerpt(&name)),
            other => malformed(position, other),
        })?;
        out.push((key, value.into_owned()));
    }
    Ok(out)
}

fn get(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// The state of one parse: the document read so far and where the reader is.
#[derive(Default)]
struct Parser {
    dom: DomainXml,
    stack: Vec<Ctx>,
    /// The names of the open elements, parallel to `stack` (for an unclosed document).
    open_names: Vec<String>,
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
        let mut reader = NsReader::from_reader(xml);
        reader.config_mut().check_end_names = true;
        let mut p = Parser::default();
        loop {
            let position = reader.buffer_position();
            // Events borrow from `xml` (the slice reader): nothing is copied.
            let (ns, event) = reader
                .read_resolved_event()
                .map_err(|e| malformed(position, e))?;
            let ns = match ns {
                ResolveResult::Bound(n) if n.as_ref() == CLOUDSTACK_NETWORK_NS.as_bytes() => Ns::Cs,
                ResolveResult::Bound(n) if n.as_ref() == CLOUDSTACK_NETWORK_NS_HTTP.as_bytes() => {
                    Ns::CsHttp
                }
                _ => Ns::Other,
            };
            if !p.event(event, ns, position)? {
                break;
            }
        }
        p.finish()
    }
}

impl Parser {
    /// Handles one event; false at the end of the document.
    fn event(&mut self, event: Event<'_>, ns: Ns, position: u64) -> Result<bool, XmlError> {
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Start(ref e) => self.start(e, ns, position, false)?,
            Event::Empty(ref e) => self.start(e, ns, position, true)?,
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
            Event::End(_) => self.end(),
            Event::Eof => {
                if let Some(open) = self.open_names.last() {
                    return Err(XmlError::Unclosed(excerpt(open)));
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
    fn start(
        &mut self,
        e: &BytesStart<'_>,
        ns: Ns,
        position: u64,
        empty: bool,
    ) -> Result<(), XmlError> {
        if self.stack.is_empty() && self.saw_root {
            return Err(XmlError::SecondRoot);
        }
        // Every element's attributes must be well-formed (quoted, not
        // repeated), also those of elements virt-l3 does not read.
        for a in e.attributes() {
            a.map_err(|err| malformed(position, err))?;
        }
        let local = e.local_name();
        let el = Element {
            local: local.as_ref(),
            start: e,
            is_cs: ns == Ns::Cs,
            position,
        };
        let ctx = match self.stack.last().copied() {
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
            self.open_names
                .push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
            self.text.clear();
        }
        Ok(())
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
                    state: get(&a, "state").unwrap_or_default(),
                    reason: get(&a, "reason").unwrap_or_default(),
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
                    mac: get(&a, "mac"),
                    ..Default::default()
                });
                Ok(Ctx::CsNic)
            }
            b"address" => {
                let a = el.attrs()?;
                self.dom.flat_addresses.push(FlatAddress {
                    address: address_xml(&a),
                    bridge: get(&a, "bridge"),
                    mac: get(&a, "mac"),
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
                b"link-local" => nic.link_local = get(&a, "address"),
                _ => nic.routes.push(RouteXml {
                    prefix: get(&a, "prefix"),
                    via: get(&a, "via"),
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
            kind: get(&a, "type").unwrap_or_default(),
            ..Default::default()
        });
        Ok(Ctx::Interface)
    }

    /// A child of an `<interface>`: `<mac>`, `<source>`, `<target>`, `<filterref>`.
    fn interface_child(&mut self, el: &Element<'_, '_>) -> Result<Ctx, XmlError> {
        let a = el.attrs()?;
        let nic = self.dom.interfaces.last_mut().ok_or(XmlError::NotADomain)?;
        match el.local {
            b"mac" => nic.mac = get(&a, "address"),
            b"source" => {
                if let Some(b) = get(&a, "bridge") {
                    nic.bridge = Some(b);
                }
            }
            b"target" => nic.target_dev = get(&a, "dev"),
            b"virtualport" => nic.virtualport = Some(get(&a, "type").unwrap_or_default()),
            b"filterref" => {
                nic.filterref = Some(FilterRef {
                    filter: get(&a, "filter").unwrap_or_default(),
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
        if let (Some(f), Some(n), Some(v)) = (filterref, get(&a, "name"), get(&a, "value")) {
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
    /// Whether it is in CloudStack's network metadata namespace.
    is_cs: bool,
    position: u64,
}

impl Element<'_, '_> {
    fn attrs(&self) -> Result<Vec<(String, String)>, XmlError> {
        attrs(self.start.attributes(), self.position)
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

fn address_xml(a: &[(String, String)]) -> AddressXml {
    AddressXml {
        address: get(a, "address"),
        prefix: get(a, "prefix"),
        family: get(a, "family"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/testdata/domains/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn reads_interfaces_and_per_nic_metadata() {
        let d = DomainXml::parse(&fixture("dual-stack.xml")).unwrap();
        assert_eq!(d.name, "i-2-10-VM");
        assert_eq!(
            d.uuid.as_deref(),
            Some("6f5a3b2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b")
        );
        assert_eq!(d.interfaces.len(), 1);
        let nic = &d.interfaces[0];
        assert_eq!(nic.mac.as_deref(), Some("52:02:45:76:d2:35"));
        assert_eq!(nic.bridge.as_deref(), Some("cloudbr0"));
        assert_eq!(nic.target_dev.as_deref(), Some("vnet3"));
        assert_eq!(d.nic_metadata.len(), 1);
        assert_eq!(d.nic_metadata[0].addresses.len(), 2);
        assert_eq!(d.nic_metadata[0].routes.len(), 1);
    }

    #[test]
    fn an_unclosed_document_names_its_innermost_open_element() {
        let unclosed = |xml: &[u8]| match DomainXml::parse(xml) {
            Err(XmlError::Unclosed(name)) => name,
            other => panic!("{other:?}"),
        };
        assert_eq!(unclosed(b"<domain><devices><interface>"), "interface");
        assert_eq!(
            unclosed(b"<domain><devices><interface></interface>"),
            "devices"
        );
        assert_eq!(unclosed(b"<domain><x:y xmlns:x='u'></x:y>"), "domain");
        assert_eq!(unclosed(b"<domain><x:y xmlns:x='u'>"), "x:y");
    }

    #[test]
    fn matches_namespace_by_uri_not_prefix() {
        let xml = br#"<domain><name>x</name><metadata>
            <zz:network xmlns:zz="https://download.cloudstack.org/libvirt/network"><zz:nic mac="52:54:00:00:00:01"><zz:address address="192.0.2.1" family="ipv4"/></zz:nic></zz:network>
            <cloudstack:network xmlns:cloudstack="http://example.org/other"><cloudstack:nic mac="52:54:00:00:00:02"/></cloudstack:network>
            </metadata></domain>"#;
        let d = DomainXml::parse(xml).unwrap();
        assert_eq!(d.nic_metadata.len(), 1);
        assert_eq!(d.nic_metadata[0].mac.as_deref(), Some("52:54:00:00:00:01"));
    }

    #[test]
    fn filterref_parameters_repeat() {
        let d = DomainXml::parse(&fixture("filterref-params.xml")).unwrap();
        let f = d.interfaces[0].filterref.as_ref().unwrap();
        assert_eq!(
            f.values("IP").collect::<Vec<_>>(),
            vec!["192.0.2.10", "192.0.2.11"]
        );
        assert_eq!(f.values("IPV6").count(), 1);
    }

    #[test]
    fn refuses_doctype_and_entities() {
        assert_eq!(
            DomainXml::parse(&fixture("hostile-billion-laughs.xml")),
            Err(XmlError::Doctype)
        );
        let e = DomainXml::parse(b"<domain><name>a&xxe;</name></domain>").unwrap_err();
        assert_eq!(e, XmlError::UndefinedEntity("xxe".into()));
    }

    #[test]
    fn predefined_entities_resolve() {
        let d = DomainXml::parse(b"<domain><name>a&amp;b&#65;</name></domain>").unwrap();
        assert_eq!(d.name, "a&bA");
    }

    #[test]
    fn reads_libvirt_status_files() {
        let xml = br#"<domstatus state='paused' reason='migration' pid='42'><taint flag='x'/>
            <domain type='qemu' id='3'><name>vm</name><uuid>6f5a3b2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b</uuid>
            <devices><interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='cloudbr0'/></interface></devices>
            </domain></domstatus>"#;
        let d = DomainXml::parse(xml).unwrap();
        assert_eq!(d.name, "vm");
        assert_eq!(d.interfaces.len(), 1);
        let rs = d.run_state.unwrap();
        assert_eq!(
            (rs.state.as_str(), rs.reason.as_str()),
            ("paused", "migration")
        );
    }

    #[test]
    fn refuses_oversize_deep_and_malformed() {
        let big = vec![b' '; MAX_XML_BYTES + 1];
        assert!(matches!(DomainXml::parse(&big), Err(XmlError::TooLarge(_))));
        let deep = format!(
            "<domain><name>x</name>{}{}</domain>",
            "<a>".repeat(100),
            "</a>".repeat(100)
        );
        assert_eq!(DomainXml::parse(deep.as_bytes()), Err(XmlError::TooDeep));
        assert!(matches!(
            DomainXml::parse(b"<domain><name>x</nam></domain>"),
            Err(XmlError::Malformed { .. })
        ));
        assert_eq!(DomainXml::parse(b"<network/>"), Err(XmlError::NotADomain));
        assert_eq!(DomainXml::parse(b""), Err(XmlError::NotADomain));
    }
}
