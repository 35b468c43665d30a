//! The pools' metrics published through the `metrics` facade, read back
//! from a debugging recorder installed for this test binary.
#![cfg(feature = "metrics")]

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tidewater::PoolConfig;
use tidewater_testkit::{fleet_status, scripted_pool, settle};

/// A published series: name, labels, value.
type Published = (String, Vec<(String, String)>, DebugValue);

#[tokio::test(start_paused = true)]
async fn the_maintenance_task_publishes_the_catalog() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let (pool, _) = scripted_pool(PoolConfig {
        name: "orders".into(),
        max_size: 7,
        ..PoolConfig::default()
    });
    let held = pool.get().await.unwrap();
    pool.report_fleet(fleet_status(None));
    tokio::time::sleep(Duration::from_secs(2)).await; // a maintenance tick or two
    settle().await;

    let values: Vec<Published> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    let find = |name: &str, extra: &[(&str, &str)]| {
        values
            .iter()
            .find(|(n, labels, _)| {
                n == name
                    && labels.contains(&("pool_name".to_owned(), "orders".to_owned()))
                    && extra
                        .iter()
                        .all(|(k, v)| labels.contains(&((*k).to_owned(), (*v).to_owned())))
            })
            .map(|(_, _, value)| value)
            .unwrap_or_else(|| panic!("{name} {extra:?} not published"))
    };
    assert!(
        matches!(find("db_client_connection_max", &[]), DebugValue::Gauge(v) if v.into_inner() == 7.0)
    );
    assert!(
        matches!(find("db_client_connection_count", &[("state", "used")]), DebugValue::Gauge(v) if v.into_inner() == 1.0)
    );
    assert!(matches!(
        find("tidewater_connections_opened_total", &[]),
        DebugValue::Counter(1)
    ));
    assert!(matches!(
        find("db_client_connection_wait_time_seconds_count", &[]),
        DebugValue::Counter(1)
    ));
    assert!(matches!(
        find(
            "db_client_connection_wait_time_seconds",
            &[("quantile", "0.99")]
        ),
        DebugValue::Gauge(_)
    ));
    assert!(
        matches!(find("tidewater_fleet_grant", &[]), DebugValue::Gauge(v) if v.into_inner() == 12.0)
    );
    assert!(
        matches!(find("tidewater_fleet_degraded", &[]), DebugValue::Gauge(v) if v.into_inner() == 0.0)
    );
    drop(held);
}
