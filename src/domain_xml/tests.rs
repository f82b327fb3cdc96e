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
