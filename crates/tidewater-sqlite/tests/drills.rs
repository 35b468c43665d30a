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
//! Each checks that every caller's wait ended by its deadline, that every
//! error named its cause, that the pool recovered by itself once the fault
//! ended, and that no capacity was lost. The numbers are printed
//! (`--nocapture`); only the generous bounds are asserted, never a speed.
//!
//! "Another process" is this test binary run again: the test
//! `lock_holder_process` does nothing unless `TIDEWATER_SQLITE_LOCK_HOLDER`
//! names a database, in which case it takes the lock, says so on stdout,
//! and holds it until its stdin gets a line or closes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use rusqlite::Connection;
use tidewater::{Pool, PoolConfig};
use tidewater_sqlite::{SqliteManager, SqliteOptions};
use tokio::task::JoinSet;
use tokio::time::Instant;

const CALLERS: usize = 8;
const MAX_SIZE: u32 = 4;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
const BUSY_TIMEOUT: Duration = Duration::from_millis(300);
/// Acquire, a write waiting out busy_timeout, a reset, and slack for a
/// loaded 2-core machine.
const CALLER_DEADLINE: Duration = Duration::from_secs(4);
/// Recovery once the fault ends: the connect backoff's ceiling (2 s) and
/// a slow machine.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);
/// How long each fault lasts under load.
const FAULT: Duration = Duration::from_millis(1500);

const HOLDER_ENV: &str = "TIDEWATER_SQLITE_LOCK_HOLDER";
const HELD: &str = "tidewater-sqlite: lock held";

fn options(path: &Path) -> SqliteOptions {
    SqliteOptions {
        busy_timeout: BUSY_TIMEOUT,
        ..SqliteOptions::file(path)
    }
}

fn pool(options: SqliteOptions) -> Pool<SqliteManager> {
    let config = PoolConfig {
        max_size: MAX_SIZE,
        acquire_timeout: ACQUIRE_TIMEOUT,
        connect_timeout: Duration::from_secs(2),
        validation_timeout: Duration::from_secs(1),
        maintenance_interval: Duration::from_millis(100),
        ..PoolConfig::default()
    };
    SqliteManager::new(options)
        .unwrap()
        .into_pool(config)
        .unwrap()
}

/// A database with a `log` table.
fn create(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE log (id INTEGER PRIMARY KEY, at TEXT)",
    )
    .unwrap();
}

/// One call of the load: what it was, when it started, how long it took,
/// how it ended.
#[derive(Debug)]
struct Call {
    write: bool,
    started: Instant,
    took: Duration,
    error: Option<String>,
}

async fn call(pool: &Pool<SqliteManager>, write: bool) -> Result<(), String> {
    let conn = pool.get().await.map_err(|e| e.to_string())?;
    let done = if write {
        conn.execute("INSERT INTO log (at) VALUES (datetime('now'))", ())
            .await
            .map(drop)
    } else {
        conn.query_value::<i64, _>("SELECT count(*) FROM log", ())
            .await
            .map(drop)
    };
    done.map_err(|e| e.to_string())
}

/// What an error says its cause is; `None` when it names none.
fn cause(error: &str) -> Option<&'static str> {
    const CAUSES: [(&str, &str); 9] = [
        ("(SQLITE_BUSY", "locked by another process (SQLITE_BUSY)"),
        (
            "was deleted since this connection opened it",
            "file deleted under the connection",
        ),
        (
            "does not exist and create is off",
            "file missing, create off (SQLITE_CANTOPEN)",
        ),
        (
            "read_only is off (SQLITE_READONLY)",
            "file read-only at connect",
        ),
        ("(SQLITE_IOERR", "I/O error (SQLITE_IOERR)"),
        (
            "(SQLITE_READONLY",
            "write to a read-only file (SQLITE_READONLY)",
        ),
        (
            "is not an SQLite database",
            "not a database (SQLITE_NOTADB)",
        ),
        ("database unavailable", "breaker open"),
        ("timed out after", "acquire timeout"),
    ];
    CAUSES
        .iter()
        .find(|(text, _)| error.contains(text))
        .map(|(_, cause)| *cause)
}

/// What a drill saw: every call of the load, and when the fault surely
/// held (from the end of `fault` to the start of `heal`).
struct Seen {
    calls: Vec<Call>,
    from: Instant,
    to: Instant,
}

impl Seen {
    /// Calls of one kind made entirely while the fault held (from `get()`
    /// to their end), and how many of them failed.
    fn during(&self, write: bool) -> (usize, usize) {
        let inside: Vec<&Call> = self
            .calls
            .iter()
            .filter(|c| c.write == write && c.started >= self.from && c.started + c.took < self.to)
            .collect();
        let failed = inside.iter().filter(|c| c.error.is_some()).count();
        (inside.len(), failed)
    }
}

/// Fills the pool, starts a steady load of callers (half reading, half
/// writing), runs `fault`, lets it last, runs `heal`, measures the recovery,
/// stops the load and checks every call and every slot.
async fn drill<T, F, H>(name: &str, pool: &Pool<SqliteManager>, fault: F, heal: H) -> Seen
where
    F: AsyncFnOnce() -> T,
    H: AsyncFnOnce(T),
{
    assert_all_slots_serve(pool).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = JoinSet::new();
    for caller in 0..CALLERS {
        let (pool, stop) = (pool.clone(), stop.clone());
        callers.spawn(async move {
            let write = caller % 2 == 0;
            let mut calls = Vec::new();
            while !stop.load(SeqCst) {
                let started = Instant::now();
                let error = call(&pool, write).await.err();
                calls.push(Call {
                    write,
                    started,
                    took: started.elapsed(),
                    error,
                });
                tokio::time::sleep(Duration::from_millis(20)).await; // think time
            }
            calls
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // steady state
    let held = fault().await;
    let from = Instant::now();
    tokio::time::sleep(FAULT).await;
    let to = Instant::now();
    heal(held).await;
    let healed = Instant::now();
    let recovered = loop {
        if call(pool, true).await.is_ok() && call(pool, false).await.is_ok() {
            break healed.elapsed();
        }
        assert!(
            healed.elapsed() < RECOVERY_BOUND,
            "{name}: no recovery within {RECOVERY_BOUND:?}: {}",
            pool.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, SeqCst);
    let calls: Vec<Call> = callers.join_all().await.into_iter().flatten().collect();
    let slowest = calls.iter().map(|c| c.took).max().unwrap();
    assert!(
        slowest <= CALLER_DEADLINE,
        "{name}: a caller waited {slowest:?}"
    );
    let mut causes = BTreeMap::new();
    for error in calls.iter().filter_map(|c| c.error.as_deref()) {
        let named =
            cause(error).unwrap_or_else(|| panic!("{name}: an error names no cause: {error}"));
        *causes.entry(named).or_insert(0) += 1;
    }
    println!(
        "{name}: {} calls, {} failed {causes:?}, slowest {slowest:?}, recovered {recovered:?} after the fault ended",
        calls.len(),
        causes.values().sum::<usize>()
    );
    assert_all_slots_serve(pool).await;
    Seen { calls, from, to }
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
/// documentation). Without `TIDEWATER_SQLITE_LOCK_HOLDER` it does nothing.
#[test]
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
        let held = tokio::time::timeout(Duration::from_secs(10), held_rx).await;
        let holder = Self(Some(child)); // killed on drop from here on
        assert!(matches!(held, Ok(Ok(()))), "the other process took no lock");
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
    let pool = pool(options(&path));
    let seen = drill(
        "write lock held by another process (WAL)",
        &pool,
        async || LockHolder::start(&path).await,
        LockHolder::release,
    )
    .await;
    // Writers waited busy_timeout and failed, naming the lock; readers
    // went on as if nothing happened: that is WAL's promise.
    let (writes, failed_writes) = seen.during(true);
    let (reads, failed_reads) = seen.during(false);
    println!(
        "  while locked: {failed_writes}/{writes} writes and {failed_reads}/{reads} reads failed"
    );
    assert!(
        writes > 0 && failed_writes == writes,
        "writes failed while locked"
    );
    assert!(reads > 0 && failed_reads == 0, "reads went on");
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
    let seen = drill(
        "exclusive lock held by another process (rollback journal)",
        &pool(options),
        async || LockHolder::start(&path).await,
        LockHolder::release,
    )
    .await;
    let (reads, failed_reads) = seen.during(false);
    println!("  while locked: {failed_reads}/{reads} reads failed");
    assert!(
        reads > 0 && failed_reads == reads,
        "readers were locked out too"
    );
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
        let open = pool.status().size;
        assert_eq!(open, 0, "every connection to the deleted file was closed");
        let restoring = dir.path().join("restoring.db");
        std::fs::copy(&backup, &restoring).unwrap();
        std::fs::rename(&restoring, &path).unwrap();
    };
    let seen = drill(
        "database file deleted, then restored",
        &pool,
        delete,
        restore,
    )
    .await;
    // No call made after the deletion reached the deleted file.
    let (reads, failed_reads) = seen.during(false);
    let (writes, failed_writes) = seen.during(true);
    println!(
        "  while deleted: {failed_reads}/{reads} reads and {failed_writes}/{writes} writes failed"
    );
    assert_eq!((failed_reads, failed_writes), (reads, writes));
    let stats = pool.stats();
    assert!(stats.connect_errors_permanent > 0, "{stats:?}");
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Sets or clears the immutable flag of each path; `false` when the file
/// system or the process cannot.
fn immutable(paths: &[PathBuf], on: bool) -> bool {
    let flag = if on { "+i" } else { "-i" };
    paths.iter().filter(|p| p.exists()).all(|path| {
        Command::new("chattr")
            .arg(flag)
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

/// Clears the immutable flags even when the drill fails.
struct Immutable(Vec<PathBuf>);

impl Drop for Immutable {
    fn drop(&mut self) {
        immutable(&self.0, false);
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
    if !immutable(&paths, true) || !immutable(&paths, false) {
        immutable(&paths, false);
        println!(
            "read-only drill skipped: chattr +i is not available here (a file system without the flag, or no CAP_LINUX_IMMUTABLE)"
        );
        return;
    }
    let pool = pool(options(&path));
    let refused = std::sync::Mutex::new(None);
    let freeze = async || {
        assert!(immutable(&paths, true));
        // A connection opened now finds the file read-only: it is refused
        // at connect, naming the cause, rather than failing on its first
        // write.
        let manager = SqliteManager::new(options(&path)).unwrap();
        let error = tidewater::Manager::connect(&manager).await.unwrap_err();
        assert_eq!(error.class(), tidewater::ErrorClass::Permanent);
        *refused.lock().unwrap() = Some(error.to_string());
    };
    let thaw = async |()| assert!(immutable(&paths, false));
    let seen = drill(
        "database files made read-only (chattr +i), then writable",
        &pool,
        freeze,
        thaw,
    )
    .await;
    let (writes, failed_writes) = seen.during(true);
    let (reads, failed_reads) = seen.during(false);
    let refused = refused.lock().unwrap().take().unwrap();
    println!(
        "  while read-only: {failed_writes}/{writes} writes and {failed_reads}/{reads} reads failed; a new connection: {refused}"
    );
    assert!(
        refused.contains("is read-only to this process"),
        "{refused}"
    );
    assert!(
        writes > 0 && failed_writes == writes,
        "writes failed while read-only"
    );
    assert_eq!(failed_reads, 0, "reads went on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_file_fails_callers_at_once_then_recovers_when_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    std::fs::write(&path, vec![0x5a; 16 * 1024]).unwrap();
    let pool = pool(options(&path));
    let start = Instant::now();
    let mut attempts = 0;
    while start.elapsed() < FAULT {
        let called = Instant::now();
        let error = call(&pool, false).await.unwrap_err();
        assert!(
            called.elapsed() < ACQUIRE_TIMEOUT,
            "failed fast, not at the timeout: {error}"
        );
        assert!(cause(&error).is_some(), "{error}");
        attempts += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connects = pool.stats().connect_errors_permanent;
    println!(
        "corrupt file: {attempts} calls failed at once, {connects} connection attempts in {FAULT:?}"
    );
    assert!(
        connects < attempts,
        "connection attempts are paced by the backoff, not by callers"
    );

    let good = dir.path().join("good.db");
    create(&good);
    std::fs::rename(&good, &path).unwrap();
    let healed = Instant::now();
    while call(&pool, true).await.is_err() {
        assert!(
            healed.elapsed() < RECOVERY_BOUND,
            "no recovery: {}",
            pool.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "corrupt file: recovered {:?} after the file was replaced",
        healed.elapsed()
    );
    assert_all_slots_serve(&pool).await;
}
