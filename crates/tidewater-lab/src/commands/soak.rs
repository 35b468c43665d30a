//! `tidewater-lab soak`: its flags, and the run (in `tidewater-lab`) with the
//! report printed as text or JSON. See `docs/lab.md`.
//!
//! Exit codes: 0 every verdict passed; 1 a verdict failed (the memory
//! trend, a slot not back, a leak detected, the correctness check, the
//! service's shutdown); 2 the options are wrong; 3 the soak could not be
//! made (the service did not start).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tidewater_lab::service::SpawnOptions;
use tidewater_lab::soak::{DEFAULT_WARM_UP, SoakConfig};

use super::{
    ServiceArgs, block_on_lab, command_line, duration_in, finish, log_notes, probability, secs,
};

/// Options of `tidewater-lab soak`. The run is bounded by `--duration` and
/// sends traffic only to this machine.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// How long the users run (10s to 7d), e.g. 30s, 1h.
    #[arg(long, value_name = "DURATION", default_value = "1h",
          value_parser = duration_in(secs(10), secs(7 * 24 * 3600)))]
    pub duration: Duration,
    /// Virtual users (1 to 10000).
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub users: u32,
    /// Mean think time before each request (0s to 1m).
    #[arg(long, value_name = "DURATION", default_value = "100ms",
          value_parser = duration_in(Duration::ZERO, secs(60)))]
    pub think: Duration,
    /// Accounts opened for the run (2 to 100000).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub accounts: u32,
    /// How often to sample memory and the pool (100ms to 10m); default a
    /// sixtieth of the duration, 1s to 5s.
    #[arg(long, value_name = "DURATION",
          value_parser = duration_in(Duration::from_millis(100), secs(600)))]
    pub sample_every: Option<Duration>,
    /// The share of the run, from its start, left out of the memory fit
    /// (0 to 0.9).
    #[arg(long, value_name = "SHARE", default_value_t = DEFAULT_WARM_UP, value_parser = probability)]
    pub warm_up: f64,
    /// Most resident memory the service may gain per million checkouts,
    /// in MiB (above 0).
    #[arg(long, value_name = "MIB", default_value_t = 32.0, value_parser = positive)]
    pub leak_bound: f64,
    /// Longest to wait after the load for every connection to be back
    /// (1s to 10m).
    #[arg(long, value_name = "DURATION", default_value = "30s",
          value_parser = duration_in(secs(1), secs(600)))]
    pub settle_timeout: Duration,
    /// The database, postgres://… or mysql://… on this machine (default:
    /// SQLite in a temporary folder).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// The service it starts.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Print the report as JSON (no progress bar).
    #[arg(long)]
    pub json: bool,
    /// No progress bar and no notes on standard error.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A number above 0.
fn positive(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err("a number above 0 (e.g. 32)".into()),
    }
}

impl SoakArgs {
    /// The soak these options describe.
    pub fn config(&self) -> SoakConfig {
        let spawn = SpawnOptions {
            exe: self.service.exe(),
            database_url: self.database_url.clone(),
            settings: self.service.set.clone(),
            ..SpawnOptions::default()
        };
        SoakConfig {
            duration: self.duration,
            users: self.users,
            think: self.think,
            accounts: self.accounts,
            sample_every: self.sample_every,
            warm_up: self.warm_up,
            leak_bound: self.leak_bound * f64::from(1 << 20),
            settle_timeout: self.settle_timeout,
            spawn,
            progress: !self.json && !self.quiet,
            command: command_line(),
        }
    }
}

/// `tidewater-lab soak`.
pub fn run(args: &SoakArgs) -> ExitCode {
    log_notes("soak", args.quiet || args.json, "tidewater_lab=info");
    let config = args.config();
    // The run checks the options first (exit code 2 when wrong).
    match block_on_lab("soak", tidewater_lab::soak::run(&config), |error| {
        error.exit_code()
    }) {
        Ok(report) => finish(&report, "soak", args.json, || report.text(), report.passed),
        Err(code) => code,
    }
}
