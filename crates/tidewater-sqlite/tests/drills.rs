//! Failure drills on SQLite files: each runs callers through a pool (reads
//! and writes) while something happens to the database from outside:
//!
//! - another process holds the write lock (WAL: writers wait, readers go
//!   on), or a lock that keeps everyone out (rollback-journal mode);
//! - the database file is deleted under the pool, then restored from a
//!   backup;
//! - the files are made immutable (`chattr +i`: the one read-only that
//!   binds root, who ignores permission bits), then writable again;
//! - the file is corrupt, then replaced by a good one.
//!
//! Each checks that the callers were served before the fault; that while
//! it held, the calls of each kind were all served or all failed with a
//! cause the fault explains; that the pool served again by itself once it
//! ended, and every call made after that was served; that every caller's
//! wait ended by its deadline and every error named its cause; and that
//! no capacity was lost. The numbers are printed (`--nocapture`).
//!
//! No phase lasts a set time: a fault holds until the callers have made
//! enough calls inside it, and each wait has a deadline that follows from
//! the pool's configuration plus [`SLACK`], there to turn a hang into a
//! failure, never to measure a speed. (tokio's paused clock cannot stand
//! in: SQLite works on threads of its own, which a paused clock does not
//! wait for.)
//!
//! "Another process" is this test binary run again: the ignored test
//! `lock_holder_process` does nothing unless `TIDEWATER_SQLITE_LOCK_HOLDER`
//! names a database, in which case it takes the lock, says so on stdout,
//! and holds it until its stdin gets a line or closes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tidewater::{Pool, PoolConfig};
use tidewater_sqlite::{SqliteError, SqliteManager, SqliteOptions};
use tokio::task::JoinSet;
use tokio::time::Instant;

mod common;
use common::{SLACK, eventually, within};

/// Callers of the load, half reading, half writing.
const CALLERS: usize = 8;
const MAX_SIZE: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_millis(300);
/// A caller's pause between two calls.
const THINK: Duration = Duration::from_millis(20);
/// How many calls each caller makes, at least, in each phase of a drill
/// (before the fault, while it holds, after the recovery).
const ROUNDS: usize = 3;
/// Calls of each kind a drill waits for in each phase before it moves on.
const CALLS_PER_PHASE: usize = ROUNDS * CALLERS / 2;

/// How long a new process of this test binary may take to start and take
/// its lock: no configuration bounds that, so a generous constant.
const PROCESS_START: Duration = Duration::from_secs(10);
/// How often an idle connection looks whether its file is still there
/// ("within a second", as the crate documents).
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

const HOLDER_ENV: &str = "TIDEWATER_SQLITE_LOCK_HOLDER";
const HELD: &str = "tidewater-sqlite: lock held";

fn options(path: &Path) -> SqliteOptions {
    SqliteOptions {
        busy_timeout: BUSY_TIMEOUT,
        ..SqliteOptions::file(path)
    }
}

/// The pool's configuration. `acquire_timeout` is far above the longest
/// wait for a connection the load makes by itself (writers holding every
/// connection for `busy_timeout`, twice over), so that a caller that times
/// out does so because of the fault.
fn config() -> PoolConfig {
    PoolConfig {
        max_size: MAX_SIZE,
        acquire_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        validation_timeout: Duration::from_secs(1),
        maintenance_interval: Duration::from_millis(100),
        ..PoolConfig::default()
    }
}

fn pool(options: SqliteOptions) -> Pool<SqliteManager> {
    SqliteManager::new(options)
        .unwrap()
        .into_pool(config())
        .unwrap()
}

/// The longest one call may take: `get()` ends by `acquire_timeout`
/// (validation and reset included), and its one statement waits at most
/// `busy_timeout` for a lock.
fn call_bound() -> Duration {
    config().acquire_timeout + BUSY_TIMEOUT + SLACK
}

/// How soon after a fault ends the pool must serve again: its next
/// connection attempt starts within `connect_backoff.max` and ends within
/// `connect_timeout`; then a call ends within [`call_bound`].
fn recovery_bound() -> Duration {
    let config = config();
    config.connect_backoff.max + config.connect_timeout + call_bound()
}

/// How long a phase may take to show [`CALLS_PER_PHASE`] calls of each
/// kind: each caller ends the call it is making, then makes [`ROUNDS`]
/// more.
fn phase_bound() -> Duration {
    (call_bound() + THINK) * (ROUNDS as u32 + 1)
}

/// A database with a `log` table.
fn create(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE log (id INTEGER PRIMARY KEY, at TEXT)",
    )
    .unwrap();
}

/// What an error says its cause is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cause {
    /// Another connection or process held a lock past `busy_timeout`.
    Locked,
    /// The file was deleted under the connection.
    FileDeleted,
    /// The file is missing and `create` is off.
    FileMissing,
    /// A new connection found the file read-only.
    ReadOnlyAtConnect,
    /// The file system refused a write.
    IoError,
    /// A write to a file that became read-only.
    ReadOnly,
    /// The file is not a database.
    NotADatabase,
    /// The pool's breaker is open: the call failed without waiting.
    BreakerOpen,
    /// No connection came within `acquire_timeout`.
    AcquireTimeout,
}

impl Cause {
    /// What a pool's error says: its kind, or for a failed connection
    /// attempt, the attempt's cause.
    fn of_pool(error: &tidewater::Error) -> Option<Self> {
        match error {
            tidewater::Error::Timeout { .. } => Some(Self::AcquireTimeout),
            tidewater::Error::Unavailable { .. } => Some(Self::BreakerOpen),
            _ => Self::named_in(&error.to_string()),
        }
    }

    /// The cause SQLite's or the connection's message names, if any.
    fn named_in(message: &str) -> Option<Self> {
        const NAMES: [(&str, Cause); 7] = [
            ("(SQLITE_BUSY", Cause::Locked),
            (
                "was deleted since this connection opened it",
                Cause::FileDeleted,
            ),
            ("does not exist and create is off", Cause::FileMissing),
            (
                "read_only is off (SQLITE_READONLY)",
                Cause::ReadOnlyAtConnect,
            ),
            ("(SQLITE_IOERR", Cause::IoError),
            ("(SQLITE_READONLY", Cause::ReadOnly),
            ("is not an SQLite database", Cause::NotADatabase),
        ];
        NAMES
            .iter()
            .find(|(text, _)| message.contains(text))
            .map(|(_, cause)| *cause)
    }
}

/// A failed call: the cause its error names (`None`: none), and the error.
#[derive(Debug)]
struct Failure {
    cause: Option<Cause>,
    message: String,
}

impl From<tidewater::Error> for Failure {
    fn from(error: tidewater::Error) -> Self {
        Self {
            cause: Cause::of_pool(&error),
            message: error.to_string(),
        }
    }
}

impl From<SqliteError> for Failure {
    fn from(error: SqliteError) -> Self {
        let message = error.to_string();
        Self {
            cause: Cause::named_in(&message),
            message,
        }
    }
}

/// One call: a checkout and one statement, a write or a read.
async fn call(pool: &Pool<SqliteManager>, write: bool) -> Result<(), Failure> {
    let conn = pool.get().await?;
    if write {
        conn.execute("INSERT INTO log (at) VALUES (datetime('now'))", ())
            .await?;
    } else {
        conn.query_value::<i64, _>("SELECT count(*) FROM log", ())
            .await?;
    }
    Ok(())
}

/// One call of the load: what it was, when it started and ended, how it
/// ended.
#[derive(Debug)]
struct Call {
    write: bool,
    started: Instant,
    ended: Instant,
    outcome: Result<(), Failure>,
}

/// [`CALLERS`] tasks calling the pool in a loop until stopped, each call
/// recorded as it ends.
struct Load {
    calls: Arc<Mutex<Vec<Call>>>,
    stop: Arc<AtomicBool>,
    callers: JoinSet<()>,
}

impl Load {
    fn start(pool: &Pool<SqliteManager>) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut callers = JoinSet::new();
        for caller in 0..CALLERS {
            let (pool, calls, stop) = (pool.clone(), calls.clone(), stop.clone());
            let write = caller % 2 == 0;
            callers.spawn(async move {
                while !stop.load(SeqCst) {
                    let started = Instant::now();
                    let outcome = call(&pool, write).await;
                    let ended = Instant::now();
                    calls.lock().unwrap().push(Call {
                        write,
                        started,
                        ended,
                        outcome,
                    });
                    tokio::time::sleep(THINK).await;
                }
            });
        }
        Self {
            calls,
            stop,
            callers,
        }
    }

    /// Waits until [`CALLS_PER_PHASE`] calls of each kind that started at
    /// `from` or later have ended.
    async fn calls_since(&self, what: &str, from: Instant) {
        eventually(what, phase_bound(), || {
            let calls = self.calls.lock().unwrap();
            [false, true].into_iter().all(|write| {
                let since = calls
                    .iter()
                    .filter(|c| c.write == write && c.started >= from);
                since.count() >= CALLS_PER_PHASE
            })
        })
        .await;
    }

    /// Stops the callers and returns every call they made.
    async fn stop(mut self) -> Vec<Call> {
        self.stop.store(true, SeqCst);
        let callers = async {
            while let Some(ended) = self.callers.join_next().await {
                ended.expect("a caller panicked");
            }
        };
        within("the callers to stop", call_bound() + THINK, callers).await;
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

/// What the calls of one kind see while a fault holds.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Every one is served.
    Served,
    /// Every one fails, with one of these causes.
    Refused(&'static [Cause]),
}

/// Checks the calls of one kind in one phase of a drill against `expect`,
/// and that there were [`CALLS_PER_PHASE`] of them at least; returns what
/// they saw, for the report.
fn check_phase<'a>(
    drill: &str,
    phase: &str,
    calls: impl Iterator<Item = &'a Call>,
    write: bool,
    expect: Expect,
) -> String {
    let kind = if write { "writes" } else { "reads" };
    let calls: Vec<&Call> = calls.filter(|c| c.write == write).collect();
    assert!(
        calls.len() >= CALLS_PER_PHASE,
        "{drill}: {} {kind} {phase}, expected {CALLS_PER_PHASE} at least",
        calls.len()
    );
    let mut causes = BTreeMap::new();
    for call in &calls {
        match (&call.outcome, expect) {
            (Ok(()), Expect::Served) => {}
            (Ok(()), Expect::Refused(_)) => {
                panic!("{drill}: {kind} {phase} must fail, one was served")
            }
            (Err(failure), Expect::Refused(allowed)) => match failure.cause {
                Some(cause) if allowed.contains(&cause) => *causes.entry(cause).or_insert(0) += 1,
                _ => panic!("{drill}: {kind} {phase} must fail with {allowed:?}: {failure:?}"),
            },
            (Err(failure), Expect::Served) => {
                panic!("{drill}: {kind} {phase} must be served, one failed: {failure:?}")
            }
        }
    }
    format!("{kind} {phase}: {} calls, failed {causes:?}", calls.len())
}

/// Fills the pool, starts the load, waits for calls served before the
/// fault, runs `fault`, waits for calls made while it holds, runs `heal`,
/// waits until the pool serves again by itself, waits for calls made after
/// that, stops the load, and checks each phase's calls (`reads` and
/// `writes`: what they see while the fault holds), every caller's wait,
/// every error's cause and every slot.
async fn drill<T>(
    name: &str,
    pool: &Pool<SqliteManager>,
    (reads, writes): (Expect, Expect),
    fault: impl AsyncFnOnce() -> T,
    heal: impl AsyncFnOnce(T),
) {
    assert_all_slots_serve(pool).await;
    let load = Load::start(pool);
    let started = Instant::now();
    load.calls_since(&format!("{name}: calls before the fault"), started)
        .await;
    let fault_begins = Instant::now();
    let held = fault().await;
    let holds = Instant::now();
    load.calls_since(&format!("{name}: calls while the fault holds"), holds)
        .await;
    let heal_begins = Instant::now();
    heal(held).await;
    let healed = Instant::now();
    let recovered = await_recovery(name, pool, healed).await;
    load.calls_since(&format!("{name}: calls after the recovery"), recovered)
        .await;
    let calls = load.stop().await;

    let before = || calls.iter().filter(|c| c.ended < fault_begins);
    let during = || {
        calls
            .iter()
            .filter(|c| c.started >= holds && c.ended <= heal_begins)
    };
    let after = || calls.iter().filter(|c| c.started >= recovered);
    let phases = [
        check_phase(name, "before the fault", before(), false, Expect::Served),
        check_phase(name, "before the fault", before(), true, Expect::Served),
        check_phase(name, "while it held", during(), false, reads),
        check_phase(name, "while it held", during(), true, writes),
        check_phase(name, "after the recovery", after(), false, Expect::Served),
        check_phase(name, "after the recovery", after(), true, Expect::Served),
    ];
    for call in &calls {
        if let Err(failure) = &call.outcome {
            assert!(
                failure.cause.is_some(),
                "{name}: an error names no cause: {}",
                failure.message
            );
        }
    }
    let slowest = calls.iter().map(|c| c.ended - c.started).max().unwrap();
    assert!(
        slowest <= call_bound(),
        "{name}: a caller waited {slowest:?}, more than {:?}",
        call_bound()
    );
    println!(
        "{name}: {} calls, slowest {slowest:?}, served again {:?} after the fault ended\n  {}",
        calls.len(),
        recovered - healed,
        phases.join("\n  ")
    );
    assert_all_slots_serve(pool).await;
}

/// Calls until a write and a read are served, failing the test if that
/// takes more than [`recovery_bound`] from `healed`, when the fault ended;
/// returns when they were.
async fn await_recovery(name: &str, pool: &Pool<SqliteManager>, healed: Instant) -> Instant {
    loop {
        if call(pool, true).await.is_ok() && call(pool, false).await.is_ok() {
            return Instant::now();
        }
        assert!(
            healed.elapsed() < recovery_bound(),
            "{name}: no recovery within {:?}: {}",
            recovery_bound(),
            pool.status()
        );
        tokio::time::sleep(THINK).await;
    }
}

/// Nothing is checked out, and every slot serves a read and a write.
async fn assert_all_slots_serve(pool: &Pool<SqliteManager>) {
    let status = pool.status();
    assert_eq!((status.in_use, status.waiters), (0, 0), "{status}");
    let mut held = Vec::new();
    for _ in 0..MAX_SIZE {
        held.push(
            pool.get()
                .await
                .unwrap_or_else(|e| panic!("a slot was lost: {e}")),
        );
    }
    for conn in &held {
        conn.execute("INSERT INTO log (at) VALUES ('check')", ())
            .await
            .unwrap();
        conn.query_value::<i64, _>("SELECT count(*) FROM log", ())
            .await
            .unwrap();
    }
}

/// Not a drill: the other process the lock drills start (see the module
/// documentation), ignored so that it counts as no test of its own.
/// Without `TIDEWATER_SQLITE_LOCK_HOLDER` it does nothing.
#[test]
#[ignore = "helper process: run by the lock drills"]
fn lock_holder_process() {
    let Ok(path) = std::env::var(HOLDER_ENV) else {
        return;
    };
    let conn = Connection::open(&path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    println!("{HELD}");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line); // a line, or stdin closed
    conn.execute_batch("ROLLBACK").unwrap();
}

/// The lock-holding process; killed if the drill fails before releasing it.
struct LockHolder(Option<Child>);

impl LockHolder {
    /// Starts it and waits until it holds the lock.
    async fn start(path: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "lock_holder_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOLDER_ENV, path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the test binary runs again");
        // Read its output to the end (its test harness writes more after
        // the marker), telling when the marker comes.
        let stdout = child.stdout.take().unwrap();
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut held_tx = Some(held_tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains(HELD) {
                    held_tx.take().map(|tx| tx.send(()));
                }
            }
        });
        let holder = Self(Some(child)); // killed on drop from here on
        let held = within("the other process to take the lock", PROCESS_START, held_rx).await;
        assert!(held.is_ok(), "the other process ended without the lock");
        holder
    }

    /// Tells it to release the lock and waits for it to end.
    async fn release(mut self) {
        let mut child = self.0.take().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"release\n").unwrap();
        drop(stdin);
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "the lock holder failed: {status}");
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A database file with a `log` table in a folder of its own.
fn database() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    create(&path);
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_holds_the_write_lock_of_a_wal_database() {
    let (_dir, path) = database();
    // Writers wait busy_timeout and fail, naming the lock; readers go on as
    // if nothing happened: that is WAL's promise.
    drill(
        "write lock held by another process (WAL)",
        &pool(options(&path)),
        (Expect::Served, Expect::Refused(&[Cause::Locked])),
        async || LockHolder::start(&path).await,
        LockHolder::release,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_locks_everyone_out_of_a_rollback_journal_database() {
    let (_dir, path) = database();
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA journal_mode = DELETE")
        .unwrap();
    let options = SqliteOptions {
        pragmas: vec![("journal_mode".into(), "DELETE".into())],
        ..options(&path)
    };
    // Readers are locked out too. A caller whose connection failed its
    // validation meets the lock while connecting: it waits, and times out
    // naming the lock, or the breaker fails it at once.
    let locked_out = Expect::Refused(&[Cause::Locked, Cause::AcquireTimeout, Cause::BreakerOpen]);
    drill(
        "exclusive lock held by another process (rollback journal)",
        &pool(options),
        (locked_out, locked_out),
        async || LockHolder::start(&path).await,
        LockHolder::release,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_file_is_deleted_under_the_pool_then_restored() {
    let (dir, path) = database();
    let backup = dir.path().join("backup.db");
    Connection::open(&path)
        .unwrap()
        .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
        .unwrap();
    let options = SqliteOptions {
        create: false,
        ..options(&path)
    };
    let pool = pool(options);
    let delete = async || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(sibling(&path, suffix));
        }
    };
    let restore = async |()| {
        // A connection closes itself at its next call or its next look at
        // the file; the pool then drops it, and can open no other.
        let bound = WATCH_INTERVAL + config().maintenance_interval + SLACK;
        eventually("every connection to the deleted file closed", bound, || {
            pool.status().size == 0
        })
        .await;
        let restoring = dir.path().join("restoring.db");
        std::fs::copy(&backup, &restoring).unwrap();
        std::fs::rename(&restoring, &path).unwrap();
    };
    // No call made after the deletion reaches the deleted file: each fails,
    // naming the deletion, the missing file, or the breaker they opened.
    let gone = Expect::Refused(&[Cause::FileDeleted, Cause::FileMissing, Cause::BreakerOpen]);
    drill(
        "database file deleted, then restored",
        &pool,
        (gone, gone),
        delete,
        restore,
    )
    .await;
    let stats = pool.stats();
    assert!(stats.connect_errors_permanent > 0, "{stats:?}");
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Runs `chattr flag` (`+i` or `-i`) on each of `paths` that exists; the
/// error says what the machine lacks.
fn chattr(flag: &str, paths: &[PathBuf]) -> Result<(), String> {
    for path in paths.iter().filter(|p| p.exists()) {
        let output = Command::new("chattr")
            .arg(flag)
            .arg(path)
            .output()
            .map_err(|error| {
                format!("cannot run chattr ({error}): install it (Debian package e2fsprogs)")
            })?;
        if !output.status.success() {
            return Err(format!(
                "chattr {flag} {} failed ({}): {}; it needs root (CAP_LINUX_IMMUTABLE) and a file system with the immutable flag (ext4, xfs, btrfs)",
                path.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// Clears the immutable flags even when the drill fails.
struct Immutable(Vec<PathBuf>);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = chattr("-i", &self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_files_are_made_read_only_then_writable_again() {
    let (_dir, path) = database();
    // Root ignores permission bits, not the immutable flag: set it on the
    // database file and its WAL. Not on `-shm`: SQLite maps that file into
    // memory, and a write to a mapped page of an immutable file kills the
    // process with SIGBUS (seen here: no pool survives that).
    let paths: Vec<PathBuf> = ["", "-wal"].iter().map(|s| sibling(&path, s)).collect();
    let _guard = Immutable(paths.clone());
    chattr("+i", &paths)
        .and_then(|()| chattr("-i", &paths))
        .unwrap_or_else(|error| panic!("the read-only drill cannot run here: {error}"));
    let pool = pool(options(&path));
    let refused = Mutex::new(None);
    let freeze = async || {
        chattr("+i", &paths).unwrap();
        // A connection opened now finds the file read-only: it is refused
        // at connect, naming the cause, rather than failing on its first
        // write.
        let manager = SqliteManager::new(options(&path)).unwrap();
        let error = tidewater::Manager::connect(&manager).await.unwrap_err();
        assert_eq!(error.class(), tidewater::ErrorClass::Permanent);
        *refused.lock().unwrap() = Some(error.to_string());
    };
    let thaw = async |()| chattr("-i", &paths).unwrap();
    // Writes fail, naming the read-only file; reads go on.
    drill(
        "database files made read-only (chattr +i), then writable",
        &pool,
        (
            Expect::Served,
            Expect::Refused(&[Cause::ReadOnly, Cause::IoError]),
        ),
        freeze,
        thaw,
    )
    .await;
    let refused = refused.lock().unwrap().take().unwrap();
    println!("  a new connection while read-only: {refused}");
    assert!(
        refused.contains("is read-only to this process"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_file_fails_callers_at_once_then_recovers_when_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    std::fs::write(&path, vec![0x5a; 16 * 1024]).unwrap();
    // However many callers fail, connection attempts are paced by the
    // backoff: at most `most_connect_attempts_within` the time since the
    // pool was made, which no attempt can precede. The
    // callers go on until they have made more calls than that, so a pool
    // that let each caller make its own attempt would break the bound.
    let config = config();
    let most_attempts = |window| config.most_connect_attempts_within(window);
    let start = Instant::now();
    let pool = pool(options(&path));
    let mut calls = 0;
    loop {
        // Failed at once with the cause (or by the breaker that cause
        // opened), never by waiting out acquire_timeout.
        let failure = call(&pool, calls % 2 == 0).await.unwrap_err();
        assert!(
            matches!(
                failure.cause,
                Some(Cause::NotADatabase | Cause::BreakerOpen)
            ),
            "a corrupt file fails callers at once, naming it: {failure:?}"
        );
        calls += 1;
        // In this order: every attempt counted started within the window.
        let stats = pool.stats();
        let window = start.elapsed();
        assert_eq!(stats.opened, 0, "{stats:?}");
        assert!(
            stats.connect_errors() <= most_attempts(window),
            "{} connection attempts in {window:?}, the backoff allows {}",
            stats.connect_errors(),
            most_attempts(window)
        );
        if calls > most_attempts(window) {
            println!(
                "corrupt file: {calls} calls failed, {} connection attempts in {window:?}",
                stats.connect_errors()
            );
            break;
        }
        assert!(
            window < phase_bound(),
            "{calls} calls in {window:?}, no more than the connection attempts the backoff allows"
        );
    }

    let good = dir.path().join("good.db");
    create(&good);
    std::fs::rename(&good, &path).unwrap();
    let healed = Instant::now();
    await_recovery("corrupt file", &pool, healed).await;
    println!(
        "corrupt file: served again {:?} after the file was replaced",
        healed.elapsed()
    );
    // Every call after the recovery is served.
    for call_number in 0..2 * CALLS_PER_PHASE {
        let write = call_number % 2 == 0;
        if let Err(failure) = call(&pool, write).await {
            panic!("call {call_number} after the recovery failed: {failure:?}");
        }
    }
    assert_all_slots_serve(&pool).await;
}
