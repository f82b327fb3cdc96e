//! Every result the commands print, as the exact text (or `--json` document)
//! they write on stdout. Errors are rendered by [`super::error::CliError`].

use std::fmt::Write;
use std::path::PathBuf;

use serde::Serialize;
use virt_l3::config::Config;
use virt_l3::nwfilter::define::Defined;
use virt_l3::plan::DomainPlan;
use virt_l3::security_group::{Outcome, RuleSet, Stored, Target};
use virt_l3::status::DomainStatus;

use super::error::CliError;

/// A pretty-printed JSON document and a newline.
pub fn json(value: &impl Serialize) -> Result<String, CliError> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// `plan`: the domain, its NICs and the `ip` commands its entries amount to.
pub fn plan(p: &DomainPlan, config: &Config, as_json: bool) -> Result<String, CliError> {
    let routes = p.routes(config.route_metric);
    let neighbours = p.neighbours();
    if as_json {
        return json(&serde_json::json!({
            "domain": p.name, "uuid": p.uuid, "nics": p.nics,
            "route_protocol": config.route_protocol,
            "routes": routes, "neighbours": neighbours,
        }));
    }
    let mut out = String::new();
    if p.nics.is_empty() {
        // What the hook accepts without reading further (no <uuid> needed).
        let _ = writeln!(
            out,
            "domain {}: no interface on a routed bridge, nothing to do",
            p.name
        );
        return Ok(out);
    }
    let _ = writeln!(out, "domain {} ({})", p.name, p.uuid);
    for n in &p.nics {
        let tap = n.tap.as_deref().unwrap_or("-");
        let _ = writeln!(out, "  nic {} on {} tap {tap}", n.mac, n.bridge);
    }
    for r in &routes {
        let _ = writeln!(
            out,
            "  ip route replace {r} proto {}",
            config.route_protocol
        );
    }
    for n in &neighbours {
        let _ = writeln!(out, "  ip neigh replace {n}");
    }
    Ok(out)
}

/// `status`: each routed domain and a mark for each of its entries.
pub fn status(report: &[DomainStatus], as_json: bool) -> Result<String, CliError> {
    if as_json {
        return json(&report);
    }
    let mut out = String::new();
    if report.is_empty() {
        out.push_str("no routed domains\n");
    }
    for d in report {
        let mark = match (
            d.entries.iter().any(|e| !e.present),
            !d.conflicts.is_empty(),
        ) {
            (false, false) => "ok",
            (true, false) => "MISSING ENTRIES",
            (false, true) => "CONFLICT",
            (true, true) => "MISSING ENTRIES, CONFLICT",
        };
        let standby = if d.standby {
            " (standby: incoming migration)"
        } else {
            ""
        };
        let _ = writeln!(out, "{} {} {mark}{standby}", d.name, d.uuid);
        if let Some(why) = &d.refused {
            let _ = writeln!(out, "  REFUSED CHANGE (routes kept as they were): {why}");
        }
        for e in &d.entries {
            let present = if e.present { "x" } else { " " };
            let _ = writeln!(out, "  [{present}] {}", e.entry);
        }
        for c in &d.conflicts {
            let _ = writeln!(out, "  conflict: another tool's {c}");
            let _ = writeln!(
                out,
                "    fix: stop that tool managing this address, then {}",
                c.remove
            );
        }
    }
    Ok(out)
}

/// `reconcile`: what was (or would be) changed. The errors go to stderr, see
/// [`reconcile_errors`].
pub fn reconcile(report: &virt_l3::reconcile::Report, as_json: bool) -> Result<String, CliError> {
    if as_json {
        return json(report);
    }
    let verb = if report.dry_run { "would" } else { "did" };
    let mut out = String::new();
    if report.changes.is_empty() {
        let _ = writeln!(out, "nothing to do ({} routed domains)", report.domains);
    }
    for c in &report.changes {
        let domain = c
            .domain
            .as_ref()
            .map(|d| format!(" (domain {d})"))
            .unwrap_or_default();
        let _ = writeln!(out, "{verb} {} {}{domain}", c.action, c.what);
    }
    Ok(out)
}

/// The errors of a text `reconcile` report, for stderr (the JSON holds them).
pub fn reconcile_errors(report: &virt_l3::reconcile::Report, as_json: bool) -> String {
    if as_json {
        return String::new();
    }
    report
        .errors
        .iter()
        .map(|e| format!("error: {e}\n"))
        .collect()
}

/// `check`: the items (format: docs/TROUBLESHOOTING.md).
pub fn check(report: &virt_l3::check::Report, as_json: bool) -> Result<String, CliError> {
    if as_json {
        return json(report);
    }
    Ok(virt_l3::check::render_text(report))
}

/// `firewall install`: whether the tables were (re)installed.
pub fn firewall_ensured(e: virt_l3::firewall::Ensured) -> String {
    match e {
        virt_l3::firewall::Ensured::Current => {
            "virt-l3's nftables tables are installed and current\n".into()
        }
        virt_l3::firewall::Ensured::Installed => "installed virt-l3's nftables tables\n".into(),
    }
}

/// `firewall install` with `[firewall] enabled = false`.
pub fn firewall_disabled() -> String {
    "the firewall is disabled ([firewall] enabled = false): removed virt-l3's nftables tables\n"
        .into()
}

/// `firewall remove`.
pub fn firewall_removed() -> String {
    "removed virt-l3's nftables tables\n".into()
}

/// The files a command wrote, one a line.
pub fn paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| format!("{}\n", p.display())).collect()
}

/// `nwfilter define`: each filter and whether libvirtd created or redefined it.
pub fn defined(outcomes: &[(String, Defined)]) -> String {
    let mut out = String::new();
    for (name, outcome) in outcomes {
        let _ = match outcome {
            Defined::Created => writeln!(out, "defined {name}"),
            Defined::Updated(uuid) => writeln!(out, "redefined {name} (uuid {uuid})"),
        };
    }
    out
}

/// `security-group set`: what happened to the rules.
pub fn sg_outcome(target: &Target, outcome: &Outcome) -> String {
    let who = target.label();
    match outcome {
        Outcome::Installed(a) => format!(
            "security group of {who} installed for {} address(es)\n",
            a.len()
        ),
        Outcome::NotEnforced => {
            format!("security group of {who} stored; not enforced (security_groups = false)\n")
        }
        Outcome::NotOnHost => format!(
            "security group of {who} stored; the domain does not run here: applied at its start\n"
        ),
    }
}

/// `security-group show`: the stored rules, one line each, or the JSON document.
pub fn sg_show(
    target: &Target,
    stored: Option<&Stored>,
    rules: &RuleSet,
    enforced: bool,
    as_json: bool,
) -> Result<String, CliError> {
    if as_json {
        return json(&serde_json::json!({
            "domain": target.name, "uuid": target.uuid, "enforced": enforced,
            "on_host": target.on_host, "addresses": target.addresses,
            "stored": stored, "rules": rules.rules,
        }));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "security group of {}{}",
        target.label(),
        if enforced {
            ""
        } else {
            " (not enforced: security_groups = false)"
        }
    );
    match stored {
        Some(s) => {
            let _ = writeln!(out, "  rules {}", virt_l3::plan::printable(&s.rules));
        }
        None => {
            out.push_str("  no rules set: CloudStack's default (ingress closed, egress open)\n")
        }
    }
    for r in &rules.rules {
        let nets: Vec<String> = r
            .ipv4
            .iter()
            .map(ToString::to_string)
            .chain(r.ipv6.iter().map(ToString::to_string))
            .collect();
        let what = match r.matches {
            virt_l3::security_group::Match::Any => String::new(),
            virt_l3::security_group::Match::Ports { first, last } => {
                format!(" ports {first}-{last}")
            }
            virt_l3::security_group::Match::Icmp { r#type, code } => format!(
                " type {} code {}",
                r#type.map_or("any".to_string(), |t| t.to_string()),
                code.map_or("any".to_string(), |c| c.to_string())
            ),
        };
        let _ = writeln!(
            out,
            "  {:?} {}{what} {}",
            r.direction,
            r.protocol,
            if nets.is_empty() {
                "(no network)".to_string()
            } else {
                nets.join(",")
            }
        );
    }
    Ok(out)
}
