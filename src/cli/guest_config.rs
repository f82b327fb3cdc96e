//! `virt-l3 guest-config`: the guest's network configuration for its routed NICs
//! (domain XML on stdin), planned exactly like the hook plans the domain at
//! `prepare` (same checks, the host's addresses, the other domains' ownership).

use std::path::PathBuf;
use std::process::ExitCode;

use virt_l3::config::Config;
use virt_l3::guest_config;

use super::error::CliError;
use super::output;
use super::plan::plan_from_stdin;

#[derive(clap::Args)]
pub struct GuestConfigArgs {
    #[arg(long, value_enum, default_value = "netplan")]
    format: GuestFormat,
    /// Write DIR/network-config.yaml and/or DIR/network_data.json instead of
    /// printing (required for `both`).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Rename each routed NIC to PREFIX<n> (netplan set-name), n counting from 0.
    #[arg(long, value_name = "PREFIX")]
    set_name: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GuestFormat {
    Netplan,
    NetworkData,
    Both,
}

impl GuestConfigArgs {
    pub fn run(self, config: &Config) -> Result<ExitCode, CliError> {
        let p = plan_from_stdin(config)?;
        let options = guest_config::Options {
            set_name_prefix: self.set_name,
        };
        let mut outputs: Vec<(&str, String)> = Vec::new();
        if self.format != GuestFormat::NetworkData {
            let yaml = guest_config::netplan(&p, config, &options)?;
            outputs.push(("network-config.yaml", yaml));
        }
        if self.format != GuestFormat::Netplan {
            let json = guest_config::network_data_text(&p, config)?;
            outputs.push(("network_data.json", json));
        }
        match self.out_dir {
            None if outputs.len() > 1 => return Err(CliError::BothNeedsOutDir),
            None => print!("{}", outputs[0].1),
            Some(dir) => print!("{}", output::paths(&write_files(&dir, outputs)?)),
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Writes each (file name, text) into `dir`, created if needed; the paths written.
fn write_files(dir: &PathBuf, outputs: Vec<(&str, String)>) -> Result<Vec<PathBuf>, CliError> {
    std::fs::create_dir_all(dir).map_err(|source| CliError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let mut written = Vec::new();
    for (name, text) in outputs {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| CliError::WriteFile {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}
