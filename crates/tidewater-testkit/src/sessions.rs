//! A sampler of a server's client sessions: the fleet tests and the lab
//! read `pg_stat_activity` every 100 ms to show that the sessions never
//! passed a limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio::task::JoinHandle;

/// How often [`SessionSampler`] reads the server.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// One reading: client sessions on the server, and among them those whose
/// `application_name` starts with the prefix asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Every client session.
    pub all: u32,
    /// Those with the prefix.
    pub tagged: u32,
}

/// Counts the server's client sessions every [`SAMPLE_EVERY`] on a session
/// of its own (connect as a superuser: it sees every session), from
/// [`start`](Self::start) until [`RunningSampler::finish`].
///
/// ```no_run
/// # async fn f(cluster: tidewater_testkit::PgCluster) {
/// use tidewater_testkit::SessionSampler;
/// let sampler = SessionSampler::connect(&cluster.url(), "tidewater-fleet/").await.unwrap();
/// let running = sampler.start();
/// // ... the load ...
/// let samples = running.finish().await;
/// assert!(samples.iter().all(|sample| sample.all <= 37));
/// # }
/// ```
pub struct SessionSampler {
    client: tokio_postgres::Client,
    prefix: String,
}

impl SessionSampler {
    /// Connects (plain text) to `url`; counts sessions whose
    /// `application_name` starts with `prefix` apart.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(Self {
            client,
            prefix: prefix.to_owned(),
        })
    }

    /// Starts sampling.
    pub fn start(self) -> RunningSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let running = stop.clone();
        let task = tokio::spawn(async move {
            let sql = "SELECT count(*)::int, \
                 (count(*) FILTER (WHERE starts_with(coalesce(application_name, ''), $1)))::int \
                 FROM pg_stat_activity WHERE backend_type = 'client backend'";
            let mut samples = Vec::new();
            while !running.load(Relaxed) {
                let Ok(row) = self.client.query_one(sql, &[&self.prefix]).await else {
                    break;
                };
                samples.push(Sample {
                    all: row.get::<_, i32>(0).unsigned_abs(),
                    tagged: row.get::<_, i32>(1).unsigned_abs(),
                });
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
            samples
        });
        RunningSampler { stop, task }
    }
}

/// A [`SessionSampler`] at work.
pub struct RunningSampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<Sample>>,
}

impl RunningSampler {
    /// Stops sampling; the samples, oldest first (up to the first failed
    /// reading, if the server went away).
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Relaxed);
        self.task.await.unwrap_or_default()
    }
}
