//! `virt-l3 security-group set|show|clear|render`: a domain's security-group
//! rules (CloudStack's rule string), kept in the state directory and installed
//! in nftables when `security_groups = true` (docs/SECURITY-GROUPS.md).

use std::process::ExitCode;

use clap::Subcommand;
use virt_l3::config::Config;
use virt_l3::security_group::{self as sg, RuleSet};
use virt_l3::state::StateDir;

use super::error::CliError;
use super::output;

#[derive(clap::Args)]
pub struct SecurityGroupArgs {
    #[command(subcommand)]
    command: SgCommand,
}

#[derive(Subcommand)]
enum SgCommand {
    /// Set a domain's rules: CloudStack's rule string, e.g.
    /// 'I:tcp;22;22;0.0.0.0/0,::/0,NEXT;E:udp;53;53;0.0.0.0/0,NEXT;' ('' = the default:
    /// ingress closed, egress open). Refused as a whole when malformed.
    Set {
        /// Domain name or UUID.
        domain: String,
        rules: String,
    },
    /// Show a domain's rules.
    Show {
        domain: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a domain's rules from nftables and from the state directory.
    Clear { domain: String },
    /// Print the nft transaction that installs the domain's rules.
    Render { domain: String },
    /// CloudStack's default_network_rules: reset the rules to the default
    /// (with --if-unset: only when none are stored).
    #[command(hide = true)]
    Default {
        domain: String,
        #[arg(long)]
        if_unset: bool,
    },
}

impl SecurityGroupArgs {
    pub fn run(self, config: &Config) -> Result<ExitCode, CliError> {
        let state = StateDir::new(&config.state_dir);
        match self.command {
            SgCommand::Set { domain, rules } => {
                let target = sg::resolve(&state, &domain)?;
                let outcome = sg::set(config, &state, &target, &rules)?;
                print!("{}", output::sg_outcome(&target, &outcome));
            }
            SgCommand::Default { domain, if_unset } => {
                let target = sg::resolve(&state, &domain)?;
                if !(if_unset && sg::load(&state, &target)?.is_some()) {
                    let outcome = sg::set(config, &state, &target, "")?;
                    print!("{}", output::sg_outcome(&target, &outcome));
                }
            }
            SgCommand::Show { domain, json } => {
                let target = sg::resolve(&state, &domain)?;
                let loaded = sg::load(&state, &target)?;
                let (stored, rules) = match &loaded {
                    Some((s, r)) => (Some(s), r.clone()),
                    None => (None, RuleSet::cloudstack_default()),
                };
                print!(
                    "{}",
                    output::sg_show(&target, stored, &rules, config.security_groups, json)?
                );
            }
            SgCommand::Clear { domain } => {
                let target = sg::resolve(&state, &domain)?;
                sg::clear(&state, &target)?;
                println!("security group of {} cleared", target.label());
            }
            SgCommand::Render { domain } => {
                let target = sg::resolve(&state, &domain)?;
                print!("{}", sg::render_for(config, &state, &target)?);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
