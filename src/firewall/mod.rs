//! virt-l3's nftables tables (issue 14): host protection, protected networks,
//! reverse-path check, fail-closed bridge ports, link-local control frames.
//! See docs/FIREWALL.md for each chain and the facts measured on the kernel.
//!
//! - [`model`]: the pure model ([`Ruleset`], built from the configuration and [`HostNetworks`]);
//! - [`render`](mod@render): the model as one atomic `nft -f` transaction;
//! - [`nft`]: whole-table install/compare/remove through the `nft` binary;
//! - [`nfnetlink`]: the hook's path, set elements changed in-process;
//! - [`gather`]: the host's facts, read from the kernel.
//!
//! API for hook, watch and reconcile: [`ensure`], [`ensure_quick`],
//! [`ensure_present`], [`accept_port`],
//! [`forget_port`], [`render_for_host`].

pub mod gather;
pub mod model;
pub mod nfnetlink;
pub mod nft;
pub mod render;
pub mod settings;

pub use gather::gather;
pub use model::{HostNetworks, Ruleset};
pub use nft::{install, installed_matches, remove};
pub use render::{render, version, TABLE, TABLES};
pub use settings::{EntryError, FirewallConfig, HostService, Protected, Proto};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot {what}: {detail}")]
    Nft { what: String, detail: String },
    #[error("cannot {what}: {detail}")]
    Netlink { what: String, detail: String },
    #[error("cannot read the host's networks for the firewall: {0}")]
    Gather(String),
}

/// What [`ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// The tables were installed and current.
    Current,
    /// The tables were (re)installed.
    Installed,
}

/// The ruleset this host needs now: configuration + kernel facts, keeping the
/// ports the installed table has accepted.
pub async fn desired(config: &Config, fw: &FirewallConfig) -> Result<Ruleset, FirewallError> {
    let host = gather(config).await?;
    Ok(Ruleset::build(config, fw, &host))
}

/// Installs the tables unless they are installed and current (reconcile at
/// boot, the hook at `start`, `watch`). Keeps the accepted ports.
pub async fn ensure(config: &Config, fw: &FirewallConfig) -> Result<Ensured, FirewallError> {
    let r = desired(config, fw).await?;
    if installed_matches(&r)? {
        return Ok(Ensured::Current);
    }
    install(&r)?;
    Ok(Ensured::Installed)
}

/// [`ensure`] for the hook and `watch`: when every table is installed, intact
/// (its rules all there) and carries the version of this host's ruleset (with or
/// without `meta ibrname`), nothing is forked: two netlink dumps of the host's
/// networks and two of nftables. Otherwise [`ensure`].
pub async fn ensure_quick(config: &Config) -> Result<Ensured, FirewallError> {
    let host = gather::networks(config).await?;
    ensure_current(config, host).await
}

/// [`ensure_quick`] over an open rtnetlink connection (the hook's own).
pub async fn ensure_quick_with(
    handle: &rtnetlink::Handle,
    config: &Config,
) -> Result<Ensured, FirewallError> {
    let host = gather::networks_with(handle, config).await?;
    ensure_current(config, host).await
}

/// The hook's check at `start`: virt-l3's three tables exist and the bridge
/// table holds `accepted_ports` (one nfnetlink datagram, no dump of the host's
/// networks, no `nft` fork); otherwise [`ensure`]. Whether existing tables are
/// current for this host (a changed host network, a flushed chain) is left to
/// `watch` and reconcile, which run [`ensure_quick`] (docs/FIREWALL.md).
pub async fn ensure_present(config: &Config) -> Result<Ensured, FirewallError> {
    let families: Vec<u8> = TABLES
        .iter()
        .map(|(family, _)| nfnetlink::family(family))
        .collect();
    if nfnetlink::tables_present(
        TABLE,
        &families,
        nfnetlink::NFPROTO_BRIDGE,
        "accepted_ports",
    )? {
        return Ok(Ensured::Current);
    }
    ensure(config, &config.firewall).await
}

/// The hook's check alone, without the fallback: whether the installed tables
/// are current for this host (netlink only, never `nft`).
pub async fn quick_current(config: &Config) -> Result<bool, FirewallError> {
    let host = gather::networks(config).await?;
    quick_matches(&mut Ruleset::build(config, &config.firewall, &host))
}

async fn ensure_current(config: &Config, host: HostNetworks) -> Result<Ensured, FirewallError> {
    let mut r = Ruleset::build(config, &config.firewall, &host);
    if quick_matches(&mut r)? {
        return Ok(Ensured::Current);
    }
    ensure(config, &config.firewall).await
}

/// Whether the installed tables are current for `r` (either kernel capability).
fn quick_matches(r: &mut Ruleset) -> Result<bool, FirewallError> {
    let installed = nfnetlink::installed_tables(TABLE)?;
    if installed.len() < TABLES.len() {
        return Ok(false);
    }
    for meta in [false, true] {
        r.bridge_meta = meta;
        let (version, rules) = render::version_and_rules(r);
        let want = format!("{}{version}", render::COMMENT_PREFIX);
        let current = TABLES.iter().zip(rules).all(|(&(family, _), expected)| {
            installed.iter().any(|t| {
                t.family == nfnetlink::family(family)
                    && t.comment.as_deref() == Some(want.as_str())
                    // The netdev guard's one rule exists only with accepted ports.
                    && (t.rules == expected || (family == "netdev" && t.rules <= 1))
            })
        });
        if current {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The transaction [`ensure`] would install on this host (`virt-l3 firewall render`).
pub async fn render_for_host(
    config: &Config,
    fw: &FirewallConfig,
) -> Result<String, FirewallError> {
    Ok(render(&desired(config, fw).await?))
}

/// Lets a bridge port pass frames (the start hook, for its own taps): one
/// in-process netlink transaction, no `nft` fork.
pub fn accept_port(name: &str) -> Result<(), FirewallError> {
    accept_ports(&[name])
}

/// [`accept_port`] for several ports in one transaction.
pub fn accept_ports(names: &[&str]) -> Result<(), FirewallError> {
    nfnetlink::change_ifnames(
        nfnetlink::NFPROTO_BRIDGE,
        TABLE,
        "accepted_ports",
        names,
        true,
    )
}

/// Stops a port passing frames (the `stopped`/`release` hook); absent is fine.
pub fn forget_port(name: &str) -> Result<(), FirewallError> {
    nfnetlink::change_ifname(
        nfnetlink::NFPROTO_BRIDGE,
        TABLE,
        "accepted_ports",
        name,
        false,
    )
}

#[cfg(test)]
mod tests;
