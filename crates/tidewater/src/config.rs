//! Pool configuration: every key, its default and its allowed range.
//!
//! [`PoolConfig`] deserializes with serde (TOML, JSON, environment layers),
//! and [`PoolConfig::validate`] checks it when the pool is built. Durations
//! are written as human-readable strings (`"30s"`, `"500ms"`, `"10m"`);
//! optional ones also accept `"off"`.
//!
//! | key | default | allowed | meaning |
//! |---|---|---|---|
//! | `name` | `"default"` | 1 to 64 characters | label on logs, metrics and errors |
//! | `max_size` | 50 | 1 to 10 000 | most connections open at once (in use, idle and being opened) |
//! | `min_idle` | 0 | 0 to `max_size` | idle connections kept ready (refilled by the maintenance task) |
//! | `acquire_timeout` | 30 s | 1 ms to 1 h | longest a `get()` waits, validation included |
//! | `connect_timeout` | 10 s | 1 ms to 10 min | longest one connection attempt may take |
//! | `validation_timeout` | 5 s | 1 ms to 10 min | longest a validation ping or a session reset may take |
//! | `validate_after` | 500 ms | 0 to 1 h | validate on checkout only when idle longer than this (0: always) |
//! | `idle_timeout` | 10 min | off, or 1 ms to 7 days | close connections idle longer than this, down to `min_idle` |
//! | `max_lifetime` | 30 min | off, or 1 ms to 7 days | close connections older than this (never one in use) |
//! | `max_lifetime_jitter` | 0.025 | 0 to 0.5 | each lifetime is shortened by a random fraction up to this, so connections do not all expire together |
//! | `keepalive_interval` | off | off, or 1 ms to 1 day | ping idle connections unused for this long |
//! | `leak_detection_threshold` | 60 s | off, or 1 ms to 7 days | report a connection held longer than this as a leak suspect |
//! | `max_waiters` | 10 000 | 0 to 1 000 000 | callers that may wait at once for a connection to come back (beyond those a new connection is being opened for); more get `QueueFull` at once |
//! | `idle_order` | `"lifo"` | `"lifo"`, `"fifo"` | which idle connection to reuse: most (LIFO) or least (FIFO) recently returned, among those idle on the calling thread's core |
//! | `max_connecting` | 2 | 1 to 100 | connection attempts in flight at once (no connection storms) |
//! | `connect_backoff_initial` | 10 ms | 1 ms to 1 min | first retry delay ceiling after a failed connection attempt; while callers wait and the database is down or full, how soon it is tried again |
//! | `connect_backoff_max` | 500 ms | `connect_backoff_initial` to 10 min | largest retry delay ceiling (each attempt waits between half the ceiling and all of it) |
//! | `breaker_enabled` | true | true, false | fail fast while the database is unreachable |
//! | `breaker_failure_threshold` | 5 | 1 to 1 000 | consecutive connect failures (with no idle connection left, lasting at least `connect_backoff_max`; a permanent error at once) that open the breaker |
//! | `maintenance_interval` | 1 s | 10 ms to 1 min | how often the maintenance task runs |
//! | `drain_timeout` | 30 s | 0 to 1 h | how long `close()` waits for connections in use to come back |
//! | `expected_wait_p99` | 1 s | 1 ms to 1 h | the health check's bound on the recent p99 acquisition wait (degraded above it) |
//! | `sizing.mode` | `"fixed"` | `"fixed"`, `"adaptive"` | `fixed`: up to `max_size` connections in use; `adaptive`: a limit between `sizing.floor` and `max_size` that follows the database's knee (see [`crate::sizing`]) |
//! | `sizing.floor` | 2 | 1 to 10 000 | the adaptive limit never goes below this (nor above `max_size`) |
//! | `sizing.interval` | 500 ms | 10 ms to 1 min | how often the adaptive limit is reconsidered (at least 20 returns in between) |
//! | `sizing.step` | 0.1 | 0.01 to 0.5 | how far the limit moves per interval, as a share of itself (at least one connection; slow start doubles) |
//! | `sizing.min_elasticity` | 0.1 | 0.01 to 1 | what an added connection must bring, relative to its share of connections, for the limit to rise (below it, the limit falls): throughput for callers that loop, time not spent queueing for callers that arrive on their own schedule |
//! | `alerts.enabled` | true | true, false | evaluate the in-process alert rules |
//! | `alerts.window` | 1 min | 1 s to 1 h | the recent window the timeout, slow-wait, connection-error rules and the wait p99 look at |
//! | `alerts.utilization_threshold` | 0.8 | 0.05 to 1 | connections in use over `max_size` that counts as high |
//! | `alerts.utilization_for` | 1 min | 0 to 1 h | how long utilization must stay high before the alert fires |
//! | `alerts.slow_wait_threshold` | 5 s | 1 ms to 1 h | an acquisition that waited longer than this fires the slow-wait alert |
//! | `alerts.connect_errors_threshold` | 5 | 1 to 100 000 | failed connection attempts within the window that fire the connection-errors alert |
//! | `alerts.capacity_headroom` | 0.1 | 0 to 1 | the server's free connections, as a share of its `max_connections`, below which the capacity alert fires |
//! | `alerts.resolve_after` | 1 min | 0 to 1 h | how long a firing alert's condition must stay clear before it resolves (no flapping) |
//!
//! Waiters are always served in FIFO order.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Backoff;

/// Which idle connection a checkout reuses.
///
/// ```
/// use tidewater::IdleOrder;
/// assert_eq!(IdleOrder::default(), IdleOrder::Lifo);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdleOrder {
    /// Reuse the most recently returned connection: a warm working set,
    /// and surplus connections age out through `idle_timeout`.
    #[default]
    Lifo,
    /// Reuse the least recently returned connection: spread use evenly.
    Fifo,
}

/// Settings of one pool. See the [module documentation](self) for the table
/// of keys, defaults and ranges.
///
/// ```
/// use std::time::Duration;
/// use tidewater::PoolConfig;
///
/// let config: PoolConfig = toml::from_str(r#"
///     name = "orders"
///     max_size = 20
///     acquire_timeout = "2s"
///     keepalive_interval = "5m"
///     idle_timeout = "off"
/// "#).unwrap();
/// assert_eq!(config.max_size, 20);
/// assert_eq!(config.acquire_timeout, Duration::from_secs(2));
/// assert_eq!(config.idle_timeout, None);
/// config.validate().unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Label on logs, metrics and errors.
    pub name: String,
    /// Most connections open at once.
    pub max_size: u32,
    /// Idle connections kept ready.
    pub min_idle: u32,
    /// Longest a `get()` waits.
    #[serde(with = "duration")]
    pub acquire_timeout: Duration,
    /// Longest one connection attempt may take.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Longest a validation ping or a session reset may take.
    #[serde(with = "duration")]
    pub validation_timeout: Duration,
    /// Validate on checkout only when idle longer than this.
    #[serde(with = "duration")]
    pub validate_after: Duration,
    /// Close connections idle longer than this (down to `min_idle`).
    #[serde(with = "optional_duration")]
    pub idle_timeout: Option<Duration>,
    /// Close connections older than this.
    #[serde(with = "optional_duration")]
    pub max_lifetime: Option<Duration>,
    /// Largest fraction by which a connection's lifetime is shortened at random.
    pub max_lifetime_jitter: f64,
    /// Ping idle connections unused for this long.
    #[serde(with = "optional_duration")]
    pub keepalive_interval: Option<Duration>,
    /// Report connections held longer than this.
    #[serde(with = "optional_duration")]
    pub leak_detection_threshold: Option<Duration>,
    /// Callers that may wait at once for a connection to come back.
    pub max_waiters: u32,
    /// Which idle connection to reuse first.
    pub idle_order: IdleOrder,
    /// Connection attempts in flight at once.
    pub max_connecting: u32,
    /// First retry delay ceiling after a failed connection attempt; while
    /// callers wait and the database is down or full, how soon it is tried
    /// again.
    #[serde(with = "duration")]
    pub connect_backoff_initial: Duration,
    /// Largest retry delay ceiling.
    #[serde(with = "duration")]
    pub connect_backoff_max: Duration,
    /// Fail fast while the database is unreachable.
    pub breaker_enabled: bool,
    /// Consecutive connect failures that open the breaker, once they have
    /// lasted `connect_backoff_max` (a permanent error: at once).
    pub breaker_failure_threshold: u32,
    /// How often the maintenance task runs.
    #[serde(with = "duration")]
    pub maintenance_interval: Duration,
    /// How long `close()` waits for connections in use.
    #[serde(with = "duration")]
    pub drain_timeout: Duration,
    /// The health check's bound on the recent p99 acquisition wait.
    #[serde(with = "duration")]
    pub expected_wait_p99: Duration,
    /// The in-process alert rules' thresholds.
    pub alerts: AlertConfig,
    /// Fixed or adaptive sizing.
    pub sizing: SizingConfig,
}

/// How many connections the pool lets callers use at once: all of
/// `max_size` (`fixed`), or an adaptive limit below it; see the
/// [module documentation](self) and [`crate::sizing`].
///
/// ```
/// let config: tidewater::PoolConfig = toml::from_str(r#"
///     max_size = 200
///     [sizing]
///     mode = "adaptive"
///     floor = 4
/// "#).unwrap();
/// assert_eq!(config.sizing.mode, tidewater::SizingMode::Adaptive);
/// assert_eq!(config.sizing.step, 0.1);
/// config.validate().unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SizingConfig {
    /// Fixed at `max_size`, or adaptive.
    pub mode: SizingMode,
    /// The adaptive limit never goes below this.
    pub floor: u32,
    /// How often the adaptive limit is reconsidered.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// How far the limit moves per interval, as a share of itself.
    pub step: f64,
    /// What an added connection must bring (throughput, or time callers
    /// do not spend queueing), relative to its share of connections, for
    /// the limit to rise.
    pub min_elasticity: f64,
}

impl Default for SizingConfig {
    fn default() -> Self {
        Self {
            mode: SizingMode::Fixed,
            floor: 2,
            interval: Duration::from_millis(500),
            step: 0.1,
            min_elasticity: 0.1,
        }
    }
}

/// Whether the pool's limit on connections in use is `max_size` or adapts.
///
/// ```
/// assert_eq!(tidewater::SizingMode::default(), tidewater::SizingMode::Fixed);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizingMode {
    /// Up to `max_size` connections, always.
    #[default]
    Fixed,
    /// A limit between `sizing.floor` and `max_size` that follows the
    /// database's knee.
    Adaptive,
}

/// Thresholds and durations of the in-process alert rules; see the
/// [module documentation](self) and [`crate::alerts`].
///
/// ```
/// let config: tidewater::PoolConfig = toml::from_str(r#"
///     [alerts]
///     utilization_threshold = 0.9
///     utilization_for = "30s"
/// "#).unwrap();
/// assert_eq!(config.alerts.utilization_threshold, 0.9);
/// assert_eq!(config.alerts.slow_wait_threshold, std::time::Duration::from_secs(5));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// Evaluate the rules.
    pub enabled: bool,
    /// The recent window the windowed rules look at.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Share of `max_size` in use that counts as high.
    pub utilization_threshold: f64,
    /// How long utilization must stay high before firing.
    #[serde(with = "duration")]
    pub utilization_for: Duration,
    /// A wait longer than this fires the slow-wait alert.
    #[serde(with = "duration")]
    pub slow_wait_threshold: Duration,
    /// Failed connection attempts within the window that fire.
    pub connect_errors_threshold: u32,
    /// Free server connections, as a share of `max_connections`, below which
    /// the capacity alert fires.
    pub capacity_headroom: f64,
    /// How long a condition must stay clear before its alert resolves.
    #[serde(with = "duration")]
    pub resolve_after: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(60),
            utilization_threshold: 0.8,
            utilization_for: Duration::from_secs(60),
            slow_wait_threshold: Duration::from_secs(5),
            connect_errors_threshold: 5,
            capacity_headroom: 0.1,
            resolve_after: Duration::from_secs(60),
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            max_size: 50,
            min_idle: 0,
            acquire_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            validation_timeout: Duration::from_secs(5),
            validate_after: Duration::from_millis(500),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            max_lifetime_jitter: 0.025,
            keepalive_interval: None,
            leak_detection_threshold: Some(Duration::from_secs(60)),
            max_waiters: 10_000,
            idle_order: IdleOrder::Lifo,
            max_connecting: 2,
            connect_backoff_initial: Duration::from_millis(10),
            connect_backoff_max: Duration::from_millis(500),
            breaker_enabled: true,
            breaker_failure_threshold: 5,
            maintenance_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(30),
            expected_wait_p99: Duration::from_secs(1),
            alerts: AlertConfig::default(),
            sizing: SizingConfig::default(),
        }
    }
}

const MS: Duration = Duration::from_millis(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

impl PoolConfig {
    /// How the pool spaces its connection attempts while they fail:
    /// `connect_backoff_initial` and `connect_backoff_max` together.
    ///
    /// ```
    /// let backoff = tidewater::PoolConfig::default().connect_backoff();
    /// assert_eq!(backoff.ceiling(1), std::time::Duration::from_millis(10));
    /// ```
    pub fn connect_backoff(&self) -> Backoff {
        Backoff {
            initial: self.connect_backoff_initial,
            max: self.connect_backoff_max,
        }
    }

    /// The most connection attempts the pool can start within `window`
    /// while they keep failing with a permanent error or with connections
    /// that arrive broken: `max_connecting` at a time, each round at least
    /// half its backoff ceiling after the last failure
    /// ([`Backoff::most_attempts_within`]). (While callers wait on a
    /// database that is down or full, attempts come instead within
    /// `connect_backoff_initial` of each other, one at a time once the
    /// breaker is open.)
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let config = tidewater::PoolConfig::default();
    /// assert_eq!(config.most_connect_attempts_within(Duration::from_secs(60)), 2 * 245);
    /// ```
    pub fn most_connect_attempts_within(&self, window: Duration) -> u64 {
        let rounds = self.connect_backoff().most_attempts_within(window);
        u64::from(self.max_connecting) * u64::from(rounds)
    }

    /// Checks every key against its allowed range, and the keys against each
    /// other. The error names the first key that is wrong.
    ///
    /// ```
    /// let mut config = tidewater::PoolConfig::default();
    /// config.min_idle = 80;
    /// let error = config.validate().unwrap_err();
    /// assert_eq!(error.key(), "min_idle");
    /// assert_eq!(
    ///     error.to_string(),
    ///     "invalid pool configuration: min_idle = 80, allowed: 0 to max_size (50)"
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let len = self.name.chars().count();
        check(
            "name",
            &self.name,
            (1..=64).contains(&len),
            "1 to 64 characters",
        )?;
        check(
            "max_size",
            self.max_size,
            (1..=10_000).contains(&self.max_size),
            "1 to 10000",
        )?;
        let max = self.max_size;
        check(
            "min_idle",
            self.min_idle,
            self.min_idle <= max,
            format!("0 to max_size ({max})"),
        )?;
        within("acquire_timeout", self.acquire_timeout, MS, HOUR)?;
        within("connect_timeout", self.connect_timeout, MS, 10 * MINUTE)?;
        within(
            "validation_timeout",
            self.validation_timeout,
            MS,
            10 * MINUTE,
        )?;
        within("validate_after", self.validate_after, Duration::ZERO, HOUR)?;
        optional_within("idle_timeout", self.idle_timeout, MS, 7 * DAY)?;
        optional_within("max_lifetime", self.max_lifetime, MS, 7 * DAY)?;
        let jitter = self.max_lifetime_jitter;
        check(
            "max_lifetime_jitter",
            jitter,
            (0.0..=0.5).contains(&jitter),
            "0 to 0.5",
        )?;
        optional_within("keepalive_interval", self.keepalive_interval, MS, DAY)?;
        optional_within(
            "leak_detection_threshold",
            self.leak_detection_threshold,
            MS,
            7 * DAY,
        )?;
        check(
            "max_waiters",
            self.max_waiters,
            self.max_waiters <= 1_000_000,
            "0 to 1000000",
        )?;
        let connecting = self.max_connecting;
        check(
            "max_connecting",
            connecting,
            (1..=100).contains(&connecting),
            "1 to 100",
        )?;
        within(
            "connect_backoff_initial",
            self.connect_backoff_initial,
            MS,
            MINUTE,
        )?;
        within(
            "connect_backoff_max",
            self.connect_backoff_max,
            self.connect_backoff_initial,
            10 * MINUTE,
        )?;
        let threshold = self.breaker_failure_threshold;
        check(
            "breaker_failure_threshold",
            threshold,
            (1..=1000).contains(&threshold),
            "1 to 1000",
        )?;
        within(
            "maintenance_interval",
            self.maintenance_interval,
            10 * MS,
            MINUTE,
        )?;
        within("drain_timeout", self.drain_timeout, Duration::ZERO, HOUR)?;
        within("expected_wait_p99", self.expected_wait_p99, MS, HOUR)?;
        let alerts = &self.alerts;
        within("alerts.window", alerts.window, Duration::from_secs(1), HOUR)?;
        let share = alerts.utilization_threshold;
        check(
            "alerts.utilization_threshold",
            share,
            (0.05..=1.0).contains(&share),
            "0.05 to 1",
        )?;
        within(
            "alerts.utilization_for",
            alerts.utilization_for,
            Duration::ZERO,
            HOUR,
        )?;
        within(
            "alerts.slow_wait_threshold",
            alerts.slow_wait_threshold,
            MS,
            HOUR,
        )?;
        let errors = alerts.connect_errors_threshold;
        check(
            "alerts.connect_errors_threshold",
            errors,
            (1..=100_000).contains(&errors),
            "1 to 100000",
        )?;
        let headroom = alerts.capacity_headroom;
        check(
            "alerts.capacity_headroom",
            headroom,
            (0.0..=1.0).contains(&headroom),
            "0 to 1",
        )?;
        within(
            "alerts.resolve_after",
            alerts.resolve_after,
            Duration::ZERO,
            HOUR,
        )?;
        let sizing = &self.sizing;
        check(
            "sizing.floor",
            sizing.floor,
            (1..=10_000).contains(&sizing.floor),
            "1 to 10000",
        )?;
        within("sizing.interval", sizing.interval, 10 * MS, MINUTE)?;
        check(
            "sizing.step",
            sizing.step,
            (0.01..=0.5).contains(&sizing.step),
            "0.01 to 0.5",
        )?;
        check(
            "sizing.min_elasticity",
            sizing.min_elasticity,
            (0.01..=1.0).contains(&sizing.min_elasticity),
            "0.01 to 1",
        )?;
        Ok(())
    }
}

fn check(
    key: &'static str,
    value: impl fmt::Display,
    ok: bool,
    allowed: impl Into<String>,
) -> Result<(), ConfigError> {
    if ok {
        return Ok(());
    }
    Err(ConfigError {
        key,
        value: value.to_string(),
        allowed: allowed.into(),
    })
}

fn within(
    key: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    let allowed = format!("{} to {}", show(min), show(max));
    check(key, show(value), (min..=max).contains(&value), allowed)
}

fn optional_within(
    key: &'static str,
    value: Option<Duration>,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    match value {
        None => Ok(()),
        Some(value) => within(key, value, min, max).map_err(|mut error| {
            error.allowed = format!("off, or {}", error.allowed);
            error
        }),
    }
}

fn show(value: Duration) -> String {
    if value.is_zero() {
        "0s".to_owned()
    } else {
        humantime::format_duration(value).to_string()
    }
}

/// A configuration value outside its allowed range.
///
/// ```
/// let config = tidewater::PoolConfig { max_size: 0, ..Default::default() };
/// let error = config.validate().unwrap_err();
/// assert_eq!(error.key(), "max_size");
/// assert_eq!(error.allowed(), "1 to 10000");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    key: &'static str,
    value: String,
    allowed: String,
}

impl ConfigError {
    /// The configuration key that is wrong.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The value it was given.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What the key accepts.
    pub fn allowed(&self) -> &str {
        &self.allowed
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid pool configuration: {} = {}, allowed: {}",
            self.key, self.value, self.allowed
        )
    }
}

impl std::error::Error for ConfigError {}

/// Serde for durations written as `"30s"`, `"1m 30s"` or `"500ms"`, for
/// use with `#[serde(with = "tidewater::config::duration")]` in backend and
/// service settings, so every duration reads the same.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Settings {
///     #[serde(with = "tidewater::config::duration")]
///     grace: std::time::Duration,
/// }
/// let settings: Settings = toml::from_str(r#"grace = "1m 30s""#).unwrap();
/// assert_eq!(settings.grace.as_secs(), 90);
/// ```
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes `value` as `"30s"`.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&super::show(*value))
    }

    /// Reads `"30s"`, `"500ms"`, `"1m 30s"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(D::Error::custom)
    }

    /// Parses a duration, with a message that shows how to write one.
    pub fn parse(text: &str) -> Result<Duration, String> {
        humantime::parse_duration(text.trim()).map_err(|error| {
            format!(
                "invalid duration {text:?} ({error}); write it like \"30s\", \"500ms\" or \"10m\""
            )
        })
    }
}

/// Serde for optional durations: a duration string, or `"off"`.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Settings {
///     #[serde(with = "tidewater::config::optional_duration")]
///     timeout: Option<std::time::Duration>,
/// }
/// let settings: Settings = toml::from_str(r#"timeout = "off""#).unwrap();
/// assert_eq!(settings.timeout, None);
/// ```
pub mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes a duration, or `"off"`.
    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => super::duration::serialize(value, serializer),
            None => serializer.serialize_str("off"),
        }
    }

    /// Reads a duration, or `"off"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        super::duration::parse(&text)
            .map(Some)
            .map_err(|error| D::Error::custom(format!("{error}, or \"off\"")))
    }
}
