//! `virt-l3 hook DOMAIN OPERATION SUB-OPERATION EXTRA`, or libvirt running the
//! binary as its qemu hook. stdout stays empty whatever happens; one line on
//! stderr on failure.

use std::path::{Path, PathBuf};
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

    /// `virt-l3 [--config PATH] hook DOMAIN OPERATION [SUB-OPERATION [EXTRA]]`
    /// read without clap: the hook runs at every step of every VM, and building
    /// clap's parser for all subcommands costs about a tenth of a start. Only the
    /// exact shapes clap would read the same way are taken (no value that looks
    /// like an option, no other flag); anything else, `--help` included, returns
    /// `None` and goes to clap. Returns the configuration path and the arguments.
    pub fn from_subcommand(args: &[String]) -> Option<(Option<PathBuf>, HookArgs)> {
        let rest = args.get(1..)?;
        let (config, rest) = match rest {
            [flag, path, rest @ ..] if flag == "--config" && is_value(path) => {
                (Some(PathBuf::from(path)), rest)
            }
            [first, rest @ ..] => match first.strip_prefix("--config=") {
                Some(path) if !path.is_empty() => (Some(PathBuf::from(path)), rest),
                _ => (None, args.get(1..)?),
            },
            [] => return None,
        };
        let [command, values @ ..] = rest else {
            return None;
        };
        if command != "hook" || !(2..=4).contains(&values.len()) {
            return None;
        }
        if !values.iter().all(|v| is_value(v)) {
            return None;
        }
        let value = |i: usize| values.get(i).cloned().unwrap_or_else(|| "-".to_string());
        Some((
            config,
            HookArgs {
                domain: value(0),
                operation: value(1),
                sub_operation: value(2),
                extra: value(3),
            },
        ))
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

/// An argument clap reads as a value, never as an option: `-` or anything not
/// starting with `-`.
fn is_value(arg: &str) -> bool {
    arg == "-" || (!arg.is_empty() && !arg.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::HookArgs;
    use crate::cli::{Cli, Command};

    fn args(line: &str) -> Vec<String> {
        std::iter::once("virt-l3")
            .chain(line.split(' ').filter(|a| !a.is_empty()))
            .map(str::to_string)
            .collect()
    }

    fn fields(h: &HookArgs) -> [String; 4] {
        [
            h.domain.clone(),
            h.operation.clone(),
            h.sub_operation.clone(),
            h.extra.clone(),
        ]
    }

    /// Whatever the fast path takes, clap reads exactly the same way.
    #[test]
    fn the_fast_path_reads_what_clap_reads() {
        let taken = [
            "hook i-2-1017-VM start begin -",
            "--config /etc/x.toml hook dom prepare begin -",
            "--config=/tmp/c.toml hook dom release end -",
            "hook dom stopped",
            "hook dom migrate begin",
            "hook dom started begin -",
        ];
        for line in taken {
            let (config, fast) = HookArgs::from_subcommand(&args(line))
                .unwrap_or_else(|| panic!("{line}: not taken"));
            let cli = Cli::try_parse_from(args(line)).unwrap();
            let Command::Hook(slow) = &cli.command else {
                panic!("{line}: clap read another command");
            };
            assert_eq!(fields(&fast), fields(slow), "{line}");
            assert_eq!(config, cli.config, "{line}");
        }
    }

    /// Anything clap could read differently (options, `--help`, too few or too
    /// many values, another subcommand) is left to clap.
    #[test]
    fn anything_else_goes_to_clap() {
        for line in [
            "",
            "hook",
            "hook dom",
            "hook --help",
            "--help",
            "hook dom start begin - extra",
            "hook -x start begin -",
            "hook dom start --config /x",
            "--config hook dom start begin -",
            "--config= hook dom start begin -",
            "--version",
            "plan dom start begin -",
            "status",
        ] {
            assert!(
                HookArgs::from_subcommand(&args(line)).is_none(),
                "{line}: taken by the fast path"
            );
        }
    }
}
