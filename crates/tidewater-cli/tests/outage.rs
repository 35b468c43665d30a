//! The service through an outage of its database: a PRIVATE PostgreSQL
//! cluster of the test's own (the shared servers are never stopped) is
//! stopped and started again under the running service. Meanwhile
//! `/health/ready` says 503 and names the failing check, `/health/live`
//! stays 200, the API answers 503 problems with `Retry-After` (never a bare
//! 500) within the request deadline; afterwards it is ready again and
//! transfers go through.

mod common;

use std::time::{Duration, Instant};

use common::{Answer, Service, poll_until};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tidewater_testkit::{PgCluster, Shutdown};

/// The service's `request_timeout`: every answer must come before it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// The pool's `acquire_timeout`, below `REQUEST_TIMEOUT`, so the pool's
/// own problem answers first.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long readiness may take to follow the database down or up.
const FLIP_DEADLINE: Duration = Duration::from_secs(20);

/// The problem slugs that mean "no database now, try again later".
const UNAVAILABLE: [&str; 4] = [
    "pool-timeout",
    "database-unavailable",
    "database-connect-failed",
    "database-error",
];

/// `GET path`, timed.
async fn timed_get(service: &Service, path: &str) -> (Answer, Duration) {
    let start = Instant::now();
    let answer = service.get(path).await;
    (answer, start.elapsed())
}

/// `POST path`, timed.
async fn timed_post(service: &Service, path: &str, body: &Value) -> (Answer, Duration) {
    let start = Instant::now();
    let answer = service.post(path, body, None).await;
    (answer, start.elapsed())
}

/// A 503 problem of one of the [`UNAVAILABLE`] types, with `Retry-After`,
/// answered within the request deadline by the pool (not by the deadline).
fn assert_unavailable(what: &str, answer: &Answer, took: Duration) {
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {answer:?}"
    );
    assert_eq!(
        answer.headers["content-type"], "application/problem+json",
        "{what}: {answer:?}"
    );
    let kind = answer.body["type"].as_str().unwrap_or_default();
    let slug = kind.rsplit('/').next().unwrap_or_default();
    assert!(
        kind.starts_with(tidewater_axum::PROBLEM_BASE) && UNAVAILABLE.contains(&slug),
        "{what}: type {kind:?} is not one of {UNAVAILABLE:?}: {answer:?}"
    );
    assert_eq!(answer.body["status"], 503, "{what}: {answer:?}");
    assert!(
        answer.body["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{what}: {answer:?}"
    );
    let retry_after = answer.retry_after();
    assert!(
        retry_after.is_some_and(|seconds| seconds >= 1),
        "{what}: no Retry-After of at least 1 s: {answer:?}"
    );
    assert_eq!(
        answer.body["retryable"], true,
        "{what}: not marked retryable: {answer:?}"
    );
    assert!(
        took < REQUEST_TIMEOUT,
        "{what}: answered after {took:?}, past the {REQUEST_TIMEOUT:?} request deadline"
    );
}

/// The `checks` of the (only) pool in a `/health/ready` body.
fn checks(body: &Value) -> &Vec<Value> {
    body["pools"][0]["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {body}"))
}

fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    checks(body)
        .iter()
        .find(|check| check["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_and_the_api_follow_a_database_outage_and_recovery() {
    let cluster = PgCluster::new()
        .await
        .expect("a private PostgreSQL cluster starts (is PostgreSQL installed?)");
    cluster.create_database("bank").await.unwrap();
    let url = cluster.url_for(PgCluster::SUPERUSER, PgCluster::PASSWORD, "bank");

    let mut config = common::config(&url);
    config.request_timeout = REQUEST_TIMEOUT;
    config.pool.max_size = 4;
    config.pool.acquire_timeout = ACQUIRE_TIMEOUT;
    config.pool.connect_timeout = Duration::from_secs(1);
    config.pool.validation_timeout = Duration::from_secs(1);
    config.pool.connect_backoff.max = Duration::from_millis(500);
    let service = Service::start(config).await;

    // Up: ready, and the bank works.
    let ready = service.get("/health/ready").await;
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");
    assert_eq!(ready.body["ready"], true, "{ready:?}");
    assert_eq!(
        check(&ready.body, "acquire")["status"],
        "healthy",
        "{ready:?}"
    );
    let alice = service.account(100).await;
    let bob = service.account(0).await;

    // Down.
    cluster.stop(Shutdown::Fast).await.unwrap();
    // At once, before the pool has noticed: its idle connections are dead.
    let (answer, took) = timed_post(
        &service,
        "/api/transfers",
        &json!({ "from": alice, "to": bob, "amount": 10 }),
    )
    .await;
    assert_unavailable("the first transfer after the stop", &answer, took);
    let down = poll_until(
        "/health/ready to answer 503 once the database is down",
        FLIP_DEADLINE,
        async || {
            let answer = service.get("/health/ready").await;
            (answer.status == StatusCode::SERVICE_UNAVAILABLE).then_some(answer)
        },
    )
    .await;
    assert_eq!(down.body["ready"], false, "{down:?}");
    assert_eq!(down.body["live"], true, "{down:?}");
    assert_eq!(down.body["status"], "unhealthy", "{down:?}");
    assert_eq!(down.body["pools"][0]["pool"], "tidewater", "{down:?}");
    // The body names the failing check, and says why.
    let acquire = check(&down.body, "acquire");
    assert_eq!(acquire["status"], "unhealthy", "{down:?}");
    assert!(
        acquire["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{down:?}"
    );
    // Every API route answers a retryable 503 problem in time, a few
    // rounds over: before and after the pool's breaker opens.
    for round in 0..3 {
        let (answer, took) = timed_get(&service, &format!("/api/accounts/{alice}")).await;
        assert_unavailable(&format!("round {round}: GET account"), &answer, took);
        let (answer, took) = timed_get(&service, &format!("/api/accounts/{alice}/ledger")).await;
        assert_unavailable(&format!("round {round}: GET ledger"), &answer, took);
        let (answer, took) = timed_post(
            &service,
            "/api/transfers",
            &json!({ "from": alice, "to": bob, "amount": 10 }),
        )
        .await;
        assert_unavailable(&format!("round {round}: POST transfer"), &answer, took);
        let (answer, took) = timed_post(
            &service,
            "/api/accounts",
            &json!({ "name": "carol", "balance": 5 }),
        )
        .await;
        assert_unavailable(&format!("round {round}: POST account"), &answer, took);

        // Alive all along: liveness never touches the database.
        let (live, took) = timed_get(&service, "/health/live").await;
        assert_eq!(live.status, StatusCode::OK, "{live:?}");
        assert_eq!(live.body, json!({ "live": true }), "{live:?}");
        assert!(took < REQUEST_TIMEOUT, "/health/live took {took:?}");
    }
    // Still not ready while the database is down.
    let (still_down, took) = timed_get(&service, "/health/ready").await;
    assert_eq!(
        still_down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{still_down:?}"
    );
    assert_eq!(still_down.body["ready"], false, "{still_down:?}");
    assert!(took < REQUEST_TIMEOUT, "/health/ready took {took:?}");

    // Up again.
    cluster.start().await.unwrap();
    let up = poll_until(
        "/health/ready to answer 200 once the database is back",
        FLIP_DEADLINE,
        async || {
            let answer = service.get("/health/ready").await;
            (answer.status == StatusCode::OK).then_some(answer)
        },
    )
    .await;
    assert_eq!(up.body["ready"], true, "{up:?}");
    assert_eq!(check(&up.body, "acquire")["status"], "healthy", "{up:?}");
    assert_eq!(check(&up.body, "breaker")["status"], "healthy", "{up:?}");

    let transfer = service
        .transfer(alice, bob, 25, Some("after-the-outage"))
        .await;
    assert_eq!(transfer.status, StatusCode::CREATED, "{transfer:?}");
    // Nothing the outage's requests asked for happened, and the transfer did.
    assert_eq!(service.balance(alice).await, 75);
    assert_eq!(service.balance(bob).await, 25);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let count = async |table: &str| -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        client.query_one(&sql, &[]).await.unwrap().get(0)
    };
    assert_eq!(
        count("accounts").await,
        2,
        "an account was opened during the outage"
    );
    assert_eq!(count("transfers").await, 1);
    drop(client);
    let _ = connection.await;

    service.stop().await;
    // Stops the private server (immediate shutdown) and removes its folder.
    drop(cluster);
}
