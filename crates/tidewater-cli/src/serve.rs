//! `tidewater serve`: the reference service, startable in-process
//! ([`start`]) as the binary does and as the tests do.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewater::CloseReport;
use tidewater_axum::Monitoring;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::trace::TraceLayer;

use crate::api;
use crate::config::{Config, InvalidConfig, redact};
use crate::error::ApiError;
use crate::store::{OpenError, Store};

/// Why the service did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// A configuration value is wrong (the message names the key).
    Config(String),
    /// The database could not be reached or migrated.
    Database(String),
    /// The address could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(message) | Self::Database(message) => f.write_str(message),
            Self::Bind { addr, error } => write!(f, "cannot listen on {addr} (bind): {error}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<InvalidConfig> for StartError {
    fn from(error: InvalidConfig) -> Self {
        Self::Config(error.to_string())
    }
}

impl From<OpenError> for StartError {
    fn from(error: OpenError) -> Self {
        Self::Config(error.to_string())
    }
}

/// The running service.
pub struct Server {
    addr: SocketAddr,
    store: Store,
    drain_timeout: Duration,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Opens the database (creating an SQLite file if needed), applies the
/// schema's pending migrations, and starts serving the API, the health,
/// metrics and dashboard routes on `config.bind` (port 0: any free port;
/// see [`Server::addr`]).
///
/// # Errors
/// A configuration the backend refuses, a database that cannot be reached
/// or migrated (within the pool's `acquire_timeout`), an address that
/// cannot be bound.
pub async fn start(config: Config) -> Result<Server, StartError> {
    let backend = config.backend()?;
    let backend_name = backend.name();
    let database = redact(&config.database_url);
    let store = Store::open(backend, config.pool.clone())?;
    tracing::info!(backend = backend_name, database = %database, pool = %config.pool.name, "opening the database");
    match store.migrate().await {
        Ok(applied) if applied.is_empty() => tracing::info!("schema up to date"),
        Ok(applied) => tracing::info!(?applied, "schema migrated"),
        Err(error) => {
            store.close().await;
            return Err(StartError::Database(format!(
                "cannot migrate the schema of {database}: {}",
                describe(&error)
            )));
        }
    }

    let monitoring = Monitoring::new();
    store.register(&monitoring);
    let app = api::with_fallbacks(api::router(store.clone()).merge(monitoring.router::<()>()))
        .layer(tidewater_axum::deadline_layer(config.request_timeout))
        .layer(TraceLayer::new_for_http());

    let listener = match TcpListener::bind(config.bind).await {
        Ok(listener) => listener,
        Err(error) => {
            store.close().await;
            return Err(StartError::Bind {
                addr: config.bind,
                error,
            });
        }
    };
    let addr = listener.local_addr().map_err(|error| StartError::Bind {
        addr: config.bind,
        error,
    })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%addr, "listening");
    Ok(Server {
        addr,
        store,
        drain_timeout: config.pool.drain_timeout,
        stop: Some(stop),
        task,
    })
}

/// An error's message followed by those of its causes it does not
/// already include.
fn describe(error: &ApiError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// What a serving `tidewater serve --ready-file FILE` writes to `FILE`, as
/// JSON, once it listens and handles signals: how a supervisor, a script
/// or the lab learns where it serves without reading its log.
///
/// ```
/// use tidewater_cli::serve::Ready;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("ready.json");
/// assert!(Ready::read(&path)?.is_none());
/// let ready = Ready {
///     url: "http://127.0.0.1:8080".into(),
///     backend: "sqlite".into(),
///     dashboard: "http://127.0.0.1:8080/dashboard".into(),
///     pid: std::process::id(),
/// };
/// ready.write(&path)?;
/// assert_eq!(Ready::read(&path)?, Some(ready));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// The base URL (`http://127.0.0.1:8080`).
    pub url: String,
    /// The database kind: `sqlite`, `postgres` or `mysql`.
    pub backend: String,
    /// The dashboard's URL.
    pub dashboard: String,
    /// The serving process's id.
    pub pid: u32,
}

impl Ready {
    /// What `server` serves, in this process.
    pub fn of(server: &Server) -> Self {
        Self {
            url: server.url(),
            backend: server.store().backend().to_owned(),
            dashboard: server.dashboard_url(),
            pid: std::process::id(),
        }
    }

    /// Writes it to `path` whole: first to a sibling file, then renamed,
    /// so a reader never sees half of it.
    ///
    /// # Errors
    /// The folder cannot be written.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(&partial, json)?;
        std::fs::rename(&partial, path)
    }

    /// Reads `path`: `None` while it does not exist (not serving yet).
    ///
    /// # Errors
    /// It cannot be read, or is not a ready file.
    pub fn read(path: &Path) -> std::io::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// What [`Server::shutdown`] did.
#[derive(Clone, Copy, Debug)]
pub struct ShutdownReport {
    /// Whether every request in flight finished within `drain_timeout`.
    pub requests_drained: bool,
    /// What closing the pool did.
    pub pool: CloseReport,
}

impl Server {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://127.0.0.1:8080` (a loopback address in place
    /// of an unspecified one, so the URL can be opened).
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            ip if !ip.is_unspecified() => ip,
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The dashboard's URL.
    pub fn dashboard_url(&self) -> String {
        format!("{}/dashboard", self.url())
    }

    /// The store it serves (its pool, for tests and tools).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stops accepting connections, lets the requests in flight finish
    /// (at most the pool's `drain_timeout`; those still running then are
    /// dropped), then closes the pool (again within `drain_timeout`).
    pub async fn shutdown(mut self) -> ShutdownReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let requests_drained = match tokio::time::timeout(self.drain_timeout, &mut self.task).await
        {
            Ok(Ok(Ok(()))) => true,
            Ok(Ok(Err(error))) => {
                tracing::error!(%error, "the server failed");
                true
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "the server task failed");
                true
            }
            Err(_) => {
                tracing::warn!(drain_timeout = ?self.drain_timeout, "requests still running after drain_timeout; dropping them");
                self.task.abort();
                false
            }
        };
        let pool = self.store.close().await;
        tracing::info!(
            closed_idle = pool.closed_idle,
            drained = pool.drained,
            still_in_use = pool.still_in_use,
            "pool closed"
        );
        ShutdownReport {
            requests_drained,
            pool,
        }
    }
}
