//! `virt-l3 nwfilter render|inject|define`: libvirt nwfilter security groups for
//! routed NICs (domain XML on stdin).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use virt_l3::config::Config;
use virt_l3::nwfilter::{self, define};
use virt_l3::state::StateDir;

use super::error::CliError;
use super::output;
use super::support::read_stdin;

#[derive(clap::Args)]
pub struct NwfilterArgs {
    #[command(subcommand)]
    command: NwfilterCommand,
}

#[derive(Subcommand)]
enum NwfilterCommand {
    /// Write every filter the domain's routed NICs need to DIR/<filter>.xml.
    Render {
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// Every running domain's filters (libvirt's status directory), in one
        /// process, instead of the domain XML on stdin.
        #[arg(long)]
        all: bool,
    },
    /// Print the domain XML with virt-l3's <filterref> on every routed NIC.
    Inject,
    /// Define the domain's filters in a running libvirtd with virsh (never from a hook).
    Define {
        /// The virsh program.
        #[arg(long, default_value = "virsh")]
        virsh: PathBuf,
        /// libvirt connection URI (virsh --connect).
        #[arg(long, short = 'c', value_name = "URI")]
        connect: Option<String>,
    },
}

impl NwfilterArgs {
    pub fn run(self, config: &Config) -> Result<ExitCode, CliError> {
        if let NwfilterCommand::Render { out_dir, all: true } = &self.command {
            return render_all(config, out_dir);
        }
        let xml = read_stdin()?;
        match self.command {
            NwfilterCommand::Inject => {
                let out = nwfilter::inject::inject(&xml, config)?;
                std::io::stdout()
                    .write_all(&out)
                    .map_err(CliError::Stdout)?;
            }
            NwfilterCommand::Render { out_dir, .. } => {
                let plan = nwfilter::plan_for_filters(&xml, config)?;
                let filters = nwfilter::render(&plan, config);
                let written = nwfilter::write_all(&filters, &out_dir)?;
                print!("{}", output::paths(&written));
            }
            NwfilterCommand::Define { virsh, connect } => {
                let plan = nwfilter::plan_for_filters(&xml, config)?;
                let filters = nwfilter::render(&plan, config);
                let virsh = define::Virsh {
                    program: virsh,
                    connect,
                };
                // Another domain's claim on a MAC (the state directory) or its
                // recorded ownership of a filter refuses the whole define.
                let state = StateDir::new(&config.state_dir);
                let outcomes = define::define_all(&virsh, &plan, config, &state, &filters)?;
                print!("{}", output::defined(&outcomes));
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `nwfilter render --all`: the filters of every running domain with routed
/// NICs, each filter written once. A domain that cannot be planned is named on
/// stderr and skipped (exit status 1 then), the others are written.
fn render_all(config: &Config, out_dir: &std::path::Path) -> Result<ExitCode, CliError> {
    let running = virt_l3::reconcile::running_domains(&config.libvirt_status_dir)?;
    let mut filters: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let mut failed = false;
    for d in &running {
        if virt_l3::plan::managed_interfaces(&d.xml, config)
            .next()
            .is_none()
        {
            continue;
        }
        match nwfilter::plan_domain_for_filters(&d.xml, config) {
            Ok(plan) => filters.extend(nwfilter::render(&plan, config)),
            Err(e) => {
                failed = true;
                eprintln!("virt-l3: skipping a running domain: {e}");
            }
        }
    }
    let filters: Vec<(String, Vec<u8>)> = filters.into_iter().collect();
    let written = nwfilter::write_all(&filters, out_dir)?;
    print!("{}", output::paths(&written));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
