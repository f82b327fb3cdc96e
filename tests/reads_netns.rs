//! The reads whose cost follows virt-l3's own entries (issue 17), against the
//! real kernel: `status` and a records reconcile look entries up one by one, the
//! sweep asks the kernel for a filtered dump, and the fallback for kernels
//! without strict checking (forced with `VIRT_L3_STRICT_DUMPS=0`) finds the same.

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
mod common;

use common::{fixture, stderr, Lab};

const DUAL: &str = "dual-stack.xml";
const FALLBACK: (&str, &str) = ("VIRT_L3_STRICT_DUMPS", "0");

/// The dual-stack domain running and routed, amid foreign routes and damage:
/// one of its routes deleted, one neighbour's MAC changed, a foreign route of a
/// lower metric hiding another of its routes, and strays of protocol 52.
fn damaged_lab() -> Lab {
    let lab = Lab::new(&["vnet3"]);
    std::fs::create_dir_all(lab.status_dir()).unwrap();
    lab.write_config(&format!(
        "libvirt_status_dir = {:?}\nrequire_nwfilter = false\nreconcile_grace_seconds = 0\n",
        lab.status_dir()
    ));
    lab.set_status("i-2-10-VM", &fixture(DUAL), "running", "booted");
    let o = lab.hook("i-2-10-VM", "start", "begin", &fixture(DUAL));
    assert!(o.status.success(), "{}", stderr(&o));
    // 2,000 foreign routes of another protocol (BGP), both families.
    let batch = lab.dir.path().join("foreign.batch");
    let mut text = String::new();
    for i in 0..1000 {
        text += &format!(
            "route add 10.{}.{}.0/24 dev cloudbr0 proto bgp\n",
            i / 256,
            i % 256
        );
        text += &format!("route add 2001:db8:{i:x}::/64 dev cloudbr0 proto bgp\n");
    }
    std::fs::write(&batch, text).unwrap();
    lab.ip(&["-batch", batch.to_str().unwrap()]);
    lab.ip(&[
        "-6",
        "route",
        "del",
        "2001:678:3a4:100::80/128",
        "dev",
        "cloudbr0",
        "proto",
        "52",
    ]);
    lab.ip(&[
        "neigh",
        "replace",
        "2.57.57.30",
        "lladdr",
        "52:54:00:00:00:09",
        "dev",
        "cloudbr0",
        "nud",
        "permanent",
        "protocol",
        "52",
    ]);
    lab.ip(&[
        "route",
        "add",
        "2.57.57.30/32",
        "dev",
        "cloudbr0",
        "proto",
        "bgp",
        "metric",
        "5",
    ]);
    lab.ip(&[
        "route",
        "add",
        "192.0.2.99/32",
        "dev",
        "cloudbr0",
        "proto",
        "52",
    ]);
    lab.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:ffff::99/128",
        "dev",
        "cloudbr0",
        "proto",
        "52",
    ]);
    lab
}

/// `status --json`: every entry with whether it is present.
fn status(lab: &Lab, env: &[(&str, &str)]) -> Vec<(String, bool)> {
    let o = lab.virt_l3_env(&["status", "--json"], b"", env);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut out: Vec<(String, bool)> = v
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["entries"].as_array().unwrap().clone())
        .map(|e| {
            (
                e["entry"].as_str().unwrap().to_string(),
                e["present"].as_bool().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn reconcile(lab: &Lab, env: &[(&str, &str)], args: &[&str]) -> (String, String) {
    let mut a = vec!["reconcile"];
    a.extend_from_slice(args);
    let o = lab.virt_l3_env(&a, b"", env);
    assert!(o.status.success(), "{}", stderr(&o));
    (String::from_utf8_lossy(&o.stdout).into_owned(), stderr(&o))
}

#[test]
fn status_finds_missing_and_differing_entries_and_a_hidden_route() {
    require_root!();
    let lab = damaged_lab();
    let entries = status(&lab, &[]);
    let absent: Vec<&str> = entries
        .iter()
        .filter(|(_, p)| !p)
        .map(|(e, _)| e.as_str())
        .collect();
    assert_eq!(absent.len(), 2, "{entries:?}");
    assert!(
        absent
            .iter()
            .any(|e| e.contains("2001:678:3a4:100::80/128")),
        "{absent:?}"
    );
    assert!(
        absent.iter().any(|e| e.starts_with("neighbour 2.57.57.30")),
        "{absent:?}"
    );
    // The route behind the foreign metric-5 route is there, and found.
    assert!(
        entries
            .iter()
            .any(|(e, p)| *p && e.starts_with("route 2.57.57.30/32")),
        "{entries:?}"
    );
    assert_eq!(status(&lab, &[FALLBACK]), entries);
}

#[test]
fn the_sweep_and_its_fallback_find_the_same_and_converge() {
    require_root!();
    let lab = damaged_lab();
    let (strict, log) = reconcile(&lab, &[("VIRT_L3_LOG", "debug")], &["--dry-run"]);
    assert!(
        !log.contains("dumping every route") && !log.contains("ignored"),
        "{log}"
    );
    let (fallback, log) = reconcile(&lab, &[FALLBACK, ("VIRT_L3_LOG", "debug")], &["--dry-run"]);
    assert!(
        log.contains("VIRT_L3_STRICT_DUMPS=0: dumping every route"),
        "{log}"
    );
    assert_eq!(strict, fallback);
    for what in [
        "add route 2001:678:3a4:100::80/128",
        "add neighbour 2.57.57.30",
        "remove route 192.0.2.99/32",
        "remove route 2001:db8:ffff::99/128",
    ] {
        assert!(strict.contains(what), "{what}: {strict}");
    }
    assert_eq!(
        strict.lines().filter(|l| !l.trim().is_empty()).count(),
        4,
        "{strict}"
    );
    reconcile(&lab, &[FALLBACK], &[]);
    let (again, _) = reconcile(&lab, &[], &["--dry-run"]);
    assert!(
        !again.contains("add ") && !again.contains("remove "),
        "{again}"
    );
    assert!(status(&lab, &[]).iter().all(|(_, p)| *p));
    assert_eq!(
        lab.ip(&["route", "show", "proto", "bgp"]).lines().count(),
        1001
    );
}
