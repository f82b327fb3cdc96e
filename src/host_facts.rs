//! The host facts a domain is planned against, read from the kernel. One step
//! for the hook (`prepare`, `start`, ...) and the `plan` / `guest-config`
//! commands, so that those refuse exactly what the hook refuses.

use crate::domain_xml::DomainXml;
use crate::kernel::{Kernel, KernelError};
use crate::plan::{candidate_addresses, has_routed_prefixes, HostFacts};

/// The host's addresses that matter to `dom`: only the addresses the domain
/// claims need checking, unless it routes whole prefixes: then every host
/// address matters.
pub async fn host_facts<K: Kernel>(kernel: &K, dom: &DomainXml) -> Result<HostFacts, KernelError> {
    let addresses = if has_routed_prefixes(dom) {
        kernel.host_addresses().await?
    } else {
        kernel.local_among(&candidate_addresses(dom)).await?
    };
    Ok(HostFacts { addresses })
}
