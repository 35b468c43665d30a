//! The service under load: one already running at a loopback URL, or one
//! started here (`tidewater serve` on a free loopback port, SQLite in a
//! temporary folder unless a database URL is given), watched (its memory
//! from `/proc/PID/status`, its log's warnings and errors) and stopped
//! with SIGTERM, waiting a bounded time for it to exit.
//!
//! The lab sends traffic only to this machine: a target URL must name a
//! loopback address (`127.0.0.0/8`, `[::1]`) or `localhost`, and so must a
//! spawned service's database.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidewater::credentials::redact;
use tidewater_cli::serve::Ready;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// What to load: a service that runs already, or one to start.
#[derive(Clone, Debug)]
pub enum Target {
    /// The base URL of a running service (`http://127.0.0.1:8080`).
    Url(String),
    /// Start the service for the run and stop it after.
    Spawn(SpawnOptions),
}

/// How to start the service.
#[derive(Clone, Debug)]
pub struct SpawnOptions {
    /// The service binary, run as `EXE serve …`: by default this process's
    /// own executable (`tidewater-lab`, whose `serve` is the service), or
    /// a `tidewater` binary.
    pub exe: PathBuf,
    /// The database; `None`: SQLite in a temporary folder, removed after.
    pub database_url: Option<String>,
    /// Configuration keys, each passed as `--set KEY=VALUE`.
    pub settings: Vec<String>,
    /// Longest to wait for the service to say it serves.
    pub start_timeout: Duration,
    /// Longest to wait for it to exit after SIGTERM (then SIGKILL).
    pub stop_timeout: Duration,
}

impl Default for SpawnOptions {
    /// This executable, SQLite, 60 s to start, 45 s to stop (the service
    /// drains for at most `pool.drain_timeout`, 30 s by default).
    fn default() -> Self {
        Self {
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("tidewater")),
            database_url: None,
            settings: Vec::new(),
            start_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(45),
        }
    }
}

/// Why the service could not be used. The underlying error, where there
/// is one, is the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The target is not a URL.
    #[error("the target {url:?} is not a URL")]
    NotAUrl {
        /// The target as given.
        url: String,
        /// Why it is not one.
        #[source]
        source: url::ParseError,
    },
    /// The target or the spawned service's database is not on this
    /// machine, or the target is not an `http://` URL.
    #[error("{0}")]
    Refused(String),
    /// The spawned service's temporary folder could not be made.
    #[error("the service did not start: cannot create a temporary folder")]
    TempDir(#[source] std::io::Error),
    /// The service's binary could not be run.
    #[error("the service did not start: cannot run {}", .exe.display())]
    Run {
        /// The binary.
        exe: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The spawned service exited before it served.
    #[error("the service did not start: it exited ({status}) before serving {started}")]
    Exited {
        /// How it exited.
        status: std::process::ExitStatus,
        /// How it was started, and what it logged.
        started: Started,
    },
    /// The spawned service refused its configuration (a `--set` or the
    /// database URL): it exited with code 2.
    #[error("the service did not start: it refused its configuration (exit code 2) {started}")]
    Config {
        /// How it was started, and what it logged.
        started: Started,
    },
    /// The spawned service's ready file could not be read (or the wait
    /// for its process failed).
    #[error("the service did not start: its ready file could not be read {started}")]
    Unreadable {
        /// How it was started, and what it logged.
        started: Started,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The spawned service was not serving within its start timeout.
    #[error(
        "the service did not start: it was not serving within {} {started}",
        humantime::format_duration(*.after)
    )]
    TimedOut {
        /// The start timeout.
        after: Duration,
        /// How it was started, and what it logged.
        started: Started,
    },
}

impl ServiceError {
    /// The process exit code for it: 2 when the options are at fault (a
    /// target off this machine, a configuration the service refuses), 3
    /// when the service could not be started.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotAUrl { .. } | Self::Refused(_) | Self::Config { .. } => 2,
            Self::TempDir(_)
            | Self::Run { .. }
            | Self::Exited { .. }
            | Self::Unreadable { .. }
            | Self::TimedOut { .. } => 3,
        }
    }
}

/// How a spawned service that did not start was started, and its last
/// log lines; shown as `(EXE serve --database-url URL); its last log
/// lines:` and the lines, after the reason it did not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// `EXE serve --database-url URL`, the password redacted.
    pub command: String,
    /// Its last lines on standard error.
    pub log: Vec<String>,
}

impl std::fmt::Display for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "({}); its last log lines:\n{}",
            self.command,
            self.log.join("\n")
        )
    }
}

/// The resident memory of a process, from `/proc/PID/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Resident now (`VmRSS`), bytes.
    pub rss_bytes: u64,
    /// The most resident since the process started (`VmHWM`), bytes.
    pub peak_rss_bytes: u64,
}

/// How the spawned service stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StopReport {
    /// Its exit code; `None` when a signal ended it.
    pub exit_code: Option<i32>,
    /// Seconds from SIGTERM to its exit.
    pub seconds: f64,
    /// It did not exit within the bound and was killed (SIGKILL).
    pub killed: bool,
}

impl StopReport {
    /// Exit code 0 within the bound.
    pub fn clean(&self) -> bool {
        !self.killed && self.exit_code == Some(0)
    }
}

/// What the spawned service logged: warnings and errors counted, the last
/// lines kept for error messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSummary {
    /// Lines at level WARN.
    pub warnings: u64,
    /// Lines at level ERROR.
    pub errors: u64,
    /// The last few WARN or ERROR lines, as written.
    pub last_problems: Vec<String>,
}

/// The last lines of standard error, and the problem count.
#[derive(Default)]
struct LogTail {
    summary: LogSummary,
    last: VecDeque<String>,
}

const TAIL_LINES: usize = 20;
const PROBLEM_LINES: usize = 5;

impl LogTail {
    fn push(&mut self, line: String) {
        let level = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|value| value["level"].as_str().map(str::to_owned));
        match level.as_deref() {
            Some("WARN") => self.summary.warnings += 1,
            Some("ERROR") => self.summary.errors += 1,
            _ => {}
        }
        if matches!(level.as_deref(), Some("WARN" | "ERROR")) {
            if self.summary.last_problems.len() == PROBLEM_LINES {
                self.summary.last_problems.remove(0);
            }
            self.summary.last_problems.push(line.clone());
        }
        if self.last.len() == TAIL_LINES {
            self.last.pop_front();
        }
        self.last.push_back(line);
    }
}

/// A spawned service's process.
struct Spawned {
    child: Child,
    pid: u32,
    log: Arc<Mutex<LogTail>>,
    stop_timeout: Duration,
    /// The SQLite database's folder, removed when the service is dropped.
    _dir: tempfile::TempDir,
}

/// The service under load.
pub struct Service {
    base: String,
    backend: Option<String>,
    spawned: Option<Spawned>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("base", &self.base)
            .field("backend", &self.backend)
            .field("pid", &self.pid())
            .finish()
    }
}

impl Service {
    /// Connects to or starts `target`. A URL is checked to be on this
    /// machine; a spawned service is started and waited for (at most its
    /// `start_timeout`) until it prints the address it serves on.
    ///
    /// # Errors
    /// A target or database off this machine, or a service that did not
    /// start in time (its last log lines are in the message).
    pub async fn start(target: &Target) -> Result<Self, ServiceError> {
        match target {
            Target::Url(url) => {
                let url = loopback_url(url)?;
                Ok(Self {
                    base: url.as_str().trim_end_matches('/').to_owned(),
                    backend: None,
                    spawned: None,
                })
            }
            Target::Spawn(options) => spawn(options).await,
        }
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The database kind the spawned service named (`sqlite`,
    /// `postgres`, `mysql`); `None` for a URL target.
    pub fn backend(&self) -> Option<&str> {
        self.backend.as_deref()
    }

    /// The spawned service's process id.
    pub fn pid(&self) -> Option<u32> {
        self.spawned.as_ref().map(|spawned| spawned.pid)
    }

    /// The spawned service's memory now; `None` for a URL target (or when
    /// `/proc` cannot be read).
    pub fn memory(&self) -> Option<Memory> {
        memory_of(self.pid()?)
    }

    /// What the spawned service logged so far; `None` for a URL target.
    pub fn log(&self) -> Option<LogSummary> {
        let spawned = self.spawned.as_ref()?;
        let tail = spawned.log.lock().unwrap_or_else(|e| e.into_inner());
        Some(tail.summary.clone())
    }

    /// Kills a spawned service at once (SIGKILL), as a crash would; a
    /// later [`stop`](Self::stop) only reaps it. Nothing for a URL target.
    pub fn kill(&mut self) {
        if let Some(spawned) = &mut self.spawned {
            let _ = spawned.child.start_kill();
        }
    }

    /// Stops a spawned service: SIGTERM, then waits at most its
    /// `stop_timeout` for it to exit, then SIGKILL. `None` for a URL
    /// target, which is left running.
    pub async fn stop(mut self) -> Option<StopReport> {
        let mut spawned = self.spawned.take()?;
        let asked = Instant::now();
        if let Ok(pid) = i32::try_from(spawned.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let exited = tokio::time::timeout(spawned.stop_timeout, spawned.child.wait()).await;
        let (status, killed) = match exited {
            Ok(status) => (status.ok(), false),
            Err(_) => {
                let _ = spawned.child.start_kill();
                let status =
                    tokio::time::timeout(Duration::from_secs(10), spawned.child.wait()).await;
                (status.ok().and_then(Result::ok), true)
            }
        };
        Some(StopReport {
            exit_code: status.and_then(|status| status.code()),
            seconds: asked.elapsed().as_secs_f64(),
            killed,
        })
    }
}

/// Starts the service `options` describe and waits until it serves.
async fn spawn(options: &SpawnOptions) -> Result<Service, ServiceError> {
    if let Some(url) = &options.database_url {
        local_database(url)?;
    }
    let dir = tempfile::Builder::new()
        .prefix("tidewater-load-")
        .tempdir()
        .map_err(ServiceError::TempDir)?;
    let database_url = options
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bank.db").display()));
    let ready_file = dir.path().join("ready.json");
    let mut child = serve_command(options, dir.path(), &database_url, &ready_file)
        .spawn()
        .map_err(|source| ServiceError::Run {
            exe: options.exe.clone(),
            source,
        })?;
    let pid = child.id().unwrap_or_default();
    let log = Arc::new(Mutex::new(LogTail::default()));
    let reader = child
        .stderr
        .take()
        .map(|stderr| read_log(stderr, log.clone()));
    let ready = match wait_until_ready(&mut child, &ready_file, options.start_timeout).await {
        Ok(ready) => ready,
        Err(not_ready) => {
            let failed = Failed {
                options,
                database_url: &database_url,
                log: &log,
            };
            return Err(failed.error(not_ready, &mut child, reader).await);
        }
    };
    Ok(Service {
        base: ready.url,
        backend: Some(ready.backend),
        spawned: Some(Spawned {
            child,
            pid,
            log,
            stop_timeout: options.stop_timeout,
            _dir: dir,
        }),
    })
}

/// `EXE serve` on a free loopback port of `database_url`, writing
/// `ready_file` once it serves, its log (JSON) on a pipe; run in `dir`, so
/// that no `./tidewater.toml` is read.
fn serve_command(
    options: &SpawnOptions,
    dir: &Path,
    database_url: &str,
    ready_file: &Path,
) -> Command {
    let mut command = Command::new(&options.exe);
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--database-url"])
        .arg(database_url)
        .args(["--log-format", "json", "--ready-file"])
        .arg(ready_file);
    for setting in &options.settings {
        command.arg("--set").arg(setting);
    }
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Reads the service's standard error into `log`, line by line, until
/// the pipe ends.
fn read_log(stderr: tokio::process::ChildStderr, log: Arc<Mutex<LogTail>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    })
}

/// A spawned service that did not start: how it was started, and its log.
struct Failed<'a> {
    options: &'a SpawnOptions,
    database_url: &'a str,
    log: &'a Mutex<LogTail>,
}

impl Failed<'_> {
    /// The error for `not_ready`; stops `child` if it still runs, or waits
    /// (briefly) for `reader` to take its last log lines if it exited.
    async fn error(
        &self,
        not_ready: NotReady,
        child: &mut Child,
        reader: Option<JoinHandle<()>>,
    ) -> ServiceError {
        match not_ready {
            NotReady::Exited(status) => {
                // The log reader takes the last lines, up to the pipe's end.
                if let Some(reader) = reader {
                    let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
                }
                let started = self.started();
                // `serve` exits 2 for a configuration it cannot use.
                match status.code() {
                    Some(2) => ServiceError::Config { started },
                    _ => ServiceError::Exited { status, started },
                }
            }
            NotReady::Unreadable(source) => {
                let _ = child.start_kill();
                ServiceError::Unreadable {
                    started: self.started(),
                    source,
                }
            }
            NotReady::TimedOut => {
                let _ = child.start_kill();
                ServiceError::TimedOut {
                    after: self.options.start_timeout,
                    started: self.started(),
                }
            }
        }
    }

    /// The command, password redacted, and the last log lines.
    fn started(&self) -> Started {
        let tail = self.log.lock().unwrap_or_else(|e| e.into_inner());
        Started {
            command: format!(
                "{} serve --database-url {}",
                self.options.exe.display(),
                redact(self.database_url)
            ),
            log: tail.last.iter().cloned().collect(),
        }
    }
}

/// Why a spawned service never said it serves.
enum NotReady {
    /// It exited first.
    Exited(std::process::ExitStatus),
    /// Its ready file is not one (or the wait for the process failed).
    Unreadable(std::io::Error),
    /// Neither within the start timeout.
    TimedOut,
}

/// Waits until the service started with `--ready-file ready_file` has
/// written it (polled every 20 ms), it exits, or `timeout` passes.
async fn wait_until_ready(
    child: &mut Child,
    ready_file: &Path,
    timeout: Duration,
) -> Result<Ready, NotReady> {
    let waiting = async {
        loop {
            tokio::select! {
                status = child.wait() => {
                    return Err(status.map_or_else(NotReady::Unreadable, NotReady::Exited));
                }
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    if let Some(ready) = Ready::read(ready_file).map_err(NotReady::Unreadable)? {
                        return Ok(ready);
                    }
                }
            }
        }
    };
    tokio::time::timeout(timeout, waiting)
        .await
        .unwrap_or(Err(NotReady::TimedOut))
}

/// The memory of process `pid`, from `/proc/PID/status`; `None` when it
/// cannot be read.
pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_proc_status(&status)
}

/// Reads `VmRSS` and `VmHWM` (in kB) from the text of `/proc/PID/status`.
///
/// ```
/// use tidewater_lab::service::{Memory, parse_proc_status};
/// let status = "Name:\ttidewater\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
/// assert_eq!(parse_proc_status(status), Some(Memory { rss_bytes: 10 << 20, peak_rss_bytes: 20 << 20 }));
/// ```
pub fn parse_proc_status(status: &str) -> Option<Memory> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(':')?;
            let kb: u64 = value.trim().strip_suffix("kB")?.trim().parse().ok()?;
            Some(kb * 1024)
        })
    };
    let rss_bytes = field("VmRSS")?;
    Some(Memory {
        rss_bytes,
        peak_rss_bytes: field("VmHWM").unwrap_or(rss_bytes).max(rss_bytes),
    })
}

/// Whether `host` (a name, an IPv4 address or a bracketed IPv6 one) is
/// this machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// `url`, checked to be an `http` URL on this machine.
///
/// # Errors
/// Not a URL ([`ServiceError::NotAUrl`]), another scheme, or a host off
/// the loopback ([`ServiceError::Refused`]), each with a message that says
/// what is allowed.
pub fn loopback_url(url: &str) -> Result<reqwest::Url, ServiceError> {
    let parsed = reqwest::Url::parse(url).map_err(|source| ServiceError::NotAUrl {
        url: url.to_owned(),
        source,
    })?;
    if parsed.scheme() != "http" {
        return Err(ServiceError::Refused(format!(
            "the target {url:?} must be an http:// URL (the service on this machine speaks plain HTTP)"
        )));
    }
    match parsed.host_str() {
        Some(host) if is_loopback_host(host) => Ok(parsed),
        _ => Err(ServiceError::Refused(format!(
            "the target {url:?} is not on this machine: the lab sends traffic only to loopback addresses (127.0.0.0/8, [::1] or localhost)"
        ))),
    }
}

/// Checks that a spawned service's database is on this machine: SQLite,
/// or a PostgreSQL / MySQL URL whose hosts are all loopback (or a Unix
/// socket).
///
/// # Errors
/// A host off the loopback ([`ServiceError::Refused`]), named in the
/// message.
pub fn local_database(url: &str) -> Result<(), ServiceError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        // A file path or `sqlite::memory:`.
        return Ok(());
    };
    if scheme.eq_ignore_ascii_case("sqlite") {
        return Ok(());
    }
    let (authority, query) = match rest.split_once('?') {
        Some((before, query)) => (before, query),
        None => (rest, ""),
    };
    let authority = authority.split('/').next().unwrap_or_default();
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    let mut named: Vec<&str> = hosts
        .split(',')
        .map(|host| {
            if host.starts_with('[') {
                host.split_inclusive(']').next().unwrap_or(host)
            } else {
                host.split(':').next().unwrap_or(host)
            }
        })
        .collect();
    for pair in query.split('&') {
        if let Some((key, value)) = pair.split_once('=') {
            if matches!(key, "host" | "hostaddr") {
                named.extend(value.split(','));
            }
        }
    }
    for host in named {
        let host = host.trim();
        if host.is_empty() || host.starts_with('/') || host.starts_with("%2F") {
            continue;
        }
        if !is_loopback_host(host) {
            return Err(ServiceError::Refused(format!(
                "the database host {host:?} is not on this machine: the lab sends traffic only to loopback addresses (127.0.0.0/8, [::1] or localhost)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3/",
            "http://localhost:1",
            "http://[::1]:8080",
            "http://LOCALHOST",
        ] {
            assert!(loopback_url(ok).is_ok(), "{ok}");
        }
        for (refused, says) in [
            ("http://10.0.0.1:8080", "not on this machine"),
            ("http://192.168.1.2", "not on this machine"),
            ("http://example.com", "not on this machine"),
            ("http://0.0.0.0:8080", "not on this machine"),
            ("ftp://127.0.0.1", "http://"),
            ("https://127.0.0.1", "http://"),
            ("127.0.0.1:8080", "not a URL"),
        ] {
            let error = loopback_url(refused).unwrap_err().to_string();
            assert!(error.contains(says), "{refused}: {error}");
        }
    }

    #[test]
    fn only_local_databases() {
        for ok in [
            "sqlite:///tmp/x.db",
            "bank.db",
            "sqlite::memory:",
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://u:p@localhost,[::1]:5433/db?sslmode=disable",
            "postgres:///db?host=/var/run/postgresql",
            "mysql://root@127.0.0.1:3306/test?prefer_socket=false",
        ] {
            assert!(local_database(ok).is_ok(), "{ok}");
        }
        for refused in [
            "postgres://postgres@db.internal/test",
            "postgres://u@127.0.0.1,10.1.1.1:5432/db",
            "postgres://u@127.0.0.1/db?host=10.0.0.5",
            "mysql://root:secret@192.168.0.9:3306/test",
        ] {
            let error = local_database(refused).unwrap_err().to_string();
            assert!(error.contains("not on this machine"), "{refused}: {error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@127.0.0.1/bank"),
            "postgres://app:***@127.0.0.1/bank"
        );
        assert_eq!(redact("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
    }

    #[test]
    fn the_log_counts_warnings_and_errors() {
        let mut tail = LogTail::default();
        tail.push(r#"{"level":"INFO","fields":{"message":"hi"}}"#.into());
        tail.push(r#"{"level":"WARN","fields":{"message":"slow"}}"#.into());
        tail.push(r#"{"level":"ERROR","fields":{"message":"bad"}}"#.into());
        tail.push("not json".into());
        assert_eq!((tail.summary.warnings, tail.summary.errors), (1, 1));
        assert_eq!(tail.summary.last_problems.len(), 2);
        assert_eq!(tail.last.len(), 4);
        for n in 0..50 {
            tail.push(format!(r#"{{"level":"WARN","n":{n}}}"#));
        }
        assert_eq!(tail.last.len(), TAIL_LINES);
        assert_eq!(tail.summary.last_problems.len(), PROBLEM_LINES);
        assert_eq!(tail.summary.warnings, 51);
    }

    #[test]
    fn proc_status_without_rss_is_unknown() {
        assert_eq!(parse_proc_status("Name:\tkthreadd\n"), None);
    }
}
