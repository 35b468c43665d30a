//! The Prometheus exposition parsed back by a Prometheus text parser: the
//! names, labels and types of every series, and values that match the
//! pools' own numbers.
#![cfg(feature = "prometheus")]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};
use tidewater::alerts::ServerCapacity;
use tidewater::metric_names;
use tidewater::prometheus::PoolMetrics;
use tidewater::{CloseReason, PoolConfig, SizingConfig, SizingMode};
use tidewater_testkit::{fleet_status, scripted_pool};

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("valid exposition text")
}

/// `# TYPE` of each metric family in the text.
fn types(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| {
            let (name, kind) = rest.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

fn find<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> &'a Sample {
    scrape
        .samples
        .iter()
        .find(|sample| {
            sample.metric == metric && labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no sample {metric} {labels:?}"))
}

fn number(sample: &Sample) -> f64 {
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("not a number: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn every_series_is_named_typed_labelled_and_true() {
    let config = PoolConfig {
        name: "orders".into(),
        max_size: 4,
        acquire_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let (orders, _) = scripted_pool(config);
    let (audit, _) = scripted_pool(PoolConfig {
        name: "audit".into(),
        ..Default::default()
    });
    let metrics = PoolMetrics::new();
    metrics.register(orders.clone());
    metrics.register(audit.clone());

    let held: Vec<_> = [
        orders.get().await.unwrap(),
        orders.get().await.unwrap(),
        orders.get().await.unwrap(),
    ]
    .into();
    held[0].set_broken();
    let mut held = held.into_iter();
    drop(held.next()); // broken: closed
    drop(held.next()); // idle
    let _still_held = held.next();
    orders.resize(1).unwrap(); // the idle one goes: closed as resized
    assert!(orders.get().await.is_err(), "full: a timeout");
    orders.report_capacity(ServerCapacity {
        max_connections: 100,
        available: 30,
    });
    orders.report_fleet(fleet_status(Some("connection refused")));
    drop(audit.get().await.unwrap());

    let text = metrics.render();
    let scrape = parse(&text);
    let status = orders.status();
    let stats = orders.stats();

    assert!(
        scrape
            .samples
            .iter()
            .all(|sample| sample.labels.get("pool_name").is_some()),
        "pool_name on every series"
    );
    let pools: BTreeSet<&str> = scrape
        .samples
        .iter()
        .filter_map(|s| s.labels.get("pool_name"))
        .collect();
    assert_eq!(pools, BTreeSet::from(["audit", "orders"]));

    let orders_label = ("pool_name", "orders");
    let gauge = |metric: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![orders_label];
        labels.extend_from_slice(extra);
        number(find(&scrape, metric, &labels))
    };
    assert_eq!(
        gauge("db_client_connection_count", &[("state", "used")]),
        f64::from(status.in_use)
    );
    assert_eq!(
        gauge("db_client_connection_count", &[("state", "idle")]),
        f64::from(status.idle)
    );
    assert_eq!(
        gauge("db_client_connection_max", &[]),
        1.0,
        "after the resize"
    );
    assert_eq!(gauge("db_client_connection_pending_requests", &[]), 0.0);
    assert_eq!(gauge("tidewater_breaker_open", &[]), 0.0);
    assert_eq!(
        gauge("tidewater_connection_limit", &[]),
        1.0,
        "the limit follows resize() when fixed"
    );
    assert_eq!(gauge("tidewater_server_connections_available", &[]), 30.0);
    assert_eq!(gauge("tidewater_fleet_grant", &[]), 12.0);
    assert_eq!(gauge("tidewater_fleet_budget", &[]), 33.0);
    assert_eq!(gauge("tidewater_fleet_members", &[]), 3.0);
    assert_eq!(gauge("tidewater_fleet_degraded", &[]), 1.0);
    let audit_series: BTreeSet<&str> = scrape
        .samples
        .iter()
        .filter(|s| s.labels.get("pool_name") == Some("audit"))
        .map(|s| s.metric.as_str())
        .collect();
    for reported in [
        "tidewater_server_max_connections",
        "tidewater_fleet_grant",
        "tidewater_fleet_budget",
        "tidewater_fleet_members",
        "tidewater_fleet_degraded",
    ] {
        assert!(
            !audit_series.contains(reported),
            "{reported}: no series until reported"
        );
    }
    assert_eq!(
        gauge(
            "tidewater_alerts_firing",
            &[("alertname", "TidewaterDatabaseUnreachable")]
        ),
        0.0
    );
    assert_eq!(gauge("db_client_connection_timeouts_total", &[]), 1.0);
    assert_eq!(
        gauge("tidewater_connections_opened_total", &[]),
        stats.opened as f64
    );
    assert_eq!(
        gauge(
            "tidewater_connections_closed_total",
            &[("reason", "broken")]
        ),
        1.0
    );
    assert_eq!(
        gauge(
            "tidewater_connections_closed_total",
            &[("reason", "resized")]
        ),
        stats.closed_by(CloseReason::Resized) as f64
    );
    assert_eq!(
        gauge("tidewater_acquired_total", &[("path", "waited")]),
        stats.acquired_after_wait as f64
    );

    let wait = find(
        &scrape,
        "db_client_connection_wait_time_seconds",
        &[orders_label],
    );
    let Value::Histogram(buckets) = &wait.value else {
        panic!("{wait:?}")
    };
    let total = buckets
        .iter()
        .find(|b| b.less_than.is_infinite())
        .expect("a +Inf bucket")
        .count;
    assert_eq!(total, stats.wait_time.count() as f64);
    assert!(
        buckets
            .windows(2)
            .all(|pair| pair[0].count <= pair[1].count),
        "cumulative"
    );
    assert!(
        buckets.iter().any(|b| b.less_than == 0.00001)
            && buckets.iter().any(|b| b.less_than == 60.0),
        "10 µs to 60 s"
    );

    let kinds = types(&text);
    assert_eq!(kinds["db_client_connection_count"], "gauge");
    assert_eq!(kinds["db_client_connection_timeouts"], "counter");
    assert_eq!(kinds["db_client_connection_wait_time_seconds"], "histogram");
    assert!(text.ends_with("# EOF\n"));
}

/// The base names the exposition exports (histograms without their
/// `_bucket`, `_sum`, `_count` series), from a rendering of a pool that has
/// every optional series.
async fn exported_names() -> BTreeSet<String> {
    let (pool, _) = scripted_pool(PoolConfig {
        sizing: SizingConfig {
            mode: SizingMode::Adaptive,
            ..SizingConfig::default()
        },
        ..PoolConfig::default()
    });
    // Enough returns, each held a moment, for the adaptive limit to decide
    // once (its use-time estimates are exported from then on).
    for _ in 0..25 {
        let conn = pool.get().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        drop(conn);
    }
    tokio::time::sleep(SizingConfig::default().interval * 2).await;
    assert!(pool.sizing().baseline_use.is_some());
    pool.report_capacity(ServerCapacity {
        max_connections: 10,
        available: 5,
    });
    pool.report_fleet(fleet_status(None));
    let metrics = PoolMetrics::new();
    metrics.register(pool);
    parse(&metrics.render())
        .samples
        .iter()
        .map(|sample| base_name(&sample.metric))
        .collect()
}

/// A histogram series' name without its `_bucket`, `_sum` or `_count`.
fn base_name(name: &str) -> String {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| {
            name.strip_suffix(suffix)
                .filter(|base| base.ends_with("_seconds"))
        })
        .unwrap_or(name)
        .to_owned()
}

/// Every metric name a deploy/ file mentions.
fn mentioned(file: &str) -> BTreeSet<String> {
    mentioned_series(file)
        .iter()
        .map(|name| base_name(name))
        .collect()
}

/// Every series name a deploy/ file mentions, as written.
fn mentioned_series(file: &str) -> BTreeSet<String> {
    let path = format!("{}/../../deploy/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    let mut names = BTreeSet::new();
    for (start, _) in text
        .match_indices("tidewater_")
        .chain(text.match_indices("db_client_"))
    {
        if start > 0 && text.as_bytes()[start - 1].is_ascii_alphanumeric() {
            continue;
        }
        let name: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

#[tokio::test(start_paused = true)]
async fn the_dashboard_and_the_alert_rules_name_only_exported_metrics() {
    let exported = exported_names().await;
    let families: BTreeSet<&str> = exported
        .iter()
        .map(|name| {
            metric_names::family(name)
                .unwrap_or_else(|| panic!("{name} is exported but not in tidewater::metric_names"))
        })
        .collect();
    let constants: BTreeSet<&str> = [
        metric_names::GAUGES,
        metric_names::COUNTERS,
        metric_names::HISTOGRAMS,
    ]
    .concat()
    .into_iter()
    .collect();
    assert_eq!(
        families, constants,
        "every name in tidewater::metric_names is exported"
    );
    // The deploy files cannot import the constants: each series they name
    // must be one of them (a counter with `_total`, a histogram with one of
    // its suffixes).
    for file in [
        "metric-names.txt",
        "grafana/tidewater.json",
        "prometheus/tidewater-alerts.yml",
    ] {
        let unknown: Vec<_> = mentioned_series(file)
            .into_iter()
            .filter(|name| metric_names::family(name).is_none())
            .collect();
        assert!(
            unknown.is_empty(),
            "deploy/{file} names series that are not in tidewater::metric_names: {unknown:?}"
        );
    }
    let listed: BTreeSet<String> = mentioned("metric-names.txt");
    assert_eq!(
        listed, exported,
        "deploy/metric-names.txt lists exactly what is exported"
    );
    for file in ["grafana/tidewater.json", "prometheus/tidewater-alerts.yml"] {
        let unknown: Vec<_> = mentioned(file).difference(&exported).cloned().collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics nobody exports: {unknown:?}"
        );
    }
    let on_dashboard = mentioned("grafana/tidewater.json");
    let missing: Vec<_> = exported.difference(&on_dashboard).collect();
    assert!(
        missing.is_empty(),
        "metrics without a dashboard panel: {missing:?}"
    );
}
