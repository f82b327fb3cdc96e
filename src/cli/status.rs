//! `virt-l3 status [--json]`: every routed domain and whether its entries are in
//! the kernel (exit 3 when some are missing).

use std::process::ExitCode;

use virt_l3::config::Config;
use virt_l3::kernel::NetlinkKernel;
use virt_l3::state::StateDir;

use super::error::CliError;
use super::output;
use super::support::runtime;

#[derive(clap::Args)]
pub struct StatusArgs {
    #[arg(long)]
    json: bool,
}

impl StatusArgs {
    pub fn run(self, config: &Config) -> Result<ExitCode, CliError> {
        let state = StateDir::new(&config.state_dir);
        let report = runtime()?.block_on(async {
            let mut k = NetlinkKernel::connect()?;
            let bridges = virt_l3::kernel::routed_bridges(&k, config).await?;
            Ok::<_, CliError>(virt_l3::status::status(&mut k, &state, &bridges).await?)
        })?;
        print!("{}", output::status(&report, self.json)?);
        Ok(if report.iter().all(|d| d.healthy()) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        })
    }
}
