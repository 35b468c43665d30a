//! The monitoring routes over real HTTP: liveness, readiness through a
//! database outage, the Prometheus exposition, the dashboard's JSON and the
//! dashboard's files.

mod common;

use std::time::Duration;

use axum::Router;
use prometheus_parse::{Scrape, Value as Metric};
use serde_json::Value;
use tidewater::alerts::ServerCapacity;
use tidewater::metric_names::{CONNECTION_COUNT, CONNECTION_MAX};
use tidewater::prometheus::PoolMetrics;
use tidewater::{Backoff, BreakerConfig, ErrorClass, PoolConfig};
use tidewater_axum::Monitoring;
use tidewater_testkit::{fleet_status, scripted_pool, spawn_get};

use common::{client, eventually, serve, until_status};

async fn json(url: String) -> (u16, Value) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_and_liveness_never_does() {
    let (pool, script) = scripted_pool(PoolConfig {
        name: "orders".into(),
        breaker: BreakerConfig {
            failure_threshold: 2,
            ..Default::default()
        },
        connect_backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(100),
        },
        acquire_timeout: Duration::from_secs(2),
        ..PoolConfig::default()
    });
    let monitoring = Monitoring::new();
    monitoring.register(pool.clone());
    let server = serve(Router::new().merge(monitoring.router())).await;

    let (status, live) = json(server.url("/health/live")).await;
    assert_eq!((status, live), (200, serde_json::json!({ "live": true })));
    let (status, ready) = json(server.url("/health/ready")).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(
        (ready["live"].clone(), ready["ready"].clone()),
        (true.into(), true.into())
    );
    assert_eq!(ready["status"], "healthy");
    assert_eq!(ready["pools"][0]["pool"], "orders");

    // The database goes down: the breaker opens, the service is not ready.
    script.set_down(Some(ErrorClass::Transient));
    drop(pool.get().await.unwrap().detach()); // no connection left
    let _caller = spawn_get(&pool);
    until_status("the breaker opens", &pool, |s| s.breaker_open).await;
    let not_ready = eventually("readiness turns 503", || async {
        let (status, body) = json(server.url("/health/ready")).await;
        if status == 503 {
            Ok(body)
        } else {
            Err((status, body))
        }
    })
    .await;
    assert_eq!(not_ready["ready"], false);
    assert_eq!(not_ready["live"], true);
    assert_eq!(not_ready["status"], "unhealthy");
    let checks = not_ready["pools"][0]["checks"].as_array().unwrap();
    let breaker = checks
        .iter()
        .find(|check| check["name"] == "breaker")
        .unwrap();
    assert_eq!(breaker["status"], "unhealthy");
    assert!(
        breaker["reason"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{breaker}"
    );
    let (status, live) = json(server.url("/health/live")).await;
    assert_eq!((status, live["live"].clone()), (200, true.into()));

    // It comes back: the breaker's probe reconnects, the service is ready.
    script.set_down(None);
    eventually("readiness turns 200", || async {
        let (status, body) = json(server.url("/health/ready")).await;
        if status == 200 {
            Ok(body)
        } else {
            Err((status, body))
        }
    })
    .await;
    assert!(!pool.status().breaker_open);
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("valid exposition text")
}

fn gauge(scrape: &Scrape, metric: &str, pool: &str) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|sample| sample.metric == metric && sample.labels.get("pool_name") == Some(pool))
        .unwrap_or_else(|| panic!("no {metric} for {pool}"));
    match sample.value {
        Metric::Gauge(value) | Metric::Counter(value) | Metric::Untyped(value) => value,
        ref other => panic!("{metric}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_show_every_pool() {
    let (orders, _) = scripted_pool(PoolConfig {
        name: "orders".into(),
        max_size: 4,
        ..PoolConfig::default()
    });
    let (billing, _) = scripted_pool(PoolConfig {
        name: "billing".into(),
        max_size: 7,
        ..PoolConfig::default()
    });
    let monitoring = Monitoring::new();
    monitoring.register(orders.clone());
    monitoring.register(billing.clone());
    let server = serve(Router::new().merge(monitoring.router())).await;
    let _held = orders.get().await.unwrap();

    let response = client().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        PoolMetrics::CONTENT_TYPE
    );
    let scrape = parse(&response.text().await.unwrap());
    assert_eq!(gauge(&scrape, CONNECTION_MAX, "orders"), 4.0);
    assert_eq!(gauge(&scrape, CONNECTION_MAX, "billing"), 7.0);
    let used = scrape
        .samples
        .iter()
        .find(|sample| {
            sample.metric == CONNECTION_COUNT
                && sample.labels.get("pool_name") == Some("orders")
                && sample.labels.get("state") == Some("used")
        })
        .unwrap();
    assert!(
        matches!(used.value, Metric::Gauge(value) if value == 1.0),
        "{used:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pools_api_has_the_documented_shape() {
    let (orders, _) = scripted_pool(PoolConfig {
        name: "orders".into(),
        max_size: 4,
        leak_detection_threshold: Some(Duration::from_millis(100)),
        ..PoolConfig::default()
    });
    let (billing, _) = scripted_pool(PoolConfig {
        name: "billing".into(),
        ..PoolConfig::default()
    });
    orders.report_capacity(ServerCapacity {
        max_connections: 100,
        available: 60,
    });
    let fleet = fleet_status(Some("connection refused"));
    orders.report_fleet(fleet.clone());
    let monitoring = Monitoring::with_sampling(Duration::from_millis(50), 20);
    monitoring.register(orders.clone());
    monitoring.register(billing.clone());
    let server = serve(Router::new().merge(monitoring.router())).await;
    drop(orders.get().await.unwrap());
    let held = orders.get().await.unwrap();

    let report = eventually("two samples and a leak suspect", || async {
        let (status, report) = json(server.url("/api/pools")).await;
        assert_eq!(status, 200);
        let history = report["pools"][0]["history"].as_array().unwrap().len();
        let leaks = report["pools"][0]["leak_suspects"]
            .as_array()
            .unwrap()
            .len();
        if history >= 2 && leaks == 1 {
            Ok(report)
        } else {
            Err(report)
        }
    })
    .await;

    // The types read what the route writes, and write it back unchanged:
    // clients (the lab, the service's tests) use them, not raw JSON.
    let typed: tidewater_axum::PoolsReport =
        serde_json::from_value(report.clone()).expect("the report reads as PoolsReport");
    assert_eq!(serde_json::to_value(&typed).unwrap(), report);
    assert_eq!(typed.pools[0].leak_suspects.len(), 1);
    assert_eq!(typed.pools[0].fleet.as_ref(), Some(&fleet));
    assert_eq!(typed.pools[1].fleet, None);

    assert!(report["generated_at_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(report["sample_interval_seconds"], 0.05);
    assert_eq!(report["history_capacity"], 20);
    let last_sample = report["last_sample"].as_u64().unwrap();
    let pools = report["pools"].as_array().unwrap();
    let names: Vec<&str> = pools
        .iter()
        .map(|pool| pool["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders", "billing"]);

    let pool = &pools[0];
    let keys = |value: &Value| -> Vec<String> {
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(pool),
        [
            "alerts",
            "capacity",
            "fleet",
            "history",
            "leak_suspects",
            "name",
            "sizing",
            "status",
            "thresholds",
            "totals"
        ]
    );
    assert_eq!(pool["sizing"]["mode"], "fixed");
    assert_eq!(pool["sizing"]["limit"], 4);
    assert_eq!(
        pool["status"],
        serde_json::json!({
            "pool": "orders", "max_size": 4, "limit": 4, "size": 1, "in_use": 1, "idle": 0,
            "opening": 0, "waiters": 0, "breaker_open": false
        })
    );
    assert_eq!(pool["alerts"], serde_json::json!([]));
    let leak = &pool["leak_suspects"][0];
    assert_eq!(leak["connection_id"], held.id());
    assert!(
        leak["caller"]
            .as_str()
            .unwrap()
            .contains("tests/monitoring.rs"),
        "{leak}"
    );
    assert!(leak["held_for_seconds"].as_f64().unwrap() > 0.1);
    assert_eq!(
        keys(&pool["totals"]),
        [
            "acquired",
            "closed",
            "connect_errors",
            "leaks_detected",
            "opened",
            "rejected",
            "timeouts"
        ]
    );
    assert_eq!(pool["totals"]["acquired"], 2);
    assert_eq!(pool["totals"]["opened"], 1);
    assert_eq!(
        pool["capacity"],
        serde_json::json!({ "max_connections": 100, "available": 60 })
    );
    assert_eq!(pool["thresholds"]["leak_detection_threshold_seconds"], 0.1);
    assert_eq!(pool["thresholds"]["utilization"], 0.8);
    assert_eq!(pools[1]["capacity"], Value::Null);
    assert_eq!(
        pool["fleet"],
        serde_json::json!({
            "fleet": "bank", "member": "a1", "state": "degraded", "reason": "connection refused",
            "grant": 12, "budget": 33,
            "members": [
                { "member": "a1", "grant": 12, "held": 10, "demand": 14, "lease_age_seconds": 0.4 },
                { "member": "b2", "grant": 15, "held": 15, "demand": 20, "lease_age_seconds": 1.5 },
                { "member": "c3", "grant": 6, "held": 3, "demand": 2, "lease_age_seconds": 2.5 }
            ]
        })
    );
    assert_eq!(pools[1]["fleet"], Value::Null);

    let history = pool["history"].as_array().unwrap();
    assert_eq!(
        keys(&history[0]),
        [
            "acquired",
            "acquired_total",
            "breaker_open",
            "connect_errors_total",
            "idle",
            "in_use",
            "limit",
            "max_size",
            "opening",
            "sample",
            "timeouts_total",
            "unix_ms",
            "wait_p50_seconds",
            "wait_p99_seconds",
            "waiters"
        ]
    );
    let samples: Vec<u64> = history
        .iter()
        .map(|point| point["sample"].as_u64().unwrap())
        .collect();
    assert!(
        samples.windows(2).all(|pair| pair[0] < pair[1]),
        "oldest first: {samples:?}"
    );
    let times: Vec<u64> = history
        .iter()
        .map(|point| point["unix_ms"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
    let last = history.last().unwrap();
    assert_eq!(
        (last["in_use"].clone(), last["max_size"].clone()),
        (1.into(), 4.into())
    );
    assert_eq!(last["acquired_total"], 2);

    // One pool, and only the newer points.
    let (status, only) =
        json(server.url(&format!("/api/pools?pool=billing&after={last_sample}"))).await;
    assert_eq!(status, 200);
    assert_eq!(only["pools"].as_array().unwrap().len(), 1);
    assert_eq!(only["pools"][0]["name"], "billing");
    for point in only["pools"][0]["history"].as_array().unwrap() {
        assert!(point["sample"].as_u64().unwrap() > last_sample);
    }

    let response = client()
        .get(server.url("/api/pools?pool=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let response = client()
        .get(server.url("/api/pools?after=soon"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_its_assets_are_served_from_the_binary() {
    let monitoring = Monitoring::new();
    let server = serve(Router::new().merge(monitoring.router())).await;
    let http = client();

    let page = http.get(server.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );

    for (asset, content_type) in [
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("dashboard.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ] {
        assert!(
            html.contains(&format!("dashboard/{asset}")),
            "{asset} is linked"
        );
        let response = http
            .get(server.url(&format!("/dashboard/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert_eq!(response.headers()["content-type"], content_type);
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
    let missing = http
        .get(server.url("/dashboard/missing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
