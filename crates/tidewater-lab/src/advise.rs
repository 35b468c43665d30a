//! `tidewater-lab advise`: a pool size from the load and the server.
//!
//! From the arrival rate of checkouts and how long each holds its
//! connection (given, or read from a `tidewater-lab load --json` report), the
//! database server's cores and `max_connections`, and the number of
//! service replicas, it recommends `max_size` and `min_idle` per replica
//! and warns when the replicas together would exhaust the server. Every
//! step is shown with its numbers:
//!
//! 1. **Little's law**, `L = λ·W`: the mean number of connections in use.
//! 2. **Peaks**: the M/M/c queue (Erlang C) gives the smallest pool whose
//!    p99 acquisition wait stays under a target (100 ms, the load SLO) at
//!    a utilization of at most 80%, so a surge of a quarter more load
//!    still finds the pool stable. A use-time p99 far above the mean
//!    stretches the waits (Allen–Cunneen).
//! 3. **The server's throughput**: the PostgreSQL rule of thumb of about
//!    `cores × 2 + effective_spindle_count` queries running at once.
//! 4. **The server's connections**: `replicas × max_size + reserved <=
//!    max_connections`.
//!
//! The size is the smallest of the three, and at least 2.
//!
//! ```
//! use tidewater_lab::advise::{Inputs, Given, advise};
//!
//! let inputs = Inputs::new(Given::new(2000.0, "--checkouts-per-second"), Given::new(0.004, "--use-time"))
//!     .with_server(Given::new(8, "--server-cores"), Given::new(100, "--max-connections"))
//!     .with_replicas(Given::new(2, "--replicas"));
//! let advice = advise(&inputs).unwrap();
//! // 8 connections in use on average, 4 per replica; 5 each keeps them 80% busy.
//! assert_eq!(advice.max_size, 5);
//! assert_eq!(advice.min_idle, 4);
//! assert!(advice.warnings.is_empty());
//! println!("{advice}");
//! ```

pub mod queueing;
mod render;
mod report;
mod server;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use queueing::{Bound, Demand, Service, Sizing, Targets};
pub use report::Measured;
pub use server::{ServerBudget, ServerError, is_loopback, read_server};

/// The largest `max_size` a tidewater pool takes.
pub const MAX_POOL_SIZE: u32 = 10_000;
/// The smallest size recommended: with one connection, one slow checkout
/// stalls every caller.
pub const MIN_RECOMMENDED: u32 = 2;
/// The default bound on the p99 acquisition wait (the load SLO).
pub const DEFAULT_TARGET_WAIT_P99: Duration = Duration::from_millis(100);
/// The default ceiling on mean connections in use over `max_size`.
pub const DEFAULT_MAX_UTILIZATION: f64 = 0.8;
/// The default `effective_spindle_count` of the rule of thumb.
pub const DEFAULT_SPINDLES: u32 = 1;
/// PostgreSQL's default `superuser_reserved_connections`, assumed when the
/// server is not asked.
pub const POSTGRES_SUPERUSER_RESERVED: u32 = 3;

/// A value and where it came from: a flag, a report field, the server, a
/// default.
///
/// ```
/// use tidewater_lab::advise::Given;
/// let replicas = Given::new(3, "--replicas");
/// assert_eq!(replicas.value, 3);
/// assert_eq!(replicas.from, "--replicas");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Given<T> {
    /// The value.
    pub value: T,
    /// Where it came from; names the flag or field in errors.
    pub from: String,
}

impl<T> Given<T> {
    /// `value`, from `from`.
    pub fn new(value: T, from: impl Into<String>) -> Self {
        Self {
            value,
            from: from.into(),
        }
    }
}

/// Everything the advice is computed from. Times are in seconds.
///
/// ```
/// use tidewater_lab::advise::{Given, Inputs};
/// let inputs = Inputs::new(Given::new(500.0, "--checkouts-per-second"), Given::new(0.002, "--use-time"));
/// assert_eq!(inputs.replicas.value, 1);
/// assert_eq!(inputs.target_wait_p99_seconds.value, 0.1);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inputs {
    /// Checkouts per second over the whole service (all replicas), spread
    /// evenly over the replicas.
    pub checkouts_per_second: Given<f64>,
    /// Mean time a connection is held, per checkout.
    pub use_time_seconds: Given<f64>,
    /// The p99 of that time, when known.
    pub use_time_p99_seconds: Option<Given<f64>>,
    /// The bound on the p99 acquisition wait.
    pub target_wait_p99_seconds: Given<f64>,
    /// The ceiling on mean connections in use over `max_size`.
    pub max_utilization: Given<f64>,
    /// The database server's CPU cores.
    pub server_cores: Given<u32>,
    /// The rule of thumb's `effective_spindle_count`.
    pub spindles: Given<u32>,
    /// The server's `max_connections`.
    pub max_connections: Given<u32>,
    /// Connections left for everything but these pools: superuser slots,
    /// administrators, migrations, monitoring, other services.
    pub reserved: Given<u32>,
    /// Copies of the service, each with its own pool.
    pub replicas: Given<u32>,
    /// The `max_size` the replicas run with now, to check against the server.
    pub current_max_size: Option<Given<u32>>,
    /// Connections other clients held on the server when it was read.
    pub held_by_others: Option<Given<u32>>,
    /// The load run the numbers came from, if any.
    pub measured: Option<Measured>,
}

impl Inputs {
    /// Inputs for this load, with the defaults for the rest: one replica,
    /// a server of 1 core with `max_connections` 100 (change them with
    /// [`with_server`](Self::with_server)), 10% reserved, p99 wait under
    /// 100 ms, utilization at most 80%.
    pub fn new(checkouts_per_second: Given<f64>, use_time_seconds: Given<f64>) -> Self {
        Self {
            checkouts_per_second,
            use_time_seconds,
            use_time_p99_seconds: None,
            target_wait_p99_seconds: Given::new(
                DEFAULT_TARGET_WAIT_P99.as_secs_f64(),
                "default (the load SLO)",
            ),
            max_utilization: Given::new(DEFAULT_MAX_UTILIZATION, "default"),
            server_cores: Given::new(1, "default"),
            spindles: Given::new(DEFAULT_SPINDLES, "default"),
            max_connections: Given::new(100, "default (PostgreSQL's)"),
            reserved: default_reserved(100, None),
            replicas: Given::new(1, "default"),
            current_max_size: None,
            held_by_others: None,
            measured: None,
        }
    }

    /// The server's cores and `max_connections`; `reserved` becomes its
    /// default for that `max_connections` (see [`default_reserved`]).
    pub fn with_server(mut self, cores: Given<u32>, max_connections: Given<u32>) -> Self {
        self.reserved = default_reserved(max_connections.value, None);
        self.server_cores = cores;
        self.max_connections = max_connections;
        self
    }

    /// The number of replicas.
    pub fn with_replicas(mut self, replicas: Given<u32>) -> Self {
        self.replicas = replicas;
        self
    }

    /// Checks every value against its allowed range.
    ///
    /// # Errors
    /// [`AdviseError::Invalid`] naming the flag or report field the value
    /// came from and its range.
    ///
    /// ```
    /// use tidewater_lab::advise::{Given, Inputs};
    /// let inputs = Inputs::new(Given::new(-5.0, "--checkouts-per-second"), Given::new(0.004, "--use-time"));
    /// assert_eq!(
    ///     inputs.validate().unwrap_err().to_string(),
    ///     "--checkouts-per-second = -5: allowed: 0 to 1000000000 checkouts per second"
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), AdviseError> {
        within(
            &self.checkouts_per_second,
            0.0,
            1e9,
            "0 to 1000000000 checkouts per second",
        )?;
        within(&self.use_time_seconds, 1e-6, 3600.0, "1us to 1h")?;
        if let Some(p99) = &self.use_time_p99_seconds {
            within(p99, 1e-6, 3600.0, "1us to 1h")?;
        }
        within(&self.target_wait_p99_seconds, 1e-3, 3600.0, "1ms to 1h")?;
        within(&self.max_utilization, 0.05, 1.0, "0.05 to 1")?;
        within(&self.server_cores, 1, 4096, "1 to 4096")?;
        within(&self.spindles, 0, 1000, "0 to 1000")?;
        within(&self.max_connections, 1, 262_143, "1 to 262143")?;
        let top = self.max_connections.value.saturating_sub(1);
        within(
            &self.reserved,
            0,
            top,
            &format!("0 to max_connections - 1 ({top})"),
        )?;
        within(&self.replicas, 1, MAX_POOL_SIZE, "1 to 10000")?;
        if let Some(size) = &self.current_max_size {
            within(size, 1, MAX_POOL_SIZE, "1 to 10000")?;
        }
        Ok(())
    }
}

/// The default `reserved`: 10% of `max_connections` (rounded up), and at
/// least the server's superuser-reserved slots (PostgreSQL's default of 3
/// when the server was not asked), but never all of `max_connections`.
///
/// ```
/// use tidewater_lab::advise::default_reserved;
/// assert_eq!(default_reserved(100, None).value, 10);
/// assert_eq!(default_reserved(20, None).value, 3);
/// assert_eq!(default_reserved(100, Some(15)).value, 15);
/// ```
pub fn default_reserved(max_connections: u32, superuser_reserved: Option<u32>) -> Given<u32> {
    let tenth = max_connections.div_ceil(10);
    let (floor, said) = match superuser_reserved {
        Some(n) => (
            n,
            format!("the server's superuser_reserved_connections ({n})"),
        ),
        None => (
            POSTGRES_SUPERUSER_RESERVED,
            format!(
                "PostgreSQL's default superuser_reserved_connections ({POSTGRES_SUPERUSER_RESERVED})"
            ),
        ),
    };
    let value = tenth.max(floor).min(max_connections.saturating_sub(1));
    Given::new(
        value,
        format!("default: 10% of max_connections ({tenth}), at least {said}"),
    )
}

/// `given` within `min..=max`, or an error naming where it came from.
fn within<T>(given: &Given<T>, min: T, max: T, allowed: &str) -> Result<(), AdviseError>
where
    T: PartialOrd + fmt::Display,
{
    // NaN fails both comparisons, so it is refused too.
    if given.value >= min && given.value <= max {
        return Ok(());
    }
    Err(AdviseError::Invalid {
        name: given.from.clone(),
        value: given.value.to_string(),
        allowed: allowed.to_owned(),
    })
}

/// Why `tidewater-lab advise` could not advise. The underlying error,
/// where there is one, is the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdviseError {
    /// A value out of its range, or not understood.
    #[error("{name} = {value}: allowed: {allowed}")]
    Invalid {
        /// The flag or report field it came from.
        name: String,
        /// The value as given (URLs with the password redacted).
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A needed value was given nowhere.
    #[error("missing {what}")]
    Missing {
        /// What it is and how to give it.
        what: String,
    },
    /// The `--from` file cannot be read.
    #[error("--from {path}: cannot read it")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The `--from` file is not JSON.
    #[error("--from {path}: not JSON, so not a `tidewater-lab load --json` report")]
    NotJson {
        /// The file.
        path: String,
        /// Where the parse failed.
        #[source]
        source: serde_json::Error,
    },
    /// The `--from` file is JSON but not a load report.
    #[error("--from {path}: {message}")]
    Report {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The database server could not be read.
    #[error("--database-url {url}: cannot read the server's limits")]
    Server {
        /// Its URL, password redacted.
        url: String,
        /// Why.
        #[source]
        source: ServerError,
    },
}

impl AdviseError {
    /// Whether the input is at fault (exit code 2) rather than the server.
    ///
    /// ```
    /// use tidewater_lab::advise::AdviseError;
    /// assert!(AdviseError::Missing { what: "x".into() }.is_input());
    /// ```
    pub fn is_input(&self) -> bool {
        !matches!(self, Self::Server { .. })
    }
}

/// The command line's values, as typed, before they are read: each
/// `Option` is a flag that may be absent. [`resolve`](Self::resolve)
/// parses them, fills the rest from the report, the server and the
/// defaults, and checks every range.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tidewater_lab::advise::Request;
/// let request = Request {
///     checkouts_per_second: Some("1500".into()),
///     use_time: Some("3ms".into()),
///     server_cores: Some("4".into()),
///     max_connections: Some("200".into()),
///     replicas: Some("0".into()),
///     ..Request::default()
/// };
/// let error = request.resolve().await.unwrap_err();
/// assert_eq!(error.to_string(), "--replicas = 0: allowed: 1 to 10000");
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `--checkouts-per-second`: checkouts per second, all replicas together.
    pub checkouts_per_second: Option<String>,
    /// `--use-time`: mean connection use time, a duration (`4ms`).
    pub use_time: Option<String>,
    /// `--use-time-p99`: the p99 of the use time.
    pub use_time_p99: Option<String>,
    /// `--from`: a `tidewater-lab load --json` report.
    pub from: Option<PathBuf>,
    /// `--server-cores`.
    pub server_cores: Option<String>,
    /// `--spindles`: `effective_spindle_count`.
    pub spindles: Option<String>,
    /// `--max-connections`.
    pub max_connections: Option<String>,
    /// `--database-url`: read `max_connections` from this PostgreSQL.
    pub database_url: Option<String>,
    /// `--replicas`.
    pub replicas: Option<String>,
    /// `--reserved`: connections left for other clients.
    pub reserved: Option<String>,
    /// `--target-wait-p99`.
    pub target_wait_p99: Option<String>,
    /// `--max-utilization`.
    pub max_utilization: Option<String>,
    /// `--max-size`: the `max_size` the replicas run now.
    pub max_size: Option<String>,
}

/// Parses a flag's number, or an error naming the flag.
fn number<T: std::str::FromStr>(
    flag: &str,
    text: &Option<String>,
    allowed: &str,
) -> Result<Option<Given<T>>, AdviseError> {
    let Some(text) = text else { return Ok(None) };
    text.trim()
        .parse()
        .map(|value| Some(Given::new(value, flag)))
        .map_err(|_| AdviseError::Invalid {
            name: flag.into(),
            value: text.clone(),
            allowed: allowed.into(),
        })
}

/// Parses a flag's duration into seconds, or an error naming the flag.
fn duration(
    flag: &str,
    text: &Option<String>,
    allowed: &str,
) -> Result<Option<Given<f64>>, AdviseError> {
    let Some(text) = text else { return Ok(None) };
    humantime::parse_duration(text.trim())
        .map(|d| Some(Given::new(d.as_secs_f64(), flag)))
        .map_err(|_| AdviseError::Invalid {
            name: flag.into(),
            value: text.clone(),
            allowed: format!("a duration such as 4ms, 250us or 2s, {allowed}"),
        })
}

/// The flags of a [`Request`], parsed; `None` where absent.
struct Flags {
    rate: Option<Given<f64>>,
    use_time: Option<Given<f64>>,
    use_time_p99: Option<Given<f64>>,
    target: Option<Given<f64>>,
    utilization: Option<Given<f64>>,
    cores: Option<Given<u32>>,
    spindles: Option<Given<u32>>,
    max_connections: Option<Given<u32>>,
    replicas: Option<Given<u32>>,
    reserved: Option<Given<u32>>,
    max_size: Option<Given<u32>>,
}

/// What the load report and the flags say of the load, flags first.
struct LoadInputs {
    rate: Given<f64>,
    use_time: Given<f64>,
    use_time_p99: Option<Given<f64>>,
    max_size: Option<Given<u32>>,
}

/// What the server and the flags say of it, flags first.
struct ServerInputs {
    max_connections: Given<u32>,
    cores: Given<u32>,
    reserved: Given<u32>,
    held_by_others: Option<Given<u32>>,
}

impl Request {
    /// Reads the flags, the `--from` report and the `--database-url`
    /// server, fills in the defaults and checks every value. A flag wins
    /// over the report; `--max-connections` wins over the server's.
    ///
    /// # Errors
    /// A value out of range or missing, a report that is not one, or a
    /// server that cannot be read; each names the flag or field.
    pub async fn resolve(&self) -> Result<Inputs, AdviseError> {
        let mut flags = self.flags()?;
        let measured = match &self.from {
            Some(path) => Some(Measured::read(path)?),
            None => None,
        };
        let load = load_inputs(&mut flags, measured.as_ref())?;
        let server = self.server_inputs(&mut flags).await?;
        let mut inputs = Inputs::new(load.rate, load.use_time);
        inputs.use_time_p99_seconds = load.use_time_p99;
        if let Some(target) = flags.target {
            inputs.target_wait_p99_seconds = target;
        }
        if let Some(utilization) = flags.utilization {
            inputs.max_utilization = utilization;
        }
        inputs.server_cores = server.cores;
        if let Some(spindles) = flags.spindles {
            inputs.spindles = spindles;
        }
        inputs.max_connections = server.max_connections;
        inputs.reserved = server.reserved;
        if let Some(replicas) = flags.replicas {
            inputs.replicas = replicas;
        }
        inputs.current_max_size = load.max_size;
        inputs.held_by_others = server.held_by_others;
        inputs.measured = measured;
        inputs.validate()?;
        Ok(inputs)
    }

    /// Parses each flag given.
    fn flags(&self) -> Result<Flags, AdviseError> {
        Ok(Flags {
            rate: number(
                "--checkouts-per-second",
                &self.checkouts_per_second,
                "0 to 1000000000 checkouts per second",
            )?,
            use_time: duration("--use-time", &self.use_time, "1us to 1h")?,
            use_time_p99: duration("--use-time-p99", &self.use_time_p99, "1us to 1h")?,
            target: duration("--target-wait-p99", &self.target_wait_p99, "1ms to 1h")?,
            utilization: number("--max-utilization", &self.max_utilization, "0.05 to 1")?,
            cores: number("--server-cores", &self.server_cores, "1 to 4096")?,
            spindles: number("--spindles", &self.spindles, "0 to 1000")?,
            max_connections: number("--max-connections", &self.max_connections, "1 to 262143")?,
            replicas: number("--replicas", &self.replicas, "1 to 10000")?,
            reserved: number("--reserved", &self.reserved, "0 to max_connections - 1")?,
            max_size: number("--max-size", &self.max_size, "1 to 10000")?,
        })
    }

    /// The server's `max_connections`, cores and reserved connections,
    /// and the connections others hold: from the flags taken out of
    /// `flags`, else read from `--database-url`, else the defaults.
    async fn server_inputs(&self, flags: &mut Flags) -> Result<ServerInputs, AdviseError> {
        let server = match &self.database_url {
            Some(url) => Some((url, read_server(url).await?)),
            None => None,
        };
        let server_from = |what: &str| {
            let url = server
                .as_ref()
                .map_or(String::new(), |(url, _)| tidewater_postgres::redact(url));
            format!("the server at {url} ({what})")
        };
        let max_connections = flags
            .max_connections
            .take()
            .or_else(|| {
                server.as_ref().map(|(_, budget)| {
                    Given::new(budget.max_connections, server_from("SHOW max_connections"))
                })
            })
            .ok_or_else(|| AdviseError::Missing {
                what: "the server's max_connections: give --max-connections, or \
                       --database-url postgres://… to read it"
                    .into(),
            })?;
        let cores = match (flags.cores.take(), &self.database_url) {
            (Some(cores), _) => cores,
            (None, Some(url)) if is_loopback(url)? => Given::new(
                std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
                "this machine's (the server is on loopback)",
            ),
            (None, _) => {
                return Err(AdviseError::Missing {
                    what: "the server's cores: give --server-cores (1 to 4096); they default \
                           to this machine's only when --database-url points to loopback"
                        .into(),
                });
            }
        };
        let superuser = server.as_ref().map(|(_, b)| b.superuser_reserved);
        let reserved = flags
            .reserved
            .take()
            .unwrap_or_else(|| default_reserved(max_connections.value, superuser));
        let held_by_others = server.as_ref().map(|(_, budget)| {
            Given::new(
                budget.held_by_others,
                server_from("pg_stat_activity, client backends"),
            )
        });
        Ok(ServerInputs {
            max_connections,
            cores,
            reserved,
            held_by_others,
        })
    }
}

/// The checkout rate and use time (required), the use time's p99 and the
/// pool's `max_size`: from the flags taken out of `flags`, else from the
/// load report `measured`.
fn load_inputs(flags: &mut Flags, measured: Option<&Measured>) -> Result<LoadInputs, AdviseError> {
    let field = |name: &str| {
        let path = measured.map_or("", |m| m.path.as_str());
        format!("--from {path}: {name}")
    };
    let from_report = |value: Option<f64>, name: &str| value.map(|v| Given::new(v, field(name)));
    let rate = flags
        .rate
        .take()
        .or_else(|| {
            from_report(
                measured.and_then(|m| m.checkouts_per_second),
                "pool.checkouts_per_second",
            )
        })
        .ok_or_else(|| AdviseError::Missing {
            what: "the checkout rate: give --checkouts-per-second, or --from a \
                   `tidewater-lab load --json` report with pool.checkouts_per_second"
                .into(),
        })?;
    let use_time = flags
        .use_time
        .take()
        .or_else(|| {
            from_report(
                measured.and_then(|m| m.use_time_mean_seconds),
                "pool.use_time_seconds.mean",
            )
        })
        .ok_or_else(|| AdviseError::Missing {
            what: "the connection use time: give --use-time (such as 4ms), or --from a \
                   `tidewater-lab load --json` report with pool.use_time_seconds.mean"
                .into(),
        })?;
    let use_time_p99 = flags.use_time_p99.take().or_else(|| {
        from_report(
            measured.and_then(|m| m.use_time_p99_seconds),
            "pool.use_time_seconds.p99",
        )
    });
    let max_size = flags.max_size.take().or_else(|| {
        measured
            .and_then(|m| m.max_size)
            .map(|size| Given::new(size, field("pool.max_size")))
    });
    Ok(LoadInputs {
        rate,
        use_time,
        use_time_p99,
        max_size,
    })
}

/// The load, by Little's law.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Load {
    /// Checkouts per second reaching each replica.
    pub checkouts_per_second_per_replica: f64,
    /// Mean connections in use, all replicas (`λ·W`).
    pub busy_mean: f64,
    /// Mean connections in use per replica: the offered load in Erlangs.
    pub busy_mean_per_replica: f64,
    /// How much the use-time tail stretches waits (1: as exponential).
    pub variability: f64,
}

/// The rule of thumb for the server's throughput.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Throughput {
    /// `cores × 2 + spindles`: queries the server runs well at once.
    pub active_connections: u32,
    /// That, shared over the replicas (rounded up).
    pub per_replica: u32,
}

/// The server's connections left for these pools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// `max_connections - reserved`.
    pub available: u32,
    /// That, divided over the replicas (rounded down).
    pub per_replica: u32,
}

/// What decided the recommended `max_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The load: the smallest pool meeting the wait and utilization targets.
    Load,
    /// The floor of 2 connections.
    Floor,
    /// The server's throughput rule of thumb.
    ServerThroughput,
    /// The server's `max_connections`.
    ConnectionBudget,
}

/// The model run at the measured pool size, against the measured wait.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ModelCheck {
    /// The run's `max_size`.
    pub max_size: u32,
    /// The model's p99 wait at that size and the run's own rate and use
    /// time (`None`: unbounded).
    pub predicted_wait_p99_seconds: Option<f64>,
    /// The p99 wait the run measured.
    pub measured_wait_p99_seconds: f64,
}

/// What a warning is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// The load needs more connections than `max_connections` leaves.
    Exhaustion,
    /// The `max_size` run now, times the replicas, exceeds what is left.
    CurrentExhaustion,
    /// Not even one connection per replica fits.
    NoRoom,
    /// The load keeps more queries busy than the server's cores serve well.
    Saturation,
    /// At the recommended size the wait target is missed.
    WaitTarget,
    /// Other clients hold more connections than reserved for them.
    Reserved,
    /// The run's measured wait is well above the model's.
    Model,
}

/// A warning, with its numbers and what to do.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Warning {
    /// What it is about.
    pub kind: WarningKind,
    /// The explanation.
    pub message: String,
}

/// The recommendation and how it was reached.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Advice {
    /// Recommended `max_size` for each replica's pool.
    pub max_size: u32,
    /// Recommended `min_idle` for each replica's pool.
    pub min_idle: u32,
    /// What decided `max_size`.
    pub limited_by: Limit,
    /// The inputs, each with its source.
    pub inputs: Inputs,
    /// Step 1: Little's law.
    pub load: Load,
    /// Step 2: the smallest pool meeting the targets per replica (`None`:
    /// more than 10 000).
    pub needed: Option<Sizing>,
    /// Step 3: the server's throughput.
    pub throughput: Throughput,
    /// Step 4: the server's connections.
    pub budget: Budget,
    /// The model at the recommended size.
    pub at_max_size: Service,
    /// The model against the run's measured wait, when a report gave both.
    pub model_check: Option<ModelCheck>,
    /// What to look out for.
    pub warnings: Vec<Warning>,
    /// Each step in words, with its numbers.
    pub why: Vec<String>,
}

/// Computes the advice for `inputs`.
///
/// # Errors
/// An input out of range ([`Inputs::validate`]).
pub fn advise(inputs: &Inputs) -> Result<Advice, AdviseError> {
    inputs.validate()?;
    let load = Load::of(inputs);
    let demand = Demand {
        busy: load.busy_mean_per_replica,
        use_time: inputs.use_time_seconds.value,
        variability: load.variability,
    };
    let needed = queueing::size_for(&demand, &inputs.targets());
    let throughput = Throughput::of(inputs);
    let budget = Budget::of(inputs);
    let (max_size, limited_by) = cap(needed, &throughput, &budget);
    let mut advice = Advice {
        max_size,
        min_idle: (demand.busy.ceil() as u32).min(max_size),
        limited_by,
        inputs: inputs.clone(),
        load,
        needed,
        throughput,
        budget,
        at_max_size: Service::of(max_size, demand.busy, demand.use_time, demand.variability),
        model_check: model_check(inputs.measured.as_ref()),
        warnings: Vec::new(),
        why: Vec::new(),
    };
    advice.warnings = render::warnings(&advice);
    advice.why = render::why(&advice);
    Ok(advice)
}

impl Inputs {
    /// The targets a pool size must meet: the p99 wait, the utilization
    /// ceiling, at most [`MAX_POOL_SIZE`] connections.
    fn targets(&self) -> Targets {
        Targets {
            wait_p99: self.target_wait_p99_seconds.value,
            max_utilization: self.max_utilization.value,
            limit: MAX_POOL_SIZE,
        }
    }
}

impl Load {
    /// Step 1: the load of `inputs`, all replicas and each.
    fn of(inputs: &Inputs) -> Self {
        let use_time = inputs.use_time_seconds.value;
        let total_rate = inputs.checkouts_per_second.value;
        let rate = total_rate / f64::from(inputs.replicas.value);
        Self {
            checkouts_per_second_per_replica: rate,
            busy_mean: queueing::littles_law(total_rate, use_time),
            busy_mean_per_replica: queueing::littles_law(rate, use_time),
            variability: queueing::variability(
                use_time,
                inputs.use_time_p99_seconds.as_ref().map(|g| g.value),
            ),
        }
    }
}

impl Throughput {
    /// Step 3: the rule of thumb for the server of `inputs`.
    fn of(inputs: &Inputs) -> Self {
        let active = inputs
            .server_cores
            .value
            .saturating_mul(2)
            .saturating_add(inputs.spindles.value);
        Self {
            active_connections: active,
            per_replica: active.div_ceil(inputs.replicas.value).max(1),
        }
    }
}

impl Budget {
    /// Step 4: the connections the server of `inputs` leaves the pools.
    fn of(inputs: &Inputs) -> Self {
        let available = inputs
            .max_connections
            .value
            .saturating_sub(inputs.reserved.value);
        Self {
            available,
            per_replica: available / inputs.replicas.value,
        }
    }
}

/// The recommended `max_size` and what decided it: the load's need (at
/// least the floor of 2), capped by the server's throughput (down to the
/// floor) and then by its connections (down to 1).
fn cap(needed: Option<Sizing>, throughput: &Throughput, budget: &Budget) -> (u32, Limit) {
    let need = needed.map_or(MAX_POOL_SIZE, |s| s.service.connections);
    let (mut max_size, mut limited_by) = if need < MIN_RECOMMENDED {
        (MIN_RECOMMENDED, Limit::Floor)
    } else {
        (need, Limit::Load)
    };
    // The rule of thumb caps down to the floor of 2; only the server's
    // connections may take the pool below it.
    let throughput_cap = throughput.per_replica.max(MIN_RECOMMENDED);
    if throughput_cap < max_size {
        max_size = throughput_cap;
        limited_by = Limit::ServerThroughput;
    }
    let budget_cap = budget.per_replica.max(1);
    if budget_cap < max_size {
        max_size = budget_cap;
        limited_by = Limit::ConnectionBudget;
    }
    (max_size, limited_by)
}

/// The model at the run's own size, rate and use time, against its
/// measured p99 wait.
fn model_check(measured: Option<&Measured>) -> Option<ModelCheck> {
    let measured = measured?;
    let max_size = measured.max_size?;
    let use_time = measured.use_time_mean_seconds.filter(|&w| w > 0.0)?;
    let a = queueing::littles_law(measured.checkouts_per_second?, use_time);
    let variability = queueing::variability(use_time, measured.use_time_p99_seconds);
    Some(ModelCheck {
        max_size,
        predicted_wait_p99_seconds: Service::of(max_size, a, use_time, variability)
            .wait_p99_seconds,
        measured_wait_p99_seconds: measured.wait_p99_seconds?,
    })
}

impl Bound {
    /// The deciding condition in words.
    fn describe(self) -> &'static str {
        match self {
            Self::Wait => "decided by the wait target",
            Self::Utilization => "decided by the utilization ceiling",
            Self::Minimum => "as one connection meets both",
        }
    }
}

#[cfg(test)]
mod tests;
