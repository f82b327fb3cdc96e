//! Generated domains for the concurrency and crash tests (tests/concurrency_netns.rs,
//! tests/crash_netns.rs): their XML, routes, neighbours and state files.

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
