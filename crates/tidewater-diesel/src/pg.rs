//! PostgreSQL: a session opened by tidewater-postgres
//! ([`PgManager::open_session`](tidewater_postgres::PgManager::open_session):
//! every host like libpq, `target_session_attrs`, TLS with the `rustls`
//! feature, the tap that reads the transaction status off the socket),
//! handed to diesel-async with `AsyncPgConnection::try_from(client)`.
//!
//! Why not `AsyncPgConnection::establish`: it reports a bad password as
//! `ConnectionError::BadConnection(String)` (only a message) and hides
//! its socket, so whether a returned session is inside a transaction
//! would be unknowable. Opening the session with tidewater-postgres keeps
//! tokio-postgres's typed errors (SQLSTATE `28P01`, `3D000`...) and the
//! tap reads the session's transaction status off the wire for free.
//!
//! The price: diesel-async's `notifications_stream` (LISTEN/NOTIFY) is
//! not fed, since tidewater-postgres drives the socket; use a dedicated
//! `AsyncPgConnection::establish` connection for listening.

use diesel::QueryResult;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tidewater::credentials::Credentials;
use tidewater_postgres::{PgManager, PgOptions, SessionWatch};

use crate::driver::sealed::Open;
use crate::error::DieselError;

impl Open for AsyncPgConnection {
    /// Parses the URL and opens the sessions; no setup SQL of its own
    /// (the diesel manager's runs after diesel-async's session settings).
    type Target = PgManager;
    type Extra = SessionWatch;
    const DATABASE: &'static str = "PostgreSQL";
    const CREDENTIALS: bool = true;

    fn parse(url: &str) -> Result<PgManager, DieselError> {
        let options = PgOptions {
            url: url.to_owned(),
            ..PgOptions::default()
        };
        Ok(PgManager::new(options)?)
    }

    async fn open(
        target: &PgManager,
        credentials: Option<&Credentials>,
    ) -> Result<(Self, SessionWatch), DieselError> {
        let (client, watch) = target.open_session(credentials).await?;
        let conn = AsyncPgConnection::try_from(client).await?;
        Ok((conn, watch))
    }

    async fn check(conn: &mut Self) -> QueryResult<()> {
        // An empty simple query: one round trip, no plan, no snapshot.
        conn.batch_execute("").await
    }

    fn is_closed(_conn: &mut Self, watch: &SessionWatch) -> bool {
        watch.is_closed()
    }

    fn may_be_dirty(_conn: &mut Self, watch: &SessionWatch) -> bool {
        !watch.transaction_status().is_clean()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_by_tidewater_postgres_with_passwords_redacted() {
        let parse = <AsyncPgConnection as Open>::parse;
        let error = parse("postgres://app:s3cret@/orders").err().unwrap();
        assert!(matches!(error, DieselError::Config(_)), "{error:?}");
        assert!(error.to_string().contains("no host"), "{error}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let error = parse("postgres://db:notaport/x?password=s3cret")
            .err()
            .unwrap();
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let tls = parse("postgres://app@db/orders?sslmode=require");
        if cfg!(feature = "rustls") {
            assert!(tls.is_ok());
        } else {
            let error = tls.err().unwrap();
            assert!(error.to_string().contains("`rustls` feature"), "{error}");
        }
    }
}
