//! Opening a connection: every host of the configuration in turn, the way
//! libpq does (`host`, `hostaddr`, `port`, `load_balance_hosts`,
//! `connect_timeout`, `keepalives`, `target_session_attrs`), over sockets
//! this crate opens itself so that each one carries a [`Tap`].

use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_postgres::config::{Host, LoadBalanceHosts, SslMode, SslNegotiation, TargetSessionAttrs};
use tokio_postgres::tls::TlsConnect;
use tokio_postgres::{CancelToken, Client, Config, NoTls, SimpleQueryMessage};

use crate::error::PgError;
use crate::tap::{StatusCell, Tap, TapTls, TransactionStatus};
use crate::tls::Tls;

/// How long a closed connection's task may take to say goodbye to the
/// server before its socket is dropped.
const GOODBYE: Duration = Duration::from_secs(2);

/// Where a connection goes, to open a second socket for a cancel request.
#[derive(Clone, Debug)]
pub(crate) enum Addr {
    Tcp(SocketAddr),
    #[cfg(unix)]
    Unix(PathBuf),
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            #[cfg(unix)]
            Self::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What keeps watch over a session opened by
/// [`PgManager::open_session`](crate::PgManager::open_session), beside
/// its [`Client`]: the transaction status read off the socket, and
/// whether the socket's task has ended. Dropping it closes the socket
/// (after a brief goodbye to the server), so keep it as long as the
/// client: a driver built on `tokio-postgres` keeps both in its
/// connection.
///
/// ```no_run
/// # async fn run(manager: tidewater_postgres::PgManager) -> Result<(), tidewater_postgres::PgError> {
/// use tidewater_postgres::TransactionStatus;
/// let (client, watch) = manager.open_session(None).await?;
/// client.batch_execute("BEGIN").await?;
/// assert_eq!(watch.transaction_status(), TransactionStatus::InTransaction);
/// assert!(!watch.is_closed());
/// drop(watch); // the socket closes; `client` fails from now on
/// # Ok(()) }
/// ```
pub struct SessionWatch {
    status: StatusCell,
    closed: Arc<AtomicBool>,
    cancel: Canceller,
    /// Dropped with the watch: tells the task to close the socket.
    _closing: oneshot::Sender<()>,
}

impl SessionWatch {
    /// The session's transaction status, from the server's last answer
    /// (no round trip): [`TransactionStatus::Busy`] while a request waits
    /// for its answer.
    ///
    /// ```no_run
    /// # async fn run(manager: tidewater_postgres::PgManager) -> Result<(), tidewater_postgres::PgError> {
    /// let (client, watch) = manager.open_session(None).await?;
    /// assert!(watch.transaction_status().is_clean());
    /// # Ok(()) }
    /// ```
    pub fn transaction_status(&self) -> TransactionStatus {
        self.status.get()
    }

    /// Whether the socket's task has ended (the server closed the
    /// session, the socket failed, or the watch is being dropped): the
    /// client can no longer be used. No I/O.
    ///
    /// ```no_run
    /// # async fn run(manager: tidewater_postgres::PgManager) -> Result<(), tidewater_postgres::PgError> {
    /// let (client, watch) = manager.open_session(None).await?;
    /// let _ = client.batch_execute("SELECT pg_terminate_backend(pg_backend_pid())").await;
    /// while !watch.is_closed() {
    ///     tokio::task::yield_now().await;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Asks the server, over a new socket, to cancel the session's query.
    pub(crate) async fn cancel(&self) -> Result<(), PgError> {
        self.cancel.cancel().await
    }
}

impl std::fmt::Debug for SessionWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWatch")
            .field("transaction_status", &self.transaction_status())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// An open session: its client, and what watches it.
pub(crate) type Opened = (Client, SessionWatch);

/// Sends PostgreSQL cancel requests for one session.
pub(crate) struct Canceller {
    token: CancelToken,
    addr: Addr,
    hostname: Option<String>,
    tls: Tls,
}

impl Canceller {
    /// Asks the server, over a new socket, to cancel the session's query.
    pub(crate) async fn cancel(&self) -> Result<(), PgError> {
        match &self.addr {
            Addr::Tcp(addr) => {
                let socket = TcpStream::connect(addr)
                    .await
                    .map_err(|source| io_error(&self.addr, source))?;
                self.tls
                    .cancel(&self.token, socket, self.hostname.as_deref())
                    .await
            }
            #[cfg(unix)]
            Addr::Unix(path) => {
                let socket = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|source| io_error(&self.addr, source))?;
                Ok(self.token.cancel_query_raw(socket, NoTls).await?)
            }
        }
    }
}

fn io_error(addr: &Addr, source: io::Error) -> PgError {
    PgError::Io {
        addr: addr.to_string(),
        source,
    }
}

/// Opens a session on the first host of `config` that takes it.
pub(crate) async fn open(config: &Config, tls: &Tls) -> Result<Opened, PgError> {
    let hosts = config.get_hosts();
    let hostaddrs = config.get_hostaddrs();
    let count = hosts.len().max(hostaddrs.len());
    if count == 0 {
        return Err(PgError::Config("no host given".into()));
    }
    let mut order: Vec<usize> = (0..count).collect();
    if config.get_load_balance_hosts() == LoadBalanceHosts::Random {
        fastrand::shuffle(&mut order);
    }
    let mut last_error = None;
    for i in order {
        let port = config
            .get_ports()
            .get(i)
            .or(config.get_ports().first())
            .copied()
            .unwrap_or(5432);
        let hostname = match hosts.get(i) {
            Some(Host::Tcp(name)) => Some(name.clone()),
            _ => None,
        };
        let attempt = async {
            match (hostaddrs.get(i), hosts.get(i)) {
                (Some(ip), _) => {
                    open_tcp(config, tls, SocketAddr::new(*ip, port), hostname.clone()).await
                }
                (None, Some(Host::Tcp(name))) => open_by_name(config, tls, name, port).await,
                #[cfg(unix)]
                (None, Some(Host::Unix(dir))) => {
                    open_unix(config, dir.join(format!(".s.PGSQL.{port}"))).await
                }
                (None, None) => Err(PgError::Config("no host given".into())),
            }
        };
        let result = match config.get_connect_timeout() {
            Some(limit) => tokio::time::timeout(*limit, attempt)
                .await
                .unwrap_or_else(|_| {
                    Err(PgError::Io {
                        addr: format!("{}:{port}", hostname.as_deref().unwrap_or("host")),
                        source: io::Error::new(io::ErrorKind::TimedOut, "connect_timeout expired"),
                    })
                }),
            None => attempt.await,
        };
        match result {
            Ok(opened) => return Ok(opened),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.expect("at least one host was tried"))
}

async fn open_by_name(
    config: &Config,
    tls: &Tls,
    name: &str,
    port: u16,
) -> Result<Opened, PgError> {
    let lookup = tokio::net::lookup_host((name, port)).await;
    let addrs = lookup.map_err(|source| PgError::Io {
        addr: format!("{name}:{port}"),
        source,
    })?;
    let mut last_error = None;
    for addr in addrs {
        match open_tcp(config, tls, addr, Some(name.to_owned())).await {
            Ok(opened) => return Ok(opened),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| PgError::Io {
        addr: format!("{name}:{port}"),
        source: io::Error::new(
            io::ErrorKind::NotFound,
            "the host name resolves to no address",
        ),
    }))
}

async fn open_tcp(
    config: &Config,
    tls: &Tls,
    addr: SocketAddr,
    hostname: Option<String>,
) -> Result<Opened, PgError> {
    let target = Addr::Tcp(addr);
    let socket = TcpStream::connect(addr)
        .await
        .map_err(|source| io_error(&target, source))?;
    socket
        .set_nodelay(true)
        .map_err(|source| io_error(&target, source))?;
    if config.get_keepalives() {
        let keepalive = socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
        socket2::SockRef::from(&socket)
            .set_tcp_keepalive(&keepalive)
            .map_err(|source| io_error(&target, source))?;
    }
    let status = StatusCell::default();
    let canceller = |token| Canceller {
        token,
        addr: target.clone(),
        hostname: hostname.clone(),
        tls: tls.clone(),
    };
    match tls.connector(hostname.as_deref())? {
        None => {
            start(
                config,
                Tap::new(socket, status.clone(), false),
                NoTls,
                status,
                canceller,
            )
            .await
        }
        Some(connector) => {
            // With `sslnegotiation=postgres` the server first answers the
            // TLS request with one byte; the tap passes over it.
            let asks = config.get_ssl_mode() != SslMode::Disable
                && config.get_ssl_negotiation() == SslNegotiation::Postgres;
            let raw = Tap::new(socket, status.clone(), asks);
            let tls = TapTls {
                inner: connector,
                cell: status.clone(),
            };
            start(config, raw, tls, status, canceller).await
        }
    }
}

#[cfg(unix)]
async fn open_unix(config: &Config, path: PathBuf) -> Result<Opened, PgError> {
    let target = Addr::Unix(path.clone());
    let socket = tokio::net::UnixStream::connect(&path)
        .await
        .map_err(|source| io_error(&target, source))?;
    let status = StatusCell::default();
    let canceller = |token| Canceller {
        token,
        addr: target.clone(),
        hostname: None,
        tls: Tls::None,
    };
    start(
        config,
        Tap::new(socket, status.clone(), false),
        NoTls,
        status,
        canceller,
    )
    .await
}

/// Runs the startup exchange on `stream`, spawns the connection's task and
/// checks `target_session_attrs`.
async fn start<S, T>(
    config: &Config,
    stream: S,
    tls: T,
    status: StatusCell,
    canceller: impl FnOnce(CancelToken) -> Canceller,
) -> Result<Opened, PgError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: TlsConnect<S>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect_raw(stream, tls).await?;
    let (closing, closing_rx) = oneshot::channel::<()>();
    let closed = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let closed = closed.clone();
        async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = &mut connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "PostgreSQL connection ended");
                    }
                }
                _ = closing_rx => {
                    // The client is gone: let the driver say goodbye, briefly.
                    let _ = tokio::time::timeout(GOODBYE, connection).await;
                }
            }
            closed.store(true, SeqCst);
        }
    });
    check_session_attrs(config, &client).await?;
    let cancel = canceller(client.cancel_token());
    let watch = SessionWatch {
        status,
        closed,
        cancel,
        _closing: closing,
    };
    Ok((client, watch))
}

async fn check_session_attrs(config: &Config, client: &Client) -> Result<(), PgError> {
    let wanted = config.get_target_session_attrs();
    if wanted == TargetSessionAttrs::Any {
        return Ok(());
    }
    let rows = client.simple_query("SHOW transaction_read_only").await?;
    let read_only = rows.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0).map(|value| value == "on"),
        _ => None,
    });
    match (wanted, read_only) {
        (TargetSessionAttrs::ReadWrite, Some(true)) => Err(PgError::WrongSessionAttrs(
            "the server is read-only; target_session_attrs=read-write".into(),
        )),
        (TargetSessionAttrs::ReadOnly, Some(false)) => Err(PgError::WrongSessionAttrs(
            "the server accepts writes; target_session_attrs=read-only".into(),
        )),
        _ => Ok(()),
    }
}
