//! `virt-l3 watch`: reconcile whenever routes, neighbours, bridges or libvirt's
//! status files change, until SIGTERM or SIGINT.

use std::process::ExitCode;

use virt_l3::config::Config;

use super::error::CliError;
use super::support::runtime;

#[derive(clap::Args)]
pub struct WatchArgs {}

impl WatchArgs {
    pub fn run(self, config: &Config) -> Result<ExitCode, CliError> {
        runtime()?.block_on(virt_l3::watch::watch(config, virt_l3::watch::termination()))?;
        Ok(ExitCode::SUCCESS)
    }
}
