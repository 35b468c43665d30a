//! Every in-process alert fires once and resolves once, driven by the
//! scripted manager under tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewater::alerts::{AlertEvent, AlertName, ServerCapacity};
use tidewater::{BreakerConfig, ErrorClass, Pool, PoolConfig};
use tidewater_testkit::{ScriptedManager, scripted_pool, settle, spawn_get};

/// Every event the pool's alerts produced, in order.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<AlertEvent>>>);

impl Received {
    fn attach(pool: &Pool<ScriptedManager>) -> Self {
        let received = Self::default();
        let sink = received.clone();
        pool.add_alert_sink(move |event: &AlertEvent| sink.0.lock().unwrap().push(event.clone()));
        received
    }

    /// (alert, firing?) for every event so far.
    fn seen(&self) -> Vec<(AlertName, bool)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| (e.alert.name, e.is_firing()))
            .collect()
    }

    fn of(&self, name: AlertName) -> Vec<bool> {
        self.seen()
            .into_iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, firing)| firing)
            .collect()
    }

    fn last(&self, name: AlertName) -> AlertEvent {
        self.0
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|e| e.alert.name == name)
            .cloned()
            .expect("an event")
    }
}

/// Lets `by` pass on tokio's paused clock, one maintenance tick at a time.
async fn pass(by: Duration) {
    tokio::time::sleep(by).await;
    settle().await;
}

#[tokio::test(start_paused = true)]
async fn utilization_fires_after_a_sustained_period_and_resolves_below_the_threshold() {
    // Connections held for minutes on purpose: not leaks here.
    let config = PoolConfig {
        max_size: 5,
        leak_detection_threshold: None,
        ..PoolConfig::default()
    };
    let (pool, _) = scripted_pool(config);
    let received = Received::attach(&pool);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.get().await.unwrap()); // 80% in use
    }
    pass(Duration::from_secs(59)).await;
    assert!(received.seen().is_empty(), "not sustained long enough yet");
    pass(Duration::from_secs(3)).await;
    assert_eq!(received.of(AlertName::PoolUtilizationHigh), [true]);
    let alert = received.last(AlertName::PoolUtilizationHigh).alert;
    assert!(
        alert
            .description
            .starts_with("4 of 5 connections in use (80%)"),
        "{}",
        alert.description
    );
    assert_eq!(
        received.seen(),
        [(AlertName::PoolUtilizationHigh, true)],
        "nothing else fired"
    );
    assert_eq!(pool.alerts().len(), 1);

    held.pop(); // 60%: below the threshold minus 10 points
    pass(Duration::from_secs(120)).await;
    assert_eq!(
        received.of(AlertName::PoolUtilizationHigh),
        [true, false],
        "fired once, resolved once"
    );
    assert!(pool.alerts().is_empty());
}

#[tokio::test(start_paused = true)]
async fn utilization_hovering_at_the_threshold_does_not_flap() {
    let config = PoolConfig {
        max_size: 10,
        leak_detection_threshold: None,
        ..PoolConfig::default()
    };
    let (pool, _) = scripted_pool(config);
    let received = Received::attach(&pool);
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(pool.get().await.unwrap());
    }
    pass(Duration::from_secs(61)).await;
    for _ in 0..10 {
        let extra = held.pop().unwrap(); // 70%: not low enough to clear
        pass(Duration::from_secs(20)).await;
        held.push(extra);
        pass(Duration::from_secs(20)).await;
    }
    assert_eq!(
        received.of(AlertName::PoolUtilizationHigh),
        [true],
        "no flapping around the threshold"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_wait_fires_and_resolves_once_the_window_is_clear() {
    let config = PoolConfig {
        max_size: 1,
        acquire_timeout: Duration::from_secs(30),
        ..PoolConfig::default()
    };
    let (pool, _) = scripted_pool(config);
    let received = Received::attach(&pool);
    let held = pool.get().await.unwrap();
    let waiter = spawn_get(&pool);
    pass(Duration::from_secs(6)).await;
    drop(held); // the waiter waited 6 s
    waiter.await.unwrap().unwrap();
    pass(Duration::from_secs(2)).await;
    assert_eq!(received.of(AlertName::AcquireWaitSlow), [true]);
    assert!(
        received
            .last(AlertName::AcquireWaitSlow)
            .alert
            .description
            .contains("waited up to")
    );
    pass(Duration::from_secs(150)).await; // the window forgets it, then the clear period passes
    assert_eq!(received.of(AlertName::AcquireWaitSlow), [true, false]);
}

#[tokio::test(start_paused = true)]
async fn an_acquire_timeout_fires_a_critical_alert() {
    let config = PoolConfig {
        max_size: 1,
        acquire_timeout: Duration::from_secs(1),
        ..PoolConfig::default()
    };
    let (pool, _) = scripted_pool(config);
    let received = Received::attach(&pool);
    let held = pool.get().await.unwrap();
    assert!(pool.get().await.is_err());
    pass(Duration::from_secs(2)).await;
    let fired = received.last(AlertName::AcquireTimeouts);
    assert!(fired.is_firing());
    assert_eq!(fired.alert.severity, tidewater::alerts::Severity::Critical);
    drop(held);
    pass(Duration::from_secs(150)).await;
    assert_eq!(received.of(AlertName::AcquireTimeouts), [true, false]);
}

#[tokio::test(start_paused = true)]
async fn a_leak_fires_with_the_call_site_and_resolves_when_returned() {
    let config = PoolConfig {
        leak_detection_threshold: Some(Duration::from_secs(5)),
        ..PoolConfig::default()
    };
    let (pool, _) = scripted_pool(config);
    let received = Received::attach(&pool);
    let line = line!() + 1;
    let held = pool.get().await.unwrap();
    pass(Duration::from_secs(7)).await;
    let fired = received.last(AlertName::LeakSuspected);
    assert!(fired.is_firing());
    let site = format!("{}:{line}", file!());
    assert!(
        fired.alert.description.contains(&site),
        "names {site}: {}",
        fired.alert.description
    );
    drop(held);
    pass(Duration::from_secs(62)).await;
    assert_eq!(received.of(AlertName::LeakSuspected), [true, false]);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_database_fires_both_database_alerts_which_resolve_after_recovery() {
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(60),
        breaker: BreakerConfig {
            failure_threshold: 3,
            ..Default::default()
        },
        ..PoolConfig::default()
    };
    let (pool, script) = scripted_pool(config);
    let received = Received::attach(&pool);
    script.set_down(Some(ErrorClass::Transient));
    let waiter = spawn_get(&pool);
    pass(Duration::from_secs(20)).await;
    let unreachable = received.last(AlertName::DatabaseUnreachable);
    assert!(unreachable.is_firing());
    assert!(
        unreachable.alert.description.contains("connection refused"),
        "{}",
        unreachable.alert.description
    );
    assert_eq!(received.of(AlertName::ConnectErrorsRising), [true]);

    assert!(
        matches!(
            waiter.await.unwrap(),
            Err(tidewater::Error::Unavailable { .. })
        ),
        "the waiting caller learned it when the breaker opened"
    );

    script.set_down(None);
    drop(pool.get().await.unwrap());
    pass(Duration::from_secs(150)).await;
    assert_eq!(received.of(AlertName::DatabaseUnreachable), [true, false]);
    assert_eq!(received.of(AlertName::ConnectErrorsRising), [true, false]);
}

#[tokio::test(start_paused = true)]
async fn low_server_capacity_fires_and_resolves() {
    let (pool, _) = scripted_pool(PoolConfig::default());
    let received = Received::attach(&pool);
    pool.report_capacity(ServerCapacity {
        max_connections: 100,
        available: 5,
    });
    pass(Duration::from_secs(2)).await;
    let fired = received.last(AlertName::CapacityHeadroomLow);
    assert!(fired.is_firing());
    assert_eq!(
        fired.alert.description,
        "the server has 5 of 100 connections left (5%)"
    );
    pool.report_capacity(ServerCapacity {
        max_connections: 100,
        available: 60,
    });
    pass(Duration::from_secs(62)).await;
    assert_eq!(received.of(AlertName::CapacityHeadroomLow), [true, false]);
}

#[tokio::test(start_paused = true)]
async fn alerts_can_be_turned_off() {
    let mut config = PoolConfig {
        max_size: 1,
        acquire_timeout: Duration::from_secs(1),
        ..PoolConfig::default()
    };
    config.alerts.enabled = false;
    let (pool, _) = scripted_pool(config);
    let received = Received::attach(&pool);
    let _held = pool.get().await.unwrap();
    assert!(pool.get().await.is_err());
    pass(Duration::from_secs(120)).await;
    assert!(received.seen().is_empty());
}
