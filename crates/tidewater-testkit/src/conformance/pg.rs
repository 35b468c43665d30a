//! PostgreSQL databases for a backend's conformance target: a private
//! [`PgCluster`] shared by the checks of one test binary (the machine's
//! shared server is never touched, since checks break connections), a
//! database of its own for each check, and the failing URLs the checks
//! need.
//!
//! ```ignore
//! struct PgTarget { databases: PgDatabases }
//!
//! impl Target for PgTarget {
//!     async fn fresh(&self) -> Self::Manager {
//!         manager(&self.databases.fresh_url().await)
//!     }
//!     // permanently_failing: bad_password_url(); transiently_failing:
//!     // transient(); heal: heal(token); break_connection: terminate(pid)
//! }
//! ```

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use tokio::sync::OnceCell;

use super::SessionProbe;
use super::refusing::RefusingProxies;
use crate::PgCluster;

/// Session state a reset must clear on PostgreSQL: a custom setting.
pub const SESSION_PROBE: SessionProbe = SessionProbe {
    set: "SET conformance.flag = '7'",
    probe: "SELECT coalesce(nullif(current_setting('conformance.flag', true), ''), '0')::int",
    clean: 0,
};

/// One cluster for all the checks of a test binary; its watchdog removes
/// it when the process ends.
static CLUSTER: OnceCell<PgCluster> = OnceCell::const_new();
/// Numbers the databases made on it.
static DATABASES: AtomicU64 = AtomicU64::new(0);

/// Databases on the test binary's private cluster, and proxies in front of
/// it that refuse connections until healed.
pub struct PgDatabases {
    cluster: &'static PgCluster,
    proxies: RefusingProxies,
}

impl PgDatabases {
    /// The test binary's private cluster, started by the first call (a
    /// cluster shared by the checks of this binary, not the machine's
    /// shared server), with no proxies yet.
    ///
    /// # Panics
    /// When the cluster cannot start.
    pub async fn shared() -> Self {
        let cluster = CLUSTER
            .get_or_init(|| async { PgCluster::new().await.expect("a private cluster") })
            .await;
        Self {
            cluster,
            proxies: RefusingProxies::default(),
        }
    }

    /// The cluster, to run SQL on as the superuser.
    pub fn cluster(&self) -> &'static PgCluster {
        self.cluster
    }

    /// Creates an empty database (`conformance_<n>`) and returns the
    /// superuser's URL to it. The database goes with the cluster.
    ///
    /// # Panics
    /// When the database cannot be created.
    pub async fn fresh_url(&self) -> String {
        let name = format!("conformance_{}", DATABASES.fetch_add(1, SeqCst));
        self.cluster
            .create_database(&name)
            .await
            .expect("a fresh database");
        self.cluster
            .url_for(PgCluster::SUPERUSER, PgCluster::PASSWORD, &name)
    }

    /// The superuser with a wrong password: refused with `28P01`, a
    /// permanent error.
    pub fn bad_password_url(&self) -> String {
        self.cluster
            .url_for(PgCluster::SUPERUSER, "wrong password", "postgres")
    }

    /// A URL through a proxy that refuses connections (a transient error)
    /// until [`heal`](Self::heal) is called with the token returned.
    ///
    /// # Panics
    /// When the proxy cannot start.
    pub async fn transient(&self) -> (String, u64) {
        let (addr, token) = self.proxies.start(self.cluster.addr()).await;
        (self.cluster.url_at(addr), token)
    }

    /// Lets the proxy of [`transient`](Self::transient)'s `token` through.
    ///
    /// # Panics
    /// On a token this value did not hand out.
    pub async fn heal(&self, token: u64) {
        self.proxies.heal(token).await;
    }

    /// Ends the server process `pid` (`pg_backend_pid()` of a session), as
    /// a server that drops a connection would.
    ///
    /// # Panics
    /// When the SQL fails.
    pub async fn terminate(&self, pid: i64) {
        self.cluster
            .execute(&format!("SELECT pg_terminate_backend({pid})"))
            .await
            .expect("pg_terminate_backend runs");
    }
}
