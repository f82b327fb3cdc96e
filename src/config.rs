//! virt-l3's configuration: a TOML file, every key optional, unknown keys refused.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::address::Mac;

/// Where the configuration is read from when neither `--config` nor
/// `VIRT_L3_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/virt-l3/config.toml";

/// The route protocol number that marks virt-l3's routes and neighbours.
/// 52 is free in iproute2's `rt_protos`, the kernel's `RTPROT_*` and FRR's
/// zebra range (186..=198).
pub const DEFAULT_ROUTE_PROTOCOL: u8 = 52;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    // One line: TOML's messages quote keys, which may hold tabs or newlines (fuzzing).
    #[error("the configuration file {path} is invalid: {}", crate::plan::text::printable(.message))]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Bridges whose interfaces virt-l3 routes: names and patterns (a name's start
    /// followed by `*`, as nftables' interface wildcards), e.g. `["cloudbr0", "brdr-*"]`;
    /// a pattern covers every kernel bridge it matches, including bridges created
    /// later. Every other interface is left alone.
    pub bridges: Vec<String>,
    /// Where per-domain records and address ownership live (tmpfs: gone at reboot,
    /// like the routes themselves).
    pub state_dir: PathBuf,
    /// libvirt's live status directory, read (never written) by reconcile and watch.
    pub libvirt_status_dir: PathBuf,
    /// Route protocol number written on every route and neighbour virt-l3 installs.
    pub route_protocol: u8,
    /// Metric of the routes of a running VM.
    pub route_metric: u32,
    /// Metric of a VM that just arrived by live migration and runs here, for
    /// `arrived_hold_seconds`: preferred over the source's leaving routes, not
    /// over a source that still announces itself as running.
    pub arrived_metric: u32,
    /// How long an arrived VM keeps `arrived_metric` before `route_metric`.
    pub arrived_hold_seconds: u64,
    /// Metric of a VM's routes while it leaves by live migration (paused for the
    /// final switch-over): still preferred over the destination's standby routes.
    pub leaving_metric: u32,
    /// Metric of the routes installed for an incoming live migration before the
    /// VM runs here; upstream prefers the source's (lower) metric until promotion.
    pub standby_metric: u32,
    /// The guests' on-link gateways (configured on every routed bridge).
    pub gateways: Vec<IpAddr>,
    /// When not empty, every VM address and routed prefix must lie inside one of these.
    pub allow: Vec<IpNet>,
    /// No VM address or routed prefix may touch these.
    pub deny: Vec<IpNet>,
    /// Refuse, at `prepare`, a routed NIC that does not carry virt-l3's nwfilter.
    pub require_nwfilter: bool,
    /// Prefix of the per-NIC filters virt-l3 renders: `<nwfilter_name>-<mac as 12 hex digits>`.
    pub nwfilter_name: String,
    /// MAC address of the routed bridges (the guests' gateway at layer 2), identical on
    /// every hypervisor so that live migration keeps guests' neighbour caches valid.
    /// When set, the rendered filters only let a guest send unicast frames to this MAC
    /// and only let it receive frames from it: no layer-2 path between guests even
    /// without port isolation. When unset, that property rests on port isolation alone.
    /// `"derive"`: each bridge gets its own MAC derived from its name
    /// ([`crate::plan::bridge_names::derived_mac`]), the same on every hypervisor.
    pub gateway_mac: Option<GatewayMac>,
    /// Put the gateway addresses (`gateways`: IPv4 as /32, IPv6 link-local as /64
    /// without duplicate address detection) on every routed bridge virt-l3 pins.
    /// Off by default: existing hosts configure them in their network configuration;
    /// recommended with bridge patterns, whose bridges come and go.
    pub manage_gateways: bool,
    /// Set bridge port isolation on routed taps.
    pub port_isolation: bool,
    /// Turn off IPv4 ICMP redirects (`all` and each routed bridge) when routing a VM:
    /// guest-to-guest traffic hairpins through the gateway and must not be redirected.
    pub disable_redirects: bool,
    /// Reconcile leaves alone, for this long, a record whose domain has no
    /// libvirt status file yet (a domain between its `start` hook and QEMU running).
    pub reconcile_grace_seconds: u64,
    /// Log level (tracing filter syntax), overridden by `VIRT_L3_LOG`.
    pub log_level: String,
    /// DNS servers written into the guests' network configuration by
    /// `virt-l3 guest-config` (none when empty).
    pub guest_nameservers: Vec<IpAddr>,
    /// Which IPv6 link-local address each NIC may use (docs/SECURITY-MODEL.md):
    /// `eui64` (default) the one derived from its MAC, `metadata` the one its
    /// CloudStack metadata names (`<link-local address=.../>`), `any` every
    /// fe80::/10 source (weaker: a guest can claim another guest's link-local).
    pub link_local: LinkLocal,
    /// Enforce security groups (issue 16, docs/SECURITY-GROUPS.md): every running VM
    /// gets its rules, or CloudStack's default (ingress closed) when none are known.
    /// Off by default: a host without a cloud controller must not find every VM closed.
    pub security_groups: bool,
    /// virt-l3's nftables tables (`[firewall]`, docs/FIREWALL.md): fail-closed
    /// bridge ports and the host's protection from its guests, on by default.
    #[serde(default)]
    pub firewall: crate::firewall::settings::FirewallConfig,
}

/// The guests' gateway MAC: one fixed value for every routed bridge, or one per
/// bridge derived from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayMac {
    Fixed(Mac),
    Derive,
}

impl GatewayMac {
    /// The MAC of bridge `bridge`.
    pub fn for_bridge(self, bridge: &str) -> Mac {
        match self {
            GatewayMac::Fixed(m) => m,
            GatewayMac::Derive => crate::plan::bridge_names::derived_mac(bridge),
        }
    }
}

impl Serialize for GatewayMac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            GatewayMac::Fixed(m) => m.serialize(s),
            GatewayMac::Derive => s.serialize_str("derive"),
        }
    }
}

impl std::str::FromStr for GatewayMac {
    type Err = String;
    fn from_str(s: &str) -> Result<GatewayMac, String> {
        if s == "derive" {
            return Ok(GatewayMac::Derive);
        }
        s.parse()
            .map(GatewayMac::Fixed)
            .map_err(|()| format!("invalid gateway_mac {s:?}: a MAC address or \"derive\""))
    }
}

impl<'de> Deserialize<'de> for GatewayMac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<GatewayMac, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Where a NIC's pinned IPv6 link-local address comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkLocal {
    /// The modified EUI-64 address of the NIC's MAC (RFC 4291 appendix A).
    #[default]
    Eui64,
    /// The `<link-local address=.../>` element of the NIC's CloudStack metadata.
    Metadata,
    /// Not pinned: any fe80::/10 source (the behaviour before pinning; weaker).
    Any,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bridges: vec!["cloudbr0".to_string()],
            state_dir: PathBuf::from("/run/virt-l3"),
            libvirt_status_dir: PathBuf::from("/run/libvirt/qemu"),
            route_protocol: DEFAULT_ROUTE_PROTOCOL,
            route_metric: 100,
            arrived_metric: 1500,
            arrived_hold_seconds: 5,
            leaving_metric: 2000,
            standby_metric: 4000,
            reconcile_grace_seconds: 30,
            gateways: vec![
                IpAddr::from([169, 254, 0, 1]),
                IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 1]),
            ],
            allow: Vec::new(),
            deny: Vec::new(),
            require_nwfilter: true,
            nwfilter_name: "virt-l3-nic".to_string(),
            gateway_mac: None,
            manage_gateways: false,
            port_isolation: true,
            disable_redirects: true,
            log_level: "warn".to_string(),
            guest_nameservers: Vec::new(),
            link_local: LinkLocal::Eui64,
            security_groups: false,
            firewall: crate::firewall::settings::FirewallConfig::default(),
        }
    }
}

impl Config {
    /// Parses a configuration text; `path` only names the source in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        config.check(path)?;
        Ok(config)
    }

    /// Loads the configuration: `explicit` (from `--config`), else `VIRT_L3_CONFIG`,
    /// else the default path. A missing default file means defaults; a missing file
    /// that was asked for explicitly is an error.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, asked) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => match std::env::var_os("VIRT_L3_CONFIG") {
                Some(p) if !p.is_empty() => (PathBuf::from(p), true),
                _ => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
            },
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::from_toml(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !asked => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if self.bridges.is_empty() {
            return Err(invalid(
                "`bridges` must name at least one routed bridge".into(),
            ));
        }
        for b in &self.bridges {
            let stem = b.strip_suffix('*').unwrap_or(b);
            if stem.is_empty()
                || b.len() > 15
                || stem.contains(['/', ' ', '\0', '*', '?', '[', ']'])
            {
                return Err(invalid(format!(
                    "`bridges` holds an invalid interface name or pattern {b:?} (a name, or the start of names followed by `*`)"
                )));
            }
        }
        if matches!(self.route_protocol, 0..=4) {
            return Err(invalid(format!(
                "`route_protocol` {} is reserved by the kernel; pick a number no other daemon uses",
                self.route_protocol
            )));
        }
        if !(self.route_metric < self.arrived_metric
            && self.arrived_metric < self.leaving_metric
            && self.leaving_metric < self.standby_metric)
        {
            return Err(invalid(format!(
                "metrics must order route_metric ({}) < arrived_metric ({}) < leaving_metric ({}) < standby_metric ({})",
                self.route_metric, self.arrived_metric, self.leaving_metric, self.standby_metric
            )));
        }
        let n = &self.nwfilter_name;
        if n.is_empty()
            || n.len() > 64
            || !n.starts_with(|c: char| c.is_ascii_alphabetic())
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(format!(
                "`nwfilter_name` {n:?} must start with a letter and hold only letters, digits, '-' and '_' (at most 64)"
            )));
        }
        if let Some(GatewayMac::Fixed(m)) = self.gateway_mac {
            if m.is_multicast() || m.is_zero() {
                return Err(invalid(format!(
                    "`gateway_mac` {m} must be a unicast, non-zero MAC address"
                )));
            }
        }
        Ok(())
    }

    /// Whether `bridge` is named by `bridges` (a name or a matching pattern).
    pub fn is_routed_bridge(&self, bridge: &str) -> bool {
        self.bridges
            .iter()
            .any(|b| crate::plan::bridge_names::glob_matches(b, bridge))
    }

    /// The routed bridges among `existing` (the kernel's bridges), with every
    /// literal name of `bridges` (existing or not), sorted and deduplicated.
    pub fn routed_bridges_among<'a>(
        &self,
        existing: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        let mut out: Vec<String> = self
            .bridges
            .iter()
            .filter(|b| !crate::plan::bridge_names::is_pattern(b))
            .cloned()
            .collect();
        out.extend(
            existing
                .into_iter()
                .filter(|n| self.is_routed_bridge(n))
                .map(String::from),
        );
        out.sort();
        out.dedup();
        out
    }

    /// The MAC bridge `bridge` should have, when one is configured.
    pub fn gateway_mac_for(&self, bridge: &str) -> Option<Mac> {
        self.gateway_mac.map(|g| g.for_bridge(bridge))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = Config::from_toml("bridges = [\"br-pub\"]\nroute_metric = 7\n", Path::new("x"))
            .unwrap();
        assert_eq!(c.bridges, vec!["br-pub"]);
        assert_eq!(c.route_metric, 7);
        assert_eq!(c.state_dir, PathBuf::from("/run/virt-l3"));
        assert_eq!(c.route_protocol, DEFAULT_ROUTE_PROTOCOL);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("bridgez = [\"x\"]\n", Path::new("/etc/x.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("bridgez"), "{msg}");
        assert!(msg.contains("/etc/x.toml"), "{msg}");
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(
            Config::from_toml("", Path::new("x")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn lists_parse() {
        let c = Config::from_toml(
            "allow = [\"192.0.2.0/24\", \"2001:db8::/32\"]\ndeny = [\"192.0.2.128/25\"]\ngateways = [\"169.254.0.1\"]\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.allow.len(), 2);
        assert_eq!(c.deny[0].to_string(), "192.0.2.128/25");
        assert_eq!(c.gateways.len(), 1);
    }

    #[test]
    fn standby_metric_must_be_worse() {
        let e = Config::from_toml("route_metric = 10\nstandby_metric = 5\n", Path::new("x"))
            .unwrap_err();
        assert!(e.to_string().contains("standby_metric"));
    }

    #[test]
    fn bridge_patterns_and_derived_gateway_mac() {
        let c = Config::from_toml(
            "bridges = [\"cloudbr0\", \"brdr-*\"]\ngateway_mac = \"derive\"\nmanage_gateways = true\n",
            Path::new("x"),
        )
        .unwrap();
        assert!(c.is_routed_bridge("cloudbr0") && c.is_routed_bridge("brdr-7"));
        assert!(!c.is_routed_bridge("cloudbr1") && !c.is_routed_bridge("virbr0"));
        assert_eq!(
            c.routed_bridges_among(["brdr-2", "virbr0", "brdr-1"]),
            ["brdr-1", "brdr-2", "cloudbr0"]
        );
        assert_eq!(c.gateway_mac, Some(GatewayMac::Derive));
        assert_eq!(
            c.gateway_mac_for("brdr-1"),
            Some(crate::plan::bridge_names::derived_mac("brdr-1"))
        );
        assert!(c.manage_gateways);
        let fixed =
            Config::from_toml("gateway_mac = \"02:00:00:00:00:01\"\n", Path::new("x")).unwrap();
        assert_eq!(
            fixed.gateway_mac_for("any").unwrap().to_string(),
            "02:00:00:00:00:01"
        );
        let e = Config::from_toml("gateway_mac = \"derived\"\n", Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("derive"), "{e}");
        for bad in ["br[0-9]", "br?", "*", "br*x", "b**"] {
            let text = format!("bridges = [{bad:?}]\n");
            assert!(Config::from_toml(&text, Path::new("x")).is_err(), "{bad}");
        }
    }

    #[test]
    fn firewall_section() {
        let c = Config::from_toml(
            "[firewall]\nenabled = false\nhost_allow = [\"tcp/80@169.254.169.254\"]\n",
            Path::new("x"),
        )
        .unwrap();
        assert!(!c.firewall.enabled);
        assert_eq!(
            c.firewall.host_allow[0].to_string(),
            "tcp/80@169.254.169.254"
        );
        assert!(
            Config::default().firewall.enabled,
            "the firewall is on by default"
        );
        for (text, named) in [
            (
                "[firewall]\nprotected_networks = [\"management\"]\n",
                "\"management\"",
            ),
            (
                "[firewall]\nhost_allow = [\"tcp/99999\"]\n",
                "\"tcp/99999\"",
            ),
            ("[firewall]\nhost_allow = [\"ssh\"]\n", "\"ssh\""),
            ("[firewall]\nenable = true\n", "enable"),
        ] {
            let e = Config::from_toml(text, Path::new("/etc/x.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(named) && e.contains("/etc/x.toml"), "{e}");
        }
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let e = Config::load(Some(Path::new("/nonexistent/virt-l3.toml"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/virt-l3.toml"));
    }
}
