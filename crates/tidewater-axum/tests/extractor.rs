//! The `Db` extractor gives its connection back on every path: a handler
//! error, a handler panic, a client that goes away while the handler holds
//! the connection, and a client that goes away while queued for one.

mod common;

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tidewater::{CloseReason, Pool, PoolConfig};
use tidewater_axum::Db;
use tidewater_testkit::{ScriptedManager, scripted_pool};

use common::{client, serve, until_status};

type Conn = Db<ScriptedManager>;

async fn ok(conn: Conn) -> String {
    conn.id().to_string()
}

async fn fails(conn: Conn) -> Result<String, (StatusCode, String)> {
    Err((
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("connection {} did not like it", conn.id()),
    ))
}

async fn panics(conn: Conn) -> String {
    panic!("handler bug while holding connection {}", conn.id());
}

async fn hangs(_conn: Conn) -> String {
    std::future::pending().await
}

fn app(pool: &Pool<ScriptedManager>) -> Router {
    Router::new()
        .route("/ok", get(ok))
        .route("/fails", get(fails))
        .route("/panics", get(panics))
        .route("/hangs", get(hangs))
        .with_state(pool.clone())
}

fn config() -> PoolConfig {
    PoolConfig {
        name: "extractor".into(),
        max_size: 1,
        acquire_timeout: Duration::from_secs(30),
        ..PoolConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_succeeds_or_fails_gives_the_connection_back() {
    let (pool, _script) = scripted_pool(config());
    let server = serve(app(&pool)).await;
    let http = client();

    let response = http.get(server.url("/ok")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "1");
    until_status("back after success", &pool, |s| {
        s.in_use == 0 && s.idle == 1
    })
    .await;

    let response = http.get(server.url("/fails")).send().await.unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.text().await.unwrap(),
        "connection 1 did not like it"
    );
    until_status("back after a handler error", &pool, |s| {
        s.in_use == 0 && s.idle == 1
    })
    .await;
    // The same connection serves the next request: nothing was lost.
    let response = http.get(server.url("/ok")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_gives_the_connection_back() {
    let (pool, script) = scripted_pool(config());
    let server = serve(app(&pool)).await;
    let http = client();

    // The connection task unwinds: the client sees the connection close.
    let outcome = http.get(server.url("/panics")).send().await;
    assert!(outcome.is_err(), "{outcome:?}");
    until_status("slot freed after a panic", &pool, |s| {
        s.in_use == 0 && s.size == 0
    })
    .await;
    // Its work stopped at an unknown point: the pool closed it.
    assert_eq!(pool.stats().closed_by(CloseReason::Panicked), 1);
    assert_eq!(script.alive(), 0);

    // The pool still serves (max_size is 1: the slot came back).
    let response = http.get(server.url("/ok")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_while_the_handler_holds_the_connection_gives_it_back() {
    let (pool, _script) = scripted_pool(config());
    let server = serve(app(&pool)).await;

    let request = tokio::spawn(client().get(server.url("/hangs")).send());
    until_status("the handler holds the connection", &pool, |s| s.in_use == 1).await;
    request.abort(); // the client hangs up
    let _ = request.await;

    until_status("back after the client left", &pool, |s| {
        s.in_use == 0 && s.idle == 1
    })
    .await;
    assert_eq!(pool.stats().closed_total(), 0, "returned, not discarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_times_out_while_queued_leaves_the_queue() {
    let (pool, _script) = scripted_pool(config());
    let server = serve(app(&pool)).await;
    let held = pool.get().await.unwrap(); // the pool's only connection

    let request = tokio::spawn(
        client()
            .get(server.url("/ok"))
            .timeout(Duration::from_secs(2))
            .send(),
    );
    until_status("the request waits in the queue", &pool, |s| s.waiters == 1).await;
    let outcome = request.await.unwrap();
    assert!(
        outcome.as_ref().is_err_and(reqwest::Error::is_timeout),
        "{outcome:?}"
    );

    // hyper dropped the handler's future, and with it the queued get().
    until_status("the queue is empty again", &pool, |s| s.waiters == 0).await;
    drop(held);
    until_status("nothing was lost", &pool, |s| {
        s.in_use == 0 && s.idle == 1 && s.waiters == 0
    })
    .await;
    assert_eq!(pool.stats().timeouts, 0, "the pool never timed out itself");
}
