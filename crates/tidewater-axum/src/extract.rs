//! The `Db` extractor: a pooled connection for the length of a request.

use std::fmt;
use std::ops::{Deref, DerefMut};

use axum::extract::FromRef;
use axum::http::request::Parts;
use tidewater::{Manager, Pool, PooledConnection};
use tokio::time::Instant;

use crate::deadline::RequestDeadline;
use crate::problem::PoolError;

/// A connection from the [`Pool`] in the application's state, held for the
/// length of the request; derefs to the connection.
///
/// It goes back to the pool on every path, because the guard inside gives it
/// back when dropped: when the handler returns (also with an error), when it
/// panics (the connection task unwinds and the pool closes the connection,
/// since its work stopped at an unknown point), and when the client goes
/// away (hyper drops the handler's future, and with it the guard, or the
/// `get()` still waiting, which leaves the queue).
///
/// The wait is bounded by the pool's `acquire_timeout` and, when the request
/// carries a [`RequestDeadline`] (see [`deadline_layer`](crate::deadline_layer)),
/// by that deadline. A failure is rejected with [`PoolError`]: a `503`
/// problem with `Retry-After` (or a `500` for a permanent connection error).
///
/// The state must hold the pool: `State = Pool<M>`, or any state with
/// `impl FromRef<AppState> for Pool<M>`.
///
/// ```
/// use axum::{Router, routing::get};
/// use axum::body::Body;
/// use axum::http::Request;
/// use tidewater::Pool;
/// use tidewater_axum::Db;
/// use tidewater_testkit::ScriptedManager;
/// use tower_service::Service;
///
/// async fn whoami(conn: Db<ScriptedManager>) -> String {
///     format!("served on connection {}", conn.id()) // `id` of the ScriptedConnection
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = Pool::new(ScriptedManager::new(), Default::default()).unwrap();
/// let mut app = Router::new().route("/whoami", get(whoami)).with_state(pool.clone());
///
/// let response = app.call(Request::get("/whoami").body(Body::empty()).unwrap()).await.unwrap();
/// let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
/// assert_eq!(body, "served on connection 1");
/// assert_eq!((pool.status().in_use, pool.status().idle), (0, 1)); // back in the pool
/// # }
/// ```
///
/// With a state of several parts:
///
/// ```
/// use axum::extract::FromRef;
/// use tidewater::Pool;
/// use tidewater_testkit::ScriptedManager;
///
/// #[derive(Clone)]
/// struct AppState {
///     orders: Pool<ScriptedManager>,
///     greeting: String,
/// }
///
/// impl FromRef<AppState> for Pool<ScriptedManager> {
///     fn from_ref(state: &AppState) -> Self {
///         state.orders.clone()
///     }
/// }
///
/// async fn handler(tidewater_axum::Db(conn): tidewater_axum::Db<ScriptedManager>) -> String {
///     conn.id().to_string()
/// }
/// # let _ = axum::Router::<AppState>::new().route("/", axum::routing::get(handler));
/// ```
pub struct Db<M: Manager>(pub PooledConnection<M>);

impl<M: Manager> Deref for Db<M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        &self.0
    }
}

impl<M: Manager> DerefMut for Db<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.0
    }
}

impl<M: Manager> fmt::Debug for Db<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Db").field(&self.0.id()).finish()
    }
}

impl<M, S> axum::extract::FromRequestParts<S> for Db<M>
where
    M: Manager,
    Pool<M>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = PoolError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PoolError> {
        let pool = Pool::<M>::from_ref(state);
        let deadline = parts.extensions.get::<RequestDeadline>().copied();
        acquire(&pool, deadline).await.map(Db)
    }
}

/// Takes a connection from `pool`, giving up at `deadline` if there is one.
async fn acquire<M: Manager>(
    pool: &Pool<M>,
    deadline: Option<RequestDeadline>,
) -> Result<PooledConnection<M>, PoolError> {
    let Some(RequestDeadline(deadline)) = deadline else {
        return Ok(pool.get().await?);
    };
    let start = Instant::now();
    match tokio::time::timeout_at(deadline, pool.get()).await {
        Ok(outcome) => Ok(outcome?),
        // The `get()` future is dropped here: the caller has left the queue.
        Err(_) => Err(PoolError(tidewater::Error::Timeout {
            waited: start.elapsed(),
            status: pool.status(),
            last_connect_error: None,
        })),
    }
}
