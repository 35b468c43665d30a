//! # tidewater-axum
//!
//! [axum](https://docs.rs/axum) glue for [tidewater] pools:
//!
//! - [`Db`]: an extractor that takes a connection from the pool in the
//!   application's state for the length of a request, and gives it back on
//!   every path (handler error, panic, client gone);
//! - [`PoolError`]: a pool error as an RFC 9457 problem response: `503` with
//!   `Retry-After` when a retry can help, `500` (naming no backend detail)
//!   for a permanent connection error; never a bare `500`;
//! - [`deadline_layer`]: a bound on every request, which [`Db`] keeps while
//!   it waits for a connection;
//! - [`Monitoring`]: liveness, readiness, Prometheus metrics, a JSON API and
//!   a live dashboard (embedded; works offline) for any number of pools.
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use axum::body::Body;
//! use axum::http::Request;
//! use tidewater::{Pool, PoolConfig};
//! use tidewater_axum::{Db, Monitoring, deadline_layer};
//! use tidewater_testkit::ScriptedManager;
//! use tower_service::Service;
//!
//! async fn order(conn: Db<ScriptedManager>) -> String {
//!     format!("served on connection {}", conn.id())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let pool = Pool::new(ScriptedManager::new(), PoolConfig { name: "orders".into(), ..Default::default() }).unwrap();
//! let monitoring = Monitoring::new();
//! monitoring.register(pool.clone());
//!
//! let mut app: Router = Router::new()
//!     .route("/order", get(order))
//!     .layer(deadline_layer(Duration::from_secs(5)))
//!     .with_state(pool)
//!     .merge(monitoring.router()); // /health/live, /health/ready, /metrics, /api/pools, /dashboard
//!
//! // axum::serve(tokio::net::TcpListener::bind("127.0.0.1:8080").await?, app).await?;
//! let response = app.call(Request::get("/order").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(response.status(), 200);
//! let response = app.call(Request::get("/health/live").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(response.status(), 200);
//! # }
//! ```
//!
//! The JSON of `GET /api/pools` is [`PoolsReport`]; the health JSON is
//! documented in tidewater's `docs/health.md`.

mod deadline;
mod extract;
mod monitoring;
mod problem;
mod report;
mod routes;

pub use deadline::{DEADLINE_HEADER, Deadline, DeadlineLayer, RequestDeadline, deadline_layer};
pub use extract::Db;
pub use monitoring::{HISTORY_POINTS, Monitoring, SAMPLE_INTERVAL};
pub use problem::{PROBLEM_BASE, PROBLEM_CONTENT_TYPE, PoolError};
pub use report::{HistoryPoint, LeakReport, PoolReport, PoolsReport, Thresholds, Totals};
