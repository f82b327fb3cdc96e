//! Failed and partial starts rolled back, reconnect, migration and restore.

use super::*;

#[test]
fn a_failed_start_is_rolled_back() {
    require_root!();
    // The tap named in <target dev> does not exist: isolation fails after routes went in.
    let lab = Lab::new(&[]);
    let o = lab.hook("i-2-10-VM", "start", "begin", &fixture(DUAL));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("vnet3"), "{}", stderr(&o));
    assert!(lab.routes().is_empty(), "{:?}", lab.routes());
    assert!(lab.neighbours().is_empty());
    assert!(lab.state_files().is_empty(), "{:?}", lab.state_files());
    // libvirt then runs stopped and release, which must succeed with nothing to do.
    assert!(lab
        .hook("i-2-10-VM", "stopped", "end", &fixture(DUAL))
        .status
        .success());
    assert!(lab
        .hook("i-2-10-VM", "release", "end", &fixture(DUAL))
        .status
        .success());
}

#[test]
fn stopped_removes_what_a_partial_apply_left() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    assert!(lab
        .hook("i-2-10-VM", "start", "begin", &fixture(DUAL))
        .status
        .success());
    // Half the entries vanish (as after a crash mid-apply or a manual flush).
    lab.ip(&[
        "route",
        "del",
        "2.57.57.30/32",
        "dev",
        "cloudbr0",
        "proto",
        "52",
    ]);
    lab.ip(&["neigh", "del", "2001:678:3a4:100::80", "dev", "cloudbr0"]);
    // Removal works from the record, even with unreadable XML.
    let o = lab.hook("i-2-10-VM", "stopped", "end", b"not xml at all");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(lab.routes().is_empty(), "{:?}", lab.routes());
    assert!(lab.neighbours().is_empty());
    assert!(lab.state_files().is_empty());
}

#[test]
fn reconnect_restores_deleted_entries_and_never_fails() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    assert!(lab
        .hook("i-2-10-VM", "start", "begin", &fixture(DUAL))
        .status
        .success());
    lab.ip(&["route", "flush", "dev", "cloudbr0", "proto", "52"]);
    lab.ip(&["-6", "route", "flush", "dev", "cloudbr0", "proto", "52"]);
    let o = lab.hook("i-2-10-VM", "reconnect", "begin", &fixture(DUAL));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lab.routes(), dual_routes());
    // Garbage at reconnect must not kill the running VM.
    let o = lab.hook("i-2-10-VM", "reconnect", "begin", b"<domain");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lab.routes(), dual_routes());
}

#[test]
fn migrate_and_restore_print_nothing_and_validate() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    for op in ["migrate", "restore"] {
        let o = lab.hook("i-2-10-VM", op, "begin", &fixture(DUAL));
        assert!(o.status.success(), "{op}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{op} must not replace the XML");
        let o = lab.hook("badaddr", op, "begin", &fixture("invalid-addresses.xml"));
        assert!(!o.status.success(), "{op} accepted invalid XML");
        assert!(o.stdout.is_empty());
    }
    assert!(lab.routes().is_empty(), "validation steps install nothing");
}

#[test]
fn incoming_migration_installs_standby_routes() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    for op in ["migrate", "prepare", "start", "started"] {
        let o = lab.hook("i-2-10-VM", op, "begin", &fixture(DUAL));
        assert!(o.status.success(), "{op}: {}", stderr(&o));
    }
    let routes = lab.routes();
    assert_eq!(routes.len(), 3);
    assert!(
        routes.iter().all(|r| r.contains("metric 4000")),
        "{routes:?}"
    );
    assert!(lab
        .hook("i-2-10-VM", "stopped", "end", &fixture(DUAL))
        .status
        .success());
    assert!(lab.routes().is_empty());
    assert!(lab.state_files().is_empty(), "{:?}", lab.state_files());
}
