//! The command line: one file per subcommand (its arguments and `run`), the
//! rendering of results in [`output`], the errors in [`error`]. Part of the
//! binary, so that clap stays out of the library.

mod check;
pub mod error;
mod firewall;
mod guest_config;
pub mod hook;
mod logging;
mod manpages;
mod nwfilter;
mod output;
mod plan;
mod reconcile;
mod refresh;
mod security_group;
mod status;
mod support;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use virt_l3::config::Config;

use error::CliError;

#[derive(Parser)]
#[command(
    name = "virt-l3",
    version,
    about = "Routes libvirt VMs' /32 and /128 addresses to this hypervisor"
)]
pub struct Cli {
    /// Configuration file [default: $VIRT_L3_CONFIG, else /etc/virt-l3/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run as libvirt's qemu hook: DOMAIN OPERATION SUB-OPERATION EXTRA, domain XML on stdin.
    Hook(hook::HookArgs),
    /// Show the routes and neighbours a domain (XML on stdin) would get.
    Plan(plan::PlanArgs),
    /// Show every routed domain on this host and whether its entries are in the kernel.
    Status(status::StatusArgs),
    /// Make the kernel match the running domains: add what is missing, fix what
    /// differs, remove virt-l3's entries that belong to no running domain.
    Reconcile(reconcile::ReconcileArgs),
    /// Apply a change to a running domain now (a NIC attached or detached, live
    /// metadata): route what it gained, unroute what it lost (exit 1: refused or failed).
    Refresh(refresh::RefreshArgs),
    /// Reconcile whenever routes, neighbours, bridges or libvirt's status files change.
    Watch(watch::WatchArgs),
    /// Inspect this hypervisor item by item, with a fix for each failure
    /// (exit 0: ready, 1: not ready). Changes nothing.
    Check(check::CheckArgs),
    /// Write the man pages (virt-l3.1, virt-l3-SUBCOMMAND.1) into DIR; used to build the packages.
    #[command(hide = true)]
    Manpages(manpages::ManpagesArgs),
    /// The guest's network configuration for its routed NICs (domain XML on stdin):
    /// netplan / cloud-init network-config v2, or OpenStack network_data.json.
    GuestConfig(guest_config::GuestConfigArgs),
    /// libvirt nwfilter security groups for routed NICs (domain XML on stdin).
    Nwfilter(nwfilter::NwfilterArgs),
    /// Security-group rules of a domain (CloudStack's rule string), stateful, on
    /// the routed path; enforced when `security_groups = true`.
    SecurityGroup(security_group::SecurityGroupArgs),
    /// virt-l3's nftables tables: fail-closed bridge ports, the host protected
    /// from its guests (render for audit, install, remove).
    Firewall(firewall::FirewallArgs),
}

impl Cli {
    /// libvirt runs the hook as `/etc/libvirt/hooks/qemu` (or `.../qemu.d/<name>`)
    /// with its four arguments and no `--config`.
    pub fn hook(args: hook::HookArgs) -> Cli {
        Cli::hook_with_config(None, args)
    }

    /// `virt-l3 [--config PATH] hook ...`, read without clap ([`hook::HookArgs::from_subcommand`]).
    pub fn hook_with_config(config: Option<PathBuf>, args: hook::HookArgs) -> Cli {
        Cli {
            config,
            command: Command::Hook(args),
        }
    }

    /// Loads the configuration (but for `manpages`), starts logging and runs the command.
    /// `Ok` holds the exit code of a command that ran (`check`: not ready, `status`:
    /// missing entries, ...).
    pub fn run(self) -> Result<ExitCode, CliError> {
        let Cli { config, command } = self;
        let command = match command {
            Command::Manpages(args) => return args.run(Cli::command()),
            command => command,
        };
        let loaded = Config::load(config.as_deref());
        logging::init(loaded.as_ref().ok());
        let config = match (loaded, &command) {
            (Ok(config), _) => config,
            // Without a configuration nothing can be validated: refuse starts, let stops pass.
            (Err(e), Command::Hook(args)) => return Err(args.failed(e.into())),
            (Err(e), _) => return Err(e.into()),
        };
        match command {
            Command::Manpages(args) => args.run(Cli::command()),
            Command::Hook(args) => args.run(&config),
            Command::Plan(args) => args.run(&config),
            Command::Status(args) => args.run(&config),
            Command::Reconcile(args) => args.run(&config),
            Command::Refresh(args) => args.run(&config),
            Command::Watch(args) => args.run(&config),
            Command::Check(args) => args.run(&config),
            Command::GuestConfig(args) => args.run(&config),
            Command::Nwfilter(args) => args.run(&config),
            Command::SecurityGroup(args) => args.run(&config),
            Command::Firewall(args) => args.run(&config),
        }
    }
}
