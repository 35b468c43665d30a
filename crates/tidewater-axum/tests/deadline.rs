//! Request deadlines: the whole request ends with a 503 problem when its
//! deadline passes, and a request queued for a connection leaves the queue.

mod common;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::Value;
use tidewater::{Pool, PoolConfig};
use tidewater_axum::{DEADLINE_HEADER, Db, RequestDeadline, deadline_layer};
use tidewater_testkit::{ScriptedManager, scripted_pool};

use common::{client, serve, until_status};

async fn query(conn: Db<ScriptedManager>) -> String {
    conn.id().to_string()
}

async fn slow() -> &'static str {
    std::future::pending().await
}

async fn budget(deadline: Option<RequestDeadline>) -> String {
    match deadline {
        Some(deadline) => deadline.remaining().as_millis().to_string(),
        None => "none".to_owned(),
    }
}

fn app(pool: &Pool<ScriptedManager>, limit: Duration) -> Router {
    Router::new()
        .route("/query", get(query))
        .route("/slow", get(slow))
        .route("/budget", get(budget))
        .layer(deadline_layer(limit))
        .route("/unbounded", get(budget))
        .with_state(pool.clone())
}

async fn problem(response: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_deadline_passes_while_queued_gets_503_and_leaves_the_queue() {
    let (pool, _script) = scripted_pool(PoolConfig {
        max_size: 1,
        acquire_timeout: Duration::from_secs(60),
        ..PoolConfig::default()
    });
    let server = serve(app(&pool, Duration::from_millis(300))).await;
    let held = pool.get().await.unwrap();

    let request = tokio::spawn(client().get(server.url("/query")).send());
    until_status("the request is queued", &pool, |s| s.waiters == 1).await;
    let (status, retry_after, body) = problem(request.await.unwrap().unwrap()).await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
    // Db gives up at the deadline (`pool-timeout`); the layer's own answer
    // (`request-deadline-exceeded`) is the same deadline seen from outside.
    let kind = body["type"].as_str().unwrap();
    assert!(
        kind == "https://tidewater.dev/problems/pool-timeout"
            || kind == "https://tidewater.dev/problems/request-deadline-exceeded",
        "{body}"
    );
    assert_eq!(pool.status().waiters, 0, "it left the queue");
    assert_eq!(pool.stats().timeouts, 0, "long before acquire_timeout");

    drop(held);
    let response = client().get(server.url("/query")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    until_status("nothing was lost", &pool, |s| s.in_use == 0 && s.idle == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_is_cut_off_at_the_deadline() {
    let (pool, _script) = scripted_pool(PoolConfig::default());
    let server = serve(app(&pool, Duration::from_millis(100))).await;

    let (status, retry_after, body) =
        problem(client().get(server.url("/slow")).send().await.unwrap()).await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
    assert_eq!(
        body["type"],
        "https://tidewater.dev/problems/request-deadline-exceeded"
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("request deadline exceeded"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_deadline_shortens_the_servers_and_never_extends_it() {
    let (pool, _script) = scripted_pool(PoolConfig::default());
    // An hour: a test that waited for it would be cut off by the test runner.
    let server = serve(app(&pool, Duration::from_secs(3600))).await;
    let http = client();

    let response = http
        .get(server.url("/slow"))
        .header(DEADLINE_HEADER, "150")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);

    let remaining = |response: reqwest::Response| async move {
        response.text().await.unwrap().parse::<u64>().unwrap()
    };
    let shorter = http
        .get(server.url("/budget"))
        .header(DEADLINE_HEADER, "5000")
        .send()
        .await
        .unwrap();
    assert!(remaining(shorter).await <= 5000);
    let longer = http
        .get(server.url("/budget"))
        .header(DEADLINE_HEADER, "999999999")
        .send()
        .await
        .unwrap();
    let left = remaining(longer).await;
    assert!((3_000_000..=3_600_000).contains(&left), "{left}");

    let unbounded = http.get(server.url("/unbounded")).send().await.unwrap();
    assert_eq!(unbounded.text().await.unwrap(), "none");
}
