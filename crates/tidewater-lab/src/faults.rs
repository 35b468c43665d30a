//! The fault schedule shared by `tidewater-lab drill` and the peer comparison
//! (`tidewater-bench drill`): what breaks a private PostgreSQL, and what the
//! requests made meanwhile saw, phase by phase.
//!
//! - [`Fault`] names one way to break the server, [`inject`] breaks a
//!   [`PgCluster`] that way, holds it broken, restores it, and returns the
//!   [`FaultWindow`]: when it broke and when the database was available
//!   again. [`inject_until`] holds it broken until a future completes
//!   instead of for a fixed time, so a test can keep it so until it has
//!   seen what it does.
//! - [`PhaseRecorder`] collects one [`Record`] per request (start, end,
//!   [`Outcome`]) from any number of tasks, and cuts them into phases: a
//!   baseline, then one phase per fault. [`PhaseStats`] is what one phase
//!   saw: requests, failures by kind (and how many of them started after
//!   the database was back), the longest wait and the p99 latency, and the
//!   recovery time (from the database's return to the first success
//!   started after it).
//! - [`Schedule`] runs faults one after another against a cluster while the
//!   caller's load records into a recorder, waiting in each phase for the
//!   recovery (bounded) and a steady stretch after it.
//!
//! What drives the load, and how a failure is named, is the caller's: the
//! phase computation only sees instants and outcome strings, so
//! `tidewater-lab drill` (virtual users against the reference service) and the
//! benchmark (one small HTTP service per peer pool) share it.
//!
//! Faults are only ever injected into a [`PgCluster`], a private server
//! made for breaking: never a shared one.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tidewater_lab::faults::{Outcome, PhaseRecorder};
//!
//! let recorder = PhaseRecorder::new();
//! let t0 = Instant::now();
//! recorder.begin_phase_at("baseline", t0, None);
//! recorder.record(t0, t0 + Duration::from_millis(3), Outcome::Ok);
//! recorder.record(t0, t0 + Duration::from_millis(9), Outcome::failed("deadline"));
//! recorder.end_at(t0 + Duration::from_millis(10));
//! let stats = recorder.stats();
//! assert_eq!((stats[0].requests, stats[0].failed), (2, 1));
//! assert_eq!(stats[0].longest_wait, Duration::from_millis(9));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidewater_testkit::{PgCluster, Shutdown};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// One way to break the server. [`Fault::ALL`] is the default schedule, in
/// the order it runs; [`Fault::EVERY`] adds the faults run only when named.
///
/// ```
/// use tidewater_lab::faults::Fault;
///
/// assert_eq!("hang".parse::<Fault>().unwrap(), Fault::Hang);
/// assert_eq!("cpu-hog".parse::<Fault>().unwrap(), Fault::CpuHog);
/// assert_eq!(Fault::FillConnections.to_string(), "fill-connections");
/// assert_eq!(Fault::ALL.len(), 5);
/// assert!(!Fault::ALL.contains(&Fault::CpuHog));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// `pg_ctl stop -m fast`, then start at once: every session is closed
    /// (SQLSTATE 57P01), the server is back as soon as it has started. The
    /// hold time is not used.
    Restart,
    /// SIGKILL to the postmaster: the server is gone at once, its sessions
    /// die with it; it stays down for the hold time, then starts (with
    /// crash recovery).
    Crash,
    /// SIGSTOP to the postmaster and every backend for the hold time, then
    /// SIGCONT: connections are accepted into the listen queue but nothing
    /// answers, queries in flight get no reply.
    Hang,
    /// `pg_terminate_backend` on every client session (SQLSTATE 57P01);
    /// the server keeps accepting. The hold time is not used.
    TerminateBackends,
    /// A side client opens sessions until the server refuses more
    /// (`max_connections`, SQLSTATE 53300), then ends every other client
    /// session one at a time, taking each freed slot itself: the pool has
    /// lost its connections and cannot open new ones. After the hold time
    /// the side client lets go.
    ///
    /// The lock-out is complete for ordinary roles only: a superuser may
    /// use the slots PostgreSQL reserves for superusers
    /// (`superuser_reserved_connections`, 3), so a pool connecting as one
    /// may win some back.
    FillConnections,
    /// [`HOG_SESSIONS`] side sessions each run a CPU-bound query for the
    /// hold time, then are cancelled: the server stays up and accepting,
    /// but every query is slower, at every concurrency. Not in the
    /// default schedule ([`Fault::ALL`]): run it with `--faults cpu-hog`.
    CpuHog,
}

impl Fault {
    /// Every fault, in the order of the default schedule.
    pub const ALL: [Fault; 5] = [
        Fault::Restart,
        Fault::Crash,
        Fault::Hang,
        Fault::TerminateBackends,
        Fault::FillConnections,
    ];

    /// Every fault there is: the default schedule ([`ALL`](Self::ALL)),
    /// then the faults run only when named.
    pub const EVERY: [Fault; 6] = [
        Fault::Restart,
        Fault::Crash,
        Fault::Hang,
        Fault::TerminateBackends,
        Fault::FillConnections,
        Fault::CpuHog,
    ];

    /// Its name on a command line and in reports.
    ///
    /// ```
    /// assert_eq!(tidewater_lab::faults::Fault::TerminateBackends.name(), "terminate-backends");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Fault::Restart => "restart",
            Fault::Crash => "crash",
            Fault::Hang => "hang",
            Fault::TerminateBackends => "terminate-backends",
            Fault::FillConnections => "fill-connections",
            Fault::CpuHog => "cpu-hog",
        }
    }

    /// What it does, in a few words, for a report.
    ///
    /// ```
    /// assert!(tidewater_lab::faults::Fault::Crash.describe().contains("SIGKILL"));
    /// ```
    pub fn describe(self) -> &'static str {
        match self {
            Fault::Restart => "fast restart (pg_ctl stop -m fast, then start)",
            Fault::Crash => "SIGKILL the postmaster, down for the hold time, start",
            Fault::Hang => "SIGSTOP the postmaster and backends for the hold time, SIGCONT",
            Fault::TerminateBackends => "pg_terminate_backend every client session",
            Fault::FillConnections => "a side client takes every connection slot for the hold time",
            Fault::CpuHog => {
                "side sessions run CPU-bound queries for the hold time: the database slows down at every concurrency"
            }
        }
    }

    /// Whether the hold time changes anything (false for the faults that
    /// are over as soon as they happened).
    ///
    /// ```
    /// use tidewater_lab::faults::Fault;
    /// assert!(Fault::Hang.holds() && !Fault::Restart.holds());
    /// ```
    pub fn holds(self) -> bool {
        !matches!(self, Fault::Restart | Fault::TerminateBackends)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;

    /// Any of [`Fault::EVERY`], by its [`name`](Fault::name).
    fn from_str(text: &str) -> Result<Self, String> {
        Fault::EVERY
            .into_iter()
            .find(|fault| fault.name() == text)
            .ok_or_else(|| {
                let names: Vec<_> = Fault::EVERY.iter().map(|fault| fault.name()).collect();
                format!("unknown fault {text:?}; one of {}", names.join(", "))
            })
    }
}

/// When an injected fault broke the database and when it was available
/// again.
///
/// `broken_at` is when the fault took effect (for
/// [`FillConnections`](Fault::FillConnections): when the server was full);
/// `restored_at` is when the database served again: a restarted server's
/// first accepted connection (a side session tries every 5 ms while it
/// starts), the resume of a paused one, the return of the
/// `pg_terminate_backend` query (every ended session has exited), the
/// moment the side client's sessions had left a full server, or the
/// moment the cancelled CPU-bound sessions had left it.
/// For [`CpuHog`](Fault::CpuHog), `broken_at` is when the last of its
/// queries started, once the server showed them all `active`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultWindow {
    /// The fault.
    pub fault: Fault,
    /// When it took effect.
    pub broken_at: Instant,
    /// When the database was available again.
    pub restored_at: Instant,
    /// What the injection did, for a report (sessions ended or held).
    pub detail: String,
}

impl FaultWindow {
    /// How long the database was broken.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tidewater_lab::faults::{Fault, FaultWindow};
    ///
    /// let broken_at = Instant::now();
    /// let window = FaultWindow {
    ///     fault: Fault::Crash,
    ///     broken_at,
    ///     restored_at: broken_at + Duration::from_secs(3),
    ///     detail: String::new(),
    /// };
    /// assert_eq!(window.outage(), Duration::from_secs(3));
    /// ```
    pub fn outage(&self) -> Duration {
        self.restored_at.saturating_duration_since(self.broken_at)
    }
}

/// Breaks `cluster` the way `fault` says, holds it broken for `hold` (the
/// faults that [`hold`](Fault::holds)), restores it, and returns when it
/// broke and when the database was available again.
///
/// # Errors
/// When a control of the cluster fails (it does not start again, say), or
/// the side client of [`FillConnections`](Fault::FillConnections) cannot
/// connect or fill the server, or the one of [`CpuHog`](Fault::CpuHog)
/// finds no free slot or its queries do not start or end.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use std::time::Duration;
/// use tidewater_lab::faults::{Fault, inject};
///
/// let cluster = tidewater_testkit::PgCluster::new().await?;
/// let window = inject(&cluster, Fault::Crash, Duration::from_secs(2)).await?;
/// assert!(window.outage() >= Duration::from_secs(2));
/// # Ok(())
/// # }
/// ```
pub async fn inject(cluster: &PgCluster, fault: Fault, hold: Duration) -> io::Result<FaultWindow> {
    inject_held(cluster, fault, tokio::time::sleep(hold), Some(hold)).await
}

/// [`inject`], holding the faults that [`hold`](Fault::holds) until
/// `released` completes instead of for a fixed time: a test can keep the
/// database broken until it has seen what the fault does, however slowly
/// it looks. The others ignore `released`.
///
/// # Errors
/// As [`inject`].
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use tidewater_lab::faults::{Fault, inject_until};
///
/// let cluster = tidewater_testkit::PgCluster::new().await?;
/// let (release, released) = tokio::sync::oneshot::channel::<()>();
/// let (window, ()) = tokio::join!(
///     inject_until(&cluster, Fault::Hang, async { let _ = released.await; }),
///     async {
///         // ... see that the server does not answer, then:
///         let _ = release.send(());
///     },
/// );
/// println!("hung for {:?}", window?.outage());
/// # Ok(())
/// # }
/// ```
pub async fn inject_until(
    cluster: &PgCluster,
    fault: Fault,
    released: impl Future<Output = ()>,
) -> io::Result<FaultWindow> {
    inject_held(cluster, fault, released, None).await
}

/// [`inject`] and [`inject_until`]: the faults that hold are held until
/// `released` completes; the window's detail gives `hold` as their hold,
/// or without it the time they were held, to the millisecond.
async fn inject_held(
    cluster: &PgCluster,
    fault: Fault,
    released: impl Future<Output = ()>,
    hold: Option<Duration>,
) -> io::Result<FaultWindow> {
    let held = |since: Instant| held_for(hold, since);
    let window = |broken_at, restored_at, detail: String| FaultWindow {
        fault,
        broken_at,
        restored_at,
        detail,
    };
    match fault {
        Fault::Restart => {
            let broken_at = Instant::now();
            cluster.stop(Shutdown::Fast).await?;
            let restored_at = start(cluster).await?;
            Ok(window(broken_at, restored_at, "fast restart".to_owned()))
        }
        Fault::Crash => {
            let broken_at = Instant::now();
            cluster.kill().await?;
            released.await;
            let detail = format!("down {:?} after SIGKILL", held(broken_at));
            let restored_at = start(cluster).await?;
            Ok(window(broken_at, restored_at, detail))
        }
        Fault::Hang => {
            let broken_at = Instant::now();
            cluster.pause().await?;
            released.await;
            cluster.resume().await?;
            let detail = format!("stopped {:?}", held(broken_at));
            Ok(window(broken_at, Instant::now(), detail))
        }
        Fault::TerminateBackends => terminate_backends(cluster).await,
        Fault::FillConnections => fill_connections(cluster, released).await,
        Fault::CpuHog => cpu_hog(cluster, released, hold).await,
    }
}

/// The hold a report gives: `hold` when the fault was held for a fixed
/// time, else the time since `since`, to the millisecond.
fn held_for(hold: Option<Duration>, since: Instant) -> Duration {
    hold.unwrap_or_else(|| {
        Duration::from_millis(u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX))
    })
}

/// Bound on waiting for a starting server to accept a connection.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Starts the server and returns when it first accepted a connection: a
/// side session tries every few milliseconds while `pg_ctl start` waits
/// (which only looks every 100 ms).
async fn start(cluster: &PgCluster) -> io::Result<Instant> {
    let starting = cluster.start();
    let accepted = first_accepted(cluster);
    tokio::pin!(starting, accepted);
    let (mut started, mut up) = (false, None);
    loop {
        tokio::select! {
            result = &mut starting, if !started => {
                result?;
                started = true;
            }
            result = &mut accepted, if up.is_none() => up = Some(result?),
        }
        if let (true, Some(up)) = (started, up) {
            return Ok(up);
        }
    }
}

/// When a side session first connected (and ran `SELECT 1`), trying every
/// 5 ms for at most [`START_DEADLINE`].
async fn first_accepted(cluster: &PgCluster) -> io::Result<Instant> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(session)) = side_session(cluster).await {
            let accepted = Instant::now();
            if session.client.simple_query("SELECT 1").await.is_ok() {
                return Ok(accepted);
            }
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the server accepted no connection within {START_DEADLINE:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// [`Fault::TerminateBackends`], from a side session: every other client
/// session is signalled at once, then the side session watches until all
/// have exited. The window runs from the signals to the last exit.
async fn terminate_backends(cluster: &PgCluster) -> io::Result<FaultWindow> {
    let session = side_session(cluster)
        .await?
        .ok_or_else(|| io::Error::other("the server is full: no session to end the others from"))?;
    let broken_at = Instant::now();
    let ended: Vec<i32> = session
        .client
        .query_one(
            // Materialized: the filter runs before any session is ended
            // (the planner may otherwise order the conditions so that
            // this very session is signalled too).
            "WITH others AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) \
             SELECT coalesce(array_agg(pid), '{}') FROM others WHERE pg_terminate_backend(pid)",
            &[],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    until_gone(
        &session.client,
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
        &[&ended],
        "ended sessions",
    )
    .await?;
    Ok(FaultWindow {
        fault: Fault::TerminateBackends,
        broken_at,
        restored_at: Instant::now(),
        detail: format!("{} sessions ended", ended.len()),
    })
}

/// `application_name` of the side client's sessions.
const FILLER: &str = "tidewater-lab-fill";
/// Bound on waiting for the side client's sessions to leave the server.
const RELEASE_DEADLINE: Duration = Duration::from_secs(30);

/// Polls `count_sql` (a `count(*)` of sessions) from `client` every 2 ms
/// until it is 0, or fails naming `what` after [`RELEASE_DEADLINE`].
async fn until_gone(
    client: &Client,
    count_sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    what: &str,
) -> io::Result<()> {
    let deadline = Instant::now() + RELEASE_DEADLINE;
    loop {
        let left: i64 = client
            .query_one(count_sql, params)
            .await
            .map_err(pg_error)?
            .get(0);
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{left} {what} were still there after {RELEASE_DEADLINE:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
/// How long `pg_terminate_backend` waits for a session to exit, in ms.
const TERMINATE_WAIT_MS: i64 = 10_000;

/// [`Fault::FillConnections`], held until `released` completes.
async fn fill_connections(
    cluster: &PgCluster,
    released: impl Future<Output = ()>,
) -> io::Result<FaultWindow> {
    let max: usize = cluster
        .execute("SHOW max_connections")
        .await?
        .parse()
        .map_err(|_| io::Error::other("SHOW max_connections printed no number"))?;
    let mut side = Vec::new();
    // Take every free slot; the server refuses the one after.
    loop {
        if side.len() > max {
            return Err(io::Error::other(format!(
                "the server accepted {} sessions with max_connections = {max}",
                side.len()
            )));
        }
        match side_session(cluster).await? {
            Some(session) => side.push(session),
            None => break,
        }
    }
    let broken_at = Instant::now();
    let Some(first) = side.first() else {
        return Err(io::Error::other(
            "the server had no free connection slot to take",
        ));
    };
    // End the other clients' sessions one at a time, each freed slot taken
    // at once. While one slot is free the server still refuses ordinary
    // roles (the last three are reserved for superusers), so they cannot
    // win it back; but a refused attempt holds a slot for the moment it
    // takes the server to refuse it, so the side client retries (briefly)
    // when it finds none.
    let others = first
        .client
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND application_name <> $1",
            &[&FILLER],
        )
        .await
        .map_err(pg_error)?;
    let (mut ended, mut lost, mut retaken) = (0, 0, Vec::new());
    for row in others {
        let pid: i32 = row.get(0);
        let terminated: bool = first
            .client
            .query_one(
                "SELECT pg_terminate_backend($1, $2)",
                &[&pid, &TERMINATE_WAIT_MS],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        if !terminated {
            continue; // it had ended already
        }
        ended += 1;
        match retake(cluster).await? {
            Some(session) => retaken.push(session),
            None => lost += 1,
        }
    }
    side.extend(retaken);
    released.await;
    let held = side.len();
    // Let go of all but one session, and watch from that one until the
    // others have left the server: then it has room again.
    let keeper = side.remove(0);
    drop(side);
    until_gone(
        &keeper.client,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
        &[&FILLER],
        "side sessions",
    )
    .await?;
    let restored_at = Instant::now();
    drop(keeper);
    wait_until_released(cluster).await?;
    let mut detail = format!("{held} sessions held, {ended} others ended");
    if lost > 0 {
        detail.push_str(&format!(
            ", {lost} slots not retaken (taken by superusers, or by attempts \
             refused too often to slip in between)"
        ));
    }
    Ok(FaultWindow {
        fault: Fault::FillConnections,
        broken_at,
        restored_at,
        detail,
    })
}

/// How long the side client tries to take a slot freed by ending a session.
const RETAKE_DEADLINE: Duration = Duration::from_secs(2);

/// A side session in the slot just freed: tries again for
/// [`RETAKE_DEADLINE`] while the server is full (another client's attempt,
/// about to be refused, may hold the slot for a moment).
async fn retake(cluster: &PgCluster) -> io::Result<Option<SideSession>> {
    let deadline = Instant::now() + RETAKE_DEADLINE;
    loop {
        if let Some(session) = side_session(cluster).await? {
            return Ok(Some(session));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A session of the side client; dropping it closes it.
struct SideSession {
    /// The connection.
    client: Client,
    /// Its driver, which ends once `client` is dropped.
    _driver: tokio::task::JoinHandle<()>,
}

/// Opens a superuser session over the server's Unix socket (trusted, so
/// quick), or `None` when the server is full (SQLSTATE 53300).
async fn side_session(cluster: &PgCluster) -> io::Result<Option<SideSession>> {
    side_session_as(cluster, FILLER).await
}

/// [`side_session`] with `application_name` `name`.
async fn side_session_as(cluster: &PgCluster, name: &str) -> io::Result<Option<SideSession>> {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(cluster.socket_dir())
        .port(cluster.port())
        .user(PgCluster::SUPERUSER)
        .dbname("postgres")
        .application_name(name)
        .connect_timeout(Duration::from_secs(10));
    match config.connect(NoTls).await {
        Ok((client, connection)) => Ok(Some(SideSession {
            client,
            _driver: tokio::spawn(async move {
                let _ = connection.await;
            }),
        })),
        Err(error) if error.code() == Some(&SqlState::TOO_MANY_CONNECTIONS) => Ok(None),
        Err(error) => Err(pg_error(error)),
    }
}

/// Waits (bounded) until no session of the side client is left on the
/// server.
async fn wait_until_released(cluster: &PgCluster) -> io::Result<()> {
    let deadline = Instant::now() + RELEASE_DEADLINE;
    let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{FILLER}'");
    loop {
        // psql takes a slot itself, so the first tries may find the server
        // still full.
        if cluster.execute(&sql).await.is_ok_and(|left| left == "0") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the side client's sessions were still there after {RELEASE_DEADLINE:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sessions [`Fault::CpuHog`] runs its CPU-bound query on: twice the
/// cores of the machines the lab runs on (2), so that every core is busy
/// with a hog and each of the pool's backends competes with at least two
/// of them for a core, whatever its concurrency.
pub const HOG_SESSIONS: usize = 4;
/// `application_name` of [`Fault::CpuHog`]'s sessions (its watcher's too).
pub const HOG: &str = "tidewater-lab-hog";
/// The CPU-bound query: counts rows it never finishes making (10^15, days
/// at any speed) until cancelled. The series is made in the select list,
/// one row at a time: in `FROM` it would be stored whole (spilling to
/// disk) before the first row is counted.
pub const HOG_SQL: &str =
    "SELECT count(*) FROM (SELECT generate_series(1, 1000000000000000)) AS burn";

/// One CPU-bound session of [`Fault::CpuHog`].
struct Hog {
    /// Cancels its query.
    cancel: tokio_postgres::CancelToken,
    /// Runs the query; ends (closing the session) when it is cancelled.
    burning: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

/// [`Fault::CpuHog`]: [`HOG_SESSIONS`] side sessions run [`HOG_SQL`],
/// watched from one more; broken when the last query started (once the
/// watcher sees them all `active`), held until `released`, restored once
/// the cancelled sessions have left the server. The hogs are cancelled
/// whatever happens.
async fn cpu_hog(
    cluster: &PgCluster,
    released: impl Future<Output = ()>,
    hold: Option<Duration>,
) -> io::Result<FaultWindow> {
    let watcher = side_session_as(cluster, HOG).await?.ok_or_else(|| {
        io::Error::other("the server is full: no session to watch the CPU hog from")
    })?;
    let mut hogs = Vec::with_capacity(HOG_SESSIONS);
    let started = start_hogs(cluster, &watcher.client, &mut hogs).await;
    let mut held = Duration::ZERO;
    if let Ok(broken_at) = started {
        released.await;
        held = held_for(hold, broken_at);
    }
    let stopped = stop_hogs(hogs).await;
    let broken_at = started?;
    stopped?;
    until_gone(
        &watcher.client,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
        &[&HOG],
        "CPU hog sessions",
    )
    .await?;
    Ok(FaultWindow {
        fault: Fault::CpuHog,
        broken_at,
        restored_at: Instant::now(),
        detail: format!("{HOG_SESSIONS} sessions ran CPU-bound queries for {held:?}"),
    })
}

/// Opens the hog sessions into `hogs`, starts their query, and returns
/// when the last of them started, once `watcher` sees them all `active`
/// (see [`until_hogs_active`]).
async fn start_hogs(
    cluster: &PgCluster,
    watcher: &Client,
    hogs: &mut Vec<Hog>,
) -> io::Result<Instant> {
    for _ in 0..HOG_SESSIONS {
        let session = side_session_as(cluster, HOG)
            .await?
            .ok_or_else(|| io::Error::other("the server is full: no slot for a CPU hog"))?;
        let cancel = session.client.cancel_token();
        let burning = tokio::spawn(async move {
            // The session closes when the query ends.
            session.client.simple_query(HOG_SQL).await.map(drop)
        });
        hogs.push(Hog { cancel, burning });
    }
    until_hogs_active(watcher).await
}

/// Polls `watcher` every 2 ms until the server shows [`HOG_SESSIONS`] hog
/// queries `active` (failing after [`RELEASE_DEADLINE`]), and returns when
/// the last of them started: the age of the newest `query_start`, by the
/// server's clock, taken off an instant read before the question. That is
/// no later than the start, so whoever saw them all active saw it after.
async fn until_hogs_active(watcher: &Client) -> io::Result<Instant> {
    let sessions = i64::try_from(HOG_SESSIONS).unwrap_or(i64::MAX);
    let deadline = Instant::now() + RELEASE_DEADLINE;
    loop {
        let asked = Instant::now();
        let row = watcher
            .query_one(
                "SELECT count(*), \
                 coalesce(extract(epoch FROM clock_timestamp() - max(query_start)), 0)::float8 \
                 FROM pg_stat_activity \
                 WHERE application_name = $1 AND state = 'active' AND query = $2",
                &[&HOG, &HOG_SQL],
            )
            .await
            .map_err(pg_error)?;
        let (active, age): (i64, f64) = (row.get(0), row.get(1));
        if active == sessions {
            let age = Duration::try_from_secs_f64(age).unwrap_or_default();
            return Ok(asked.checked_sub(age).unwrap_or(asked));
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{active} of {sessions} CPU hog queries active after {RELEASE_DEADLINE:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Cancels every hog's query and waits (at most [`RELEASE_DEADLINE`])
/// until each has ended, cancelled.
async fn stop_hogs(hogs: Vec<Hog>) -> io::Result<()> {
    for hog in &hogs {
        hog.cancel.cancel_query(NoTls).await.map_err(pg_error)?;
    }
    let ended = async {
        for hog in hogs {
            match hog.burning.await {
                Ok(Err(error)) if error.code() == Some(&SqlState::QUERY_CANCELED) => {}
                Ok(Err(error)) => return Err(pg_error(error)),
                Ok(Ok(())) => return Err(io::Error::other("a CPU hog query ended by itself")),
                Err(join) => return Err(io::Error::other(join)),
            }
        }
        Ok(())
    };
    tokio::time::timeout(RELEASE_DEADLINE, ended)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("cancelled CPU hog queries still ran after {RELEASE_DEADLINE:?}"),
            )
        })?
}

/// A driver error as an I/O error, its causes included.
fn pg_error(error: tokio_postgres::Error) -> io::Error {
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(inner) = cause {
        message = format!("{message}: {inner}");
        cause = inner.source();
    }
    io::Error::other(format!("side client: {message}"))
}

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It failed; the string is the kind of failure, as the caller names
    /// it (`"deadline"`, `"57P01"`, `"acquire timeout"`): failures are
    /// counted by it.
    Err(String),
}

impl Outcome {
    /// A failure of kind `kind`.
    ///
    /// ```
    /// use tidewater_lab::faults::Outcome;
    /// assert_eq!(Outcome::failed("deadline"), Outcome::Err("deadline".into()));
    /// ```
    pub fn failed(kind: impl Into<String>) -> Self {
        Outcome::Err(kind.into())
    }

    /// Whether it succeeded.
    ///
    /// ```
    /// assert!(tidewater_lab::faults::Outcome::Ok.is_ok());
    /// ```
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }
}

/// One request: when it started and ended, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// When it was sent.
    pub start: Instant,
    /// When its answer (or its failure) came.
    pub end: Instant,
    /// How it ended.
    pub outcome: Outcome,
}

impl Record {
    /// How long it took: what its caller waited.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tidewater_lab::faults::{Outcome, Record};
    ///
    /// let start = Instant::now();
    /// let record = Record { start, end: start + Duration::from_millis(5), outcome: Outcome::Ok };
    /// assert_eq!(record.wait(), Duration::from_millis(5));
    /// ```
    pub fn wait(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }
}

/// A stretch of a run: its name, when it began and ended, and the fault
/// injected in it, if any.
///
/// A request belongs to the phase in which it ended: one in flight when a
/// fault strikes counts with that fault, not with the calm before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    /// Its name (`"baseline"`, or the fault's name).
    pub name: String,
    /// When it began (inclusive).
    pub start: Instant,
    /// When it ended (exclusive).
    pub end: Instant,
    /// The fault injected in it.
    pub window: Option<FaultWindow>,
}

/// What the requests of one phase saw.
///
/// Durations serialize as seconds (`longest_wait_s`, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseStats {
    /// The phase's name.
    pub phase: String,
    /// The fault injected in it.
    pub fault: Option<Fault>,
    /// How long the phase lasted.
    #[serde(rename = "duration_s", with = "secs")]
    pub duration: Duration,
    /// Requests that ended in it.
    pub requests: u64,
    /// Of those, the ones that succeeded.
    pub succeeded: u64,
    /// Of those, the ones that failed.
    pub failed: u64,
    /// Failed requests by kind of failure.
    pub failed_by_kind: BTreeMap<String, u64>,
    /// Of the failed, those that started once the database was back
    /// (`restored_at`): failures of the pool's own making, not of the
    /// outage.
    pub failed_after_restore: u64,
    /// The longest any request of the phase took (zero without requests).
    #[serde(rename = "longest_wait_s", with = "secs")]
    pub longest_wait: Duration,
    /// The 99th percentile of the phase's request latencies (nearest rank:
    /// 99 % of its requests took at most this long; zero without
    /// requests).
    #[serde(rename = "latency_p99_s", with = "secs", default)]
    pub latency_p99: Duration,
    /// How long the database was broken (the fault's window).
    #[serde(rename = "outage_s", with = "opt_secs")]
    pub outage: Option<Duration>,
    /// From the database's return (`restored_at`) to the end of the first
    /// success among the requests started after it (and ended within the
    /// phase); `None` without a fault, or when none succeeded.
    #[serde(rename = "recovery_s", with = "opt_secs")]
    pub recovery: Option<Duration>,
    /// What the injection did.
    pub detail: Option<String>,
}

impl PhaseStats {
    /// What the requests that ended within `phase` saw; `records` may
    /// hold requests of every phase, in any order.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tidewater_lab::faults::{Outcome, Phase, PhaseStats, Record};
    ///
    /// let t0 = Instant::now();
    /// let ms = |n| t0 + Duration::from_millis(n);
    /// let phase = Phase { name: "baseline".into(), start: t0, end: ms(100), window: None };
    /// let records = [
    ///     Record { start: ms(10), end: ms(20), outcome: Outcome::Ok },
    ///     Record { start: ms(150), end: ms(160), outcome: Outcome::Ok }, // a later phase
    /// ];
    /// let stats = PhaseStats::compute(&phase, &records);
    /// assert_eq!((stats.requests, stats.recovery), (1, None));
    /// ```
    pub fn compute(phase: &Phase, records: &[Record]) -> Self {
        let mut stats = PhaseStats {
            phase: phase.name.clone(),
            fault: phase.window.as_ref().map(|window| window.fault),
            duration: phase.end.saturating_duration_since(phase.start),
            requests: 0,
            succeeded: 0,
            failed: 0,
            failed_by_kind: BTreeMap::new(),
            failed_after_restore: 0,
            longest_wait: Duration::ZERO,
            latency_p99: Duration::ZERO,
            outage: phase.window.as_ref().map(FaultWindow::outage),
            recovery: None,
            detail: phase.window.as_ref().map(|window| window.detail.clone()),
        };
        let restored_at = phase.window.as_ref().map(|window| window.restored_at);
        let mut first_success: Option<Instant> = None;
        let within = |record: &&Record| record.end >= phase.start && record.end < phase.end;
        let mut waits = Vec::new();
        for record in records.iter().filter(within) {
            stats.requests += 1;
            waits.push(record.wait());
            stats.longest_wait = stats.longest_wait.max(record.wait());
            let after_restore = restored_at.is_some_and(|restored| record.start >= restored);
            match &record.outcome {
                Outcome::Ok => {
                    stats.succeeded += 1;
                    if after_restore {
                        first_success =
                            Some(first_success.map_or(record.end, |end| end.min(record.end)));
                    }
                }
                Outcome::Err(kind) => {
                    stats.failed += 1;
                    stats.failed_after_restore += u64::from(after_restore);
                    *stats.failed_by_kind.entry(kind.clone()).or_default() += 1;
                }
            }
        }
        stats.recovery = restored_at
            .zip(first_success)
            .map(|(restored, success)| success.saturating_duration_since(restored));
        stats.latency_p99 = nearest_rank(&mut waits, 0.99);
        stats
    }
}

/// The `q` quantile of `waits` by nearest rank (the smallest wait that at
/// least `q` of them do not exceed); zero when there are none.
///
/// ```text
/// 100 waits of 1..=100 ms: q 0.99 -> 99 ms, q 1.0 -> 100 ms, q 0.5 -> 50 ms
/// ```
fn nearest_rank(waits: &mut [Duration], q: f64) -> Duration {
    if waits.is_empty() {
        return Duration::ZERO;
    }
    waits.sort_unstable();
    let rank = (q * waits.len() as f64).ceil() as usize;
    waits[rank.clamp(1, waits.len()) - 1]
}

/// [`PhaseStats::compute`] for each of `phases`, in order.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tidewater_lab::faults::{Phase, phase_stats};
///
/// let t0 = Instant::now();
/// let phase = |name: &str, from, to| Phase {
///     name: name.into(),
///     start: t0 + Duration::from_secs(from),
///     end: t0 + Duration::from_secs(to),
///     window: None,
/// };
/// let stats = phase_stats(&[phase("a", 0, 1), phase("b", 1, 2)], &[]);
/// assert_eq!(stats.len(), 2);
/// assert_eq!(stats[1].duration, Duration::from_secs(1));
/// ```
pub fn phase_stats(phases: &[Phase], records: &[Record]) -> Vec<PhaseStats> {
    phases
        .iter()
        .map(|phase| PhaseStats::compute(phase, records))
        .collect()
}

/// Collects requests and phase boundaries from any number of tasks, then
/// computes each phase's [`PhaseStats`]. Clones share the same records.
///
/// Phases follow one another: [`begin_phase`](Self::begin_phase) ends the
/// one before, [`end`](Self::end) the last. A request belongs to the phase
/// in which it ended (see [`Phase`]); those that ended before the first
/// phase or after the end are left out.
#[derive(Clone, Debug, Default)]
pub struct PhaseRecorder {
    inner: Arc<Mutex<Recorded>>,
}

/// What a [`PhaseRecorder`] holds.
#[derive(Debug, Default)]
struct Recorded {
    /// Every request so far.
    records: Vec<Record>,
    /// Phases begun so far, the last one open until `end` is set.
    phases: Vec<(String, Instant, Option<FaultWindow>)>,
    /// When the last phase ended.
    end: Option<Instant>,
}

impl PhaseRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one request.
    pub fn record(&self, start: Instant, end: Instant, outcome: Outcome) {
        self.lock().records.push(Record {
            start,
            end,
            outcome,
        });
    }

    /// Begins a phase now (ending the one before), with the fault window
    /// if it is known already.
    pub fn begin_phase(&self, name: impl Into<String>, window: Option<FaultWindow>) {
        self.begin_phase_at(name, Instant::now(), window);
    }

    /// Begins a phase at `at`.
    pub fn begin_phase_at(
        &self,
        name: impl Into<String>,
        at: Instant,
        window: Option<FaultWindow>,
    ) {
        let mut recorded = self.lock();
        recorded.phases.push((name.into(), at, window));
        recorded.end = None;
    }

    /// Attaches the window of the fault injected in the current phase.
    pub fn set_window(&self, window: FaultWindow) {
        if let Some(phase) = self.lock().phases.last_mut() {
            phase.2 = Some(window);
        }
    }

    /// Ends the last phase now.
    pub fn end(&self) {
        self.end_at(Instant::now());
    }

    /// Ends the last phase at `at`.
    pub fn end_at(&self, at: Instant) {
        self.lock().end = Some(at);
    }

    /// When the first success among the requests started at or after
    /// `since` ended, if one has.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tidewater_lab::faults::{Outcome, PhaseRecorder};
    ///
    /// let recorder = PhaseRecorder::new();
    /// let t0 = Instant::now();
    /// recorder.record(t0, t0 + Duration::from_millis(5), Outcome::Ok);
    /// assert_eq!(recorder.first_success_since(t0 + Duration::from_millis(1)), None);
    /// assert!(recorder.first_success_since(t0).is_some());
    /// ```
    pub fn first_success_since(&self, since: Instant) -> Option<Instant> {
        self.lock()
            .records
            .iter()
            .filter(|record| record.start >= since && record.outcome.is_ok())
            .map(|record| record.end)
            .min()
    }

    /// Requests recorded so far.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether no request was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The phases so far; the last one ends at [`end`](Self::end), or now
    /// if not ended yet.
    pub fn phases(&self) -> Vec<Phase> {
        let recorded = self.lock();
        let last_end = recorded.end.unwrap_or_else(Instant::now);
        let mut phases = Vec::with_capacity(recorded.phases.len());
        for (i, (name, start, window)) in recorded.phases.iter().enumerate() {
            let end = recorded
                .phases
                .get(i + 1)
                .map_or(last_end, |(_, next, _)| *next);
            phases.push(Phase {
                name: name.clone(),
                start: *start,
                end,
                window: window.clone(),
            });
        }
        phases
    }

    /// A copy of every request recorded so far.
    pub fn records(&self) -> Vec<Record> {
        self.lock().records.clone()
    }

    /// Each phase's figures, in order.
    pub fn stats(&self) -> Vec<PhaseStats> {
        let phases = self.phases();
        let recorded = self.lock();
        phase_stats(&phases, &recorded.records)
    }
}

/// Faults run one after another, each in a phase of its own, against a
/// cluster while the caller's load records into a [`PhaseRecorder`].
///
/// [`run`](Self::run) begins a `baseline` phase of [`baseline`](Self::baseline),
/// then for each fault a phase named after it: inject it (holding it
/// [`hold`](Self::hold)), wait until a request started after the
/// database's return has succeeded (at most
/// [`recovery_deadline`](Self::recovery_deadline)), then keep the load
/// going [`settle`](Self::settle) longer, so the phase also shows the
/// steady state after the recovery.
///
/// ```
/// use std::time::Duration;
/// use tidewater_lab::faults::{Fault, Schedule};
///
/// let schedule = Schedule::default();
/// assert_eq!(schedule.faults, Fault::ALL);
/// assert_eq!(schedule.hold, Duration::from_secs(3));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The faults, in order.
    pub faults: Vec<Fault>,
    /// How long each fault that [`holds`](Fault::holds) lasts.
    pub hold: Duration,
    /// The steady phase before the first fault.
    pub baseline: Duration,
    /// How long the load keeps going in a fault's phase once it has
    /// recovered.
    pub settle: Duration,
    /// The longest a phase waits for the first success after the database
    /// is back; the phase goes on without a recovery after it.
    pub recovery_deadline: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            faults: Fault::ALL.to_vec(),
            hold: Duration::from_secs(3),
            baseline: Duration::from_secs(2),
            settle: Duration::from_secs(2),
            recovery_deadline: Duration::from_secs(30),
        }
    }
}

impl Schedule {
    /// Runs the schedule against `cluster`, recording phases into
    /// `recorder`, and ends its last phase. Requests are the caller's: it
    /// starts its load (recording into `recorder`) before, and stops it
    /// after; then [`PhaseRecorder::stats`] gives each phase's figures.
    ///
    /// # Errors
    /// When a fault cannot be injected (see [`inject`]); the phases so far
    /// stay in `recorder`, the last one ended.
    pub async fn run(&self, cluster: &PgCluster, recorder: &PhaseRecorder) -> io::Result<()> {
        recorder.begin_phase("baseline", None);
        tokio::time::sleep(self.baseline).await;
        for &fault in &self.faults {
            recorder.begin_phase(fault.name(), None);
            let window = match inject(cluster, fault, self.hold).await {
                Ok(window) => window,
                Err(error) => {
                    recorder.end();
                    return Err(error);
                }
            };
            let restored_at = window.restored_at;
            recorder.set_window(window);
            let deadline = restored_at + self.recovery_deadline;
            while recorder.first_success_since(restored_at).is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(self.settle).await;
        }
        recorder.end();
        Ok(())
    }
}

/// Serde of a [`Duration`] as seconds.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
    }
}

/// Serde of an optional [`Duration`] as seconds, `null` for none.
mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_some(&duration.as_secs_f64()),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(deserializer)?
            .map(|seconds| Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn record(t0: Instant, start: u64, end: u64, outcome: Outcome) -> Record {
        Record {
            start: at(t0, start),
            end: at(t0, end),
            outcome,
        }
    }

    fn window(t0: Instant, fault: Fault, broken: u64, restored: u64) -> FaultWindow {
        FaultWindow {
            fault,
            broken_at: at(t0, broken),
            restored_at: at(t0, restored),
            detail: "test".into(),
        }
    }

    #[test]
    fn a_phase_counts_its_requests_failures_by_kind_and_the_longest_wait() {
        let t0 = t0();
        let phase = Phase {
            name: "crash".into(),
            start: at(t0, 1_000),
            end: at(t0, 5_000),
            window: Some(window(t0, Fault::Crash, 1_100, 3_000)),
        };
        let records = [
            // Ended before the phase: left out.
            record(t0, 900, 950, Outcome::Ok),
            // In flight when the phase began: it counts here.
            record(t0, 900, 4_000, Outcome::failed("deadline")),
            record(t0, 1_000, 1_010, Outcome::Ok),
            record(t0, 1_200, 3_200, Outcome::failed("deadline")),
            record(t0, 1_300, 1_301, Outcome::failed("57P01")),
            record(t0, 1_400, 1_401, Outcome::failed("57P01")),
            record(t0, 2_000, 2_500, Outcome::failed("acquire timeout")),
            // Ended after the phase: left out.
            record(t0, 4_900, 5_000, Outcome::failed("deadline")),
        ];
        let stats = PhaseStats::compute(&phase, &records);
        assert_eq!(stats.phase, "crash");
        assert_eq!(stats.fault, Some(Fault::Crash));
        assert_eq!(stats.duration, Duration::from_secs(4));
        assert_eq!((stats.requests, stats.succeeded, stats.failed), (6, 1, 5));
        let kinds: Vec<_> = stats
            .failed_by_kind
            .iter()
            .map(|(kind, n)| (kind.as_str(), *n))
            .collect();
        assert_eq!(
            kinds,
            [("57P01", 2), ("acquire timeout", 1), ("deadline", 2)]
        );
        assert_eq!(stats.longest_wait, Duration::from_millis(3_100));
        // Six waits: the p99's rank is the sixth, the longest.
        assert_eq!(stats.latency_p99, Duration::from_millis(3_100));
        assert_eq!(stats.outage, Some(Duration::from_millis(1_900)));
        assert_eq!(stats.recovery, None, "no success after the return");
        // Started at 1 200 .. 2 000, before the return at 3 000.
        assert_eq!(stats.failed_after_restore, 0);
        assert_eq!(stats.detail.as_deref(), Some("test"));
    }

    #[test]
    fn recovery_is_from_the_return_to_the_first_success_started_after_it() {
        let t0 = t0();
        let phase = Phase {
            name: "hang".into(),
            start: at(t0, 0),
            end: at(t0, 10_000),
            window: Some(window(t0, Fault::Hang, 100, 3_000)),
        };
        let records = [
            // Started before the return: does not count, though it ends after.
            record(t0, 2_900, 3_050, Outcome::Ok),
            // Failed after the return.
            record(t0, 3_000, 3_100, Outcome::failed("closed")),
            // Started later but ended first: this is the first success.
            record(t0, 3_200, 3_400, Outcome::Ok),
            record(t0, 3_100, 3_900, Outcome::Ok),
        ];
        let stats = PhaseStats::compute(&phase, &records);
        assert_eq!(stats.recovery, Some(Duration::from_millis(400)));
        assert_eq!((stats.requests, stats.failed), (4, 1));
        assert_eq!(stats.failed_after_restore, 1);
    }

    #[test]
    fn a_phase_without_requests_or_fault_is_all_zero() {
        let t0 = t0();
        let phase = Phase {
            name: "baseline".into(),
            start: t0,
            end: at(t0, 10),
            window: None,
        };
        let stats = PhaseStats::compute(&phase, &[]);
        assert_eq!((stats.requests, stats.failed), (0, 0));
        assert_eq!(stats.longest_wait, Duration::ZERO);
        assert_eq!(
            (stats.outage, stats.recovery, stats.fault),
            (None, None, None)
        );
        // A success without a fault is no recovery.
        let stats = PhaseStats::compute(&phase, &[record(t0, 1, 2, Outcome::Ok)]);
        assert_eq!(stats.recovery, None);
    }

    #[test]
    fn the_recorder_cuts_phases_at_their_boundaries() {
        let t0 = t0();
        let recorder = PhaseRecorder::new();
        recorder.begin_phase_at("baseline", t0, None);
        recorder.begin_phase_at("restart", at(t0, 100), None);
        recorder.set_window(window(t0, Fault::Restart, 110, 150));
        recorder.begin_phase_at("terminate-backends", at(t0, 300), None);
        recorder.end_at(at(t0, 400));
        // Recorded from several tasks, out of order.
        let clones: Vec<_> = (0..3).map(|_| recorder.clone()).collect();
        clones[0].record(at(t0, 350), at(t0, 351), Outcome::failed("57P01"));
        clones[1].record(at(t0, 10), at(t0, 20), Outcome::Ok);
        clones[2].record(at(t0, 120), at(t0, 130), Outcome::failed("57P01"));
        clones[0].record(at(t0, 160), at(t0, 170), Outcome::Ok);
        clones[1].record(at(t0, 99), at(t0, 105), Outcome::Ok);
        clones[2].record(at(t0, 390), at(t0, 401), Outcome::Ok); // ended after the end
        assert_eq!(recorder.len(), 6);

        let stats = recorder.stats();
        let names: Vec<_> = stats.iter().map(|s| s.phase.as_str()).collect();
        assert_eq!(names, ["baseline", "restart", "terminate-backends"]);
        let counts: Vec<_> = stats.iter().map(|s| (s.requests, s.failed)).collect();
        // (99, 105) was in flight when the restart began: it counts there.
        assert_eq!(counts, [(1, 0), (3, 1), (1, 1)]);
        assert_eq!(stats[1].recovery, Some(Duration::from_millis(20)));
        assert_eq!(stats[1].outage, Some(Duration::from_millis(40)));
        assert_eq!(stats[2].duration, Duration::from_millis(100));
        assert_eq!(recorder.first_success_since(at(t0, 150)), Some(at(t0, 170)));
    }

    #[test]
    fn stats_serialize_durations_as_seconds_and_read_back() {
        let t0 = t0();
        let phase = Phase {
            name: "crash".into(),
            start: t0,
            end: at(t0, 2_000),
            window: Some(window(t0, Fault::Crash, 0, 1_500)),
        };
        let stats = PhaseStats::compute(&phase, &[record(t0, 1_500, 1_750, Outcome::Ok)]);
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["fault"], "crash");
        assert_eq!(json["duration_s"], 2.0);
        assert_eq!(json["outage_s"], 1.5);
        assert_eq!(json["recovery_s"], 0.25);
        assert_eq!(json["longest_wait_s"], 0.25);
        assert_eq!(json["latency_p99_s"], 0.25);
        let back: PhaseStats = serde_json::from_value(json).unwrap();
        assert_eq!(back, stats);
    }

    #[test]
    fn the_p99_is_the_nearest_rank() {
        let mut waits: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(nearest_rank(&mut waits, 0.99), Duration::from_millis(99));
        assert_eq!(nearest_rank(&mut waits, 0.5), Duration::from_millis(50));
        assert_eq!(nearest_rank(&mut waits, 1.0), Duration::from_millis(100));
        assert_eq!(
            nearest_rank(&mut waits[..1], 0.99),
            Duration::from_millis(1)
        );
        assert_eq!(nearest_rank(&mut [], 0.99), Duration::ZERO);
    }

    #[test]
    fn faults_parse_from_their_names() {
        // The CPU hog is not in the default schedule, but parses.
        assert!(!Fault::ALL.contains(&Fault::CpuHog));
        assert!(Fault::ALL.iter().all(|fault| Fault::EVERY.contains(fault)));
        for fault in Fault::EVERY {
            assert_eq!(fault.name().parse::<Fault>(), Ok(fault));
            assert_eq!(
                serde_json::to_value(fault).unwrap(),
                serde_json::Value::from(fault.name())
            );
        }
        let error = "reboot".parse::<Fault>().unwrap_err();
        assert!(error.contains("restart, crash, hang"), "{error}");
        assert!(error.contains("cpu-hog"), "{error}");
        assert!(Fault::CpuHog.holds());
    }
}
