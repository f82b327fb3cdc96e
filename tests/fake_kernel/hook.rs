//! The hook's steps: start, rollback, started and reconnect, stopped and release,
//! prepare's refusals, the firewall's accepted ports.

use super::*;

#[test]
fn start_installs_records_isolates_and_turns_redirects_off() {
    let lab = Lab::new();
    lab.hook("prepare").unwrap();
    assert!(lab.routes().is_empty(), "prepare changes nothing");
    lab.hook("start").unwrap();
    assert_eq!(lab.routes(), expected_routes(&lab, 100));
    // Its two addresses and its pinned (EUI-64) link-local.
    assert_eq!(lab.neighbours(), 3);
    let rec = lab.state().record(UUID).unwrap().unwrap();
    assert_eq!((rec.metric, rec.standby, rec.protocol), (100, false, PROTO));
    let m = lab.kernel.snapshot();
    assert_eq!(m.links["vnet3"].isolated, Some(true));
    assert_eq!(m.send_redirects.get("all"), Some(&false));
    assert_eq!(m.send_redirects.get("cloudbr0"), Some(&false));
    // started re-applies: same entries, nothing else.
    lab.hook("started").unwrap();
    assert_eq!(lab.routes(), expected_routes(&lab, 100));
}

#[test]
fn a_half_applied_start_is_rolled_back() {
    let lab = Lab::new();
    // The third of the six entries fails.
    lab.kernel.inject(Fault::Nth {
        n: 3,
        errno: libc::ENETUNREACH,
    });
    let err = lab.hook("start").unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("virt-l3 cannot route domain {NAME}: ")),
        "{err}"
    );
    assert!(
        err.contains("1 of 6 kernel changes for domain i-2-10-VM failed, all rolled back"),
        "{err}"
    );
    assert!(err.contains("Network is unreachable"), "{err}");
    assert!(lab.routes().is_empty(), "{:?}", lab.routes());
    assert_eq!(lab.neighbours(), 0);
    assert!(lab.state().record(UUID).unwrap().is_none());
    // What went in was taken out again, nothing else.
    let log = lab.kernel.snapshot().log;
    assert_eq!(
        log.iter().filter(|l| l.starts_with("add ")).count(),
        5,
        "{log:?}"
    );
    assert_eq!(
        log.iter().filter(|l| l.starts_with("remove ")).count(),
        5,
        "{log:?}"
    );
    // Once the kernel takes it, the start goes through.
    lab.kernel.clear_faults();
    lab.hook("start").unwrap();
    assert_eq!(lab.routes(), expected_routes(&lab, 100));
}

#[test]
fn started_and_reconnect_keep_what_worked() {
    let lab = Lab::new();
    lab.kernel.inject(Fault::Matching {
        text: "add neighbour 2.57.57.30".to_string(),
        errno: libc::EINVAL,
    });
    // started fails (libvirt aborts) but keeps the record and what went in.
    let err = lab.hook("started").unwrap_err().to_string();
    assert!(
        err.contains("1 of 6 kernel changes for domain i-2-10-VM failed: "),
        "{err}"
    );
    assert!(!err.contains("rolled back"), "{err}");
    assert_eq!(lab.routes(), expected_routes(&lab, 100));
    // The IPv6 address and the pinned link-local went in.
    assert_eq!(lab.neighbours(), 2);
    assert!(lab.state().record(UUID).unwrap().is_some());
    // reconnect never fails: a failure would kill the running VM.
    lab.hook("reconnect").unwrap();
    assert!(lab.state().record(UUID).unwrap().is_some());
    lab.kernel.clear_faults();
    lab.hook("reconnect").unwrap();
    assert_eq!(lab.neighbours(), 3);
}

#[test]
fn stopped_and_release_remove_by_the_record() {
    let lab = Lab::new();
    lab.hook("start").unwrap();
    // Another protocol's route at the same place stays.
    lab.kernel.with(|m| {
        m.routes.push(KernelRoute {
            destination: "192.0.2.0/24".parse().unwrap(),
            ifindex: Some(2),
            gateway: None,
            metric: 20,
            protocol: 186,
            table: 254,
        })
    });
    lab.hook("stopped").unwrap();
    assert!(lab.routes().is_empty());
    assert_eq!(lab.neighbours(), 0);
    assert!(lab.state().record(UUID).unwrap().is_none());
    assert_eq!(lab.state().stopping(), vec![UUID.to_string()]);
    assert_eq!(lab.kernel.route_lines(186).len(), 1);
    lab.hook("release").unwrap();
    assert!(lab.state().stopping().is_empty());
    // A removal the kernel refuses never fails the hook, and keeps the record.
    lab.hook("start").unwrap();
    lab.kernel.inject(Fault::Matching {
        text: "remove route 2.57.57.30".to_string(),
        errno: libc::EPERM,
    });
    lab.hook("stopped").unwrap();
    assert!(lab.state().record(UUID).unwrap().is_some());
    assert_eq!(lab.routes().len(), 1);
}

#[test]
fn prepare_refuses_what_this_host_cannot_route() {
    let lab = Lab::new();
    lab.kernel.remove_link("cloudbr0");
    let err = lab.hook("prepare").unwrap_err().to_string();
    assert!(
        err.contains("bridge cloudbr0 does not exist on this host"),
        "{err}"
    );
    let err = lab.hook("start").unwrap_err().to_string();
    assert!(
        err.contains("bridge cloudbr0 does not exist on this host"),
        "{err}"
    );
    assert!(
        !lab.config.state_dir.exists(),
        "a refused start creates no state directory"
    );
    let lab = Lab::new();
    lab.kernel.with(|m| m.has_net_admin = false);
    let err = lab.hook("prepare").unwrap_err().to_string();
    assert!(err.contains("without CAP_NET_ADMIN"), "{err}");
    // The host owning an address of the domain.
    let lab = Lab::new();
    lab.kernel
        .with(|m| m.host_addresses.push("2.57.57.30".parse().unwrap()));
    assert!(lab.hook("prepare").is_err());
    assert!(lab.hook("restore").is_err());
    assert!(lab.routes().is_empty());
}

/// virt-l3's nftables tables: `start` ensures them and accepts the tap, `stopped`
/// forgets it; a firewall failure rolls the start back (fail closed); with the
/// firewall disabled nothing is asked of it.
#[test]
fn start_accepts_the_tap_and_stopped_forgets_it() {
    let lab = Lab::new();
    lab.hook("start").unwrap();
    let m = lab.kernel.snapshot();
    assert!(m.firewall);
    assert_eq!(m.firewall_installs, 1);
    assert_eq!(m.accepted_ports.iter().collect::<Vec<_>>(), ["vnet3"]);
    lab.hook("started").unwrap();
    assert_eq!(
        lab.kernel.snapshot().firewall_installs,
        1,
        "ensured, not reinstalled"
    );
    lab.hook("stopped").unwrap();
    assert!(lab.kernel.snapshot().accepted_ports.is_empty());

    let lab = Lab::new();
    lab.kernel.with(|m| {
        m.faults.push(Fault::Matching {
            text: "install virt-l3's nftables tables".into(),
            errno: libc::EPERM,
        })
    });
    let e = lab.hook("start").unwrap_err().to_string();
    assert!(
        e.contains("all rolled back") && e.contains("nftables"),
        "{e}"
    );
    assert!(lab.routes().is_empty());
    assert!(lab.state().records().unwrap().is_empty());

    let mut lab = Lab::new();
    lab.config.firewall.enabled = false;
    lab.hook("start").unwrap();
    let m = lab.kernel.snapshot();
    assert!(!m.firewall && m.accepted_ports.is_empty());
}

#[test]
fn started_after_start_changes_nothing_in_the_kernel() {
    // The kernel replaces an identical IPv6 route (and tells BGP daemons) where it
    // leaves IPv4 alone: a re-apply of an unchanged record must install nothing.
    let lab = Lab::new();
    lab.hook("migrate").unwrap();
    lab.hook("start").unwrap();
    let before = lab.kernel.snapshot().log.len();
    lab.hook("started").unwrap();
    let log = lab.kernel.snapshot().log;
    assert_eq!(log.len(), before, "{:?}", &log[before..]);
    assert_eq!(
        lab.routes(),
        expected_routes(&lab, lab.config.standby_metric)
    );
    // What is missing still goes in.
    lab.kernel
        .with(|m| m.routes.retain(|r| !r.destination.addr().is_ipv6()));
    lab.hook("started").unwrap();
    assert_eq!(
        lab.routes(),
        expected_routes(&lab, lab.config.standby_metric)
    );
}
