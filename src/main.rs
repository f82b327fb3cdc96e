//! The `virt-l3` command: finds out how it was invoked and runs [`cli`]; the work
//! is in the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // libvirt runs the binary as its qemu hook (no subcommand, no options).
    let cli = match cli::hook::HookArgs::from_argv0(&args) {
        Some(hook) => cli::Cli::hook(hook),
        None => cli::Cli::parse(),
    };
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}
