//! Live migration: the destination's standby, the source's demotion, and the status
//! writes that make `watch` act at once.

use super::*;

#[test]
fn an_incoming_migration_is_standby_then_arrives() {
    let lab = Lab::new();
    lab.hook("migrate").unwrap();
    assert!(
        lab.routes().is_empty(),
        "migrate changes nothing in the kernel"
    );
    assert_eq!(lab.state().incoming(), vec![UUID.to_string()]);
    lab.hook("start").unwrap();
    let standby = lab.config.standby_metric;
    assert_eq!(lab.routes(), expected_routes(&lab, standby));
    let rec = lab.state().record(UUID).unwrap().unwrap();
    assert!(rec.standby);
    // Paused for the switch-over: still standby.
    lab.running("paused", "migration");
    let r = lab.reconcile();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(lab.routes(), expected_routes(&lab, standby));
    // Running here: arrived, and no longer incoming.
    lab.running("running", "migrated");
    let r = lab.reconcile();
    assert!(
        r.changes.iter().any(|c| c.action == Action::Promote),
        "{:?}",
        r.changes
    );
    assert_eq!(
        lab.routes(),
        expected_routes(&lab, lab.config.arrived_metric)
    );
    assert!(lab.state().incoming().is_empty());
}

#[test]
fn the_source_of_a_migration_is_demoted_while_leaving() {
    let lab = Lab::new();
    lab.hook("start").unwrap();
    lab.running("paused", "migration");
    let r = lab.reconcile();
    assert!(
        r.changes.iter().any(|c| c.action == Action::Demote),
        "{:?}",
        r.changes
    );
    assert_eq!(
        lab.routes(),
        expected_routes(&lab, lab.config.leaving_metric)
    );
    let json = serde_json::to_string(&r.changes[0]).unwrap();
    assert!(
        json.starts_with(r#"{"action":"demote","domain":"i-2-10-VM","#),
        "{json}"
    );
}

#[test]
fn a_status_write_that_changes_the_metric_is_urgent_for_watch() {
    use virt_l3::reconcile::observe::standing_due;
    let lab = Lab::new();
    let names = [std::ffi::OsString::from(format!("{NAME}.xml"))];
    // No record: nothing due.
    lab.running("running", "booted");
    assert!(!standing_due(&lab.config, &names));
    lab.hook("migrate").unwrap();
    lab.hook("start").unwrap();
    // The destination, paused while the memory is copied: stays standby.
    lab.running("paused", "migration");
    assert!(!standing_due(&lab.config, &names));
    // Resumed here: standby -> arrived at once.
    lab.running("running", "migrated");
    assert!(standing_due(&lab.config, &names));
    lab.reconcile();
    assert!(!standing_due(&lab.config, &names));
    // A source paused for the switch-over: active -> leaving at once.
    let src = Lab::new();
    src.hook("start").unwrap();
    src.running("running", "booted");
    assert!(!standing_due(&src.config, &names));
    src.running("paused", "migration");
    assert!(standing_due(&src.config, &names));
    src.reconcile();
    // Resumed after a failed migration: back to active at once.
    src.running("running", "migration canceled");
    assert!(standing_due(&src.config, &names));
}
