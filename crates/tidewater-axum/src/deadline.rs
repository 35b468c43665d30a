//! Request deadlines: a bound on the whole request, which the [`Db`](crate::Db)
//! extractor also keeps while it waits for a connection.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{OptionalFromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::problem::Problem;

/// The header in which a client may send how many milliseconds it is still
/// willing to wait for the response. It can only shorten the server's
/// limit, never extend it.
pub const DEADLINE_HEADER: &str = "x-request-deadline-ms";

/// When the request must be answered: put in the request's extensions by
/// [`deadline_layer`], read by [`Db`](crate::Db) (which gives up its place in
/// the pool's queue when it passes) and by handlers that want to bound their
/// own work (`Option<RequestDeadline>` is an extractor).
///
/// ```
/// use std::time::Duration;
/// use tidewater_axum::RequestDeadline;
///
/// async fn handler(deadline: Option<RequestDeadline>) -> String {
///     match deadline {
///         Some(deadline) => format!("{:?} left", deadline.remaining()),
///         None => "no deadline".to_owned(),
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let deadline = RequestDeadline(tokio::time::Instant::now() + Duration::from_secs(2));
/// assert!(deadline.remaining() <= Duration::from_secs(2));
/// assert!(!deadline.has_passed());
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestDeadline(pub Instant);

impl RequestDeadline {
    /// Time left until the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn has_passed(&self) -> bool {
        Instant::now() >= self.0
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for RequestDeadline {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts.extensions.get::<RequestDeadline>().copied())
    }
}

/// A layer that bounds every request it wraps by `limit` (or by the
/// client's [`DEADLINE_HEADER`] when that is shorter): it puts a
/// [`RequestDeadline`] into the request's extensions, and when the deadline
/// passes it drops the handler (which returns any connection it held, and
/// leaves the pool's queue if it waited there) and answers `503` with the
/// problem `request-deadline-exceeded` and `Retry-After: 1`.
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use axum::body::Body;
/// use axum::http::Request;
/// use tower_service::Service;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut app: Router = Router::new()
///     .route("/slow", get(|| async { tokio::time::sleep(Duration::from_secs(60)).await }))
///     .layer(tidewater_axum::deadline_layer(Duration::from_millis(50)));
///
/// let response = app.call(Request::get("/slow").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(response.status(), 503);
/// assert_eq!(response.headers()["retry-after"], "1");
/// # }
/// ```
pub fn deadline_layer(limit: Duration) -> DeadlineLayer {
    DeadlineLayer { limit }
}

/// The layer [`deadline_layer`] makes.
#[derive(Clone, Copy, Debug)]
pub struct DeadlineLayer {
    limit: Duration,
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            limit: self.limit,
        }
    }
}

/// The service [`DeadlineLayer`] wraps around a router or handler.
#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S> Service<Request> for Deadline<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let now = Instant::now();
        let client_budget = request
            .headers()
            .get(DEADLINE_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_millis);
        let budget = client_budget.map_or(self.limit, |budget| budget.min(self.limit));
        let mut deadline = now + budget;
        // An outer deadline (this layer applied twice, say) still holds.
        if let Some(outer) = request.extensions().get::<RequestDeadline>() {
            deadline = deadline.min(outer.0);
        }
        request.extensions_mut().insert(RequestDeadline(deadline));
        // The clone that was driven to readiness serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let future = inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, future).await {
                Ok(outcome) => outcome,
                Err(_) => Ok(exceeded(deadline.saturating_duration_since(now)).into_response()),
            }
        })
    }
}

fn exceeded(budget: Duration) -> Problem {
    Problem {
        slug: "request-deadline-exceeded",
        title: "Request deadline exceeded",
        status: StatusCode::SERVICE_UNAVAILABLE,
        detail: format!("request deadline exceeded: no response within {budget:?}"),
        pool: None,
        retryable: true,
        retry_after: Some(1),
    }
}
