//! The lab's namespace: `cloudbr0` with its taps, virt-l3 run inside it, and what the
//! kernel and the state directory then hold.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;

use super::{run, COUNTER};

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
