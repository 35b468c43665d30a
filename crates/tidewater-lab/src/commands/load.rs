//! `tidewater-lab load`: its flags, and the run (in `tidewater-lab`) with the
//! report printed as text or JSON and optionally written as HTML. See
//! `docs/lab.md`.
//!
//! Exit codes: 0 every verdict passed; 1 a verdict failed (an objective,
//! the correctness check, the service's shutdown, or a ramp without a
//! knee); 2 the options are wrong (a target off this machine, a setting
//! the spawned service refuses); 3 the run could not be made (the service
//! did not start, the target is not `tidewater serve`); 130 interrupted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args};
use tidewater_lab::load::ramp::{self, Ramp};
use tidewater_lab::load::slo::Slos;
use tidewater_lab::load::users::Scenario;
use tidewater_lab::load::{LoadConfig, MAX_MONEY};
use tidewater_lab::service::{SpawnOptions, Target};

use super::{block_on_lab, command_line, duration_in, finish, log_notes, probability, secs};

/// The steps of `--ramp`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RampSteps(pub Vec<u32>);

/// Options of `tidewater-lab load`. Every run is bounded (`--duration`,
/// `--requests`, or `--ramp`) and sends traffic only to this machine.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["url", "spawn"])))]
pub struct LoadArgs {
    /// Load the service running at this http:// URL; it must be on this
    /// machine (127.0.0.0/8, `[::1]` or localhost).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Start the service for the run (`tidewater serve` on a free loopback
    /// port, on SQLite in a temporary folder unless --database-url is
    /// given), sample its memory, and stop it with SIGTERM at the end.
    #[arg(long)]
    pub spawn: bool,
    /// With --spawn: the database, postgres://… or mysql://… on this machine.
    #[arg(long, value_name = "URL", requires = "spawn")]
    pub database_url: Option<String>,
    /// With --spawn: a key of the service's configuration, passed on as
    /// `serve --set KEY=VALUE` (repeatable), e.g. `--set pool.max_size=20`.
    #[arg(
        long = "set",
        short = 's',
        value_name = "KEY=VALUE",
        requires = "spawn"
    )]
    pub set: Vec<String>,
    /// With --spawn: the service binary to start, such as a release
    /// `tidewater` (default: this one, whose `serve` is the service).
    #[arg(long, value_name = "PATH", requires = "spawn")]
    pub service_exe: Option<PathBuf>,
    /// Virtual users, each running the scenario (1 to 100000).
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(ramp::MAX_USERS)),
          conflicts_with = "ramp")]
    pub users: u32,
    /// Stop starting requests after this long (1s to 24h), e.g. 60s, 10m.
    #[arg(long, value_name = "DURATION", value_parser = duration_in(secs(1), secs(24 * 3600)),
          conflicts_with = "ramp")]
    pub duration: Option<Duration>,
    /// Stop after this many requests in all (1 to 1000000000); alone, the
    /// run also stops after 1h.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000),
          conflicts_with = "ramp")]
    pub requests: Option<u64>,
    /// Mean think time before each request, randomised (exponential, at
    /// most 10x the mean); 0s to 1h.
    #[arg(long, value_name = "DURATION", default_value = "1s",
          value_parser = duration_in(Duration::ZERO, secs(3600)))]
    pub think: Duration,
    /// Chance (0 to 1) that a transfer answered 201 is sent again with
    /// the same Idempotency-Key; the answer must name the same transfer.
    #[arg(long, value_name = "P", default_value_t = 0.1, value_parser = probability)]
    pub resend: f64,
    /// Chance (0 to 1) that a round also reads the account's ledger.
    #[arg(long, value_name = "P", default_value_t = 0.2, value_parser = probability)]
    pub ledger: f64,
    /// Accounts opened for the run (2 to 100000).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub accounts: u32,
    /// Each account's opening balance, in cents (1 to 2^53 - 1 over the
    /// accounts).
    #[arg(long, value_name = "CENTS", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(i64).range(1..=MAX_MONEY))]
    pub opening_balance: i64,
    /// A request still unanswered after this counts as a transport error
    /// (100ms to 10m).
    #[arg(long, value_name = "DURATION", default_value = "15s",
          value_parser = duration_in(Duration::from_millis(100), secs(600)))]
    pub request_timeout: Duration,
    /// Objective: the pool's acquisition wait p99 at most this (10us to
    /// 60s: the bounds of the service's wait histogram).
    #[arg(long, value_name = "DURATION", default_value = "100ms",
          value_parser = duration_in(Duration::from_micros(10), secs(60)))]
    pub slo_acquire_p99: Duration,
    /// Objective: errors over requests at most this (0 to 1).
    #[arg(long, value_name = "RATIO", default_value_t = 0.001, value_parser = probability)]
    pub slo_error_rate: f64,
    /// Objective: the request latency p99 at most this (1us to 1h);
    /// default: not judged.
    #[arg(long, value_name = "DURATION",
          value_parser = duration_in(Duration::from_micros(1), secs(3600)))]
    pub slo_latency_p99: Option<Duration>,
    /// Raise the users step by step until an objective breaks, and report
    /// the knee: a list (50,100,200,400,800) or START:STEP:MAX
    /// (100:100:1000); at most 100 steps.
    #[arg(long, value_name = "STEPS", value_parser = ramp_steps)]
    pub ramp: Option<RampSteps>,
    /// With --ramp: how long each step runs (1s to 1h).
    #[arg(long, value_name = "DURATION", default_value = "10s", requires = "ramp",
          value_parser = duration_in(secs(1), secs(3600)))]
    pub step_duration: Duration,
    /// Print the report as JSON (no progress bar).
    #[arg(long)]
    pub json: bool,
    /// No progress bar and no notes on standard error; the report is
    /// still printed.
    #[arg(long, short)]
    pub quiet: bool,
    /// Also write the report as one self-contained HTML page with charts,
    /// viewable offline.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

fn ramp_steps(text: &str) -> Result<RampSteps, String> {
    ramp::parse_steps(text).map(RampSteps)
}

impl LoadArgs {
    /// The run these options describe.
    pub fn config(&self) -> LoadConfig {
        let target = match &self.url {
            Some(url) => Target::Url(url.clone()),
            None => {
                let mut options = SpawnOptions {
                    database_url: self.database_url.clone(),
                    settings: self.set.clone(),
                    ..SpawnOptions::default()
                };
                if let Some(exe) = &self.service_exe {
                    options.exe = exe.clone();
                }
                Target::Spawn(options)
            }
        };
        LoadConfig {
            target,
            users: self.users,
            duration: self.duration,
            requests: self.requests,
            ramp: self.ramp.as_ref().map(|steps| Ramp {
                steps: steps.0.clone(),
                step_duration: self.step_duration,
            }),
            scenario: Scenario {
                think: self.think,
                resend: self.resend,
                ledger: self.ledger,
                ..Scenario::default()
            },
            accounts: self.accounts,
            opening_balance: self.opening_balance,
            request_timeout: self.request_timeout,
            slos: Slos {
                acquire_p99: self.slo_acquire_p99,
                error_rate: self.slo_error_rate,
                latency_p99: self.slo_latency_p99,
            },
            progress: !self.json && !self.quiet,
            command: command_line(),
            handle_signals: true,
        }
    }
}

/// `tidewater-lab load`.
pub fn run(args: &LoadArgs) -> ExitCode {
    let quiet = args.quiet || args.json;
    log_notes("load", quiet, "tidewater_lab=info");
    let config = args.config();
    if let Err(error) = config.check() {
        eprintln!("tidewater-lab load: {error}");
        return ExitCode::from(2);
    }
    let report = match block_on_lab("load", tidewater_lab::load::run(&config), |error| {
        error.exit_code()
    }) {
        Ok(report) => report,
        Err(code) => return code,
    };
    let mut html_written = true;
    if let Some(path) = &args.html {
        let page = tidewater_lab::load::html::render(&report);
        if let Err(error) = std::fs::write(path, page) {
            eprintln!(
                "tidewater-lab load: cannot write the HTML report to {}: {error}",
                path.display()
            );
            html_written = false;
        } else if !quiet {
            eprintln!(
                "tidewater-lab load: HTML report written to {}",
                path.display()
            );
        }
    }
    let code = finish(&report, "load", args.json, || report.text(), report.passed);
    if html_written {
        code
    } else {
        ExitCode::from(3)
    }
}
