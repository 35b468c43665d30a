//! Graceful shutdown of the real binary, on a database of the test's own
//! on the shared PostgreSQL: on SIGTERM (or SIGINT) it closes its listener,
//! lets the request in flight finish, closes its pool and exits 0, leaving
//! no session on the server; a second signal exits at once with status 1.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{Answer, Kind, Service, TestDb, poll_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tidewater_cli::serve::Ready;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// The longest any one step (a start, an exit, a poll) may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// The `tidewater` binary, running on a database of the test's own.
struct Binary {
    child: Child,
    addr: SocketAddr,
    /// A client of its API (no in-process server).
    service: Service,
    /// Its standard error, one line a JSON event, once it has exited.
    stderr: JoinHandle<Vec<String>>,
    _stdout: JoinHandle<()>,
    /// Where it says it serves (`--ready-file`).
    ready_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Binary {
    /// Starts `tidewater` on `db`, on a free port, with JSON logs, in an
    /// empty folder and environment (but `PATH`), so that no
    /// `tidewater.toml` or `DATABASE_URL` of the machine leaks in; returns
    /// once it says it is serving.
    async fn start(db: &TestDb, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ready_file = dir.path().join("ready.json");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidewater"))
            .args(["--bind", "127.0.0.1:0", "--database-url", &db.url])
            .arg("--ready-file")
            .arg(&ready_file)
            .args(["--log-format", "json", "--log-level", "info"])
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the tidewater binary starts");
        let stderr = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut all = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                all.push(line);
            }
            all
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(DEADLINE, stdout.next_line())
            .await
            .expect("tidewater says it is serving in time")
            .unwrap();
        let Some(line) = first else {
            let status = child.wait().await.unwrap();
            let log = stderr.await.unwrap().join("\n");
            panic!("tidewater exited ({status}) without serving:\n{log}");
        };
        // "tidewater is serving on http://127.0.0.1:PORT (postgres); dashboard: ..."
        let base = line
            .strip_prefix("tidewater is serving on ")
            .and_then(|rest| rest.split_once(" ("))
            .map(|(base, _)| base.to_owned())
            .unwrap_or_else(|| panic!("unexpected first line on stdout: {line:?}"));
        assert!(line.contains("(postgres)"), "{line}");
        let addr: SocketAddr = base
            .strip_prefix("http://")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        assert_ne!(addr.port(), 0, "{line}");
        // The same, machine-readable, written before the line.
        let ready = Ready::read(&ready_file)
            .unwrap()
            .expect("the ready file is written before the line");
        assert_eq!(
            (ready.url.as_str(), ready.backend.as_str(), Some(ready.pid)),
            (base.as_str(), "postgres", child.id()),
        );
        // Whatever else it prints is read, so it never blocks on a full pipe.
        let stdout =
            tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        Self {
            child,
            addr,
            service: Service {
                server: None,
                base,
                client: reqwest::Client::builder()
                    .timeout(DEADLINE)
                    .build()
                    .unwrap(),
            },
            stderr,
            _stdout: stdout,
            ready_file,
            _dir: dir,
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("tidewater is still running");
        kill(Pid::from_raw(i32::try_from(pid).unwrap()), signal).unwrap();
    }

    /// Waits for it to exit; returns its exit code (`None` when a signal
    /// killed it) and its log.
    async fn exit(mut self) -> (Option<i32>, Vec<Value>) {
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("tidewater exits in time")
            .unwrap();
        if status.success() {
            assert!(
                !self.ready_file.exists(),
                "a clean exit removes the ready file"
            );
        }
        let lines = self.stderr.await.unwrap();
        let events = lines
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|_| panic!("not a JSON log line: {line:?}"))
            })
            .collect();
        (status.code(), events)
    }
}

/// The first log event whose message is `message`.
fn event<'a>(events: &'a [Value], message: &str) -> &'a Value {
    events
        .iter()
        .find(|event| event["fields"]["message"] == message)
        .unwrap_or_else(|| panic!("no log event {message:?} in {events:#?}"))
}

/// Sessions on the shared server in database `name`.
async fn sessions(name: &str) -> i64 {
    common::pg_admin_count(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await
}

/// Waits until no session is left in database `name`.
async fn assert_no_session_left(name: &str) {
    poll_until(
        &format!("no session left in database {name}"),
        DEADLINE,
        async || (sessions(name).await == 0).then_some(()),
    )
    .await;
}

/// Waits until a session in database `name` waits for a lock: the
/// service's transfer, blocked on the test's row lock.
async fn wait_for_a_blocked_session(name: &str) {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND wait_event_type = 'Lock'"
    );
    poll_until(
        "the transfer to wait for the row lock",
        DEADLINE,
        async || (common::pg_admin_count(&sql).await >= 1).then_some(()),
    )
    .await;
}

/// Waits until connecting to `addr` is refused: the listener is closed.
async fn assert_listener_closed(addr: SocketAddr) {
    poll_until(
        "the listener to be closed (connections refused)",
        DEADLINE,
        async || match tokio::net::TcpStream::connect(addr).await {
            // Accepted by the kernel's backlog, or reset as the backlog is
            // torn down while the listener closes: not closed yet.
            Ok(_) => None,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(error) => {
                assert_eq!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionRefused,
                    "{error}"
                );
                Some(())
            }
        },
    )
    .await;
}

/// A transfer sent on a client of its own, in the background.
fn transfer_in_background(
    service: &Service,
    from: i64,
    to: i64,
    amount: i64,
) -> JoinHandle<reqwest::Result<Answer>> {
    let request = reqwest::Client::builder()
        .timeout(DEADLINE * 2)
        .build()
        .unwrap()
        .post(format!("{}/api/transfers", service.base))
        .json(&json!({ "from": from, "to": to, "amount": amount }));
    tokio::spawn(async move {
        let response = request.send().await?;
        Ok(Answer::of(response).await)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_the_listener_drains_the_request_in_flight_and_exits_0() {
    let db = TestDb::create(Kind::Postgres, "sigterm").await;
    let mut binary = Binary::start(&db, &["--set", "pool.drain_timeout=20s"]).await;
    let alice = binary.service.account(1000).await;
    let bob = binary.service.account(0).await;
    assert!(
        sessions(&db.name).await >= 1,
        "the service holds no connection"
    );

    // A transfer in flight, blocked on a row lock the test holds.
    let lock = db.lock_account(alice).await;
    let in_flight = transfer_in_background(&binary.service, alice, bob, 300);
    wait_for_a_blocked_session(&db.name).await;

    binary.signal(Signal::SIGTERM);
    assert_listener_closed(binary.addr).await;
    let refused = reqwest::get(format!("{}/health/live", binary.service.base)).await;
    assert!(
        refused.as_ref().is_err_and(reqwest::Error::is_connect),
        "a new request was not refused: {refused:?}"
    );
    // It waits for the request in flight; one signal is enough.
    assert!(
        !in_flight.is_finished(),
        "the request in flight was cut off"
    );
    assert!(
        binary.child.try_wait().unwrap().is_none(),
        "tidewater exited with a request in flight"
    );

    lock.release().await;
    let answer = in_flight
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    assert_eq!(answer.body["amount"], 300, "{answer:?}");

    let (code, events) = binary.exit().await;
    assert_eq!(code, Some(0), "{events:#?}");
    event(&events, "SIGTERM received");
    let stopped = event(&events, "stopped");
    assert_eq!(stopped["fields"]["requests_drained"], true, "{stopped}");
    let closed = event(&events, "pool closed");
    assert_eq!(closed["fields"]["still_in_use"], 0, "{closed}");
    assert_no_session_left(&db.name).await;

    // The transfer is there, once: the drain let it commit.
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let balance: i64 = client
        .query_one("SELECT balance FROM accounts WHERE id = $1", &[&bob])
        .await
        .unwrap()
        .get(0);
    assert_eq!(balance, 300);
    drop(client);
    let _ = connection.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_right_after_start_stops_it_the_same_way() {
    let db = TestDb::create(Kind::Postgres, "sigint").await;
    let binary = Binary::start(&db, &[]).await;
    // At once: a supervisor may signal as soon as the service says it is
    // serving.
    binary.signal(Signal::SIGINT);
    assert_listener_closed(binary.addr).await;

    let (code, events) = binary.exit().await;
    assert_eq!(code, Some(0), "{events:#?}");
    event(&events, "SIGINT received");
    let stopped = event(&events, "stopped");
    assert_eq!(stopped["fields"]["requests_drained"], true, "{stopped}");
    let closed = event(&events, "pool closed");
    assert_eq!(closed["fields"]["still_in_use"], 0, "{closed}");
    assert_no_session_left(&db.name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_with_status_1() {
    let db = TestDb::create(Kind::Postgres, "second_signal").await;
    // A drain that would outlast the test: only the second signal ends it.
    let binary = Binary::start(&db, &["--set", "pool.drain_timeout=10m"]).await;
    let alice = binary.service.account(1000).await;
    let bob = binary.service.account(0).await;

    let lock = db.lock_account(alice).await;
    let in_flight = transfer_in_background(&binary.service, alice, bob, 300);
    wait_for_a_blocked_session(&db.name).await;

    binary.signal(Signal::SIGTERM);
    assert_listener_closed(binary.addr).await;
    binary.signal(Signal::SIGINT);
    let (code, events) = binary.exit().await;
    assert_eq!(code, Some(1), "{events:#?}");
    event(&events, "second signal: exiting without waiting");

    // The request in flight was dropped, its transaction never committed.
    let answer = in_flight.await.unwrap();
    assert!(
        answer.is_err(),
        "the request in flight was answered: {answer:?}"
    );
    lock.release().await;
    assert_no_session_left(&db.name).await;
    let transfers = {
        let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let connection = tokio::spawn(connection);
        let count: i64 = client
            .query_one("SELECT count(*) FROM transfers", &[])
            .await
            .unwrap()
            .get(0);
        drop(client);
        let _ = connection.await;
        count
    };
    assert_eq!(transfers, 0);
}
