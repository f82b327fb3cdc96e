//! Fuzzing's findings, as plain tests: every input in `testdata/fuzz/<target>/`
//! goes through the same property checks as the fuzz target of that name
//! (`fuzz/src/lib.rs`, included below), and each finding has a test of its own
//! for the behaviour that was fixed. docs/FUZZING.md tells how to fuzz.
#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod checks;
mod common;

use std::path::{Path, PathBuf};

use virt_l3::config::Config;
use virt_l3::domain_xml::{DomainXml, XmlError};
use virt_l3::nwfilter::{inject::inject, plan_for_filters};
use virt_l3::plan::{plan, Checks, HostFacts, NoOwnership};

fn dir(target: &str) -> PathBuf {
    common::repo_path("testdata/fuzz").join(target)
}

fn input(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(dir(target).join(name)).unwrap()
}

/// Runs every regression input of `target` through `check`; returns how many.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir(target)).unwrap() {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{} fails the {target} fuzz target's checks", path.display());
        }
        n += 1;
    }
    n
}

#[test]
fn every_regression_input_passes_its_targets_checks() {
    assert!(replay("domain_xml", checks::domain_xml) >= 1);
    assert!(replay("plan", checks::plan_input) >= 1);
    assert!(replay("nwfilter", checks::nwfilter) >= 1);
    replay("config", checks::config);
    // Every domain fixture also passes all three XML targets' checks.
    for e in std::fs::read_dir(common::repo_path("testdata/domains")).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        checks::domain_xml(&data);
        checks::plan_input(&data);
        checks::nwfilter(&data);
    }
}

/// Finding 1 (domain_xml): quick-xml's error text quotes the input, newlines
/// included, and the refusal went to the log over several lines.
#[test]
fn malformed_xml_errors_are_one_line() {
    let e =
        DomainXml::parse(&input("domain_xml", "malformed-error-quotes-newlines.xml")).unwrap_err();
    assert!(matches!(e, XmlError::Malformed { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains("</filterre\\n"), "{msg}");
    let e = DomainXml::parse(b"<domain><name>x&a\nb;</name></domain>");
    if let Err(e) = e {
        assert!(!e.to_string().contains('\n'), "{e}");
    }
}

/// Finding 2 (plan): a MAC with control characters went raw into the NIC's
/// label of the refusal.
#[test]
fn refusals_escape_control_characters() {
    let xml = input("plan", "control-chars-in-mac.xml");
    let dom = DomainXml::parse(&xml).unwrap();
    let e = plan(
        &dom,
        &Config::default(),
        &HostFacts::default(),
        &NoOwnership,
        Checks::default(),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(!msg.chars().any(char::is_control), "{msg:?}");
    assert!(
        msg.contains("NIC \"52:54:00:00:0a:0\\u{11}\\u{11}"),
        "the label keeps the value, escaped: {msg}"
    );
    // A name with a newline is escaped as well (the domain routes a NIC: without
    // one, there is nothing to refuse, as at the hook).
    let dom = DomainXml::parse(
        b"<domain><name>evil\nvirt-l3: all good</name><uuid>nope</uuid><metadata>\
          <cs:network xmlns:cs='https://download.cloudstack.org/libvirt/network'>\
          <cs:nic mac='52:54:00:00:00:01'><cs:address address='192.0.2.10'/></cs:nic></cs:network>\
          </metadata><devices><interface type='bridge'><mac address='52:54:00:00:00:01'/>\
          <source bridge='cloudbr0'/></interface></devices></domain>",
    )
    .unwrap();
    let e = plan(
        &dom,
        &Config::default(),
        &HostFacts::default(),
        &NoOwnership,
        Checks::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "virt-l3 refuses domain \"evil\\nvirt-l3: all good\": the domain UUID \"nope\" is not a valid UUID; \
         the domain name \"evil\\nvirt-l3: all good\" contains a control character"
    );
}

/// Finding 3 (nwfilter): a document that ends with unclosed elements was read
/// as complete; `inject` then cut a filterref out of the middle of one and
/// wrote XML that no longer parsed.
#[test]
fn truncated_documents_are_refused() {
    let xml = input("nwfilter", "unclosed-elements.bin");
    // (This input also has bytes before its root element, which is refused first.)
    let e = DomainXml::parse(&xml).unwrap_err();
    assert!(
        matches!(e, XmlError::Unclosed(_) | XmlError::TextOutsideRoot(_)),
        "{e:?}"
    );
    assert!(plan_for_filters(&xml, &Config::default()).is_err());
    assert!(inject(&xml, &Config::default()).is_err());
    // Every strict prefix of a valid domain is refused (stdin cut short).
    let full = std::fs::read(common::repo_path("testdata/domains/dual-stack.xml")).unwrap();
    let end = full.len()
        - full
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
    assert!(DomainXml::parse(&full).is_ok());
    for cut in 0..end {
        assert!(
            DomainXml::parse(&full[..cut]).is_err(),
            "the first {cut} bytes were accepted as a domain"
        );
    }
}

/// Finding 3, the same root cause: text or a second element outside the root.
#[test]
fn content_outside_the_root_is_refused() {
    let one = "<domain><name>a</name><uuid>6f5a3b2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b</uuid></domain>";
    assert!(DomainXml::parse(one.as_bytes()).is_ok());
    assert!(DomainXml::parse(
        format!("\u{feff}<?xml version='1.0'?>\n<!-- c -->\n{one}\n\n").as_bytes()
    )
    .is_ok());
    for bad in [
        format!("{one}<domain><name>b</name></domain>"),
        format!("{one}<x/>"),
        format!("junk{one}"),
        format!("{one}junk"),
        format!("{one}&amp;"),
        format!("<![CDATA[x]]>{one}"),
    ] {
        match DomainXml::parse(bad.as_bytes()) {
            Err(
                XmlError::Malformed { .. } | XmlError::SecondRoot | XmlError::TextOutsideRoot(_),
            ) => {}
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
}

/// Finding 4 (nwfilter): `inject` looked interfaces up by MAC alone; with the
/// routed NIC's MAC also on an interface virt-l3 does not manage, the filterref
/// went to that one and the routed NIC kept its old filter.
#[test]
fn inject_picks_the_routed_interface_when_macs_repeat() {
    let xml = br#"<domain><name>d</name><uuid>6f5a3b2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b</uuid><devices>
<interface type='bridge'><mac address='52:54:00:00:0a:01'/><source bridge='br-vlan100'/><filterref filter='clean-traffic'/></interface>
<interface type='bridge'><mac address='52:54:00:00:0a:01'/><source bridge='cloudbr0'/><filterref filter='virt-l3-nic-525400000a99'><parameter name='IP' value='192.0.2.5'/></filterref></interface>
</devices></domain>"#;
    let config = Config::default();
    // (The fuzzer's routed interface carried clean-traffic: a foreign filter,
    // which inject now refuses to replace; virt-l3's own, another NIC's here, is replaced.)
    let foreign =
        String::from_utf8_lossy(xml).replace("'virt-l3-nic-525400000a99'", "'clean-traffic'");
    let e = inject(foreign.as_bytes(), &config).unwrap_err().to_string();
    assert!(
        e.contains(
            "will not replace the nwfilter \"clean-traffic\" of NIC 52:54:00:00:0a:01 on cloudbr0"
        ),
        "{e}"
    );
    let out = inject(xml, &config).unwrap();
    let dom = DomainXml::parse(&out).unwrap();
    assert_eq!(
        dom.interfaces[0].filterref.as_ref().unwrap().filter,
        "clean-traffic",
        "the unrouted interface is left alone"
    );
    assert_eq!(
        dom.interfaces[1].filterref.as_ref().unwrap().filter,
        "virt-l3-nic-525400000a01"
    );
    let checks = Checks {
        require_filter: true,
    };
    plan(&dom, &config, &HostFacts::default(), &NoOwnership, checks).unwrap();
    // The fuzzer's input also has a malformed attribute (`prefix="3""`), which
    // the parser has refused since the hostile-input work: inject refuses it whole.
    let xml = input("nwfilter", "same-mac-on-unrouted-interface.xml");
    let e = inject(&xml, &config).unwrap_err();
    assert!(e.to_string().contains("attribute"), "{e}");
}

/// Finding 5 (config): TOML's message for an unknown key quotes the key, tabs and
/// newlines included.
#[test]
fn config_errors_are_one_line() {
    let text = String::from_utf8(input("config", "tab-in-unknown-key.toml")).unwrap();
    let e = Config::from_toml(&text, Path::new("/etc/virt-l3/config.toml")).unwrap_err();
    let msg = e.to_string();
    assert!(!msg.chars().any(char::is_control), "{msg:?}");
    assert!(msg.contains("unknown field `bm\\t2`"), "{msg}");
    let e = Config::from_toml("\"a\\nb\" = 1\n", Path::new("x")).unwrap_err();
    assert!(e.to_string().contains("`a\\nb`"), "{e}");
}
