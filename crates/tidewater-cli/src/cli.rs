//! The command line: `tidewater [serve] [OPTIONS]`. Without a subcommand,
//! `serve` runs with the options given.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, InvalidConfig, LogFormat, Origin, Override};
use crate::serve;

/// The exit code for a configuration that cannot be used.
const EXIT_CONFIG: u8 = 2;

/// tidewater: a database connection pool that rides out peak traffic, and
/// its reference service.
#[derive(Debug, Parser)]
#[command(name = "tidewater", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; `serve` when none is given.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The options of `serve`, when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the reference service: accounts, transfers and a ledger over
    /// HTTP, with health, metrics and a live dashboard (the default).
    Serve(ServeArgs),
}

/// Options of `serve`. Each flag wins over the environment and the file;
/// see docs/service.md for every key.
#[derive(Debug, Default, Clone, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); default: ./tidewater.toml if it exists.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (key `bind`; default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Database: postgres://…, mysql://…, sqlite://PATH or a file path
    /// (key `database_url`; default sqlite://tidewater.db).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Longest a request may run before a 503 (key `request_timeout`; default 10s).
    #[arg(long, value_name = "DURATION")]
    pub request_timeout: Option<String>,
    /// Most database connections (key `pool.max_size`; default 50).
    #[arg(long, value_name = "N")]
    pub max_size: Option<String>,
    /// Log lines as readable text or JSON (key `log_format`).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Which events to log, a tracing filter (key `log_level`; default info).
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Any key: `--set pool.acquire_timeout=2s` (repeatable).
    #[arg(long = "set", short = 's', value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the effective configuration as TOML (passwords redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Once serving, write where (URL, backend, dashboard, process id) to
    /// this file as JSON; removed at shutdown. See `serve::Ready`.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
}

impl ServeArgs {
    /// The keys the flags set, in order (`--set` last).
    ///
    /// # Errors
    /// A `--set` without `=`.
    pub fn overrides(&self) -> Result<Vec<Override>, InvalidConfig> {
        let mut overrides = Vec::new();
        let mut flag = |key: &str, value: &Option<String>, name: &str| {
            if let Some(value) = value {
                overrides.push(Override {
                    key: key.to_owned(),
                    value: value.clone(),
                    flag: name.to_owned(),
                });
            }
        };
        flag("bind", &self.bind, "--bind");
        flag("database_url", &self.database_url, "--database-url");
        flag(
            "request_timeout",
            &self.request_timeout,
            "--request-timeout",
        );
        flag("pool.max_size", &self.max_size, "--max-size");
        let format = self.log_format.map(|format| match format {
            LogFormat::Human => "human".to_owned(),
            LogFormat::Json => "json".to_owned(),
        });
        flag("log_format", &format, "--log-format");
        flag("log_level", &self.log_level, "--log-level");
        for setting in &self.set {
            let Some((key, value)) = setting.split_once('=') else {
                return Err(InvalidConfig {
                    key: setting.clone(),
                    origin: Some(Origin::Flag("--set".into())),
                    message: "write --set KEY=VALUE".into(),
                });
            };
            overrides.push(Override {
                key: key.trim().to_owned(),
                value: value.to_owned(),
                flag: format!("--set {setting}"),
            });
        }
        Ok(overrides)
    }
}

/// Runs the command line of this process.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(args) => serve(&args),
    }
}

/// The environment, without the variables that are not Unicode.
fn environment() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
}

/// `tidewater serve`: loads the configuration (flags, environment, file),
/// runs the service until SIGTERM or Ctrl-C, and returns the exit code
/// (2 for a configuration it cannot use). The lab's `serve` is this too.
pub fn serve(args: &ServeArgs) -> ExitCode {
    let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let loaded = args
        .overrides()
        .and_then(|flags| config::load(args.config.as_deref(), &dir, environment(), &flags));
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("tidewater: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let config = loaded.config;
    if args.print_config {
        println!(
            "# tidewater serve: effective configuration (flags > environment > {} > defaults)",
            loaded
                .file
                .as_ref()
                .map_or_else(|| "no file".to_owned(), |file| file.display().to_string())
        );
        print!("{}", config.to_toml_redacted());
        return ExitCode::SUCCESS;
    }
    if let Err(error) = crate::logging::init(config.log_format, &config.log_level) {
        eprintln!("tidewater: {error}");
        return ExitCode::from(EXIT_CONFIG);
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(file) = &loaded.file {
        tracing::info!(file = %file.display(), "configuration file read");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tidewater: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config, args.ready_file.as_deref()))
}

async fn run(config: config::Config, ready_file: Option<&Path>) -> ExitCode {
    let server = match serve::start(config).await {
        Ok(server) => server,
        Err(error) => {
            tracing::error!(%error, "tidewater did not start");
            eprintln!("tidewater: {error}");
            return match error {
                serve::StartError::Config(_) => ExitCode::from(EXIT_CONFIG),
                _ => ExitCode::FAILURE,
            };
        }
    };
    // Listening before saying it serves: a signal sent as soon as the ready
    // file or the line is read must find the handlers installed, not kill
    // the process. The file first: whoever reads the line finds it.
    let mut signals = ShutdownSignals::install();
    let ready = ready_file.map(|path| (path, serve::Ready::of(&server).write(path)));
    println!(
        "tidewater is serving on {} ({}); dashboard: {}",
        server.url(),
        server.store().backend(),
        server.dashboard_url()
    );
    match (&mut signals, &ready) {
        (_, Some((path, Err(error)))) => {
            tracing::error!(%error, file = %path.display(), "cannot write the ready file; shutting down");
        }
        (Ok(signals), _) => signals.recv().await,
        (Err(error), _) => tracing::error!(%error, "cannot listen for signals; shutting down"),
    }
    tracing::info!("shutting down: no new connections; finishing the requests in flight");
    let second_signal = async {
        match &mut signals {
            Ok(signals) => signals.recv().await,
            Err(_) => std::future::pending().await,
        }
    };
    if let Some((path, Ok(()))) = &ready {
        let _ = std::fs::remove_file(path);
    }
    let ready_failed = matches!(ready, Some((_, Err(_))));
    tokio::select! {
        report = server.shutdown() => {
            tracing::info!(requests_drained = report.requests_drained, "stopped");
            if ready_failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        () = second_signal => {
            tracing::warn!("second signal: exiting without waiting");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM and Ctrl-C (SIGINT), listened for from [`install`](Self::install)
/// on: the same listeners serve the first signal and the second.
struct ShutdownSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for SIGTERM or SIGINT.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => tracing::info!("SIGTERM received"),
            _ = self.interrupt.recv() => tracing::info!("SIGINT received"),
        }
    }
}
