//! `virt-l3 refresh DOMAIN`: apply a change to a running domain (a NIC attached
//! or detached, live metadata) now, as `watch` does by itself. Exit 0 when
//! applied or nothing to do; 1 with one line naming the domain and the reason.

use std::process::ExitCode;

use virt_l3::config::Config;
use virt_l3::kernel::NetlinkKernel;

use super::error::CliError;
use super::support::runtime;

#[derive(clap::Args)]
pub struct RefreshArgs {
    /// The running domain, by name or UUID.
    domain: String,
}

impl RefreshArgs {
    pub fn run(self, config: &Config) -> Result<ExitCode, CliError> {
        runtime()?.block_on(async {
            let mut k = NetlinkKernel::connect()?;
            virt_l3::refresh::refresh(&mut k, config, &self.domain).await?;
            Ok(ExitCode::SUCCESS)
        })
    }
}
