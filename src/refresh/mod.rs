//! `refresh`: a running domain changed (a NIC attached or detached, live
//! metadata), and libvirt ran no hook. Plan its status XML
//! (`libvirt_status_dir/NAME.xml`) with the hook's checks and apply the
//! difference to its record under the state lock: [`decide`] (pure) says what,
//! [`crate::routing`] does it (record first; a previous record's stale entries
//! and claims are removed).
//!
//! A change virt-l3 refuses changes nothing for the running VM: its routes stay
//! as recorded, the refusal is logged and noted beside the record
//! (`refused/<uuid>`, shown by `status`) until a later refresh succeeds or the
//! domain stops.

use std::path::Path;

use tracing::{info, warn};

use crate::config::Config;
use crate::domain_xml::{DomainXml, XmlError};
use crate::hook::{add_gateways, check_host, HookError};
use crate::host_facts::host_facts;
use crate::kernel::{Kernel, KernelError};
use crate::plan::{display_name, is_valid_uuid, routes_nothing};
use crate::reconcile::{running_domains, ReconcileError};
use crate::routing::{route_domain, unroute_domain, HostSettings, OnFailure, RoutingError};
use crate::state::{now_ms, StateDir, StateError};

pub mod decide;

pub use decide::{decide, Decision};

/// What a refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// Nothing to do: the record matches the domain (or it routes nothing).
    Unchanged,
    /// The record and the kernel now match the domain.
    Routed,
    /// The domain routes nothing any more: its entries were removed.
    Unrouted,
    /// The domain is stopping (its `stopped` hook ran): left alone.
    Stopping,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("virt-l3 finds no running domain {domain} in libvirt's status directory {dir}")]
    NotRunning { domain: String, dir: String },
    #[error("virt-l3 cannot refresh domain {domain}: {source}")]
    Status {
        domain: String,
        #[source]
        source: ReconcileError,
    },
    #[error("virt-l3 cannot read the status file of domain {domain}: {source}")]
    Xml {
        domain: String,
        #[source]
        source: XmlError,
    },
    #[error("virt-l3 cannot refresh domain {domain}: it has no valid UUID")]
    NoUuid { domain: String },
    /// The change is refused; the domain's routes stay as they were.
    #[error("{reason} (a change to the running domain: its routes stay as they were)")]
    Refused {
        domain: String,
        reason: String,
        /// Not noted before with this reason (`watch` logs only these).
        first: bool,
    },
    /// The host cannot route the domain now (a bridge missing, no CAP_NET_ADMIN...).
    #[error(transparent)]
    Host(#[from] HookError),
    #[error("virt-l3 cannot refresh domain {domain}: {source}")]
    Route {
        domain: String,
        #[source]
        source: RoutingError,
    },
}

fn failed<E: Into<RoutingError>>(domain: &str) -> impl Fn(E) -> RefreshError + '_ {
    move |e| RefreshError::Route {
        domain: display_name(domain),
        source: e.into(),
    }
}

/// Refreshes the running domain named `target` (a name or a UUID).
pub async fn refresh<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    target: &str,
) -> Result<Refreshed, RefreshError> {
    let dir = &config.libvirt_status_dir;
    let running = running_domains(dir).map_err(|source| RefreshError::Status {
        domain: display_name(target),
        source,
    })?;
    let found = running
        .into_iter()
        .find(|r| r.xml.name == target || r.xml.uuid.as_deref() == Some(target));
    match found {
        Some(r) => refresh_domain(kernel, config, &r.xml).await,
        None => Err(RefreshError::NotRunning {
            domain: display_name(target),
            dir: dir.display().to_string(),
        }),
    }
}

/// Refreshes the domain of one status file (for `watch`): `Ok(None)` when the
/// file is gone or is not a running domain's.
pub async fn refresh_file<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    path: &Path,
) -> Result<Option<Refreshed>, RefreshError> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(None);
    };
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dom = DomainXml::parse(&bytes).map_err(|source| RefreshError::Xml {
        domain: display_name(&name),
        source,
    })?;
    if dom.run_state.is_none() {
        return Ok(None);
    }
    refresh_domain(kernel, config, &dom).await.map(Some)
}

/// Plans a running domain's status XML and applies the difference.
pub async fn refresh_domain<K: Kernel>(
    kernel: &mut K,
    config: &Config,
    dom: &DomainXml,
) -> Result<Refreshed, RefreshError> {
    let name = dom.name.as_str();
    let uuid = match dom.uuid.as_deref() {
        Some(u) if is_valid_uuid(u) => u,
        _ => {
            return Err(RefreshError::NoUuid {
                domain: display_name(name),
            })
        }
    };
    let state = StateDir::new(&config.state_dir);
    if routes_nothing(dom, config) && state.record(uuid).ok().flatten().is_none() {
        // Not virt-l3's (most status file writes on a mixed host): no lock, no lookups.
        return Ok(Refreshed::Unchanged);
    }
    let host = host_facts(kernel, dom, config)
        .await
        .map_err(failed::<KernelError>(name))?;
    let _lock = state.lock().map_err(failed::<StateError>(name))?;
    if state.stopping().iter().any(|u| u == uuid) {
        return Ok(Refreshed::Stopping);
    }
    let previous = state.record(uuid).map_err(failed::<StateError>(name))?;
    let incoming = state.is_incoming(uuid);
    let decision = decide(
        config,
        dom,
        &host,
        &state,
        previous.as_ref(),
        incoming,
        now_ms(),
    );
    let done = match decision {
        Decision::Nothing => Refreshed::Unchanged,
        Decision::Refuse(e) => return Err(refuse(&state, name, uuid, e.to_string())),
        Decision::Unroute(prev) => {
            unroute_domain(kernel, &state, &prev)
                .await
                .map_err(failed(name))?;
            Refreshed::Unrouted
        }
        Decision::Route(record) => {
            if let Err(e) = check_host(kernel, &record.plan).await {
                return Err(match e {
                    HookError::Plan(p) => refuse(&state, name, uuid, p.to_string()),
                    other => RefreshError::Host(other),
                });
            }
            if config.manage_gateways {
                add_gateways(kernel, config, &record.plan).await;
            }
            let settings = HostSettings::from_config(config);
            route_domain(kernel, &state, &record, previous, settings, OnFailure::Keep)
                .await
                .map_err(failed(name))?;
            info!(domain = %display_name(name), uuid, "refreshed");
            Refreshed::Routed
        }
    };
    state
        .clear_refused(uuid)
        .map_err(failed::<StateError>(name))?;
    Ok(done)
}

/// Notes a refusal and returns it as the error (logging is the caller's:
/// `watch` logs a new one, the command prints it).
fn refuse(state: &StateDir, name: &str, uuid: &str, reason: String) -> RefreshError {
    let first = match state.note_refused(uuid, name, &reason) {
        Ok(new) => new,
        Err(e) => {
            warn!(domain = %display_name(name), "cannot note the refusal: {e}");
            true
        }
    };
    RefreshError::Refused {
        domain: display_name(name),
        reason,
        first,
    }
}
