//! `virt-l3 plan [--json]`: the routes and neighbours a domain (XML on stdin) would get.

use std::process::ExitCode;

use virt_l3::config::Config;
use virt_l3::domain_xml::DomainXml;
use virt_l3::host_facts::host_facts;
use virt_l3::kernel::NetlinkKernel;
use virt_l3::plan::{plan, Checks, DomainPlan};
use virt_l3::state::StateDir;

use super::error::CliError;
use super::output;
use super::support::{read_stdin, runtime};

#[derive(clap::Args)]
pub struct PlanArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl PlanArgs {
    pub fn run(self, config: &Config) -> Result<ExitCode, CliError> {
        let p = plan_from_stdin(config)?;
        print!("{}", output::plan(&p, config, self.json)?);
        Ok(ExitCode::SUCCESS)
    }
}

/// The domain XML on stdin, planned as the hook's `prepare` would (the host's
/// addresses and the state directory's claims included): `plan` and
/// `guest-config` refuse exactly what the hook refuses. Without a netlink socket
/// (an unprivileged sandbox), the host is taken to have no address.
pub fn plan_from_stdin(config: &Config) -> Result<DomainPlan, CliError> {
    let xml = read_stdin()?;
    let dom = DomainXml::parse(&xml)?;
    let state = StateDir::new(&config.state_dir);
    let host = runtime()?
        .block_on(async {
            let k = NetlinkKernel::connect()?;
            host_facts(&k, &dom, config).await
        })
        .unwrap_or_default();
    let checks = Checks {
        require_filter: config.require_nwfilter,
    };
    Ok(plan(&dom, config, &host, &state, checks)?)
}
