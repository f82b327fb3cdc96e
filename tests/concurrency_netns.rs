//! Many hooks at once, as libvirt runs them: 50 domains (dual-stack, some with
//! two or three NICs, some with routed prefixes, two pairs sharing addresses)
//! started and stopped in random interleavings, while `reconcile` runs again and
//! again; then `reconnect` for every running domain at once, as after a libvirtd
//! restart. After every round the kernel and the state directory must hold
//! exactly what the running domains should have. See docs/CONCURRENCY.md.
//!
//! Tunable: `VIRT_L3_CONCURRENCY_ROUNDS` (default 8), `VIRT_L3_CONCURRENCY_SEED`
//! (default: from the clock; printed, and named in every failure).

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
mod common;

use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use common::{env_number, seed_from_env, stderr, Lab, Rng, TestDomain};

const DOMAINS: usize = 50;
/// Domains 48 and 49 reuse the addresses of domains 0 and 1: of each pair, at
/// most one runs, and a refused start of either is expected.
const CONFLICTS: [(usize, usize); 2] = [(0, 48), (1, 49)];

fn domains() -> Vec<TestDomain> {
    let mut v: Vec<TestDomain> = (0..DOMAINS - CONFLICTS.len())
        .map(|i| TestDomain::generated("cc", i))
        .collect();
    for (a, b) in CONFLICTS {
        let c = TestDomain::conflicting("cc", b, &v[a]);
        v.push(c);
    }
    v
}

fn may_conflict(i: usize) -> bool {
    CONFLICTS.iter().any(|&(a, b)| a == i || b == i)
}

fn lab() -> Lab {
    let lab = Lab::new(&[]);
    std::fs::create_dir_all(lab.status_dir()).unwrap();
    // The default reconcile grace period (30 s) protects a domain between its
    // `start` hook and libvirt's first status file, as in production.
    lab.write_config(&format!(
        "libvirt_status_dir = {:?}\nrequire_nwfilter = false\n",
        lab.status_dir()
    ));
    lab
}

static HOOK_RUNS: AtomicUsize = AtomicUsize::new(0);
static ADOPTIONS: AtomicUsize = AtomicUsize::new(0);

fn hook(lab: &Lab, d: &TestDomain, op: &str, subop: &str, extra: &str, xml: &[u8]) -> Output {
    HOOK_RUNS.fetch_add(1, Ordering::SeqCst);
    let o = lab.virt_l3(&["hook", &d.name, op, subop, extra], xml);
    assert!(
        o.stdout.is_empty(),
        "{} {op}: the hook printed on stdout",
        d.name
    );
    // stopped, release and reconnect exit 0 whatever happens: their log must be clean.
    assert!(
        !stderr(&o).contains("ERROR"),
        "{} {op} logged an error: {}",
        d.name,
        stderr(&o)
    );
    o
}

/// libvirt's start: prepare, taps, start, status file (paused, then running),
/// started. A failure anywhere runs stopped and release (libvirt's cleanup).
/// Returns the failing step's stderr when the start was refused.
fn start(lab: &Lab, d: &TestDomain, xml: &[u8]) -> Result<(), String> {
    let o = hook(lab, d, "prepare", "begin", "-", xml);
    if !o.status.success() {
        failed_start(lab, d, xml);
        return Err(format!("prepare: {}", stderr(&o)));
    }
    lab.create_taps(d);
    let o = hook(lab, d, "start", "begin", "-", xml);
    if !o.status.success() {
        failed_start(lab, d, xml);
        return Err(format!("start: {}", stderr(&o)));
    }
    // libvirt writes the early status right after spawning QEMU, then "running".
    lab.set_status(&d.name, xml, "paused", "starting up");
    lab.set_status(&d.name, xml, "running", "booted");
    let o = hook(lab, d, "started", "begin", "-", xml);
    if !o.status.success() {
        failed_start(lab, d, xml);
        return Err(format!("started: {}", stderr(&o)));
    }
    Ok(())
}

fn failed_start(lab: &Lab, d: &TestDomain, xml: &[u8]) {
    stop_as(lab, d, xml, "failed");
}

/// libvirt's stop: stopped, taps deleted, status file removed, release.
fn stop(lab: &Lab, d: &TestDomain, xml: &[u8]) {
    stop_as(lab, d, xml, "destroyed");
}

fn stop_as(lab: &Lab, d: &TestDomain, xml: &[u8], reason: &str) {
    let o = hook(lab, d, "stopped", "end", "-", xml);
    assert!(o.status.success(), "{} stopped: {}", d.name, stderr(&o));
    lab.delete_taps(d);
    lab.clear_status(&d.name);
    let o = hook(lab, d, "release", "end", reason, xml);
    assert!(o.status.success(), "{} release: {}", d.name, stderr(&o));
}

/// Sets `done` when dropped, so the reconcile loop ends even when a worker panics
/// (a scope waits for every thread: a loop left running would hang the test).
struct Done<'a>(&'a AtomicBool);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs `reconcile` until `done`; every run must succeed, or fail only because
/// a tap vanished under it (libvirt deletes taps after `stopped`, without the lock).
fn reconcile_loop(lab: &Lab, done: &AtomicBool, runs: &AtomicUsize, seed: u64) {
    while !done.load(Ordering::SeqCst) {
        let o = lab.virt_l3(&["reconcile", "--json"], b"");
        let out = String::from_utf8_lossy(&o.stdout);
        let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!(
                "seed {seed}: reconcile printed no report ({e}): {out} {}",
                stderr(&o)
            )
        });
        let errors = report["errors"].as_array().cloned().unwrap_or_default();
        let benign = errors.iter().all(|e| {
            e.as_str().is_some_and(|s| {
                s.starts_with("interface cc") && s.ends_with("does not exist on this host")
            })
        });
        assert!(
            benign && (o.status.success() || !errors.is_empty()),
            "seed {seed}: reconcile failed: {out} {}",
            stderr(&o)
        );
        // Between a domain's `stopped` and libvirt removing its status file, the
        // domain must not be adopted again (every running domain has a record here).
        let adopted = report["changes"]
            .as_array()
            .map(|c| c.iter().filter(|c| c["action"] == "adopt").count())
            .unwrap_or(0);
        assert_eq!(
            adopted, 0,
            "seed {seed}: reconcile adopted a domain whose stopped hook had run: {out}"
        );
        ADOPTIONS.fetch_add(adopted, Ordering::SeqCst);
        runs.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn fifty_domains_started_stopped_reconnected_and_reconciled_concurrently_end_exact() {
    require_root!();
    let seed = seed_from_env("VIRT_L3_CONCURRENCY_SEED");
    let rounds = env_number("VIRT_L3_CONCURRENCY_ROUNDS", 8);
    eprintln!(
        "concurrency: seed {seed} (VIRT_L3_CONCURRENCY_SEED={seed} replays), {rounds} rounds"
    );
    let owned = lab();
    let lab = &owned;
    let doms = domains();
    let xmls: Vec<Vec<u8>> = doms.iter().map(|d| d.xml()).collect();
    let running: Vec<AtomicBool> = doms.iter().map(|_| AtomicBool::new(false)).collect();
    let t0 = Instant::now();
    let (mut reconciles, mut refused) = (0usize, 0usize);
    for round in 0..rounds {
        let mut rng = Rng::new(seed ^ (round + 1).wrapping_mul(0x5851_F42D_4C95_7F2D));
        // Phase 1: starts and stops of every domain, interleaved at random, with reconcile running.
        let plans: Vec<(u64, Vec<u64>)> = doms
            .iter()
            .map(|_| {
                let toggles = rng.below(4);
                (rng.next(), (0..toggles).map(|_| rng.below(40)).collect())
            })
            .collect();
        let done = AtomicBool::new(false);
        let runs = AtomicUsize::new(0);
        let refusals: Mutex<Vec<String>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            s.spawn(|| reconcile_loop(lab, &done, &runs, seed));
            let _done = Done(&done);
            let workers: Vec<_> = doms
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let (xml, run, plan) = (&xmls[i], &running[i], &plans[i]);
                    let refusals = &refusals;
                    s.spawn(move || {
                        for pause in &plan.1 {
                            std::thread::sleep(Duration::from_millis(*pause));
                            if run.load(Ordering::SeqCst) {
                                stop(lab, d, xml);
                                run.store(false, Ordering::SeqCst);
                            } else {
                                match start(lab, d, xml) {
                                    Ok(()) => run.store(true, Ordering::SeqCst),
                                    Err(e) => {
                                        assert!(
                                            may_conflict(i)
                                                && e.contains("already owned by domain"),
                                            "seed {seed} round {round}: {} refused: {e}",
                                            d.name
                                        );
                                        refusals.lock().unwrap().push(d.name.clone());
                                    }
                                }
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
        });
        reconciles += runs.load(Ordering::SeqCst);
        refused += refusals.lock().unwrap().len();
        let now: Vec<&TestDomain> = doms
            .iter()
            .zip(&running)
            .filter(|(_, r)| r.load(Ordering::SeqCst))
            .map(|(d, _)| d)
            .collect();
        if let Err(e) = lab.check_exact(&now, &doms) {
            panic!("seed {seed} round {round}, after starts and stops: {e}");
        }

        // Phase 2: libvirtd restarts. Some entries went missing meanwhile; every
        // running domain's `reconnect` runs at once, with reconcile running too.
        let routes = lab.routes();
        for r in routes.iter().filter(|_| rng.below(4) == 0) {
            let dest = r.split_whitespace().next().unwrap();
            let fam = if dest.contains(':') { "-6" } else { "-4" };
            lab.ip(&[fam, "route", "del", dest, "dev", "cloudbr0", "proto", "52"]);
        }
        for n in lab.neighbours().iter().filter(|_| rng.below(4) == 0) {
            let addr = n.split_whitespace().next().unwrap();
            lab.ip(&["neigh", "del", addr, "dev", "cloudbr0"]);
        }
        let done = AtomicBool::new(false);
        let runs = AtomicUsize::new(0);
        let barrier = Barrier::new(now.len());
        std::thread::scope(|s| {
            s.spawn(|| reconcile_loop(lab, &done, &runs, seed));
            let _done = Done(&done);
            let workers: Vec<_> = now
                .iter()
                .map(|d| {
                    let xml = d.xml();
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        let o = hook(lab, d, "reconnect", "begin", "-", &xml);
                        assert!(
                            o.status.success(),
                            "seed {seed}: {} reconnect: {}",
                            d.name,
                            stderr(&o)
                        );
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
        });
        reconciles += runs.load(Ordering::SeqCst);
        if let Err(e) = lab.check_exact(&now, &doms) {
            panic!("seed {seed} round {round}, after reconnect: {e}");
        }
        // Nothing left for reconcile to do.
        let o = lab.virt_l3(&["reconcile", "--json"], b"");
        assert!(o.status.success(), "seed {seed}: {}", stderr(&o));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            report["changes"].as_array().map(|a| a.len()),
            Some(0),
            "seed {seed} round {round}: the final reconcile changed something: {report}"
        );
        if let Err(e) = lab.check_exact(&now, &doms) {
            panic!("seed {seed} round {round}, after the final reconcile: {e}");
        }
        eprintln!(
            "concurrency: round {round}: {} domains running, {} starts refused so far",
            now.len(),
            refused
        );
    }
    let hooks = HOOK_RUNS.load(Ordering::SeqCst);
    eprintln!(
        "concurrency: seed {seed}: {rounds} rounds, {hooks} hook runs, {reconciles} concurrent reconciles, {refused} conflicting starts refused, {} adoptions by reconcile, {:.1} s",
        ADOPTIONS.load(Ordering::SeqCst),
        t0.elapsed().as_secs_f64()
    );
}
