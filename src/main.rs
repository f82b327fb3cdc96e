//! The `virt-l3` command: argument parsing and printing; the work is in the library.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use virt_l3::config::Config;
use virt_l3::domain_xml::{DomainXml, MAX_XML_BYTES};
use virt_l3::hook::{self, Invocation, Operation};
use virt_l3::kernel::{Kernel as _, NetlinkKernel as Kernel};
use virt_l3::plan::{plan, Checks, DomainPlan, HostFacts};
use virt_l3::state::StateDir;

#[derive(Parser)]
#[command(
    name = "virt-l3",
    version,
    about = "Routes libvirt VMs' /32 and /128 addresses to this hypervisor"
)]
struct Cli {
    /// Configuration file [default: $VIRT_L3_CONFIG, else /etc/virt-l3/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run as libvirt's qemu hook: DOMAIN OPERATION SUB-OPERATION EXTRA, domain XML on stdin.
    Hook {
        domain: String,
        operation: String,
        #[arg(default_value = "-")]
        sub_operation: String,
        #[arg(default_value = "-")]
        extra: String,
    },
    /// Show the routes and neighbours a domain (XML on stdin) would get.
    Plan {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show every routed domain on this host and whether its entries are in the kernel.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Make the kernel match the running domains: add what is missing, fix what
    /// differs, remove virt-l3's entries that belong to no running domain.
    Reconcile {
        /// Report the changes without making them.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Reconcile whenever routes, neighbours, bridges or libvirt's status files change.
    Watch,
    /// Inspect this hypervisor item by item, with a fix for each failure
    /// (exit 0: ready, 1: not ready). Changes nothing.
    Check {
        /// Print JSON instead of text (format: docs/TROUBLESHOOTING.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        options: Box<virt_l3::check::CheckOptions>,
    },
    /// Write the man pages (virt-l3.1, virt-l3-SUBCOMMAND.1) into DIR; used to build the packages.
    #[command(hide = true)]
    Manpages {
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
    /// The guest's network configuration for its routed NICs (domain XML on stdin):
    /// netplan / cloud-init network-config v2, or OpenStack network_data.json.
    GuestConfig {
        #[arg(long, value_enum, default_value = "netplan")]
        format: GuestFormat,
        /// Write DIR/network-config.yaml and/or DIR/network_data.json instead of
        /// printing (required for `both`).
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Rename each routed NIC to PREFIX<n> (netplan set-name), n counting from 0.
        #[arg(long, value_name = "PREFIX")]
        set_name: Option<String>,
    },
    /// libvirt nwfilter security groups for routed NICs (domain XML on stdin).
    Nwfilter {
        #[command(subcommand)]
        command: NwfilterCommand,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GuestFormat {
    Netplan,
    NetworkData,
    Both,
}

#[derive(Subcommand)]
enum NwfilterCommand {
    /// Write every filter the domain's routed NICs need to DIR/<filter>.xml.
    Render {
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
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

fn read_stdin() -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    std::io::stdin()
        .take(MAX_XML_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("virt-l3 cannot read the domain XML from stdin: {e}"))?;
    Ok(buf)
}

fn init_logging(config: Option<&Config>) {
    let level = std::env::var("VIRT_L3_LOG")
        .ok()
        .or_else(|| config.map(|c| c.log_level.clone()))
        .unwrap_or_else(|| "warn".to_string());
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&level).unwrap_or_else(|_| "warn".into()),
        )
        .with_target(false)
        .with_ansi(false)
        .without_time()
        .try_init();
}

/// Hook mode: stdout stays empty whatever happens; one line on stderr on failure.
fn run_hook(
    config_path: Option<&Path>,
    domain: String,
    op: String,
    subop: String,
    extra: String,
) -> ExitCode {
    let operation = Operation::parse(&op);
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            init_logging(None);
            // Without a configuration, nothing can be validated: refuse starts, let stops pass.
            eprintln!("virt-l3: {e}");
            return if operation.failure_aborts() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(Some(&config));
    let xml = match read_stdin() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return if operation.failure_aborts() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let inv = Invocation {
        domain,
        op: operation,
        op_text: op,
        subop,
        extra,
    };
    match hook::run(&config, &inv, &xml) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// libvirt runs `/etc/libvirt/hooks/qemu` or `/etc/libvirt/hooks/qemu.d/<name>`
/// with the four hook arguments.
fn invoked_as_hook(argv0: &str) -> bool {
    let parent = Path::new(argv0)
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str());
    matches!(parent, Some("hooks") | Some("qemu.d"))
}

/// The man pages, generated from the command line definition (clap_mangen).
fn write_manpages(out_dir: &Path) -> ExitCode {
    use clap::CommandFactory;
    match clap_mangen::generate_to(Cli::command(), out_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "virt-l3: cannot write the man pages to {}: {e}",
                out_dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.first().is_some_and(|a| invoked_as_hook(a)) {
        let mut it = args.into_iter().skip(1);
        let mut next = || it.next().unwrap_or_else(|| "-".to_string());
        let (d, o, s, e) = (next(), next(), next(), next());
        return run_hook(None, d, o, s, e);
    }
    let cli = Cli::parse();
    if let Command::Manpages { out_dir } = &cli.command {
        return write_manpages(out_dir);
    }
    if let Command::Hook {
        domain,
        operation,
        sub_operation,
        extra,
    } = cli.command
    {
        return run_hook(
            cli.config.as_deref(),
            domain,
            operation,
            sub_operation,
            extra,
        );
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("virt-l3: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(Some(&config));
    match run_command(&config, cli.command) {
        Ok(code) => code,
        Err(e) if e.starts_with("virt-l3 ") => {
            // Already a sentence that names virt-l3 (a refused domain).
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("virt-l3: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The domain XML on stdin, planned as the hook's `prepare` would (the host's
/// addresses and the state directory's claims included): `plan` and
/// `guest-config` refuse exactly what the hook refuses.
fn plan_from_stdin(config: &Config) -> Result<DomainPlan, String> {
    let xml = read_stdin()?;
    let dom = DomainXml::parse(&xml).map_err(|e| e.to_string())?;
    let state = StateDir::new(&config.state_dir);
    let host = runtime()?
        .block_on(async {
            let k = Kernel::connect()?;
            k.host_addresses().await
        })
        .map(|addresses| HostFacts { addresses })
        .unwrap_or_default();
    let checks = Checks {
        require_filter: config.require_nwfilter,
    };
    plan(&dom, config, &host, &state, checks).map_err(|e| e.to_string())
}

fn run_command(config: &Config, command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Hook { .. } | Command::Manpages { .. } => unreachable!("handled before"),
        Command::Plan { json } => {
            let p = plan_from_stdin(config)?;
            let routes = p.routes(config.route_metric);
            let neighbours = p.neighbours();
            if json {
                let out = serde_json::json!({
                    "domain": p.name, "uuid": p.uuid, "nics": p.nics,
                    "route_protocol": config.route_protocol,
                    "routes": routes, "neighbours": neighbours,
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
                );
            } else {
                println!("domain {} ({})", p.name, p.uuid);
                for n in &p.nics {
                    println!(
                        "  nic {} on {} tap {}",
                        n.mac,
                        n.bridge,
                        n.tap.as_deref().unwrap_or("-")
                    );
                }
                for r in &routes {
                    println!("  ip route replace {r} proto {}", config.route_protocol);
                }
                for n in &neighbours {
                    println!("  ip neigh replace {n}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Nwfilter { command } => run_nwfilter(config, command),
        Command::GuestConfig {
            format,
            out_dir,
            set_name,
        } => run_guest_config(config, format, out_dir, set_name),
        Command::Check { json, options } => {
            let report = runtime()?.block_on(virt_l3::check::check(config, &options))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", virt_l3::check::render_text(&report));
            }
            Ok(if report.ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Reconcile { dry_run, json } => {
            let report = runtime()?.block_on(async {
                let mut k = Kernel::connect().map_err(|e| e.to_string())?;
                virt_l3::reconcile::reconcile(&mut k, config, dry_run)
                    .await
                    .map_err(|e| e.to_string())
            })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            } else {
                let verb = if dry_run { "would" } else { "did" };
                if report.changes.is_empty() {
                    println!("nothing to do ({} routed domains)", report.domains);
                }
                for c in &report.changes {
                    println!(
                        "{verb} {} {}{}",
                        c.action,
                        c.what,
                        c.domain
                            .as_ref()
                            .map(|d| format!(" (domain {d})"))
                            .unwrap_or_default()
                    );
                }
                for e in &report.errors {
                    eprintln!("error: {e}");
                }
            }
            Ok(if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Watch => {
            runtime()?
                .block_on(virt_l3::watch::watch(config, virt_l3::watch::termination()))
                .map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let state = StateDir::new(&config.state_dir);
            let report = runtime()?.block_on(async {
                let mut k = Kernel::connect().map_err(|e| e.to_string())?;
                virt_l3::status::status(&mut k, &state, &config.bridges)
                    .await
                    .map_err(|e| e.to_string())
            })?;
            let healthy = report.iter().all(|d| d.healthy());
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            } else {
                if report.is_empty() {
                    println!("no routed domains");
                }
                for d in &report {
                    let mark = if d.healthy() { "ok" } else { "MISSING ENTRIES" };
                    let standby = if d.standby {
                        " (standby: incoming migration)"
                    } else {
                        ""
                    };
                    println!("{} {} {mark}{standby}", d.name, d.uuid);
                    for e in &d.entries {
                        println!("  [{}] {}", if e.present { "x" } else { " " }, e.entry);
                    }
                }
            }
            Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
    }
}

fn run_nwfilter(config: &Config, command: NwfilterCommand) -> Result<ExitCode, String> {
    use virt_l3::nwfilter::{self, define};
    let xml = read_stdin()?;
    match command {
        NwfilterCommand::Inject => {
            let out = nwfilter::inject::inject(&xml, config).map_err(|e| e.to_string())?;
            use std::io::Write;
            std::io::stdout()
                .write_all(&out)
                .map_err(|e| format!("cannot write the domain XML to stdout: {e}"))?;
        }
        NwfilterCommand::Render { out_dir } => {
            let plan = nwfilter::plan_for_filters(&xml, config).map_err(|e| e.to_string())?;
            let filters = nwfilter::render(&plan, config);
            for path in nwfilter::write_all(&filters, &out_dir).map_err(|e| e.to_string())? {
                println!("{}", path.display());
            }
        }
        NwfilterCommand::Define { virsh, connect } => {
            let plan = nwfilter::plan_for_filters(&xml, config).map_err(|e| e.to_string())?;
            let filters = nwfilter::render(&plan, config);
            let virsh = define::Virsh {
                program: virsh,
                connect,
            };
            for (name, outcome) in
                define::define_all(&virsh, &filters).map_err(|e| e.to_string())?
            {
                match outcome {
                    define::Defined::Created => println!("defined {name}"),
                    define::Defined::Updated(uuid) => println!("redefined {name} (uuid {uuid})"),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `guest-config`: planned exactly like the hook plans the domain at `prepare`
/// (same checks, the host's addresses, the other domains' ownership), then rendered.
fn run_guest_config(
    config: &Config,
    format: GuestFormat,
    out_dir: Option<PathBuf>,
    set_name: Option<String>,
) -> Result<ExitCode, String> {
    use virt_l3::guest_config;
    let p = plan_from_stdin(config)?;
    let options = guest_config::Options {
        set_name_prefix: set_name,
    };
    let mut outputs: Vec<(&str, String)> = Vec::new();
    if format != GuestFormat::NetworkData {
        let y = guest_config::netplan(&p, config, &options).map_err(|e| e.to_string())?;
        outputs.push(("network-config.yaml", y));
    }
    if format != GuestFormat::Netplan {
        let j = guest_config::network_data_text(&p, config).map_err(|e| e.to_string())?;
        outputs.push(("network_data.json", j));
    }
    match out_dir {
        None if outputs.len() > 1 => {
            return Err("`--format both` writes two files: give --out-dir DIR".to_string())
        }
        None => print!("{}", outputs[0].1),
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            for (name, text) in outputs {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                println!("{}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
