//! The hostile-input corpus (testdata/hostile/, expectations in
//! testdata/hostile/expected.toml) against the real hook in a network namespace
//! where another domain already runs: every input is refused at prepare, start
//! and migrate and by `virt-l3 plan`, with its expected one-line message and
//! nothing on stdout, and the namespace's kernel state and the whole lab
//! directory (state directory included) are byte-for-byte unchanged.
//! Needs root (as in CI).

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
mod common;
mod snapshot;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Lab;
use snapshot::{diff, dir_snapshot, kernel_snapshot, settle};

/// The steps every case runs: the hook's aborting steps and the plan command.
const STEPS: [&str; 4] = ["prepare", "start", "migrate", "plan"];

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    case: Vec<Case>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    file: String,
    #[serde(default)]
    generate: Option<String>,
    kind: String,
    domain: String,
    #[serde(default)]
    config: Option<String>,
    errors: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

fn corpus_dir() -> PathBuf {
    common::repo_path("testdata/hostile")
}

fn manifest() -> Manifest {
    let path = corpus_dir().join("expected.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Files directly in `dir` (sorted), relative to the corpus directory.
fn files_in(sub: &str) -> BTreeSet<String> {
    common::file_names(&corpus_dir().join(sub))
        .into_iter()
        .map(|name| {
            if sub.is_empty() {
                name
            } else {
                format!("{sub}/{name}")
            }
        })
        .collect()
}

/// Each corpus file has exactly one expectation, each expectation's file or
/// generator exists, and each configuration file is used. Needs no root.
#[test]
fn every_corpus_file_has_exactly_one_expectation() {
    let m = manifest();
    let mut files = files_in("");
    files.remove("expected.toml");
    // Inputs go at the top level: a new directory would escape this check.
    for e in std::fs::read_dir(corpus_dir()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            let name = e.file_name().into_string().unwrap();
            assert!(
                name == "config" || name == "setup",
                "testdata/hostile/{name}/: only config/ and setup/ may be directories"
            );
        }
    }
    let mut seen = BTreeSet::new();
    let mut configs = BTreeSet::new();
    for c in &m.case {
        assert!(seen.insert(c.file.clone()), "{} has two cases", c.file);
        assert!(
            c.kind == "xml" || c.kind == "plan",
            "{}: kind must be \"xml\" or \"plan\"",
            c.file
        );
        assert!(!c.errors.is_empty(), "{}: no expected error", c.file);
        match &c.generate {
            Some(g) => {
                assert!(generate(g).is_some(), "{}: unknown generator {g}", c.file);
                assert!(
                    !files.contains(&c.file),
                    "{} is generated and stored",
                    c.file
                );
            }
            None => assert!(files.contains(&c.file), "{} has a case but no file", c.file),
        }
        if let Some(cfg) = &c.config {
            assert!(corpus_dir().join(cfg).is_file(), "{}: no {cfg}", c.file);
            configs.insert(cfg.clone());
        }
    }
    let missing: Vec<&String> = files.iter().filter(|f| !seen.contains(*f)).collect();
    assert!(
        missing.is_empty(),
        "corpus files without an expectation in expected.toml: {missing:?}"
    );
    let unused: Vec<String> = files_in("config")
        .into_iter()
        .filter(|f| !configs.contains(f))
        .collect();
    assert!(
        unused.is_empty(),
        "configuration files no case uses: {unused:?}"
    );
    assert!(m.case.len() >= 100, "the corpus shrank: {}", m.case.len());
}

/// An input the test builds: megabytes, or a stream that never ends.
enum Input {
    Bytes(Vec<u8>),
    Endless(u8),
}

fn generate(name: &str) -> Option<Input> {
    let nic = |i: usize| {
        let mac = format!("52:54:00:ee:{:02x}:{:02x}", i / 256, i % 256);
        format!(
            "<interface type='bridge'><mac address='{mac}'/><source bridge='cloudbr0'/>\
             <filterref filter='virt-l3-nic-{}'/></interface>\n",
            mac.replace(':', "")
        )
    };
    let domain = |metadata: &str, nics: &str| {
        format!(
            "<domain type='qemu'><name>evil</name><uuid>eeeeeeee-0000-4000-8000-000000000001</uuid>\
             {metadata}<devices>{nics}</devices></domain>\n"
        )
        .into_bytes()
    };
    Some(match name {
        "oversize" => {
            let mut v = b"<domain type='qemu'><name>evil</name><!-- ".to_vec();
            v.resize(5 * 1024 * 1024, b'x');
            v.extend_from_slice(b" --></domain>\n");
            Input::Bytes(v)
        }
        "endless-y" => Input::Endless(b'y'),
        "endless-zero" => Input::Endless(0),
        "huge-attribute" => {
            let meta = format!(
                "<metadata><cs:network xmlns:cs='https://download.cloudstack.org/libvirt/network'>\
                 <cs:nic mac='52:54:00:ee:00:01'><cs:address address='{}' family='ipv4'/></cs:nic>\
                 </cs:network></metadata>",
                "9".repeat(3 * 1024 * 1024)
            );
            Input::Bytes(domain(&meta, &nic(1)))
        }
        "many-nics" => {
            let nics: String = (1..=5000).map(nic).collect();
            Input::Bytes(domain("", &nics))
        }
        _ => return None,
    })
}

/// Runs virt-l3 in the lab with stdin that never ends; returns (exit code,
/// stdout, stderr, peak RSS in KiB). Fails if it takes more than 10 s.
// The child is reaped by wait4 (for its rusage), not by Child::wait.
#[allow(clippy::zombie_processes)]
fn run_endless(lab: &Lab, args: &[&str], byte: u8) -> (Option<i32>, Vec<u8>, String, i64) {
    use std::io::Read;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns, env!("CARGO_BIN_EXE_virt-l3")])
        .arg("--config")
        .arg(lab.config_path())
        .args(args)
        .env_remove("VIRT_L3_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = if byte == b'y' {
            b"y\n".repeat(32 * 1024)
        } else {
            vec![byte; 64 * 1024]
        };
        // Until virt-l3 closes its end (EPIPE: the test harness ignores SIGPIPE).
        while stdin.write_all(&chunk).is_ok() {}
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // `ip netns exec` execs virt-l3: the child's pid is virt-l3's.
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, rss) = loop {
        let mut status = 0;
        // SAFETY: plain wait4 on our own child, with valid out-pointers.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break (status, usage.ru_maxrss);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("virt-l3 {args:?} still runs after 10 s of endless stdin");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    writer.join().unwrap();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (
        code,
        out_reader.join().unwrap(),
        err_reader.join().unwrap(),
        rss,
    )
}

/// Checks one step's outcome; returns what is wrong, if anything.
fn judge(case: &Case, step: &str, code: Option<i32>, stdout: &[u8], stderr: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    if code == Some(0) || code.is_none() {
        wrong.push(format!("exit {code:?}, not a refusal"));
    }
    if !stdout.is_empty() {
        wrong.push(format!("{} bytes on stdout", stdout.len()));
    }
    let line = stderr.trim_end();
    if line.contains('\n') {
        wrong.push("more than one line on stderr".into());
    }
    if stderr.len() > 4096 {
        wrong.push(format!("{} bytes on stderr", stderr.len()));
    }
    let head = match (case.kind.as_str(), step) {
        ("xml", "plan") => "virt-l3: the domain XML ".to_string(),
        ("xml", _) => format!("virt-l3 cannot read the XML of domain {}: ", case.domain),
        _ => format!("virt-l3 refuses domain {}: ", case.domain),
    };
    if !line.starts_with(&head) {
        wrong.push(format!("stderr does not start with {head:?}"));
    }
    for e in &case.errors {
        if !line.contains(e.as_str()) {
            wrong.push(format!("stderr lacks {e:?}"));
        }
    }
    if !wrong.is_empty() {
        let shown: String = line.chars().take(600).collect();
        wrong.push(format!("stderr: {shown}"));
    }
    wrong
}

#[test]
fn every_hostile_input_is_refused_and_changes_nothing() {
    require_root!();
    let m = manifest();
    let lab = Lab::new(&[]);
    // An address of the hypervisor itself, for the cases that claim it.
    lab.ip(&["addr", "add", "192.0.2.254/32", "dev", "lo"]);
    // Another domain runs: its addresses and prefix are taken, and the state
    // directory holds a record, claims and the lock.
    let owner = std::fs::read(corpus_dir().join("setup/owner.xml")).unwrap();
    for op in ["prepare", "start", "started"] {
        let o = lab.hook("owner-vm", op, "begin", &owner);
        assert!(o.status.success(), "owner {op}: {}", common::stderr(&o));
    }
    assert_eq!(lab.routes().len(), 3, "{:?}", lab.routes());
    settle(&lab);

    let mut failures = Vec::new();
    let mut slowest = (Duration::ZERO, String::new());
    let mut peak_rss_kib = 0;
    for case in &m.case {
        let started = Instant::now();
        lab.write_config(
            &case
                .config
                .as_ref()
                .map(|c| std::fs::read_to_string(corpus_dir().join(c)).unwrap())
                .unwrap_or_default(),
        );
        let input = match &case.generate {
            Some(g) => generate(g).unwrap(),
            None => Input::Bytes(std::fs::read(corpus_dir().join(&case.file)).unwrap()),
        };
        let kernel_before = kernel_snapshot(&lab);
        let dir_before = dir_snapshot(lab.dir.path());
        for step in STEPS {
            let args: Vec<&str> = if step == "plan" {
                vec!["plan"]
            } else {
                vec!["hook", "evil", step, "begin", "-"]
            };
            let (code, stdout, stderr) = match &input {
                Input::Bytes(xml) => {
                    let o = lab.virt_l3(&args, xml);
                    let stderr = common::stderr(&o);
                    (o.status.code(), o.stdout, stderr)
                }
                Input::Endless(byte) => {
                    let (code, stdout, stderr, rss_kib) = run_endless(&lab, &args, *byte);
                    peak_rss_kib = peak_rss_kib.max(rss_kib);
                    if rss_kib > 64 * 1024 {
                        failures.push(format!(
                            "{} at {step}: peak RSS {rss_kib} KiB on endless stdin",
                            case.file
                        ));
                    }
                    (code, stdout, stderr)
                }
            };
            for w in judge(case, step, code, &stdout, &stderr) {
                failures.push(format!("{} at {step}: {w}", case.file));
            }
        }
        // Once per case (after all its steps): a snapshot costs more than a refusal.
        let kernel_after = kernel_snapshot(&lab);
        if kernel_after != kernel_before {
            failures.push(format!(
                "{} changed the kernel:\n{}",
                case.file,
                diff(&kernel_before, &kernel_after)
            ));
        }
        let dir_after = dir_snapshot(lab.dir.path());
        if dir_after != dir_before {
            failures.push(format!(
                "{} changed the lab directory:\n{}",
                case.file,
                diff(&dir_before.join("\n"), &dir_after.join("\n"))
            ));
        }
        if started.elapsed() > slowest.0 {
            slowest = (started.elapsed(), case.file.clone());
        }
    }
    // Nothing escaped the state directory by a path in a name or UUID.
    for p in ["/tmp/evil.json", "/etc/ab", "/run/virt-l3/domains/x"] {
        if Path::new(p).exists() {
            failures.push(format!("{p} exists"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} cases x {} steps refused; slowest case {} ({:?}); peak RSS on endless stdin {} KiB",
        m.case.len(),
        STEPS.len(),
        slowest.1,
        slowest.0,
        peak_rss_kib
    );
}

/// The DOMAIN argument comes from libvirt, but is treated as hostile all the
/// same: with path characters and a newline it is only ever quoted (escaped,
/// one line) in an error, and stopped/release with it and unreadable XML
/// succeed and change nothing (removal goes by the record, and only a record
/// of exactly that name would match).
#[test]
fn a_hostile_domain_argument_is_only_quoted() {
    require_root!();
    let lab = Lab::new(&[]);
    let owner = std::fs::read(corpus_dir().join("setup/owner.xml")).unwrap();
    let o = lab.hook("owner-vm", "start", "begin", &owner);
    assert!(o.status.success(), "{}", common::stderr(&o));
    settle(&lab);
    let kernel_before = kernel_snapshot(&lab);
    let dir_before = dir_snapshot(lab.dir.path());
    let name = "../../../etc/passwd\nvirt-l3 accepts everything";
    for op in ["prepare", "start", "migrate"] {
        let o = lab.hook(name, op, "begin", b"");
        assert!(!o.status.success(), "{op}");
        assert!(o.stdout.is_empty());
        assert_eq!(
            common::stderr(&o),
            "virt-l3 cannot read the XML of domain \"../../../etc/passwd\\nvirt-l3 accepts everything\": \
             the domain XML has no <domain> root element\n",
            "{op}"
        );
    }
    for op in ["stopped", "release"] {
        let o = lab.hook(name, op, "end", b"\0\0");
        assert!(o.status.success(), "{op}: {}", common::stderr(&o));
        assert!(o.stdout.is_empty());
    }
    assert_eq!(kernel_snapshot(&lab), kernel_before);
    assert_eq!(dir_snapshot(lab.dir.path()), dir_before);
}
