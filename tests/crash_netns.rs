//! Crash consistency: virt-l3 killed with SIGKILL during every lifecycle step
//! that changes something, at every system call that changes the kernel or the
//! state directory (strace's fault injection: the N-th `sendto`, `write`,
//! `symlink`, `renameat`, `unlink`, ... for every N) and at random instants.
//! Right after each kill the state directory must hold only whole records and
//! claims, and the kernel only entries of known domains; after what runs next
//! (libvirt's cleanup, or `reconcile`) both must be exactly as expected.
//! The expected outcome of each kill point is in docs/CONCURRENCY.md.
//!
//! Tunable: `VIRT_L3_CRASH_RANDOM` (random-instant kills per scenario, default
//! 12), `VIRT_L3_CRASH_SEED` (default: from the clock; printed).

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{env_number, seed_from_env, stderr, Lab, Rng, TestDomain};

/// The system calls by which virt-l3 changes the kernel (netlink `sendto`) or
/// the state directory; a kill just before each of them, for every N, visits
/// every state a crash can leave (a netlink batch is applied whole inside one
/// `sendto`: SIGKILL is only acted upon when the call returns).
const SYSCALLS: &str =
    "sendto,sendmsg,write,symlink,symlinkat,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,fsync,fdatasync,syncfs,flock";

#[derive(Debug, Clone, Copy)]
enum Kill {
    None,
    /// SIGKILL on entering the N-th call of this system call.
    At(&'static str, u64),
    /// SIGKILL after this long.
    After(Duration),
}

struct World {
    lab: Lab,
    /// Runs throughout: must never be disturbed.
    bg: TestDomain,
    /// The domain whose lifecycle step is killed.
    victim: TestDomain,
    /// A domain that vanished without its hooks (for reconcile to prune).
    ghost: TestDomain,
    /// A domain with the victim's first NIC's addresses.
    rival: TestDomain,
}

const ORPHAN: &str = "2.59.0.1";

impl World {
    fn new() -> World {
        let lab = Lab::new(&[]);
        std::fs::create_dir_all(lab.status_dir()).unwrap();
        // Convergence by reconcile is checked as after the grace period. The
        // firewall's accepted ports are left out: they are not records, claims or
        // routes (whose convergence this test counts), accepting a port is
        // idempotent and reconcile accepts every recorded tap again
        // (tests/firewall_netns.rs), and their set is not reset between runs, so
        // the number of system calls would vary from one run to the next.
        lab.write_config(&format!(
            "libvirt_status_dir = {:?}\nrequire_nwfilter = false\nreconcile_grace_seconds = 0\n[firewall]\nenabled = false\n",
            lab.status_dir()
        ));
        let w = World {
            lab,
            bg: TestDomain::generated("kb", 0),
            victim: TestDomain::generated("kv", 5),
            ghost: TestDomain::generated("kg", 3),
            rival: TestDomain::conflicting("kr", 7, &TestDomain::generated("kv", 5)),
        };
        w.start(&w.bg);
        w.exact(&[&w.bg], "baseline");
        w
    }

    fn all(&self) -> Vec<TestDomain> {
        vec![
            self.bg.clone(),
            self.victim.clone(),
            self.ghost.clone(),
            self.rival.clone(),
        ]
    }

    fn hook(&self, d: &TestDomain, op: &str, subop: &str, kill: Kill) -> Output {
        run(
            &self.lab,
            &["hook", &d.name, op, subop, "-"],
            &d.xml(),
            kill,
        )
    }

    fn ok(&self, d: &TestDomain, op: &str, subop: &str) {
        let o = self.hook(d, op, subop, Kill::None);
        assert!(o.status.success(), "{} {op}: {}", d.name, stderr(&o));
    }

    fn start(&self, d: &TestDomain) {
        self.ok(d, "prepare", "begin");
        self.lab.create_taps(d);
        self.ok(d, "start", "begin");
        self.lab.set_status(&d.name, &d.xml(), "running", "booted");
        self.ok(d, "started", "begin");
    }

    /// A start that may be refused because another domain owns the addresses
    /// (then libvirt's cleanup runs). Returns whether the domain runs.
    fn try_start(&self, d: &TestDomain) -> bool {
        for (i, op) in ["prepare", "start"].into_iter().enumerate() {
            if i == 1 {
                self.lab.create_taps(d);
            }
            let o = self.hook(d, op, "begin", Kill::None);
            if !o.status.success() {
                assert!(
                    stderr(&o).contains("already owned by domain"),
                    "{} {op}: {}",
                    d.name,
                    stderr(&o)
                );
                self.stop(d);
                return false;
            }
        }
        self.lab.set_status(&d.name, &d.xml(), "running", "booted");
        self.ok(d, "started", "begin");
        true
    }

    /// libvirt's stop (also its cleanup after a failed start): stopped, taps
    /// deleted, status removed, release.
    fn stop(&self, d: &TestDomain) {
        self.ok(d, "stopped", "end");
        self.stop_after_stopped(d);
    }

    fn stop_after_stopped(&self, d: &TestDomain) {
        self.lab.delete_taps(d);
        self.lab.clear_status(&d.name);
        self.ok(d, "release", "end");
    }

    fn reconcile(&self) {
        let o = run(&self.lab, &["reconcile"], b"", Kill::None);
        assert!(o.status.success(), "reconcile: {}", stderr(&o));
    }

    fn exact(&self, running: &[&TestDomain], when: &str) {
        if let Err(e) = self.lab.check_exact(running, &self.all()) {
            panic!("{when}: {e}");
        }
    }

    /// What a kill may leave: every record whole and one of the known domains'
    /// (exactly), every claim a symlink naming a known domain that has the address (prefix, MAC),
    /// the running domain untouched, and no kernel entry of anyone else.
    fn check_reachable(&self, when: &str) -> Result<(), String> {
        let known = [&self.bg, &self.victim, &self.ghost];
        let state = self.lab.state_dir();
        for f in self.lab.all_state_files() {
            let (sub, name) = f.split_once('/').unwrap();
            if name.starts_with('.') {
                continue; // a temporary file: never read (checked gone after convergence)
            }
            let path = state.join(&f);
            if sub == "domains" {
                let uuid = name
                    .strip_suffix(".json")
                    .ok_or(format!("{when}: stray {f}"))?;
                let d = known
                    .iter()
                    .find(|d| d.uuid == uuid)
                    .ok_or(format!("{when}: record of an unknown domain {f}"))?;
                let bytes = std::fs::read(&path).map_err(|e| format!("{when}: {f}: {e}"))?;
                let mut rec: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "{when}: {f} is not whole ({e}): {}",
                        String::from_utf8_lossy(&bytes)
                    )
                })?;
                rec.as_object_mut().map(|o| o.remove("since_ms"));
                if rec != d.record_json(100) {
                    return Err(format!("{when}: {f} is {rec}"));
                }
            } else if sub == "owners" || sub == "prefixes" || sub == "macs" {
                let target = std::fs::read_link(&path)
                    .map_err(|e| format!("{when}: claim {f} is not a symlink: {e}"))?;
                let target = target.to_string_lossy();
                let d = known
                    .iter()
                    .find(|d| d.owner_text() == target)
                    .ok_or(format!("{when}: claim {f} names {target}"))?;
                if !d.state_files().contains(&f) {
                    return Err(format!(
                        "{when}: claim {f} names {target}, which does not have it"
                    ));
                }
            } else if sub == "stopping" && name == self.victim.uuid {
                // The victim's stopped hook ran (its release or reconcile clears it).
            } else {
                return Err(format!("{when}: unexpected {f}"));
            }
        }
        let files = self.lab.all_state_files();
        for f in self.bg.state_files() {
            if !files.contains(&f) {
                return Err(format!("{when}: the running domain lost {f}"));
            }
        }
        let routes = self.lab.routes();
        let neighbours = self.lab.neighbours();
        let known_routes: Vec<String> = known
            .iter()
            .flat_map(|d| d.routes(100))
            .chain([format!("{ORPHAN} dev cloudbr0 scope link metric 100")])
            .collect();
        let known_neighbours: Vec<String> = known.iter().flat_map(|d| d.neighbours()).collect();
        for r in self.bg.routes(100) {
            if !routes.contains(&r) {
                return Err(format!("{when}: the running domain lost route {r}"));
            }
        }
        for n in self.bg.neighbours() {
            if !neighbours.contains(&n) {
                return Err(format!("{when}: the running domain lost neighbour {n}"));
            }
        }
        if let Some(r) = routes.iter().find(|r| !known_routes.contains(r)) {
            return Err(format!("{when}: unknown route {r}"));
        }
        if let Some(n) = neighbours.iter().find(|n| !known_neighbours.contains(n)) {
            return Err(format!("{when}: unknown neighbour {n}"));
        }
        Ok(())
    }
}

/// Runs `virt-l3 ARGS` in the lab's namespace, killed as `kill` says.
fn run(lab: &Lab, args: &[&str], stdin: &[u8], kill: Kill) -> Output {
    let bin = env!("CARGO_BIN_EXE_virt-l3");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.ns]);
    match kill {
        Kill::At(sys, n) => {
            // Not `-f`: strace counts `when` per traced process, so a child
            // (`nft list set`, which reconcile forks) would keep its own count.
            cmd.args(["strace", "-qq", "-o", "/dev/null", "-e"])
                .arg(format!("trace={sys}"))
                .arg("-e")
                .arg(format!("inject={sys}:signal=KILL:when={n}"));
        }
        Kill::None | Kill::After(_) => {}
    }
    cmd.arg(bin)
        .arg("--config")
        .arg(lab.config_path())
        .args(args)
        .env_remove("VIRT_L3_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn virt-l3");
    // `ip netns exec` execs virt-l3 in place: the child's pid is virt-l3's.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    if let Kill::After(d) = kill {
        std::thread::sleep(d);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    child.wait_with_output().expect("wait virt-l3")
}

/// How many times a step makes each of [`SYSCALLS`] (strace -c), in virt-l3's
/// own process: the kill points [`run`] can reach (a forked `nft` is not counted).
fn count_syscalls(lab: &Lab, args: &[&str], stdin: &[u8]) -> (Output, BTreeMap<String, u64>) {
    let file = lab.dir.path().join("strace-count");
    let bin = env!("CARGO_BIN_EXE_virt-l3");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns, "strace", "-qq", "-c", "-o"])
        .arg(&file)
        .arg("-e")
        .arg(format!("trace={SYSCALLS}"))
        .arg(bin)
        .arg("--config")
        .arg(lab.config_path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strace");
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    let out = child.wait_with_output().expect("wait strace");
    let text = std::fs::read_to_string(&file).expect("strace -c output");
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() >= 5 && cols[0].parse::<f64>().is_ok() {
            if let (Ok(calls), Some(name)) = (cols[3].parse::<u64>(), cols.last()) {
                if *name != "total" {
                    counts.insert(name.to_string(), calls);
                }
            }
        }
    }
    (out, counts)
}

/// One lifecycle step to kill: how to get there, the step, what runs after it,
/// and who runs after that.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    /// `start` killed; libvirt aborts the start: stopped, release.
    Start,
    /// `start` killed and libvirtd gone too: the next `reconcile` cleans up.
    StartThenReconcile,
    /// `started` killed; libvirt aborts the start: stopped, release.
    Started,
    /// `stopped` killed; libvirt carries on: taps, status file, release.
    Stopped,
    /// `stopped` killed, and before `release` a domain with the same addresses
    /// starts: it must be refused, or own them entirely (not lose them to the
    /// victim's `release`).
    StoppedThenRival,
    /// `release` killed after a `stopped` that never ran: the next `reconcile`.
    Release,
    /// `reconnect` (with routes to restore) killed: `reconcile` restores the
    /// running domain; libvirt's stop then removes it.
    Reconnect,
    /// `reconcile` (adopting, pruning, removing an orphan) killed: the next `reconcile`.
    Reconcile,
}

const SCENARIOS: [Scenario; 8] = [
    Scenario::Start,
    Scenario::StartThenReconcile,
    Scenario::Started,
    Scenario::Stopped,
    Scenario::StoppedThenRival,
    Scenario::Release,
    Scenario::Reconnect,
    Scenario::Reconcile,
];

impl Scenario {
    fn setup(self, w: &World) {
        let v = &w.victim;
        match self {
            Scenario::Start | Scenario::StartThenReconcile => {
                w.ok(v, "prepare", "begin");
                w.lab.create_taps(v);
            }
            Scenario::Started => {
                w.ok(v, "prepare", "begin");
                w.lab.create_taps(v);
                w.ok(v, "start", "begin");
                w.lab.set_status(&v.name, &v.xml(), "running", "booted");
            }
            Scenario::Stopped | Scenario::StoppedThenRival => w.start(v),
            Scenario::Release => {
                w.start(v);
                w.lab.delete_taps(v);
                w.lab.clear_status(&v.name);
            }
            Scenario::Reconnect => {
                w.start(v);
                for r in v.routes(100) {
                    let dest = r.split_whitespace().next().unwrap();
                    let fam = if dest.contains(':') { "-6" } else { "-4" };
                    w.lab
                        .ip(&[fam, "route", "del", dest, "dev", "cloudbr0", "proto", "52"]);
                }
            }
            Scenario::Reconcile => {
                w.start(v);
                w.start(&w.ghost);
                // The ghost vanished without its hooks (libvirtd crashed, say).
                w.lab.delete_taps(&w.ghost);
                w.lab.clear_status(&w.ghost.name);
                // The victim's record and claims were lost, and its routes.
                for f in v.state_files() {
                    std::fs::remove_file(w.lab.state_dir().join(f)).unwrap();
                }
                for r in v.routes(100) {
                    let dest = r.split_whitespace().next().unwrap();
                    let fam = if dest.contains(':') { "-6" } else { "-4" };
                    w.lab
                        .ip(&[fam, "route", "del", dest, "dev", "cloudbr0", "proto", "52"]);
                }
                w.lab.ip(&[
                    "route", "add", ORPHAN, "dev", "cloudbr0", "proto", "52", "metric", "100",
                ]);
            }
        }
    }

    fn args(self, w: &World) -> (Vec<String>, Vec<u8>) {
        let v = &w.victim;
        let hook = |op: &str, subop: &str| {
            (
                ["hook", &v.name, op, subop, "-"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                v.xml(),
            )
        };
        match self {
            Scenario::Start | Scenario::StartThenReconcile => hook("start", "begin"),
            Scenario::Started => hook("started", "begin"),
            Scenario::Stopped | Scenario::StoppedThenRival => hook("stopped", "end"),
            Scenario::Release => hook("release", "end"),
            Scenario::Reconnect => hook("reconnect", "begin"),
            Scenario::Reconcile => (vec!["reconcile".to_string()], Vec::new()),
        }
    }

    /// What runs next, then the check that everything is exactly as expected;
    /// then back to the baseline (only the background domain runs).
    fn converge(self, w: &World, when: &str) {
        let v = &w.victim;
        match self {
            Scenario::Start => {
                w.stop(v);
                w.exact(&[&w.bg], when);
            }
            Scenario::StartThenReconcile => {
                w.reconcile();
                // libvirt would delete the taps when it comes back.
                w.lab.delete_taps(v);
                w.exact(&[&w.bg], when);
                // ... and run its cleanup, which then has nothing to do.
                w.stop(v);
                w.exact(&[&w.bg], when);
            }
            Scenario::Started => {
                w.stop(v);
                w.exact(&[&w.bg], when);
            }
            Scenario::Stopped => {
                w.stop_after_stopped(v);
                w.exact(&[&w.bg], when);
            }
            Scenario::StoppedThenRival => {
                let r = &w.rival;
                let runs = w.try_start(r);
                w.stop_after_stopped(v);
                if runs {
                    w.exact(&[&w.bg, r], when);
                    w.stop(r);
                }
                w.exact(&[&w.bg], when);
            }
            Scenario::Release => {
                w.reconcile();
                w.exact(&[&w.bg], when);
            }
            Scenario::Reconnect => {
                w.reconcile();
                w.exact(&[&w.bg, v], when);
                w.stop(v);
                w.exact(&[&w.bg], when);
            }
            Scenario::Reconcile => {
                w.reconcile();
                w.exact(&[&w.bg, v], when);
                w.stop(v);
                w.exact(&[&w.bg], when);
            }
        }
    }
}

/// One trial: set up, run the step killed as `kill` says, check what the kill
/// left, converge, check exactly. Returns whether the kill landed, and how long
/// the step ran.
fn trial(w: &World, s: Scenario, kill: Kill, seed: u64) -> (bool, Duration) {
    s.setup(w);
    let (args, stdin) = s.args(w);
    let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
    let t = Instant::now();
    let o = run(&w.lab, &args, &stdin, kill);
    let took = t.elapsed();
    let killed = o.status.signal() == Some(libc::SIGKILL);
    let when = format!("seed {seed}, {s:?} with kill {kill:?}");
    if killed {
        if let Err(e) = w.check_reachable(&when) {
            panic!("right after the kill: {e}");
        }
    } else {
        assert!(
            o.status.success(),
            "{when}: the step failed: {}",
            stderr(&o)
        );
    }
    s.converge(w, &format!("{when}, after convergence"));
    (killed, took)
}

#[test]
fn sigkill_at_every_change_and_at_random_instants_converges_exactly() {
    require_root!();
    let seed = seed_from_env("VIRT_L3_CRASH_SEED");
    let random = env_number("VIRT_L3_CRASH_RANDOM", 12);
    eprintln!("crash: seed {seed} (VIRT_L3_CRASH_SEED={seed} replays), {random} random kills per scenario");
    let strace = Command::new("strace").arg("-V").output();
    assert!(
        strace.is_ok_and(|o| o.status.success()),
        "this test needs strace (scripts/deps.sh test installs it)"
    );
    let w = World::new();
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();
    let (mut points, mut landed_random, mut trials) = (0u64, 0u64, 0u64);
    for s in SCENARIOS {
        // Count the step's changing system calls, then kill before each one.
        s.setup(&w);
        let (args, stdin) = s.args(&w);
        let a: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
        let (o, counts) = count_syscalls(&w.lab, &a, &stdin);
        assert!(o.status.success(), "{s:?}: {}", stderr(&o));
        s.converge(&w, &format!("{s:?} without a kill"));
        let mut here = 0;
        let mut slowest = Duration::ZERO;
        for (sys, n) in &counts {
            let sys: &'static str = SYSCALLS.split(',').find(|x| x == sys).unwrap();
            for i in 1..=*n {
                let (killed, took) = trial(&w, s, Kill::At(sys, i), seed);
                trials += 1;
                assert!(killed, "{s:?}: the kill at {sys} #{i} did not land");
                here += 1;
                slowest = slowest.max(took);
            }
        }
        points += here;
        // Kills at random instants over the step's run time (without strace).
        let (_, took) = trial(&w, s, Kill::None, seed);
        trials += 1;
        let span = took.as_micros().max(1000) as u64 * 3 / 2;
        let mut landed = 0;
        for _ in 0..random {
            let d = Duration::from_micros(rng.below(span));
            let (killed, _) = trial(&w, s, Kill::After(d), seed);
            trials += 1;
            landed += u64::from(killed);
        }
        landed_random += landed;
        eprintln!(
            "crash: {s:?}: {here} kill points ({}), {landed}/{random} random kills landed",
            counts
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    eprintln!(
        "crash: seed {seed}: {points} systematic kill points, {landed_random} random kills landed, {trials} trials, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
