//! A private PostgreSQL server for tests that break it: restart, crash,
//! freeze, empty of connections, starve of connection slots.
//!
//! Never point these at a shared server: each [`PgCluster`] is its own
//! `initdb` in a temporary folder, on a free port of 127.0.0.1.

use std::fmt;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::command::{RunAs, free_port, run, tail};
use crate::lock;
use crate::procfs;
use crate::wait::{DEADLINE, off_thread, poll};
use crate::watchdog::Watchdog;

/// How to shut a server down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// `pg_ctl stop -m fast`: roll back open transactions, close every
    /// connection (clients see SQLSTATE 57P01), checkpoint, exit.
    Fast,
    /// `pg_ctl stop -m immediate`: every process quits at once, as in a
    /// power cut; the next start runs crash recovery.
    Immediate,
}

impl Shutdown {
    fn mode(self) -> &'static str {
        match self {
            Shutdown::Fast => "fast",
            Shutdown::Immediate => "immediate",
        }
    }
}

/// A private PostgreSQL server that a test may break on purpose.
///
/// [`new`](PgCluster::new) runs `initdb` in a fresh folder under `/tmp` and
/// starts the server on a free port of 127.0.0.1. The superuser
/// [`SUPERUSER`](PgCluster::SUPERUSER) logs in over TCP with the password
/// [`PASSWORD`](PgCluster::PASSWORD) (SCRAM-SHA-256, so a wrong password is
/// refused with SQLSTATE 28P01); [`execute`](PgCluster::execute) runs SQL
/// over the server's Unix socket, which trusts the local superuser.
///
/// When the tests run as root, the server runs as the `postgres` system user
/// (PostgreSQL refuses root). Dropping the cluster stops the server
/// (immediate shutdown, resuming it first if paused) and removes its folder;
/// if the test process dies without dropping it, a watchdog process does the
/// same within about a second. Every wait is bounded (30 s) and fails with a
/// message that quotes the server's log.
///
/// Its methods take `&self`, so one cluster can be shared (in a `static`,
/// say) by tests whose faults do not disturb each other. Its async methods
/// do their blocking work on a thread of their own and need no particular
/// runtime.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use tidewater_testkit::{PgCluster, Shutdown};
///
/// let cluster = PgCluster::new().await?;
/// let url = cluster.url(); // postgres://postgres:postgres@127.0.0.1:PORT/postgres
/// assert_eq!(cluster.execute("SELECT 1 + 1").await?, "2");
/// cluster.restart(Shutdown::Immediate).await?; // every connection drops
/// # Ok(())
/// # }
/// ```
pub struct PgCluster {
    inner: Arc<Inner>,
}

struct Inner {
    bin: PathBuf,
    run_as: RunAs,
    /// Holds the data folder, the socket, the log; removed when dropped.
    folder: TempDir,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    state: Mutex<State>,
    /// Dropped after `folder`, so it outlives the cleanup it guards.
    _watchdog: Watchdog,
}

#[derive(Debug, Default)]
struct State {
    /// The running postmaster.
    postmaster: Option<u32>,
    /// Whether the postmaster and its children are stopped by SIGSTOP.
    paused: bool,
    /// Children of a killed postmaster that may still be exiting.
    orphans: Vec<u32>,
}

/// Stops a server left behind by a test process that died (`$1` the data
/// folder, `$2` the folder to remove). The postmaster is recognised by its
/// working directory, the data folder, so a reused pid is never signalled.
const CLEANUP: &str = r#"
data=$1
folder=$2
pm=
[ -r "$data/postmaster.pid" ] && read -r pm < "$data/postmaster.pid"
if [ -n "$pm" ] && [ "$(readlink "/proc/$pm/cwd")" = "$data" ]; then
  kill -CONT "$pm"
  for s in /proc/[0-9]*/stat; do
    read -r pid comm state ppid rest < "$s" && [ "$ppid" = "$pm" ] && kill -CONT "$pid"
  done
  kill -QUIT "$pm"
  n=0
  while [ "$(readlink "/proc/$pm/cwd")" = "$data" ] && [ $n -lt 300 ]; do
    sleep 0.1
    n=$((n + 1))
  done
  kill -KILL "$pm"
fi 2>/dev/null
rm -rf "$folder"
"#;

/// How often `new` picks another port when the one it chose was taken
/// before the server could bind it.
const PORT_TRIES: usize = 5;

impl PgCluster {
    /// The superuser's name.
    ///
    /// ```
    /// assert_eq!(tidewater_testkit::PgCluster::SUPERUSER, "postgres");
    /// ```
    pub const SUPERUSER: &'static str = "postgres";

    /// The superuser's password.
    ///
    /// ```
    /// assert_eq!(tidewater_testkit::PgCluster::PASSWORD, "postgres");
    /// ```
    pub const PASSWORD: &'static str = "postgres";

    /// Creates a cluster (`initdb`) in a new folder under `/tmp` and starts
    /// it on a free port of 127.0.0.1. Takes about a second.
    ///
    /// The PostgreSQL programs are taken from `$TIDEWATER_PG_BIN` if set,
    /// else from the newest `/usr/lib/postgresql/*/bin`.
    ///
    /// # Errors
    /// When PostgreSQL is not installed, the tests run as root and there is
    /// no `postgres` user, or the server does not start in time (the error
    /// quotes its log).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let cluster = tidewater_testkit::PgCluster::new().await?;
    /// assert!(cluster.postmaster_pid().is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn new() -> io::Result<Self> {
        let inner = off_thread(Inner::create).await?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The port the server listens on (on 127.0.0.1).
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) {
    /// assert_eq!(cluster.addr().port(), cluster.port());
    /// # }
    /// ```
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The address the server listens on: 127.0.0.1 and [`port`](Self::port).
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) {
    /// assert!(cluster.addr().ip().is_loopback());
    /// # }
    /// ```
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port()))
    }

    /// The superuser's URL for the `postgres` database.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) {
    /// let expected = format!("postgres://postgres:postgres@127.0.0.1:{}/postgres", cluster.port());
    /// assert_eq!(cluster.url(), expected);
    /// # }
    /// ```
    pub fn url(&self) -> String {
        self.url_for(Self::SUPERUSER, Self::PASSWORD, "postgres")
    }

    /// A URL to this server for another user, password or database (each
    /// percent-encoded as needed).
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) {
    /// let url = cluster.url_for("app", "p@ss", "shop");
    /// assert_eq!(url, format!("postgres://app:p%40ss@127.0.0.1:{}/shop", cluster.port()));
    /// # }
    /// ```
    pub fn url_for(&self, user: &str, password: &str, database: &str) -> String {
        postgres_url(self.addr(), user, password, database)
    }

    /// The superuser's URL with another address in place of the server's:
    /// that of a [`FaultProxy`](crate::FaultProxy) in front of it, say.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// let proxy = tidewater_testkit::FaultProxy::start(cluster.addr()).await?;
    /// let url = cluster.url_at(proxy.addr());
    /// # Ok(())
    /// # }
    /// ```
    pub fn url_at(&self, addr: SocketAddr) -> String {
        postgres_url(addr, Self::SUPERUSER, Self::PASSWORD, "postgres")
    }

    /// The folder holding the server's Unix socket (`.s.PGSQL.PORT`).
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) {
    /// let socket = cluster.socket_dir().join(format!(".s.PGSQL.{}", cluster.port()));
    /// assert!(socket.exists());
    /// # }
    /// ```
    pub fn socket_dir(&self) -> &Path {
        self.inner.folder.path()
    }

    /// The data folder (`PGDATA`).
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) {
    /// assert!(cluster.data_dir().join("PG_VERSION").exists());
    /// # }
    /// ```
    pub fn data_dir(&self) -> &Path {
        &self.inner.data
    }

    /// The server's log so far, to print when a test fails.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) {
    /// assert!(cluster.log().contains("ready to accept connections"));
    /// # }
    /// ```
    pub fn log(&self) -> String {
        fs::read_to_string(&self.inner.log).unwrap_or_default()
    }

    /// The postmaster's process id while the server runs.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// cluster.kill().await?;
    /// assert_eq!(cluster.postmaster_pid(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn postmaster_pid(&self) -> Option<u32> {
        lock(&self.inner.state).postmaster
    }

    /// Runs `sql` with `psql` as the superuser over the Unix socket, in the
    /// `postgres` database, and returns what it printed: rows one a line,
    /// columns separated by `|`, no headers, no trailing newline.
    ///
    /// The superuser may use the connection slots reserved for superusers
    /// (`superuser_reserved_connections`, 3), so this works while ordinary
    /// roles have used up `max_connections`. On a paused server it fails
    /// after 30 s.
    ///
    /// # Errors
    /// When the SQL fails (the error holds psql's message) or the server is
    /// down.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// assert_eq!(cluster.execute("SELECT 1, 'a' UNION ALL SELECT 2, 'b'").await?, "1|a\n2|b");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn execute(&self, sql: &str) -> io::Result<String> {
        let inner = self.inner.clone();
        let sql = sql.to_owned();
        off_thread(move || inner.psql(&sql)).await
    }

    /// Creates a role that may log in with `password`, at most
    /// `connection_limit` sessions at once if given (more are refused with
    /// SQLSTATE 53300).
    ///
    /// # Errors
    /// When the role exists already, or the server is down.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// cluster.create_role("app", "secret", Some(2)).await?;
    /// let url = cluster.url_for("app", "secret", "postgres");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_role(
        &self,
        name: &str,
        password: &str,
        connection_limit: Option<u32>,
    ) -> io::Result<()> {
        let limit = connection_limit.map_or(-1, i64::from);
        let sql = format!(
            "CREATE ROLE {} LOGIN PASSWORD {} CONNECTION LIMIT {limit}",
            identifier(name),
            literal(password)
        );
        self.execute(&sql).await.map(drop)
    }

    /// Creates an empty database owned by the superuser; every role may
    /// connect to it.
    ///
    /// # Errors
    /// When it exists already, or the server is down.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// cluster.create_database("shop").await?;
    /// let url = cluster.url_for("postgres", "postgres", "shop");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_database(&self, name: &str) -> io::Result<()> {
        let sql = format!("CREATE DATABASE {}", identifier(name));
        self.execute(&sql).await.map(drop)
    }

    /// Starts the server after [`stop`](Self::stop) or [`kill`](Self::kill),
    /// on the same port, and returns once it accepts connections. After a
    /// kill or an immediate stop that includes crash recovery. Does nothing
    /// if it runs already.
    ///
    /// # Errors
    /// When it does not start within 30 s (the error quotes the log).
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// cluster.kill().await?;
    /// cluster.start().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(&self) -> io::Result<()> {
        self.locked(|inner, state| inner.start(state)).await
    }

    /// Shuts the server down and returns once its processes have exited.
    /// A paused server is resumed first. Does nothing if it is down.
    ///
    /// # Errors
    /// When it does not stop within 30 s.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// use tidewater_testkit::Shutdown;
    /// cluster.stop(Shutdown::Fast).await?;
    /// assert!(tokio::net::TcpStream::connect(cluster.addr()).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn stop(&self, mode: Shutdown) -> io::Result<()> {
        self.locked(move |inner, state| inner.stop(state, mode))
            .await
    }

    /// [`stop`](Self::stop), then [`start`](Self::start): every connection
    /// is closed, new ones are accepted once this returns.
    ///
    /// # Errors
    /// As `stop` and `start`.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// cluster.restart(tidewater_testkit::Shutdown::Fast).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn restart(&self, mode: Shutdown) -> io::Result<()> {
        self.locked(move |inner, state| {
            inner.stop(state, mode)?;
            inner.start(state)
        })
        .await
    }

    /// Crashes the server: SIGKILL to the postmaster. Returns once it is
    /// gone and the port refuses connections. Its backends notice and exit
    /// on their own, closing their connections, but not necessarily at
    /// once: an idle one may still answer a query that races the crash.
    /// [`start`](Self::start) waits for them to be gone and brings the
    /// server back after crash recovery.
    ///
    /// # Errors
    /// When the server is not running.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// cluster.kill().await?;
    /// assert!(tokio::net::TcpStream::connect(cluster.addr()).await.is_err());
    /// cluster.start().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn kill(&self) -> io::Result<()> {
        self.locked(|inner, state| inner.kill(state)).await
    }

    /// Freezes the server: SIGSTOP to the postmaster and every process it
    /// started. New connections wait in the listen queue, queries on
    /// existing connections get no answer, until [`resume`](Self::resume).
    /// Returns once every process is stopped.
    ///
    /// # Errors
    /// When the server is not running.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// cluster.pause().await?;
    /// // ... a query now hangs ...
    /// cluster.resume().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn pause(&self) -> io::Result<()> {
        self.locked(|inner, state| inner.pause(state)).await
    }

    /// Undoes [`pause`](Self::pause): SIGCONT to the server's processes.
    /// Does nothing if it is not paused.
    ///
    /// # Errors
    /// Never in practice; the signature matches the other controls.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// cluster.resume().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn resume(&self) -> io::Result<()> {
        self.locked(|inner, state| {
            inner.resume(state);
            Ok(())
        })
        .await
    }

    /// Ends every client session (`pg_terminate_backend`) but the one that
    /// asks, waits until they have exited, and returns how many there were.
    /// Their clients see SQLSTATE 57P01.
    ///
    /// # Errors
    /// When the server is down.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// let ended = cluster.terminate_backends().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn terminate_backends(&self) -> io::Result<u64> {
        let wait_ms = DEADLINE.as_millis();
        let count = self
            .execute(&format!(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, {wait_ms})) \
                 FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ))
            .await?;
        count
            .parse()
            .map_err(|_| io::Error::other(format!("unexpected count from psql: {count:?}")))
    }

    /// Sets `max_connections` to `n` (ALTER SYSTEM) and restarts the server
    /// (fast) so it takes effect, closing every connection. Three of the
    /// `n` slots stay reserved for superusers
    /// (`superuser_reserved_connections`), so ordinary roles get `n - 3`;
    /// either way the connection past the limit is refused with SQLSTATE
    /// 53300.
    ///
    /// # Errors
    /// When `n` is 3 or less (the server would not start), or the restart
    /// fails.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// cluster.set_max_connections(5).await?;
    /// assert_eq!(cluster.execute("SHOW max_connections").await?, "5");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set_max_connections(&self, n: u32) -> io::Result<()> {
        if n <= 3 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "max_connections = {n}: it must be above superuser_reserved_connections (3)"
                ),
            ));
        }
        self.execute(&format!("ALTER SYSTEM SET max_connections = {n}"))
            .await?;
        self.restart(Shutdown::Fast).await
    }

    /// Runs `work` on a thread of its own with the state locked, so the
    /// controls never overlap.
    async fn locked<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner, &mut State) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let inner = self.inner.clone();
        off_thread(move || work(&inner, &mut lock(&inner.state))).await
    }
}

impl fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCluster")
            .field("port", &self.port())
            .field("data_dir", &self.data_dir())
            .field("state", &*lock(&self.inner.state))
            .finish()
    }
}

impl Inner {
    /// initdb, settings, first start.
    fn create() -> io::Result<Self> {
        let bin = postgres_bin()?;
        let run_as = RunAs::server_user()?;
        let (folder, root) = run_as.folder("tidewater-pg-")?;
        let data = root.join("data");
        let watchdog = Watchdog::spawn(CLEANUP, &[data.as_os_str(), root.as_os_str()])?;
        let mut inner = Inner {
            bin,
            run_as,
            log: root.join("server.log"),
            data,
            folder,
            port: free_port()?,
            state: Mutex::new(State::default()),
            _watchdog: watchdog,
        };
        inner.initdb()?;
        let mut tries = 1;
        loop {
            inner.write_settings()?;
            let started = inner.start(&mut lock(&inner.state));
            match started {
                Err(error) if error.kind() == io::ErrorKind::AddrInUse && tries < PORT_TRIES => {
                    tries += 1;
                    inner.port = free_port()?;
                }
                result => return result.map(|()| inner),
            }
        }
    }

    fn initdb(&self) -> io::Result<()> {
        let home = self.folder.path();
        let password_file = home.join("password");
        fs::write(&password_file, PgCluster::PASSWORD)?;
        self.run_as.own(&password_file)?;
        run(
            self.run_as
                .command(self.bin.join("initdb"), home)
                .arg("--pgdata")
                .arg(&self.data)
                .args(["--username", PgCluster::SUPERUSER, "--pwfile"])
                .arg(&password_file)
                .args([
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ]),
            "initdb",
            DEADLINE,
        )?;
        fs::remove_file(&password_file)?;
        let conf = self.data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf)?;
        text.push_str("\ninclude 'tidewater.conf'\n");
        fs::write(&conf, text)
    }

    /// The settings file included by postgresql.conf; `ALTER SYSTEM`
    /// (postgresql.auto.conf) overrides it. Without fsync a commit survives
    /// a crash of the server (all [`kill`](PgCluster::kill) does), not one
    /// of the machine.
    fn write_settings(&self) -> io::Result<()> {
        let socket_dir = self.folder.path().display().to_string();
        let settings = format!(
            "listen_addresses = '127.0.0.1'\n\
             port = {}\n\
             unix_socket_directories = {}\n\
             fsync = off\n\
             full_page_writes = off\n\
             shared_buffers = 16MB\n",
            self.port,
            literal(&socket_dir),
        );
        let path = self.data.join("tidewater.conf");
        fs::write(&path, settings)?;
        self.run_as.own(&path)
    }

    fn pg_ctl(&self, args: &[&str], what: &str) -> io::Result<String> {
        let seconds = DEADLINE.as_secs().to_string();
        let mut command = self
            .run_as
            .command(self.bin.join("pg_ctl"), self.folder.path());
        command
            .arg("--pgdata")
            .arg(&self.data)
            .args(["--wait", "--timeout", &seconds, "--silent"])
            .args(args);
        // pg_ctl gives up first and says why.
        run(&mut command, what, DEADLINE * 2)
    }

    fn start(&self, state: &mut State) -> io::Result<()> {
        if state.postmaster.is_some() {
            return Ok(());
        }
        let orphans = std::mem::take(&mut state.orphans);
        poll("the killed server's processes to exit", DEADLINE, || {
            Ok(orphans
                .iter()
                .all(|&pid| procfs::is_gone(pid))
                .then_some(()))
        })?;
        self.remove_stale_locks()?;
        let log_start = fs::metadata(&self.log).map_or(0, |meta| meta.len());
        let log = self.log.display().to_string();
        if let Err(error) = self.pg_ctl(&["--log", &log, "start"], "pg_ctl start") {
            let text = fs::read(&self.log).unwrap_or_default();
            let new = String::from_utf8_lossy(text.get(log_start as usize..).unwrap_or_default());
            let kind = if new.contains("could not bind") {
                io::ErrorKind::AddrInUse
            } else {
                error.kind()
            };
            return Err(io::Error::new(
                kind,
                format!("{error}\nserver log:\n{}", tail(&self.log, 20)),
            ));
        }
        let pid = self.recorded_pid().ok_or_else(|| {
            io::Error::other("pg_ctl started the server, but postmaster.pid is unreadable")
        })?;
        state.postmaster = Some(pid);
        Ok(())
    }

    /// The postmaster's pid as recorded in `postmaster.pid`, if there.
    fn recorded_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Removes the lock files a killed postmaster left behind. PostgreSQL
    /// removes stale ones itself, but takes a zombie (a dead process whose
    /// parent never reaps it, as in some containers) for a live server.
    fn remove_stale_locks(&self) -> io::Result<()> {
        let live = self.recorded_pid().and_then(procfs::cwd);
        if live.is_some_and(|cwd| cwd == self.data) {
            // A live server: pg_ctl will say so.
            return Ok(());
        }
        let socket_lock = self
            .folder
            .path()
            .join(format!(".s.PGSQL.{}.lock", self.port));
        for lock_file in [self.data.join("postmaster.pid"), socket_lock] {
            match fs::remove_file(&lock_file) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    }

    fn stop(&self, state: &mut State, mode: Shutdown) -> io::Result<()> {
        if state.postmaster.is_none() {
            return Ok(());
        }
        self.resume(state);
        self.pg_ctl(&["stop", "--mode", mode.mode()], "pg_ctl stop")?;
        state.postmaster = None;
        Ok(())
    }

    fn kill(&self, state: &mut State) -> io::Result<()> {
        let postmaster = running(state)?;
        // Stopped, it forks no new backend while its children are listed.
        signal(postmaster, Signal::SIGSTOP)?;
        let children = procfs::children(postmaster);
        signal(postmaster, Signal::SIGKILL)?;
        state.postmaster = None;
        if std::mem::take(&mut state.paused) {
            // They must run to notice that the postmaster died.
            for &child in &children {
                let _ = signal(child, Signal::SIGCONT);
            }
        }
        state.orphans = children;
        poll("the killed postmaster to exit", DEADLINE, || {
            Ok(procfs::is_gone(postmaster).then_some(()))
        })
    }

    fn pause(&self, state: &mut State) -> io::Result<()> {
        let postmaster = running(state)?;
        if state.paused {
            return Ok(());
        }
        signal(postmaster, Signal::SIGSTOP)?;
        state.paused = true;
        let children = procfs::children(postmaster);
        for &child in &children {
            // One may have exited meanwhile.
            let _ = signal(child, Signal::SIGSTOP);
        }
        poll("the server's processes to stop", DEADLINE, || {
            let all = std::iter::once(&postmaster).chain(&children);
            Ok(all.copied().all(procfs::is_stopped).then_some(()))
        })
    }

    fn resume(&self, state: &mut State) {
        let Some(postmaster) = state.postmaster else {
            return;
        };
        if !std::mem::take(&mut state.paused) {
            return;
        }
        for child in procfs::children(postmaster) {
            let _ = signal(child, Signal::SIGCONT);
        }
        let _ = signal(postmaster, Signal::SIGCONT);
    }

    fn psql(&self, sql: &str) -> io::Result<String> {
        let home = self.folder.path();
        let out = run(
            self.run_as
                .command(self.bin.join("psql"), home)
                .args(["--no-psqlrc", "--quiet", "--tuples-only", "--no-align"])
                .args(["--set", "ON_ERROR_STOP=1", "--host"])
                .arg(home)
                .args(["--port", &self.port.to_string()])
                .args(["--username", PgCluster::SUPERUSER, "--dbname", "postgres"])
                .args(["--command", sql]),
            "psql",
            DEADLINE,
        )?;
        Ok(out.trim_end_matches('\n').to_owned())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let mut state = std::mem::take(state);
        if let Some(postmaster) = state.postmaster {
            if self.stop(&mut state, Shutdown::Immediate).is_err() {
                let _ = signal(postmaster, Signal::SIGKILL);
            }
        }
        // `folder` is removed next, then the watchdog is killed.
    }
}

fn running(state: &State) -> io::Result<u32> {
    state.postmaster.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotConnected,
            "the server is not running (start it first)",
        )
    })
}

fn signal(pid: u32, signal: Signal) -> io::Result<()> {
    let pid = i32::try_from(pid).map_err(io::Error::other)?;
    kill(Pid::from_raw(pid), signal).map_err(io::Error::from)
}

/// `$TIDEWATER_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin` that
/// holds `initdb`.
fn postgres_bin() -> io::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("TIDEWATER_PG_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let newest = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max();
    newest.map(|(_, bin)| bin).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/initdb \
             (install the `postgresql` package, or set TIDEWATER_PG_BIN)",
        )
    })
}

/// A `postgres://` URL, its user, password and database percent-encoded.
pub(crate) fn postgres_url(addr: SocketAddr, user: &str, password: &str, database: &str) -> String {
    format!(
        "postgres://{}:{}@{addr}/{}",
        encode(user),
        encode(password),
        encode(database)
    )
}

fn encode(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    for byte in component.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `name` as an SQL identifier: in double quotes, inner ones doubled.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as an SQL (and postgresql.conf) string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
