//! The libvirt qemu hook: one process per lifecycle step, domain XML on stdin.
//! See ../shared/docs/libvirt-hooks.md (the contract) and README.md (the table).
//!
//! prepare, migrate, restore: validate, change nothing.
//! start: record and install (rolled back on failure); started: ensure again.
//! reconnect: install what can be installed, never fail (a failure kills the VM).
//! stopped, release: remove by the record; never fail.

use tracing::{debug, error, warn};

use crate::config::Config;
use crate::domain_xml::{DomainXml, XmlError};
use crate::host_facts::host_facts;
use crate::netlink::{Kernel, KernelError};
use crate::plan::{
    candidate_addresses, display_name, is_valid_uuid, managed_interfaces, plan, Checks, DomainPlan,
    PlanError, Problem,
};
use crate::routing::{route_domain, unroute_domain, HostSettings, OnFailure, RoutingError};
use crate::state::{Record, StateDir, StateError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Prepare,
    Start,
    Started,
    Stopped,
    Release,
    Migrate,
    Restore,
    Reconnect,
    /// Anything else (attach, future operations): nothing to do.
    Other,
}

impl Operation {
    pub fn parse(op: &str) -> Operation {
        match op {
            "prepare" => Operation::Prepare,
            "start" => Operation::Start,
            "started" => Operation::Started,
            "stopped" => Operation::Stopped,
            "release" => Operation::Release,
            "migrate" => Operation::Migrate,
            "restore" => Operation::Restore,
            "reconnect" => Operation::Reconnect,
            _ => Operation::Other,
        }
    }

    /// Whether a non-zero exit of the hook aborts (or kills) the VM.
    pub fn failure_aborts(self) -> bool {
        matches!(
            self,
            Operation::Prepare
                | Operation::Start
                | Operation::Started
                | Operation::Migrate
                | Operation::Restore
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("virt-l3 cannot read the XML of domain {domain}: {source}")]
    Xml {
        domain: String,
        #[source]
        source: XmlError,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("virt-l3 cannot route domain {domain}: {source}")]
    Kernel {
        domain: String,
        #[source]
        source: KernelError,
    },
    #[error("virt-l3 cannot route domain {domain}: {source}")]
    State {
        domain: String,
        #[source]
        source: StateError,
    },
    #[error("virt-l3 cannot route domain {domain}: {source}")]
    Routing {
        domain: String,
        #[source]
        source: RoutingError,
    },
    #[error("virt-l3 cannot start a tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The arguments libvirt passes: `DOMAIN OP SUBOP EXTRA`.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub domain: String,
    pub op: Operation,
    pub op_text: String,
    pub subop: String,
    pub extra: String,
}

/// Runs one hook step. Returns Err only when the step should fail (exit non-zero);
/// steps whose failure libvirt ignores or that must not kill a VM log and return Ok.
pub fn run(config: &Config, inv: &Invocation, xml: &[u8]) -> Result<(), HookError> {
    debug!(domain = %inv.domain, op = %inv.op_text, subop = %inv.subop, extra = %inv.extra, "hook called");
    let result = match inv.op {
        Operation::Other => Ok(()),
        Operation::Stopped | Operation::Release => remove(config, inv, xml),
        _ => apply_or_check(config, inv, xml),
    };
    match result {
        Err(e) if !inv.op.failure_aborts() => {
            error!(domain = %inv.domain, op = %inv.op_text, "{e}");
            Ok(())
        }
        other => other,
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, HookError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(HookError::Runtime)
}

fn apply_or_check(config: &Config, inv: &Invocation, xml: &[u8]) -> Result<(), HookError> {
    let dom = DomainXml::parse(xml).map_err(|source| HookError::Xml {
        domain: display_name(&inv.domain),
        source,
    })?;
    if managed_interfaces(&dom, config).next().is_none()
        && dom.nic_metadata.is_empty()
        && dom.flat_addresses.is_empty()
    {
        debug!(domain = %dom.name, "no interface on a routed bridge; nothing to do");
        return Ok(());
    }
    let state = StateDir::new(&config.state_dir);
    let name = dom.name.clone();
    let kernel_err = |source| HookError::Kernel {
        domain: name.clone(),
        source,
    };
    let state_err = |source| HookError::State {
        domain: name.clone(),
        source,
    };
    let rt = runtime()?;
    rt.block_on(async {
        let mut kernel = Kernel::connect().map_err(kernel_err)?;
        let host = host_facts(&kernel, &dom).await.map_err(kernel_err)?;
        let checks = Checks {
            require_filter: config.require_nwfilter,
        };
        match inv.op {
            Operation::Prepare | Operation::Restore | Operation::Migrate => {
                let p = plan(&dom, config, &host, &state, checks)?;
                check_host(&mut kernel, &p).await?;
                if inv.op == Operation::Migrate {
                    // Routes installed before the VM runs here are standby until promoted.
                    let _lock = state.lock().map_err(state_err)?;
                    state.mark_incoming(&p.uuid).map_err(state_err)?;
                }
                Ok(())
            }
            Operation::Start | Operation::Started | Operation::Reconnect => {
                // Taking the lock creates the state directory the first time. On a host
                // without one, refuse before that, so that a refused domain leaves it
                // exactly as it was (not even created). Otherwise taking the lock changes
                // nothing, and the domain is planned once, under the lock.
                let checked_early = inv.op != Operation::Reconnect && !state.has_lock_file();
                if checked_early {
                    let p = plan(&dom, config, &host, &state, checks)?;
                    check_host(&mut kernel, &p).await?;
                }
                let _lock = state.lock().map_err(state_err)?;
                // Planned under the lock: ownership may have changed since prepare.
                let p = match plan(&dom, config, &host, &state, checks) {
                    Ok(p) => p,
                    Err(e) if inv.op == Operation::Reconnect => {
                        // The VM already runs: keep serving what was recorded for it.
                        warn!(domain = %name, "{e}; re-applying the recorded state instead");
                        match dom.uuid.as_deref().map(|u| state.record(u)) {
                            Some(Ok(Some(r))) => r.plan,
                            _ => return Err(e.into()),
                        }
                    }
                    Err(e) => return Err(e.into()),
                };
                if inv.op != Operation::Reconnect && !checked_early {
                    check_host(&mut kernel, &p).await?;
                }
                if inv.op == Operation::Start {
                    // A restart after a stop whose `release` never came.
                    state.clear_stopping(&p.uuid).map_err(state_err)?;
                }
                let previous = state.record(&p.uuid).map_err(state_err)?;
                let record = record_for(config, &state, p, previous.as_ref());
                let on_failure = if inv.op == Operation::Start {
                    OnFailure::RollBack
                } else {
                    OnFailure::Keep
                };
                route_domain(&mut kernel, &state, &record, previous, HostSettings::from_config(config), on_failure)
                    .await
                    .map_err(|source| HookError::Routing {
                        domain: name.clone(),
                        source,
                    })
            }
            _ => Ok(()),
        }
    })
    .or_else(|e| {
        if inv.op == Operation::Reconnect {
            // A failing reconnect kills a running VM: log loudly and let it live.
            error!(domain = %inv.domain, "reconnect could not restore every route (reconcile will retry): {e}");
            Ok(())
        } else {
            Err(e)
        }
    })
}

/// Whether this process may change the network: `CAP_NET_ADMIN` in its effective
/// set (`/proc/self/status`; when that cannot be read, assume so and let the
/// kernel say).
fn has_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .map_or(true, |caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// Refuses a domain this host cannot route now: virt-l3 lacks `CAP_NET_ADMIN`,
/// or a routed bridge is missing, not a bridge, or down. At prepare, before
/// libvirt allocates anything, and again at start, before anything is recorded
/// or installed.
async fn check_host(kernel: &mut Kernel, p: &DomainPlan) -> Result<(), HookError> {
    let mut problems = Vec::new();
    if !has_net_admin() {
        problems.push(Problem {
            nic: None,
            text:
                "virt-l3 runs without CAP_NET_ADMIN, so it could not install the domain's routes \
                   (libvirt runs its hooks as root; check the capabilities the daemon runs with)"
                    .to_string(),
        });
    }
    let mut checked: Vec<(&str, Option<String>)> = Vec::new();
    for nic in &p.nics {
        let problem = match checked.iter().find(|(b, _)| *b == nic.bridge) {
            Some((_, problem)) => problem.clone(),
            None => {
                let problem = kernel.bridge_problem(&nic.bridge).await.map_err(|source| {
                    HookError::Kernel {
                        domain: p.name.clone(),
                        source,
                    }
                })?;
                checked.push((&nic.bridge, problem.clone()));
                problem
            }
        };
        if let Some(text) = problem {
            problems.push(Problem {
                nic: Some(format!("NIC {} on {}", nic.mac, nic.bridge)),
                text,
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(HookError::Plan(PlanError {
            domain: p.name.clone(),
            problems,
        }))
    }
}

fn record_for(
    config: &Config,
    state: &StateDir,
    plan: DomainPlan,
    previous: Option<&Record>,
) -> Record {
    let standby = state.is_incoming(&plan.uuid)
        || previous
            .as_ref()
            .is_some_and(|r| r.standby && r.plan == plan);
    Record {
        metric: if standby {
            config.standby_metric
        } else {
            config.route_metric
        },
        protocol: config.route_protocol,
        standby,
        since_ms: crate::state::now_ms(),
        plan,
    }
}

fn remove(config: &Config, inv: &Invocation, xml: &[u8]) -> Result<(), HookError> {
    let state = StateDir::new(&config.state_dir);
    let domain = inv.domain.clone();
    let state_err = |source| HookError::State {
        domain: domain.clone(),
        source,
    };
    // The record decides; the XML only tells which domain (and may be unreadable).
    let dom = DomainXml::parse(xml).ok();
    let uuid = dom
        .as_ref()
        .and_then(|d| d.uuid.clone())
        .filter(|u| is_valid_uuid(u));
    if !state.has_lock_file() {
        // Records are written only under the lock, which is created first: without
        // it there is nothing to remove, and nothing to create either.
        debug!(domain = %inv.domain, "no state directory: nothing to remove");
        return Ok(());
    }
    let _lock = state.lock().map_err(state_err)?;
    if let Some(u) = &uuid {
        // Between `stopped` and libvirt removing the status file, reconcile would
        // otherwise see a running domain without a record and adopt it again.
        let marked = if inv.op == Operation::Stopped {
            state.mark_stopping(u)
        } else {
            state.clear_stopping(u)
        };
        marked.map_err(state_err)?;
    }
    let record = match &uuid {
        Some(u) => state.record(u).map_err(state_err)?,
        None => state.record_by_name(&inv.domain).map_err(state_err)?,
    };
    let Some(record) = record else {
        if let (Some(u), Some(dom)) = (&uuid, &dom) {
            state.clear_incoming(u).map_err(state_err)?;
            // A start killed between claiming the addresses and writing the record
            // left claims naming this domain: the XML says which ones to look at.
            let prefixes = dom
                .nic_metadata
                .iter()
                .flat_map(|n| n.routes.iter())
                .filter_map(|r| r.prefix.as_deref()?.parse::<ipnet::IpNet>().ok());
            state
                .release_claims(u, candidate_addresses(dom), prefixes)
                .map_err(state_err)?;
        }
        debug!(domain = %inv.domain, "no record: nothing to remove");
        return Ok(());
    };
    let rt = runtime()?;
    rt.block_on(async {
        let mut kernel = Kernel::connect().map_err(|source| HookError::Kernel {
            domain: domain.clone(),
            source,
        })?;
        unroute_domain(&mut kernel, &state, &record)
            .await
            .map_err(|source| HookError::Routing {
                domain: domain.clone(),
                source,
            })
    })
}
