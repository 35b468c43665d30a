//! `tidewater-lab drill`: its flags, and the run (in `tidewater-lab`) with
//! the report printed as text or JSON. See `docs/lab.md`.
//!
//! Exit codes: 0 every verdict passed; 1 a verdict failed (an answer
//! other than success or a 503 naming its cause, an answer past the
//! deadline, a recovery past its bound, the correctness check, the
//! service's shutdown); 2 the options are wrong; 3 the drill could not be
//! made (no PostgreSQL programs, the service did not start, a fault could
//! not be injected).
//!
//! Also the flag parsers `tidewater-lab soak` shares.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tidewater_lab::drill::DrillConfig;
use tidewater_lab::faults::Fault;

use super::{ServiceArgs, block_on_lab, command_line, duration_in, finish, log_notes, secs};

/// Options of `tidewater-lab drill`. It breaks only a private PostgreSQL it
/// creates for the run (never a shared server) and stops by itself.
#[derive(Debug, Clone, Args)]
pub struct DrillArgs {
    /// The faults, comma-separated, in order: restart, crash, hang,
    /// terminate-backends, fill-connections (default: these five, in that
    /// order), and cpu-hog (only when named: side sessions run CPU-bound
    /// queries for the hold time).
    #[arg(long, value_name = "FAULTS", value_delimiter = ',')]
    pub faults: Vec<Fault>,
    /// How long each lasting fault (crash, hang, fill-connections,
    /// cpu-hog) holds (100ms to 5m).
    #[arg(long, value_name = "DURATION", default_value = "3s",
          value_parser = duration_in(Duration::from_millis(100), secs(300)))]
    pub hold: Duration,
    /// The calm baseline before the first fault, and the calm stretch
    /// kept after each recovery (100ms to 10m).
    #[arg(long, value_name = "DURATION", default_value = "2s",
          value_parser = duration_in(Duration::from_millis(100), secs(600)))]
    pub phase: Duration,
    /// Virtual users (1 to 5000).
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub users: u32,
    /// Mean think time before each request (0s to 1m).
    #[arg(long, value_name = "DURATION", default_value = "100ms",
          value_parser = duration_in(Duration::ZERO, secs(60)))]
    pub think: Duration,
    /// Accounts opened for the run (2 to 10000).
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(2..=10_000))]
    pub accounts: u32,
    /// The service's request deadline (`request_timeout`), which every
    /// answer must meet (1s to 5m).
    #[arg(long, value_name = "DURATION", default_value = "10s",
          value_parser = duration_in(secs(1), secs(300)))]
    pub request_timeout: Duration,
    /// What an answer may take beyond the request deadline (0s to 1m).
    #[arg(long, value_name = "DURATION", default_value = "1s",
          value_parser = duration_in(Duration::ZERO, secs(60)))]
    pub margin: Duration,
    /// Most time from the database's return to the first success
    /// (10ms to 5m).
    #[arg(long, value_name = "DURATION", default_value = "5s",
          value_parser = duration_in(Duration::from_millis(10), secs(300)))]
    pub recovery_bound: Duration,
    /// `max_connections` of the private server (8 to 1000).
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(8..=1000))]
    pub max_connections: u32,
    /// The service's `pool.max_size` (1 to 996; at most max_connections - 4).
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=996))]
    pub max_size: u32,
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

impl DrillArgs {
    /// The drill these options describe.
    pub fn config(&self) -> DrillConfig {
        let defaults = DrillConfig::default();
        DrillConfig {
            faults: if self.faults.is_empty() {
                Fault::ALL.to_vec()
            } else {
                self.faults.clone()
            },
            hold: self.hold,
            phase: self.phase,
            users: self.users,
            think: self.think,
            accounts: self.accounts,
            request_timeout: self.request_timeout,
            margin: self.margin,
            recovery_bound: self.recovery_bound,
            recovery_deadline: defaults.recovery_deadline.max(self.recovery_bound),
            max_connections: self.max_connections,
            max_size: self.max_size,
            settings: self.service.set.clone(),
            exe: self.service.exe(),
            command: command_line(),
        }
    }
}

/// `tidewater-lab drill`.
pub fn run(args: &DrillArgs) -> ExitCode {
    // The drill's notes; its load's only when something went wrong.
    log_notes(
        "drill",
        args.quiet || args.json,
        "tidewater_lab=info,tidewater_lab::load=warn",
    );
    let config = args.config();
    // The run checks the options first (exit code 2 when wrong).
    match block_on_lab("drill", tidewater_lab::drill::run(&config), |error| {
        error.exit_code()
    }) {
        Ok(report) => finish(&report, "drill", args.json, || report.text(), report.passed),
        Err(code) => code,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::commands::{Cli, Command};

    fn faults(args: &[&str]) -> Vec<Fault> {
        let cli = Cli::try_parse_from(["tidewater-lab", "drill"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Drill(args) => args.config().faults,
            other => panic!("not a drill: {other:?}"),
        }
    }

    #[test]
    fn the_cpu_hog_runs_only_when_named() {
        assert_eq!(faults(&[]), Fault::ALL);
        assert_eq!(faults(&["--faults", "cpu-hog"]), [Fault::CpuHog]);
        assert_eq!(
            faults(&["--faults", "hang,cpu-hog"]),
            [Fault::Hang, Fault::CpuHog]
        );
    }
}
