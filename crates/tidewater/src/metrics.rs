//! The metrics every pool exports, defined once: names (from
//! [`crate::metric_names`]: OpenTelemetry's database connection pool
//! conventions in Prometheus form, plus `tidewater_` extras), help, types,
//! labels and values. The Prometheus
//! exporter (feature `prometheus`) and the `metrics` facade publisher
//! (feature `metrics`) both render this catalog. Every series carries
//! `pool_name`.

// Without the Prometheus exporter, the buckets and help texts go unused.
#![cfg_attr(not(feature = "prometheus"), allow(dead_code))]

use crate::alerts::AlertName;
use crate::fleet::FleetState;
use crate::histogram::HistogramSnapshot;
use crate::metric_names as names;
use crate::stats::CloseReason;
use crate::view::PoolView;

/// Upper bounds, in seconds, of the exported latency histograms' buckets:
/// 10 µs to 60 s.
pub(crate) const BUCKETS: [f64; 21] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// What kind of series a family holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Gauge,
    /// Its Prometheus series end in `_total`.
    Counter,
    /// In seconds.
    Histogram,
}

#[derive(Clone, Debug)]
pub(crate) enum Value {
    Number(f64),
    Histogram(HistogramSnapshot),
}

/// One series: its labels (`pool_name` first) and value.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: Value,
}

/// A metric and its series over every pool.
#[derive(Clone, Debug)]
pub(crate) struct Family {
    /// Without `_total` for counters.
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: Kind,
    pub(crate) samples: Vec<Sample>,
}

/// One pool, read once for a whole rendering.
struct Seen {
    name: String,
    min_idle: u32,
    status: crate::stats::PoolStatus,
    sizing: crate::sizing::SizingReport,
    stats: crate::stats::StatsSnapshot,
    leak_suspects: usize,
    firing: Vec<AlertName>,
    capacity: Option<crate::alerts::ServerCapacity>,
    fleet: Option<crate::fleet::FleetStatus>,
}

impl Seen {
    fn of(pool: &dyn PoolView) -> Self {
        Self {
            name: pool.name().to_owned(),
            min_idle: pool.config().min_idle,
            status: pool.status(),
            sizing: pool.sizing(),
            stats: pool.stats(),
            leak_suspects: pool.leak_suspects().len(),
            firing: pool.alerts().iter().map(|alert| alert.name).collect(),
            capacity: pool.capacity(),
            fleet: pool.fleet(),
        }
    }
}

/// Builds the catalog's families from the pools.
struct Catalog {
    pools: Vec<Seen>,
    families: Vec<Family>,
}

type Series = Vec<(Vec<(&'static str, String)>, Value)>;

impl Catalog {
    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        of: impl Fn(&Seen) -> Series,
    ) {
        let mut samples = Vec::new();
        for pool in &self.pools {
            for (extra, value) in of(pool) {
                let mut labels = vec![("pool_name".to_owned(), pool.name.clone())];
                labels.extend(
                    extra
                        .into_iter()
                        .map(|(key, value)| (key.to_owned(), value)),
                );
                samples.push(Sample { labels, value });
            }
        }
        self.families.push(Family {
            name,
            help,
            kind,
            samples,
        });
    }

    fn one(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        of: impl Fn(&Seen) -> f64,
    ) {
        self.add(name, help, kind, |pool| {
            vec![(Vec::new(), Value::Number(of(pool)))]
        });
    }

    /// A gauge of something a backend reports (the server's capacity, the
    /// pool's fleet): no series for a pool until it is reported.
    fn reported(
        &mut self,
        name: &'static str,
        help: &'static str,
        of: impl Fn(&Seen) -> Option<f64>,
    ) {
        self.add(name, help, Kind::Gauge, |pool| {
            of(pool)
                .map(|value| (Vec::new(), Value::Number(value)))
                .into_iter()
                .collect()
        });
    }
}

fn number(value: impl Into<f64>) -> Value {
    Value::Number(value.into())
}

fn count(value: u64) -> Value {
    Value::Number(value as f64)
}

/// Every family, over `pools`.
pub(crate) fn families(pools: &[&dyn PoolView]) -> Vec<Family> {
    use Kind::{Counter, Gauge, Histogram};
    let mut catalog = Catalog {
        pools: pools.iter().map(|pool| Seen::of(*pool)).collect(),
        families: Vec::new(),
    };
    let c = &mut catalog;

    c.add(
        names::CONNECTION_COUNT,
        "Connections open, by state.",
        Gauge,
        |pool| {
            let status = &pool.status;
            vec![
                (vec![("state", "idle".into())], number(status.idle)),
                (vec![("state", "used".into())], number(status.in_use)),
            ]
        },
    );
    c.one(
        names::CONNECTION_MAX,
        "Most connections allowed (max_size).",
        Gauge,
        |p| p.status.max_size.into(),
    );
    c.one(
        names::CONNECTION_IDLE_MAX,
        "Most idle connections kept (max_size).",
        Gauge,
        |p| p.status.max_size.into(),
    );
    c.one(
        names::CONNECTION_IDLE_MIN,
        "Idle connections kept ready (min_idle).",
        Gauge,
        |p| p.min_idle.into(),
    );
    c.one(
        names::CONNECTION_PENDING_REQUESTS,
        "Callers waiting for a connection.",
        Gauge,
        |p| p.status.waiters.into(),
    );
    c.one(
        names::CONNECTIONS_OPENING,
        "Connection attempts in flight or backing off.",
        Gauge,
        |p| p.status.opening.into(),
    );
    c.one(
        names::LEAK_SUSPECTS,
        "Connections held past leak_detection_threshold now.",
        Gauge,
        |p| p.leak_suspects as f64,
    );
    c.one(
        names::CONNECTION_LIMIT,
        "Connections callers may use at once: max_size, or the adaptive limit below it.",
        Gauge,
        |p| p.status.limit.into(),
    );
    c.add(
        names::LIMIT_USE_TIME,
        "The adaptive limit's use-time readings: the lowest interval mean seen (little queueing in the database) and the last interval's mean.",
        Gauge,
        |pool| {
            let sizing = &pool.sizing;
            [("baseline", sizing.baseline_use), ("recent", sizing.recent_use)]
                .into_iter()
                .filter_map(|(estimate, value)| {
                    value.map(|value| (vec![("estimate", estimate.into())], number(value.as_secs_f64())))
                })
                .collect()
        },
    );
    c.one(
        names::BREAKER_OPEN,
        "1 while the circuit breaker is open (database unreachable).",
        Gauge,
        |p| f64::from(u8::from(p.status.breaker_open)),
    );
    c.add(
        names::ALERTS_FIRING,
        "1 while the alert fires.",
        Gauge,
        |pool| {
            AlertName::ALL
                .into_iter()
                .map(|name| {
                    (
                        vec![("alertname", name.as_str().into())],
                        number(u8::from(pool.firing.contains(&name))),
                    )
                })
                .collect()
        },
    );
    c.reported(
        names::SERVER_MAX_CONNECTIONS,
        "The server's connection limit, as last reported.",
        |p| p.capacity.map(|capacity| capacity.max_connections.into()),
    );
    c.reported(
        names::SERVER_CONNECTIONS_AVAILABLE,
        "Connections the server can still give, as last reported.",
        |p| p.capacity.map(|capacity| capacity.available.into()),
    );
    c.reported(
        names::FLEET_GRANT,
        "This member's grant: the most connections its fleet lets the pool open, as last reported.",
        |p| p.fleet.as_ref().map(|fleet| fleet.grant.into()),
    );
    c.reported(
        names::FLEET_BUDGET,
        "The connections the server leaves the pool's fleet, as last reported.",
        |p| p.fleet.as_ref().map(|fleet| fleet.budget.into()),
    );
    c.reported(
        names::FLEET_MEMBERS,
        "Live members of the pool's fleet, this one included, as last reported.",
        |p| p.fleet.as_ref().map(|fleet| fleet.members.len() as f64),
    );
    c.reported(
        names::FLEET_DEGRADED,
        "1 while the pool has lost its fleet's coordination and runs on a fallback share.",
        |p| {
            p.fleet
                .as_ref()
                .map(|fleet| f64::from(u8::from(fleet.state == FleetState::Degraded)))
        },
    );

    c.one(
        names::CONNECTION_TIMEOUTS,
        "get() calls that timed out.",
        Counter,
        |p| p.stats.timeouts as f64,
    );
    c.one(
        names::CONNECTIONS_OPENED,
        "Connections opened.",
        Counter,
        |p| p.stats.opened as f64,
    );
    c.add(
        names::CONNECTIONS_CLOSED,
        "Connections closed, by reason.",
        Counter,
        |pool| {
            let stats = &pool.stats;
            CloseReason::ALL
                .into_iter()
                .map(|reason| {
                    (
                        vec![("reason", reason.as_str().into())],
                        count(stats.closed_by(reason)),
                    )
                })
                .collect()
        },
    );
    c.add(
        names::CONNECT_ERRORS,
        "Failed connection attempts, by class.",
        Counter,
        |pool| {
            let stats = &pool.stats;
            vec![
                (
                    vec![("class", "transient".into())],
                    count(stats.connect_errors_transient),
                ),
                (
                    vec![("class", "permanent".into())],
                    count(stats.connect_errors_permanent),
                ),
            ]
        },
    );
    c.one(
        names::CONNECT_TIMEOUTS,
        "Connection attempts past connect_timeout.",
        Counter,
        |p| p.stats.connect_timeouts as f64,
    );
    c.one(
        names::VALIDATION_FAILURES,
        "Validations that failed.",
        Counter,
        |p| p.stats.validation_failures as f64,
    );
    c.one(
        names::RESET_FAILURES,
        "Session resets that failed.",
        Counter,
        |p| p.stats.reset_failures as f64,
    );
    c.one(
        names::LEAKS_DETECTED,
        "Connections reported as leak suspects.",
        Counter,
        |p| p.stats.leaks_detected as f64,
    );
    c.one(
        names::BREAKER_OPENED,
        "Times the circuit breaker opened.",
        Counter,
        |p| p.stats.breaker_opened as f64,
    );
    c.add(
        names::ACQUIRE_REJECTED,
        "get() calls refused at once, by reason.",
        Counter,
        |pool| {
            let stats = &pool.stats;
            vec![
                (
                    vec![("reason", "unavailable".into())],
                    count(stats.rejected_unavailable),
                ),
                (
                    vec![("reason", "queue_full".into())],
                    count(stats.rejected_queue_full),
                ),
            ]
        },
    );
    c.add(
        names::ACQUIRED,
        "Successful checkouts, straight from an idle connection or after waiting.",
        Counter,
        |pool| {
            let stats = &pool.stats;
            vec![
                (
                    vec![("path", "direct".into())],
                    count(stats.acquired_direct),
                ),
                (
                    vec![("path", "waited".into())],
                    count(stats.acquired_after_wait),
                ),
            ]
        },
    );

    c.add(
        names::CONNECTION_CREATE_TIME,
        "Time to open a connection.",
        Histogram,
        |pool| vec![(Vec::new(), Value::Histogram(pool.stats.create_time.clone()))],
    );
    c.add(
        names::CONNECTION_WAIT_TIME,
        "Time get() took to hand out a connection.",
        Histogram,
        |pool| vec![(Vec::new(), Value::Histogram(pool.stats.wait_time.clone()))],
    );
    c.add(
        names::CONNECTION_USE_TIME,
        "Time a caller held a connection.",
        Histogram,
        |pool| vec![(Vec::new(), Value::Histogram(pool.stats.use_time.clone()))],
    );
    catalog.families
}

/// A histogram as Prometheus buckets: the sum in seconds, the count, and
/// the samples in each bucket of [`BUCKETS`] (not cumulative), the last
/// one above 60 s. A sample in an internal bucket that straddles a bound
/// counts in the bucket above it (internal buckets are 12.5% wide).
pub(crate) fn buckets(histogram: &HistogramSnapshot) -> (f64, u64, Vec<(f64, u64)>) {
    let mut below = 0;
    let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
    for bound in BUCKETS {
        let cumulative = histogram.count_at_most(std::time::Duration::from_secs_f64(bound));
        buckets.push((bound, cumulative - below));
        below = cumulative;
    }
    let count = histogram.count();
    buckets.push((f64::INFINITY, count - below));
    (histogram.sum().as_secs_f64(), count, buckets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric_names::{COUNTERS, GAUGES, HISTOGRAMS};

    /// The catalog and the public name lists agree, kind by kind.
    #[test]
    fn every_family_is_a_public_name_of_its_kind() {
        let catalog = families(&[]);
        for (kind, names) in [
            (Kind::Gauge, GAUGES),
            (Kind::Counter, COUNTERS),
            (Kind::Histogram, HISTOGRAMS),
        ] {
            let exported: Vec<&str> = catalog
                .iter()
                .filter(|family| family.kind == kind)
                .map(|family| family.name)
                .collect();
            assert_eq!(exported, names, "{kind:?}");
        }
    }
}
