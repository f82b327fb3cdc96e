//! The `virt-l3` command: finds out how it was invoked and runs [`cli`]; the work
//! is in the library.
//!
//! `main` is the C entry point (`#![no_main]`): libvirt starts the hook as a new
//! process at every step of every VM, and std's own start-up (`lang_start`)
//! would read /proc/self/maps to find the main thread's stack guard and map an
//! alternate signal stack, about 60 k instructions and 8 system calls of a hook
//! process that has little else to do (docs/BENCHMARKS.md). What of it virt-l3
//! relies on is done here: standard descriptors open and SIGPIPE ignored. A
//! stack overflow still kills the process (SIGSEGV on the guard page), without
//! std's message.

#![cfg_attr(not(test), no_main)]

mod cli;

use std::ffi::{CStr, OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use clap::Parser;

#[cfg_attr(not(test), unsafe(no_mangle))] // tests: the harness has its own `main`
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    start_up();
    // SAFETY: the C runtime passes argc NUL-terminated strings in argv.
    let code = run(unsafe { arguments(argc, argv) });
    // std flushes stdout after `main`; here nothing else would.
    let _ = std::io::stdout().flush();
    exit_status(code)
}

/// The command line from C's `argv` (std's `env::args` fills itself without
/// `lang_start` on glibc only).
///
/// # Safety
/// `argv` holds `argc` pointers to NUL-terminated strings (or null).
unsafe fn arguments(argc: libc::c_int, argv: *const *const libc::c_char) -> Vec<OsString> {
    (0..usize::try_from(argc).unwrap_or(0))
        .filter_map(|i| {
            // SAFETY: as the caller promises.
            let p = unsafe { *argv.add(i) };
            // SAFETY: as the caller promises, a NUL-terminated string.
            (!p.is_null())
                .then(|| OsStr::from_bytes(unsafe { CStr::from_ptr(p) }.to_bytes()).to_owned())
        })
        .collect()
}

fn run(args: Vec<OsString>) -> ExitCode {
    let utf8: Option<Vec<String>> = args
        .iter()
        .map(|a| a.to_str().map(str::to_string))
        .collect();
    // libvirt runs the binary as its qemu hook (no subcommand, no options); the
    // `hook` subcommand in its plain shape skips clap too (the hot path).
    let fast = utf8.as_deref().and_then(|args| {
        if let Some(hook) = cli::hook::HookArgs::from_argv0(args) {
            Some(cli::Cli::hook(hook))
        } else {
            cli::hook::HookArgs::from_subcommand(args)
                .map(|(config, hook)| cli::Cli::hook_with_config(config, hook))
        }
    });
    let cli = fast.unwrap_or_else(|| cli::Cli::parse_from(args));
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

/// What std's start-up does that virt-l3 keeps: descriptors 0, 1 and 2 open
/// (a closed one is opened on /dev/null, so that no file virt-l3 opens takes its
/// number and receives what is meant for stdout), and SIGPIPE ignored (writing
/// to a closed pipe is an error to report, not death).
fn start_up() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll reads and writes the three pollfd of `fds`; open and signal
    // take a NUL-terminated path and a valid disposition.
    unsafe {
        if libc::poll(fds.as_mut_ptr(), 3, 0) != -1 {
            for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
                if libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) != p.fd {
                    libc::abort();
                }
            }
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The process exit status of `code` (std has no stable conversion).
fn exit_status(code: ExitCode) -> libc::c_int {
    (0..=u8::MAX)
        .find(|&v| ExitCode::from(v) == code)
        .map_or(1, libc::c_int::from)
}
