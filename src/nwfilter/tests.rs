//! Golden files: the rendered filters and injected domain XML are what operators
//! audit, so every change to them must show in review. `UPDATE_GOLDEN=1 cargo test`
//! rewrites them; without it, any byte of difference fails.

use std::path::{Path, PathBuf};

use super::define::{parse_list, with_uuid};
use super::inject::inject;
use super::*;
use crate::domain_xml::DomainXml;
use crate::plan::{plan, Checks, HostFacts, NoOwnership};

const FIXTURES: [&str; 6] = [
    "dual-stack",
    "ipv4-only",
    "ipv6-only",
    "multi-nic",
    "flat-metadata",
    "filterref-params",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(root().join(format!("testdata/domains/{name}.xml"))).unwrap()
}

fn gateway_config() -> Config {
    Config {
        gateway_mac: Some("02:56:4c:33:00:01".parse().unwrap()),
        ..Config::default()
    }
}

fn check_golden(path: &Path, actual: &[u8]) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "golden file {} missing ({e}); run with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "{} differs from the output (run UPDATE_GOLDEN=1 cargo test and review the diff):\n{}",
            path.display(),
            String::from_utf8_lossy(actual)
        );
    }
}

fn check_render_dir(dir: &Path, xml: &[u8], config: &Config) {
    let p = plan_for_filters(xml, config).unwrap();
    let filters = render(&p, config);
    let mut names: Vec<String> = filters.iter().map(|(n, _)| format!("{n}.xml")).collect();
    for (name, bytes) in &filters {
        check_golden(&dir.join(format!("{name}.xml")), bytes);
    }
    if std::env::var_os("UPDATE_GOLDEN").is_none() {
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        names.sort();
        assert_eq!(
            on_disk,
            names,
            "golden directory {} has other files",
            dir.display()
        );
    }
}

#[test]
fn render_matches_golden_files() {
    for f in FIXTURES {
        let dir = root().join(format!("testdata/nwfilter/render/{f}"));
        check_render_dir(&dir, &fixture(f), &Config::default());
    }
}

#[test]
fn render_with_gateway_mac_matches_golden_files() {
    let lab_a = std::fs::read(root().join("tests/nwfilter-lab/domains/guest-a.xml")).unwrap();
    check_render_dir(
        &root().join("testdata/nwfilter/render-gateway/lab-guest-a"),
        &lab_a,
        &gateway_config(),
    );
    check_render_dir(
        &root().join("testdata/nwfilter/render-gateway/ipv6-only"),
        &fixture("ipv6-only"),
        &gateway_config(),
    );
}

#[test]
fn inject_matches_golden_files() {
    for f in FIXTURES {
        let out = inject(&fixture(f), &Config::default()).unwrap();
        check_golden(
            &root().join(format!("testdata/nwfilter/inject/{f}.xml")),
            &out,
        );
    }
}

#[test]
fn render_is_deterministic() {
    let c = gateway_config();
    let p = plan_for_filters(&fixture("multi-nic"), &c).unwrap();
    assert_eq!(render(&p, &c), render(&p, &c));
}

#[test]
fn inject_is_idempotent_and_satisfies_prepare() {
    let c = Config::default();
    for f in FIXTURES {
        let once = inject(&fixture(f), &c).unwrap();
        assert_eq!(
            inject(&once, &c).unwrap(),
            once,
            "{f}: second inject changed the XML"
        );
        let dom = DomainXml::parse(&once).unwrap();
        let strict = Checks {
            require_filter: true,
        };
        let after = plan(&dom, &c, &HostFacts::default(), &NoOwnership, strict)
            .unwrap_or_else(|e| panic!("{f}: injected XML refused at prepare: {e}"));
        let before = plan_for_filters(&fixture(f), &c).unwrap();
        assert_eq!(
            after.nics, before.nics,
            "{f}: inject changed the NICs' addresses"
        );
    }
}

#[test]
fn inject_touches_only_managed_filterrefs() {
    let input = String::from_utf8(fixture("multi-nic")).unwrap();
    let out = String::from_utf8(inject(input.as_bytes(), &Config::default()).unwrap()).unwrap();
    // The VLAN-bridge interface keeps its clean-traffic filter, byte for byte.
    let unmanaged =
        "<filterref filter='clean-traffic'><parameter name='IP' value='10.1.0.5'/></filterref>";
    assert!(input.contains(unmanaged) && out.contains(unmanaged));
    // Outside the filterref elements, nothing changed.
    let strip = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.contains("filterref") && !l.contains("<parameter"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&input), strip(&out));
}

#[test]
fn inject_adds_a_missing_filterref_with_the_interface_indentation() {
    let xml = b"<domain>\n  <name>x</name>\n  <uuid>11111111-2222-3333-4444-555555555555</uuid>\n  <devices>\n    <interface type='bridge'>\n      <mac address='52:54:00:00:00:01'/>\n      <source bridge='cloudbr0'/>\n    </interface>\n  </devices>\n  <metadata><cs:network xmlns:cs='https://download.cloudstack.org/libvirt/network'><cs:nic mac='52:54:00:00:00:01'><cs:address address='192.0.2.1' family='ipv4'/></cs:nic></cs:network></metadata>\n</domain>\n";
    let out = String::from_utf8(inject(xml, &Config::default()).unwrap()).unwrap();
    assert!(
        out.contains("      <source bridge='cloudbr0'/>\n      <filterref filter=\"virt-l3-nic-525400000001\">\n        <parameter name=\"IP\" value=\"192.0.2.1\"/>\n      </filterref>\n    </interface>"),
        "{out}"
    );
}

#[test]
fn inject_refuses_what_prepare_refuses() {
    let e = inject(&fixture("invalid-addresses"), &Config::default()).unwrap_err();
    assert!(e.to_string().contains("virt-l3 refuses domain"), "{e}");
    assert!(inject(&fixture("hostile-billion-laughs"), &Config::default()).is_err());
}

#[test]
fn every_rule_says_what_it_is_for() {
    let c = gateway_config();
    for f in FIXTURES {
        let p = plan_for_filters(&fixture(f), &c).unwrap();
        for nic in &p.nics {
            let filter = policy::nic_filter(nic, &c);
            let mut seen = std::collections::BTreeSet::new();
            for r in &filter.rules {
                assert!(r.comment.starts_with("virt-l3: "), "{}", r.comment);
                assert!(r.comment.len() <= MAX_COMMENT_LEN, "{}", r.comment);
                assert!(
                    seen.insert(r.comment.clone()),
                    "duplicate comment {}",
                    r.comment
                );
            }
        }
    }
    for t in &TEMPLATES {
        let rules = t.xml.matches("<rule ").count();
        assert!(rules > 0, "{}", t.name);
        assert_eq!(
            t.xml.matches("comment='virt-l3: ").count(),
            rules,
            "{}",
            t.name
        );
    }
}

#[test]
fn families_get_only_their_rules() {
    let c = Config::default();
    let v4 = plan_for_filters(&fixture("ipv4-only"), &c).unwrap();
    let f = policy::nic_filter(&v4.nics[0], &c);
    assert!(f.rules.iter().all(|r| r.protocol != "ipv6"));
    assert_eq!(f.rules.iter().filter(|r| r.protocol == "ip").count(), 4); // 2 addresses x 2 ways
    let v6 = plan_for_filters(&fixture("ipv6-only"), &c).unwrap();
    let f = policy::nic_filter(&v6.nics[0], &c);
    assert!(f
        .rules
        .iter()
        .all(|r| r.protocol != "ip" && r.protocol != "arp"));
    assert!(
        f.rules.iter().any(|r| r.protocol == "rarp"),
        "announce-self is family-independent"
    );
}

#[test]
fn templates_are_named_like_their_files() {
    for t in &TEMPLATES {
        let on_disk =
            std::fs::read_to_string(root().join(format!("nwfilter-templates/{}.xml", t.name)))
                .unwrap();
        assert_eq!(on_disk, t.xml);
        assert!(t
            .xml
            .contains(&format!("<filter name='{}' chain='root'>", t.name)));
    }
}

#[test]
fn filter_names_follow_the_nic_mac() {
    let mac = "52:02:45:76:d2:35".parse().unwrap();
    assert_eq!(
        nic_filter_name(&Config::default(), &mac),
        "virt-l3-nic-52024576d235"
    );
}

#[test]
fn uuid_goes_first_in_the_filter() {
    let xml = b"<!-- c -->\n<filter name='x' chain='root'>\n  <rule/>\n</filter>\n";
    let out = with_uuid(xml, "6f5a3b2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b", "x").unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "<!-- c -->\n<filter name='x' chain='root'>\n  <uuid>6f5a3b2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b</uuid>\n  <rule/>\n</filter>\n"
    );
    assert!(with_uuid(xml, "not-a-uuid", "x").is_err());
}

#[test]
fn virsh_list_is_parsed() {
    let text = " 0f8e7b9a-1111-4222-8333-944455556666   clean-traffic\n b3b8d0be-e969-4955-912f-c845e614672a   virt-l3-no-vlan\n\n";
    let m = parse_list(text);
    assert_eq!(m.len(), 2);
    assert_eq!(m["virt-l3-no-vlan"], "b3b8d0be-e969-4955-912f-c845e614672a");
}
