//! Health reports: each check's verdict and reason, liveness apart from
//! readiness, and the JSON schema documented in docs/health.md.

use std::time::Duration;

use serde_json::Value;
use tidewater::health::{HealthStatus, ServiceHealth};
use tidewater::{BreakerConfig, ErrorClass, PoolConfig};
use tidewater_testkit::{CheckStep, fleet_status, scripted_pool, settle, spawn_get};

fn check<'a>(
    report: &'a tidewater::health::PoolHealth,
    name: &str,
) -> &'a tidewater::health::HealthCheck {
    report
        .checks
        .iter()
        .find(|check| check.name == name)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_well_pool_is_healthy_live_and_ready() {
    let (pool, _) = scripted_pool(PoolConfig::default());
    let report = pool.health().await;
    assert_eq!(report.status, HealthStatus::Healthy);
    let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "acquire",
            "breaker",
            "utilization",
            "wait_p99",
            "leaks",
            "fleet"
        ]
    );
    assert!(
        report
            .checks
            .iter()
            .all(|c| c.status == HealthStatus::Healthy)
    );
    let service = ServiceHealth::of(vec![report]);
    assert!(service.live && service.ready);
}

#[tokio::test(start_paused = true)]
async fn a_database_outage_makes_the_service_not_ready_but_still_live() {
    let config = PoolConfig {
        breaker: BreakerConfig {
            failure_threshold: 1,
            ..Default::default()
        },
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    script.set_down(Some(ErrorClass::Transient));
    let _waiter = spawn_get(&pool);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !pool.status().breaker_open {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = pool.health().await;
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert_eq!(check(&report, "breaker").status, HealthStatus::Unhealthy);
    assert!(
        check(&report, "breaker")
            .reason
            .contains("connection refused"),
        "{}",
        check(&report, "breaker").reason
    );
    let acquire = check(&report, "acquire");
    assert_eq!(acquire.status, HealthStatus::Unhealthy);
    assert!(
        acquire.reason.starts_with("database unavailable"),
        "{}",
        acquire.reason
    );
    let service = ServiceHealth::of(vec![report]);
    assert!(service.live, "an outage never makes the process not live");
    assert!(!service.ready);
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_fails_validation_makes_the_probe_unhealthy() {
    let (pool, script) = scripted_pool(PoolConfig::default());
    drop(pool.get().await.unwrap());
    script.push_validate(CheckStep::Fail);
    let report = pool.health().await;
    let acquire = check(&report, "acquire");
    assert_eq!(acquire.status, HealthStatus::Unhealthy);
    assert!(
        acquire.reason.starts_with("validation failed"),
        "{}",
        acquire.reason
    );
    assert_eq!(pool.status().size, 0, "the failed connection was discarded");
}

#[tokio::test(start_paused = true)]
async fn high_utilization_slow_waits_and_leaks_degrade() {
    let config = PoolConfig {
        max_size: 2,
        leak_detection_threshold: Some(Duration::from_secs(5)),
        expected_wait_p99: Duration::from_secs(1),
        acquire_timeout: Duration::from_secs(30),
        ..PoolConfig::default()
    };
    let (pool, _) = scripted_pool(config);
    let first = pool.get().await.unwrap();
    let held = pool.get().await.unwrap(); // 100% in use
    let waiter = spawn_get(&pool);
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(first); // the waiter waited 3 s
    waiter.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await; // `held` is now a leak suspect
    settle().await;

    let report = pool.health().await;
    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(check(&report, "wait_p99").status, HealthStatus::Degraded);
    assert_eq!(check(&report, "leaks").status, HealthStatus::Degraded);
    assert!(
        check(&report, "leaks").reason.contains("tests/health.rs"),
        "{}",
        check(&report, "leaks").reason
    );
    assert_eq!(report.leak_suspects.len(), 1);
    assert!(
        ServiceHealth::of(vec![report]).ready,
        "degraded is still ready"
    );
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn the_json_keeps_its_documented_shape() {
    let config = PoolConfig {
        leak_detection_threshold: Some(Duration::from_secs(1)),
        ..PoolConfig::default()
    };
    let (pool, _) = scripted_pool(config);
    let held = pool.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    settle().await;
    let json = serde_json::to_value(ServiceHealth::of(vec![pool.health().await])).unwrap();

    let keys = |value: &Value| -> Vec<String> {
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&json), ["live", "pools", "ready", "status"]);
    let pool_json = &json["pools"][0];
    assert_eq!(
        keys(pool_json),
        [
            "alerts",
            "checks",
            "fleet",
            "leak_suspects",
            "pool",
            "sizing",
            "state",
            "status"
        ]
    );
    assert_eq!(keys(&pool_json["checks"][0]), ["name", "reason", "status"]);
    assert_eq!(
        keys(&pool_json["state"]),
        [
            "breaker_open",
            "idle",
            "in_use",
            "limit",
            "max_size",
            "opening",
            "pool",
            "size",
            "waiters"
        ]
    );
    assert_eq!(
        keys(&pool_json["sizing"]),
        [
            "baseline_use_seconds",
            "ceiling",
            "elasticity",
            "floor",
            "limit",
            "mode",
            "reason",
            "recent_in_use",
            "recent_throughput",
            "recent_use_seconds",
            "recent_waiting"
        ]
    );
    assert_eq!(pool_json["sizing"]["mode"], "fixed");
    assert_eq!(
        keys(&pool_json["leak_suspects"][0]),
        ["caller", "connection_id", "held_for_seconds"]
    );
    assert!(
        pool_json["leak_suspects"][0]["held_for_seconds"]
            .as_f64()
            .unwrap()
            >= 2.0
    );
    let alert = &pool_json["alerts"][0];
    assert_eq!(
        keys(alert),
        [
            "description",
            "name",
            "pool",
            "severity",
            "since",
            "summary"
        ]
    );
    assert_eq!(alert["name"], "TidewaterLeakSuspected");
    assert_eq!(json["status"], "degraded");
    assert_eq!(pool_json["fleet"], Value::Null, "in no fleet");
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn a_fleet_that_lost_coordination_degrades_the_pool() {
    let (pool, _) = scripted_pool(PoolConfig::default());
    assert_eq!(check(&pool.health().await, "fleet").reason, "in no fleet");

    pool.report_fleet(fleet_status(None));
    let report = pool.health().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{:?}", report.checks);
    let fleet = check(&report, "fleet");
    assert_eq!(fleet.status, HealthStatus::Healthy);
    assert_eq!(
        fleet.reason,
        "coordinated in fleet bank: a grant of 12 of its 33 connections, 3 live member(s)"
    );

    pool.report_fleet(fleet_status(Some(
        "could not reach the fleet's table: connection refused",
    )));
    let report = pool.health().await;
    assert_eq!(report.status, HealthStatus::Degraded);
    let fleet = check(&report, "fleet");
    assert_eq!(fleet.status, HealthStatus::Degraded);
    assert_eq!(
        fleet.reason,
        "fleet coordination lost: could not reach the fleet's table: connection refused; \
         on a fallback share of 12 connections"
    );
    assert_eq!(report.fleet, pool.fleet());
    let json = serde_json::to_value(ServiceHealth::of(vec![report])).unwrap();
    assert!(json["ready"].as_bool().unwrap(), "degraded is still ready");
    let reported = &json["pools"][0]["fleet"];
    assert_eq!(
        serde_json::from_value::<tidewater::fleet::FleetStatus>(reported.clone()).unwrap(),
        fleet_status(Some(
            "could not reach the fleet's table: connection refused"
        ))
    );
    assert_eq!(reported["state"], "degraded");
    assert_eq!(reported["members"][1]["member"], "b2");
}
