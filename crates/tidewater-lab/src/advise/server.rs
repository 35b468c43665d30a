//! What `tidewater-lab advise` learns from the database server itself: whether
//! it runs on this machine (then its cores are this machine's), and its
//! connection budget, read with one connection through
//! [`tidewater_postgres::check_capacity`].

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use tidewater::{ConfigError, Pool, PoolConfig};
use tidewater_postgres::tokio_postgres::config::Host;
use tidewater_postgres::{CapacityError, PgError, PgManager, PgOptions, check_capacity, redact};

use super::AdviseError;

/// The longest the whole read may take, connecting included.
const READ_DEADLINE: Duration = Duration::from_secs(10);

/// Why the server's connection budget could not be read: one of the
/// errors of the driver and the pool reading it, shown as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The URL does not make the driver's options.
    #[error(transparent)]
    Options(PgError),
    /// The one-connection pool could not be made.
    #[error(transparent)]
    Pool(ConfigError),
    /// The connection or the questions failed.
    #[error(transparent)]
    Capacity(CapacityError),
    /// No answer within the bound.
    #[error("no answer within {}s", .0.as_secs())]
    NoAnswer(Duration),
}

/// The server's connection budget, as read from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServerBudget {
    /// `SHOW max_connections`.
    pub max_connections: u32,
    /// `superuser_reserved_connections` plus `reserved_connections`
    /// (PostgreSQL 16 and later).
    pub superuser_reserved: u32,
    /// Client connections other than ours open on the server when read.
    pub held_by_others: u32,
}

/// The parsed URL, or an error naming `--database-url` (password
/// redacted).
fn parse(url: &str) -> Result<tidewater_postgres::tokio_postgres::Config, AdviseError> {
    let error = |message: String| AdviseError::Invalid {
        name: "--database-url".into(),
        value: redact(url),
        allowed: message,
    };
    if let Some((scheme, _)) = url.split_once("://") {
        if !matches!(scheme, "postgres" | "postgresql") {
            return Err(error(
                "a PostgreSQL URL (postgres://…, postgresql://… or key=value pairs); \
                 for another server give --max-connections and --server-cores"
                    .into(),
            ));
        }
    }
    tidewater_postgres::tokio_postgres::Config::from_str(url)
        .map_err(|e| error(format!("a PostgreSQL URL ({e})")))
}

/// Whether every host the URL names is this machine: a Unix socket,
/// `localhost`, or a loopback address (`hostaddr` wins over `host`, as in
/// libpq); no host at all means the local socket.
///
/// # Errors
/// A URL that is not PostgreSQL's, naming `--database-url`.
///
/// ```
/// use tidewater_lab::advise::is_loopback;
/// assert!(is_loopback("postgres://postgres@127.0.0.1:5432/test").unwrap());
/// assert!(is_loopback("host=/var/run/postgresql dbname=test").unwrap());
/// assert!(!is_loopback("postgres://app@db.internal/orders").unwrap());
/// assert!(!is_loopback("postgres://app@localhost,db2/orders").unwrap());
/// assert!(is_loopback("mysql://root@127.0.0.1/test").is_err());
/// ```
pub fn is_loopback(url: &str) -> Result<bool, AdviseError> {
    let config = parse(url)?;
    if !config.get_hostaddrs().is_empty() {
        return Ok(config.get_hostaddrs().iter().all(IpAddr::is_loopback));
    }
    Ok(config.get_hosts().iter().all(|host| match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }))
}

/// Reads `max_connections`, the superuser-reserved slots and the
/// connections other clients hold, over one connection to `url`, within
/// 10 seconds. Changes nothing on the server.
///
/// # Errors
/// A URL that is not PostgreSQL's ([`AdviseError::Invalid`]), or a server
/// that cannot be reached or answered strangely ([`AdviseError::Server`],
/// password redacted).
///
/// ```no_run
/// # async fn run() -> Result<(), tidewater_lab::advise::AdviseError> {
/// let budget = tidewater_lab::advise::read_server("postgres://postgres@127.0.0.1/test").await?;
/// println!("max_connections = {}", budget.max_connections);
/// # Ok(()) }
/// ```
pub async fn read_server(url: &str) -> Result<ServerBudget, AdviseError> {
    parse(url)?;
    let server_error = |source| AdviseError::Server {
        url: redact(url),
        source,
    };
    let options = PgOptions {
        url: url.to_owned(),
        ..PgOptions::default()
    };
    let manager = PgManager::new(options).map_err(|e| server_error(ServerError::Options(e)))?;
    let config = PoolConfig {
        name: "advise".into(),
        max_size: 1,
        acquire_timeout: READ_DEADLINE / 2,
        connect_timeout: READ_DEADLINE / 2,
        ..PoolConfig::default()
    };
    let pool = Pool::new(manager, config).map_err(|e| server_error(ServerError::Pool(e)))?;
    let read = tokio::time::timeout(READ_DEADLINE, check_capacity(&pool, 1)).await;
    pool.close().await;
    let capacity = match read {
        Ok(Ok(capacity)) => capacity,
        Ok(Err(error)) => return Err(server_error(ServerError::Capacity(error))),
        Err(_) => return Err(server_error(ServerError::NoAnswer(READ_DEADLINE))),
    };
    Ok(ServerBudget {
        max_connections: capacity.max_connections,
        superuser_reserved: capacity.reserved,
        held_by_others: capacity.in_use.saturating_sub(capacity.own),
    })
}
