//! The HTTP routes of [`Monitoring`]: health, metrics, the dashboard's JSON
//! and the dashboard itself.

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tidewater::prometheus::PoolMetrics;

use crate::monitoring::Monitoring;
use crate::problem::Problem;

/// The dashboard's files, embedded: (name under `/dashboard/`, content type,
/// bytes).
const ASSETS: [(&str, &str, &[u8]); 3] = [
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/dashboard.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../assets/icon.svg"),
    ),
];

const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");

/// Everything the page loads comes from this service; nothing inline.
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub(crate) fn router<S: Clone + Send + Sync + 'static>(monitoring: Monitoring) -> Router<S> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/pools", get(pools))
        .route("/dashboard", get(dashboard))
        .route("/dashboard/{asset}", get(asset))
        .with_state(monitoring)
}

/// Alive whenever it can answer at all; never touches a database.
async fn live() -> Response {
    no_store(Json(serde_json::json!({ "live": true })).into_response())
}

async fn ready(State(monitoring): State<Monitoring>) -> Response {
    let health = monitoring.health().await;
    let status = if health.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    no_store((status, Json(health)).into_response())
}

async fn metrics(State(monitoring): State<Monitoring>) -> Response {
    let mut response = monitoring.render_metrics().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PoolMetrics::CONTENT_TYPE),
    );
    no_store(response)
}

/// The query of `GET /api/pools`.
#[derive(Deserialize)]
struct PoolsQuery {
    /// Only this pool.
    pool: Option<String>,
    /// Only history points after this sample.
    after: Option<u64>,
}

async fn pools(
    State(monitoring): State<Monitoring>,
    query: Result<Query<PoolsQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => {
            return Problem {
                slug: "bad-query",
                title: "Bad query",
                status: StatusCode::BAD_REQUEST,
                detail: format!("{rejection}; expected ?pool=NAME and ?after=SAMPLE_NUMBER"),
                pool: None,
                retryable: false,
                retry_after: None,
            }
            .into_response();
        }
    };
    if let Some(name) = &query.pool
        && !monitoring.has_pool(name)
    {
        return Problem {
            slug: "unknown-pool",
            title: "Unknown pool",
            status: StatusCode::NOT_FOUND,
            detail: format!("no monitored pool is named {name:?}"),
            pool: Some(name.clone()),
            retryable: false,
            retry_after: None,
        }
        .into_response();
    }
    let report = monitoring.report_of(query.pool.as_deref(), query.after.unwrap_or(0));
    no_store(Json(report).into_response())
}

async fn dashboard() -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DASHBOARD_HTML,
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DASHBOARD_CSP),
    );
    static_headers(response)
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(asset, _, _)| *asset == name) {
        Some((_, content_type, bytes)) => {
            static_headers(([(header::CONTENT_TYPE, *content_type)], *bytes).into_response())
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Headers for the dashboard's files: revalidate (they change with the
/// service's version), and no content sniffing.
fn static_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
