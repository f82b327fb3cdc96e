//! A throwaway network namespace with a routed bridge, for tests that need the real kernel.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub mod cloud_init;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Returns from the calling test, after printing "NAME: skipped: needs root
/// (CAP_NET_ADMIN)" to stderr, when this process cannot make and configure network
/// namespaces (not root, or without CAP_NET_ADMIN / CAP_SYS_ADMIN): the first line of
/// every test that needs the real kernel, so that `cargo test` as a normal user passes
/// with those tests reported skipped. (`#[macro_use] mod common;` in the test crate.)
#[allow(unused_macros)] // not every test crate has root-only tests
macro_rules! require_root {
    () => {
        if !$crate::common::may_make_namespaces() {
            fn here() {}
            $crate::common::report_skipped(::std::any::type_name_of_val(&here));
            return;
        }
    };
}

/// Whether this process may create network namespaces and change their links and
/// routes: root with CAP_NET_ADMIN and CAP_SYS_ADMIN (`ip netns add` mounts) effective.
pub fn may_make_namespaces() -> bool {
    static MAY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MAY.get_or_init(|| {
        const CAP_NET_ADMIN: u32 = 12;
        const CAP_SYS_ADMIN: u32 = 21;
        let effective = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0);
        nix::unistd::geteuid().is_root()
            && effective & (1 << CAP_NET_ADMIN) != 0
            && effective & (1 << CAP_SYS_ADMIN) != 0
    })
}

/// Prints the skip line of `require_root!` for the test whose inner function is `here`
/// (`crate::test_name::here`).
pub fn report_skipped(here: &str) {
    let path = here.strip_suffix("::here").unwrap_or(here);
    let name = path.split_once("::").map_or(path, |(_, rest)| rest);
    eprintln!("{name}: skipped: needs root (CAP_NET_ADMIN)");
}

/// A path in the source tree (`repo_path("testdata/domains")`).
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_path("testdata/domains").join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The proptest configuration of the property tests: `PROPTEST_CASES` cases
/// (default 2000), no failure persistence files.
pub fn proptest_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: env_number("PROPTEST_CASES", 2000) as u32,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// The entries directly in `dir` (all files: a directory fails), as (name, content), sorted by name.
pub fn files_with_contents(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path())
                    .unwrap_or_else(|err| panic!("{}: {err}", e.path().display())),
            )
        })
        .collect();
    files.sort();
    files
}

/// The names of the regular files directly in `dir`, sorted.
pub fn file_names(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Runs `cmd`, asserting that it succeeds (its stderr in the message).
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub struct Lab {
    pub ns: String,
    pub dir: tempfile::TempDir,
}

impl Lab {
    /// A namespace with `cloudbr0` (169.254.0.1/32, fe80::1/64) and the given taps as its ports.
    pub fn new(taps: &[&str]) -> Lab {
        assert!(
            nix::unistd::geteuid().is_root(),
            "namespace tests need root"
        );
        let ns = format!(
            "vl3t-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run(Command::new("ip").args(["netns", "add", &ns]));
        let lab = Lab {
            ns,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        lab.ip(&["link", "set", "lo", "up"]);
        lab.ip(&["link", "add", "cloudbr0", "type", "bridge"]);
        lab.ip(&["link", "set", "cloudbr0", "up"]);
        lab.ip(&["addr", "add", "169.254.0.1/32", "dev", "cloudbr0"]);
        lab.ip(&["addr", "add", "fe80::1/64", "dev", "cloudbr0", "nodad"]);
        for t in taps {
            lab.add_tap(t, "cloudbr0");
        }
        lab.write_config("");
        lab
    }

    pub fn add_tap(&self, tap: &str, bridge: &str) {
        let peer = format!("{tap}p");
        self.ip(&["link", "add", tap, "type", "veth", "peer", "name", &peer]);
        self.ip(&["link", "set", tap, "master", bridge, "up"]);
    }

    pub fn add_bridge(&self, name: &str) {
        self.ip(&["link", "add", name, "type", "bridge"]);
        self.ip(&["link", "set", name, "up"]);
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Writes the lab's config: its own state dir plus `extra` TOML lines.
    pub fn write_config(&self, extra: &str) {
        let text = format!("state_dir = {:?}\n{extra}\n", self.state_dir());
        std::fs::write(self.config_path(), text).expect("write config");
    }

    pub fn ip(&self, args: &[&str]) -> String {
        let out = run(Command::new("ip").arg("-n").arg(&self.ns).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `virt-l3 ARGS` inside the namespace with `stdin` as input.
    pub fn virt_l3(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.virt_l3_env(args, stdin, &[])
    }

    /// [`Lab::virt_l3`] with extra environment variables (`VIRT_L3_NFT`, ...).
    pub fn virt_l3_env(&self, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, env!("CARGO_BIN_EXE_virt-l3")])
            .envs(env.iter().copied())
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("VIRT_L3_CONFIG")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn virt-l3");
        // virt-l3 stops reading oversize input: a broken pipe is expected then.
        let _ = child.stdin.take().expect("stdin").write_all(stdin);
        child.wait_with_output().expect("wait virt-l3")
    }

    /// Runs one hook step, as libvirt would.
    pub fn hook(&self, domain: &str, op: &str, subop: &str, xml: &[u8]) -> Output {
        self.virt_l3(&["hook", domain, op, subop, "-"], xml)
    }

    /// virt-l3's routes (protocol 52 unless configured otherwise), one normalised line each, sorted.
    pub fn routes(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for fam in ["-4", "-6"] {
            let text = self.ip(&[fam, "route", "show", "proto", "52"]);
            v.extend(text.lines().map(normalise));
        }
        v.sort();
        v
    }

    /// Every route of the main table, both families.
    pub fn all_routes(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for fam in ["-4", "-6"] {
            v.extend(self.ip(&[fam, "route", "show"]).lines().map(normalise));
        }
        v.sort();
        v
    }

    /// Permanent neighbour entries, normalised and sorted.
    pub fn neighbours(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ip(&["neigh", "show", "nud", "permanent"])
            .lines()
            .map(normalise)
            .collect();
        v.sort();
        v
    }

    pub fn isolated(&self, tap: &str) -> bool {
        self.ip(&["-d", "link", "show", tap])
            .contains("isolated on")
    }

    /// Files under the state directory (relative paths), sorted.
    pub fn state_files(&self) -> Vec<String> {
        let mut v = Vec::new();
        for sub in ["domains", "owners", "prefixes", "macs", "incoming"] {
            if let Ok(d) = std::fs::read_dir(self.state_dir().join(sub)) {
                for e in d.flatten() {
                    v.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
        v.sort();
        v
    }
}

fn normalise(line: &str) -> String {
    line.split_whitespace()
        .filter(|w| !matches!(*w, "linkdown" | "pref" | "medium"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A guest: its own network namespace holding the peer of one of the lab's taps,
/// renamed `eth0` and given the NIC's MAC, as QEMU's NIC would be.
pub struct Guest {
    pub ns: String,
}

impl Lab {
    pub fn guest(&self, tap: &str, mac: &str) -> Guest {
        let ns = format!("{}-g{}", self.ns, COUNTER.fetch_add(1, Ordering::SeqCst));
        run(Command::new("ip").args(["netns", "add", &ns]));
        let guest = Guest { ns };
        let peer = format!("{tap}p");
        self.ip(&["link", "set", &peer, "netns", &guest.ns]);
        guest.ip(&["link", "set", &peer, "name", "eth0"]);
        guest.ip(&["link", "set", "eth0", "address", mac]);
        guest.ip(&["link", "set", "lo", "up"]);
        guest.ip(&["link", "set", "eth0", "up"]);
        guest
    }
}

impl Guest {
    pub fn ip(&self, args: &[&str]) -> String {
        let out = run(Command::new("ip").arg("-n").arg(&self.ns).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command inside the guest's namespace (not asserting success).
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?} in {}: {e}", self.ns))
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

impl Guest {
    /// Moves the peer of another of the lab's taps into this guest as `name`, with `mac`.
    pub fn add_nic(&self, lab: &Lab, tap: &str, name: &str, mac: &str) {
        let peer = format!("{tap}p");
        lab.ip(&["link", "set", &peer, "netns", &self.ns]);
        self.ip(&["link", "set", &peer, "name", name]);
        self.ip(&["link", "set", name, "address", mac]);
        self.ip(&["link", "set", name, "up"]);
    }
}

// ---------------------------------------------------------------------------
// Helpers for the concurrency and crash tests (tests/concurrency_netns.rs,
// tests/crash_netns.rs): generated domains, a fake libvirt status directory,
// libvirt's side of the lifecycle, and the exact expected state.

/// A tiny deterministic PRNG (xorshift64*), so a failing seed can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A seed from `$name` if set, else from the clock (printed by the caller).
pub fn seed_from_env(name: &str) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// A number from `$name`, else `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone)]
pub struct TestNic {
    pub mac: String,
    pub tap: String,
    pub v4: String,
    pub v6: String,
    /// A routed prefix and its next hop (one of this NIC's addresses).
    pub prefix: Option<(String, String)>,
}

/// A generated domain: dual-stack, one to three NICs, some with routed prefixes.
#[derive(Debug, Clone)]
pub struct TestDomain {
    pub name: String,
    pub uuid: String,
    pub nics: Vec<TestNic>,
}

impl TestDomain {
    /// Domain number `i`: addresses 2.57.(100+k).(i+1) and 2001:678:3a4:(100+k)::(i+1)
    /// on NIC k; two NICs when i % 5 == 0, three when i % 10 == 3; a routed IPv4
    /// /28 on NIC 0 when i % 4 == 0, a routed IPv6 /56 on the last NIC when i % 4 == 1.
    pub fn generated(prefix: &str, i: usize) -> TestDomain {
        let n = if i % 10 == 3 {
            3
        } else if i % 5 == 0 {
            2
        } else {
            1
        };
        let mut nics: Vec<TestNic> = (0..n)
            .map(|k| TestNic {
                mac: format!("52:54:00:{:02x}:{:02x}:01", i, k),
                tap: format!("{prefix}{i}n{k}"),
                v4: format!("2.57.{}.{}", 100 + k, i + 1),
                v6: format!("2001:678:3a4:{}::{:x}", 100 + k, i + 1),
                prefix: None,
            })
            .collect();
        if i % 4 == 0 {
            let via = nics[0].v4.clone();
            nics[0].prefix = Some((format!("2.58.{i}.16/28"), via));
        } else if i % 4 == 1 {
            let last = nics.last_mut().expect("a NIC");
            last.prefix = Some((format!("2001:678:3a5:{:x}00::/56", i), last.v6.clone()));
        }
        TestDomain {
            name: format!("{prefix}-{i}"),
            uuid: format!("cccccccc-0000-4000-8000-{:012x}", i),
            nics,
        }
    }

    /// The same addresses as `other` (a conflicting domain: never both running).
    pub fn conflicting(prefix: &str, i: usize, other: &TestDomain) -> TestDomain {
        let mut d = TestDomain::generated(prefix, i);
        for (k, nic) in d.nics.iter_mut().enumerate() {
            if let Some(o) = other.nics.get(k) {
                nic.v4 = o.v4.clone();
                nic.v6 = o.v6.clone();
                nic.prefix = None;
            }
        }
        d
    }

    pub fn xml(&self) -> Vec<u8> {
        let mut meta = String::new();
        let mut ifaces = String::new();
        for n in &self.nics {
            meta.push_str(&format!(
                "      <cloudstack:nic mac=\"{}\">\n        <cloudstack:address address=\"{}\" prefix=\"32\" family=\"ipv4\"/>\n        <cloudstack:address address=\"{}\" prefix=\"128\" family=\"ipv6\"/>\n",
                n.mac, n.v4, n.v6
            ));
            if let Some((p, via)) = &n.prefix {
                meta.push_str(&format!(
                    "        <cloudstack:route prefix=\"{p}\" via=\"{via}\"/>\n"
                ));
            }
            meta.push_str("      </cloudstack:nic>\n");
            ifaces.push_str(&format!(
                "    <interface type='bridge'>\n      <mac address='{}'/>\n      <source bridge='cloudbr0'/>\n      <target dev='{}'/>\n    </interface>\n",
                n.mac, n.tap
            ));
        }
        format!(
            "<domain type='qemu'>\n  <name>{}</name>\n  <uuid>{}</uuid>\n  <metadata>\n    <cloudstack:network xmlns:cloudstack=\"https://download.cloudstack.org/libvirt/network\">\n{meta}    </cloudstack:network>\n  </metadata>\n  <memory unit='MiB'>32</memory>\n  <os><type arch='x86_64' machine='pc'>hvm</type></os>\n  <devices>\n{ifaces}  </devices>\n</domain>\n",
            self.name, self.uuid
        )
        .into_bytes()
    }

    /// `ip route show proto 52` lines (normalised) this domain's routes give, at `metric`.
    pub fn routes(&self, metric: u32) -> Vec<String> {
        let mut v = Vec::new();
        for n in &self.nics {
            v.push(format!("{} dev cloudbr0 scope link metric {metric}", n.v4));
            v.push(format!("{} dev cloudbr0 metric {metric}", n.v6));
            if let Some((p, via)) = &n.prefix {
                v.push(format!("{p} via {via} dev cloudbr0 metric {metric} onlink"));
            }
        }
        v
    }

    /// `ip neigh show nud permanent` lines (normalised).
    pub fn neighbours(&self) -> Vec<String> {
        let mut v = Vec::new();
        for n in &self.nics {
            let link_local = virt_l3::address::eui64_link_local(n.mac.parse().unwrap()).to_string();
            for a in [&n.v4, &n.v6, &link_local] {
                v.push(format!(
                    "{a} dev cloudbr0 lladdr {} PERMANENT proto 52",
                    n.mac
                ));
            }
        }
        v
    }

    /// The state files (relative paths) this domain's record and claims are.
    pub fn state_files(&self) -> Vec<String> {
        let mut v = vec![format!("domains/{}.json", self.uuid)];
        for n in &self.nics {
            v.push(format!("owners/{}", n.v4));
            v.push(format!("owners/{}", n.v6));
            v.push(format!("macs/{}", n.mac));
            if let Some((p, _)) = &n.prefix {
                v.push(format!("prefixes/{}", p.replace('/', "_")));
            }
        }
        v
    }

    /// The record virt-l3 should hold for this domain (without `since_ms`).
    pub fn record_json(&self, metric: u32) -> serde_json::Value {
        let nics: Vec<serde_json::Value> = self
            .nics
            .iter()
            .map(|n| {
                let prefixes: Vec<serde_json::Value> = n
                    .prefix
                    .iter()
                    .map(|(p, via)| serde_json::json!({"prefix": p, "via": via}))
                    .collect();
                let mut nic = serde_json::json!({
                    "mac": n.mac,
                    "bridge": "cloudbr0",
                    "tap": n.tap,
                    "addresses": [n.v4, n.v6],
                    // Dual-stack: the pinned (EUI-64) link-local.
                    "link_local": virt_l3::address::eui64_link_local(n.mac.parse().unwrap()).to_string(),
                });
                // Serialised only when there is one.
                if !prefixes.is_empty() {
                    nic["routed_prefixes"] = serde_json::Value::Array(prefixes);
                }
                nic
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "uuid": self.uuid,
            "nics": nics,
            "metric": metric,
            "protocol": 52,
            "standby": false,
        })
    }

    pub fn owner_text(&self) -> String {
        format!("{} {}", self.uuid, self.name)
    }
}

impl Lab {
    /// libvirt's status directory of this lab (`libvirt_status_dir`).
    pub fn status_dir(&self) -> PathBuf {
        self.dir.path().join("libvirt-qemu")
    }

    /// Writes libvirt's status file of a domain atomically, as libvirtd does.
    pub fn set_status(&self, name: &str, xml: &[u8], state: &str, reason: &str) {
        let body = format!(
            "<domstatus state='{state}' reason='{reason}' pid='4242'>\n{}\n</domstatus>\n",
            String::from_utf8_lossy(xml)
        );
        let tmp = self.status_dir().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body).expect("write status");
        std::fs::rename(tmp, self.status_dir().join(format!("{name}.xml"))).expect("rename status");
    }

    pub fn clear_status(&self, name: &str) {
        let _ = std::fs::remove_file(self.status_dir().join(format!("{name}.xml")));
    }

    /// Creates a domain's taps on cloudbr0, as libvirt does before the `start` hook.
    pub fn create_taps(&self, d: &TestDomain) {
        for n in &d.nics {
            self.add_tap(&n.tap, "cloudbr0");
        }
    }

    /// Deletes a domain's taps, as libvirt does after the `stopped` hook.
    pub fn delete_taps(&self, d: &TestDomain) {
        for n in &d.nics {
            let _ = Command::new("ip")
                .args(["-n", &self.ns, "link", "del", &n.tap])
                .output();
        }
    }

    /// Bridge ports of cloudbr0 and whether each is isolated, by name.
    pub fn bridge_ports(&self) -> std::collections::BTreeMap<String, bool> {
        let text = self.ip(&["-d", "-j", "link", "show", "master", "cloudbr0"]);
        let links: serde_json::Value = serde_json::from_str(&text).expect("ip -j link");
        let mut out = std::collections::BTreeMap::new();
        for l in links.as_array().expect("an array") {
            let name = l["ifname"].as_str().unwrap_or_default().to_string();
            let isolated = l["linkinfo"]["info_slave_data"]["isolated"]
                .as_bool()
                .unwrap_or(false);
            out.insert(name, isolated);
        }
        out
    }

    /// Every entry under the state directory's subdirectories, dot files
    /// (temporary files) included, sorted.
    pub fn all_state_files(&self) -> Vec<String> {
        let mut v = Vec::new();
        for sub in [
            "domains", "owners", "prefixes", "macs", "incoming", "stopping",
        ] {
            if let Ok(d) = std::fs::read_dir(self.state_dir().join(sub)) {
                for e in d.flatten() {
                    v.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
        v.sort();
        v
    }

    /// Asserts that the kernel and the state directory hold exactly what the
    /// `running` domains should have (metric 100, protocol 52, isolated taps), and
    /// that no other tap of `all` exists. Returns a description of the first difference.
    pub fn check_exact(&self, running: &[&TestDomain], all: &[TestDomain]) -> Result<(), String> {
        let mut routes: Vec<String> = running.iter().flat_map(|d| d.routes(100)).collect();
        routes.sort();
        let got = self.routes();
        if got != routes {
            return Err(format!("routes differ:\n{}", diff_lines(&routes, &got)));
        }
        let mut neigh: Vec<String> = running.iter().flat_map(|d| d.neighbours()).collect();
        neigh.sort();
        let got = self.neighbours();
        if got != neigh {
            return Err(format!("neighbours differ:\n{}", diff_lines(&neigh, &got)));
        }
        let ports = self.bridge_ports();
        for d in all {
            let runs = running.iter().any(|r| r.uuid == d.uuid);
            for n in &d.nics {
                match (runs, ports.get(&n.tap)) {
                    (true, Some(true)) | (false, None) => {}
                    (true, Some(false)) => return Err(format!("tap {} is not isolated", n.tap)),
                    (true, None) => return Err(format!("tap {} is missing", n.tap)),
                    (false, Some(_)) => {
                        return Err(format!("tap {} of a stopped domain exists", n.tap))
                    }
                }
            }
        }
        let mut files: Vec<String> = running.iter().flat_map(|d| d.state_files()).collect();
        files.sort();
        let got = self.all_state_files();
        if got != files {
            return Err(format!("state files differ:\n{}", diff_lines(&files, &got)));
        }
        for d in running {
            let path = self.state_dir().join(format!("domains/{}.json", d.uuid));
            let mut rec: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?,
            )
            .map_err(|e| format!("{} does not parse: {e}", path.display()))?;
            rec.as_object_mut().map(|o| o.remove("since_ms"));
            if rec != d.record_json(100) {
                return Err(format!(
                    "record of {} is {rec}, expected {}",
                    d.name,
                    d.record_json(100)
                ));
            }
            for f in d
                .state_files()
                .iter()
                .filter(|f| !f.starts_with("domains/"))
            {
                let target = std::fs::read_link(self.state_dir().join(f))
                    .map_err(|e| format!("claim {f} is not a symlink: {e}"))?;
                if target.to_string_lossy() != d.owner_text() {
                    return Err(format!(
                        "claim {f} names {target:?}, not {}",
                        d.owner_text()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Lines missing (-) and unexpected (+).
pub fn diff_lines(want: &[String], got: &[String]) -> String {
    let mut out = String::new();
    for w in want.iter().filter(|w| !got.contains(w)) {
        out.push_str(&format!("  - {w}\n"));
    }
    for g in got.iter().filter(|g| !want.contains(g)) {
        out.push_str(&format!("  + {g}\n"));
    }
    out
}
