//! The service's errors, each answered with an RFC 9457 problem.
//!
//! Pool errors (no connection) are answered by [`tidewater_axum::PoolError`];
//! the rest by [`problem`], the one helper for this service's own problem
//! types, which share `tidewater_axum`'s base, [`tidewater_axum::PROBLEM_BASE`]
//! (`/problems/`, relative: a path on the service itself; the types are
//! listed in docs/service.md).

use std::fmt;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tidewater::ErrorClass;
use tidewater_axum::PoolError;

/// Why a request failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApiError {
    /// No connection from the pool: answered by [`PoolError`] (503 with
    /// `Retry-After`, or 500 for a permanent connection error).
    Pool(tidewater::Error),
    /// The database failed a statement. Transient failures (a lost
    /// connection, a server shutting down, a deadlock after every retry)
    /// are 503 with `Retry-After`; others 500, with the cause logged, not
    /// sent.
    Database {
        /// Whether retrying can help.
        class: ErrorClass,
        /// The backend's error (kept as the source, so that the
        /// transaction helpers find conflicts behind it).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No such account or transfer (404).
    NotFound {
        /// `account` or `transfer`.
        what: &'static str,
        /// Its id.
        id: i64,
    },
    /// The source account holds less than the amount (422).
    InsufficientFunds {
        /// The account debited.
        account: i64,
        /// Its balance.
        balance: i64,
        /// The amount asked for.
        amount: i64,
    },
    /// The credit would take the destination's balance past the largest
    /// accepted, [`MAX_AMOUNT`](crate::store::MAX_AMOUNT) (422).
    BalanceLimit {
        /// The account credited.
        account: i64,
        /// Its balance.
        balance: i64,
        /// The amount asked for.
        amount: i64,
        /// The largest balance accepted.
        limit: i64,
    },
    /// The request is well-formed but its values are not acceptable (422).
    Invalid(String),
    /// The request cannot be read: bad JSON, a wrong content type, a
    /// malformed id (400).
    BadRequest(String),
    /// An `Idempotency-Key` already used for a different request (422).
    KeyReused {
        /// The key.
        key: String,
        /// The transfer made under it.
        transfer: i64,
    },
    /// Another request committed a transfer under the same key while this
    /// one ran: look the key up again (internal, never answered).
    KeyClaimed,
}

impl ApiError {
    /// A database error of the given class.
    pub(crate) fn database(
        class: ErrorClass,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Database {
            class,
            source: Box::new(source),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pool(error) => error.fmt(f),
            Self::Database { source, .. } => write!(f, "database error: {source}"),
            Self::NotFound { what, id } => write!(f, "no {what} with id {id}"),
            Self::InsufficientFunds {
                account,
                balance,
                amount,
            } => write!(
                f,
                "account {account} holds {balance}, less than the {amount} to transfer"
            ),
            Self::BalanceLimit {
                account,
                balance,
                amount,
                limit,
            } => write!(
                f,
                "account {account} holds {balance}: crediting {amount} would take it past {limit}, the largest balance accepted"
            ),
            Self::Invalid(message) | Self::BadRequest(message) => f.write_str(message),
            Self::KeyReused { key, transfer } => write!(
                f,
                "Idempotency-Key {key:?} was already used for transfer {transfer}, with another request body"
            ),
            Self::KeyClaimed => f.write_str("the idempotency key was claimed concurrently"),
        }
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Pool(error) => Some(error),
            Self::Database { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

impl From<tidewater::Error> for ApiError {
    fn from(error: tidewater::Error) -> Self {
        Self::Pool(error)
    }
}

impl From<tidewater_sqlite::SqliteError> for ApiError {
    fn from(error: tidewater_sqlite::SqliteError) -> Self {
        Self::database(error.class(), error)
    }
}

impl From<tidewater_sqlite::rusqlite::Error> for ApiError {
    fn from(error: tidewater_sqlite::rusqlite::Error) -> Self {
        tidewater_sqlite::SqliteError::from(error).into()
    }
}

impl From<tidewater_postgres::PgError> for ApiError {
    fn from(error: tidewater_postgres::PgError) -> Self {
        Self::database(error.class(), error)
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> Self {
        tidewater_postgres::PgError::from(error).into()
    }
}

impl From<tidewater_mysql::MySqlError> for ApiError {
    fn from(error: tidewater_mysql::MySqlError) -> Self {
        Self::database(error.class(), error)
    }
}

impl From<mysql_async::Error> for ApiError {
    fn from(error: mysql_async::Error) -> Self {
        tidewater_mysql::MySqlError::from(error).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Pool(error) => PoolError(error).into_response(),
            Self::Database { class, source } => {
                if class.is_transient() {
                    tracing::warn!(error = %source, "request failed: transient database error");
                    let mut response = problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "database-error",
                        "The database failed the request; try again",
                        source.to_string(),
                        json!({ "retryable": true, "retry_after_seconds": 1 }),
                    );
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(1));
                    response
                } else {
                    tracing::error!(error = %source, "request failed: database error");
                    problem(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "database-error",
                        "The database failed the request",
                        "the database refused the statement; the service's log names the cause"
                            .to_owned(),
                        json!({ "retryable": false }),
                    )
                }
            }
            Self::NotFound { what, id } => problem(
                StatusCode::NOT_FOUND,
                &format!("{what}-not-found"),
                if what == "account" {
                    "No such account"
                } else {
                    "No such transfer"
                },
                format!("no {what} with id {id}"),
                json!({ what: id }),
            ),
            Self::InsufficientFunds {
                account,
                balance,
                amount,
            } => problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "insufficient-funds",
                "insufficient funds",
                format!("account {account} holds {balance}, less than the {amount} to transfer"),
                json!({ "account": account, "balance": balance, "amount": amount }),
            ),
            Self::BalanceLimit {
                account,
                balance,
                amount,
                limit,
            } => problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "balance-limit-exceeded",
                "The transfer would take a balance past the limit",
                format!(
                    "account {account} holds {balance} cents: crediting {amount} would take it past {limit} cents (2^53 - 1), the largest balance accepted"
                ),
                json!({ "account": account, "balance": balance, "amount": amount, "limit": limit }),
            ),
            Self::Invalid(detail) => problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-request",
                "The request's values are not acceptable",
                detail,
                json!({}),
            ),
            Self::BadRequest(detail) => problem(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "The request cannot be read",
                detail,
                json!({}),
            ),
            Self::KeyReused { key, transfer } => problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key already used for another request",
                format!(
                    "Idempotency-Key {key:?} was already used for transfer {transfer}, with another request body; use a new key for a new transfer"
                ),
                json!({ "transfer": transfer }),
            ),
            Self::KeyClaimed => {
                tracing::error!("an idempotency key claim escaped its retry loop");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal-error",
                    "Internal error",
                    "the request could not be completed".to_owned(),
                    json!({}),
                )
            }
        }
    }
}

/// An RFC 9457 problem response (`application/problem+json`): `type` is
/// `tidewater_axum`'s base URI followed by `slug`, and the members of
/// `extra` (an object) are added as extension members.
///
/// ```
/// use axum::http::StatusCode;
/// let response = tidewater_cli::error::problem(
///     StatusCode::UNPROCESSABLE_ENTITY, "insufficient-funds", "insufficient funds",
///     "account 1 holds 5".into(), serde_json::json!({ "account": 1 }),
/// );
/// assert_eq!(response.status(), 422);
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// ```
///
/// Its `type` is `/problems/insufficient-funds` here.
pub fn problem(
    status: StatusCode,
    slug: &str,
    title: &str,
    detail: String,
    extra: Value,
) -> Response {
    let mut body = Map::new();
    body.insert(
        "type".into(),
        Value::String(format!("{}{slug}", tidewater_axum::PROBLEM_BASE)),
    );
    body.insert("title".into(), Value::String(title.to_owned()));
    body.insert("status".into(), Value::from(status.as_u16()));
    body.insert("detail".into(), Value::String(detail));
    if let Value::Object(extra) = extra {
        body.extend(extra);
    }
    let mut response = (status, Value::Object(body).to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(tidewater_axum::PROBLEM_CONTENT_TYPE),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
