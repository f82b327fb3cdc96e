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
        self.hook_with(op, NAME, &xml())
    }

    fn hook_with(&self, op: &str, name: &str, xml: &[u8]) -> Result<(), HookError> {
        let inv = Invocation {
            domain: name.to_string(),
            op: Operation::parse(op),
            op_text: op.to_string(),
            subop: "begin".to_string(),
            extra: "-".to_string(),
        };
        let kernel = self.kernel.clone();
        run_with(&self.config, &inv, xml, move || Ok(kernel))
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
    assert_eq!(
        reads,
        ["lookup 6"],
        "one lookup of the 6 entries (the link-local neighbour included), no dump"
    );
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
    assert_eq!(reads, ["lookup 6", "routes proto 52"]);
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
    assert_eq!(reads, ["lookup 6", "routes proto 52"]);
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

/// Everything logged (at debug and above) while `f` runs.
fn logged(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buf.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_control_character_in_a_domain_name_never_reaches_the_log_raw() {
    let lab = Lab::new();
    lab.hook("start").unwrap();
    // The same domain (same UUID), renamed with a newline and an escape: its plan
    // fails, and reconnect re-applies the record, saying so in the log.
    let text = String::from_utf8(xml()).unwrap().replace(
        "<name>i-2-10-VM</name>",
        "<name>i-2-10-VM&#10;forged line&#27;[31m</name>",
    );
    let log = logged(|| {
        lab.hook_with(
            "reconnect",
            "i-2-10-VM\nforged line\u{1b}[31m",
            text.as_bytes(),
        )
        .unwrap();
    });
    assert!(
        log.contains("re-applying the recorded state instead"),
        "{log}"
    );
    assert!(log.contains(r#"i-2-10-VM\nforged line\u{1b}[31m"#), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
    assert!(!log.contains("\nforged"), "{log}");
    assert_eq!(lab.routes(), expected_routes(&lab, 100));
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
