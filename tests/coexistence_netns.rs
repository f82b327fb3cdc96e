//! Another tool managing routes and permanent neighbours for a routed guest's
//! address (CloudStack's modifymacip.sh: `ip route replace ADDR/32 dev BRIDGE`,
//! proto boot, metric 0; `ip neigh replace ... nud permanent`): `check` names the
//! address, the foreign entry and the fix; `status` shows the conflict.

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
mod common;

use common::{fixture, stderr, Lab};

fn check_items(lab: &Lab) -> Vec<serde_json::Value> {
    let o = lab.virt_l3(&["check", "--json"], b"");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("check --json: {e}: {}", stderr(&o)));
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["id"] == "foreign-entries")
        .cloned()
        .collect()
}

#[test]
fn check_and_status_name_another_tools_route_and_neighbour() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    lab.write_config("require_nwfilter = false");
    let o = lab.hook("i-2-10-VM", "start", "begin", &fixture("dual-stack.xml"));
    assert!(o.status.success(), "{}", stderr(&o));

    let items = check_items(&lab);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["status"], "ok", "{items:?}");
    let o = lab.virt_l3(&["status"], b"");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    // What modifymacip.sh does.
    lab.ip(&["route", "replace", "2.57.57.30/32", "dev", "cloudbr0"]);
    lab.ip(&[
        "neigh",
        "replace",
        "2.57.57.30",
        "lladdr",
        "52:02:45:76:d2:99",
        "dev",
        "cloudbr0",
        "nud",
        "permanent",
    ]);

    let items = check_items(&lab);
    let route = items
        .iter()
        .find(|i| i["subject"] == "2.57.57.30/32")
        .unwrap_or_else(|| panic!("{items:?}"));
    assert_eq!(route["status"], "fail");
    let summary = route["summary"].as_str().unwrap();
    assert!(
        summary.contains("route 2.57.57.30/32 dev cloudbr0 proto boot metric 0")
            && summary.contains("i-2-10-VM"),
        "{summary}"
    );
    let fix = route["fix"].as_str().unwrap();
    assert!(
        fix.contains("ip route del 2.57.57.30/32 dev cloudbr0 proto boot metric 0")
            && fix.contains("modifymacip.sh"),
        "{fix}"
    );
    let neigh = items
        .iter()
        .find(|i| i["subject"] == "2.57.57.30")
        .unwrap_or_else(|| panic!("{items:?}"));
    assert_eq!(neigh["status"], "fail");
    assert!(
        neigh["summary"]
            .as_str()
            .unwrap()
            .contains("lladdr 52:02:45:76:d2:99"),
        "{neigh}"
    );
    assert!(
        neigh["fix"]
            .as_str()
            .unwrap()
            .contains("ip neigh del 2.57.57.30 dev cloudbr0"),
        "{neigh}"
    );

    let o = lab.virt_l3(&["status"], b"");
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(
        text.contains("i-2-10-VM") && text.contains("CONFLICT"),
        "{text}"
    );
    assert!(
        text.contains(
            "conflict: another tool's 2.57.57.30/32: route 2.57.57.30/32 dev cloudbr0 proto boot metric 0 (takes precedence over virt-l3's)"
        ),
        "{text}"
    );
    let o = lab.virt_l3(&["status", "--json"], b"");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let conflicts = v[0]["conflicts"].as_array().unwrap();
    assert!(
        conflicts
            .iter()
            .any(|c| c["address"] == "2.57.57.30/32" && c["wins"] == true),
        "{v}"
    );

    // Removed as the fixes say: no conflict left (virt-l3's neighbour is missing
    // now, which `state` reports and reconcile repairs).
    lab.ip(&[
        "route",
        "del",
        "2.57.57.30/32",
        "dev",
        "cloudbr0",
        "proto",
        "boot",
        "metric",
        "0",
    ]);
    lab.ip(&["neigh", "del", "2.57.57.30", "dev", "cloudbr0"]);
    let items = check_items(&lab);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["status"], "ok", "{items:?}");
}
