//! Whole-table work through the `nft` binary (Debian's `nftables` package):
//! install, compare, remove, list the accepted ports. `VIRT_L3_NFT` names
//! another binary (tests).

use std::io::Write;
use std::process::{Command, Stdio};

use super::render::{self, COMMENT_PREFIX, TABLE, TABLES};
use super::{FirewallError, Ruleset};

fn binary() -> String {
    std::env::var("VIRT_L3_NFT").unwrap_or_else(|_| "nft".to_string())
}

/// Runs `nft ARGS` with `input` on stdin; its stdout, or an error naming `what`.
pub(crate) fn run(args: &[&str], input: Option<&str>, what: &str) -> Result<String, FirewallError> {
    let nft = binary();
    let fail = |detail: String| FirewallError::Nft {
        what: what.to_string(),
        detail,
    };
    let mut child = Command::new(&nft)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {nft}: {e}")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| fail(format!("cannot write to {nft}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("{nft} failed: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| l.starts_with("Error"))
            .or(err.lines().next())
            .map(str::to_string)
            .unwrap_or_else(|| format!("{nft} exited with {}", out.status));
        return Err(fail(crate::plan::printable(first.trim()).to_string()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Replaces virt-l3's tables with `r`, in one transaction.
pub fn install(r: &Ruleset) -> Result<(), FirewallError> {
    run(
        &["-f", "-"],
        Some(&render::render(r)),
        "install virt-l3's nftables tables",
    )
    .map(|_| ())
}

/// Whether every table is installed and carries `r`'s version.
pub fn installed_matches(r: &Ruleset) -> Result<bool, FirewallError> {
    let want = format!("comment \"{COMMENT_PREFIX}{}\"", render::version(r));
    let rendered = render::render(r);
    for (family, name) in TABLES {
        // `nft flush table` keeps a table's comment and sets but empties its chains.
        let expected = expected_rules(&rendered, family);
        match run(
            &["list", "table", family, name],
            None,
            "list virt-l3's tables",
        ) {
            // The netdev guard's one rule follows the accepted ports only at a full
            // install (`accept_port` changes the set, not the guard's devices).
            Ok(text)
                if text.lines().any(|l| l.trim() == want)
                    && (rule_count(&static_part(&text)) == expected
                        || (family == "netdev" && rule_count(&static_part(&text)) <= 1)) => {}
            Ok(_) => return Ok(false),
            Err(FirewallError::Nft { detail, .. }) if detail.contains("No such file") => {
                return Ok(false)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A listed table without what changes at run time: set and map bodies (the
/// accepted ports, the security groups' elements, issue 16).
pub(crate) fn static_part(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let t = line.trim();
        if skipping {
            skipping = t != "}";
            continue;
        }
        if t.ends_with('{') && (t.starts_with("set ") || t.starts_with("map ")) {
            // The header stays (the rendering's count includes it), the body goes.
            out.push_str(line);
            out.push_str("\n}\n");
            skipping = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The number of rules of table `family virt_l3` in a rendering.
pub(crate) fn expected_rules(rendered: &str, family: &str) -> usize {
    let start = rendered
        .find(&format!("table {family} {TABLE} {{"))
        .unwrap_or(0);
    let end = rendered[start..]
        .find("\n}\n")
        .map_or(rendered.len(), |e| start + e);
    rule_count(&rendered[start..end])
}

/// The number of rules in a table's text (one line each; hook lines excluded).
pub(crate) fn rule_count(text: &str) -> usize {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            !["type ", "comment", "set ", "map ", "chain ", "table "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .filter(|l| {
            [" accept", " drop", "jump ", "vmap ", " return"]
                .iter()
                .any(|w| l.contains(w))
                || *l == "return"
        })
        .count()
}

/// Removes every table virt-l3 owns (nothing to do when absent).
pub fn remove() -> Result<(), FirewallError> {
    let mut text = String::new();
    for (family, name) in TABLES {
        text.push_str(&format!(
            "table {family} {name}\ndelete table {family} {name}\n"
        ));
    }
    run(
        &["-f", "-"],
        Some(&text),
        "remove virt-l3's nftables tables",
    )
    .map(|_| ())
}

/// The ports in the installed `accepted_ports` set (empty when the table is absent).
pub fn accepted_ports() -> Result<Vec<String>, FirewallError> {
    let text = match run(
        &["list", "set", "bridge", TABLE, "accepted_ports"],
        None,
        "list the ports virt-l3's nftables tables accept",
    ) {
        Ok(t) => t,
        Err(FirewallError::Nft { detail, .. }) if detail.contains("No such file") => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e),
    };
    Ok(parse_elements(&text))
}

/// The quoted names of a listed set's `elements = { ... }` (which may span lines).
pub(crate) fn parse_elements(text: &str) -> Vec<String> {
    let Some(start) = text.find("elements = {") else {
        return Vec::new();
    };
    let rest = &text[start..];
    let body = &rest[..rest.find('}').unwrap_or(rest.len())];
    body.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Whether this kernel matches `meta ibrname` (CONFIG_NFT_BRIDGE_META): a
/// check-only transaction (`nft -c`), nothing stays.
pub fn probe_bridge_meta() -> bool {
    let text = "table bridge virt_l3_probe {\n\tchain c {\n\t\ttype filter hook prerouting priority filter;\n\t\tmeta ibrname \"probe\" accept\n\t}\n}\n";
    run(&["-c", "-f", "-"], Some(text), "probe meta ibrname").is_ok()
}
