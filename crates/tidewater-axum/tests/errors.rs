//! Pool errors over HTTP: RFC 9457 problems naming the cause, 503 with
//! `Retry-After` when a retry can help, 500 without backend detail for a
//! permanent connection error.

mod common;

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::Value;
use tidewater::{Backoff, BreakerConfig, ErrorClass, Pool, PoolConfig};
use tidewater_axum::{Db, PoolError};
use tidewater_testkit::{ScriptedManager, scripted_pool, spawn_get};

use common::{client, serve, until_status};

async fn extracted(conn: Db<ScriptedManager>) -> String {
    conn.id().to_string()
}

/// The same through `?` on `pool.get()`.
async fn by_hand(State(pool): State<Pool<ScriptedManager>>) -> Result<String, PoolError> {
    Ok(pool.get().await?.id().to_string())
}

fn app(pool: &Pool<ScriptedManager>) -> Router {
    Router::new()
        .route("/extracted", get(extracted))
        .route("/by-hand", get(by_hand))
        .with_state(pool.clone())
}

/// A problem response's status, `Retry-After` and body.
struct Problem {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
    text: String,
}

async fn problem(url: String) -> Problem {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().parse().unwrap());
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], status, "{text}");
    assert!(body["title"].is_string(), "{text}");
    assert!(body["detail"].is_string(), "{text}");
    if let Some(seconds) = retry_after {
        assert!(seconds >= 1);
        assert_eq!(body["retry_after_seconds"], seconds, "{text}");
    } else {
        assert!(body.get("retry_after_seconds").is_none(), "{text}");
    }
    Problem {
        status,
        retry_after,
        body,
        text,
    }
}

fn detail(problem: &Problem) -> &str {
    problem.body["detail"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_answers_503_with_retry_after_naming_the_cause() {
    let (pool, _script) = scripted_pool(PoolConfig {
        name: "orders".into(),
        max_size: 1,
        acquire_timeout: Duration::from_millis(200),
        ..PoolConfig::default()
    });
    let server = serve(app(&pool)).await;
    let _held = pool.get().await.unwrap();

    for path in ["/extracted", "/by-hand"] {
        let timeout = problem(server.url(path)).await;
        assert_eq!(timeout.status, 503);
        assert_eq!(timeout.retry_after, Some(1));
        assert_eq!(timeout.body["type"], "/problems/pool-timeout");
        assert_eq!(timeout.body["pool"], "orders");
        assert_eq!(timeout.body["retryable"], true);
        let detail = detail(&timeout);
        assert!(
            detail.starts_with("timed out after") && detail.contains("1 of 1 open, 1 in use"),
            "{detail}"
        );
    }
    until_status("no waiter left", &pool, |s| s.waiters == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_at_once() {
    let (pool, _script) = scripted_pool(PoolConfig {
        name: "orders".into(),
        max_size: 1,
        max_waiters: 0,
        ..PoolConfig::default()
    });
    let server = serve(app(&pool)).await;
    let _held = pool.get().await.unwrap();

    let full = problem(server.url("/extracted")).await;
    assert_eq!((full.status, full.retry_after), (503, Some(1)));
    assert_eq!(full.body["type"], "/problems/pool-queue-full");
    assert!(
        detail(&full).starts_with("too many callers waiting"),
        "{}",
        full.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_answers_503_with_the_breakers_retry_after() {
    let (pool, script) = scripted_pool(PoolConfig {
        name: "orders".into(),
        breaker: BreakerConfig {
            failure_threshold: 2,
            ..Default::default()
        },
        connect_backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(2500),
        },
        acquire_timeout: Duration::from_secs(5),
        ..PoolConfig::default()
    });
    let server = serve(app(&pool)).await;
    script.set_down(Some(ErrorClass::Transient));
    let _caller = spawn_get(&pool);
    until_status("the breaker opens", &pool, |s| s.breaker_open).await;

    let unavailable = problem(server.url("/extracted")).await;
    assert_eq!(unavailable.status, 503);
    assert_eq!(unavailable.body["type"], "/problems/database-unavailable");
    // The breaker's next probe is at most connect_backoff.max away: 2.5 s
    // rounds up to at most 3.
    let seconds = unavailable.retry_after.expect("a Retry-After header");
    assert!((1..=3).contains(&seconds), "{seconds}");
    let detail = detail(&unavailable);
    assert!(
        detail.starts_with("database unavailable") && detail.contains("connection refused"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_connection_error_answers_500_without_backend_detail() {
    let (pool, script) = scripted_pool(PoolConfig {
        name: "orders".into(),
        ..PoolConfig::default()
    });
    let server = serve(app(&pool)).await;
    script.set_down(Some(ErrorClass::Permanent)); // "password authentication failed"

    for path in ["/extracted", "/by-hand"] {
        let failed = problem(server.url(path)).await;
        assert_eq!((failed.status, failed.retry_after), (500, None));
        assert_eq!(failed.body["type"], "/problems/database-connect-failed");
        assert_eq!(failed.body["retryable"], false);
        assert!(
            detail(&failed).contains("permanent error"),
            "{}",
            failed.text
        );
        assert!(
            !failed.text.contains("password"),
            "the backend's message stays in the log: {}",
            failed.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pool_answers_503_without_retry_after() {
    let (pool, _script) = scripted_pool(PoolConfig {
        name: "orders".into(),
        ..PoolConfig::default()
    });
    let server = serve(app(&pool)).await;
    pool.close().await;

    let closed = problem(server.url("/extracted")).await;
    assert_eq!((closed.status, closed.retry_after), (503, None));
    assert_eq!(closed.body["type"], "/problems/pool-closed");
    assert_eq!(closed.body["pool"], "orders");
    assert_eq!(detail(&closed), "pool \"orders\" is closed");
}
