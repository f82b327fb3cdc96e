//! The libvirt qemu hook: one process per lifecycle step, domain XML on stdin.
//! See ../shared/docs/libvirt-hooks.md (the contract) and README.md (the table).
//!
//! prepare, migrate, restore: validate, change nothing.
//! start: record and install (rolled back on failure); started: ensure again.
//! reconnect: install what can be installed, never fail (a failure kills the VM).
//! stopped, release: remove by the record; never fail.

use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::domain_xml::{DomainXml, XmlError};
use crate::host_facts::host_facts;
use crate::kernel::{Kernel, KernelError, NetlinkKernel};
use crate::plan::{
    candidate_addresses, display_name, is_valid_uuid, plan, routes_nothing, Checks, DomainPlan,
    HostFacts, PlanError, Problem,
};
use crate::reconcile::{standing_at_install, Standing};
use crate::routing::{route_domain, unroute_domain, HostSettings, OnFailure, RoutingError};
use crate::state::{Record, StateDir};

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
    /// The kernel, the state directory or routing failed (`source` is one of
    /// [`RoutingError`]'s variants, which says which).
    #[error("virt-l3 cannot route domain {domain}: {source}")]
    Route {
        domain: String,
        #[source]
        source: RoutingError,
    },
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

/// The error of a step that failed in the kernel, the state directory or routing.
fn failed<E: Into<RoutingError>>(domain: &str) -> impl Fn(E) -> HookError + '_ {
    move |e| HookError::Route {
        domain: domain.to_string(),
        source: e.into(),
    }
}

/// Runs one hook step. Returns Err only when the step should fail (exit non-zero);
/// steps whose failure libvirt ignores or that must not kill a VM log and return Ok.
pub fn run(config: &Config, inv: &Invocation, xml: &[u8]) -> Result<(), HookError> {
    run_with(config, inv, xml, NetlinkKernel::connect)
}

/// [`run`] with another kernel: `connect` is called, inside the step's executor, only
/// when the step needs the kernel.
pub fn run_with<K: Kernel>(
    config: &Config,
    inv: &Invocation,
    xml: &[u8],
    connect: impl FnOnce() -> Result<K, KernelError>,
) -> Result<(), HookError> {
    debug!(domain = %display_name(&inv.domain), op = %inv.op_text, subop = %inv.subop, extra = %inv.extra, "hook called");
    let result = match inv.op {
        Operation::Other => Ok(()),
        Operation::Stopped | Operation::Release => remove(config, inv, xml, connect),
        _ => apply_or_check(config, inv, xml, connect),
    };
    match result {
        Err(e) if !inv.op.failure_aborts() => {
            error!(domain = %display_name(&inv.domain), op = %inv.op_text, "{e}");
            Ok(())
        }
        other => other,
    }
}

/// Runs a step's kernel work. The hook's kernel calls are blocking netlink
/// exchanges behind async signatures (the `Kernel` trait is shared with
/// `watch`, which runs on tokio), so a plain executor does: no tokio runtime
/// (an epoll instance, an eventfd, a signal pipe, its tasks) in a hook process.
fn block_on<F: std::future::Future>(step: F) -> F::Output {
    futures::executor::block_on(step)
}

fn apply_or_check<K: Kernel>(
    config: &Config,
    inv: &Invocation,
    xml: &[u8],
    connect: impl FnOnce() -> Result<K, KernelError>,
) -> Result<(), HookError> {
    let dom = DomainXml::parse(xml).map_err(|source| HookError::Xml {
        domain: display_name(&inv.domain),
        source,
    })?;
    if routes_nothing(&dom, config) {
        debug!(domain = %display_name(&dom.name), "no interface on a routed bridge; nothing to do");
        return Ok(());
    }
    let state = StateDir::new(&config.state_dir);
    block_on(async {
        let mut kernel = connect().map_err(failed(&dom.name))?;
        let host = host_facts(&kernel, &dom, config)
            .await
            .map_err(failed(&dom.name))?;
        let step = Step {
            config,
            op: inv.op,
            dom: &dom,
            host: &host,
            state: &state,
        };
        match inv.op {
            Operation::Prepare | Operation::Restore | Operation::Migrate => {
                step.check(&mut kernel).await
            }
            Operation::Start | Operation::Started | Operation::Reconnect => {
                step.route(&mut kernel).await
            }
            _ => Ok(()),
        }
    })
    .or_else(|e| {
        if inv.op == Operation::Reconnect {
            // A failing reconnect kills a running VM: log loudly and let it live.
            error!(domain = %display_name(&inv.domain), "reconnect could not restore every route (reconcile will retry): {e}");
            Ok(())
        } else {
            Err(e)
        }
    })
}

/// One prepare/start-like step of one domain.
struct Step<'a> {
    config: &'a Config,
    op: Operation,
    dom: &'a DomainXml,
    host: &'a HostFacts,
    state: &'a StateDir,
}

impl Step<'_> {
    fn plan(&self) -> Result<DomainPlan, PlanError> {
        let checks = Checks {
            require_filter: self.config.require_nwfilter,
        };
        plan(self.dom, self.config, self.host, self.state, checks)
    }

    /// prepare, restore, migrate: validate, change nothing (but mark an incoming
    /// migration, whose routes are standby until promoted).
    async fn check<K: Kernel>(&self, kernel: &mut K) -> Result<(), HookError> {
        let p = self.plan()?;
        check_host(kernel, &p).await?;
        if self.op == Operation::Migrate {
            let name = &self.dom.name;
            let _lock = self.state.lock().map_err(failed(name))?;
            self.state.mark_incoming(&p.uuid).map_err(failed(name))?;
        }
        Ok(())
    }

    /// start, started, reconnect: record and install.
    async fn route<K: Kernel>(&self, kernel: &mut K) -> Result<(), HookError> {
        let name = &self.dom.name;
        let state = self.state;
        // Taking the lock creates the state directory the first time. On a host
        // without one, refuse before that, so that a refused domain leaves it
        // exactly as it was (not even created). Otherwise taking the lock changes
        // nothing, and the domain is planned once, under the lock.
        let checked_early = self.op != Operation::Reconnect && !state.has_lock_file();
        if checked_early {
            let p = self.plan()?;
            check_host(kernel, &p).await?;
        }
        let _lock = state.lock().map_err(failed(name))?;
        // Planned under the lock: ownership may have changed since prepare.
        let p = self.plan_under_lock()?;
        if self.op != Operation::Reconnect && !checked_early {
            check_host(kernel, &p).await?;
        }
        if self.op == Operation::Start {
            // A restart after a stop whose `release` never came.
            state.clear_stopping(&p.uuid).map_err(failed(name))?;
        }
        let previous = state.record(&p.uuid).map_err(failed(name))?;
        let record = record_for(self.config, state, p, previous.as_ref());
        let on_failure = if self.op == Operation::Start {
            OnFailure::RollBack
        } else {
            OnFailure::Keep
        };
        if self.config.manage_gateways {
            add_gateways(kernel, self.config, &record.plan).await;
        }
        let mut host = HostSettings::from_config(self.config);
        if !matches!(self.op, Operation::Start | Operation::Reconnect) {
            // The security group is applied at start (an incoming migration's
            // standby start too: the destination has the rules before the VM
            // runs there) and at reconnect; `started` does not repeat it.
            host.security_groups = None;
        }
        route_domain(kernel, state, &record, previous, host, on_failure)
            .await
            .map_err(failed(name))
    }

    /// The plan; at reconnect, a domain that no longer plans keeps what was
    /// recorded for it (the VM already runs).
    fn plan_under_lock(&self) -> Result<DomainPlan, HookError> {
        match self.plan() {
            Ok(p) => Ok(p),
            Err(e) if self.op == Operation::Reconnect => {
                warn!(domain = %display_name(&self.dom.name), "{e}; re-applying the recorded state instead");
                match self.dom.uuid.as_deref().map(|u| self.state.record(u)) {
                    Some(Ok(Some(r))) => Ok(r.plan),
                    _ => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// `manage_gateways`: the gateway addresses on the domain's bridges before its
/// routes (a bridge created just before the VM), at start and at a refresh.
/// Failures are logged: the routes do not depend on them, and reconcile retries.
pub(crate) async fn add_gateways<K: Kernel>(kernel: &mut K, config: &Config, plan: &DomainPlan) {
    let mut bridges: Vec<&str> = plan.nics.iter().map(|n| n.bridge.as_str()).collect();
    bridges.sort_unstable();
    bridges.dedup();
    for b in bridges {
        match kernel.add_gateways(b, &config.gateways, true).await {
            Ok(done) => done.iter().for_each(|d| info!("{d}")),
            Err(e) => warn!("{e}"),
        }
    }
}

/// Refuses a domain this host cannot route now: virt-l3 lacks `CAP_NET_ADMIN`,
/// or a routed bridge is missing, not a bridge, or down. At prepare, before
/// libvirt allocates anything, and again at start, before anything is recorded
/// or installed.
pub(crate) async fn check_host<K: Kernel>(kernel: &mut K, p: &DomainPlan) -> Result<(), HookError> {
    let mut problems = Vec::new();
    if !kernel.has_net_admin() {
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
                let problem = kernel
                    .bridge_problem(&nic.bridge)
                    .await
                    .map_err(failed(&p.name))?;
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

/// The record a start installs: standby (see [`standing_at_install`]) for an
/// incoming migration, or a re-apply of a standby record with the same plan.
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
    let Standing { metric, standby } = standing_at_install(config, standby);
    Record {
        metric,
        protocol: config.route_protocol,
        standby,
        since_ms: crate::state::now_ms(),
        plan,
    }
}

fn remove<K: Kernel>(
    config: &Config,
    inv: &Invocation,
    xml: &[u8],
    connect: impl FnOnce() -> Result<K, KernelError>,
) -> Result<(), HookError> {
    let state = StateDir::new(&config.state_dir);
    let domain = inv.domain.as_str();
    // The record decides; the XML only tells which domain (and may be unreadable).
    let dom = DomainXml::parse(xml).ok();
    let uuid = dom
        .as_ref()
        .and_then(|d| d.uuid.clone())
        .filter(|u| is_valid_uuid(u));
    if !state.has_lock_file() {
        // Records are written only under the lock, which is created first: without
        // it there is nothing to remove, and nothing to create either.
        debug!(domain = %display_name(&inv.domain), "no state directory: nothing to remove");
        return Ok(());
    }
    let _lock = state.lock().map_err(failed(domain))?;
    if let Some(u) = &uuid {
        // Between `stopped` and libvirt removing the status file, reconcile would
        // otherwise see a running domain without a record and adopt it again.
        // libvirt removes the file before `release`; should it still be there (a
        // caller with another order), the mark stays, and reconcile clears it once
        // the file is gone.
        let marked = if inv.op == Operation::Stopped {
            state.mark_stopping(u)
        } else if status_file_present(config, domain) {
            debug!(domain = %inv.domain, "libvirt's status file is still there: the stopping mark stays");
            Ok(())
        } else {
            state.clear_stopping(u)
        };
        marked.map_err(failed(domain))?;
        state.clear_refused(u).map_err(failed(domain))?;
    }
    let record = match &uuid {
        Some(u) => state.record(u),
        None => state.record_by_name(&inv.domain),
    }
    .map_err(failed(domain))?;
    if inv.op == Operation::Stopped {
        remove_security_group(
            config,
            &state,
            &inv.domain,
            uuid.as_deref(),
            record.as_ref(),
        );
    }
    let Some(record) = record else {
        if let (Some(u), Some(dom)) = (&uuid, &dom) {
            release_orphan_claims(&state, u, dom).map_err(failed(domain))?;
        }
        debug!(domain = %display_name(&inv.domain), "no record: nothing to remove");
        return Ok(());
    };
    block_on(async {
        let mut kernel = connect().map_err(failed(domain))?;
        unroute_domain(&mut kernel, &state, &record)
            .await
            .map_err(failed(domain))
    })
}

/// `stopped`: the domain's security-group elements and its stored rules go
/// (CloudStack programs them again at the next start). Never fails: logged.
fn remove_security_group(
    config: &Config,
    state: &StateDir,
    domain: &str,
    uuid: Option<&str>,
    record: Option<&crate::state::Record>,
) {
    use crate::security_group as sg;
    let target = match record {
        Some(r) => sg::Target::from_record(r),
        None => sg::Target {
            name: Some(domain.to_string()),
            uuid: uuid.map(str::to_string),
            addresses: Vec::new(),
            on_host: false,
        },
    };
    // With security groups off, only a group stored earlier needs removing
    // (`remove_domain` loads it again either way).
    let needed = config.security_groups
        || match sg::load(state, &target) {
            Ok(s) => s.is_some(),
            Err(e) => {
                warn!("{e}");
                true
            }
        };
    if !needed {
        return;
    }
    if let Err(e) = sg::remove_domain(state, &target) {
        warn!("{e}");
    }
}

/// Whether libvirt's status file of the domain named `name` (`<name>.xml` in
/// its status directory) still exists.
fn status_file_present(config: &Config, name: &str) -> bool {
    let plain = std::path::Path::new(name).file_name() == Some(std::ffi::OsStr::new(name));
    plain
        && config
            .libvirt_status_dir
            .join(format!("{name}.xml"))
            .symlink_metadata()
            .is_ok()
}

/// A start killed between claiming the addresses and writing the record left
/// claims naming this domain: the XML says which ones to look at.
fn release_orphan_claims(
    state: &StateDir,
    uuid: &str,
    dom: &DomainXml,
) -> Result<(), crate::state::StateError> {
    state.clear_incoming(uuid)?;
    let prefixes = dom
        .nic_metadata
        .iter()
        .flat_map(|n| n.routes.iter())
        .filter_map(|r| r.prefix.as_deref()?.parse::<ipnet::IpNet>().ok());
    let macs = dom
        .interfaces
        .iter()
        .filter_map(|i| i.mac.as_deref()?.parse::<crate::address::Mac>().ok());
    state.release_claims(uuid, candidate_addresses(dom), prefixes, macs)
}
