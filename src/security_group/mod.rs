//! Security groups on the routed path (issue 16): CloudStack's ingress/egress
//! rules, stateful, IPv4 and IPv6, in virt-l3's nftables `inet` table.
//! See docs/SECURITY-GROUPS.md.
//!
//! - [`model`]: the rules (pure);
//! - [`parse`]: CloudStack's rule string (pure);
//! - [`elements`](mod@elements): one VM's rules as elements of the global sets (pure);
//! - [`render`](mod@render): one VM's set-element transaction as nft text (pure);
//! - [`apply`]: the effects: one in-process netlink transaction per VM, the stored rules.

pub mod apply;
pub mod elements;
pub mod model;
pub mod parse;
pub mod render;

pub use apply::{
    apply_domain, clear, load, remove_domain, render_for, resolve, set, Outcome, Stored, Target,
};
pub use model::{Direction, Match, Protocol, Rule, RuleSet};
pub use parse::{parse_rules, ParseError};

use crate::firewall::FirewallError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum SecurityGroupError {
    #[error("security group rules for domain {domain} refused: {source}; nothing was changed")]
    Refused {
        domain: String,
        #[source]
        source: ParseError,
    },
    #[error("cannot change the security group of domain {domain} in nftables: {source}")]
    Nft {
        domain: String,
        #[source]
        source: FirewallError,
    },
    #[error("the stored security group of domain {domain} is corrupt: {message}")]
    Corrupt { domain: String, message: String },
    #[error(transparent)]
    State(#[from] StateError),
}

#[cfg(test)]
mod tests;
