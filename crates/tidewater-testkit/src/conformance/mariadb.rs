//! The machine's shared MariaDB (127.0.0.1:3306, `root` without a
//! password) for a backend's tests: databases of a test's own, dropped when
//! their value goes (on failure too), with those a killed run left behind
//! swept by the next; SQL as `root`; and, for a conformance target,
//! [`MariaDatabases`] with the failing URLs the checks need.
//!
//! The tests never stop, reconfigure or fill the shared server. SQL runs
//! through the `mariadb` (or `mysql`) command-line client, as
//! [`PgCluster`](crate::PgCluster) runs `psql`: the testkit needs no
//! driver, and cleanup works from `Drop` inside or outside a runtime.
//!
//! ```ignore
//! #[derive(Default)]
//! struct MariaTarget { databases: MariaDatabases }
//!
//! impl Target for MariaTarget {
//!     async fn fresh(&self) -> Self::Manager {
//!         manager(&self.databases.fresh_url().await)
//!     }
//!     // permanently_failing: bad_password_url(); transiently_failing:
//!     // transient(); heal: heal(token); break_connection: kill(id)
//! }
//! ```

use std::io;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::OnceCell;

use super::SessionProbe;
use super::refusing::RefusingProxies;
use crate::command::run;
use crate::lock;
use crate::wait::{DEADLINE, off_thread};

/// The shared server.
pub const ADDR: &str = "127.0.0.1:3306";

/// Session state a reset must clear on MariaDB: a user variable.
pub const SESSION_PROBE: SessionProbe = SessionProbe {
    set: "SET @flag = 7",
    probe: "SELECT COALESCE(@flag, 0)",
    clean: 0,
};

/// [`ADDR`] as an address.
pub fn addr() -> SocketAddr {
    ADDR.parse().expect("a socket address")
}

/// A URL as `root` to `database` on the shared server.
pub fn root_url(database: &str) -> String {
    format!("mysql://root@{ADDR}/{database}")
}

/// Runs `sql` as `root` and returns what it printed: one line a row, tabs
/// between columns, no headers. Blocks; see [`execute`] in async code.
///
/// # Errors
/// When the client cannot start, the SQL fails (the error holds the
/// server's message) or it takes longer than 30 s.
pub fn execute_blocking(sql: &str) -> io::Result<String> {
    let client = |program: &str| {
        let mut command = Command::new(program);
        command
            .args([
                "--no-defaults",
                "--protocol=TCP",
                "--batch",
                "--skip-column-names",
            ])
            .args(["--host", "127.0.0.1", "--port", "3306", "--user", "root"])
            .args(["--execute", sql]);
        run(&mut command, program, DEADLINE)
    };
    let out = match client("mariadb") {
        Err(error) if error.kind() == io::ErrorKind::NotFound => client("mysql")?,
        out => out?,
    };
    Ok(out.trim_end_matches('\n').to_owned())
}

/// Runs `sql` as `root` (off the runtime's threads) and returns what it
/// printed, as [`execute_blocking`] does.
///
/// # Errors
/// As [`execute_blocking`].
pub async fn execute(sql: &str) -> io::Result<String> {
    let sql = sql.to_owned();
    off_thread(move || execute_blocking(&sql)).await
}

/// Ends session `id` (`CONNECTION_ID()`) on the server, as a server that
/// drops a connection would.
///
/// # Panics
/// When `KILL` fails (the session is gone already, say).
pub async fn kill(id: u64) {
    execute(&format!("KILL {id}"))
        .await
        .unwrap_or_else(|error| panic!("KILL {id}: {error}"));
}

/// A name for something a test creates:
/// `tidewater_<what>_<unix time>_<random>`. [`sweep`] drops what has such
/// a name and is more than an hour old.
pub fn unique(what: &str) -> String {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!(
        "tidewater_{what}_{}_{:04x}{}",
        now.as_secs(),
        fastrand::u16(..),
        MADE.fetch_add(1, SeqCst)
    )
}

/// Whether a name made by [`unique`] is more than an hour old.
fn stale(name: &str) -> bool {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let made = name
        .rsplit('_')
        .nth(1)
        .and_then(|secs| secs.parse::<u64>().ok());
    made.is_some_and(|made| now.as_secs().saturating_sub(made) > 3600)
}

/// Drops the databases and users named by [`unique`] that a killed run
/// left behind (more than an hour old), once per test binary.
/// [`Database::create`] calls it.
///
/// # Panics
/// When the server cannot list them.
pub async fn sweep() {
    static SWEPT: OnceCell<()> = OnceCell::const_new();
    SWEPT.get_or_init(|| off_thread(sweep_blocking)).await;
}

fn sweep_blocking() {
    let listed = |sql: &str| execute_blocking(sql).expect("the shared MariaDB lists");
    let databases = listed("SHOW DATABASES LIKE 'tidewater\\_%'");
    for name in databases.lines().filter(|name| stale(name)) {
        let _ = execute_blocking(&format!("DROP DATABASE IF EXISTS `{name}`"));
    }
    let users = listed("SELECT user, host FROM mysql.user WHERE user LIKE 'tidewater\\_%'");
    for (user, host) in users.lines().filter_map(|line| line.split_once('\t')) {
        if stale(user) {
            let _ = execute_blocking(&format!("DROP USER IF EXISTS '{user}'@'{host}'"));
        }
    }
}

/// A database of one test's own on the shared server, dropped with this
/// value.
#[derive(Debug)]
pub struct Database {
    /// Its name, from [`unique`].
    pub name: String,
}

impl Database {
    /// Creates an empty database named `tidewater_<what>_...`, after a
    /// [`sweep`].
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn create(what: &str) -> Self {
        sweep().await;
        let name = unique(what);
        execute(&format!("CREATE DATABASE `{name}`"))
            .await
            .unwrap_or_else(|error| panic!("CREATE DATABASE `{name}`: {error}"));
        Self { name }
    }

    /// A URL to this database as `root`.
    pub fn url(&self) -> String {
        root_url(&self.name)
    }

    /// A URL to this database as `root`, through `addr` (a proxy).
    pub fn url_at(&self, addr: impl std::fmt::Display) -> String {
        format!("mysql://root@{addr}/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.name);
        if let Err(error) = execute_blocking(&sql) {
            eprintln!("cleanup `{sql}` failed: {error}");
        }
    }
}

/// A conformance target's databases on the shared server (each dropped
/// when this value goes), and proxies in front of the server that refuse
/// connections until healed.
pub struct MariaDatabases {
    what: &'static str,
    databases: Mutex<Vec<Database>>,
    proxies: RefusingProxies,
}

impl MariaDatabases {
    /// Databases named `tidewater_<what>_...`.
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            databases: Mutex::default(),
            proxies: RefusingProxies::default(),
        }
    }

    /// Creates an empty database and returns `root`'s URL to it.
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn fresh_url(&self) -> String {
        let database = Database::create(self.what).await;
        let url = database.url();
        lock(&self.databases).push(database);
        url
    }

    /// `root` with a wrong password: refused with 1045, a permanent error.
    pub fn bad_password_url(&self) -> String {
        format!("mysql://root:wrong-password@{ADDR}/test")
    }

    /// A URL through a proxy that refuses connections (a transient error)
    /// until [`heal`](Self::heal) is called with the token returned.
    ///
    /// # Panics
    /// When the proxy cannot start.
    pub async fn transient(&self) -> (String, u64) {
        let (proxy, token) = self.proxies.start(addr()).await;
        (format!("mysql://root@{proxy}/test"), token)
    }

    /// Lets the proxy of [`transient`](Self::transient)'s `token` through.
    ///
    /// # Panics
    /// On a token this value did not hand out.
    pub async fn heal(&self, token: u64) {
        self.proxies.heal(token).await;
    }
}
