//! `virt-l3 plan` and `virt-l3 status`.

use super::*;

#[test]
fn plan_shows_what_start_would_do_as_text_and_json() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    let o = lab.virt_l3(&["plan", "--json"], &fixture(DUAL));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["domain"], "i-2-10-VM");
    assert_eq!(v["route_protocol"], 52);
    assert_eq!(v["routes"].as_array().unwrap().len(), 3);
    assert_eq!(v["neighbours"][0]["mac"], "52:02:45:76:d2:35");
    let o = lab.virt_l3(&["plan"], &fixture(DUAL));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("ip route replace 2001:678:3a4:8000::/56 via 2001:678:3a4:100::80 dev cloudbr0 onlink metric 100 proto 52"),
        "{text}"
    );
    assert!(lab.routes().is_empty(), "plan must not change the kernel");
    let o = lab.virt_l3(&["plan"], &fixture("invalid-addresses.xml"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("127.0.0.1"));
}

#[test]
fn status_reports_each_entry_and_fails_when_one_is_missing() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    assert!(lab
        .hook("i-2-10-VM", "start", "begin", &fixture(DUAL))
        .status
        .success());
    let o = lab.virt_l3(&["status", "--json"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let entries = v[0]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 6, "with the pinned link-local's neighbour");
    assert!(entries.iter().all(|e| e["present"] == true), "{v}");
    lab.ip(&[
        "route",
        "del",
        "2.57.57.30/32",
        "dev",
        "cloudbr0",
        "proto",
        "52",
    ]);
    let o = lab.virt_l3(&["status"], b"");
    assert_eq!(o.status.code(), Some(3));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("MISSING ENTRIES") && text.contains("[ ] route 2.57.57.30/32"),
        "{text}"
    );
}
