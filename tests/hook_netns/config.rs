//! The configuration: protocol, metric, a bad file.

use super::*;

#[test]
fn configured_protocol_and_metric_are_used() {
    require_root!();
    let lab = Lab::new(&["vnet41"]);
    lab.write_config("route_protocol = 77\nroute_metric = 33");
    assert!(lab
        .hook("v4only", "start", "begin", &fixture("ipv4-only.xml"))
        .status
        .success());
    let r = lab.ip(&["route", "show", "proto", "77"]);
    assert!(
        r.contains("192.0.2.41 dev cloudbr0 scope link metric 33"),
        "{r}"
    );
    assert!(lab.routes().is_empty(), "nothing with the default protocol");
    assert!(lab
        .hook("v4only", "stopped", "end", &fixture("ipv4-only.xml"))
        .status
        .success());
    assert!(lab.ip(&["route", "show", "proto", "77"]).is_empty());
}

#[test]
fn bad_config_refuses_start_but_not_stop() {
    require_root!();
    let lab = Lab::new(&["vnet41"]);
    lab.write_config("bridgez = [\"x\"]");
    let o = lab.hook("v4only", "prepare", "begin", &fixture("ipv4-only.xml"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bridgez"), "{}", stderr(&o));
    let o = lab.hook("v4only", "stopped", "end", &fixture("ipv4-only.xml"));
    assert!(o.status.success());
}
