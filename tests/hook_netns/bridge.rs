//! The bridge: taps joining and leaving it, gateway_mac given to it.

use super::*;

#[test]
fn a_tap_joining_or_leaving_the_bridge_does_not_flush_the_neighbours() {
    require_root!();
    // A bridge whose MAC was never set takes its lowest port MAC; every change of
    // it flushes the neighbour table, permanent entries included.
    let lab = Lab::new(&["vnet3"]);
    let mac_before = sys(&lab, "/sys/class/net/cloudbr0/address");
    assert!(lab
        .hook("i-2-10-VM", "start", "begin", &fixture(DUAL))
        .status
        .success());
    assert_eq!(
        sys(&lab, "/sys/class/net/cloudbr0/addr_assign_type"),
        "3",
        "bridge MAC not pinned"
    );
    assert_eq!(sys(&lab, "/sys/class/net/cloudbr0/address"), mac_before);
    // Another VM's tap, with a lower MAC than any port, comes and goes.
    lab.ip(&[
        "link",
        "add",
        "vnet9",
        "address",
        "00:00:00:00:00:01",
        "type",
        "veth",
        "peer",
        "name",
        "vnet9p",
    ]);
    lab.ip(&["link", "set", "vnet9", "master", "cloudbr0", "up"]);
    lab.ip(&["link", "del", "vnet9"]);
    assert_eq!(lab.neighbours(), dual_neighbours());
    assert_eq!(sys(&lab, "/sys/class/net/cloudbr0/address"), mac_before);
}

#[test]
fn gateway_mac_is_given_to_the_bridge() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    lab.write_config("gateway_mac = \"02:00:00:00:00:01\"");
    assert!(lab
        .hook("i-2-10-VM", "start", "begin", &fixture(DUAL))
        .status
        .success());
    assert_eq!(
        sys(&lab, "/sys/class/net/cloudbr0/address"),
        "02:00:00:00:00:01"
    );
    assert_eq!(lab.neighbours(), dual_neighbours());
}
