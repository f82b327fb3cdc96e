//! `virt-l3 hook DOMAIN OPERATION SUB-OPERATION EXTRA`, or libvirt running the
//! binary as its qemu hook. stdout stays empty whatever happens; one line on
//! stderr on failure.

use std::path::Path;
use std::process::ExitCode;

use virt_l3::config::Config;
use virt_l3::hook::{self, Invocation, Operation};

use super::error::CliError;
use super::support::read_stdin;

#[derive(clap::Args)]
pub struct HookArgs {
    domain: String,
    operation: String,
    #[arg(default_value = "-")]
    sub_operation: String,
    #[arg(default_value = "-")]
    extra: String,
}

impl HookArgs {
    /// The hook's arguments when libvirt runs this binary as
    /// `/etc/libvirt/hooks/qemu` or `/etc/libvirt/hooks/qemu.d/<name>`
    /// (a missing argument reads as `-`); `None` for any other name.
    pub fn from_argv0(args: &[String]) -> Option<HookArgs> {
        let argv0 = args.first()?;
        let parent = Path::new(argv0)
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str());
        if !matches!(parent, Some("hooks") | Some("qemu.d")) {
            return None;
        }
        let mut it = args.iter().skip(1).cloned();
        let mut next = || it.next().unwrap_or_else(|| "-".to_string());
        Some(HookArgs {
            domain: next(),
            operation: next(),
            sub_operation: next(),
            extra: next(),
        })
    }

    /// This step failed before it could run: libvirt aborts (or kills) the VM only
    /// for the operations whose failure it does not ignore.
    pub fn failed(&self, error: CliError) -> CliError {
        CliError::HookStep {
            error: Box::new(error),
            aborts: Operation::parse(&self.operation).failure_aborts(),
        }
    }

    pub fn run(self, config: &Config) -> Result<ExitCode, CliError> {
        let xml = read_stdin().map_err(|e| self.failed(e))?;
        let inv = Invocation {
            domain: self.domain,
            op: Operation::parse(&self.operation),
            op_text: self.operation,
            subop: self.sub_operation,
            extra: self.extra,
        };
        hook::run(config, &inv, &xml)?;
        Ok(ExitCode::SUCCESS)
    }
}
