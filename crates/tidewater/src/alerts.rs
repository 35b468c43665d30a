//! Alerts that warn before the pool runs dry.
//!
//! The maintenance task evaluates seven rules on every tick, over the
//! pool's live numbers and a recent window of its statistics:
//!
//! | alert | fires when | severity |
//! |---|---|---|
//! | `TidewaterPoolUtilizationHigh` | connections in use / `max_size` ≥ `alerts.utilization_threshold` (0.8) for `alerts.utilization_for` (1 min) | warning |
//! | `TidewaterAcquireWaitSlow` | an acquisition waited longer than `alerts.slow_wait_threshold` (5 s) within the window | warning |
//! | `TidewaterAcquireTimeouts` | a `get()` timed out within the window | critical |
//! | `TidewaterLeakSuspected` | a connection is held longer than `leak_detection_threshold` | warning |
//! | `TidewaterDatabaseUnreachable` | the circuit breaker is open | critical |
//! | `TidewaterConnectErrorsRising` | `alerts.connect_errors_threshold` (5) connection attempts failed within the window | warning |
//! | `TidewaterCapacityHeadroomLow` | the server's free connections fall below `alerts.capacity_headroom` (10%) of its `max_connections`, as last reported by the backend | warning |
//!
//! Each alert fires once, and resolves once its condition has stayed clear
//! for `alerts.resolve_after` (1 min); utilization must also fall 10 points
//! below its threshold. So an alert does not flap.
//!
//! Firing and resolved alerts go to every [`AlertSink`]: a tracing event
//! always, plus the sinks an application adds with
//! [`Pool::add_alert_sink`](crate::Pool::add_alert_sink) (a closure, or the
//! Alertmanager webhook of the `webhook` feature). Sinks are called from the
//! maintenance task and must not block.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::AlertConfig;
use crate::histogram::HistogramSnapshot;
use crate::leaks::LeakSuspect;
use crate::rt::Instant;
use crate::stats::{PoolStatus, StatsSnapshot};

/// The alerts the pool evaluates.
///
/// ```
/// use tidewater::alerts::AlertName;
/// assert_eq!(AlertName::DatabaseUnreachable.as_str(), "TidewaterDatabaseUnreachable");
/// assert_eq!(AlertName::ALL.len(), 7);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertName {
    /// Most connections in use for a sustained time.
    PoolUtilizationHigh,
    /// An acquisition waited longer than the slow-wait threshold.
    AcquireWaitSlow,
    /// A `get()` timed out.
    AcquireTimeouts,
    /// A connection is held longer than the leak threshold.
    LeakSuspected,
    /// The circuit breaker is open: the database cannot be reached.
    DatabaseUnreachable,
    /// Connection attempts keep failing.
    ConnectErrorsRising,
    /// The database server is running out of connections.
    CapacityHeadroomLow,
}

impl AlertName {
    /// Every alert, in a fixed order.
    pub const ALL: [AlertName; 7] = [
        Self::PoolUtilizationHigh,
        Self::AcquireWaitSlow,
        Self::AcquireTimeouts,
        Self::LeakSuspected,
        Self::DatabaseUnreachable,
        Self::ConnectErrorsRising,
        Self::CapacityHeadroomLow,
    ];

    /// The name as in Prometheus and Alertmanager.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PoolUtilizationHigh => "TidewaterPoolUtilizationHigh",
            Self::AcquireWaitSlow => "TidewaterAcquireWaitSlow",
            Self::AcquireTimeouts => "TidewaterAcquireTimeouts",
            Self::LeakSuspected => "TidewaterLeakSuspected",
            Self::DatabaseUnreachable => "TidewaterDatabaseUnreachable",
            Self::ConnectErrorsRising => "TidewaterConnectErrorsRising",
            Self::CapacityHeadroomLow => "TidewaterCapacityHeadroomLow",
        }
    }

    /// How urgent it is.
    pub fn severity(self) -> Severity {
        match self {
            Self::AcquireTimeouts | Self::DatabaseUnreachable => Severity::Critical,
            _ => Severity::Warning,
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Self::PoolUtilizationHigh => "connection pool nearly exhausted",
            Self::AcquireWaitSlow => "callers wait long for a connection",
            Self::AcquireTimeouts => "callers time out waiting for a connection",
            Self::LeakSuspected => "a connection is held far too long: a leak suspect",
            Self::DatabaseUnreachable => "database unreachable: the pool fails fast",
            Self::ConnectErrorsRising => "connection attempts keep failing",
            Self::CapacityHeadroomLow => "the database server is running out of connections",
        }
    }
}

impl Serialize for AlertName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AlertName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::ALL
            .into_iter()
            .find(|alert| alert.as_str() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("no alert is named {name:?}")))
    }
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Act soon: the pool is heading for trouble.
    Warning,
    /// Act now: callers are failing.
    Critical,
}

impl Severity {
    /// The severity as an Alertmanager label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// A firing (or just resolved) alert. In JSON, `name` is the Prometheus
/// name and `since` an RFC 3339 time; it reads back as it was written.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use tidewater::alerts::{Alert, AlertName, Severity};
///
/// let alert = Alert {
///     name: AlertName::AcquireTimeouts,
///     severity: Severity::Critical,
///     pool: "orders".into(),
///     summary: "orders: callers time out waiting for a connection".into(),
///     description: "3 timeouts in the last 1m".into(),
///     since: UNIX_EPOCH + Duration::from_millis(1_795_900_000_123),
/// };
/// let json = serde_json::to_value(&alert).unwrap();
/// assert_eq!(json["name"], "TidewaterAcquireTimeouts");
/// assert_eq!(json["since"], "2026-11-28T21:06:40.123Z");
/// assert_eq!(serde_json::from_value::<Alert>(json).unwrap(), alert);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Which alert.
    pub name: AlertName,
    /// How urgent.
    pub severity: Severity,
    /// The pool's name.
    pub pool: Arc<str>,
    /// One line for a pager.
    pub summary: String,
    /// What is going on, with the numbers (and, for a leak, the call sites).
    pub description: String,
    /// When it started firing.
    #[serde(serialize_with = "rfc3339", deserialize_with = "parse_rfc3339")]
    pub since: SystemTime,
}

/// An alert changing state: what sinks receive.
///
/// ```
/// use tidewater::alerts::{AlertEvent, AlertSink};
/// // Any closure taking an event is a sink.
/// let sink = |event: &AlertEvent| eprintln!("{}: {}", event.alert.name.as_str(), event.alert.description);
/// fn accepts(_: impl AlertSink) {}
/// accepts(sink);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertEvent {
    /// The alert.
    pub alert: Alert,
    /// `None` while firing; when it resolved otherwise.
    #[serde(serialize_with = "optional_rfc3339")]
    pub resolved_at: Option<SystemTime>,
}

impl AlertEvent {
    /// Whether the alert fires (rather than resolves).
    pub fn is_firing(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// Where alerts go. Called from the pool's maintenance task: it must return
/// at once (queue the work if it is slow).
pub trait AlertSink: Send + Sync + 'static {
    /// An alert fired or resolved.
    fn notify(&self, event: &AlertEvent);
}

impl<F: Fn(&AlertEvent) + Send + Sync + 'static> AlertSink for F {
    fn notify(&self, event: &AlertEvent) {
        self(event);
    }
}

/// What the database server can still give, as a backend last measured it
/// (see [`Pool::report_capacity`](crate::Pool::report_capacity)).
///
/// ```
/// let capacity = tidewater::alerts::ServerCapacity { max_connections: 100, available: 8 };
/// assert!(capacity.headroom() < 0.1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCapacity {
    /// The server's connection limit.
    pub max_connections: u32,
    /// Connections the server can still give.
    pub available: u32,
}

impl ServerCapacity {
    /// Free connections as a share of the limit.
    pub fn headroom(&self) -> f64 {
        f64::from(self.available) / f64::from(self.max_connections.max(1))
    }
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_rfc3339_millis(*time))
}

fn parse_rfc3339<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<SystemTime, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
}

fn optional_rfc3339<S: serde::Serializer>(
    time: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => rfc3339(time, serializer),
        None => serializer.serialize_none(),
    }
}

/// The pool's statistics at one moment, kept for the window.
struct Sample {
    at: Instant,
    wait_time: HistogramSnapshot,
    timeouts: u64,
    connect_errors: u64,
}

/// What happened over the recent window.
#[derive(Clone, Debug, Default)]
pub(crate) struct Recent {
    pub(crate) wait_time: HistogramSnapshot,
    pub(crate) timeouts: u64,
    pub(crate) connect_errors: u64,
}

/// Samples of the statistics, a few per window, so the window's deltas can
/// be read at any time.
pub(crate) struct Window {
    samples: VecDeque<Sample>,
    span: Duration,
}

/// Samples taken per window (and kept: one more).
const STEPS: u32 = 12;

impl Window {
    /// A window whose first sample is the pool's start: every count zero.
    pub(crate) fn new(span: Duration, start: Instant) -> Self {
        let mut samples = VecDeque::with_capacity(STEPS as usize + 2);
        samples.push_back(Sample {
            at: start,
            wait_time: HistogramSnapshot::default(),
            timeouts: 0,
            connect_errors: 0,
        });
        Self { samples, span }
    }

    /// Keeps `stats` as a sample when a step has passed since the last one.
    pub(crate) fn record(&mut self, now: Instant, stats: &StatsSnapshot) {
        let step = self.span / STEPS;
        if self
            .samples
            .back()
            .is_some_and(|last| now.saturating_duration_since(last.at) < step)
        {
            return;
        }
        self.samples.push_back(Sample {
            at: now,
            wait_time: stats.wait_time.clone(),
            timeouts: stats.timeouts,
            connect_errors: stats.connect_errors(),
        });
        while self.samples.len() > STEPS as usize + 1 {
            self.samples.pop_front();
        }
    }

    /// What happened between the oldest sample and `stats`.
    pub(crate) fn recent(&self, stats: &StatsSnapshot) -> Recent {
        match self.samples.front() {
            None => Recent::default(),
            Some(oldest) => Recent {
                wait_time: stats.wait_time.since(&oldest.wait_time),
                timeouts: stats.timeouts - oldest.timeouts,
                connect_errors: stats.connect_errors() - oldest.connect_errors,
            },
        }
    }
}

/// What a rule looks at, once per tick.
pub(crate) struct Observation<'a> {
    pub(crate) now: Instant,
    pub(crate) status: &'a PoolStatus,
    pub(crate) recent: &'a Recent,
    pub(crate) leaks: &'a [LeakSuspect],
    pub(crate) last_connect_error: Option<String>,
    pub(crate) capacity: Option<ServerCapacity>,
}

/// One rule's progress: pending, firing, clearing.
#[derive(Default)]
struct Rule {
    pending_since: Option<Instant>,
    firing: Option<Alert>,
    clear_since: Option<Instant>,
}

/// The alert rules of one pool, and their state.
pub(crate) struct Alerts {
    config: AlertConfig,
    rules: [Rule; 7],
}

impl Alerts {
    pub(crate) fn new(config: AlertConfig) -> Self {
        Self {
            config,
            rules: Default::default(),
        }
    }

    /// The alerts firing now.
    pub(crate) fn firing(&self) -> Vec<Alert> {
        self.rules
            .iter()
            .filter_map(|rule| rule.firing.clone())
            .collect()
    }

    /// Evaluates every rule; returns the alerts that fired or resolved.
    pub(crate) fn evaluate(&mut self, seen: &Observation<'_>) -> Vec<AlertEvent> {
        if !self.config.enabled {
            return Vec::new();
        }
        let mut events = Vec::new();
        for (name, rule) in AlertName::ALL.into_iter().zip(&mut self.rules) {
            let (fires, clear, wait_for) = condition(&self.config, name, seen);
            let event = step(
                rule,
                seen,
                name,
                fires,
                clear,
                wait_for,
                self.config.resolve_after,
            );
            events.extend(event);
        }
        events
    }
}

/// Whether `name`'s condition holds now, whether its clear condition holds,
/// and how long it must hold before firing.
fn condition(
    config: &AlertConfig,
    name: AlertName,
    seen: &Observation<'_>,
) -> (bool, bool, Duration) {
    let status = seen.status;
    let recent = seen.recent;
    match name {
        AlertName::PoolUtilizationHigh => {
            let used = f64::from(status.in_use) / f64::from(status.max_size.max(1));
            let high = used >= config.utilization_threshold;
            (
                high,
                used < config.utilization_threshold - 0.1,
                config.utilization_for,
            )
        }
        AlertName::AcquireWaitSlow => {
            let slow = slow_waits(config, recent);
            (slow > 0, slow == 0, Duration::ZERO)
        }
        AlertName::AcquireTimeouts => (recent.timeouts > 0, recent.timeouts == 0, Duration::ZERO),
        AlertName::LeakSuspected => (
            !seen.leaks.is_empty(),
            seen.leaks.is_empty(),
            Duration::ZERO,
        ),
        AlertName::DatabaseUnreachable => {
            (status.breaker_open, !status.breaker_open, Duration::ZERO)
        }
        AlertName::ConnectErrorsRising => {
            let many = recent.connect_errors >= u64::from(config.connect_errors_threshold);
            (many, !many, Duration::ZERO)
        }
        AlertName::CapacityHeadroomLow => match seen.capacity {
            Some(capacity) => {
                let low = capacity.headroom() < config.capacity_headroom;
                (low, !low, Duration::ZERO)
            }
            None => (false, true, Duration::ZERO),
        },
    }
}

fn slow_waits(config: &AlertConfig, recent: &Recent) -> u64 {
    recent.wait_time.count() - recent.wait_time.count_at_most(config.slow_wait_threshold)
}

/// Advances one rule; returns its event, if it fired or resolved.
fn step(
    rule: &mut Rule,
    seen: &Observation<'_>,
    name: AlertName,
    fires: bool,
    clear: bool,
    wait_for: Duration,
    resolve_after: Duration,
) -> Option<AlertEvent> {
    let now = seen.now;
    match &mut rule.firing {
        None => {
            if !fires {
                rule.pending_since = None;
                return None;
            }
            let since = *rule.pending_since.get_or_insert(now);
            if now.saturating_duration_since(since) < wait_for {
                return None;
            }
            let alert = Alert {
                name,
                severity: name.severity(),
                pool: seen.status.pool.clone(),
                summary: format!("{}: {}", seen.status.pool, name.summary()),
                description: describe(name, seen),
                since: SystemTime::now(),
            };
            rule.firing = Some(alert.clone());
            rule.pending_since = None;
            rule.clear_since = None;
            Some(AlertEvent {
                alert,
                resolved_at: None,
            })
        }
        Some(alert) => {
            if !clear {
                rule.clear_since = None;
                alert.description = describe(name, seen);
                return None;
            }
            let since = *rule.clear_since.get_or_insert(now);
            if now.saturating_duration_since(since) < resolve_after {
                return None;
            }
            let alert = rule.firing.take().expect("a firing rule has its alert");
            rule.clear_since = None;
            Some(AlertEvent {
                alert,
                resolved_at: Some(SystemTime::now()),
            })
        }
    }
}

/// What is going on, with the numbers.
fn describe(name: AlertName, seen: &Observation<'_>) -> String {
    let status = seen.status;
    let recent = seen.recent;
    let mut text = match name {
        AlertName::PoolUtilizationHigh => format!(
            "{} of {} connections in use ({:.0}%), {} callers waiting",
            status.in_use,
            status.max_size,
            100.0 * f64::from(status.in_use) / f64::from(status.max_size.max(1)),
            status.waiters
        ),
        AlertName::AcquireWaitSlow => format!(
            "acquisitions waited up to {:?} recently (p99 {:?})",
            recent.wait_time.max(),
            recent.wait_time.quantile(0.99)
        ),
        AlertName::AcquireTimeouts => format!("{} get() calls timed out recently", recent.timeouts),
        AlertName::LeakSuspected => {
            let leaks: Vec<String> = seen.leaks.iter().map(ToString::to_string).collect();
            format!(
                "{} connection(s) held too long: {}",
                seen.leaks.len(),
                leaks.join("; ")
            )
        }
        AlertName::DatabaseUnreachable => {
            "the circuit breaker is open; new callers fail fast".to_owned()
        }
        AlertName::ConnectErrorsRising => {
            format!(
                "{} connection attempts failed recently",
                recent.connect_errors
            )
        }
        AlertName::CapacityHeadroomLow => match seen.capacity {
            Some(capacity) => format!(
                "the server has {} of {} connections left ({:.0}%)",
                capacity.available,
                capacity.max_connections,
                100.0 * capacity.headroom()
            ),
            None => String::new(),
        },
    };
    if matches!(
        name,
        AlertName::DatabaseUnreachable
            | AlertName::ConnectErrorsRising
            | AlertName::AcquireTimeouts
    ) && let Some(error) = &seen.last_connect_error
    {
        let _ = write!(text, "; last connection error: {error}");
    }
    text
}

/// The alert sink every pool has: tracing events (`ERROR` for critical,
/// `WARN` for warning alerts, `INFO` when resolved).
pub(crate) fn trace(event: &AlertEvent) {
    let alert = &event.alert;
    let name = alert.name.as_str();
    if !event.is_firing() {
        tracing::info!(pool = %alert.pool, alert = name, "alert resolved: {}", alert.summary);
    } else if alert.severity == Severity::Critical {
        tracing::error!(pool = %alert.pool, alert = name, description = %alert.description, "alert firing: {}", alert.summary);
    } else {
        tracing::warn!(pool = %alert.pool, alert = name, description = %alert.description, "alert firing: {}", alert.summary);
    }
}

/// A pool's alert rules, statistics window, sinks, and last capacity and
/// fleet reports, behind one lock the maintenance task and the monitoring
/// calls share (never `get()`).
pub(crate) struct Monitor {
    pub(crate) alerts: Alerts,
    pub(crate) window: Window,
    pub(crate) sinks: Vec<Arc<dyn AlertSink>>,
    pub(crate) capacity: Option<ServerCapacity>,
    pub(crate) fleet: Option<crate::fleet::FleetStatus>,
}

impl Monitor {
    pub(crate) fn new(config: &AlertConfig) -> Self {
        Self {
            alerts: Alerts::new(config.clone()),
            window: Window::new(config.window, Instant::now()),
            sinks: Vec::new(),
            capacity: None,
            fleet: None,
        }
    }
}
