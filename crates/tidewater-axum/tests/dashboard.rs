//! The dashboard in headless Chromium with two pools: one page per pool,
//! chosen by its tab or by `?pool=NAME`, each with its own numbers and
//! alerts, and the other pool's alerts flagged on its tab; the fleet panel
//! of a pool in a fleet, and none for a pool in none. Also checks that the
//! browser check does catch a page's JavaScript errors.
//!
//! Needs Chromium: `/usr/bin/chromium` or `$CHROMIUM` (scripts/test installs
//! Debian's package); without it the tests fail and say so.

mod common;

use std::time::Duration;

use axum::Router;
use tidewater::{AlertConfig, PoolConfig, SizingConfig, SizingMode};
use tidewater_axum::Monitoring;
use tidewater_testkit::browser::{Browser, Tab};
use tidewater_testkit::{fleet_status, scripted_pool};

use common::{serve, until_status};

/// A pool whose utilization alert fires as soon as it is full.
fn config(name: &str, max_size: u32) -> PoolConfig {
    PoolConfig {
        name: name.into(),
        max_size,
        maintenance_interval: Duration::from_millis(50),
        alerts: AlertConfig {
            utilization_for: Duration::ZERO,
            ..AlertConfig::default()
        },
        ..PoolConfig::default()
    }
}

/// The number the page shows for `name` (`null` while none).
fn metric(name: &str) -> String {
    format!(
        "(() => {{ const v = document.querySelector('[data-metric=\"{name}\"]')?.dataset.value; \
         return v === undefined || v === '' ? null : Number(v); }})()"
    )
}

/// What the page shows: its pool, `max_size`, `in_use`, the alerts listed,
/// and the pool whose tab is marked current.
const SHOWN: &str = "(() => ({ \
    pool: document.getElementById('main').dataset.pool, \
    max_size: document.querySelector('[data-metric=\"max_size\"]').dataset.value, \
    in_use: document.querySelector('[data-metric=\"in_use\"]').dataset.value, \
    alerts: [...document.querySelectorAll('#alerts li')].map((li) => li.dataset.alert), \
    current: document.querySelector('#pool-tabs a[aria-current=\"page\"]')?.dataset.pool ?? null, \
    title: document.title, \
}))()";

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Shown {
    pool: String,
    max_size: String,
    in_use: String,
    alerts: Vec<String>,
    current: Option<String>,
    title: String,
}

impl Shown {
    fn of(pool: &str, max_size: u32, in_use: u32, alerts: &[&str]) -> Self {
        Self {
            pool: pool.into(),
            max_size: max_size.to_string(),
            in_use: in_use.to_string(),
            alerts: alerts.iter().map(|&alert| alert.into()).collect(),
            current: Some(pool.into()),
            title: format!("{pool} · tidewater"),
        }
    }
}

/// Waits until the page shows `expected` (failing, says what it showed
/// and the JavaScript errors it logged).
async fn until_shown(tab: &Tab, what: &str, expected: &Shown) {
    common::eventually(what, || async {
        let shown: Shown = tab.eval(SHOWN).await;
        if shown == *expected {
            Ok(())
        } else {
            Err((shown, tab.js_errors()))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_page_per_pool_chosen_by_tab_or_query() {
    let (orders, _orders_script) = scripted_pool(config("orders", 5));
    let (billing, _billing_script) = scripted_pool(config("billing", 2));
    let monitoring = Monitoring::with_sampling(Duration::from_millis(200), 600);
    monitoring.register(orders.clone());
    monitoring.register(billing.clone());
    let server = serve(Router::new().merge(monitoring.router())).await;

    let _order = orders.get().await.unwrap();
    let _bills = (billing.get().await.unwrap(), billing.get().await.unwrap());
    until_status("billing is full", &billing, |s| s.in_use == 2).await;
    const ALERT: &str = "TidewaterPoolUtilizationHigh";
    common::eventually("billing's alert fires", || async {
        let alerts = billing.alerts();
        if alerts.iter().any(|alert| alert.name.as_str() == ALERT) {
            Ok(())
        } else {
            Err(alerts)
        }
    })
    .await;

    let browser = Browser::launch()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let tab = browser.open(&server.url("/dashboard")).await;

    // The first pool by default, a tab per pool; billing's tab flags its
    // alert while orders is shown.
    until_shown(&tab, "orders is shown", &Shown::of("orders", 5, 1, &[])).await;
    let tabs: Vec<String> = tab
        .eval("[...document.querySelectorAll('#pool-tabs a')].map((a) => a.dataset.pool)")
        .await;
    assert_eq!(tabs, ["orders", "billing"]);
    let dots: Vec<(bool, String)> = tab
        .eval("[...document.querySelectorAll('#pool-tabs .dot')].map((d) => [d.hidden, d.textContent])")
        .await;
    assert_eq!(dots, [(true, "0".into()), (false, "1".into())]);
    let label: String = tab
        .eval("document.querySelector('#pool-tabs a[data-pool=\"billing\"]').getAttribute('aria-label')")
        .await;
    assert_eq!(label, "billing, 1 alert firing");
    let alerts_count: f64 = tab.eval(&metric("alerts_count")).await;
    assert_eq!(alerts_count, 0.0);

    // Its tab shows billing, in place, with the address to come back to.
    tab.eval::<Option<bool>>(
        "document.querySelector('#pool-tabs a[data-pool=\"billing\"]').click()",
    )
    .await;
    until_shown(
        &tab,
        "billing is shown",
        &Shown::of("billing", 2, 2, &[ALERT]),
    )
    .await;
    let search: String = tab.eval("window.location.search").await;
    assert_eq!(search, "?pool=billing");

    // Back: orders again.
    tab.eval::<Option<bool>>("history.back()").await;
    until_shown(
        &tab,
        "orders is shown again",
        &Shown::of("orders", 5, 1, &[]),
    )
    .await;

    // The address alone chooses the pool; an unknown name shows the first.
    tab.goto(&server.url("/dashboard?pool=billing")).await;
    tab.wait_for::<bool>(
        "the first render",
        "document.body.dataset.ready === 'true' || null",
    )
    .await;
    until_shown(
        &tab,
        "billing is shown by ?pool=",
        &Shown::of("billing", 2, 2, &[ALERT]),
    )
    .await;
    tab.goto(&server.url("/dashboard?pool=nope")).await;
    tab.wait_for::<bool>(
        "the first render",
        "document.body.dataset.ready === 'true' || null",
    )
    .await;
    until_shown(
        &tab,
        "an unknown pool shows the first",
        &Shown::of("orders", 5, 1, &[]),
    )
    .await;

    let errors = tab.js_errors();
    drop(tab);
    browser.close().await;
    assert!(
        errors.is_empty(),
        "the page logged JavaScript errors: {errors:#?}"
    );
}

/// The browser check can fail: an uncaught exception, a rejected promise,
/// `console.error` and a failed load are all reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_check_catches_javascript_errors() {
    let (pool, _script) = scripted_pool(config("orders", 5));
    let monitoring = Monitoring::new();
    monitoring.register(pool);
    let server = serve(Router::new().merge(monitoring.router())).await;
    let browser = Browser::launch()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let tab = browser.open(&server.url("/dashboard")).await;
    tab.wait_for::<bool>(
        "the first render",
        "document.body.dataset.ready === 'true' || null",
    )
    .await;
    assert_eq!(tab.js_errors(), Vec::<String>::new());

    tab.eval::<Option<bool>>(
        "setTimeout(() => { throw new Error('thrown on purpose'); }); \
         Promise.reject(new Error('rejected on purpose')); \
         console.error('logged on purpose'); \
         fetch('dashboard/missing.js').then(() => {}); \
         undefined",
    )
    .await;
    let expected = [
        "thrown on purpose",
        "rejected on purpose",
        "logged on purpose",
        "404",
    ];
    let errors = common::eventually("every error is reported", || async {
        let errors = tab.js_errors();
        let all = errors.join("\n");
        if expected.iter().all(|text| all.contains(text)) {
            Ok(errors)
        } else {
            Err(errors)
        }
    })
    .await;
    drop(tab);
    browser.close().await;
    eprintln!("reported: {errors:#?}");
}

/// An adaptive pool: the page shows its limit and why it is there, and the
/// connections chart draws the limit beside in-use and waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adaptive_limit_is_shown_and_drawn() {
    let (pool, _script) = scripted_pool(PoolConfig {
        sizing: SizingConfig {
            mode: SizingMode::Adaptive,
            floor: 3,
            ..SizingConfig::default()
        },
        ..config("orders", 40)
    });
    let monitoring = Monitoring::with_sampling(Duration::from_millis(200), 600);
    monitoring.register(pool.clone());
    let server = serve(Router::new().merge(monitoring.router())).await;
    assert_eq!(
        pool.status().limit,
        3,
        "an adaptive pool starts at its floor"
    );

    let browser = Browser::launch()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let tab = browser.open(&server.url("/dashboard")).await;
    let shown: (f64, String) = tab
        .wait_for(
            "the limit is shown",
            "(() => { const e = document.querySelector('[data-metric=\"limit\"]'); \
             return e && e.dataset.value !== '' ? [Number(e.dataset.value), e.textContent] : null; })()",
        )
        .await;
    assert_eq!(shown.0, 3.0);
    assert!(shown.1.contains("adaptive"), "{shown:?}");
    let legend: Vec<String> = tab
        .wait_for(
            "the connections chart has its legend",
            "(() => { const items = [...document.querySelectorAll('[data-legend=\"chart-connections\"] li')]; \
             return items.length ? items.map((li) => li.textContent) : null; })()",
        )
        .await;
    assert!(legend.iter().any(|item| item == "limit"), "{legend:?}");
    let report: serde_json::Value = tab.eval("fetch('api/pools').then((r) => r.json())").await;
    assert_eq!(report["pools"][0]["sizing"]["mode"], "adaptive");
    assert_eq!(report["pools"][0]["history"][0]["limit"], 3);
    let errors = tab.js_errors();
    drop(tab);
    browser.close().await;
    assert!(errors.is_empty(), "{errors:#?}");
}

/// What the fleet panel shows: whether it is hidden, and when not, the
/// fleet's name, its state, the reason shown, this member's grant and the
/// budget, each member's row and the rows marked as this replica.
const FLEET: &str = "(() => { \
    const panel = document.getElementById('fleet'); \
    const reason = document.getElementById('fleet-reason'); \
    const value = (name) => document.querySelector(`[data-metric=\"${name}\"]`).dataset.value; \
    return { \
        pool: document.getElementById('main').dataset.pool, \
        hidden: panel.hidden, \
        name: document.getElementById('fleet-name').textContent, \
        state: value('fleet_state'), \
        reason: reason.hidden ? null : reason.textContent, \
        grant: value('fleet_grant'), \
        budget: value('fleet_budget'), \
        members: [...panel.querySelectorAll('tbody tr')] \
            .map((row) => [...row.cells].map((cell) => cell.textContent)), \
        current: [...panel.querySelectorAll('tbody tr[aria-current=\"true\"]')] \
            .map((row) => row.dataset.member), \
    }; \
})()";

#[derive(Debug, PartialEq, serde::Deserialize)]
struct FleetShown {
    pool: String,
    hidden: bool,
    name: String,
    state: String,
    reason: Option<String>,
    grant: String,
    budget: String,
    members: Vec<Vec<String>>,
    current: Vec<String>,
}

/// Waits until the fleet panel shows what `expected` says of it.
async fn until_fleet(tab: &Tab, what: &str, expected: impl Fn(&FleetShown) -> bool) -> FleetShown {
    common::eventually(what, || async {
        let shown: FleetShown = tab.eval(FLEET).await;
        if expected(&shown) {
            Ok(shown)
        } else {
            Err((shown, tab.js_errors()))
        }
    })
    .await
}

/// A pool in a fleet shows the fleet panel: its name and state, this
/// replica's grant of the budget, every member with this replica marked,
/// and, once coordination is lost, why (announced too); a pool in no fleet
/// shows none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_panel_shows_the_members_and_why_coordination_was_lost() {
    let (orders, _orders_script) = scripted_pool(config("orders", 5));
    let (billing, _billing_script) = scripted_pool(config("billing", 2));
    orders.report_fleet(fleet_status(None));
    let monitoring = Monitoring::with_sampling(Duration::from_millis(200), 600);
    monitoring.register(orders.clone());
    monitoring.register(billing.clone());
    let server = serve(Router::new().merge(monitoring.router())).await;

    let browser = Browser::launch()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let tab = browser.open(&server.url("/dashboard")).await;
    let shown = until_fleet(&tab, "the fleet panel of orders", |shown| {
        shown.pool == "orders" && !shown.hidden
    })
    .await;
    assert_eq!(
        shown,
        FleetShown {
            pool: "orders".into(),
            hidden: false,
            name: "bank".into(),
            state: "coordinated".into(),
            reason: None,
            grant: "12".into(),
            budget: "33".into(),
            members: [
                ["a1 this replica", "12", "10", "14", "400.0 ms"],
                ["b2", "15", "15", "20", "1.50 s"],
                ["c3", "6", "3", "2", "2.50 s"],
            ]
            .iter()
            .map(|row| row.iter().map(|&cell| cell.into()).collect())
            .collect(),
            current: vec!["a1".into()],
        }
    );

    // Coordination is lost: the panel says why, and so does the page's
    // live region.
    orders.report_fleet(fleet_status(Some("could not reach the fleet's table")));
    let shown = until_fleet(&tab, "the fleet turns degraded", |shown| {
        shown.state == "degraded"
    })
    .await;
    assert_eq!(
        shown.reason.as_deref(),
        Some(
            "Coordination lost: could not reach the fleet's table; \
             on a fallback share of 12 connections."
        )
    );
    assert_eq!(shown.members.len(), 3);
    let badge: String = tab
        .eval("document.getElementById('fleet-state').textContent")
        .await;
    assert_eq!(badge, "degraded: on a fallback share");
    let announced: String = tab
        .eval("document.getElementById('announce').textContent")
        .await;
    assert_eq!(
        announced,
        "Fleet coordination lost: could not reach the fleet's table."
    );

    // A pool in no fleet has no fleet panel.
    tab.eval::<Option<bool>>(
        "document.querySelector('#pool-tabs a[data-pool=\"billing\"]').click()",
    )
    .await;
    until_fleet(&tab, "billing shows no fleet panel", |shown| {
        shown.pool == "billing" && shown.hidden
    })
    .await;

    let errors = tab.js_errors();
    drop(tab);
    browser.close().await;
    assert!(errors.is_empty(), "{errors:#?}");
}
