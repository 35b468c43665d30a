//! A small axum service on diesel-async, pooled by tidewater: one query
//! endpoint, plus health, Prometheus metrics and the live dashboard from
//! tidewater-axum.
//!
//! ```text
//! cargo run -p tidewater-diesel --example diesel_service -- postgres://postgres@127.0.0.1:5432/test
//! curl 'http://127.0.0.1:3000/sum?upto=10'    # {"upto":10,"total":55}
//! curl http://127.0.0.1:3000/health/ready
//! curl http://127.0.0.1:3000/metrics
//! open http://127.0.0.1:3000/dashboard
//! ```
//!
//! The database URL comes from the first argument, else `DATABASE_URL`,
//! else the local test server; the address from `BIND` (default
//! 127.0.0.1:3000).

use std::time::Duration;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use tidewater::{Pool, PoolConfig};
use tidewater_axum::{Db, Monitoring, deadline_layer};
use tidewater_diesel::PgManager;

/// The query string of `/sum`.
#[derive(serde::Deserialize)]
pub struct SumParams {
    upto: i64,
}

#[derive(diesel::QueryableByName, serde::Serialize)]
struct Sum {
    #[diesel(sql_type = BigInt)]
    upto: i64,
    #[diesel(sql_type = BigInt)]
    total: i64,
}

/// A database error as a `500` that names no detail (the log has it).
pub struct QueryFailed(diesel::result::Error);

impl IntoResponse for QueryFailed {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "query failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "query failed").into_response()
    }
}

/// `GET /sum?upto=N`: the sum of 1..=N, computed by PostgreSQL through
/// diesel on a pooled connection.
async fn sum(
    mut conn: Db<PgManager>,
    Query(params): Query<SumParams>,
) -> Result<Json<Sum>, QueryFailed> {
    let sum: Sum = diesel::sql_query(
        "SELECT $1 AS upto, coalesce(sum(g), 0)::int8 AS total FROM generate_series(1, $1) AS g",
    )
    .bind::<BigInt, _>(params.upto)
    .get_result(&mut *conn)
    .await
    .map_err(QueryFailed)?;
    Ok(Json(sum))
}

/// The service: `/sum`, and tidewater-axum's `/health/live`,
/// `/health/ready`, `/metrics`, `/api/pools` and `/dashboard`.
pub fn app(pool: Pool<PgManager>) -> Router {
    let monitoring = Monitoring::new();
    monitoring.register(pool.clone());
    Router::new()
        .route("/sum", get(sum))
        .layer(deadline_layer(Duration::from_secs(5)))
        .with_state(pool)
        .merge(monitoring.router())
}

/// A pool named `diesel-example` on `url`.
pub fn pool(url: &str) -> Result<Pool<PgManager>, Box<dyn std::error::Error>> {
    let config = PoolConfig {
        name: "diesel-example".into(),
        max_size: 10,
        ..PoolConfig::default()
    };
    Ok(PgManager::new(url)?.into_pool(config)?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let pool = pool(&url)?;
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("listening on http://{bind} (dashboard: /dashboard)");
    axum::serve(listener, app(pool)).await?;
    Ok(())
}
