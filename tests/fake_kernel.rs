//! The hook, routing and reconcile against the fake kernel
//! (`virt_l3::kernel::fake`): no root, no network namespace.
#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

use std::path::PathBuf;

use virt_l3::config::Config;
use virt_l3::hook::{run_with, HookError, Invocation, Operation};
use virt_l3::kernel::fake::{FakeKernel, Fault};
use virt_l3::kernel::{KernelNeighbour, KernelRoute};
use virt_l3::reconcile::{reconcile, reconcile_scoped, Action, Report, Scope};
use virt_l3::state::StateDir;

const NAME: &str = "i-2-10-VM";
const UUID: &str = "6f5a3b2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b";
const PROTO: u8 = 52;

fn xml() -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/domains/dual-stack.xml"))
        .unwrap()
}

/// A host with cloudbr0 (its MAC already pinned, so that changes count from the
/// first entry) and the domain's tap vnet3, a state dir and a libvirt status dir.
struct Lab {
    _tmp: tempfile::TempDir,
    config: Config,
    kernel: FakeKernel,
}

impl Lab {
    fn new() -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config {
            state_dir: tmp.path().join("state"),
            libvirt_status_dir: tmp.path().join("status"),
            ..Config::default()
        };
        std::fs::create_dir_all(&config.libvirt_status_dir).unwrap();
        let kernel = FakeKernel::new();
        kernel.add_bridge("cloudbr0");
        kernel.with(|m| m.links.get_mut("cloudbr0").unwrap().mac_pinned = true);
        kernel.add_port("vnet3");
        Lab {
            _tmp: tmp,
            config,
            kernel,
        }
    }

    fn hook(&self, op: &str) -> Result<(), HookError> {
        let inv = Invocation {
            domain: NAME.to_string(),
            op: Operation::parse(op),
            op_text: op.to_string(),
            subop: "begin".to_string(),
            extra: "-".to_string(),
        };
        let kernel = self.kernel.clone();
        run_with(&self.config, &inv, &xml(), move || Ok(kernel))
    }

    fn state(&self) -> StateDir {
        StateDir::new(&self.config.state_dir)
    }

    fn routes(&self) -> Vec<String> {
        self.kernel.route_lines(PROTO)
    }

    fn neighbours(&self) -> usize {
        self.kernel
            .snapshot()
            .neighbours
            .iter()
            .filter(|n| n.protocol == PROTO)
            .count()
    }

    /// libvirt's status file of the domain, in this run state.
    fn running(&self, state: &str, reason: &str) {
        let text = format!(
            "<domstatus state='{state}' reason='{reason}' pid='4242'>\n{}\n</domstatus>\n",
            String::from_utf8_lossy(&xml())
        );
        std::fs::write(
            self.config.libvirt_status_dir.join(format!("{NAME}.xml")),
            text,
        )
        .unwrap();
    }

    fn reconcile(&self) -> Report {
        let mut kernel = self.kernel.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(reconcile(&mut kernel, &self.config, false))
            .unwrap()
    }

    /// A reconcile reading the kernel as `scope` says; the reads it made.
    fn reconcile_scoped(&self, scope: Scope) -> (Report, Vec<String>) {
        let mut kernel = self.kernel.clone();
        self.kernel.with(|m| m.reads.clear());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let r = rt
            .block_on(reconcile_scoped(&mut kernel, &self.config, false, scope))
            .unwrap();
        (r, self.kernel.with(|m| std::mem::take(&mut m.reads)))
    }

    /// `virt-l3 status`: (entry, present) of every recorded entry; the reads made.
    fn status(&self) -> (Vec<(String, bool)>, Vec<String>) {
        let mut kernel = self.kernel.clone();
        self.kernel.with(|m| m.reads.clear());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let s = rt
            .block_on(virt_l3::status::status(
                &mut kernel,
                &self.state(),
                &self.config.bridges,
            ))
            .unwrap();
        let entries = s
            .iter()
            .flat_map(|d| d.entries.iter().map(|e| (e.entry.clone(), e.present)))
            .collect();
        (entries, self.kernel.with(|m| std::mem::take(&mut m.reads)))
    }
}

fn ifindex(lab: &Lab) -> u32 {
    lab.kernel.index_of("cloudbr0").unwrap()
}

fn expected_routes(lab: &Lab, metric: u32) -> Vec<String> {
    let i = ifindex(lab);
    let mut v = vec![
        format!("2.57.57.30/32 dev {i} metric {metric}"),
        format!("2001:678:3a4:100::80/128 dev {i} metric {metric}"),
        format!("2001:678:3a4:8000::/56 via 2001:678:3a4:100::80 dev {i} metric {metric}"),
    ];
    v.sort();
    v
}

#[test]
fn start_installs_records_isolates_and_turns_redirects_off() {
    let lab = Lab::new();
    lab.hook("prepare").unwrap();
    assert!(lab.routes().is_empty(), "prepare changes nothing");
    lab.hook("start").unwrap();
    assert_eq!(lab.routes(), expected_routes(&lab, 100));
    assert_eq!(lab.neighbours(), 2);
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
    // The third of the five entries fails.
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
        err.contains("1 of 5 kernel changes for domain i-2-10-VM failed, all rolled back"),
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
        4,
        "{log:?}"
    );
    assert_eq!(
        log.iter().filter(|l| l.starts_with("remove ")).count(),
        4,
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
        err.contains("1 of 5 kernel changes for domain i-2-10-VM failed: "),
        "{err}"
    );
    assert!(!err.contains("rolled back"), "{err}");
    assert_eq!(lab.routes(), expected_routes(&lab, 100));
    assert_eq!(lab.neighbours(), 1);
    assert!(lab.state().record(UUID).unwrap().is_some());
    // reconnect never fails: a failure would kill the running VM.
    lab.hook("reconnect").unwrap();
    assert!(lab.state().record(UUID).unwrap().is_some());
    lab.kernel.clear_faults();
    lab.hook("reconnect").unwrap();
    assert_eq!(lab.neighbours(), 2);
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
        3,
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

/// Damages the routed domain's entries: one route missing, one neighbour with
/// another MAC; a protocol-52 route and neighbour nobody wants (strays).
fn damage(lab: &Lab) {
    let i = ifindex(lab);
    lab.kernel.with(|m| {
        m.routes
            .retain(|r| r.destination.to_string() != "2.57.57.30/32");
        m.neighbours[0].mac = Some(virt_l3::address::Mac([0x52, 0, 0, 0, 0, 9]));
        m.routes.push(KernelRoute {
            destination: "192.0.2.99/32".parse().unwrap(),
            ifindex: Some(i),
            gateway: None,
            metric: 100,
            protocol: PROTO,
            table: 254,
        });
        m.neighbours.push(KernelNeighbour {
            address: "192.0.2.99".parse().unwrap(),
            ifindex: i,
            mac: None,
            permanent: true,
            protocol: PROTO,
        });
    });
}

#[test]
fn status_looks_up_the_recorded_entries_and_dumps_nothing_when_healthy() {
    let lab = Lab::new();
    lab.hook("start").unwrap();
    let (entries, reads) = lab.status();
    assert!(entries.iter().all(|(_, p)| *p), "{entries:?}");
    assert_eq!(reads, ["lookup 5"], "one lookup of the 5 entries, no dump");
}

#[test]
fn status_finds_missing_and_differing_entries_as_a_full_read_does() {
    let lab = Lab::new();
    lab.hook("start").unwrap();
    damage(&lab);
    let (entries, reads) = lab.status();
    let absent: Vec<&str> = entries
        .iter()
        .filter(|(_, p)| !p)
        .map(|(e, _)| e.as_str())
        .collect();
    assert_eq!(absent.len(), 2, "{entries:?}");
    assert!(
        absent.iter().any(|e| e.contains("2.57.57.30")),
        "{absent:?}"
    );
    assert!(
        absent.iter().any(|e| e.starts_with("neighbour")),
        "{absent:?}"
    );
    // A route not answered as itself is confirmed by the filtered dump.
    assert_eq!(reads, ["lookup 5", "routes proto 52"]);
}

#[test]
fn a_route_hidden_behind_a_better_one_is_still_found() {
    // The kernel's lookup answers the lowest metric first: a foreign route of
    // the same destination with a lower metric hides virt-l3's, which is there.
    let lab = Lab::new();
    lab.hook("start").unwrap();
    let i = ifindex(&lab);
    lab.kernel.with(|m| {
        m.routes.push(KernelRoute {
            destination: "2.57.57.30/32".parse().unwrap(),
            ifindex: Some(i),
            gateway: None,
            metric: 5,
            protocol: 186,
            table: 254,
        })
    });
    let (entries, reads) = lab.status();
    assert!(entries.iter().all(|(_, p)| *p), "{entries:?}");
    assert_eq!(reads, ["lookup 5", "routes proto 52"]);
}

#[test]
fn a_records_reconcile_repairs_like_a_sweep_but_leaves_strays_to_it() {
    let lab = Lab::new();
    lab.hook("start").unwrap();
    lab.running("running", "booted");
    // Healthy: the records' entries looked up, no dump at all.
    let (r, reads) = lab.reconcile_scoped(Scope::Records);
    assert!(r.changes.is_empty(), "{:?}", r.changes);
    assert_eq!(reads, ["lookup 5"]);
    // Strays only: a records reconcile does not see them (its entries all answer
    // as themselves); the sweep removes them, reading a filtered dump, never the
    // whole table.
    damage(&lab);
    lab.hook("started").unwrap();
    let (r, reads) = lab.reconcile_scoped(Scope::Records);
    assert!(r.changes.is_empty(), "{:?}", r.changes);
    assert_eq!(reads, ["lookup 5"]);
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
    assert_eq!(reads, ["lookup 5", "routes proto 52"]);
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
