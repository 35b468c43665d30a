//! The names of the metrics every pool exports, defined once.
//!
//! The Prometheus exporter (feature `prometheus`), the `metrics` facade
//! publisher (feature `metrics`), the dashboards and the alert rules all
//! use these names; code that reads a scrape should use them too, so a
//! rename happens here and nowhere else.
//!
//! A constant names a metric *family*. The exposition adds suffixes to
//! some of them:
//!
//! - a counter (one of [`COUNTERS`]) is exported as `<name>_total`
//!   ([`COUNTER_SUFFIX`]);
//! - a histogram (one of [`HISTOGRAMS`], in seconds) as `<name>_bucket`,
//!   `<name>_sum` and `<name>_count` in Prometheus, or `<name>` (labelled
//!   `quantile`), `<name>_sum` and `<name>_count` through the `metrics`
//!   facade ([`HISTOGRAM_SUFFIXES`]);
//! - a gauge (one of [`GAUGES`]) keeps its name.
//!
//! [`family`] maps an exported series name back to its family. Every
//! series carries the label `pool_name`.
//!
//! ```
//! use tidewater::metric_names::{self, ACQUIRED, CONNECTION_MAX, CONNECTION_WAIT_TIME};
//!
//! assert_eq!(CONNECTION_MAX, "db_client_connection_max");
//! assert_eq!(format!("{ACQUIRED}{}", metric_names::COUNTER_SUFFIX), "tidewater_acquired_total");
//! assert_eq!(metric_names::family("tidewater_acquired_total"), Some(ACQUIRED));
//! assert_eq!(
//!     metric_names::family("db_client_connection_wait_time_seconds_bucket"),
//!     Some(CONNECTION_WAIT_TIME)
//! );
//! assert_eq!(metric_names::family("tidewater_acquired"), None, "a counter ends in _total");
//! assert_eq!(metric_names::family("db_client_connection_made_up"), None);
//! ```

// Gauges.

/// Gauge: connections open, labelled `state` (`idle`, `used`).
pub const CONNECTION_COUNT: &str = "db_client_connection_count";
/// Gauge: most connections allowed (`max_size`).
pub const CONNECTION_MAX: &str = "db_client_connection_max";
/// Gauge: most idle connections kept (`max_size`).
pub const CONNECTION_IDLE_MAX: &str = "db_client_connection_idle_max";
/// Gauge: idle connections kept ready (`min_idle`).
pub const CONNECTION_IDLE_MIN: &str = "db_client_connection_idle_min";
/// Gauge: callers waiting for a connection.
pub const CONNECTION_PENDING_REQUESTS: &str = "db_client_connection_pending_requests";
/// Gauge: connection attempts in flight or backing off.
pub const CONNECTIONS_OPENING: &str = "tidewater_connections_opening";
/// Gauge: connections held past `leak_detection_threshold` now.
pub const LEAK_SUSPECTS: &str = "tidewater_leak_suspects";
/// Gauge: connections callers may use at once (`max_size`, or the
/// adaptive limit below it).
pub const CONNECTION_LIMIT: &str = "tidewater_connection_limit";
/// Gauge, in seconds: the adaptive limit's use-time readings, labelled
/// `estimate` (`baseline`, `recent`); absent until the limit has decided.
pub const LIMIT_USE_TIME: &str = "tidewater_limit_use_time_seconds";
/// Gauge: 1 while the circuit breaker is open.
pub const BREAKER_OPEN: &str = "tidewater_breaker_open";
/// Gauge: 1 while the alert fires, labelled `alertname`.
pub const ALERTS_FIRING: &str = "tidewater_alerts_firing";
/// Gauge: the server's connection limit, as last reported; absent until
/// reported.
pub const SERVER_MAX_CONNECTIONS: &str = "tidewater_server_max_connections";
/// Gauge: connections the server can still give, as last reported;
/// absent until reported.
pub const SERVER_CONNECTIONS_AVAILABLE: &str = "tidewater_server_connections_available";
/// Gauge: this member's grant, the most connections its fleet lets the
/// pool open, as last reported (see [`crate::fleet`]); absent until
/// reported.
pub const FLEET_GRANT: &str = "tidewater_fleet_grant";
/// Gauge: the connections the server leaves the pool's fleet, as last
/// reported; absent until reported.
pub const FLEET_BUDGET: &str = "tidewater_fleet_budget";
/// Gauge: live members of the pool's fleet, this one included, as last
/// reported; absent until reported.
pub const FLEET_MEMBERS: &str = "tidewater_fleet_members";
/// Gauge: 1 while the pool has lost its fleet's coordination and runs on a
/// fallback share, 0 while coordinated; absent until reported.
pub const FLEET_DEGRADED: &str = "tidewater_fleet_degraded";

// Counters, without their `_total`.

/// Counter: `get()` calls that timed out.
pub const CONNECTION_TIMEOUTS: &str = "db_client_connection_timeouts";
/// Counter: connections opened.
pub const CONNECTIONS_OPENED: &str = "tidewater_connections_opened";
/// Counter: connections closed, labelled `reason`.
pub const CONNECTIONS_CLOSED: &str = "tidewater_connections_closed";
/// Counter: failed connection attempts, labelled `class` (`transient`,
/// `permanent`).
pub const CONNECT_ERRORS: &str = "tidewater_connect_errors";
/// Counter: connection attempts past `connect_timeout`.
pub const CONNECT_TIMEOUTS: &str = "tidewater_connect_timeouts";
/// Counter: validations that failed.
pub const VALIDATION_FAILURES: &str = "tidewater_validation_failures";
/// Counter: session resets that failed.
pub const RESET_FAILURES: &str = "tidewater_reset_failures";
/// Counter: connections reported as leak suspects.
pub const LEAKS_DETECTED: &str = "tidewater_leaks_detected";
/// Counter: times the circuit breaker opened.
pub const BREAKER_OPENED: &str = "tidewater_breaker_opened";
/// Counter: `get()` calls refused at once, labelled `reason`
/// (`unavailable`, `queue_full`).
pub const ACQUIRE_REJECTED: &str = "tidewater_acquire_rejected";
/// Counter: successful checkouts, labelled `path` (`direct`, `waited`).
pub const ACQUIRED: &str = "tidewater_acquired";

// Histograms, in seconds.

/// Histogram, in seconds: time to open a connection.
pub const CONNECTION_CREATE_TIME: &str = "db_client_connection_create_time_seconds";
/// Histogram, in seconds: time `get()` took to hand out a connection.
pub const CONNECTION_WAIT_TIME: &str = "db_client_connection_wait_time_seconds";
/// Histogram, in seconds: time a caller held a connection.
pub const CONNECTION_USE_TIME: &str = "db_client_connection_use_time_seconds";

/// Every gauge, exported under its own name.
pub const GAUGES: &[&str] = &[
    CONNECTION_COUNT,
    CONNECTION_MAX,
    CONNECTION_IDLE_MAX,
    CONNECTION_IDLE_MIN,
    CONNECTION_PENDING_REQUESTS,
    CONNECTIONS_OPENING,
    LEAK_SUSPECTS,
    CONNECTION_LIMIT,
    LIMIT_USE_TIME,
    BREAKER_OPEN,
    ALERTS_FIRING,
    SERVER_MAX_CONNECTIONS,
    SERVER_CONNECTIONS_AVAILABLE,
    FLEET_GRANT,
    FLEET_BUDGET,
    FLEET_MEMBERS,
    FLEET_DEGRADED,
];

/// Every counter, exported as `<name>_total`.
pub const COUNTERS: &[&str] = &[
    CONNECTION_TIMEOUTS,
    CONNECTIONS_OPENED,
    CONNECTIONS_CLOSED,
    CONNECT_ERRORS,
    CONNECT_TIMEOUTS,
    VALIDATION_FAILURES,
    RESET_FAILURES,
    LEAKS_DETECTED,
    BREAKER_OPENED,
    ACQUIRE_REJECTED,
    ACQUIRED,
];

/// Every histogram, exported as the series of [`HISTOGRAM_SUFFIXES`].
pub const HISTOGRAMS: &[&str] = &[
    CONNECTION_CREATE_TIME,
    CONNECTION_WAIT_TIME,
    CONNECTION_USE_TIME,
];

/// What a counter's exported series adds to its name.
pub const COUNTER_SUFFIX: &str = "_total";

/// What a histogram's exported series add to its name (the empty suffix:
/// the `metrics` facade's quantile gauges).
pub const HISTOGRAM_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count", ""];

/// The family of an exported series name: a gauge's own name, a counter's
/// name followed by `_total`, or a histogram's name followed by one of
/// [`HISTOGRAM_SUFFIXES`]. `None` when no pool exports a series so named.
pub fn family(series: &str) -> Option<&'static str> {
    let gauge = GAUGES.iter().find(|name| **name == series);
    let counter = || {
        let base = series.strip_suffix(COUNTER_SUFFIX)?;
        COUNTERS.iter().find(|name| **name == base)
    };
    let histogram = || {
        HISTOGRAMS.iter().find(|name| {
            series
                .strip_prefix(**name)
                .is_some_and(|suffix| HISTOGRAM_SUFFIXES.contains(&suffix))
        })
    };
    gauge.or_else(counter).or_else(histogram).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed() {
        let all: Vec<&str> = [GAUGES, COUNTERS, HISTOGRAMS].concat();
        let unique: std::collections::BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "a name listed twice");
        for name in all {
            assert!(
                name.starts_with("db_client_connection_") || name.starts_with("tidewater_"),
                "{name}"
            );
            assert_eq!(family(name).is_some(), !COUNTERS.contains(&name), "{name}");
        }
        for name in HISTOGRAMS {
            assert!(name.ends_with("_seconds"), "{name}");
        }
    }

    #[test]
    fn family_of_suffixed_series() {
        assert_eq!(
            family("db_client_connection_timeouts_total"),
            Some(CONNECTION_TIMEOUTS)
        );
        assert_eq!(
            family("db_client_connection_use_time_seconds_sum"),
            Some(CONNECTION_USE_TIME)
        );
        assert_eq!(
            family("db_client_connection_use_time_seconds"),
            Some(CONNECTION_USE_TIME)
        );
        assert_eq!(family("db_client_connection_max_total"), None);
        assert_eq!(family("db_client_connection_use_time_seconds_total"), None);
        assert_eq!(family("tidewater_breaker_open_bucket"), None);
    }
}
