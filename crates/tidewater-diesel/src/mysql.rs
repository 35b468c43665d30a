//! MySQL and MariaDB: a `mysql_async::Conn` this crate opens (typed
//! errors: 1045 bad password, 1049 unknown database...), handed to
//! diesel-async with `AsyncMysqlConnection::try_from` (or
//! `AsyncMariadbConnection::try_from`), which applies diesel's session
//! settings (UTC, utf8mb4).

use diesel::QueryResult;
use diesel_async::{AsyncMariadbConnection, AsyncMysqlConnection, SimpleAsyncConnection};
use mysql_async::{Opts, OptsBuilder};
use tidewater::credentials::Credentials;

use crate::driver::sealed::Open;
use crate::error::DieselError;
use crate::redact;

/// A parsed MySQL or MariaDB URL.
#[derive(Clone, Debug)]
pub struct MysqlTarget {
    opts: Opts,
}

/// `mysql://` (or `mariadb://`) URL to mysql_async's options, with the
/// settings diesel-async's own `establish` uses.
fn parse(url: &str, schemes: &[&str]) -> Result<MysqlTarget, DieselError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        DieselError::Config(format!("not a URL: {} (expected mysql://...)", redact(url)))
    })?;
    if !schemes.contains(&scheme) {
        return Err(DieselError::Config(format!(
            "scheme {scheme}:// in url {}: expected {}://",
            redact(url),
            schemes.join(":// or ")
        )));
    }
    let opts = Opts::from_url(&format!("mysql://{rest}"))
        .map_err(|error| DieselError::Config(format!("{error} in url {}", redact(url))))?;
    let query = rest.split_once('?').map_or("", |(_, query)| query);
    if query.split('&').any(|pair| pair == "require_ssl=true") {
        return Err(DieselError::Config(format!(
            "require_ssl=true in url {}: tidewater-diesel does not speak TLS to MySQL yet",
            redact(url)
        )));
    }
    if let Some(key) = query
        .split('&')
        .filter_map(|pair| pair.split('=').next())
        .find(|key| {
            matches!(
                *key,
                "pool_min" | "pool_max" | "conn_ttl" | "inactive_connection_ttl"
            )
        })
    {
        return Err(DieselError::Config(format!(
            "{key} in url {} configures mysql_async's own pool; tidewater is the pool",
            redact(url)
        )));
    }
    let opts = OptsBuilder::from_opts(opts)
        .stmt_cache_size(0) // diesel-async has its own
        .client_found_rows(true) // as diesel does
        .into();
    Ok(MysqlTarget { opts })
}

async fn connect(
    target: &MysqlTarget,
    credentials: Option<&Credentials>,
) -> Result<mysql_async::Conn, DieselError> {
    let mut builder = OptsBuilder::from_opts(target.opts.clone());
    if let Some(credentials) = credentials {
        builder = builder.pass(Some(credentials.secret()));
        if let Some(user) = credentials.user() {
            builder = builder.user(Some(user));
        }
    }
    mysql_async::Conn::new(builder)
        .await
        .map_err(DieselError::Mysql)
}

macro_rules! mysql_like {
    ($conn:ty, $database:literal, $schemes:expr) => {
        impl Open for $conn {
            type Target = MysqlTarget;
            type Extra = ();
            const DATABASE: &'static str = $database;
            const CREDENTIALS: bool = true;

            fn parse(url: &str) -> Result<MysqlTarget, DieselError> {
                parse(url, $schemes)
            }

            async fn open(
                target: &MysqlTarget,
                credentials: Option<&Credentials>,
            ) -> Result<(Self, ()), DieselError> {
                let conn = connect(target, credentials).await?;
                Ok((<$conn>::try_from(conn).await?, ()))
            }

            async fn check(conn: &mut Self) -> QueryResult<()> {
                // A text-protocol statement with no result set.
                conn.batch_execute("DO 1").await
            }

            fn is_closed(_conn: &mut Self, _extra: &()) -> bool {
                // diesel-async's `PoolableConnection::is_broken`, which the
                // manager also calls, sees mysql_async's disconnected flag.
                false
            }

            fn may_be_dirty(_conn: &mut Self, _extra: &()) -> bool {
                // diesel-async hides the driver's last OK packet (its
                // status flags say whether a transaction is open), so a
                // transaction begun with plain SQL cannot be ruled out.
                true
            }

            async fn rollback(conn: &mut Self) -> QueryResult<()> {
                conn.batch_execute("ROLLBACK").await
            }
        }
    };
}

mysql_like!(AsyncMysqlConnection, "MySQL", &["mysql"]);
mysql_like!(AsyncMariadbConnection, "MariaDB", &["mariadb", "mysql"]);
