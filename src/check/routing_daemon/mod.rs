//! The routing daemon's items: `routing-daemon` (BIRD or FRR answers) and
//! `routing-config` (its configuration announces virt-l3's routes). The parsers of the
//! two configuration languages are in [`bird`] and [`frr`].

mod bird;
mod frr;

pub use bird::bird_selects;
pub use frr::frr_selects;

use super::run::run;
use super::{fail, ok, CheckOptions, Item};
use crate::config::Config;

/// Fix of `routing-daemon` when none answers.
const START_A_DAEMON: &str = "Start BIRD (systemctl enable --now bird) or FRR (bgpd on in /etc/frr/daemons; systemctl enable --now frr) with packaging/examples/bird.conf or frr.conf.";

/// Fix of `routing-config` when no configuration file is found.
const INSTALL_AN_EXAMPLE: &str = "Install packaging/examples/bird.conf as /etc/bird/bird.conf or packaging/examples/frr.conf as /etc/frr/frr.conf and fill in the @...@ placeholders.";

enum Daemon {
    Bird,
    /// FRR with its running configuration.
    Frr(String),
}

/// A configuration looked at (`BIRD (/etc/bird/bird.conf)`) and what is wrong with it.
type Source = (String, Result<(), String>);

fn bird_running(opts: &CheckOptions) -> bool {
    let sock = opts.bird_socket.to_string_lossy().into_owned();
    run(&opts.birdc, &["-s", &sock, "show", "status"])
        .is_some_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("BIRD"))
}

fn frr_running(opts: &CheckOptions) -> Option<String> {
    let mut args = Vec::new();
    if let Some(n) = &opts.frr_pathspace {
        args.extend(["-N", n.as_str()]);
    }
    args.extend(["-c", "show running-config"]);
    let o = run(&opts.vtysh, &args)?;
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    (o.status.success() && !text.trim().is_empty()).then_some(text)
}

/// `routing-daemon` then `routing-config`. `bridges`: the routed bridges now
/// (patterns of `bridges` expanded: FRR's `match interface` names one interface).
pub(super) fn routing_daemon(
    config: &Config,
    opts: &CheckOptions,
    bridges: &[String],
) -> Vec<Item> {
    let mut running = Vec::new();
    if bird_running(opts) {
        running.push(Daemon::Bird);
    }
    if let Some(c) = frr_running(opts) {
        running.push(Daemon::Frr(c));
    }
    let sources = sources(config, opts, &running, bridges);
    vec![
        daemon_item(opts, &running),
        config_item(config, opts, &sources, bridges),
    ]
}

fn daemon_item(opts: &CheckOptions, running: &[Daemon]) -> Item {
    if running.is_empty() {
        return fail(
            "routing-daemon",
            None,
            format!(
                "No routing daemon answers (BIRD on {}, FRR through {}): nothing announces the guests' routes to the fabric.",
                opts.bird_socket.display(),
                opts.vtysh.display()
            ),
            START_A_DAEMON.to_string(),
        );
    }
    let names: Vec<&str> = running
        .iter()
        .map(|d| match d {
            Daemon::Bird => "BIRD",
            Daemon::Frr(_) => "FRR",
        })
        .collect();
    ok(
        "routing-daemon",
        None,
        format!("{} running.", names.join(" and ")),
    )
}

/// The configuration: of each running daemon; with none running, of the files there are.
fn sources(
    config: &Config,
    opts: &CheckOptions,
    running: &[Daemon],
    bridges: &[String],
) -> Vec<Source> {
    let mut sources: Vec<Source> = Vec::new();
    let bird_file = |sources: &mut Vec<Source>| {
        let label = format!("BIRD ({})", opts.bird_config.display());
        match std::fs::read_to_string(&opts.bird_config) {
            Ok(t) => sources.push((label, bird_selects(&t, config.route_protocol))),
            Err(e) => sources.push((label, Err(format!("cannot read it: {e}")))),
        }
    };
    if running.is_empty() {
        if opts.bird_config.exists() {
            bird_file(&mut sources);
        }
        if let Ok(t) = std::fs::read_to_string(&opts.frr_config) {
            sources.push((
                format!("FRR ({})", opts.frr_config.display()),
                frr_selects(&t, bridges),
            ));
        }
    }
    for d in running {
        match d {
            Daemon::Bird => bird_file(&mut sources),
            Daemon::Frr(c) => sources.push((
                "FRR (running configuration)".to_string(),
                frr_selects(c, bridges),
            )),
        }
    }
    sources
}

fn config_item(
    config: &Config,
    opts: &CheckOptions,
    sources: &[Source],
    bridges: &[String],
) -> Item {
    let good: Vec<&String> = sources
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(l, _)| l)
        .collect();
    if !good.is_empty() {
        return ok(
            "routing-config",
            None,
            format!(
                "{} announces virt-l3's routes (protocol {}, IPv4 and IPv6).",
                good.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                config.route_protocol
            ),
        );
    }
    if sources.is_empty() {
        return fail(
            "routing-config",
            None,
            format!(
                "No routing daemon configuration found ({} or {}).",
                opts.bird_config.display(),
                opts.frr_config.display()
            ),
            INSTALL_AN_EXAMPLE.to_string(),
        );
    }
    fail(
        "routing-config",
        None,
        format!(
            "The routing daemon does not announce virt-l3's routes: {}.",
            sources
                .iter()
                .map(|(l, r)| format!(
                    "{l}: {}",
                    r.as_ref().err().map(String::as_str).unwrap_or("")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        announce_fix(config, bridges),
    )
}

/// Fix of `routing-config`: what BIRD's and FRR's configurations need.
fn announce_fix(config: &Config, bridges: &[String]) -> String {
    format!(
        "BIRD: a kernel protocol per family with `learn;` and `import where krt_source = {};`, and a BGP protocol exporting them (packaging/examples/bird.conf), then `birdc configure`. FRR: `redistribute kernel route-map VIRT-L3` in address-family ipv4 unicast and ipv6 unicast of `router bgp`, with `route-map VIRT-L3 permit 10` / `match interface {}` (packaging/examples/frr.conf).",
        config.route_protocol,
        bridges.join("` and `match interface ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_BIRD: &str = include_str!("../../../packaging/examples/bird.conf");
    const EXAMPLE_FRR: &str = include_str!("../../../packaging/examples/frr.conf");

    #[test]
    fn shipped_examples_pass() {
        assert_eq!(bird_selects(EXAMPLE_BIRD, 52), Ok(()));
        assert_eq!(frr_selects(EXAMPLE_FRR, &["cloudbr0".to_string()]), Ok(()));
    }
}
