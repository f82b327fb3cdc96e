//! Reconcile: sweeps, records, grace periods and adoption.

use super::*;

#[test]
fn reconcile_adds_fixes_and_removes_only_its_own() {
    let lab = Lab::new();
    lab.hook("start").unwrap();
    lab.running("running", "booted");
    let i = ifindex(&lab);
    let foreign = KernelRoute {
        destination: "198.51.100.0/24".parse().unwrap(),
        ifindex: Some(i),
        gateway: None,
        metric: 20,
        protocol: 186,
        table: 254,
    };
    lab.kernel.with(|m| {
        // Missing: one route; differing: a neighbour's MAC; orphans: a protocol-52
        // route and neighbour nobody wants; another protocol's route.
        m.routes
            .retain(|r| r.destination.to_string() != "2.57.57.30/32");
        for n in &mut m.neighbours {
            n.mac = Some(virt_l3::address::Mac([0x52, 0, 0, 0, 0, 9]));
        }
        m.routes.push(KernelRoute {
            destination: "192.0.2.99/32".parse().unwrap(),
            protocol: PROTO,
            ..foreign.clone()
        });
        m.neighbours.push(KernelNeighbour {
            address: "192.0.2.99".parse().unwrap(),
            ifindex: i,
            mac: None,
            permanent: true,
            protocol: PROTO,
        });
        m.routes.push(foreign.clone());
    });
    // A kernel error mid-way: reported, the rest still applied.
    lab.kernel.inject(Fault::Matching {
        text: "add neighbour 2001:678:3a4:100::80".to_string(),
        errno: libc::ENOBUFS,
    });
    let r = lab.reconcile();
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert!(
        r.errors[0].starts_with("neighbour 2001:678:3a4:100::80"),
        "{:?}",
        r.errors
    );
    assert_eq!(
        r.changes.iter().filter(|c| c.action == Action::Add).count(),
        4, // with the pinned link-local's neighbour
        "{:?}",
        r.changes
    );
    assert_eq!(
        r.changes
            .iter()
            .filter(|c| c.action == Action::Remove)
            .count(),
        2,
        "{:?}",
        r.changes
    );
    assert_eq!(lab.routes(), expected_routes(&lab, 100));
    assert_eq!(lab.kernel.route_lines(186).len(), 1);
    let m = lab.kernel.snapshot();
    assert!(!m
        .neighbours
        .iter()
        .any(|n| n.address.to_string() == "192.0.2.99"));
    // A second pass converges, then a third has nothing to do.
    lab.kernel.clear_faults();
    let r = lab.reconcile();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.changes.len(), 1, "{:?}", r.changes);
    let r = lab.reconcile();
    assert!(r.changes.is_empty(), "{:?}", r.changes);
    let m = lab.kernel.snapshot();
    let mac = virt_l3::address::Mac([0x52, 0x02, 0x45, 0x76, 0xd2, 0x35]);
    assert!(m
        .neighbours
        .iter()
        .filter(|n| n.protocol == PROTO)
        .all(|n| n.mac == Some(mac)));
    assert!(m.routes.contains(&foreign));
}

#[test]
fn reconcile_prunes_a_domain_that_no_longer_runs() {
    let lab = Lab::new();
    let config = Config {
        reconcile_grace_seconds: 0,
        ..lab.config.clone()
    };
    let lab = Lab { config, ..lab };
    lab.hook("start").unwrap();
    let r = lab.reconcile();
    assert!(
        r.changes.iter().any(|c| c.action == Action::Prune),
        "{:?}",
        r.changes
    );
    assert!(lab.routes().is_empty());
    assert!(lab.state().record(UUID).unwrap().is_none());
}

#[test]
fn a_records_reconcile_repairs_like_a_sweep_but_leaves_strays_to_it() {
    let lab = Lab::new();
    lab.hook("start").unwrap();
    lab.running("running", "booted");
    // Healthy: the records' entries looked up, no dump at all.
    let (r, reads) = lab.reconcile_scoped(Scope::Records);
    assert!(r.changes.is_empty(), "{:?}", r.changes);
    assert_eq!(reads, ["lookup 6"]);
    // Strays only: a records reconcile does not see them (its entries all answer
    // as themselves); the sweep removes them, reading a filtered dump, never the
    // whole table.
    damage(&lab);
    lab.hook("started").unwrap();
    let (r, reads) = lab.reconcile_scoped(Scope::Records);
    assert!(r.changes.is_empty(), "{:?}", r.changes);
    assert_eq!(reads, ["lookup 6"]);
    assert_eq!(lab.routes().len(), 4, "{:?}", lab.routes());
    let (r, reads) = lab.reconcile_scoped(Scope::Sweep);
    let removes = r
        .changes
        .iter()
        .filter(|c| c.action == Action::Remove)
        .count();
    assert_eq!(removes, 2, "{:?}", r.changes);
    assert_eq!(lab.routes(), expected_routes(&lab, 100));
    assert!(reads.contains(&"routes proto 52".to_string()), "{reads:?}");
    assert!(!reads.contains(&"routes".to_string()), "{reads:?}");
    // Damage: a records reconcile repairs it as a sweep does; the missing route
    // makes it confirm with the filtered dump, so the strays it sees go too.
    damage(&lab);
    let (r, reads) = lab.reconcile_scoped(Scope::Records);
    let adds = r.changes.iter().filter(|c| c.action == Action::Add).count();
    assert_eq!(adds, 2, "{:?}", r.changes);
    assert_eq!(lab.routes(), expected_routes(&lab, 100));
    assert_eq!(reads, ["lookup 6", "routes proto 52"]);
}

#[test]
fn a_records_reconcile_removes_what_a_pruned_or_restood_record_left() {
    let lab = Lab::new();
    let config = Config {
        reconcile_grace_seconds: 0,
        ..lab.config.clone()
    };
    let lab = Lab { config, ..lab };
    lab.hook("start").unwrap();
    // No status file: the domain no longer runs; its entries go, found by lookup.
    let (r, reads) = lab.reconcile_scoped(Scope::Records);
    assert!(
        r.changes.iter().any(|c| c.action == Action::Prune),
        "{:?}",
        r.changes
    );
    assert!(lab.routes().is_empty(), "{:?}", lab.routes());
    assert_eq!(lab.neighbours(), 0);
    assert!(!reads.contains(&"routes".to_string()), "{reads:?}");
}

/// A record whose domain libvirt does not list is kept for the grace period, and
/// reconcile asks to run again when that period ends (`watch` sleeps until then),
/// so that its routes go even on a host where nothing else happens.
#[test]
fn reconcile_asks_to_run_again_when_a_grace_period_ends() {
    let lab = Lab::new();
    lab.hook("start").unwrap();
    let since = lab.state().record(UUID).unwrap().unwrap().since_ms;
    let r = lab.reconcile();
    assert!(
        !r.changes.iter().any(|c| c.action == Action::Prune),
        "{:?}",
        r.changes
    );
    assert!(!lab.routes().is_empty());
    assert_eq!(
        r.next_change,
        Some(since + lab.config.reconcile_grace_seconds * 1000)
    );
}

#[test]
fn reconcile_adopts_only_what_the_hook_would_accept() {
    let lab = Lab::new();
    // Running, no record (virt-l3 installed after it started), and without
    // virt-l3's nwfilter: prepare would refuse it (require_nwfilter), so
    // reconcile does not route it, and says so.
    let unfiltered = String::from_utf8(xml())
        .unwrap()
        .replace("<filterref filter='virt-l3-nic-52024576d235'/>", "");
    let text = format!(
        "<domstatus state='running' reason='booted' pid='4242'>\n{unfiltered}\n</domstatus>\n"
    );
    std::fs::write(
        lab.config.libvirt_status_dir.join(format!("{NAME}.xml")),
        text,
    )
    .unwrap();
    let r = lab.reconcile();
    let refused: Vec<_> = r
        .changes
        .iter()
        .filter(|c| c.action == Action::Refuse)
        .collect();
    assert_eq!(refused.len(), 1, "{:?}", r.changes);
    assert_eq!(refused[0].domain.as_deref(), Some(NAME));
    assert!(
        refused[0]
            .what
            .contains("does not carry virt-l3's nwfilter"),
        "{}",
        refused[0].what
    );
    assert!(!r.changes.iter().any(|c| c.action == Action::Adopt));
    assert!(lab.routes().is_empty());
    assert!(lab.state().record(UUID).unwrap().is_none());
    // With its filter, the same domain is adopted.
    lab.running("running", "booted");
    let r = lab.reconcile();
    assert!(
        r.changes.iter().any(|c| c.action == Action::Adopt),
        "{:?}",
        r.changes
    );
    assert_eq!(lab.routes(), expected_routes(&lab, 100));
}

/// libvirt removes the status file after `stopped` and before `release`
/// (qemuProcessStop). Whatever the order, a reconcile in between must not adopt
/// the stopped domain back: with the file still there when `release` runs, the
/// stopping mark stays until reconcile sees the file gone.
#[test]
fn a_stopped_domain_is_not_adopted_back_whatever_the_status_file_order() {
    let lab = Lab::new();
    let adopted = |r: &Report| r.changes.iter().any(|c| c.action == Action::Adopt);
    // libvirt's order: stopped, status file removed, release.
    lab.hook("start").unwrap();
    lab.running("paused", "migration");
    lab.hook("stopped").unwrap();
    assert!(!adopted(&lab.reconcile()));
    std::fs::remove_file(lab.config.libvirt_status_dir.join(format!("{NAME}.xml"))).unwrap();
    lab.hook("release").unwrap();
    assert!(lab.state().stopping().is_empty());
    // The status file outlives `release` (the source of a migration, paused).
    lab.hook("start").unwrap();
    lab.running("paused", "migration");
    lab.hook("stopped").unwrap();
    lab.hook("release").unwrap();
    let r = lab.reconcile();
    assert!(!adopted(&r), "{:?}", r.changes);
    assert!(lab.routes().is_empty());
    assert!(lab.state().record(UUID).unwrap().is_none());
    assert_eq!(lab.state().stopping(), vec![UUID.to_string()]);
    // The file gone, reconcile clears the mark (and adopts nothing).
    std::fs::remove_file(lab.config.libvirt_status_dir.join(format!("{NAME}.xml"))).unwrap();
    assert!(!adopted(&lab.reconcile()));
    assert!(lab.state().stopping().is_empty());
    assert!(lab.routes().is_empty());
}
