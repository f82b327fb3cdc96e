//! `virt-l3 reconcile [--dry-run] [--json]`: make the kernel match the running domains.

use std::process::ExitCode;

use virt_l3::config::Config;
use virt_l3::kernel::NetlinkKernel;
use virt_l3::reconcile::{reconcile_scoped, Scope};

use super::error::CliError;
use super::output;
use super::support::runtime;

#[derive(clap::Args)]
pub struct ReconcileArgs {
    /// Report the changes without making them.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
    /// Read only the recorded entries, as the reconciles `watch` triggers do
    /// (no sweep of strays); for measuring that path.
    #[arg(long, hide = true)]
    records_only: bool,
}

impl ReconcileArgs {
    pub fn run(self, config: &Config) -> Result<ExitCode, CliError> {
        let report = runtime()?.block_on(async {
            let mut k = NetlinkKernel::connect()?;
            let scope = if self.records_only {
                Scope::Records
            } else {
                Scope::Sweep
            };
            Ok::<_, CliError>(reconcile_scoped(&mut k, config, self.dry_run, scope).await?)
        })?;
        print!("{}", output::reconcile(&report, self.json)?);
        eprint!("{}", output::reconcile_errors(&report, self.json));
        Ok(if report.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
