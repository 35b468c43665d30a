//! PostgreSQL: a socket this crate opens with a [`Tap`] on it, started
//! by tokio-postgres, handed to diesel-async with
//! `AsyncPgConnection::try_from(client)`.
//!
//! Why not `AsyncPgConnection::establish`: it reports a bad password as
//! `ConnectionError::BadConnection(String)` (only a message) and hides
//! its socket, so whether a returned session is inside a transaction
//! would be unknowable. Opening the socket here keeps tokio-postgres's
//! typed errors (SQLSTATE `28P01`, `3D000`...) and the tap reads the
//! session's transaction status off the wire for free.
//!
//! The price: diesel-async's `notifications_stream` (LISTEN/NOTIFY) is
//! not fed, since this crate drives the socket; use a dedicated
//! `AsyncPgConnection::establish` connection for listening.

use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::QueryResult;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tidewater::credentials::Credentials;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};

use crate::driver::sealed::Open;
use crate::error::DieselError;
use crate::redact;
use crate::tap::{StatusCell, Tap, TransactionStatus};

/// How long a closed connection's task may take to say goodbye to the
/// server before its socket is dropped.
const GOODBYE: Duration = Duration::from_secs(2);

/// A parsed PostgreSQL URL.
#[derive(Clone)]
pub struct PgTarget {
    config: Config,
}

/// What the pool keeps beside an `AsyncPgConnection`.
#[derive(Debug)]
pub struct PgExtra {
    status: StatusCell,
    closed: Arc<AtomicBool>,
    /// Dropped with the connection: tells its task to close the socket.
    _closing: oneshot::Sender<()>,
}

impl PgExtra {
    pub(crate) fn transaction_status(&self) -> TransactionStatus {
        self.status.get()
    }
}

impl Open for AsyncPgConnection {
    type Target = PgTarget;
    type Extra = PgExtra;
    const DATABASE: &'static str = "PostgreSQL";
    const CREDENTIALS: bool = true;

    fn parse(url: &str) -> Result<PgTarget, DieselError> {
        let mut config = Config::from_str(url)
            .map_err(|error| DieselError::Config(format!("{error} in url {}", redact(url))))?;
        if config.get_ssl_mode() == SslMode::Require {
            return Err(DieselError::Config(format!(
                "sslmode=require: tidewater-diesel does not speak TLS to PostgreSQL yet (url {})",
                redact(url)
            )));
        }
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(DieselError::Config(format!(
                "no host in url {}",
                redact(url)
            )));
        }
        if config.get_application_name().is_none() {
            config.application_name("tidewater-diesel");
        }
        Ok(PgTarget { config })
    }

    async fn open(
        target: &PgTarget,
        credentials: Option<&Credentials>,
    ) -> Result<(Self, PgExtra), DieselError> {
        let mut config = target.config.clone();
        if let Some(credentials) = credentials {
            config.password(credentials.secret());
            if let Some(user) = credentials.user() {
                config.user(user);
            }
        }
        let (client, extra) = open(&config).await?;
        let conn = AsyncPgConnection::try_from(client).await?;
        Ok((conn, extra))
    }

    async fn check(conn: &mut Self) -> QueryResult<()> {
        // An empty simple query: one round trip, no plan, no snapshot.
        conn.batch_execute("").await
    }

    fn is_closed(_conn: &mut Self, extra: &PgExtra) -> bool {
        extra.closed.load(Ordering::SeqCst)
    }

    fn may_be_dirty(_conn: &mut Self, extra: &PgExtra) -> bool {
        !extra.status.get().is_clean()
    }

    async fn rollback(conn: &mut Self) -> QueryResult<()> {
        // Outside a transaction PostgreSQL only warns.
        conn.batch_execute("ROLLBACK").await
    }
}

/// What `DISCARD ALL` does, but `DEALLOCATE ALL`: diesel-async's
/// statement cache still refers to the prepared statements.
pub(crate) const FULL_RESET: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
     UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES; \
     SET TIME ZONE 'UTC'; SET CLIENT_ENCODING TO 'UTF8'";

fn io_error(addr: impl std::fmt::Display, source: io::Error) -> DieselError {
    DieselError::Io {
        addr: addr.to_string(),
        source,
    }
}

/// Opens a session on the first host of `config` that takes it, in the
/// order given (libpq's `host`, `hostaddr`, `port`, `connect_timeout`,
/// `keepalives`, `target_session_attrs`).
async fn open(config: &Config) -> Result<(Client, PgExtra), DieselError> {
    let hosts = config.get_hosts();
    let hostaddrs = config.get_hostaddrs();
    let count = hosts.len().max(hostaddrs.len());
    let mut last_error = None;
    for i in 0..count {
        let port = config
            .get_ports()
            .get(i)
            .or(config.get_ports().first())
            .copied()
            .unwrap_or(5432);
        let attempt = async {
            match (hostaddrs.get(i), hosts.get(i)) {
                (Some(ip), _) => open_tcp(config, SocketAddr::new(*ip, port)).await,
                (None, Some(Host::Tcp(name))) => {
                    let addrs = tokio::net::lookup_host((name.as_str(), port))
                        .await
                        .map_err(|source| io_error(format!("{name}:{port}"), source))?;
                    let mut last_error = None;
                    for addr in addrs {
                        match open_tcp(config, addr).await {
                            Ok(opened) => return Ok(opened),
                            Err(error) => last_error = Some(error),
                        }
                    }
                    Err(last_error.unwrap_or_else(|| {
                        io_error(
                            format!("{name}:{port}"),
                            io::Error::new(
                                io::ErrorKind::NotFound,
                                "the host name resolves to no address",
                            ),
                        )
                    }))
                }
                #[cfg(unix)]
                (None, Some(Host::Unix(dir))) => {
                    let path = dir.join(format!(".s.PGSQL.{port}"));
                    let socket = tokio::net::UnixStream::connect(&path)
                        .await
                        .map_err(|source| io_error(path.display(), source))?;
                    start(config, socket).await
                }
                (None, None) => Err(DieselError::Config("no host given".into())),
            }
        };
        let result = match config.get_connect_timeout() {
            Some(limit) => tokio::time::timeout(*limit, attempt)
                .await
                .unwrap_or_else(|_| {
                    Err(io_error(
                        format!("host {}", i + 1),
                        io::Error::new(io::ErrorKind::TimedOut, "connect_timeout expired"),
                    ))
                }),
            None => attempt.await,
        };
        match result {
            Ok(opened) => return Ok(opened),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| DieselError::Config("no host given".into())))
}

async fn open_tcp(config: &Config, addr: SocketAddr) -> Result<(Client, PgExtra), DieselError> {
    let socket = TcpStream::connect(addr)
        .await
        .map_err(|source| io_error(addr, source))?;
    socket
        .set_nodelay(true)
        .map_err(|source| io_error(addr, source))?;
    if config.get_keepalives() {
        let keepalive = socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
        socket2::SockRef::from(&socket)
            .set_tcp_keepalive(&keepalive)
            .map_err(|source| io_error(addr, source))?;
    }
    start(config, socket).await
}

/// Runs the startup exchange over a tapped `socket`, spawns the
/// connection's task and checks `target_session_attrs`.
async fn start<S>(config: &Config, socket: S) -> Result<(Client, PgExtra), DieselError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let status = StatusCell::default();
    let stream = Tap::new(socket, status.clone(), false);
    let (client, connection) = config
        .connect_raw(stream, NoTls)
        .await
        .map_err(DieselError::Postgres)?;
    let closed = Arc::new(AtomicBool::new(false));
    let (closing, closing_rx) = oneshot::channel::<()>();
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
            closed.store(true, Ordering::SeqCst);
        }
    });
    check_session_attrs(config, &client).await?;
    let extra = PgExtra {
        status,
        closed,
        _closing: closing,
    };
    Ok((client, extra))
}

async fn check_session_attrs(config: &Config, client: &Client) -> Result<(), DieselError> {
    let wanted = config.get_target_session_attrs();
    if wanted == TargetSessionAttrs::Any {
        return Ok(());
    }
    let rows = client
        .simple_query("SHOW transaction_read_only")
        .await
        .map_err(DieselError::Postgres)?;
    let read_only = rows.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0).map(|value| value == "on"),
        _ => None,
    });
    match (wanted, read_only) {
        (TargetSessionAttrs::ReadWrite, Some(true)) => Err(DieselError::Io {
            addr: "target_session_attrs=read-write".into(),
            source: io::Error::other("the server is read-only"),
        }),
        (TargetSessionAttrs::ReadOnly, Some(false)) => Err(DieselError::Io {
            addr: "target_session_attrs=read-only".into(),
            source: io::Error::other("the server accepts writes"),
        }),
        _ => Ok(()),
    }
}
