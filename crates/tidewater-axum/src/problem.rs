//! Pool errors as HTTP responses: RFC 9457 problem details, never a bare 500.

use std::fmt;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The base of this crate's problem types: each `type` is this base
/// followed by a slug such as `pool-timeout`, so `/problems/pool-timeout`.
///
/// A relative reference, as RFC 9457 allows: a client resolves it against
/// the URI of the request it answers, so each type names a path on the
/// service that sent it (`https://bank.example/problems/pool-timeout`), a
/// place its operator controls, rather than a domain this project does not
/// own. The slugs, and what each means, are listed on [`PoolError`]; a
/// service may serve a page at each of those paths, and clients should
/// compare the slug (the last path segment) rather than the whole URI.
pub const PROBLEM_BASE: &str = "/problems/";

/// The media type of an RFC 9457 problem body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// A pool error as an HTTP response: the rejection of the [`Db`](crate::Db)
/// extractor, and what a handler returns with `?` on a
/// [`tidewater::Error`].
///
/// The response is an RFC 9457 problem (`application/problem+json`) whose
/// `type` names the cause ([`PROBLEM_BASE`] followed by the slug below), whose `detail` is the error's message (the cause,
/// the pool's numbers, the last connection error; never a credential), with
/// the extension members `pool`, `retryable` and, when a retry can help,
/// `retry_after_seconds`:
///
/// | error | status | `type` slug | `Retry-After` |
/// |---|---|---|---|
/// | `Timeout` | 503 | `pool-timeout` | 1 |
/// | `Unavailable` (breaker open) | 503 | `database-unavailable` | the error's `retry_after`, rounded up, at least 1 |
/// | `QueueFull` | 503 | `pool-queue-full` | 1 |
/// | `NoIdleConnection` | 503 | `pool-no-idle-connection` | 1 |
/// | `Closed` | 503 | `pool-closed` | none: this instance will not serve again |
/// | `Connect`, permanent | 500 | `database-connect-failed` | none; the detail names no backend message (it is logged instead) |
/// | `Connect`, transient | 503 | `database-connect-failed` | 1 |
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use axum::response::IntoResponse;
/// use tidewater_axum::PoolError;
/// # use tidewater_testkit::ScriptedManager;
///
/// let config = tidewater::PoolConfig { max_size: 1, max_waiters: 0, ..Default::default() };
/// let pool = tidewater::Pool::new(ScriptedManager::new(), config).unwrap();
/// let _held = pool.get().await.unwrap();
/// let error = pool.get().await.unwrap_err(); // the queue is full
///
/// let response = PoolError::from(error).into_response();
/// assert_eq!(response.status(), 503);
/// assert_eq!(response.headers()["retry-after"], "1");
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
/// let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(problem["type"], "/problems/pool-queue-full");
/// assert_eq!(problem["pool"], "default");
/// assert!(problem["detail"].as_str().unwrap().starts_with("too many callers waiting"));
/// # }
/// ```
///
/// In a handler:
///
/// ```
/// use axum::extract::State;
/// use tidewater::Pool;
/// use tidewater_axum::PoolError;
/// # use tidewater_testkit::ScriptedManager;
///
/// async fn count(State(pool): State<Pool<ScriptedManager>>) -> Result<String, PoolError> {
///     let conn = pool.get().await?; // an error becomes a 503 (or 500) problem
///     Ok(conn.id().to_string())
/// }
/// ```
#[derive(Clone, Debug)]
pub struct PoolError(pub tidewater::Error);

impl From<tidewater::Error> for PoolError {
    fn from(error: tidewater::Error) -> Self {
        Self(error)
    }
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl PoolError {
    /// The HTTP status the error maps to: 500 for a permanent connection
    /// error, 503 for everything else.
    ///
    /// ```
    /// let error = tidewater_axum::PoolError(tidewater::Error::Closed { pool: "orders".into() });
    /// assert_eq!(error.status(), 503);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.problem().status
    }

    fn problem(&self) -> Problem {
        use tidewater::Error;
        let error = &self.0;
        let pool = error
            .status()
            .map(|status| status.pool.to_string())
            .or_else(|| match error {
                Error::Closed { pool } => Some(pool.to_string()),
                _ => None,
            });
        let (slug, title) = match error {
            Error::Timeout { .. } => (
                "pool-timeout",
                "No database connection became available in time",
            ),
            Error::Unavailable { .. } => ("database-unavailable", "The database is unavailable"),
            Error::QueueFull { .. } => (
                "pool-queue-full",
                "Too many requests are waiting for a database connection",
            ),
            Error::NoIdleConnection { .. } => {
                ("pool-no-idle-connection", "No idle database connection")
            }
            Error::Closed { .. } => ("pool-closed", "The connection pool is closed"),
            Error::Connect(_) => ("database-connect-failed", "Cannot connect to the database"),
            _ => ("pool-error", "No database connection"),
        };
        let permanent = matches!(error, Error::Connect(cause) if !cause.class().is_transient());
        let detail = if permanent {
            // The backend's message may carry a user name, a host, a path:
            // it goes to the service's log, not to the client.
            "cannot connect to the database: the attempt failed with a permanent error \
             (the service's configuration, such as its credentials or database name, is wrong); \
             the service's log names the cause"
                .to_owned()
        } else {
            error.to_string()
        };
        let retryable = error.is_retryable();
        let retry_after = retryable.then(|| retry_after_seconds(error.retry_after()));
        Problem {
            slug,
            title,
            status: if permanent {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            detail,
            pool,
            retryable,
            retry_after,
        }
    }
}

impl IntoResponse for PoolError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        if problem.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.0, pool = problem.pool.as_deref().unwrap_or(""), "request failed: no database connection");
        }
        problem.into_response()
    }
}

/// Whole seconds to put in `Retry-After`: the hint rounded up, at least 1.
fn retry_after_seconds(hint: Option<Duration>) -> u64 {
    hint.map_or(1, |hint| {
        hint.as_secs() + u64::from(hint.subsec_nanos() > 0)
    })
    .max(1)
}

/// One RFC 9457 problem, as this crate writes them.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) slug: &'static str,
    pub(crate) title: &'static str,
    pub(crate) status: StatusCode,
    pub(crate) detail: String,
    pub(crate) pool: Option<String>,
    pub(crate) retryable: bool,
    /// Seconds for `Retry-After` (and `retry_after_seconds`).
    pub(crate) retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<&'a str>,
    retryable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u64>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            kind: format!("{PROBLEM_BASE}{}", self.slug),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            pool: self.pool.as_deref(),
            retryable: self.retryable,
            retry_after_seconds: self.retry_after,
        };
        let json = serde_json::to_vec(&body).expect("a problem always serializes");
        let mut response = (self.status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(retry_after_seconds(None), 1);
        assert_eq!(retry_after_seconds(Some(Duration::ZERO)), 1);
        assert_eq!(retry_after_seconds(Some(Duration::from_millis(100))), 1);
        assert_eq!(retry_after_seconds(Some(Duration::from_millis(1500))), 2);
        assert_eq!(retry_after_seconds(Some(Duration::from_secs(3))), 3);
    }
}
