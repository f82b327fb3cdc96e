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

/// A `virsh` that keeps filters as files in `dir` (`<name>.xml`) and logs each
/// define: enough for `define_all`'s list, dump and define.
fn fake_virsh(dir: &Path) -> define::Virsh {
    let script = dir.join("virsh");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
d='{}'
case "$1" in
-q) for f in "$d"/*.xml; do [ -e "$f" ] || continue; n=$(basename "$f" .xml); echo " 11111111-2222-4333-8444-$(printf %s "$n" | md5sum | cut -c1-12)  $n"; done ;;
nwfilter-dumpxml) cat "$d/$2.xml" ;;
nwfilter-define) n=$(sed -n 's/.*<filter name="\([^"]*\)".*/\1/p' "$2"); cp "$2" "$d/$n.xml"; echo "$n" >>"$d/defined.log" ;;
*) exit 1 ;;
esac
"#,
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    define::Virsh {
        program: script,
        connect: None,
    }
}

/// Domain B: domain A (`ipv4-only`) with another UUID, name and address, A's MAC.
fn impostor() -> Vec<u8> {
    String::from_utf8(fixture("ipv4-only"))
        .unwrap()
        .replace(
            "aaaaaaaa-0000-4000-8000-000000000004",
            "bbbbbbbb-0000-4000-8000-00000000000b",
        )
        .replace("<name>v4only</name>", "<name>impostor</name>")
        .replace("192.0.2.41", "192.0.2.99")
        .into_bytes()
}

#[test]
fn define_for_another_domain_with_the_same_mac_leaves_the_filter_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let virsh = fake_virsh(tmp.path());
    let config = Config::default();
    let a = plan_for_filters(&fixture("ipv4-only"), &config).unwrap();
    let done = define::define_all(&virsh, &a, &config, &NoOwnership, &render(&a, &config)).unwrap();
    assert_eq!(done.len(), 5, "{done:?}");
    let name = "virt-l3-nic-525400000401";
    let path = tmp.path().join(format!("{name}.xml"));
    let before = std::fs::read(&path).unwrap();
    // The attack: B renders a filter of the same name with its own address.
    let b = plan_for_filters(&impostor(), &config).unwrap();
    let e = define::define_all(&virsh, &b, &config, &NoOwnership, &render(&b, &config))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "refusing to define nwfilter {name} for domain impostor (bbbbbbbb-0000-4000-8000-00000000000b): \
             the filter that exists belongs to domain aaaaaaaa-0000-4000-8000-000000000004"
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!("virsh nwfilter-undefine {name}")),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "A's filter changed");
    // Nothing at all was defined for B (checked before the first define).
    let log = std::fs::read_to_string(tmp.path().join("defined.log")).unwrap();
    assert_eq!(log.lines().count(), 5, "{log}");
    // A itself redefines its own filter.
    define::define_all(&virsh, &a, &config, &NoOwnership, &render(&a, &config)).unwrap();
    // A filter without a recorded owner (an older virt-l3's) is taken over.
    let legacy = String::from_utf8(before).unwrap().replace(
        " (filter of domain aaaaaaaa-0000-4000-8000-000000000004)",
        "",
    );
    std::fs::write(&path, legacy).unwrap();
    define::define_all(&virsh, &b, &config, &NoOwnership, &render(&b, &config)).unwrap();
    let now = std::fs::read_to_string(&path).unwrap();
    assert!(now.contains("192.0.2.99"), "{now}");
}

#[test]
fn define_refuses_a_mac_another_domain_claims() {
    struct Claimed;
    impl crate::plan::Ownership for Claimed {
        fn owner_of_address(&self, _: std::net::IpAddr) -> Option<crate::plan::Owner> {
            None
        }
        fn owner_of_mac(&self, _: crate::address::Mac) -> Option<crate::plan::Owner> {
            Some(crate::plan::Owner {
                uuid: "aaaaaaaa-0000-4000-8000-000000000004".into(),
                name: "v4only".into(),
            })
        }
        fn routed_prefixes(&self) -> Vec<(ipnet::IpNet, crate::plan::Owner)> {
            Vec::new()
        }
        fn address_within(
            &self,
            _: &ipnet::IpNet,
        ) -> Option<(std::net::IpAddr, crate::plan::Owner)> {
            None
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let virsh = fake_virsh(tmp.path());
    let config = Config::default();
    let b = plan_for_filters(&impostor(), &config).unwrap();
    let e = define::define_all(&virsh, &b, &config, &Claimed, &render(&b, &config))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "refusing to define nwfilter virt-l3-nic-525400000401 for domain impostor \
         (bbbbbbbb-0000-4000-8000-00000000000b): MAC 52:54:00:00:04:01 of its NIC on cloudbr0 \
         is in use on a routed bridge by domain v4only (aaaaaaaa-0000-4000-8000-000000000004), \
         whose filter has this name"
    );
    assert!(!tmp.path().join("defined.log").exists());
    // The owner itself is not refused by its own claim.
    let a = plan_for_filters(&fixture("ipv4-only"), &config).unwrap();
    define::define_all(&virsh, &a, &config, &Claimed, &render(&a, &config)).unwrap();
}

#[test]
fn the_owner_is_read_back_from_a_rule_comment() {
    let config = Config::default();
    let a = plan_for_filters(&fixture("ipv4-only"), &config).unwrap();
    let f = policy::nic_filter_of(&a.uuid, &a.nics[0], &config);
    let xml = String::from_utf8(f.to_xml()).unwrap();
    assert_eq!(
        policy::recorded_owner(&xml).as_deref(),
        Some(a.uuid.as_str())
    );
    assert!(f.rules.iter().all(|r| r.comment.len() <= MAX_COMMENT_LEN));
    assert_eq!(policy::recorded_owner("<filter name='x'/>"), None);
    assert_eq!(policy::recorded_owner("filter of domain ../../etc"), None);
}
