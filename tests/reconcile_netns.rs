//! reconcile and watch against the real kernel, with a fake libvirt status directory
//! (the files libvirt writes under /run/libvirt/qemu, which is all they read).

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{fixture, stderr, within, Lab};

const DUAL: &str = "dual-stack.xml";

fn lab() -> Lab {
    lab_with("")
}

/// A lab whose config points at its own status dir, plus `extra` TOML lines.
fn lab_with(extra: &str) -> Lab {
    let lab = Lab::new(&["vnet3"]);
    std::fs::create_dir_all(lab.status_dir()).unwrap();
    lab.write_config(&format!(
        "libvirt_status_dir = {:?}\nrequire_nwfilter = false\nreconcile_grace_seconds = 0\n{extra}",
        lab.status_dir()
    ));
    lab
}

/// A lab with the dual-stack domain running (status file) and routed by its `start` hook.
fn routed_lab() -> Lab {
    let lab = lab();
    lab.set_status("i-2-10-VM", &fixture(DUAL), "running", "booted");
    let o = lab.hook("i-2-10-VM", "start", "begin", &fixture(DUAL));
    assert!(o.status.success(), "{}", stderr(&o));
    lab
}

/// The destination's hooks of an incoming live migration, then its status file.
fn migrate_in(lab: &Lab) {
    for op in ["migrate", "prepare", "start", "started"] {
        let o = lab.hook("i-2-10-VM", op, "begin", &fixture(DUAL));
        assert!(o.status.success(), "{op}: {}", stderr(&o));
    }
    lab.set_status("i-2-10-VM", &fixture(DUAL), "paused", "migration");
}

fn reconcile(lab: &Lab, args: &[&str]) -> String {
    let mut a = vec!["reconcile"];
    a.extend_from_slice(args);
    let o = lab.virt_l3(&a, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn expected_routes() -> Vec<String> {
    let mut v = vec![
        "2.57.57.30 dev cloudbr0 scope link metric 100".to_string(),
        "2001:678:3a4:100::80 dev cloudbr0 metric 100".to_string(),
        "2001:678:3a4:8000::/56 via 2001:678:3a4:100::80 dev cloudbr0 metric 100 onlink"
            .to_string(),
    ];
    v.sort();
    v
}

#[test]
fn reconcile_restores_flushed_routes_and_deleted_neighbours_exactly() {
    require_root!();
    let lab = routed_lab();
    let neighbours = lab.neighbours();
    lab.ip(&["route", "flush", "dev", "cloudbr0"]);
    lab.ip(&["-6", "route", "flush", "dev", "cloudbr0", "proto", "52"]);
    lab.ip(&["neigh", "del", "2.57.57.30", "dev", "cloudbr0"]);
    // A neighbour pointing at the wrong MAC is fixed too.
    lab.ip(&[
        "neigh",
        "replace",
        "2001:678:3a4:100::80",
        "lladdr",
        "52:54:00:66:66:66",
        "dev",
        "cloudbr0",
        "nud",
        "permanent",
    ]);

    let dry = reconcile(&lab, &["--dry-run"]);
    assert!(dry.contains("would add route 2.57.57.30/32"), "{dry}");
    assert!(lab.routes().is_empty(), "--dry-run changed the kernel");

    let out = reconcile(&lab, &["--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["changes"].as_array().unwrap().len(), 5, "{out}");
    assert_eq!(lab.routes(), expected_routes());
    assert_eq!(lab.neighbours(), neighbours);
    // Idempotent.
    assert!(reconcile(&lab, &[]).starts_with("nothing to do"));
}

#[test]
fn reconcile_removes_orphans_and_touches_nothing_else() {
    require_root!();
    let lab = routed_lab();
    // An orphan of virt-l3 (protocol 52) and entries of other daemons.
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
        "neigh",
        "add",
        "192.0.2.99",
        "lladdr",
        "52:54:00:12:34:56",
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
        "198.51.100.7/32",
        "dev",
        "cloudbr0",
        "proto",
        "static",
    ]);
    lab.ip(&[
        "route",
        "add",
        "198.51.100.8/32",
        "dev",
        "cloudbr0",
        "proto",
        "bird",
    ]);
    lab.ip(&[
        "neigh",
        "add",
        "198.51.100.7",
        "lladdr",
        "52:54:00:12:34:57",
        "dev",
        "cloudbr0",
        "nud",
        "permanent",
    ]);
    let others = |lab: &Lab| -> Vec<String> {
        lab.all_routes()
            .into_iter()
            .chain(lab.neighbours())
            .filter(|l| l.contains("198.51.100"))
            .collect()
    };
    let before = others(&lab);
    assert_eq!(before.len(), 3);
    let out = reconcile(&lab, &[]);
    assert!(out.contains("remove route 192.0.2.99/32"), "{out}");
    assert!(out.contains("remove neighbour 192.0.2.99"), "{out}");
    assert_eq!(others(&lab), before, "other daemons' entries must stay");
    assert_eq!(lab.routes(), expected_routes());

    // The domain stops without its hook running (a crash while libvirtd was down).
    std::fs::remove_file(lab.status_dir().join("i-2-10-VM.xml")).unwrap();
    let out = reconcile(&lab, &[]);
    assert!(out.contains("prune record"), "{out}");
    assert!(lab.routes().is_empty());
    assert!(lab.state_files().is_empty(), "{:?}", lab.state_files());
    assert_eq!(others(&lab), before);
}

#[test]
fn reconcile_does_not_adopt_a_running_domain_the_hook_would_refuse() {
    require_root!();
    // The dual-stack domain runs (its status file) without a record, and its
    // address 2.57.57.30 is on-link on eth0, an interface virt-l3 does not route
    // (the upstream's neighbours live there): `prepare` would refuse it.
    let lab = lab();
    lab.add_bridge("eth0");
    lab.ip(&["addr", "add", "2.57.57.1/24", "dev", "eth0"]);
    lab.set_status("i-2-10-VM", &fixture(DUAL), "running", "booted");
    let o = lab.hook("i-2-10-VM", "prepare", "begin", &fixture(DUAL));
    assert!(!o.status.success(), "the hook refuses it");
    let why = "address 2.57.57.30 is on-link on eth0 (2.57.57.0/24)";
    assert!(stderr(&o).contains(why), "{}", stderr(&o));
    for dry_run in [&["--dry-run"][..], &[]] {
        let out = reconcile(&lab, dry_run);
        let line = out
            .lines()
            .find(|l| l.contains(" refuse "))
            .unwrap_or_else(|| panic!("no refuse change: {out}"));
        assert!(
            line.contains("not adopting running domain 6f5a3b2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b")
                && line.contains(why)
                && line.ends_with("(domain i-2-10-VM)"),
            "{line}"
        );
        assert!(!out.contains(" adopt "), "{out}");
        assert!(lab.routes().is_empty(), "{:?}", lab.routes());
        assert!(lab.neighbours().is_empty(), "{:?}", lab.neighbours());
    }
    // `check`'s state item compares with the same decision: nothing is missing.
    let o = lab.virt_l3(&["check"], b"");
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("MISSING ENTRIES"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // The address leaves eth0: the same domain is adopted, as the hook would accept it.
    lab.ip(&["addr", "del", "2.57.57.1/24", "dev", "eth0"]);
    let out = reconcile(&lab, &[]);
    assert!(out.contains("did adopt"), "{out}");
    assert!(!out.contains(" refuse "), "{out}");
    assert_eq!(lab.routes(), expected_routes());
}

#[test]
fn reconcile_keeps_a_just_started_domain_within_the_grace_period() {
    require_root!();
    let lab = lab();
    lab.write_config(&format!(
        "libvirt_status_dir = {:?}\nrequire_nwfilter = false\nreconcile_grace_seconds = 60",
        lab.status_dir()
    ));
    // start hook ran, QEMU not yet running: no status file.
    assert!(lab
        .hook("i-2-10-VM", "start", "begin", &fixture(DUAL))
        .status
        .success());
    reconcile(&lab, &[]);
    assert_eq!(lab.routes(), expected_routes());
}

#[test]
fn reconcile_refuses_without_a_status_directory() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    lab.write_config("libvirt_status_dir = \"/nonexistent/qemu\"\nrequire_nwfilter = false");
    assert!(lab
        .hook("i-2-10-VM", "start", "begin", &fixture(DUAL))
        .status
        .success());
    let o = lab.virt_l3(&["reconcile"], b"");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/qemu"), "{}", stderr(&o));
    assert_eq!(
        lab.routes(),
        expected_routes(),
        "nothing removed on a guess"
    );
}

#[test]
fn reconcile_promotes_standby_routes_in_two_stages_when_the_migrated_vm_runs() {
    require_root!();
    let lab = lab_with("arrived_hold_seconds = 1");
    migrate_in(&lab);
    reconcile(&lab, &[]);
    assert!(
        lab.routes().iter().all(|r| r.contains("metric 4000")),
        "{:?}",
        lab.routes()
    );
    // The VM runs here: arrived (better than the source's leaving routes, not
    // better than a source that has not let go yet) ...
    lab.set_status("i-2-10-VM", &fixture(DUAL), "running", "migrated");
    let out = reconcile(&lab, &[]);
    assert!(out.contains("promote"), "{out}");
    assert!(
        lab.routes().iter().all(|r| r.contains("metric 1500")),
        "{:?}",
        lab.routes()
    );
    assert!(!lab.state_files().iter().any(|f| f.starts_with("incoming/")));
    assert!(
        reconcile(&lab, &[]).starts_with("nothing to do"),
        "the hold is not over yet"
    );
    // ... then, after the hold, fully active.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    reconcile(&lab, &[]);
    assert_eq!(lab.routes(), expected_routes());
}

#[test]
fn watch_promotes_an_arrived_vm_when_its_hold_ends_without_any_event() {
    require_root!();
    let lab = lab_with("arrived_hold_seconds = 1");
    migrate_in(&lab);
    let _w = lab.watch();
    std::thread::sleep(Duration::from_millis(300));
    lab.set_status("i-2-10-VM", &fixture(DUAL), "running", "migrated");
    within(Duration::from_secs(1), "arrival", || {
        lab.routes().iter().all(|r| r.contains("metric 1500")) && lab.routes().len() == 3
    });
    within(Duration::from_secs(3), "promotion after the hold", || {
        lab.routes() == expected_routes()
    });
}

#[test]
fn reconcile_demotes_the_source_while_it_hands_over() {
    require_root!();
    let lab = routed_lab();
    lab.set_status("i-2-10-VM", &fixture(DUAL), "paused", "migration");
    reconcile(&lab, &[]);
    assert!(
        lab.routes().iter().all(|r| r.contains("metric 2000")),
        "{:?}",
        lab.routes()
    );
    // The migration failed: the source resumes and takes its routes back.
    lab.set_status("i-2-10-VM", &fixture(DUAL), "running", "migration");
    reconcile(&lab, &[]);
    assert_eq!(lab.routes(), expected_routes());
}

#[test]
fn watch_heals_within_a_second_and_stops_on_sigterm() {
    require_root!();
    let lab = routed_lab();
    let neighbours = lab.neighbours();
    let mut w = lab.watch();
    std::thread::sleep(Duration::from_millis(300)); // subscribed

    lab.ip(&["route", "flush", "dev", "cloudbr0"]);
    within(Duration::from_secs(1), "route restore", || {
        lab.routes() == expected_routes()
    });

    lab.ip(&["neigh", "del", "2001:678:3a4:100::80", "dev", "cloudbr0"]);
    within(Duration::from_secs(1), "neighbour restore", || {
        lab.neighbours() == neighbours
    });

    // The bridge flaps: the kernel drops the IPv4 routes and neighbours.
    lab.ip(&["link", "set", "cloudbr0", "down"]);
    lab.ip(&["link", "set", "cloudbr0", "up"]);
    within(Duration::from_secs(1), "re-apply after bridge flap", || {
        lab.routes() == expected_routes() && lab.neighbours() == neighbours
    });

    // The domain vanishes without its hook: cleaned up.
    std::fs::remove_file(lab.status_dir().join("i-2-10-VM.xml")).unwrap();
    within(
        Duration::from_secs(1),
        "cleanup of a vanished domain",
        || lab.routes().is_empty() && lab.neighbours().is_empty(),
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = w.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "watch ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "watch exited with {status}");
}

// virt-l3's nftables tables (docs/FIREWALL.md) through the hook, reconcile and watch.

/// The `accepted_ports` of the lab's bridge table (empty without the table).
fn accepted(lab: &Lab) -> Vec<String> {
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns,
            "nft",
            "list",
            "set",
            "bridge",
            "virt_l3",
            "accepted_ports",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut v: Vec<String> = text
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn nft(lab: &Lab, args: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ip netns exec {} nft {args}", lab.ns))
        .status()
        .unwrap()
        .success()
}

/// Every table present, none flushed: the `firewall install` of the lab is a no-op.
fn tables_current(lab: &Lab) -> bool {
    let o = lab.virt_l3(&["firewall", "install"], b"");
    o.status.success() && String::from_utf8_lossy(&o.stdout).contains("current")
}

#[test]
fn hook_steps_accept_and_forget_the_taps_netns() {
    require_root!();
    let lab = lab();
    lab.set_status("i-2-10-VM", &fixture(DUAL), "running", "booted");
    assert!(accepted(&lab).is_empty());
    let o = lab.hook("i-2-10-VM", "start", "begin", &fixture(DUAL));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        accepted(&lab),
        ["vnet3"],
        "start installs the tables and accepts its tap"
    );
    assert!(tables_current(&lab));
    // started and reconnect restore a flushed table and the tap.
    for op in ["started", "reconnect"] {
        assert!(nft(&lab, "delete table bridge virt_l3"));
        let o = lab.hook("i-2-10-VM", op, "begin", &fixture(DUAL));
        assert!(o.status.success(), "{op}: {}", stderr(&o));
        assert_eq!(accepted(&lab), ["vnet3"], "{op}");
    }
    for op in ["stopped", "release"] {
        let o = lab.hook("i-2-10-VM", op, "end", &fixture(DUAL));
        assert!(o.status.success(), "{op}: {}", stderr(&o));
        assert!(accepted(&lab).is_empty(), "{op} forgets the tap");
    }
    assert!(tables_current(&lab), "the tables stay");
}

#[test]
fn start_fails_closed_when_the_tables_cannot_be_installed_netns() {
    require_root!();
    let lab = lab();
    let o = lab.virt_l3_env(
        &["hook", "i-2-10-VM", "start", "begin", "-"],
        &fixture(DUAL),
        &[("VIRT_L3_NFT", "/bin/false")],
    );
    assert!(!o.status.success(), "the start is refused");
    let err = stderr(&o);
    // One line, after the warning that the bridge MAC was pinned.
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert!(
        lines.len() == 1 || (lines.len() == 2 && lines[0].contains("MAC pinned")),
        "{err}"
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("virt-l3 cannot route domain i-2-10-VM: ")
            && last.contains("all rolled back")
            && last.contains("nftables"),
        "{err}"
    );
    assert!(lab.routes().is_empty(), "nothing installed");
    assert!(lab.state_files().iter().all(|f| !f.starts_with("domains/")));
    // Disabled: no tables, the start proceeds.
    lab.write_config(&format!(
        "libvirt_status_dir = {:?}\nrequire_nwfilter = false\n[firewall]\nenabled = false\n",
        lab.status_dir()
    ));
    let o = lab.hook("i-2-10-VM", "start", "begin", &fixture(DUAL));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!nft(&lab, "list table inet virt_l3"));
}

#[test]
fn reconcile_restores_the_tables_and_the_accepted_taps_netns() {
    require_root!();
    let lab = routed_lab();
    assert_eq!(accepted(&lab), ["vnet3"]);
    assert!(nft(&lab, "flush table inet virt_l3"));
    assert!(nft(&lab, "delete table bridge virt_l3"));
    assert!(nft(&lab, "add table bridge virt_l3"));
    let out = reconcile(&lab, &[]);
    assert!(
        out.contains("did install virt-l3's nftables tables"),
        "{out}"
    );
    assert!(
        out.contains("did accept bridge port vnet3 (domain i-2-10-VM)"),
        "{out}"
    );
    assert!(tables_current(&lab));
    assert_eq!(accepted(&lab), ["vnet3"]);
    // A port accepted for no running domain is forgotten.
    assert!(nft(
        &lab,
        "add element bridge virt_l3 accepted_ports { vnet77 }"
    ));
    let out = reconcile(&lab, &[]);
    assert!(out.contains("did forget bridge port vnet77"), "{out}");
    assert_eq!(accepted(&lab), ["vnet3"]);
    assert!(reconcile(&lab, &[]).starts_with("nothing to do"));
}

#[test]
fn watch_restores_deleted_tables_and_blocks_new_ports_netns() {
    require_root!();
    let lab = routed_lab();
    let _w = lab.watch();
    std::thread::sleep(Duration::from_millis(300)); // subscribed
    assert!(nft(&lab, "delete table bridge virt_l3"));
    within(Duration::from_secs(1), "bridge table restored", || {
        accepted(&lab) == ["vnet3"]
    });
    assert!(nft(&lab, "flush table inet virt_l3"));
    within(
        Duration::from_secs(1),
        "flushed inet table restored",
        || {
            let o = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &lab.ns,
                    "nft",
                    "list",
                    "chain",
                    "inet",
                    "virt_l3",
                    "guest_to_host",
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).contains("guest to host")
        },
    );
    // Both at once (issue 14): the inet table flushed and the bridge table deleted.
    assert!(nft(&lab, "flush table inet virt_l3"));
    assert!(nft(&lab, "delete table bridge virt_l3"));
    within(Duration::from_secs(1), "both tables restored", || {
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns,
                "nft",
                "list",
                "chain",
                "inet",
                "virt_l3",
                "guest_to_host",
            ])
            .output()
            .unwrap();
        accepted(&lab) == ["vnet3"] && String::from_utf8_lossy(&o.stdout).contains("guest to host")
    });
    // Restored whole: `firewall install` finds the tables current (checked after the fact,
    // since it would itself install them).
    assert!(tables_current(&lab));
    // A port nobody accepted joins the routed bridge: isolated, never accepted.
    lab.add_tap("vnet9", "cloudbr0");
    within(Duration::from_secs(1), "new port isolated", || {
        lab.isolated("vnet9")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(accepted(&lab), ["vnet3"], "watch accepts nothing new");
    // A port of a bridge virt-l3 does not route joins `foreign_ports` (without `meta ibrname`).
    lab.add_bridge("br-other");
    lab.add_tap("vnet10", "br-other");
    let meta = nft(&lab, "list set bridge virt_l3 routed_bridges");
    if !meta {
        within(Duration::from_secs(1), "foreign port listed", || {
            let o = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &lab.ns,
                    "nft",
                    "list",
                    "set",
                    "bridge",
                    "virt_l3",
                    "foreign_ports",
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).contains("\"vnet10\"")
        });
    }
    assert_eq!(accepted(&lab), ["vnet3"]);
}
