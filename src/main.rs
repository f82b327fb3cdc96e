//! The `virt-l3` command: finds out how it was invoked and runs [`cli`]; the work
//! is in the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // libvirt runs the binary as its qemu hook (no subcommand, no options); the
    // `hook` subcommand in its plain shape skips clap too (the hot path).
    let cli = if let Some(hook) = cli::hook::HookArgs::from_argv0(&args) {
        cli::Cli::hook(hook)
    } else if let Some((config, hook)) = cli::hook::HookArgs::from_subcommand(&args) {
        cli::Cli::hook_with_config(config, hook)
    } else {
        cli::Cli::parse()
    };
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}
