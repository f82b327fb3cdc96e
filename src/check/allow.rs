//! The address policy: without `allow`, a domain may claim any address the
//! host does not use itself, an upstream router's or a BGP neighbour's included
//! (when those are not on-link on the host), so a mis-allocated address pulls
//! the host's own traffic into a guest.

use super::{ok, warn, Item};
use crate::config::Config;

/// Warns when `allow` is empty.
pub(super) fn allow_list(config: &Config) -> Item {
    if config.allow.is_empty() {
        return warn(
            "allow",
            None,
            "No `allow` prefixes are configured: a domain may claim any routable address the host does not use itself, including an upstream router's or a BGP neighbour's that is not on-link here.".to_string(),
            "List the prefixes your guests' addresses come from in the configuration, e.g. `allow = [\"203.0.113.0/24\", \"2001:db8:100::/48\"]` (every address and routed prefix must then lie inside one of them).".to_string(),
        );
    }
    let list: Vec<String> = config.allow.iter().map(ToString::to_string).collect();
    ok(
        "allow",
        None,
        format!("Guests' addresses must lie inside {}.", list.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Status;

    #[test]
    fn an_empty_allow_list_warns_with_the_fix() {
        let item = allow_list(&Config::default());
        assert_eq!(item.status, Status::Warn);
        assert!(
            item.fix.as_deref().unwrap().contains("allow = ["),
            "{item:?}"
        );
        let config = Config {
            allow: vec!["203.0.113.0/24".parse().unwrap()],
            ..Config::default()
        };
        let item = allow_list(&config);
        assert_eq!(item.status, Status::Ok);
        assert!(item.summary.contains("203.0.113.0/24"));
    }
}
