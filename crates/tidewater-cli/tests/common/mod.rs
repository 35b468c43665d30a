//! What the service's tests share: a database of the test's own on each
//! backend (an SQLite file in a temporary folder; a database on the
//! machine's shared PostgreSQL, 127.0.0.1:5432, or MariaDB, 127.0.0.1:3306,
//! created for the test and dropped when its [`TestDb`] goes, on failure
//! too), the service started in-process on it, and an HTTP client.
//! The shared servers are never stopped, reconfigured or filled.

#![allow(dead_code)] // each test file uses a part

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tidewater_cli::config::Config;
use tidewater_cli::serve::{self, Server};

/// The shared PostgreSQL, as its superuser, in the database `test`.
pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The shared MariaDB, as root.
pub const MYSQL_ADMIN: &str = "mysql://root@127.0.0.1:3306?prefer_socket=false";

/// A backend to run a test on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
    MySql,
}

/// A name for a database a test creates:
/// `tidewater_cli_<test>_<unix time>_<random>`.
pub fn unique(test: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!(
        "tidewater_cli_{test}_{}_{:04x}",
        now.as_secs(),
        fastrand::u16(..)
    )
}

/// A database of one test's own.
pub struct TestDb {
    pub kind: Kind,
    /// The URL the service is given.
    pub url: String,
    /// The database's name (PostgreSQL, MySQL) or the file's path (SQLite).
    pub name: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn create(kind: Kind, test: &str) -> Self {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("bank.db");
                Self {
                    kind,
                    url: format!("sqlite://{}", path.display()),
                    name: path.display().to_string(),
                    _dir: Some(dir),
                }
            }
            Kind::Postgres => {
                let name = unique(test);
                pg_admin(&format!("CREATE DATABASE {name}")).await;
                Self {
                    kind,
                    url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    name,
                    _dir: None,
                }
            }
            Kind::MySql => {
                let name = unique(test);
                mysql_admin(&format!("CREATE DATABASE `{name}`")).await;
                Self {
                    kind,
                    url: format!("mysql://root@127.0.0.1:3306/{name}?prefer_socket=false"),
                    name,
                    _dir: None,
                }
            }
        }
    }

    /// Runs the statements of `sql` on the test's database from a
    /// connection of the test's own (not the service's pool); the error is
    /// the database's message.
    pub async fn execute(&self, sql: &str) -> Result<(), String> {
        match self.kind {
            Kind::Sqlite => {
                let conn = tidewater_sqlite::rusqlite::Connection::open(&self.name).unwrap();
                conn.execute_batch(sql).map_err(|error| error.to_string())
            }
            Kind::Postgres => {
                let (client, connection) =
                    tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                        .await
                        .unwrap();
                let task = tokio::spawn(connection);
                let done = client.batch_execute(sql).await.map_err(|error| {
                    error
                        .as_db_error()
                        .map_or_else(|| error.to_string(), |db| db.message().to_owned())
                });
                drop(client);
                let _ = task.await;
                done
            }
            Kind::MySql => {
                let mut conn = mysql_async::Conn::from_url(&self.url).await.unwrap();
                let done = conn
                    .query_drop(sql)
                    .await
                    .map_err(|error| error.to_string());
                conn.disconnect().await.unwrap();
                done
            }
        }
    }

    /// The integer `sql` selects (a `COUNT(*)`, say), read from a
    /// connection of the test's own.
    pub async fn count(&self, sql: &str) -> i64 {
        match self.kind {
            Kind::Sqlite => {
                let conn = tidewater_sqlite::rusqlite::Connection::open(&self.name).unwrap();
                conn.query_row(sql, [], |row| row.get(0)).unwrap()
            }
            Kind::Postgres => {
                let (client, connection) =
                    tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                        .await
                        .unwrap();
                let task = tokio::spawn(connection);
                let count: i64 = client.query_one(sql, &[]).await.unwrap().get(0);
                drop(client);
                let _ = task.await;
                count
            }
            Kind::MySql => {
                let mut conn = mysql_async::Conn::from_url(&self.url).await.unwrap();
                let count: Option<i64> = conn.query_first(sql).await.unwrap();
                conn.disconnect().await.unwrap();
                count.unwrap()
            }
        }
    }

    /// Locks account `id`'s row (SQLite: the whole database, for writing)
    /// from a connection of the test's own, until the guard is released.
    pub async fn lock_account(&self, id: i64) -> RowLock {
        match self.kind {
            Kind::Sqlite => {
                let path = self.name.clone();
                let (release, released) = std::sync::mpsc::channel::<()>();
                let (locked, is_locked) = tokio::sync::oneshot::channel();
                let thread = std::thread::spawn(move || {
                    let conn = tidewater_sqlite::rusqlite::Connection::open(path).unwrap();
                    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                    locked.send(()).unwrap();
                    let _ = released.recv();
                    conn.execute_batch("COMMIT").unwrap();
                });
                is_locked.await.unwrap();
                RowLock::Sqlite { release, thread }
            }
            Kind::Postgres => {
                let (client, connection) =
                    tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                        .await
                        .unwrap();
                tokio::spawn(connection);
                client
                    .batch_execute(&format!(
                        "BEGIN; SELECT * FROM accounts WHERE id = {id} FOR UPDATE"
                    ))
                    .await
                    .unwrap();
                RowLock::Postgres(client)
            }
            Kind::MySql => {
                let mut conn = mysql_async::Conn::from_url(&self.url).await.unwrap();
                conn.query_drop("START TRANSACTION").await.unwrap();
                conn.query_drop(format!("SELECT * FROM accounts WHERE id = {id} FOR UPDATE"))
                    .await
                    .unwrap();
                RowLock::MySql(conn)
            }
        }
    }
}

/// A lock held by [`TestDb::lock_account`].
pub enum RowLock {
    Sqlite {
        release: std::sync::mpsc::Sender<()>,
        thread: std::thread::JoinHandle<()>,
    },
    Postgres(tokio_postgres::Client),
    MySql(mysql_async::Conn),
}

impl RowLock {
    pub async fn release(self) {
        match self {
            Self::Sqlite { release, thread } => {
                release.send(()).unwrap();
                tokio::task::spawn_blocking(move || thread.join().unwrap())
                    .await
                    .unwrap();
            }
            Self::Postgres(client) => client.batch_execute("COMMIT").await.unwrap(),
            Self::MySql(mut conn) => {
                conn.query_drop("COMMIT").await.unwrap();
                conn.disconnect().await.unwrap();
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = match self.kind {
            Kind::Sqlite => return,
            Kind::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            Kind::MySql => format!("DROP DATABASE IF EXISTS `{}`", self.name),
        };
        let kind = self.kind;
        // On a thread and runtime of its own: this also runs while a
        // failing test unwinds.
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let cleanup = async {
                    match kind {
                        Kind::Postgres => pg_admin(&sql).await,
                        _ => mysql_admin(&sql).await,
                    }
                };
                if tokio::time::timeout(Duration::from_secs(20), cleanup)
                    .await
                    .is_err()
                {
                    eprintln!("cleanup `{sql}` timed out");
                }
            });
        });
        let _ = worker.join();
    }
}

/// Runs `sql` on the shared PostgreSQL as its superuser.
pub async fn pg_admin(sql: &str) {
    let (client, connection) = tokio_postgres::connect(PG_ADMIN, tokio_postgres::NoTls)
        .await
        .expect("the shared PostgreSQL at 127.0.0.1:5432 accepts postgres");
    let task = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    drop(client);
    let _ = task.await;
}

/// Runs `sql` on the shared MariaDB as root.
pub async fn mysql_admin(sql: &str) {
    let mut conn = mysql_async::Conn::from_url(MYSQL_ADMIN)
        .await
        .expect("the shared MariaDB at 127.0.0.1:3306 accepts root");
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    conn.disconnect().await.unwrap();
}

/// The configuration the tests start from: any free port, a pool of 10.
pub fn config(url: &str) -> Config {
    let mut config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: url.to_owned(),
        ..Config::default()
    };
    config.pool.max_size = 10;
    config
}

/// The service, started in-process, and a client for it.
pub struct Service {
    pub server: Option<Server>,
    pub base: String,
    pub client: reqwest::Client,
}

impl Service {
    pub async fn start(config: Config) -> Self {
        let server = serve::start(config).await.expect("the service starts");
        Self {
            base: server.url(),
            server: Some(server),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    pub async fn on(db: &TestDb) -> Self {
        Self::start(config(&db.url)).await
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        Answer::of(
            self.client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: &Value, key: Option<&str>) -> Answer {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        Answer::of(request.send().await.unwrap()).await
    }

    /// Opens an account; returns its id.
    pub async fn account(&self, balance: i64) -> i64 {
        let answer = self
            .post(
                "/api/accounts",
                &json!({ "name": "test", "balance": balance }),
                None,
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        answer.body["id"].as_i64().unwrap()
    }

    pub async fn balance(&self, id: i64) -> i64 {
        let answer = self.get(&format!("/api/accounts/{id}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.body["balance"].as_i64().unwrap()
    }

    pub async fn transfer(&self, from: i64, to: i64, amount: i64, key: Option<&str>) -> Answer {
        self.post(
            "/api/transfers",
            &json!({ "from": from, "to": to, "amount": amount }),
            key,
        )
        .await
    }
}

/// An HTTP answer, its body parsed as JSON (`Null` when it is not).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub async fn of(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
            text,
        }
    }

    /// Asserts an RFC 9457 problem of `status` whose type is
    /// `/problems/{slug}` (relative: a path on the service itself).
    pub fn assert_problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{self:?}"
        );
        let kind = self.body["type"].as_str().unwrap_or_default();
        assert_eq!(kind, format!("/problems/{slug}"), "{self:?}");
        assert_eq!(self.body["status"], status, "{self:?}");
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.headers
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
    }
}

/// Runs `test` on each backend, as one test function per backend.
#[macro_export]
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$test(common::Kind::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$test(common::Kind::Postgres).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mysql() {
                    super::$test(common::Kind::MySql).await;
                }
            }
        )*
    };
}

/// Runs `sql`, a query of one `bigint` (a `count(*)`, say), on the shared
/// PostgreSQL as its superuser, in the database `test`; returns the value.
pub async fn pg_admin_count(sql: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(PG_ADMIN, tokio_postgres::NoTls)
        .await
        .expect("the shared PostgreSQL at 127.0.0.1:5432 accepts postgres");
    let task = tokio::spawn(connection);
    let count: i64 = client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .get(0);
    drop(client);
    let _ = task.await;
    count
}

/// Calls `check` until it returns `Some`, pausing a little longer each
/// time (at most 50 ms), and returns its value; panics naming `what` once
/// `deadline` has passed. Polling with a deadline, not sleeping, is how the
/// tests wait for something to happen.
pub async fn poll_until<T>(
    what: &str,
    deadline: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: still not the case after {deadline:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
