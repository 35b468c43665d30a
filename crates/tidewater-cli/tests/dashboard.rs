//! The live dashboard in headless Chromium, against the real service on
//! SQLite: the page loads, its numbers and charts move while a short load
//! runs, a firing alert shows when the test provokes one, and the page logs
//! no JavaScript error.
//!
//! Needs Chromium: `/usr/bin/chromium` or `$CHROMIUM` (scripts/test installs
//! Debian's package); without it the test fails and says so.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use reqwest::StatusCode;
use tidewater_axum::PoolsReport;
use tidewater_testkit::browser::{Browser, Tab};
use tokio::time::Instant;

use common::{Kind, Service, TestDb, config};

/// The pool's size: the load runs `LOAD_TASKS` transfers at a time, which
/// keeps its utilization (3 of 4) under the alert's threshold (0.8); the
/// test then holds all 4 to fire it.
const MAX_SIZE: u32 = 4;
const LOAD_TASKS: usize = 3;

/// The load's bounds, whatever the page does.
const LOAD_MAX_TRANSFERS: u64 = 20_000;
const LOAD_MAX_TIME: Duration = Duration::from_secs(30);

/// The utilization alert's name.
const UTILIZATION_ALERT: &str = "TidewaterPoolUtilizationHigh";

/// A number the page shows, by its `data-metric` name (`null` while it has
/// none).
fn metric(name: &str) -> String {
    format!(
        "(() => {{ const v = document.querySelector('[data-metric=\"{name}\"]')?.dataset.value; \
         return v === undefined || v === '' ? null : Number(v); }})()"
    )
}

/// The history points the connections chart draws.
const POINTS: &str = "Number(document.getElementById('chart-connections').dataset.points)";

/// Waits until the page shows `name` above `floor`; returns the value.
async fn metric_above(tab: &Tab, name: &str, floor: f64) -> f64 {
    let value = metric(name);
    tab.wait_for(
        &format!("the page's {name} rises above {floor}"),
        &format!("(() => {{ const v = {value}; return v !== null && v > {floor} ? v : null; }})()"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_numbers_and_a_firing_alert_without_errors() {
    let db = TestDb::create(Kind::Sqlite, "dashboard").await;
    let mut config = config(&db.url);
    config.pool.max_size = MAX_SIZE;
    config.pool.maintenance_interval = Duration::from_millis(100);
    config.pool.alerts.utilization_for = Duration::from_millis(500);
    // Transfers blocked by the test's lock wait for it, holding their
    // connections, rather than fail.
    config.sqlite.busy_timeout = Duration::from_secs(60);
    config.sqlite.statement_timeout = Some(Duration::from_secs(90));
    config.pool.connect_timeout = Duration::from_secs(60);
    config.request_timeout = Duration::from_secs(90);
    let service = Service::start(config).await;
    let from = service.account(1_000_000_000).await;
    let to = service.account(0).await;

    let browser = Browser::launch()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let tab = browser.open(&service.server().dashboard_url()).await;

    // The page loads and shows the service's one pool.
    tab.wait_for::<bool>(
        "the first render",
        "document.body.dataset.ready === 'true' || null",
    )
    .await;
    let pool: String = tab
        .eval("document.getElementById('main').dataset.pool")
        .await;
    assert_eq!(pool, "tidewater");
    let tabs: Vec<String> = tab
        .eval("[...document.querySelectorAll('#pool-tabs a')].map((a) => a.dataset.pool)")
        .await;
    assert_eq!(tabs, ["tidewater"]);
    let max_size: f64 = tab.eval(&metric("max_size")).await;
    assert_eq!(max_size, f64::from(MAX_SIZE));
    let state: String = tab
        .eval("document.getElementById('connection').dataset.state")
        .await;
    assert_eq!(state, "live");
    let no_alerts: f64 = tab.eval(&metric("alerts_count")).await;
    assert_eq!(
        no_alerts, 0.0,
        "no alert fires before the test provokes one"
    );

    // A short load: its numbers show on the page while it runs.
    let acquired_before: f64 = tab.eval(&metric("acquired")).await;
    let points_before: f64 = tab.eval(POINTS).await;
    let renders_before: f64 = tab.eval("Number(document.body.dataset.renders)").await;
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let load: Vec<_> = (0..LOAD_TASKS)
        .map(|_| {
            let (client, base) = (service.client.clone(), service.base.clone());
            let (stop, made) = (stop.clone(), made.clone());
            tokio::spawn(async move {
                while !stop.load(Relaxed)
                    && made.load(Relaxed) < LOAD_MAX_TRANSFERS
                    && started.elapsed() < LOAD_MAX_TIME
                {
                    let response = client
                        .post(format!("{base}/api/transfers"))
                        .json(&serde_json::json!({ "from": from, "to": to, "amount": 1 }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::CREATED);
                    made.fetch_add(1, Relaxed);
                }
            })
        })
        .collect();
    // Two updates of the count while the load runs.
    let first = metric_above(&tab, "acquired", acquired_before).await;
    let second = metric_above(&tab, "acquired", first).await;
    let running = !load.iter().all(|task| task.is_finished());
    stop.store(true, Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let made = made.load(Relaxed);
    assert!(
        running,
        "the load ({made} transfers in {:?}) ended before the page showed it move",
        started.elapsed()
    );
    eprintln!(
        "load: {made} transfers in {:?}; the page showed checkouts {acquired_before} -> {first} -> {second}",
        started.elapsed()
    );
    // Every transfer checked a connection out: the page catches up.
    let acquired = metric_above(&tab, "acquired", acquired_before + made as f64 - 1.0).await;
    let report: PoolsReport = serde_json::from_value(service.get("/api/pools").await.body)
        .expect("/api/pools reads as tidewater_axum::PoolsReport");
    let served = report.pools[0].totals.acquired as f64;
    assert!(
        acquired <= served,
        "the page shows {acquired}, the service {served}"
    );
    // The history chart gained points, and the page kept re-rendering.
    let points = tab
        .wait_for::<f64>(
            "the chart gains points",
            &format!("(() => {{ const p = {POINTS}; return p > {points_before} ? p : null; }})()"),
        )
        .await;
    let renders: f64 = tab.eval("Number(document.body.dataset.renders)").await;
    assert!(
        renders > renders_before + 1.0,
        "{renders_before} -> {renders}"
    );
    let label: String = tab
        .eval("document.getElementById('chart-connections').getAttribute('aria-label')")
        .await;
    assert!(
        label.starts_with("Connections over the last"),
        "{label} ({points} points)"
    );

    // Every connection held: transfers wait for SQLite's write lock, which
    // the test takes from a connection of its own, each holding a pool
    // connection. Utilization (4 of 4) stays high past `utilization_for`.
    let lock = db.lock_account(from).await;
    let held: Vec<_> = (0..MAX_SIZE)
        .map(|_| {
            let (client, base) = (service.client.clone(), service.base.clone());
            tokio::spawn(async move {
                client
                    .post(format!("{base}/api/transfers"))
                    .json(&serde_json::json!({ "from": from, "to": to, "amount": 1 }))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let in_use = metric_above(&tab, "in_use", f64::from(MAX_SIZE) - 1.0).await;
    assert_eq!(in_use, f64::from(MAX_SIZE));
    let alert: (String, String) = tab
        .wait_for(
            "the utilization alert shows",
            &format!(
                "(() => {{ const li = document.querySelector('#alerts li[data-alert=\"{UTILIZATION_ALERT}\"]'); \
                 return li ? [li.dataset.severity, li.textContent] : null; }})()"
            ),
        )
        .await;
    assert_eq!(alert.0, "warning");
    assert!(
        alert.1.contains("connection pool nearly exhausted"),
        "{}",
        alert.1
    );
    let count: f64 = tab.eval(&metric("alerts_count")).await;
    assert!(count >= 1.0, "{count}");
    let empty_hidden: bool = tab
        .eval("document.getElementById('alerts-empty').hidden")
        .await;
    assert!(empty_hidden, "`None.` is hidden while an alert fires");
    let dot: (bool, String) = tab
        .eval("(() => { const dot = document.querySelector('#pool-tabs a[data-pool=\"tidewater\"] .dot'); return [dot.hidden, dot.textContent]; })()")
        .await;
    assert!(!dot.0, "the pool's tab shows its alerts");
    assert_eq!(dot.1, count.to_string());
    let announced: String = tab
        .eval("document.getElementById('announce').textContent")
        .await;
    assert!(announced.contains(UTILIZATION_ALERT), "{announced:?}");

    // The lock goes; the waiting transfers go through.
    lock.release().await;
    for transfer in held {
        let status = tokio::time::timeout(Duration::from_secs(60), transfer)
            .await
            .expect("a held transfer finishes once the lock is released")
            .unwrap();
        assert_eq!(status, StatusCode::CREATED);
    }

    let errors = tab.js_errors();
    drop(tab);
    browser.close().await;
    service.stop().await;
    assert!(
        errors.is_empty(),
        "the page logged JavaScript errors: {errors:#?}"
    );
}
