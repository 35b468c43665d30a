//! PgBouncer in front of a server: Debian's `/usr/sbin/pgbouncer`, private
//! to one test, on a free port of 127.0.0.1.

use std::fmt;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;

use tempfile::TempDir;

use crate::PgCluster;
use crate::command::{RunAs, free_port, tail, wait_child};
use crate::pg_cluster::postgres_url;
use crate::wait::{DEADLINE, off_thread, poll};
use crate::watchdog::Watchdog;

/// How PgBouncer shares server connections among its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// A client keeps its server connection until it disconnects.
    Session,
    /// A client holds a server connection only for one transaction.
    /// Session state (prepared statements, `SET`) does not carry over: use
    /// the simple query protocol or unnamed statements through it.
    Transaction,
    /// A client holds a server connection only for one statement.
    Statement,
}

impl PoolMode {
    fn setting(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// How to run a [`PgBouncer`]. Start from [`for_cluster`](Self::for_cluster)
/// or [`new`](Self::new) and change the fields you need.
///
/// ```
/// use tidewater_testkit::{PgBouncerOptions, PoolMode};
///
/// let upstream = "127.0.0.1:5432".parse().unwrap();
/// let options = PgBouncerOptions {
///     pool_mode: PoolMode::Session,
///     ..PgBouncerOptions::new(upstream, "postgres", "postgres")
/// };
/// assert_eq!(options.default_pool_size, 10);
/// ```
#[derive(Clone)]
pub struct PgBouncerOptions {
    /// The server it forwards to (every database name goes there).
    pub upstream: SocketAddr,
    /// The one user it knows; it logs in to the server as this user too.
    pub user: String,
    /// That user's password: clients authenticate with SCRAM-SHA-256, and
    /// PgBouncer uses it to log in to the server.
    pub password: String,
    /// Default: [`PoolMode::Transaction`].
    pub pool_mode: PoolMode,
    /// Server connections per database and user (default 10).
    pub default_pool_size: u32,
    /// Client connections it accepts at most (default 100).
    pub max_client_conn: u32,
    /// The program (default `/usr/sbin/pgbouncer`).
    pub program: PathBuf,
}

impl PgBouncerOptions {
    /// Transaction pooling to `upstream` for `user` with `password`.
    ///
    /// ```
    /// let upstream = "127.0.0.1:5432".parse().unwrap();
    /// let options = tidewater_testkit::PgBouncerOptions::new(upstream, "app", "secret");
    /// assert_eq!(options.pool_mode, tidewater_testkit::PoolMode::Transaction);
    /// ```
    pub fn new(upstream: SocketAddr, user: &str, password: &str) -> Self {
        Self {
            upstream,
            user: user.to_owned(),
            password: password.to_owned(),
            pool_mode: PoolMode::Transaction,
            default_pool_size: 10,
            max_client_conn: 100,
            program: PathBuf::from("/usr/sbin/pgbouncer"),
        }
    }

    /// Transaction pooling to `cluster` for its superuser.
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) {
    /// let options = tidewater_testkit::PgBouncerOptions::for_cluster(&cluster);
    /// assert_eq!(options.upstream, cluster.addr());
    /// # }
    /// ```
    pub fn for_cluster(cluster: &PgCluster) -> Self {
        Self::new(cluster.addr(), PgCluster::SUPERUSER, PgCluster::PASSWORD)
    }
}

impl fmt::Debug for PgBouncerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBouncerOptions")
            .field("upstream", &self.upstream)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("pool_mode", &self.pool_mode)
            .field("default_pool_size", &self.default_pool_size)
            .field("max_client_conn", &self.max_client_conn)
            .field("program", &self.program)
            .finish()
    }
}

/// A PgBouncer of one test, on a free port of 127.0.0.1, in a temporary
/// folder, running as the `postgres` system user when the tests run as root.
///
/// Dropping it kills it and removes its folder; if the test process dies
/// without dropping it, a watchdog process does the same within about a
/// second.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use tidewater_testkit::{PgBouncer, PgCluster};
///
/// let cluster = PgCluster::new().await?;
/// let bouncer = PgBouncer::start(&cluster).await?; // transaction pooling
/// let url = bouncer.url(); // postgres://postgres:postgres@127.0.0.1:PORT/postgres
/// # Ok(())
/// # }
/// ```
pub struct PgBouncer {
    child: Child,
    port: u16,
    user: String,
    password: String,
    /// Removed when dropped, after the process is killed.
    folder: TempDir,
    /// Dropped after `folder`, so it outlives the cleanup it guards.
    _watchdog: Watchdog,
}

/// Kills a PgBouncer left behind by a test process that died (`$1` the
/// folder, `$2` the program); it is recognised by its program, so a reused
/// pid is never signalled.
const CLEANUP: &str = r#"
folder=$1
pid=
[ -r "$folder/pgbouncer.pid" ] && read -r pid < "$folder/pgbouncer.pid"
if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe")" = "$2" ]; then
  kill -KILL "$pid"
fi 2>/dev/null
rm -rf "$folder"
"#;

/// How often `start` picks another port when the one it chose was taken.
const PORT_TRIES: usize = 5;

impl PgBouncer {
    /// Starts PgBouncer in front of `cluster`, pooling by transaction for
    /// its superuser, and returns once it accepts connections.
    ///
    /// # Errors
    /// As [`start_with`](Self::start_with).
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// let bouncer = tidewater_testkit::PgBouncer::start(&cluster).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(cluster: &PgCluster) -> io::Result<Self> {
        Self::start_with(PgBouncerOptions::for_cluster(cluster)).await
    }

    /// Starts PgBouncer as `options` say and returns once it accepts
    /// connections.
    ///
    /// # Errors
    /// When PgBouncer is not installed (`NotFound`, naming the `pgbouncer`
    /// package), or it does not start within 30 s (the error quotes its
    /// log).
    ///
    /// ```no_run
    /// # async fn f(cluster: tidewater_testkit::PgCluster) -> std::io::Result<()> {
    /// use tidewater_testkit::{PgBouncer, PgBouncerOptions, PoolMode};
    /// let options = PgBouncerOptions {
    ///     pool_mode: PoolMode::Session,
    ///     ..PgBouncerOptions::for_cluster(&cluster)
    /// };
    /// let bouncer = PgBouncer::start_with(options).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start_with(options: PgBouncerOptions) -> io::Result<Self> {
        off_thread(move || Self::launch(&options)).await
    }

    /// The port it listens on (on 127.0.0.1).
    ///
    /// ```no_run
    /// # fn f(bouncer: tidewater_testkit::PgBouncer) {
    /// assert_eq!(bouncer.addr().port(), bouncer.port());
    /// # }
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address it listens on: 127.0.0.1 and [`port`](Self::port).
    ///
    /// ```no_run
    /// # fn f(bouncer: tidewater_testkit::PgBouncer) {
    /// assert!(bouncer.addr().ip().is_loopback());
    /// # }
    /// ```
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The URL of the `postgres` database through it, for its user.
    ///
    /// ```no_run
    /// # fn f(bouncer: tidewater_testkit::PgBouncer) {
    /// assert!(bouncer.url().ends_with(&format!("@127.0.0.1:{}/postgres", bouncer.port())));
    /// # }
    /// ```
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of `database` through it, for its user. `pgbouncer` is its
    /// admin console (`SHOW POOLS`, `SHOW CONFIG`, ...; simple queries only).
    ///
    /// ```no_run
    /// # fn f(bouncer: tidewater_testkit::PgBouncer) {
    /// let admin = bouncer.url_for("pgbouncer");
    /// # }
    /// ```
    pub fn url_for(&self, database: &str) -> String {
        postgres_url(self.addr(), &self.user, &self.password, database)
    }

    /// Its process id.
    ///
    /// ```no_run
    /// # fn f(bouncer: tidewater_testkit::PgBouncer) {
    /// assert!(std::path::Path::new(&format!("/proc/{}", bouncer.pid())).exists());
    /// # }
    /// ```
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The folder holding its configuration, user list, pid file and log.
    ///
    /// ```no_run
    /// # fn f(bouncer: tidewater_testkit::PgBouncer) {
    /// assert!(bouncer.folder().join("pgbouncer.ini").exists());
    /// # }
    /// ```
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// Its log so far, to print when a test fails.
    ///
    /// ```no_run
    /// # fn f(bouncer: tidewater_testkit::PgBouncer) {
    /// println!("{}", bouncer.log());
    /// # }
    /// ```
    pub fn log(&self) -> String {
        fs::read_to_string(log_path(self.folder.path())).unwrap_or_default()
    }

    fn launch(options: &PgBouncerOptions) -> io::Result<Self> {
        let program = options.program.canonicalize().map_err(|_| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "pgbouncer is not installed ({} is missing): install Debian's `pgbouncer` \
                     package (apt-get install pgbouncer)",
                    options.program.display()
                ),
            )
        })?;
        let run_as = RunAs::server_user()?;
        let (folder, root) = run_as.folder("tidewater-pgbouncer-")?;
        let watchdog = Watchdog::spawn(CLEANUP, &[root.as_os_str(), program.as_os_str()])?;
        let users = root.join("userlist.txt");
        fs::write(
            &users,
            format!("{} {}\n", quote(&options.user), quote(&options.password)),
        )?;
        run_as.own(&users)?;
        let mut tries = 1;
        loop {
            let port = free_port()?;
            match spawn(options, &program, run_as, &root, port) {
                Ok(child) => {
                    return Ok(Self {
                        child,
                        port,
                        user: options.user.clone(),
                        password: options.password.clone(),
                        folder,
                        _watchdog: watchdog,
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::AddrInUse && tries < PORT_TRIES => {
                    tries += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Writes the configuration for `port`, starts PgBouncer and waits until it
/// accepts connections.
fn spawn(
    options: &PgBouncerOptions,
    program: &Path,
    run_as: RunAs,
    folder: &Path,
    port: u16,
) -> io::Result<Child> {
    let config = folder.join("pgbouncer.ini");
    fs::write(&config, settings(options, folder, port))?;
    run_as.own(&config)?;
    let log_path = log_path(folder);
    let log = fs::File::create(&log_path)?;
    let mut child = run_as
        .command(program, folder)
        .arg(&config)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let ready = poll("pgbouncer to accept connections", DEADLINE, || {
        if let Some(status) = child.try_wait()? {
            let log = tail(&log_path, 20);
            let kind = if log.contains("Address already in use") {
                io::ErrorKind::AddrInUse
            } else {
                io::ErrorKind::Other
            };
            return Err(io::Error::new(
                kind,
                format!("pgbouncer exited ({status}); its log:\n{log}"),
            ));
        }
        Ok(TcpStream::connect(addr).ok().map(drop))
    });
    if let Err(error) = ready {
        let _ = child.kill();
        let _ = child.wait();
        return Err(error);
    }
    Ok(child)
}

fn settings(options: &PgBouncerOptions, folder: &Path, port: u16) -> String {
    let folder = folder.display();
    format!(
        "[databases]\n\
         * = host={host} port={upstream_port}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         pidfile = {folder}/pgbouncer.pid\n\
         auth_type = scram-sha-256\n\
         auth_file = {folder}/userlist.txt\n\
         admin_users = {user}\n\
         pool_mode = {mode}\n\
         default_pool_size = {pool_size}\n\
         max_client_conn = {max_client_conn}\n\
         ignore_startup_parameters = extra_float_digits\n",
        host = options.upstream.ip(),
        upstream_port = options.upstream.port(),
        user = options.user,
        mode = options.pool_mode.setting(),
        pool_size = options.default_pool_size,
        max_client_conn = options.max_client_conn,
    )
}

fn log_path(folder: &Path) -> PathBuf {
    folder.join("pgbouncer.log")
}

/// `text` in double quotes as the userlist wants it, inner ones doubled.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

impl fmt::Debug for PgBouncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBouncer")
            .field("port", &self.port)
            .field("user", &self.user)
            .field("folder", &self.folder.path())
            .finish()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // Our own child, by its pid; it keeps no state worth a clean stop.
        let _ = self.child.kill();
        let _ = wait_child(&mut self.child, "pgbouncer to exit", DEADLINE);
        // `folder` is removed next, then the watchdog is killed.
    }
}
