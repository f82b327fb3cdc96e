//! The command line's errors: each displays as the exact line printed on
//! stderr and knows the exit code it ends the process with.

use std::path::PathBuf;
use std::process::ExitCode;

use virt_l3::config::ConfigError;
use virt_l3::domain_xml::XmlError;
use virt_l3::firewall::FirewallError;
use virt_l3::guest_config::GuestConfigError;
use virt_l3::hook::HookError;
use virt_l3::kernel::KernelError;
use virt_l3::nwfilter::NwfilterError;
use virt_l3::plan::PlanError;
use virt_l3::reconcile::ReconcileError;
use virt_l3::refresh::RefreshError;
use virt_l3::security_group::SecurityGroupError;
use virt_l3::status::StatusError;
use virt_l3::watch::WatchError;

/// Sentences that name virt-l3 themselves (a refused domain, the hook's errors)
/// are printed as they are; the others get a `virt-l3: ` prefix.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration cannot be loaded (exit 2).
    #[error("virt-l3: {0}")]
    Config(#[from] ConfigError),
    #[error("virt-l3 cannot read the domain XML from stdin: {0}")]
    Stdin(#[source] std::io::Error),
    #[error("virt-l3: {0}")]
    Xml(#[from] XmlError),
    /// A refused domain.
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    GuestConfig(#[from] GuestConfigError),
    #[error("{}", nwfilter_line(.0))]
    Nwfilter(#[from] NwfilterError),
    #[error(transparent)]
    Hook(#[from] HookError),
    /// A hook step failed before it could run (no configuration, no XML): the
    /// line is printed, and the exit code fails only the steps libvirt lets fail.
    #[error("{error}")]
    HookStep { error: Box<CliError>, aborts: bool },
    #[error("virt-l3: {0}")]
    Kernel(#[from] KernelError),
    #[error("virt-l3: {0}")]
    Reconcile(#[from] ReconcileError),
    #[error("virt-l3: {0}")]
    Status(#[from] StatusError),
    /// `refresh`: its errors name virt-l3 and the domain.
    #[error(transparent)]
    Refresh(#[from] RefreshError),
    #[error("virt-l3: {0}")]
    SecurityGroup(#[from] SecurityGroupError),
    #[error("virt-l3: {0}")]
    Watch(#[from] WatchError),
    #[error("virt-l3: {0}")]
    Firewall(#[from] FirewallError),
    /// `check` could not inspect the host at all.
    #[error("virt-l3: {0}")]
    Check(String),
    #[error("virt-l3: {0}")]
    Json(#[from] serde_json::Error),
    #[error("virt-l3: cannot start a tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("virt-l3: `--format both` writes two files: give --out-dir DIR")]
    BothNeedsOutDir,
    #[error("virt-l3: cannot create {}: {source}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("virt-l3: cannot write {}: {source}", .path.display())]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("virt-l3: cannot write the domain XML to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("virt-l3: cannot write the man pages to {}: {source}", .dir.display())]
    Manpages {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_) => ExitCode::from(2),
            CliError::HookStep { aborts: false, .. } => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        }
    }
}

/// A refused domain and a domain XML that cannot be rewritten name virt-l3 already.
fn nwfilter_line(e: &NwfilterError) -> String {
    match e {
        NwfilterError::Plan(_)
        | NwfilterError::Inject { .. }
        | NwfilterError::ForeignFilter { .. } => e.to_string(),
        NwfilterError::Xml(_)
        | NwfilterError::Write { .. }
        | NwfilterError::Define { .. }
        | NwfilterError::OtherDomain { .. } => format!("virt-l3: {e}"),
    }
}
