//! Request deadlines: the whole request ends with a 503 problem when its
//! deadline passes, and a request queued for a connection leaves the queue.
//!
//! The router is called in-process under tokio's paused clock: time moves
//! only when every task is waiting, and then straight to the next timer.
//! So a state the test looks for (a request queued) lasts until the test
//! has seen it, however busy the machine, and each deadline can be checked
//! to the millisecond: an answer neither early nor late.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use axum::routing::get;
use serde_json::Value;
use tidewater::{Pool, PoolConfig};
use tidewater_axum::{DEADLINE_HEADER, Db, RequestDeadline, deadline_layer};
use tidewater_testkit::{ScriptedManager, scripted_pool};
use tokio::time::Instant;
use tower_service::Service;

use common::until_status;

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

/// `GET path`, with the deadline header when `deadline_ms` is given.
fn request(path: &str, deadline_ms: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(ms) = deadline_ms {
        request = request.header(DEADLINE_HEADER, ms);
    }
    request.body(Body::empty()).expect("a valid request")
}

/// Longer than any deadline here: an answer not given by then never
/// comes. On the paused clock it is reached at once, so a request that
/// hangs fails the test instead of hanging it.
const NO_ANSWER: Duration = Duration::from_secs(2 * 3600);

/// Serves `request` with `app`, in this task.
async fn call(mut app: Router, request: Request<Body>) -> Response {
    tokio::time::timeout(NO_ANSWER, app.call(request))
        .await
        .unwrap_or_else(|_| panic!("no answer within {NO_ANSWER:?}"))
        .expect("a router never fails")
}

/// The body of `response` as text.
async fn text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a readable body");
    String::from_utf8(bytes.to_vec()).expect("a UTF-8 body")
}

/// The status, `Retry-After` and JSON body of a problem response.
async fn problem(response: Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    let body = text(response).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, retry_after, json)
}

/// Asserts that `elapsed` is `deadline`, give or take the timer's tick
/// (tokio rounds a deadline up to the next millisecond).
fn assert_at(what: &str, elapsed: Duration, deadline: Duration) {
    assert!(
        elapsed >= deadline && elapsed <= deadline + Duration::from_millis(1),
        "{what}: answered after {elapsed:?}, not at the deadline of {deadline:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_deadline_passes_while_queued_gets_503_and_leaves_the_queue() {
    const LIMIT: Duration = Duration::from_secs(10);
    let (pool, _script) = scripted_pool(PoolConfig {
        max_size: 1,
        acquire_timeout: Duration::from_secs(60),
        ..PoolConfig::default()
    });
    let app = app(&pool, LIMIT);
    let held = pool.get().await.unwrap();

    let sent = Instant::now();
    let queued = tokio::spawn(call(app.clone(), request("/query", None)));
    until_status("the request is queued", &pool, |s| s.waiters == 1).await;
    assert!(sent.elapsed() < LIMIT, "seen queued before its deadline");
    let response = queued.await.unwrap();
    assert_at("the queued request", sent.elapsed(), LIMIT);
    let (status, retry_after, body) = problem(response).await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
    // Db waits for the connection until the request's deadline and then
    // gives up with the pool's own timeout, which carries the pool's state;
    // the layer's timer has the same deadline but is looked at after the
    // handler's, so the layer's answer (`request-deadline-exceeded`) would
    // mean that Db ignored the deadline.
    assert_eq!(body["type"], "/problems/pool-timeout", "{body}");
    assert_eq!(pool.status().waiters, 0, "it left the queue");
    assert_eq!(pool.stats().timeouts, 0, "long before acquire_timeout");

    drop(held);
    let response = call(app, request("/query", None)).await;
    assert_eq!(response.status(), 200);
    until_status("nothing was lost", &pool, |s| s.in_use == 0 && s.idle == 1).await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_handler_is_cut_off_at_the_deadline() {
    const LIMIT: Duration = Duration::from_millis(100);
    let (pool, _script) = scripted_pool(PoolConfig::default());

    let sent = Instant::now();
    let response = call(app(&pool, LIMIT), request("/slow", None)).await;
    assert_at("the slow handler", sent.elapsed(), LIMIT);
    let (status, retry_after, body) = problem(response).await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
    assert_eq!(body["type"], "/problems/request-deadline-exceeded");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("request deadline exceeded"),
        "{body}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_deadline_shortens_the_servers_and_never_extends_it() {
    let (pool, _script) = scripted_pool(PoolConfig::default());
    let app = app(&pool, Duration::from_secs(3600));

    // The client's 150 ms cut the handler off, not the server's hour.
    let sent = Instant::now();
    let response = call(app.clone(), request("/slow", Some("150"))).await;
    assert_eq!(response.status(), 503);
    assert_at(
        "the client's deadline",
        sent.elapsed(),
        Duration::from_millis(150),
    );

    // The clock stands still while a handler runs: the budget it sees is
    // exactly the shorter of the two.
    let shorter = call(app.clone(), request("/budget", Some("5000"))).await;
    assert_eq!(text(shorter).await, "5000");
    let longer = call(app.clone(), request("/budget", Some("999999999"))).await;
    assert_eq!(text(longer).await, "3600000", "never beyond the server's");

    let unbounded = call(app, request("/unbounded", None)).await;
    assert_eq!(text(unbounded).await, "none");
}
