//! `virt-l3 manpages --out-dir DIR` (hidden): the man pages, generated from the
//! command line definition (clap_mangen); scripts/package.sh runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use super::error::CliError;

#[derive(clap::Args)]
pub struct ManpagesArgs {
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
}

impl ManpagesArgs {
    /// Writes virt-l3.1 and virt-l3-SUBCOMMAND.1 for `command` (the whole command line).
    pub fn run(&self, command: clap::Command) -> Result<ExitCode, CliError> {
        clap_mangen::generate_to(command, &self.out_dir).map_err(|source| CliError::Manpages {
            dir: self.out_dir.clone(),
            source,
        })?;
        Ok(ExitCode::SUCCESS)
    }
}
