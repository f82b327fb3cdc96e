//! `virt-l3 check [--json] [OPTIONS]`: inspect this hypervisor item by item
//! (exit 0: ready, 1: not ready). Changes nothing.

use std::process::ExitCode;

use virt_l3::config::Config;

use super::error::CliError;
use super::output;
use super::support::runtime;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Print JSON instead of text (format: docs/TROUBLESHOOTING.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    options: Box<virt_l3::check::CheckOptions>,
}

impl CheckArgs {
    pub fn run(self, config: &Config) -> Result<ExitCode, CliError> {
        let report = runtime()?
            .block_on(virt_l3::check::check(config, &self.options))
            .map_err(CliError::Check)?;
        print!("{}", output::check(&report, self.json)?);
        Ok(if report.ready {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
