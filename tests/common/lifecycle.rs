//! libvirt's side of the lifecycle in a lab (a fake status directory, taps created and
//! deleted) and the exact state expected of the running domains.

use std::path::PathBuf;
use std::process::Command;

use super::{diff_lines, Lab, TestDomain};

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
