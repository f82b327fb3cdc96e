//! `virt-l3 firewall render|install|remove`: virt-l3's nftables tables
//! (docs/FIREWALL.md). `install` is what the reconcile unit runs at boot,
//! `remove` what the package's removal scripts run.

use std::process::ExitCode;

use virt_l3::config::Config;
use virt_l3::firewall;

use super::error::CliError;
use super::output;
use super::support::runtime;

#[derive(clap::Args)]
pub struct FirewallArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Print the nft transaction `install` would apply on this host (for audit).
    Render,
    /// Install the tables unless they are installed and current; keeps the
    /// accepted ports. With `[firewall] enabled = false`: remove them.
    Install,
    /// Remove virt-l3's tables (every routed-bridge port then passes frames again).
    Remove,
}

impl FirewallArgs {
    pub fn run(self, config: &Config) -> Result<ExitCode, CliError> {
        let fw = &config.firewall;
        let text = match self.action {
            Action::Render => runtime()?.block_on(firewall::render_for_host(config, fw))?,
            Action::Install if !fw.enabled => {
                firewall::remove()?;
                output::firewall_disabled()
            }
            Action::Install => {
                output::firewall_ensured(runtime()?.block_on(firewall::ensure(config, fw))?)
            }
            Action::Remove => {
                firewall::remove()?;
                output::firewall_removed()
            }
        };
        print!("{text}");
        Ok(ExitCode::SUCCESS)
    }
}
