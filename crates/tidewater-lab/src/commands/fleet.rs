//! `tidewater-lab fleet`: its flags, and the run (in `tidewater-lab`) with
//! the report printed as text or JSON. See `docs/lab.md`.
//!
//! Exit codes: 0 every verdict passed; 1 a verdict failed (a "too many
//! clients", a sample above the server's limit, a replica that served
//! nobody, money not conserved, a share that did not move after the
//! kill); 2 the options are wrong; 3 the run could not be made.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tidewater_lab::fleet::FleetConfig;

use super::{ServiceArgs, block_on_lab, command_line, duration_in, finish, log_notes, secs};

/// Options of `tidewater-lab fleet`. It runs on a private PostgreSQL it
/// creates for the run and stops by itself.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Service processes in the fleet (2 to 16).
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(2..=16))]
    pub replicas: u32,
    /// `max_connections` of the private server (8 to 1000).
    #[arg(long, value_name = "N", default_value_t = 40,
          value_parser = clap::value_parser!(u32).range(8..=1000))]
    pub max_connections: u32,
    /// Each replica's `pool.max_size` (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_size: u32,
    /// Callers per replica, each sending transfers back to back (1 to 500).
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=500))]
    pub callers: u32,
    /// How long the load runs (1s to 1h).
    #[arg(long, value_name = "DURATION", default_value = "10s",
          value_parser = duration_in(secs(1), secs(3600)))]
    pub duration: Duration,
    /// Kill one replica (SIGKILL) halfway, and measure how soon its share
    /// goes to the others.
    #[arg(long)]
    pub kill_one: bool,
    /// Run the same replicas without fleet mode, to see what it prevents.
    #[arg(long)]
    pub no_fleet: bool,
    /// The service it starts.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// No notes on standard error.
    #[arg(long, short)]
    pub quiet: bool,
}

impl FleetArgs {
    /// The run these options describe.
    pub fn config(&self) -> FleetConfig {
        FleetConfig {
            replicas: self.replicas,
            max_connections: self.max_connections,
            max_size: self.max_size,
            callers: self.callers,
            duration: self.duration,
            kill_one: self.kill_one,
            fleet: !self.no_fleet,
            exe: self.service.exe(),
            settings: self.service.set.clone(),
            command: command_line(),
        }
    }
}

/// `tidewater-lab fleet`.
pub fn run(args: &FleetArgs) -> ExitCode {
    log_notes("fleet", args.quiet || args.json, "tidewater_lab=info");
    let config = args.config();
    // The run checks the options first (exit code 2 when wrong).
    match block_on_lab("fleet", tidewater_lab::fleet::run(&config), |error| {
        error.exit_code()
    }) {
        Ok(report) => finish(&report, "fleet", args.json, || report.text(), report.passed),
        Err(code) => code,
    }
}
