//! The side client the faults work through: superuser sessions over the
//! server's Unix socket, opened beside the load's own (to end them, fill
//! the server, run CPU-bound queries, see it accept again), and the wait
//! until sessions have left the server.

use std::time::{Duration, Instant};

use tidewater_testkit::PgCluster;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::FaultError;

/// `application_name` of the side client's sessions.
pub(super) const FILLER: &str = "tidewater-lab-fill";
/// Bound on waiting for the side client's sessions to leave the server.
pub(super) const RELEASE_DEADLINE: Duration = Duration::from_secs(30);

/// Polls `count_sql` (a `count(*)` of sessions) from `client` every 2 ms
/// until it is 0, or fails naming `what` after [`RELEASE_DEADLINE`].
pub(super) async fn until_gone(
    client: &Client,
    count_sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    what: &str,
) -> Result<(), FaultError> {
    let deadline = Instant::now() + RELEASE_DEADLINE;
    loop {
        let left: i64 = client.query_one(count_sql, params).await?.get(0);
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(FaultError::TimedOut(format!(
                "{left} {what} were still there after {RELEASE_DEADLINE:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A session of the side client; dropping it closes it.
pub(super) struct SideSession {
    /// The connection.
    pub(super) client: Client,
    /// Its driver, which ends once `client` is dropped.
    _driver: tokio::task::JoinHandle<()>,
}

/// Opens a superuser session over the server's Unix socket (trusted, so
/// quick), or `None` when the server is full (SQLSTATE 53300).
pub(super) async fn side_session(cluster: &PgCluster) -> Result<Option<SideSession>, FaultError> {
    side_session_as(cluster, FILLER).await
}

/// [`side_session`] with `application_name` `name`.
pub(super) async fn side_session_as(
    cluster: &PgCluster,
    name: &str,
) -> Result<Option<SideSession>, FaultError> {
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
        Err(error) => Err(error.into()),
    }
}
