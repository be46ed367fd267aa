//! Command line: `run` (the default), `check`, `healthcheck`, `probe`, `import-haproxy` and `demo`.

mod probe;

use crate::config;
use crate::server::{self, RunOptions};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status for a configuration that does not validate (sysexits' EX_USAGE).
pub const EXIT_BAD_CONFIG: u8 = 64;
/// Where `ssv-ha run` looks for its configuration when `-c` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ssv-ha/ssv-ha.yaml";

#[derive(Debug, Parser)]
#[command(
    name = "ssv-ha",
    version,
    about = "Highly available gateway for Ethereum execution and consensus nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Configuration file.
    #[arg(short, long, default_value = DEFAULT_CONFIG_PATH, global = true)]
    config: PathBuf,
    /// Take over the listening sockets of a running instance, which hands them over on SIGQUIT
    /// (zero-downtime restart).
    #[arg(long, global = true)]
    upgrade: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve with the configuration file (the default command).
    Run,
    /// Validate the configuration file: exit 0 when valid, 64 with every error otherwise.
    Check,
    /// Ask the running gateway (its admin listener, from the config) whether it is up: exit 0 when
    /// `/healthz` answers, 1 otherwise. For container health checks: no curl needed.
    Healthcheck {
        /// Ask `/readyz` instead: every pool has a healthy backend.
        #[arg(long)]
        ready: bool,
    },
    /// Run one health check of one or more nodes and print the verdict: exit 0 healthy, 1 not.
    Probe(probe::ProbeArgs),
    /// Read an haproxy configuration of the original setup's shape and print the equivalent
    /// ssv-ha configuration (comments say what could not be carried over).
    ImportHaproxy {
        /// The haproxy configuration file.
        file: PathBuf,
        /// Certificate (PEM chain) for the TLS listener that replaces haproxy's TLS pass-through.
        #[arg(long, requires = "key")]
        cert: Option<String>,
        /// Private key (PEM) of that certificate.
        #[arg(long, requires = "cert")]
        key: Option<String>,
    },
    /// Start simulated execution and consensus nodes with the gateway in front, to try failover.
    Demo(crate::demo::DemoArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run);
    // `run` logs as its configuration says, once it is loaded; the demo's terminal shows the
    // gateway's own lines, not the framework's start-up.
    match command {
        Command::Run => {}
        Command::Demo(_) => init_logging(None, crate::demo::LOG_FILTER),
        _ => init_logging(None, "info"),
    }
    match command {
        Command::Check => check(&cli.run.config),
        Command::Run => run(&cli.run),
        Command::Probe(args) => probe::run(args),
        Command::ImportHaproxy { file, cert, key } => import_haproxy(&file, cert.zip(key)),
        Command::Healthcheck { ready } => healthcheck(&cli.run.config, ready),
        Command::Demo(args) => match crate::demo::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ssv-ha demo: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Logs to stderr, as text or JSON lines; `RUST_LOG`, when set, wins over the configured level
/// (or `default`, without a configuration).
fn init_logging(settings: Option<&config::model::LogSettings>, default: &str) {
    use std::io::IsTerminal;
    let level = settings.map_or(default, |s| s.level.as_str());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests, demo) is harmless: the first one stays.
    let _ = match settings.map(|s| s.format) {
        Some(config::model::LogFormat::Json) => builder.json().flatten_event(true).try_init(),
        _ => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(c) => {
            let backends: usize = c.pools.iter().map(|p| p.backends.len()).sum();
            println!(
                "{}: valid (listeners: {}, pools: {}, backends: {}, routes: {})",
                path.display(),
                c.listeners.len(),
                c.pools.len(),
                backends,
                c.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

fn import_haproxy(file: &std::path::Path, tls: Option<(String, String)>) -> ExitCode {
    // haproxy reads bytes: a Latin-1 comment must not stop the import.
    let text = match std::fs::read(file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let tls = tls.map(|(cert, key)| crate::import::TlsFiles { cert, key });
    let yaml = match crate::import::import(&text, tls.as_ref()) {
        Ok(yaml) => yaml,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    print!("{yaml}");
    // The output must be usable as it is: check it the way `ssv-ha check` would.
    match config::parse(&yaml, std::path::Path::new(".")) {
        Ok(_) => ExitCode::SUCCESS,
        Err(errors) => {
            eprintln!("the imported configuration does not validate yet:");
            for e in errors {
                eprintln!("  - {e}");
            }
            ExitCode::from(1)
        }
    }
}

fn healthcheck(config: &std::path::Path, ready: bool) -> ExitCode {
    let admin = match config::load(config) {
        Ok(c) => c.admin,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let path = if ready { "readyz" } else { "healthz" };
    // The admin listener may listen on every address; ask it on loopback then.
    let host = if admin.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), admin.port())
    } else {
        admin
    };
    let url = format!("http://{host}/{path}");
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                let client = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(3))
                    .no_proxy()
                    .build()
                    .map_err(|e| e.to_string())?;
                let response = client.get(&url).send().await.map_err(|e| e.to_string())?;
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                Ok((status, body))
            })
        });
    match answer {
        Ok((status, body)) if status.is_success() => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("{url}: {status}: {}", body.trim());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &RunArgs) -> ExitCode {
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    init_logging(Some(&config.log), "info");
    let options = RunOptions {
        upgrade: args.upgrade,
    };
    match server::build(&config, Some(args.config.clone()), &options) {
        Ok(built) => {
            tracing::info!(config = %args.config.display(), admin = %config.admin, "ssv-ha starting");
            built.server.run_forever()
        }
        Err(e) => {
            eprintln!("ssv-ha: {e}");
            ExitCode::FAILURE
        }
    }
}
