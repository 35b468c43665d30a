//! The Alertmanager webhook against receivers on loopback: a well-formed
//! v2 payload for a firing and then a resolved alert; and a receiver that
//! never answers, which must stall neither the code that raises alerts nor
//! the pool's maintenance task.
#![cfg(feature = "webhook")]

use std::time::Duration;

use axum::Json;
use axum::routing::post;
use serde_json::Value;
use tidewater::alerts::{AlertEvent, AlertSink, ServerCapacity};
use tidewater::webhook::{AlertmanagerWebhook, WebhookOptions};
use tidewater::{AlertConfig, PoolConfig};
use tidewater_testkit::scripted_pool;
use tokio::sync::mpsc;

/// An Alertmanager stand-in: every POSTed body goes to the channel.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Value>) {
    let (bodies, received) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/api/v2/alerts",
        post(move |Json(body): Json<Value>| {
            let bodies = bodies.clone();
            async move {
                let _ = bodies.send(body);
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v2/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn next(received: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("a POST arrives")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firing_and_resolved_alerts_reach_alertmanager_in_its_format() {
    let (url, mut received) = receiver().await;
    let mut config = PoolConfig {
        name: "orders".into(),
        maintenance_interval: Duration::from_millis(20),
        ..PoolConfig::default()
    };
    config.alerts.resolve_after = Duration::ZERO;
    let (pool, _) = scripted_pool(config);
    pool.add_alert_sink(AlertmanagerWebhook::new(&url).unwrap());

    pool.report_capacity(ServerCapacity {
        max_connections: 100,
        available: 3,
    });
    let firing = next(&mut received).await;
    let alert = &firing.as_array().expect("a list of alerts")[0];
    assert_eq!(alert["labels"]["alertname"], "TidewaterCapacityHeadroomLow");
    assert_eq!(alert["labels"]["pool_name"], "orders");
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(
        alert["annotations"]["description"],
        "the server has 3 of 100 connections left (3%)"
    );
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("orders: ")
    );
    let starts_at = alert["startsAt"].as_str().unwrap();
    assert!(
        humantime::parse_rfc3339(starts_at).is_ok(),
        "RFC 3339: {starts_at}"
    );
    assert!(alert.get("endsAt").is_none(), "firing: no end yet");

    pool.report_capacity(ServerCapacity {
        max_connections: 100,
        available: 50,
    });
    let resolved = next(&mut received).await;
    let alert = &resolved[0];
    assert_eq!(alert["labels"]["alertname"], "TidewaterCapacityHeadroomLow");
    assert_eq!(alert["startsAt"], starts_at);
    let ends_at = alert["endsAt"].as_str().expect("resolved: an end");
    assert!(
        humantime::parse_rfc3339(ends_at).unwrap() >= humantime::parse_rfc3339(starts_at).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_stalls_neither_the_caller_nor_the_pool() {
    // Accepts connections and never answers them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v2/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let options = WebhookOptions {
        queue: 4,
        timeout: Duration::from_secs(60),
        ..WebhookOptions::default()
    };
    let webhook = AlertmanagerWebhook::with_options(&url, options).unwrap();
    let config = PoolConfig {
        alerts: AlertConfig {
            resolve_after: Duration::ZERO,
            ..AlertConfig::default()
        },
        ..PoolConfig::default()
    };
    let (pool, _) = scripted_pool(config);
    pool.add_alert_sink(webhook.clone());
    let (events, mut received) = mpsc::unbounded_channel();
    pool.add_alert_sink(move |event: &AlertEvent| {
        let _ = events.send(event.clone());
    });
    let next_event = async |received: &mut mpsc::UnboundedReceiver<AlertEvent>| {
        tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("the alert's event arrives")
            .unwrap()
    };
    pool.report_capacity(ServerCapacity {
        max_connections: 100,
        available: 1,
    });
    let event = next_event(&mut received).await;
    assert!(event.is_firing());

    // A burst of events on a thread of its own: `notify` returns at once
    // even with the queue full and the receiver stuck (if it blocked, the
    // thread would never report back).
    let (done, burst_done) = std::sync::mpsc::channel();
    std::thread::spawn({
        let webhook = webhook.clone();
        move || {
            for _ in 0..1000 {
                webhook.notify(&event);
            }
            let _ = done.send(());
        }
    });
    burst_done
        .recv_timeout(Duration::from_secs(10))
        .expect("notify never blocks");
    assert!(
        webhook.dropped() >= 1000 - 4 - 2,
        "the queue is bounded: {} dropped",
        webhook.dropped()
    );

    // The pool's maintenance task, which calls the sinks, is not held up by
    // the stuck receiver: the next alert transition still reaches the other
    // sink.
    pool.report_capacity(ServerCapacity {
        max_connections: 100,
        available: 100,
    });
    let resolved = next_event(&mut received).await;
    assert!(!resolved.is_firing(), "{resolved:?}");
    drop(pool.get().await.expect("the pool serves"));
}

#[test]
fn only_http_urls_are_taken() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let error = AlertmanagerWebhook::new("ftp://example").unwrap_err();
    assert!(error.to_string().contains("is not an http://"), "{error}");
}
