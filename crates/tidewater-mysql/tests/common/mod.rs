//! What the backend's test files share. Everything runs against the
//! machine's shared MariaDB (127.0.0.1:3306, root, no password), which the
//! tests never stop, reconfigure or fill: each test works in a database of
//! its own, `tidewater_<test>_<unix time>_<random>`, dropped when its
//! [`TestDb`] goes (on failure too); databases and users of that form older
//! than an hour, left by a killed run, are dropped by the next run. The
//! database-level part lives in `tidewater_testkit::conformance::mariadb`.

#![allow(dead_code)] // each test file uses a part

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use tidewater::{Error, ErrorClass, Pool, PoolConfig};
use tidewater_mysql::{MySqlError, MySqlManager, MySqlOptions};
use tidewater_testkit::conformance::mariadb::{self, Database};
#[allow(unused_imports)] // each test file uses a part
pub use tidewater_testkit::conformance::mariadb::{ADDR, addr, unique};
#[allow(unused_imports)] // each test file uses a part
pub use tidewater_testkit::{POLL_DEADLINE, eventually};

/// Added to every bound that follows from the configuration (a query's
/// bound, a caller's deadline): how late a timer may fire on this shared
/// 2-core machine. Enough that such a bound never trips on a slow
/// scheduler, small against what it catches (a wait without a deadline).
pub const SLACK: Duration = Duration::from_secs(5);

/// Waits until the server's processlist shows session `id` running `sql`.
pub async fn until_running(id: u32, sql: &str) {
    until_processlist(id, sql, true).await;
}

/// Waits until session `id` has left the server.
pub async fn until_gone(id: u32) {
    until_processlist(id, "%", false).await;
}

/// Ends session `id` (`KILL`), if it is still on the server: a query the
/// client gave up on runs on there.
pub async fn kill(id: u32) {
    let mut admin = admin().await;
    let _ = admin.query_drop(format!("KILL {id}")).await; // it may have ended
    admin.disconnect().await.unwrap();
}

/// Waits until the server's processlist `shows` (or no longer shows)
/// session `id` with a statement like `info` (`%`: any, none included).
async fn until_processlist(id: u32, info: &str, shows: bool) {
    let mut admin = admin().await;
    let seen = eventually(async || {
        let found: Option<u32> = admin
            .exec_first(
                "SELECT ID FROM information_schema.PROCESSLIST \
                 WHERE ID = ? AND COALESCE(INFO, '') LIKE ?",
                (id, info),
            )
            .await
            .unwrap();
        found.is_some() == shows
    })
    .await;
    let state = if shows { "never showed" } else { "still shows" };
    assert!(seen, "the processlist {state} session {id} with `{info}`");
    admin.disconnect().await.unwrap();
}

/// A `get()` that must fail at once and for good: with the permanent
/// connection error itself (the pool passes it to the caller instead of
/// retrying until `acquire_timeout`), whose text contains `says`.
/// Returns the error for further checks.
pub async fn refused(pool: &Pool<MySqlManager>, says: &str) -> Error {
    let error = pool.get().await.unwrap_err();
    let Error::Connect(cause) = &error else {
        panic!("the permanent connection error itself, not {error:?}")
    };
    assert_eq!(cause.class(), ErrorClass::Permanent, "{error}");
    assert!(error.to_string().contains(says), "{error}");
    error
}

/// An administrator's session on the shared server (no database).
pub async fn admin() -> Conn {
    let url = format!("mysql://root@{ADDR}?prefer_socket=false");
    Conn::new(Opts::from_url(&url).unwrap())
        .await
        .expect("the shared MariaDB at 127.0.0.1:3306 accepts root")
}

/// Runs statements as the administrator.
pub async fn admin_exec(sql: &str) {
    let mut conn = admin().await;
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    conn.disconnect().await.unwrap();
}

/// A database of one test's own, dropped with it; its `name`, `url()`
/// and `url_at(proxy)` are the testkit's.
pub struct TestDb(Database);

impl std::ops::Deref for TestDb {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.0
    }
}

impl TestDb {
    pub async fn create(test: &str) -> Self {
        Self(Database::create(test).await)
    }

    /// A pool on this database with default options but `url`.
    pub fn pool(&self, max_size: u32) -> Pool<MySqlManager> {
        self.pool_with(
            MySqlOptions {
                url: self.url(),
                ..MySqlOptions::default()
            },
            max_size,
        )
    }

    /// A pool with `options` (whose url should point here).
    pub fn pool_with(&self, options: MySqlOptions, max_size: u32) -> Pool<MySqlManager> {
        pool_sized(options, max_size)
    }
}

/// A pool of 2 on `url`, default options.
pub fn pool_for(url: &str) -> Pool<MySqlManager> {
    let options = MySqlOptions {
        url: url.to_owned(),
        ..MySqlOptions::default()
    };
    pool_sized(options, 2)
}

/// A pool of `max_size` with `options` (acquire timeout 10 s).
pub fn pool_sized(options: MySqlOptions, max_size: u32) -> Pool<MySqlManager> {
    let config = PoolConfig {
        max_size,
        acquire_timeout: Duration::from_secs(10),
        ..PoolConfig::default()
    };
    Pool::new(MySqlManager::new(options).unwrap(), config).unwrap()
}

/// A user of one test's own (`'name'@'%'`), dropped with it.
pub struct TestUser {
    pub name: String,
}

impl TestUser {
    /// Creates the user with `password`, all rights on `db`, and
    /// `limits` (say `WITH MAX_USER_CONNECTIONS 3`): per account, so the
    /// shared server's settings stay as they are.
    pub async fn create(db: &TestDb, password: &str, limits: &str) -> Self {
        let name = unique("user");
        admin_exec(&format!(
            "CREATE USER '{name}'@'%' IDENTIFIED BY '{password}' {limits}"
        ))
        .await;
        admin_exec(&format!("GRANT ALL ON `{}`.* TO '{name}'@'%'", db.name)).await;
        Self { name }
    }

    pub fn url(&self, password: &str, db: &TestDb) -> String {
        format!("mysql://{}:{password}@{ADDR}/{}", self.name, db.name)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let sql = format!("DROP USER IF EXISTS '{}'@'%'", self.name);
        if let Err(error) = mariadb::execute_blocking(&sql) {
            eprintln!("cleanup `{sql}` failed: {error}");
        }
    }
}

/// An application's error, as the transaction helper expects one:
/// convertible from the pool's and the database's errors, with the cause
/// behind it for `is_conflict`.
#[derive(Debug)]
pub struct AppError(pub Box<dyn std::error::Error + Send + Sync>);

impl AppError {
    /// The application refused: an error that is not the database's.
    pub fn refused() -> Self {
        Self("refused by the application".into())
    }
}

impl From<tidewater::Error> for AppError {
    fn from(error: tidewater::Error) -> Self {
        Self(Box::new(error))
    }
}

impl From<MySqlError> for AppError {
    fn from(error: MySqlError) -> Self {
        Self(Box::new(error))
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}
