//! `tidewater-bench drill`: the drill of `tidewater-lab drill` with the pool
//! swapped for each of its peers, side by side.
//!
//! For each pool (tidewater-postgres, deadpool-postgres, bb8-postgres,
//! sqlx's `PgPool`) the drill
//!
//! 1. creates a fresh private PostgreSQL cluster (the testkit's
//!    [`PgCluster`], never the shared server) with `max_connections`
//!    [`MAX_CONNECTIONS`] and an ordinary role the pool logs in as (so the
//!    slots reserved for superusers stay out of its reach when the server
//!    is full);
//! 2. starts the same small axum service on 127.0.0.1:0: one route,
//!    `GET /q`, takes a connection, runs `SELECT 1` and gives it back,
//!    within a [`DEADLINE`] for the whole request; a pool error or the
//!    deadline answers 503 with a JSON body naming the kind of failure;
//! 3. drives it with [`CLIENTS`] HTTP clients (reqwest), each sending one
//!    request at a time with [`THINK`] between them, every request bounded
//!    by [`CLIENT_TIMEOUT`];
//! 4. runs the fault schedule of [`tidewater_lab::faults`] against the
//!    cluster (a baseline, then restart, crash, hang, terminate backends,
//!    fill connections, each holding the same time), and reports per phase:
//!    requests, successes, failed requests by kind (and how many of them
//!    started once the database was back), the longest wait (request
//!    duration, as the HTTP client saw it), and the recovery time (from the
//!    database's return to the first success started after it).
//!
//! The clients form a closed loop: a pool that fails fast lets them send
//! more requests during an outage than one that holds each request up to
//! its acquire timeout, so compare successes and failures after the
//! return, not the raw failure counts.
//!
//! Every pool gets the same maximum size ([`POOL_SIZE`]), the same acquire
//! timeout ([`ACQUIRE_TIMEOUT`]) and, where it has one, the same connect
//! timeout ([`CONNECT_TIMEOUT`]); its health checks are its own defaults,
//! which are what its documentation recommends (see each `open`).
//!
//! ```text
//! cargo run --release -p tidewater-bench -- drill            # ~2 min
//! cargo run --release -p tidewater-bench -- drill --quick    # ~45 s
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use tidewater_lab::faults::{Fault, Outcome, PhaseRecorder, PhaseStats, Schedule};
use tidewater_postgres::tokio_postgres::{self, NoTls};
use tidewater_postgres::{PgError, PgManager, PgOptions};
use tidewater_testkit::PgCluster;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::postgres::BoxError;

/// Most connections of every pool.
const POOL_SIZE: u32 = 8;
/// HTTP clients, each with one request at a time: twice the pool, so the
/// pool is busy and some requests queue for a connection.
const CLIENTS: usize = 16;
/// How long every pool lets a caller wait for a connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one connection attempt may take, where the pool or its driver
/// has such a setting (sqlx has none: its acquire timeout bounds it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The service's deadline for a whole request: connection, query, answer.
const DEADLINE: Duration = Duration::from_secs(2);
/// Pause of each HTTP client between two requests.
const THINK: Duration = Duration::from_millis(10);
/// The HTTP clients' own bound on a request, far past [`DEADLINE`]: a
/// request that reaches it means the service hung.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// `max_connections` of each cluster: room for a pool and the drill's own
/// sessions, and few slots for the fill fault to take.
const MAX_CONNECTIONS: u32 = 20;
/// The ordinary role (and its password) the pools log in as.
const ROLE: &str = "app";
/// How long the service may take to answer its first request.
const WARM_UP_DEADLINE: Duration = Duration::from_secs(30);
/// How long closing a pool or stopping the service may take.
const CLOSE_DEADLINE: Duration = Duration::from_secs(15);

/// Runs the fault drill of `tidewater-lab drill` on tidewater-postgres and on
/// deadpool-postgres, bb8-postgres and sqlx behind the same HTTP service,
/// and prints what each saw, fault by fault.
#[derive(clap::Args, Debug)]
pub(crate) struct DrillArgs {
    /// A short run for CI: faults held 0.5 s, 0.5 s of baseline and of
    /// steady state after each recovery.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON object to this file (the raw data behind a
    /// table kept in the docs).
    #[arg(long)]
    save: Option<std::path::PathBuf>,
    /// The pools to drill, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pools: Vec<DrillPool>,
    /// The faults, comma-separated, in order (default: restart, crash,
    /// hang, terminate-backends, fill-connections).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<Fault>,
    /// How long each fault that lasts (crash, hang, fill) holds (default
    /// 3 s, or 0.5 s with `--quick`).
    #[arg(long, value_parser = humantime::parse_duration)]
    hold: Option<Duration>,
}

/// A pool under the drill; its name on the command line and in the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DrillPool {
    /// tidewater-postgres.
    Tidewater,
    /// deadpool-postgres.
    Deadpool,
    /// bb8-postgres.
    Bb8,
    /// sqlx's `PgPool`.
    Sqlx,
}

impl DrillPool {
    /// Its name in the table.
    fn name(self) -> &'static str {
        match self {
            Self::Tidewater => "tidewater",
            Self::Deadpool => "deadpool",
            Self::Bb8 => "bb8",
            Self::Sqlx => "sqlx",
        }
    }

    /// How it is configured, for the report.
    fn settings(self) -> &'static str {
        match self {
            Self::Tidewater => {
                "PoolConfig defaults (validate connections idle > 500 ms, breaker after 5 \
                 failed connects lasting 500 ms, backoff 10 to 500 ms) but max_size 8, \
                 acquire_timeout 1 s, \
                 connect_timeout 1 s, validation_timeout 1 s; PgOptions defaults \
                 (statement_timeout 30 s)"
            }
            Self::Deadpool => {
                "RecyclingMethod::Fast (default: is_closed() on checkout), max_size 8, \
                 wait/create/recycle timeouts 1 s, tokio-postgres connect_timeout 1 s"
            }
            Self::Bb8 => {
                "test_on_check_out true (default: empty query on checkout), max_size 8, \
                 connection_timeout 1 s, tokio-postgres connect_timeout 1 s"
            }
            Self::Sqlx => {
                "test_before_acquire true (default: ping on acquire), max_connections 8, \
                 acquire_timeout 1 s (sqlx has no separate connect timeout)"
            }
        }
    }
}

/// Why a request failed: its kind (what failures are counted by) and the
/// error's full message.
#[derive(Debug)]
struct Failure {
    /// Short and stable: `"acquire timeout"`, `"57P01 admin shutdown"`.
    kind: String,
    /// The error and its causes.
    message: String,
}

impl Failure {
    fn new(kind: impl Into<String>, error: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            kind: kind.into(),
            message: chain(error),
        }
    }
}

/// `error` and its sources, `: `-separated.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        cause = inner.source();
    }
    message
}

/// The kind of a failure with SQLSTATE `code`.
fn sqlstate_kind(code: &str) -> String {
    match code {
        "57P01" => "57P01 admin shutdown".to_owned(),
        "57P02" => "57P02 crash shutdown".to_owned(),
        "57P03" => "57P03 cannot connect now".to_owned(),
        "53300" => "53300 too many connections".to_owned(),
        "57014" => "57014 query cancelled".to_owned(),
        other => format!("SQLSTATE {other}"),
    }
}

/// The kind of a failure without a SQLSTATE, from its message.
fn text_kind(message: &str) -> String {
    let message = message.to_lowercase();
    let kind = if message.contains("refused") {
        "connection refused"
    } else if message.contains("timed out") || message.contains("timeout") {
        "connect timeout"
    } else if ["closed", "reset", "broken pipe", "eof", "communicating"]
        .iter()
        .any(|word| message.contains(word))
    {
        "connection lost"
    } else {
        "other"
    };
    kind.to_owned()
}

/// The kind of a tokio-postgres error.
fn pg_kind(error: &tokio_postgres::Error) -> String {
    match error.code() {
        Some(code) => sqlstate_kind(code.code()),
        None if error.is_closed() => "connection lost".to_owned(),
        None => text_kind(&chain(error)),
    }
}

/// A pool as the drill's service uses it.
trait Backend: Send + Sync + Sized + 'static {
    /// Takes a connection, runs `SELECT 1` on it, gives it back.
    fn select_one(&self) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Closes the pool.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// tidewater-postgres.
struct Tidewater(tidewater::Pool<PgManager>);

impl Tidewater {
    fn open(url: &str) -> Result<Self, BoxError> {
        // Defaults but the shared settings: validation of connections idle
        // over 500 ms (`validate_after`), the breaker, the connect backoff,
        // statement_timeout 30 s (never reached within the deadline).
        let options = PgOptions {
            url: url.to_owned(),
            ..PgOptions::default()
        };
        let config = tidewater::PoolConfig {
            name: "drill".to_owned(),
            max_size: POOL_SIZE,
            acquire_timeout: ACQUIRE_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
            validation_timeout: CONNECT_TIMEOUT,
            ..tidewater::PoolConfig::default()
        };
        Ok(Self(tidewater::Pool::new(
            PgManager::new(options)?,
            config,
        )?))
    }
}

impl Backend for Tidewater {
    async fn select_one(&self) -> Result<(), Failure> {
        let conn = self.0.get().await.map_err(|error| {
            // tidewater's timeouts and fail-fast errors carry the last
            // connection error: the kind names it.
            let kind = match &error {
                tidewater::Error::Timeout {
                    last_connect_error: None,
                    ..
                } => "acquire timeout".to_owned(),
                tidewater::Error::Timeout {
                    last_connect_error: Some(cause),
                    ..
                } => format!("acquire timeout ({})", connect_kind(cause)),
                tidewater::Error::Unavailable { cause, .. } => {
                    format!("fail fast, breaker open ({})", connect_kind(cause))
                }
                tidewater::Error::QueueFull { .. } => "queue full".to_owned(),
                other => text_kind(&other.to_string()),
            };
            Failure::new(kind, &error)
        })?;
        conn.query_one("SELECT 1", &[]).await.map_err(|error| {
            let kind = match &error {
                PgError::Postgres(pg) => pg_kind(pg),
                PgError::QueryTimeout { .. } => "statement timeout".to_owned(),
                other => text_kind(&other.to_string()),
            };
            Failure::new(kind, &error)
        })?;
        Ok(())
    }

    async fn close(&self) {
        self.0.close().await;
    }
}

/// The kind of the connection error behind a tidewater timeout or open
/// breaker.
fn connect_kind(error: &tidewater::ConnectError) -> String {
    match error.cause().downcast_ref::<PgError>() {
        Some(PgError::Postgres(pg)) => pg_kind(pg),
        Some(other) => text_kind(&other.to_string()),
        None => text_kind(&error.to_string()),
    }
}

/// The driver settings of the tokio-postgres-based peers.
fn driver_config(url: &str) -> Result<tokio_postgres::Config, BoxError> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(CONNECT_TIMEOUT);
    Ok(config)
}

/// deadpool-postgres.
struct Deadpool(deadpool_postgres::Pool);

impl Deadpool {
    fn open(url: &str) -> Result<Self, BoxError> {
        // `RecyclingMethod::Fast` is deadpool-postgres's default, and what
        // its documentation calls the safe choice unless you have special
        // needs: a checkout asks the client whether its socket is closed.
        let manager = deadpool_postgres::Manager::from_config(
            driver_config(url)?,
            NoTls,
            deadpool_postgres::ManagerConfig::default(),
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(POOL_SIZE as usize)
            .wait_timeout(Some(ACQUIRE_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()?;
        Ok(Self(pool))
    }
}

impl Backend for Deadpool {
    async fn select_one(&self) -> Result<(), Failure> {
        use deadpool_postgres::{PoolError, TimeoutType};
        let client = self.0.get().await.map_err(|error| {
            let kind = match &error {
                PoolError::Timeout(TimeoutType::Wait) => "acquire timeout".to_owned(),
                PoolError::Timeout(TimeoutType::Create) => "connect timeout".to_owned(),
                PoolError::Timeout(TimeoutType::Recycle) => "recycle timeout".to_owned(),
                PoolError::Backend(pg) => pg_kind(pg),
                other => text_kind(&other.to_string()),
            };
            Failure::new(kind, &error)
        })?;
        // `prepare_cached`: deadpool-postgres's statement cache, as its
        // documentation shows.
        let result = async {
            let statement = client.prepare_cached("SELECT 1").await?;
            client.query_one(&statement, &[]).await
        }
        .await;
        result.map_err(|error| Failure::new(pg_kind(&error), &error))?;
        Ok(())
    }

    async fn close(&self) {
        self.0.close();
    }
}

/// bb8-postgres.
struct Bb8(bb8::Pool<bb8_postgres::PostgresConnectionManager<NoTls>>);

impl Bb8 {
    async fn open(url: &str) -> Result<Self, BoxError> {
        // `test_on_check_out` (on by default) runs an empty query on every
        // checkout; `connection_timeout` bounds `get()`.
        let manager = bb8_postgres::PostgresConnectionManager::new(driver_config(url)?, NoTls);
        let pool = bb8::Pool::builder()
            .max_size(POOL_SIZE)
            .connection_timeout(ACQUIRE_TIMEOUT)
            .build(manager)
            .await?;
        Ok(Self(pool))
    }
}

impl Backend for Bb8 {
    async fn select_one(&self) -> Result<(), Failure> {
        let conn = self.0.get().await.map_err(|error| {
            let kind = match &error {
                bb8::RunError::TimedOut => "acquire timeout".to_owned(),
                bb8::RunError::User(pg) => pg_kind(pg),
            };
            Failure::new(kind, &error)
        })?;
        conn.query_one("SELECT 1", &[])
            .await
            .map_err(|error| Failure::new(pg_kind(&error), &error))?;
        Ok(())
    }

    async fn close(&self) {
        // bb8 has no close: its connections go when the last handle does.
    }
}

/// sqlx's `PgPool`.
struct Sqlx(sqlx::PgPool);

impl Sqlx {
    fn open(url: &str) -> Result<Self, BoxError> {
        // `test_before_acquire` (on by default) pings a connection before
        // handing it out; `acquire_timeout` bounds `acquire()`, connecting
        // included. Statements are prepared once per connection and cached
        // (the default).
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy(url)?;
        Ok(Self(pool))
    }
}

/// The kind of a sqlx error.
fn sqlx_kind(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::PoolTimedOut => "acquire timeout".to_owned(),
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => sqlstate_kind(&code),
            None => text_kind(db.message()),
        },
        sqlx::Error::WorkerCrashed => "connection lost".to_owned(),
        other => text_kind(&chain(other)),
    }
}

impl Backend for Sqlx {
    async fn select_one(&self) -> Result<(), Failure> {
        let mut conn = self
            .0
            .acquire()
            .await
            .map_err(|error| Failure::new(sqlx_kind(&error), &error))?;
        sqlx::query("SELECT 1")
            .fetch_one(&mut *conn)
            .await
            .map_err(|error| Failure::new(sqlx_kind(&error), &error))?;
        Ok(())
    }

    async fn close(&self) {
        self.0.close().await;
    }
}

/// The drill's HTTP service over one pool.
struct Service<B> {
    /// The pool.
    backend: B,
    /// The first message seen of each kind of failure.
    samples: Mutex<BTreeMap<String, String>>,
}

/// The 503 body: what failed, in a word and in full.
#[derive(Serialize, Deserialize)]
struct Problem {
    /// The kind of failure.
    kind: String,
    /// The error's message.
    message: String,
}

/// `GET /q`: `SELECT 1` through the pool within [`DEADLINE`].
async fn query<B: Backend>(State(service): State<Arc<Service<B>>>) -> Response {
    let failure = match tokio::time::timeout(DEADLINE, service.backend.select_one()).await {
        Ok(Ok(())) => return (StatusCode::OK, "1").into_response(),
        Ok(Err(failure)) => failure,
        Err(_) => Failure {
            kind: "deadline".to_owned(),
            message: format!("no answer within the request deadline ({DEADLINE:?})"),
        },
    };
    service
        .samples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(failure.kind.clone())
        .or_insert_with(|| failure.message.clone());
    let problem = Problem {
        kind: failure.kind,
        message: failure.message,
    };
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(problem)).into_response()
}

/// A running service: where it listens, and how to stop it.
struct Server {
    /// Its address on 127.0.0.1.
    addr: SocketAddr,
    /// Tells it to stop.
    stop: watch::Sender<bool>,
    /// Its task.
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Serves `service` on 127.0.0.1, on a free port.
    async fn start<B: Backend>(service: Arc<Service<B>>) -> Result<Self, BoxError> {
        let router = axum::Router::new()
            .route("/q", get(query::<B>))
            .with_state(service);
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
        });
        Ok(Self { addr, stop, task })
    }

    /// Stops it, waiting (bounded) for requests in flight.
    async fn stop(self) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(CLOSE_DEADLINE, self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// One request to the service, and how it ended as the client saw it.
async fn request(http: &reqwest::Client, url: &str) -> Outcome {
    match http.get(url).send().await {
        Ok(response) if response.status().is_success() => Outcome::Ok,
        Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
            match response.json::<Problem>().await {
                Ok(problem) => Outcome::Err(problem.kind),
                Err(_) => Outcome::failed("503 without a problem body"),
            }
        }
        Ok(response) => Outcome::failed(format!("HTTP {}", response.status().as_u16())),
        Err(error) if error.is_timeout() => Outcome::failed("client timeout"),
        Err(_) => Outcome::failed("HTTP error"),
    }
}

/// One HTTP client: a request at a time until told to stop.
async fn client(
    http: reqwest::Client,
    url: String,
    recorder: PhaseRecorder,
    stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let start = Instant::now();
        let outcome = request(&http, &url).await;
        recorder.record(start, Instant::now(), outcome);
        tokio::time::sleep(THINK).await;
    }
}

/// What one pool saw.
#[derive(Serialize, Deserialize)]
struct PoolReport {
    /// The pool.
    pool: DrillPool,
    /// How it was configured.
    settings: String,
    /// Each phase: the baseline, then one per fault.
    phases: Vec<PhaseStats>,
    /// The first message of each kind of failure.
    samples: BTreeMap<String, String>,
}

/// The drill's settings, for the report.
#[derive(Serialize, Deserialize)]
struct Settings {
    /// Most connections of every pool.
    pool_size: u32,
    /// HTTP clients.
    clients: usize,
    /// Acquire timeout of every pool, in seconds.
    acquire_timeout_s: f64,
    /// Connect timeout where the pool has one, in seconds.
    connect_timeout_s: f64,
    /// The service's request deadline, in seconds.
    deadline_s: f64,
    /// How long each lasting fault held, in seconds.
    hold_s: f64,
    /// The baseline phase, in seconds.
    baseline_s: f64,
    /// Steady state kept after each recovery, in seconds.
    settle_s: f64,
    /// `max_connections` of each cluster.
    max_connections: u32,
    /// The faults, in order.
    faults: Vec<Fault>,
}

/// The whole output of `--json`.
#[derive(Serialize, Deserialize)]
struct Report {
    /// Always `drill`.
    bench: String,
    /// The settings.
    settings: Settings,
    /// Each pool, in the order drilled.
    pools: Vec<PoolReport>,
}

/// Runs the drill as `args` say and prints the report.
pub(crate) async fn run(args: DrillArgs) -> Result<(), BoxError> {
    let quick = Duration::from_millis(500);
    let schedule = Schedule {
        faults: if args.faults.is_empty() {
            Fault::ALL.to_vec()
        } else {
            args.faults
        },
        hold: args.hold.unwrap_or(if args.quick {
            quick
        } else {
            Duration::from_secs(3)
        }),
        baseline: if args.quick {
            quick
        } else {
            Duration::from_secs(2)
        },
        settle: if args.quick {
            quick
        } else {
            Duration::from_secs(2)
        },
        recovery_deadline: Duration::from_secs(20),
    };
    let pools = if args.pools.is_empty() {
        DrillPool::value_variants().to_vec()
    } else {
        args.pools
    };
    let mut reports = Vec::new();
    for pool in pools {
        if !args.json {
            eprintln!("tidewater-bench drill: {}...", pool.name());
        }
        reports.push(drill(pool, &schedule).await?);
    }
    let report = Report {
        bench: "drill".to_owned(),
        settings: Settings {
            pool_size: POOL_SIZE,
            clients: CLIENTS,
            acquire_timeout_s: ACQUIRE_TIMEOUT.as_secs_f64(),
            connect_timeout_s: CONNECT_TIMEOUT.as_secs_f64(),
            deadline_s: DEADLINE.as_secs_f64(),
            hold_s: schedule.hold.as_secs_f64(),
            baseline_s: schedule.baseline.as_secs_f64(),
            settle_s: schedule.settle.as_secs_f64(),
            max_connections: MAX_CONNECTIONS,
            faults: schedule.faults.clone(),
        },
        pools: reports,
    };
    if let Some(path) = &args.save {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    if args.json {
        crate::print(&report);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// Drills one pool on a cluster of its own.
async fn drill(pool: DrillPool, schedule: &Schedule) -> Result<PoolReport, BoxError> {
    let cluster = PgCluster::new().await?;
    cluster.set_max_connections(MAX_CONNECTIONS).await?;
    cluster.create_role(ROLE, ROLE, None).await?;
    let url = cluster.url_for(ROLE, ROLE, "postgres");
    let (phases, samples) = match pool {
        DrillPool::Tidewater => under_load(Tidewater::open(&url)?, &cluster, schedule).await?,
        DrillPool::Deadpool => under_load(Deadpool::open(&url)?, &cluster, schedule).await?,
        DrillPool::Bb8 => under_load(Bb8::open(&url).await?, &cluster, schedule).await?,
        DrillPool::Sqlx => under_load(Sqlx::open(&url)?, &cluster, schedule).await?,
    };
    Ok(PoolReport {
        pool,
        settings: pool.settings().to_owned(),
        phases,
        samples,
    })
}

/// Serves `backend`, warms it up, runs `schedule` under the HTTP load,
/// then stops everything; returns each phase's figures and the failure
/// samples.
async fn under_load<B: Backend>(
    backend: B,
    cluster: &PgCluster,
    schedule: &Schedule,
) -> Result<(Vec<PhaseStats>, BTreeMap<String, String>), BoxError> {
    let service = Arc::new(Service {
        backend,
        samples: Mutex::new(BTreeMap::new()),
    });
    let server = Server::start(service.clone()).await?;
    let url = format!("http://{}/q", server.addr);
    let http = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .no_proxy()
        .build()?;
    let result = drive(&http, &url, cluster, schedule).await;
    server.stop().await;
    let _ = tokio::time::timeout(CLOSE_DEADLINE, service.backend.close()).await;
    let phases = result?;
    let samples = std::mem::take(
        &mut *service
            .samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    Ok((phases, samples))
}

/// Waits for the service's first success, then runs the load and the
/// schedule.
async fn drive(
    http: &reqwest::Client,
    url: &str,
    cluster: &PgCluster,
    schedule: &Schedule,
) -> Result<Vec<PhaseStats>, BoxError> {
    let deadline = Instant::now() + WARM_UP_DEADLINE;
    loop {
        match request(http, url).await {
            Outcome::Ok => break,
            Outcome::Err(kind) if Instant::now() > deadline => {
                return Err(
                    format!("the service did not answer in {WARM_UP_DEADLINE:?}: {kind}").into(),
                );
            }
            Outcome::Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let recorder = PhaseRecorder::new();
    let (stop, stopped) = watch::channel(false);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(client(
                http.clone(),
                url.to_owned(),
                recorder.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    let result = schedule.run(cluster, &recorder).await;
    let _ = stop.send(true);
    // Each client ends within its request's bound and one pause.
    for client in clients {
        client.await?;
    }
    result?;
    Ok(recorder.stats())
}

/// A duration for the table: milliseconds below 10 s.
fn human(duration: Duration) -> String {
    if duration < Duration::from_secs(10) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// The report as a Markdown table: one row a phase and pool, the pools of
/// a phase side by side.
fn table(report: &Report) -> String {
    let s = &report.settings;
    let mut out = format!(
        "{} HTTP clients, pool size {}, acquire timeout {} s, request deadline {} s, \
         hold {} s; each pool on a fresh private PostgreSQL (max_connections {})\n\n",
        s.clients, s.pool_size, s.acquire_timeout_s, s.deadline_s, s.hold_s, s.max_connections
    );
    out.push_str(
        "| fault (outage) | pool | requests | succeeded | failed | failed after return | \
         longest wait | recovery | failures by kind |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let phases = report.pools.first().map_or(0, |pool| pool.phases.len());
    for i in 0..phases {
        for (n, pool) in report.pools.iter().enumerate() {
            let Some(phase) = pool.phases.get(i) else {
                continue;
            };
            let name = match (n, phase.outage) {
                (0, Some(outage)) => format!("{} ({})", phase.phase, human(outage)),
                (0, None) => phase.phase.clone(),
                _ => String::new(),
            };
            let (after, recovery) = match (phase.fault, phase.recovery) {
                (None, _) => (String::new(), String::new()),
                (Some(_), Some(recovery)) => {
                    (phase.failed_after_restore.to_string(), human(recovery))
                }
                (Some(_), None) => (phase.failed_after_restore.to_string(), "none".to_owned()),
            };
            let kinds: Vec<_> = phase
                .failed_by_kind
                .iter()
                .map(|(kind, count)| format!("{kind}: {count}"))
                .collect();
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {after} | {} | {recovery} | {} |",
                pool.pool.name(),
                phase.requests,
                phase.succeeded,
                phase.failed,
                human(phase.longest_wait),
                kinds.join(", ")
            );
        }
    }
    out.push_str("\nfirst message of each kind of failure:\n");
    for pool in &report.pools {
        for (kind, message) in &pool.samples {
            let _ = writeln!(out, "- {}, {kind}: {message}", pool.pool.name());
        }
    }
    out
}
