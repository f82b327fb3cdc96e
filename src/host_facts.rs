//! The host facts a domain is planned against, read from the kernel. One step
//! for the hook (`prepare`, `start`, ...) and the `plan` / `guest-config`
//! commands, so that those refuse exactly what the hook refuses.

use std::collections::BTreeSet;

use crate::config::Config;
use crate::domain_xml::DomainXml;
use crate::kernel::{Kernel, KernelError};
use crate::plan::{candidate_addresses, has_routed_prefixes, managed_interfaces, HostFacts};

/// The host's addresses that matter to `dom`: only the addresses the domain
/// claims need checking, unless it routes whole prefixes: then every host
/// address matters. And the current MAC of each routed bridge the domain uses
/// (one link read per bridge), which none of its NICs may have.
pub async fn host_facts<K: Kernel>(
    kernel: &K,
    dom: &DomainXml,
    config: &Config,
) -> Result<HostFacts, KernelError> {
    let addresses = if has_routed_prefixes(dom) {
        kernel.host_addresses().await?
    } else {
        kernel.local_among(&candidate_addresses(dom)).await?
    };
    let bridges: BTreeSet<&str> = managed_interfaces(dom, config)
        .filter_map(|i| i.bridge.as_deref())
        .collect();
    let mut bridge_macs = Vec::new();
    for b in bridges {
        if let Some(mac) = kernel.link_mac(b).await? {
            bridge_macs.push((b.to_string(), mac));
        }
    }
    Ok(HostFacts {
        addresses,
        bridge_macs,
    })
}
