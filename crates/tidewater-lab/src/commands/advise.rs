//! `tidewater-lab advise`: the flags, and the run that prints the advice of
//! [`tidewater_lab::advise`] as text or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tidewater_lab::advise::{Request, advise};

use super::chain;

/// The exit code for input that cannot be used (as `serve`'s bad configuration).
const EXIT_INPUT: u8 = 2;

/// Options of `advise`. The load comes from flags or from `--from` a
/// `tidewater-lab load --json` report (flags win); the server's limits from
/// flags or from `--database-url`. See docs/lab.md.
#[derive(Debug, Default, Clone, Args)]
pub struct AdviseArgs {
    /// Checkouts per second over the whole service, all replicas together
    /// (0 to 1e9; default: the report's pool.checkouts_per_second).
    #[arg(long, value_name = "RATE", allow_hyphen_values = true)]
    pub checkouts_per_second: Option<String>,
    /// Mean time a checkout holds its connection, such as 4ms (1us to 1h;
    /// default: the report's pool.use_time_seconds.mean).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub use_time: Option<String>,
    /// The p99 of that time, if known; a long tail stretches the waits
    /// (default: the report's pool.use_time_seconds.p99).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub use_time_p99: Option<String>,
    /// A report written by `tidewater-lab load --json` to take the load from.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// The database server's CPU cores (1 to 4096; default: this
    /// machine's when --database-url is on loopback, else required).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub server_cores: Option<String>,
    /// The rule of thumb's effective_spindle_count (0 to 1000; default 1).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub spindles: Option<String>,
    /// The server's max_connections (1 to 262143; default: read from
    /// --database-url).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub max_connections: Option<String>,
    /// A PostgreSQL server to read max_connections and its reserved slots
    /// from (read-only: one connection, one query).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Copies of the service, each with its own pool (1 to 10000; default 1).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub replicas: Option<String>,
    /// Connections left for other clients: admin, migrations, monitoring
    /// (default: 10% of max_connections, at least superuser_reserved_connections).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub reserved: Option<String>,
    /// Bound on the p99 acquisition wait (1ms to 1h; default 100ms).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub target_wait_p99: Option<String>,
    /// Most connections in use on average over max_size, the headroom for
    /// surges (0.05 to 1; default 0.8).
    #[arg(long, value_name = "SHARE", allow_hyphen_values = true)]
    pub max_utilization: Option<String>,
    /// The max_size the replicas run with now, to check against the
    /// server (1 to 10000; default: the report's pool.max_size).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub max_size: Option<String>,
    /// Print the advice as JSON.
    #[arg(long)]
    pub json: bool,
}

impl AdviseArgs {
    /// The flags as the lab reads them.
    pub fn request(&self) -> Request {
        Request {
            checkouts_per_second: self.checkouts_per_second.clone(),
            use_time: self.use_time.clone(),
            use_time_p99: self.use_time_p99.clone(),
            from: self.from.clone(),
            server_cores: self.server_cores.clone(),
            spindles: self.spindles.clone(),
            max_connections: self.max_connections.clone(),
            database_url: self.database_url.clone(),
            replicas: self.replicas.clone(),
            reserved: self.reserved.clone(),
            target_wait_p99: self.target_wait_p99.clone(),
            max_utilization: self.max_utilization.clone(),
            max_size: self.max_size.clone(),
        }
    }
}

/// `tidewater-lab advise`: prints the advice; exits 2 on bad input, 1 when
/// the server cannot be read, 0 otherwise (warnings included).
pub fn run(args: &AdviseArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tidewater-lab advise: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let advice = runtime
        .block_on(args.request().resolve())
        .and_then(|inputs| advise(&inputs));
    let advice = match advice {
        Ok(advice) => advice,
        Err(error) => {
            eprintln!("tidewater-lab advise: {}", chain(&error));
            return if error.is_input() {
                ExitCode::from(EXIT_INPUT)
            } else {
                ExitCode::FAILURE
            };
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&advice) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("tidewater-lab advise: cannot write JSON: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{advice}");
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::commands::{Cli, Command};

    #[test]
    fn flags_make_the_request() {
        let cli = Cli::parse_from([
            "tidewater-lab",
            "advise",
            "--checkouts-per-second",
            "2000",
            "--use-time",
            "4ms",
            "--server-cores",
            "8",
            "--max-connections",
            "100",
            "--json",
        ]);
        let Command::Advise(args) = cli.command else {
            panic!("not advise")
        };
        assert!(args.json);
        assert_eq!(args.request().use_time.as_deref(), Some("4ms"));
    }
}
