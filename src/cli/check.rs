//! `virt-l3 check [--json] [OPTIONS]`: inspect this hypervisor item by item
//! (exit 0: ready, 1: not ready). Changes nothing.

use std::path::PathBuf;
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
    options: Box<CheckPaths>,
}

impl CheckArgs {
    pub fn run(self, config: &Config) -> Result<ExitCode, CliError> {
        let options = virt_l3::check::CheckOptions::from(*self.options);
        let report = runtime()?
            .block_on(virt_l3::check::check(config, &options))
            .map_err(|e| CliError::Check(e.to_string()))?;
        print!("{}", output::check(&report, self.json)?);
        Ok(if report.ready {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// Where `check` finds what it inspects. Every path and program can be overridden,
/// so that a test lab (or an unusual host) can point it at its own files.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckPaths {
    /// Root of the sysctl tree (read in the current network namespace).
    #[arg(long, value_name = "DIR", default_value = "/proc/sys")]
    proc_sys: PathBuf,
    /// Root of sysfs (only the bridges' `addr_assign_type` is read there).
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    sysfs: PathBuf,
    /// libvirt's hook directory (holding `qemu` and `qemu.d/`).
    #[arg(long, value_name = "DIR", default_value = "/etc/libvirt/hooks")]
    libvirt_hooks_dir: PathBuf,
    /// The libvirt daemon, asked for its version with `--version`
    /// [default: libvirtd, else virtqemud].
    #[arg(long, value_name = "PROGRAM")]
    libvirtd: Option<PathBuf>,
    /// virsh, run as `virsh nwfilter-list` to see the nwfilter driver answer.
    #[arg(long, value_name = "PROGRAM", default_value = "virsh")]
    virsh: PathBuf,
    /// libvirt connection URI for virsh.
    #[arg(long, short = 'c', value_name = "URI")]
    connect: Option<String>,
    /// ebtables, run as `ebtables --version` (libvirt's nwfilter needs it).
    #[arg(long, value_name = "PROGRAM", default_value = "ebtables")]
    ebtables: PathBuf,
    /// birdc, run as `birdc -s SOCKET show status`.
    #[arg(long, value_name = "PROGRAM", default_value = "birdc")]
    birdc: PathBuf,
    /// BIRD's control socket.
    #[arg(long, value_name = "PATH", default_value = "/run/bird/bird.ctl")]
    bird_socket: PathBuf,
    /// BIRD's configuration file.
    #[arg(long, value_name = "PATH", default_value = "/etc/bird/bird.conf")]
    bird_config: PathBuf,
    /// vtysh, run as `vtysh [-N PATHSPACE] -c 'show running-config'`.
    #[arg(long, value_name = "PROGRAM", default_value = "vtysh")]
    vtysh: PathBuf,
    /// FRR pathspace (vtysh -N), for FRR running in a named namespace.
    #[arg(long, value_name = "NAME")]
    frr_pathspace: Option<String>,
    /// FRR's configuration file, read when FRR is not running.
    #[arg(long, value_name = "PATH", default_value = "/etc/frr/frr.conf")]
    frr_config: PathBuf,
    /// cloudstack-agent's properties (for its `control.cidr`).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/cloudstack/agent/agent.properties"
    )]
    agent_properties: PathBuf,
}

impl From<CheckPaths> for virt_l3::check::CheckOptions {
    fn from(a: CheckPaths) -> Self {
        virt_l3::check::CheckOptions {
            proc_sys: a.proc_sys,
            sysfs: a.sysfs,
            libvirt_hooks_dir: a.libvirt_hooks_dir,
            libvirtd: a.libvirtd,
            virsh: a.virsh,
            connect: a.connect,
            ebtables: a.ebtables,
            birdc: a.birdc,
            bird_socket: a.bird_socket,
            bird_config: a.bird_config,
            vtysh: a.vtysh,
            frr_pathspace: a.frr_pathspace,
            frr_config: a.frr_config,
            agent_properties: a.agent_properties,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    /// `virt-l3 check` without flags inspects what the library's defaults name.
    #[test]
    fn check_flags_default_to_the_library_defaults() {
        let cli = Cli::parse_from(["virt-l3", "check"]);
        let Command::Check(args) = cli.command else {
            panic!("not the check command");
        };
        assert_eq!(
            virt_l3::check::CheckOptions::from(*args.options),
            virt_l3::check::CheckOptions::default()
        );
    }
}
