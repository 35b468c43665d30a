//! [`Fault::FillConnections`]: the side client takes every connection slot
//! of the server, ends the other clients' sessions one at a time taking
//! each freed slot itself, holds them, then lets go.

use std::time::{Duration, Instant};

use tidewater_testkit::PgCluster;

use super::side::{FILLER, RELEASE_DEADLINE, SideSession, side_session, until_gone};
use super::{Fault, FaultError, FaultWindow};

/// How long `pg_terminate_backend` waits for a session to exit, in ms.
const TERMINATE_WAIT_MS: i64 = 10_000;
/// How long the side client tries to take a slot freed by ending a session.
const RETAKE_DEADLINE: Duration = Duration::from_secs(2);

/// [`Fault::FillConnections`], held until `released` completes.
pub(super) async fn fill_connections(
    cluster: &PgCluster,
    released: impl Future<Output = ()>,
) -> Result<FaultWindow, FaultError> {
    let mut side = take_free_slots(cluster).await?;
    let broken_at = Instant::now();
    let Some(first) = side.first() else {
        return Err(FaultError::Unexpected(
            "the server had no free connection slot to take".into(),
        ));
    };
    let others = end_others(cluster, first).await?;
    side.extend(others.retaken);
    released.await;
    let held = side.len();
    let restored_at = let_go(side).await?;
    wait_until_released(cluster).await?;
    let mut detail = format!("{held} sessions held, {} others ended", others.ended);
    if others.lost > 0 {
        detail.push_str(&format!(
            ", {} slots not retaken (taken by superusers, or by attempts \
             refused too often to slip in between)",
            others.lost
        ));
    }
    Ok(FaultWindow {
        fault: Fault::FillConnections,
        broken_at,
        restored_at,
        detail,
    })
}

/// Opens side sessions until the server refuses the next one: every free
/// slot taken.
async fn take_free_slots(cluster: &PgCluster) -> Result<Vec<SideSession>, FaultError> {
    let max: usize = cluster
        .execute("SHOW max_connections")
        .await?
        .parse()
        .map_err(FaultError::MaxConnections)?;
    let mut side = Vec::new();
    loop {
        if side.len() > max {
            return Err(FaultError::Unexpected(format!(
                "the server accepted {} sessions with max_connections = {max}",
                side.len()
            )));
        }
        match side_session(cluster).await? {
            Some(session) => side.push(session),
            None => return Ok(side),
        }
    }
}

/// What ending the other clients' sessions did.
struct Ended {
    /// Sessions ended.
    ended: usize,
    /// Freed slots the side client did not get.
    lost: usize,
    /// Sessions opened in the freed slots.
    retaken: Vec<SideSession>,
}

/// Ends the other clients' sessions one at a time from `first`, each freed
/// slot taken at once. While one slot is free the server still refuses
/// ordinary roles (the last three are reserved for superusers), so they
/// cannot win it back; but a refused attempt holds a slot for the moment
/// it takes the server to refuse it, so the side client retries (briefly)
/// when it finds none.
async fn end_others(cluster: &PgCluster, first: &SideSession) -> Result<Ended, FaultError> {
    let others = first
        .client
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND application_name <> $1",
            &[&FILLER],
        )
        .await?;
    let mut outcome = Ended {
        ended: 0,
        lost: 0,
        retaken: Vec::new(),
    };
    for row in others {
        let pid: i32 = row.get(0);
        let terminated: bool = first
            .client
            .query_one(
                "SELECT pg_terminate_backend($1, $2)",
                &[&pid, &TERMINATE_WAIT_MS],
            )
            .await?
            .get(0);
        if !terminated {
            continue; // it had ended already
        }
        outcome.ended += 1;
        match retake(cluster).await? {
            Some(session) => outcome.retaken.push(session),
            None => outcome.lost += 1,
        }
    }
    Ok(outcome)
}

/// Lets go of all the side sessions but one, and watches from that one
/// until the others have left the server: then it has room again, and
/// that is when this returns.
async fn let_go(mut side: Vec<SideSession>) -> Result<Instant, FaultError> {
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
    Ok(Instant::now())
}

/// A side session in the slot just freed: tries again for
/// [`RETAKE_DEADLINE`] while the server is full (another client's attempt,
/// about to be refused, may hold the slot for a moment).
async fn retake(cluster: &PgCluster) -> Result<Option<SideSession>, FaultError> {
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

/// Waits (bounded) until no session of the side client is left on the
/// server.
async fn wait_until_released(cluster: &PgCluster) -> Result<(), FaultError> {
    let deadline = Instant::now() + RELEASE_DEADLINE;
    let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{FILLER}'");
    loop {
        // psql takes a slot itself, so the first tries may find the server
        // still full.
        if cluster.execute(&sql).await.is_ok_and(|left| left == "0") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(FaultError::TimedOut(format!(
                "the side client's sessions were still there after {RELEASE_DEADLINE:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
