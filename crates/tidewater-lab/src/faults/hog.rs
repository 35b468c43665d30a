//! [`Fault::CpuHog`]: side sessions run a CPU-bound query for the hold
//! time, then are cancelled.

use std::time::{Duration, Instant};

use tidewater_testkit::PgCluster;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::inject::held_for;
use super::side::{RELEASE_DEADLINE, side_session_as, until_gone};
use super::{Fault, FaultError, FaultWindow};

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
pub(super) async fn cpu_hog(
    cluster: &PgCluster,
    released: impl Future<Output = ()>,
    hold: Option<Duration>,
) -> Result<FaultWindow, FaultError> {
    let watcher = side_session_as(cluster, HOG)
        .await?
        .ok_or(FaultError::Full("no session to watch the CPU hog from"))?;
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
) -> Result<Instant, FaultError> {
    for _ in 0..HOG_SESSIONS {
        let session = side_session_as(cluster, HOG)
            .await?
            .ok_or(FaultError::Full("no slot for a CPU hog"))?;
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
async fn until_hogs_active(watcher: &Client) -> Result<Instant, FaultError> {
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
            .await?;
        let (active, age): (i64, f64) = (row.get(0), row.get(1));
        if active == sessions {
            let age = Duration::try_from_secs_f64(age).unwrap_or_default();
            return Ok(asked.checked_sub(age).unwrap_or(asked));
        }
        if Instant::now() > deadline {
            return Err(FaultError::TimedOut(format!(
                "{active} of {sessions} CPU hog queries active after {RELEASE_DEADLINE:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Cancels every hog's query and waits (at most [`RELEASE_DEADLINE`])
/// until each has ended, cancelled.
async fn stop_hogs(hogs: Vec<Hog>) -> Result<(), FaultError> {
    for hog in &hogs {
        hog.cancel.cancel_query(NoTls).await?;
    }
    let ended = async {
        for hog in hogs {
            match hog.burning.await {
                Ok(Err(error)) if error.code() == Some(&SqlState::QUERY_CANCELED) => {}
                Ok(Err(error)) => return Err(error.into()),
                Ok(Ok(())) => {
                    return Err(FaultError::Unexpected(
                        "a CPU hog query ended by itself".into(),
                    ));
                }
                Err(join) => return Err(join.into()),
            }
        }
        Ok(())
    };
    tokio::time::timeout(RELEASE_DEADLINE, ended)
        .await
        .map_err(|_| {
            FaultError::TimedOut(format!(
                "cancelled CPU hog queries still ran after {RELEASE_DEADLINE:?}"
            ))
        })?
}
