//! `tidewater drill`: its flags, and the run (in `tidewater-lab`) with
//! the report printed as text or JSON. See `docs/lab.md`.
//!
//! Exit codes: 0 every verdict passed; 1 a verdict failed (an answer
//! other than success or a 503 naming its cause, an answer past the
//! deadline, a recovery past its bound, the correctness check, the
//! service's shutdown); 2 the options are wrong; 3 the drill could not be
//! made (no PostgreSQL programs, the service did not start, a fault could
//! not be injected).
//!
//! Also the flag parsers `tidewater soak` shares.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tidewater_lab::drill::DrillConfig;
use tidewater_lab::faults::Fault;

/// `seconds` as a duration.
pub(crate) fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// A parser of durations (`250ms`, `10s`, `5m`) from `min` to `max`.
pub(crate) fn duration_in(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text: &str| {
        let range = format!(
            "allowed {} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        );
        let value = humantime::parse_duration(text.trim())
            .map_err(|e| format!("not a duration ({e}); write e.g. 250ms, 10s, 5m; {range}"))?;
        if value < min || value > max {
            return Err(range);
        }
        Ok(value)
    }
}

/// A number from 0 to 1.
pub(crate) fn probability(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err("allowed 0 to 1 (e.g. 0.25)".into()),
    }
}

/// The command line, for a lab report: `tidewater drill …`, each argument
/// quoted when it has a space.
pub(crate) fn command_line() -> String {
    let mut words = vec!["tidewater".to_owned()];
    for arg in std::env::args().skip(1) {
        if arg.contains(char::is_whitespace) || arg.is_empty() {
            words.push(format!("'{arg}'"));
        } else {
            words.push(arg);
        }
    }
    words.join(" ")
}

/// Prints a lab report (with `json`, as JSON; else its text) and returns
/// the exit code its verdict gives: 0 when it passed, 1 when not.
pub(crate) fn finish(
    report: &impl serde::Serialize,
    command: &str,
    json: bool,
    text: impl FnOnce() -> String,
    passed: bool,
) -> ExitCode {
    if json {
        if let Err(code) = print_json(report, command) {
            return code;
        }
    } else {
        print!("{}", text());
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs a lab command's `future` on a new multi-threaded runtime. A
/// failure is printed as `tidewater COMMAND: error` and becomes the exit
/// code `exit_code` gives it (3 when no runtime can be started).
pub(crate) fn block_on_lab<T, E: std::fmt::Display>(
    command: &str,
    future: impl std::future::Future<Output = Result<T, E>>,
    exit_code: impl Fn(&E) -> u8,
) -> Result<T, ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("tidewater {command}: cannot start the async runtime: {error}");
            ExitCode::from(3)
        })?;
    runtime.block_on(future).map_err(|error| {
        eprintln!("tidewater {command}: {error}");
        ExitCode::from(exit_code(&error))
    })
}

/// Prints `report` as pretty JSON on standard output.
pub(crate) fn print_json(report: &impl serde::Serialize, command: &str) -> Result<(), ExitCode> {
    match serde_json::to_string_pretty(report) {
        Ok(json) => {
            println!("{json}");
            Ok(())
        }
        Err(error) => {
            eprintln!("tidewater {command}: cannot write the report as JSON: {error}");
            Err(ExitCode::from(3))
        }
    }
}

/// Options of `tidewater drill`. It breaks only a private PostgreSQL it
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
    /// Another key of the service's configuration, passed on as `serve
    /// --set KEY=VALUE` (repeatable), e.g. `--set pool.acquire_timeout=2s`.
    #[arg(long = "set", short = 's', value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The `tidewater` binary to start (default: this one).
    #[arg(long, value_name = "PATH", hide = true)]
    pub service_exe: Option<PathBuf>,
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
            settings: self.set.clone(),
            exe: self.service_exe.clone().unwrap_or(defaults.exe),
            quiet: self.quiet || self.json,
            command: command_line(),
        }
    }
}

/// `tidewater drill`.
pub fn run(args: &DrillArgs) -> ExitCode {
    let config = args.config();
    if let Err(error) = config.check() {
        eprintln!("tidewater drill: {error}");
        return ExitCode::from(2);
    }
    let report = match block_on_lab("drill", tidewater_lab::drill::run(&config), |error| {
        error.exit_code()
    }) {
        Ok(report) => report,
        Err(code) => return code,
    };
    finish(&report, "drill", args.json, || report.text(), report.passed)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn faults(args: &[&str]) -> Vec<Fault> {
        let cli = Cli::try_parse_from(["tidewater", "drill"].iter().chain(args)).unwrap();
        match cli.command {
            Some(Command::Drill(args)) => args.config().faults,
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
