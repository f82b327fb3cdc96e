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

/// The error of parsing `xml`, with its message.
fn refusal(xml: &str) -> (XmlError, String) {
    let e = DomainXml::parse(xml.as_bytes()).unwrap_err();
    let message = e.to_string();
    (e, message)
}

#[test]
fn refuses_bad_attributes_on_elements_it_does_not_read() {
    let (e, m) = refusal("<domain><name>x</name><os a='1' a='2'/></domain>");
    assert!(
        matches!(e, XmlError::Malformed { position: 22, .. }),
        "{e:?}"
    );
    assert!(m.contains("duplicated"), "{m}");
    for bad in ["<os a=1/>", "<os a/>", "<os a='1/>", "<os a = '1' a='2'/>"] {
        let xml = format!("<domain><name>x</name>{bad}</domain>");
        let (e, _) = refusal(&xml);
        assert!(matches!(e, XmlError::Malformed { .. }), "{bad}: {e:?}");
    }
    // Their values are not read: an undefined entity there is not looked at.
    let d = DomainXml::parse(b"<domain><name>x</name><os a='&bad;'/></domain>").unwrap();
    assert_eq!(d.name, "x");
}

#[test]
fn refuses_bad_attributes_on_elements_it_reads() {
    let nic = |attrs: &str| {
        format!("<domain><name>x</name><devices><interface type='bridge'><mac {attrs}/></interface></devices></domain>")
    };
    let (e, m) = refusal(&nic("address='a' address='b'"));
    assert!(matches!(e, XmlError::Malformed { .. }), "{e:?}");
    assert!(m.contains("duplicated"), "{m}");
    assert_eq!(
        refusal(&nic("address='&bad;'")).0,
        XmlError::UndefinedEntity("bad".into())
    );
    // Any attribute of a read element is unescaped, also one virt-l3 ignores.
    assert_eq!(
        refusal(&nic("address='a' x='&bad;'")).0,
        XmlError::UndefinedEntity("bad".into())
    );
}

#[test]
fn reads_attributes_in_any_well_formed_shape() {
    let many: String = (0..12).map(|i| format!(" a{i}='{i}'")).collect();
    let xml = format!(
        "<domain><name>x</name><devices><interface type = \"bridge\"><mac{many} address='m&amp;'/>\
         <source\n bridge='b'/></interface></devices></domain>"
    );
    let d = DomainXml::parse(xml.as_bytes()).unwrap();
    let nic = &d.interfaces[0];
    assert_eq!(nic.kind, "bridge");
    assert_eq!(nic.mac.as_deref(), Some("m&"));
    assert_eq!(nic.bridge.as_deref(), Some("b"));
}

#[test]
fn unclosed_names_keep_their_prefix_and_follow_empty_elements() {
    let unclosed = |xml: &[u8]| match DomainXml::parse(xml) {
        Err(XmlError::Unclosed(name)) => name,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        unclosed(b"\xef\xbb\xbf <domain>\n<name>x</name><p:a xmlns:p='u' k='v'><b/> text"),
        "p:a"
    );
    assert_eq!(unclosed(b"<domain><a\n\tx='1'><b/><c></c>"), "a");
}

#[test]
fn namespace_declarations_are_checked_and_scoped() {
    let (e, m) = refusal("<domain><name>x</name><a xmlns:xml='other'/></domain>");
    assert!(matches!(e, XmlError::Malformed { .. }), "{e:?}");
    assert!(m.contains("'xml'"), "{m}");
    // The namespace error comes first, as quick-xml's namespace reader has it.
    let (e, m) = refusal("<domain><name>x</name><a b='1' b='2' xmlns:xmlns='u'/></domain>");
    assert!(matches!(e, XmlError::Malformed { .. }), "{e:?}");
    assert!(m.contains("xmlns"), "{m}");
    // A binding written in an unusual shape binds all the same; one that went
    // out of scope binds nothing.
    let xml = br#"<domain><name>x</name><metadata>
        <zz:network xmlns:zz = "https://download.cloudstack.org/libvirt/network"><zz:nic mac="m1"/></zz:network>
        <zz:network><zz:nic mac="m2"/></zz:network>
        <network xmlns="https://download.cloudstack.org/libvirt/network"><nic mac="m3"/></network>
        </metadata></domain>"#;
    let d = DomainXml::parse(xml).unwrap();
    let macs: Vec<_> = d.nic_metadata.iter().map(|n| n.mac.as_deref()).collect();
    assert_eq!(macs, vec![Some("m1"), Some("m3")]);
}

#[test]
fn notices_metadata_in_the_http_namespace() {
    let xml = br#"<domain><name>x</name><metadata><a/>
        <c:network xmlns:c="http://download.cloudstack.org/libvirt/network"/></metadata></domain>"#;
    let d = DomainXml::parse(xml).unwrap();
    assert!(d.http_namespace_metadata);
    assert!(d.nic_metadata.is_empty());
}
