//! The `tidewater-lab` command line: `load`, `drill`, `soak` and `advise`
//! (each in its own module: flags, the run in the library, the report
//! printed), and `serve`, the reference service itself, which the lab
//! starts by default for `--spawn`, `drill` and `soak`. See docs/lab.md.
//!
//! Only this binary prints; the library returns reports and errors, and
//! says what it is doing through `tracing` events, which the lab commands
//! write on standard error ([`log_notes`]) unless `--quiet` or `--json`.

pub mod advise;
pub mod drill;
pub mod fleet;
pub mod load;
pub mod soak;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::fmt::FormatFields as _;

/// tidewater-lab: load, fault drills, leak soaks and pool sizing for the
/// tidewater reference service, each with a report and a verdict.
#[derive(Debug, Parser)]
#[command(name = "tidewater-lab", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the reference service with virtual users (default 1000) and
    /// report throughput, latency, the pool's acquisition wait, errors,
    /// availability and memory, check that no money was lost, and judge
    /// against SLOs (exit code 1 on failure); `--ramp` finds the knee.
    Load(load::LoadArgs),
    /// Recommend max_size and min_idle per replica from the load (rate and
    /// use time) and the server (cores, max_connections), showing why.
    Advise(advise::AdviseArgs),
    /// Drill the reference service: run the load while a private
    /// PostgreSQL is restarted, crashed, hung, emptied of sessions and
    /// filled, and report each phase (failures by kind, longest wait,
    /// recovery) and the correctness check (exit code 1 on failure).
    Drill(drill::DrillArgs),
    /// Soak the reference service: a long load run sampling its memory
    /// and the pool's counters, fitting the memory trend against
    /// checkouts, and checking every slot is back and no money was lost
    /// (exit code 1 on a leak).
    Soak(soak::SoakArgs),
    /// Run the reference service, exactly as `tidewater serve` (the
    /// service the lab starts unless `--service-exe` names another
    /// binary).
    Serve(tidewater_cli::cli::ServeArgs),
    /// Run N replicas of the service in fleet mode on one private
    /// PostgreSQL with few connections, under load through all of them,
    /// sampling the server's sessions every 100 ms (optionally killing
    /// one), and judge: no "too many clients", no sample above the
    /// server's limit, every replica served, money conserved.
    Fleet(fleet::FleetArgs),
}

/// Runs the command line of this process.
pub fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Load(args) => load::run(&args),
        Command::Advise(args) => advise::run(&args),
        Command::Drill(args) => drill::run(&args),
        Command::Soak(args) => soak::run(&args),
        Command::Serve(args) => tidewater_cli::cli::serve(&args),
        Command::Fleet(args) => fleet::run(&args),
    }
}

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
        let range = format!("allowed {} to {}", human(min), human(max));
        let value = humantime::parse_duration(text.trim())
            .map_err(|e| format!("not a duration ({e}); write e.g. 250ms, 10s, 5m; {range}"))?;
        if value < min || value > max {
            return Err(range);
        }
        Ok(value)
    }
}

/// A bound written as the flags take it: `10us`, `100ms`, `1s`, `24h`.
fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if duration.subsec_nanos() != 0 {
        if duration.subsec_nanos() % 1_000_000 == 0 && secs == 0 {
            return format!("{}ms", duration.as_millis());
        }
        return format!("{}us", duration.as_micros());
    }
    match secs {
        0 => "0s".into(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s >= 300 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A number from 0 to 1.
pub(crate) fn probability(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err("allowed 0 to 1 (e.g. 0.1)".into()),
    }
}

/// The command line, for a lab report: `tidewater-lab drill …`, each argument
/// quoted when it has a space.
pub(crate) fn command_line() -> String {
    let mut words = vec!["tidewater-lab".to_owned()];
    for arg in std::env::args().skip(1) {
        if arg.contains(char::is_whitespace) || arg.is_empty() {
            words.push(format!("'{arg}'"));
        } else {
            words.push(arg);
        }
    }
    words.join(" ")
}

/// The service a command starts (`drill`, `soak`, `fleet`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServiceArgs {
    /// A key of the service's configuration, passed on as `serve --set
    /// KEY=VALUE` (repeatable), e.g. `--set pool.acquire_timeout=2s`.
    #[arg(long = "set", short = 's', value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The service binary to start, such as a release `tidewater` (default:
    /// this one, whose `serve` is the service).
    #[arg(long, value_name = "PATH")]
    pub service_exe: Option<std::path::PathBuf>,
}

impl ServiceArgs {
    /// The binary to start.
    pub fn exe(&self) -> std::path::PathBuf {
        self.service_exe
            .clone()
            .unwrap_or_else(|| tidewater_lab::service::SpawnOptions::default().exe)
    }
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
/// failure is printed as `tidewater-lab COMMAND: error` (its sources
/// included, see [`chain`]) and becomes the exit code `exit_code` gives it
/// (3 when no runtime can be started).
pub(crate) fn block_on_lab<T, E: std::error::Error>(
    command: &str,
    future: impl std::future::Future<Output = Result<T, E>>,
    exit_code: impl Fn(&E) -> u8,
) -> Result<T, ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("tidewater-lab {command}: cannot start the async runtime: {error}");
            ExitCode::from(3)
        })?;
    runtime.block_on(future).map_err(|error| {
        eprintln!("tidewater-lab {command}: {}", chain(&error));
        ExitCode::from(exit_code(&error))
    })
}

/// `error` and its sources in one message, `error: source: source`; a
/// source whose text its error already ends with is not repeated, and the
/// sources of a message of several lines (a service's last log lines)
/// follow it on lines of their own, after `caused by: `.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(if message.contains('\n') {
                "\ncaused by: "
            } else {
                ": "
            });
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Writes the library's `tracing` events on standard error, each line
/// `tidewater-lab COMMAND: message`, as the notes of a lab command were
/// before: nothing when `quiet`; else the events `directives` enable (an
/// [`EnvFilter`](tracing_subscriber::EnvFilter), such as
/// `tidewater_lab=info`: no other crate's).
pub(crate) fn log_notes(command: &'static str, quiet: bool, directives: &str) {
    if quiet {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(directives))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(Notes { command })
        .try_init();
}

/// The format of [`log_notes`]: `tidewater-lab COMMAND: ` and the event's
/// message and fields, one line each.
struct Notes {
    command: &'static str,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Notes
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "tidewater-lab {}: ", self.command)?;
        context.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Prints `report` as pretty JSON on standard output.
pub(crate) fn print_json(report: &impl serde::Serialize, command: &str) -> Result<(), ExitCode> {
    match serde_json::to_string_pretty(report) {
        Ok(json) => {
            println!("{json}");
            Ok(())
        }
        Err(error) => {
            eprintln!("tidewater-lab {command}: cannot write the report as JSON: {error}");
            Err(ExitCode::from(3))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_name_their_range() {
        let parse = duration_in(secs(1), secs(60));
        assert_eq!(parse("250ms").unwrap_err(), "allowed 1s to 60s");
        assert_eq!(parse("2m").unwrap_err(), "allowed 1s to 60s");
        assert!(parse("soon").unwrap_err().contains("not a duration"));
        assert_eq!(parse("30s"), Ok(secs(30)));
        assert_eq!(human(secs(24 * 3600)), "24h");
        assert_eq!(human(Duration::from_micros(10)), "10us");
        assert_eq!(human(Duration::from_millis(100)), "100ms");
        assert_eq!(human(Duration::ZERO), "0s");
        assert_eq!(human(secs(600)), "10m");
    }

    /// An error of `message` caused by `source`.
    #[derive(Debug)]
    struct Caused(&'static str, Option<Box<Caused>>);

    impl std::fmt::Display for Caused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Caused {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|source| source as _)
        }
    }

    #[test]
    fn an_error_is_printed_with_its_sources() {
        let cause = |message, source: Option<Caused>| Caused(message, source.map(Box::new));
        let error = cause(
            "cannot use the service",
            Some(cause("it did not start", Some(cause("no such file", None)))),
        );
        assert_eq!(
            chain(&error),
            "cannot use the service: it did not start: no such file"
        );
        // A source its error shows already is not repeated.
        let shown = cause("db error: deadlock", Some(cause("deadlock", None)));
        assert_eq!(chain(&shown), "db error: deadlock");
        // After a message of several lines, a source has a line of its own.
        let lines = cause(
            "did not start; its log:\nline 1",
            Some(cause("denied", None)),
        );
        assert_eq!(
            chain(&lines),
            "did not start; its log:\nline 1\ncaused by: denied"
        );
    }

    #[test]
    fn probabilities_are_from_zero_to_one() {
        assert_eq!(probability("0.25"), Ok(0.25));
        assert!(probability("1.5").is_err());
        assert!(probability("-0.1").is_err());
        assert!(probability("NaN").is_err());
    }
}
