//! Pool configuration: every key, its default and its allowed range.
//!
//! [`PoolConfig`] deserializes with serde (TOML, JSON, environment layers),
//! and [`PoolConfig::validate`] checks it when the pool is built. Durations
//! are written as human-readable strings (`"30s"`, `"500ms"`, `"10m"`);
//! optional ones also accept `"off"`. Keys with a dot are in a table:
//! `sizing.floor` is `floor` in `[sizing]`.
//!
//! The table below is [`SETTINGS`] with the values of
//! `PoolConfig::default()` (a test checks that they agree).
//!
//! | key | default | allowed | meaning |
//! |---|---|---|---|
//! | `name` | `"default"` | 1 to 64 characters | label on logs, metrics and errors |
//! | `max_size` | `50` | 1 to 10000 | most connections open at once (in use, idle and being opened) |
//! | `min_idle` | `0` | 0 to `max_size` | idle connections kept ready (refilled by the maintenance task) |
//! | `acquire_timeout` | `"30s"` | 1ms to 1h | longest a `get()` waits, validation included |
//! | `connect_timeout` | `"10s"` | 1ms to 10m | longest one connection attempt may take |
//! | `validation_timeout` | `"5s"` | 1ms to 10m | longest a validation ping or a session reset may take |
//! | `validate_after` | `"500ms"` | 0s to 1h | validate on checkout only when idle longer than this (0: always) |
//! | `idle_timeout` | `"10m"` | off, or 1ms to 7days | close connections idle longer than this, down to `min_idle` |
//! | `max_lifetime` | `"30m"` | off, or 1ms to 7days | close connections older than this (never one in use) |
//! | `max_lifetime_jitter` | `0.025` | 0 to 0.5 | each lifetime is shortened by a random fraction up to this, so connections do not all expire together |
//! | `keepalive_interval` | `"off"` | off, or 1ms to 1day | ping idle connections unused for this long |
//! | `leak_detection_threshold` | `"1m"` | off, or 1ms to 7days | report a connection held longer than this as a leak suspect |
//! | `max_waiters` | `10000` | 0 to 1000000 | callers that may wait at once for a connection to come back (beyond those a new connection is being opened for); more get `QueueFull` at once |
//! | `idle_order` | `"lifo"` | "lifo", "fifo" | which idle connection to reuse: most (LIFO) or least (FIFO) recently returned, among those idle on the calling thread's core |
//! | `max_connecting` | `2` | 1 to 100 | connection attempts in flight at once (no connection storms) |
//! | `connect_backoff.initial` | `"10ms"` | 1ms to 1m | first retry delay ceiling after a failed connection attempt; while callers wait and the database is down or full, how soon it is tried again |
//! | `connect_backoff.max` | `"500ms"` | `connect_backoff.initial` to 10m | largest retry delay ceiling (each attempt waits between half the ceiling and all of it) |
//! | `breaker.enabled` | `true` | true, false | fail fast while the database is unreachable |
//! | `breaker.failure_threshold` | `5` | 1 to 1000 | consecutive connection failures (with no idle connection left, lasting at least `connect_backoff.max`; a permanent error at once) that open the breaker |
//! | `maintenance_interval` | `"1s"` | 10ms to 1m | how often the maintenance task runs |
//! | `drain_timeout` | `"30s"` | 0s to 1h | how long `close()` waits for connections in use to come back |
//! | `expected_wait_p99` | `"1s"` | 1ms to 1h | the health check's bound on the recent p99 acquisition wait (degraded above it) |
//! | `sizing.mode` | `"fixed"` | "fixed", "adaptive" | `fixed`: up to `max_size` connections in use; `adaptive`: a limit between `sizing.floor` and `max_size` that follows the database's knee (see [`crate::sizing`]) |
//! | `sizing.floor` | `2` | 1 to 10000 | the adaptive limit never goes below this (nor above `max_size`) |
//! | `sizing.interval` | `"500ms"` | 10ms to 1m | how often the adaptive limit is reconsidered (at least 20 returns in between) |
//! | `sizing.step` | `0.1` | 0.01 to 0.5 | how far the limit moves per interval, as a share of itself (at least one connection; slow start doubles) |
//! | `sizing.min_elasticity` | `0.1` | 0.01 to 1 | what an added connection must bring, relative to its share of connections, for the limit to rise (below it, the limit falls): throughput for callers that loop, time not spent queueing for callers that arrive on their own schedule |
//! | `alerts.enabled` | `true` | true, false | evaluate the in-process alert rules |
//! | `alerts.window` | `"1m"` | 1s to 1h | the recent window the timeout, slow-wait, connection-error rules and the wait p99 look at |
//! | `alerts.utilization_threshold` | `0.8` | 0.05 to 1 | connections in use over `max_size` that counts as high |
//! | `alerts.utilization_for` | `"1m"` | 0s to 1h | how long utilization must stay high before the alert fires |
//! | `alerts.slow_wait_threshold` | `"5s"` | 1ms to 1h | an acquisition that waited longer than this fires the slow-wait alert |
//! | `alerts.connect_errors_threshold` | `5` | 1 to 100000 | failed connection attempts within the window that fire the connection-errors alert |
//! | `alerts.capacity_headroom` | `0.1` | 0 to 1 | the server's free connections, as a share of its `max_connections`, below which the capacity alert fires |
//! | `alerts.resolve_after` | `"1m"` | 0s to 1h | how long a firing alert's condition must stay clear before it resolves (no flapping) |
//!
//! Waiters are always served in FIFO order.

use std::cmp::Ordering;
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

impl IdleOrder {
    /// As written in the configuration.
    const fn name(self) -> &'static str {
        match self {
            Self::Lifo => "lifo",
            Self::Fifo => "fifo",
        }
    }
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
///
///     [connect_backoff]
///     max = "2s"
/// "#).unwrap();
/// assert_eq!(config.max_size, 20);
/// assert_eq!(config.acquire_timeout, Duration::from_secs(2));
/// assert_eq!(config.idle_timeout, None);
/// assert_eq!(config.connect_backoff.initial, Duration::from_millis(10));
/// assert_eq!(config.connect_backoff.max, Duration::from_secs(2));
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
    /// How connection attempts are spaced while they fail: `initial` is the
    /// first retry delay ceiling (while callers wait and the database is
    /// down or full, how soon it is tried again), `max` the largest.
    pub connect_backoff: Backoff,
    /// The circuit breaker: fail fast while the database is unreachable.
    pub breaker: BreakerConfig,
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

/// The circuit breaker: whether it is on, and how many connection
/// failures in a row open it; see the [module documentation](self) and
/// [`crate::Error::Unavailable`].
///
/// ```
/// let config: tidewater::PoolConfig = toml::from_str(r#"
///     [breaker]
///     failure_threshold = 3
/// "#).unwrap();
/// assert!(config.breaker.enabled);
/// assert_eq!(config.breaker.failure_threshold, 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Fail fast while the database is unreachable.
    pub enabled: bool,
    /// Consecutive connection failures that open the breaker, once they
    /// have lasted `connect_backoff.max` (a permanent error: at once).
    pub failure_threshold: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_threshold: 5,
        }
    }
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

impl SizingMode {
    /// As written in the configuration.
    const fn name(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::Adaptive => "adaptive",
        }
    }
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
            connect_backoff: Backoff::default(),
            breaker: BreakerConfig::default(),
            maintenance_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(30),
            expected_wait_p99: Duration::from_secs(1),
            alerts: AlertConfig::default(),
            sizing: SizingConfig::default(),
        }
    }
}

impl PoolConfig {
    /// The most connection attempts the pool can start within `window`
    /// while they keep failing with a permanent error or with connections
    /// that arrive broken: `max_connecting` at a time, each round at least
    /// half its backoff ceiling after the last failure
    /// ([`Backoff::most_attempts_within`]). (While callers wait on a
    /// database that is down or full, attempts come instead within
    /// `connect_backoff.initial` of each other, one at a time once the
    /// breaker is open.)
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let config = tidewater::PoolConfig::default();
    /// assert_eq!(config.most_connect_attempts_within(Duration::from_secs(60)), 2 * 245);
    /// ```
    pub fn most_connect_attempts_within(&self, window: Duration) -> u64 {
        let rounds = self.connect_backoff.most_attempts_within(window);
        u64::from(self.max_connecting) * u64::from(rounds)
    }

    /// Checks every key against its allowed range (which may name another
    /// key), in the order of [`SETTINGS`]. The error names the first key
    /// that is wrong.
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
        SETTINGS.iter().try_for_each(|setting| setting.check(self))
    }

    /// Checks the key `key` alone against its range.
    pub(crate) fn validate_key(&self, key: &str) -> Result<(), ConfigError> {
        setting(key).check(self)
    }
}

/// Keys that moved in 0.2, as (old key, new key). [`PoolConfig`] reads only
/// the new ones; the `tidewater` service still reads the old ones, with a
/// warning that names the new key.
///
/// ```
/// let moved = tidewater::config::RENAMED;
/// assert!(moved.contains(&("connect_backoff_initial", "connect_backoff.initial")));
/// assert!(toml::from_str::<tidewater::PoolConfig>("breaker_enabled = false").is_err());
/// ```
pub const RENAMED: &[(&str, &str)] = &[
    ("connect_backoff_initial", "connect_backoff.initial"),
    ("connect_backoff_max", "connect_backoff.max"),
    ("breaker_enabled", "breaker.enabled"),
    ("breaker_failure_threshold", "breaker.failure_threshold"),
];

/// One key of [`PoolConfig`]: its name, what it means, what it accepts, and
/// how to read it. [`SETTINGS`] lists them all.
///
/// ```
/// use tidewater::{PoolConfig, config::SETTINGS};
///
/// let min_idle = SETTINGS.iter().find(|setting| setting.key() == "min_idle").unwrap();
/// assert_eq!(min_idle.allowed(), "0 to `max_size`");
/// assert_eq!(min_idle.value(&PoolConfig { min_idle: 4, ..Default::default() }), "4");
///
/// let timeout = SETTINGS.iter().find(|setting| setting.key() == "idle_timeout").unwrap();
/// assert_eq!(timeout.allowed(), "off, or 1ms to 7days");
/// assert_eq!(timeout.value(&PoolConfig::default()), "\"10m\"");
/// ```
#[derive(Debug)]
pub struct Setting {
    key: &'static str,
    allowed: Allowed,
    read: fn(&PoolConfig) -> Value<'_>,
    meaning: &'static str,
}

impl Setting {
    /// The key, dotted when it is in a table (`alerts.window`).
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// What it accepts, in Markdown: `1 to 100`, ``0 to `max_size` ``,
    /// `off, or 1ms to 7days`. The error for a wrong value says the same
    /// with the values of the keys it names: `0 to max_size (50)`.
    pub fn allowed(&self) -> String {
        self.allowed.show(None)
    }

    /// What it does, in Markdown.
    pub fn meaning(&self) -> &'static str {
        self.meaning
    }

    /// Its value in `config`, as TOML writes it: `50`, `"30s"`, `"off"`.
    pub fn value(&self, config: &PoolConfig) -> String {
        let value = (self.read)(config);
        match value {
            Value::Count(_) | Value::Fraction(_) | Value::Flag(_) => value.to_string(),
            _ => format!("{:?}", value.to_string()),
        }
    }

    fn check(&self, config: &PoolConfig) -> Result<(), ConfigError> {
        let value = (self.read)(config);
        let ok = match &self.allowed {
            Allowed::Range { min, max, off } => {
                (*off && value == Value::Off)
                    || (min.of(config) <= value && value <= max.of(config))
            }
            Allowed::Length { min, max } => {
                matches!(value, Value::Text(text) if (*min..=*max).contains(&text.chars().count()))
            }
            Allowed::Choice(names) => matches!(value, Value::Choice(name) if names.contains(&name)),
            Allowed::Flag => matches!(value, Value::Flag(_)),
        };
        if ok {
            return Ok(());
        }
        Err(ConfigError {
            key: self.key,
            value: value.to_string(),
            allowed: self.allowed.show(Some(config)),
        })
    }
}

/// A setting's value, read from a [`PoolConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value<'a> {
    Count(u32),
    Fraction(f64),
    Duration(Duration),
    /// An optional duration that is off.
    Off,
    Text(&'a str),
    Choice(&'static str),
    Flag(bool),
}

/// Numbers and durations compare with their own kind only.
impl PartialOrd for Value<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Self::Count(a), Self::Count(b)) => a.partial_cmp(b),
            (Self::Fraction(a), Self::Fraction(b)) => a.partial_cmp(b),
            (Self::Duration(a), Self::Duration(b)) => a.partial_cmp(b),
            _ => None,
        }
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(count) => write!(f, "{count}"),
            Self::Fraction(fraction) => write!(f, "{fraction}"),
            Self::Duration(duration) => f.write_str(&show(*duration)),
            Self::Off => f.write_str("off"),
            Self::Text(text) => f.write_str(text),
            Self::Choice(name) => f.write_str(name),
            Self::Flag(flag) => write!(f, "{flag}"),
        }
    }
}

/// What a setting accepts.
#[derive(Debug)]
enum Allowed {
    /// A count, a fraction or a duration from `min` to `max`, both
    /// included; or `"off"` when `off`.
    Range { min: Bound, max: Bound, off: bool },
    /// Text of `min` to `max` characters.
    Length { min: usize, max: usize },
    /// One of these names.
    Choice(&'static [&'static str]),
    /// `true` or `false`.
    Flag,
}

/// One end of a range: a value, or the value of another key.
#[derive(Debug)]
enum Bound {
    Is(Value<'static>),
    Key(&'static str),
}

impl Allowed {
    /// In Markdown, bounds that are keys named (`config` is `None`); or
    /// for an error message, with their values in `config`.
    fn show(&self, config: Option<&PoolConfig>) -> String {
        match self {
            Self::Range { min, max, off } => {
                let range = format!("{} to {}", min.show(config), max.show(config));
                if *off {
                    format!("off, or {range}")
                } else {
                    range
                }
            }
            Self::Length { min, max } => format!("{min} to {max} characters"),
            Self::Choice(names) => names
                .iter()
                .map(|name| format!("{name:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            Self::Flag => "true, false".to_owned(),
        }
    }
}

impl Bound {
    fn of<'a>(&self, config: &'a PoolConfig) -> Value<'a> {
        match self {
            Self::Is(value) => *value,
            Self::Key(key) => (setting(key).read)(config),
        }
    }

    fn show(&self, config: Option<&PoolConfig>) -> String {
        match (self, config) {
            (Self::Is(value), _) => value.to_string(),
            (Self::Key(key), None) => format!("`{key}`"),
            (Self::Key(key), Some(config)) => format!("{key} ({})", self.of(config)),
        }
    }
}

/// The setting named `key`, which a [`Bound::Key`] names.
fn setting(key: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|setting| setting.key == key)
        .unwrap_or_else(|| panic!("no setting {key}"))
}

const fn count(min: u32, max: u32) -> Allowed {
    Allowed::Range {
        min: Bound::Is(Value::Count(min)),
        max: Bound::Is(Value::Count(max)),
        off: false,
    }
}

const fn fraction(min: f64, max: f64) -> Allowed {
    Allowed::Range {
        min: Bound::Is(Value::Fraction(min)),
        max: Bound::Is(Value::Fraction(max)),
        off: false,
    }
}

const fn duration(min: Duration, max: Duration) -> Allowed {
    Allowed::Range {
        min: Bound::Is(Value::Duration(min)),
        max: Bound::Is(Value::Duration(max)),
        off: false,
    }
}

/// `"off"`, or a duration from `min` to `max`.
const fn off_or(min: Duration, max: Duration) -> Allowed {
    Allowed::Range {
        min: Bound::Is(Value::Duration(min)),
        max: Bound::Is(Value::Duration(max)),
        off: true,
    }
}

const ZERO: Duration = Duration::ZERO;
const MS: Duration = Duration::from_millis(1);
const TEN_MS: Duration = Duration::from_millis(10);
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const TEN_MINUTES: Duration = Duration::from_secs(600);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
const WEEK: Duration = Duration::from_secs(7 * 86_400);

/// Every key of [`PoolConfig`], in the order of the table in the
/// [module documentation](self), which is rendered from it, and in which
/// [`PoolConfig::validate`] checks them.
///
/// ```
/// let keys: Vec<&str> = tidewater::config::SETTINGS.iter().map(|setting| setting.key()).collect();
/// assert_eq!(keys[..3], ["name", "max_size", "min_idle"]);
/// assert!(keys.contains(&"alerts.window"));
/// ```
pub static SETTINGS: &[Setting] = &[
    Setting {
        key: "name",
        allowed: Allowed::Length { min: 1, max: 64 },
        read: |config| Value::Text(&config.name),
        meaning: "label on logs, metrics and errors",
    },
    Setting {
        key: "max_size",
        allowed: count(1, 10_000),
        read: |config| Value::Count(config.max_size),
        meaning: "most connections open at once (in use, idle and being opened)",
    },
    Setting {
        key: "min_idle",
        allowed: Allowed::Range {
            min: Bound::Is(Value::Count(0)),
            max: Bound::Key("max_size"),
            off: false,
        },
        read: |config| Value::Count(config.min_idle),
        meaning: "idle connections kept ready (refilled by the maintenance task)",
    },
    Setting {
        key: "acquire_timeout",
        allowed: duration(MS, HOUR),
        read: |config| Value::Duration(config.acquire_timeout),
        meaning: "longest a `get()` waits, validation included",
    },
    Setting {
        key: "connect_timeout",
        allowed: duration(MS, TEN_MINUTES),
        read: |config| Value::Duration(config.connect_timeout),
        meaning: "longest one connection attempt may take",
    },
    Setting {
        key: "validation_timeout",
        allowed: duration(MS, TEN_MINUTES),
        read: |config| Value::Duration(config.validation_timeout),
        meaning: "longest a validation ping or a session reset may take",
    },
    Setting {
        key: "validate_after",
        allowed: duration(ZERO, HOUR),
        read: |config| Value::Duration(config.validate_after),
        meaning: "validate on checkout only when idle longer than this (0: always)",
    },
    Setting {
        key: "idle_timeout",
        allowed: off_or(MS, WEEK),
        read: |config| config.idle_timeout.map_or(Value::Off, Value::Duration),
        meaning: "close connections idle longer than this, down to `min_idle`",
    },
    Setting {
        key: "max_lifetime",
        allowed: off_or(MS, WEEK),
        read: |config| config.max_lifetime.map_or(Value::Off, Value::Duration),
        meaning: "close connections older than this (never one in use)",
    },
    Setting {
        key: "max_lifetime_jitter",
        allowed: fraction(0.0, 0.5),
        read: |config| Value::Fraction(config.max_lifetime_jitter),
        meaning: "each lifetime is shortened by a random fraction up to this, so connections do not all expire together",
    },
    Setting {
        key: "keepalive_interval",
        allowed: off_or(MS, DAY),
        read: |config| {
            config
                .keepalive_interval
                .map_or(Value::Off, Value::Duration)
        },
        meaning: "ping idle connections unused for this long",
    },
    Setting {
        key: "leak_detection_threshold",
        allowed: off_or(MS, WEEK),
        read: |config| {
            config
                .leak_detection_threshold
                .map_or(Value::Off, Value::Duration)
        },
        meaning: "report a connection held longer than this as a leak suspect",
    },
    Setting {
        key: "max_waiters",
        allowed: count(0, 1_000_000),
        read: |config| Value::Count(config.max_waiters),
        meaning: "callers that may wait at once for a connection to come back (beyond those a new connection is being opened for); more get `QueueFull` at once",
    },
    Setting {
        key: "idle_order",
        allowed: Allowed::Choice(&[IdleOrder::Lifo.name(), IdleOrder::Fifo.name()]),
        read: |config| Value::Choice(config.idle_order.name()),
        meaning: "which idle connection to reuse: most (LIFO) or least (FIFO) recently returned, among those idle on the calling thread's core",
    },
    Setting {
        key: "max_connecting",
        allowed: count(1, 100),
        read: |config| Value::Count(config.max_connecting),
        meaning: "connection attempts in flight at once (no connection storms)",
    },
    Setting {
        key: "connect_backoff.initial",
        allowed: duration(MS, MINUTE),
        read: |config| Value::Duration(config.connect_backoff.initial),
        meaning: "first retry delay ceiling after a failed connection attempt; while callers wait and the database is down or full, how soon it is tried again",
    },
    Setting {
        key: "connect_backoff.max",
        allowed: Allowed::Range {
            min: Bound::Key("connect_backoff.initial"),
            max: Bound::Is(Value::Duration(TEN_MINUTES)),
            off: false,
        },
        read: |config| Value::Duration(config.connect_backoff.max),
        meaning: "largest retry delay ceiling (each attempt waits between half the ceiling and all of it)",
    },
    Setting {
        key: "breaker.enabled",
        allowed: Allowed::Flag,
        read: |config| Value::Flag(config.breaker.enabled),
        meaning: "fail fast while the database is unreachable",
    },
    Setting {
        key: "breaker.failure_threshold",
        allowed: count(1, 1000),
        read: |config| Value::Count(config.breaker.failure_threshold),
        meaning: "consecutive connection failures (with no idle connection left, lasting at least `connect_backoff.max`; a permanent error at once) that open the breaker",
    },
    Setting {
        key: "maintenance_interval",
        allowed: duration(TEN_MS, MINUTE),
        read: |config| Value::Duration(config.maintenance_interval),
        meaning: "how often the maintenance task runs",
    },
    Setting {
        key: "drain_timeout",
        allowed: duration(ZERO, HOUR),
        read: |config| Value::Duration(config.drain_timeout),
        meaning: "how long `close()` waits for connections in use to come back",
    },
    Setting {
        key: "expected_wait_p99",
        allowed: duration(MS, HOUR),
        read: |config| Value::Duration(config.expected_wait_p99),
        meaning: "the health check's bound on the recent p99 acquisition wait (degraded above it)",
    },
    Setting {
        key: "sizing.mode",
        allowed: Allowed::Choice(&[SizingMode::Fixed.name(), SizingMode::Adaptive.name()]),
        read: |config| Value::Choice(config.sizing.mode.name()),
        meaning: "`fixed`: up to `max_size` connections in use; `adaptive`: a limit between `sizing.floor` and `max_size` that follows the database's knee (see [`crate::sizing`])",
    },
    Setting {
        key: "sizing.floor",
        allowed: count(1, 10_000),
        read: |config| Value::Count(config.sizing.floor),
        meaning: "the adaptive limit never goes below this (nor above `max_size`)",
    },
    Setting {
        key: "sizing.interval",
        allowed: duration(TEN_MS, MINUTE),
        read: |config| Value::Duration(config.sizing.interval),
        meaning: "how often the adaptive limit is reconsidered (at least 20 returns in between)",
    },
    Setting {
        key: "sizing.step",
        allowed: fraction(0.01, 0.5),
        read: |config| Value::Fraction(config.sizing.step),
        meaning: "how far the limit moves per interval, as a share of itself (at least one connection; slow start doubles)",
    },
    Setting {
        key: "sizing.min_elasticity",
        allowed: fraction(0.01, 1.0),
        read: |config| Value::Fraction(config.sizing.min_elasticity),
        meaning: "what an added connection must bring, relative to its share of connections, for the limit to rise (below it, the limit falls): throughput for callers that loop, time not spent queueing for callers that arrive on their own schedule",
    },
    Setting {
        key: "alerts.enabled",
        allowed: Allowed::Flag,
        read: |config| Value::Flag(config.alerts.enabled),
        meaning: "evaluate the in-process alert rules",
    },
    Setting {
        key: "alerts.window",
        allowed: duration(SECOND, HOUR),
        read: |config| Value::Duration(config.alerts.window),
        meaning: "the recent window the timeout, slow-wait, connection-error rules and the wait p99 look at",
    },
    Setting {
        key: "alerts.utilization_threshold",
        allowed: fraction(0.05, 1.0),
        read: |config| Value::Fraction(config.alerts.utilization_threshold),
        meaning: "connections in use over `max_size` that counts as high",
    },
    Setting {
        key: "alerts.utilization_for",
        allowed: duration(ZERO, HOUR),
        read: |config| Value::Duration(config.alerts.utilization_for),
        meaning: "how long utilization must stay high before the alert fires",
    },
    Setting {
        key: "alerts.slow_wait_threshold",
        allowed: duration(MS, HOUR),
        read: |config| Value::Duration(config.alerts.slow_wait_threshold),
        meaning: "an acquisition that waited longer than this fires the slow-wait alert",
    },
    Setting {
        key: "alerts.connect_errors_threshold",
        allowed: count(1, 100_000),
        read: |config| Value::Count(config.alerts.connect_errors_threshold),
        meaning: "failed connection attempts within the window that fire the connection-errors alert",
    },
    Setting {
        key: "alerts.capacity_headroom",
        allowed: fraction(0.0, 1.0),
        read: |config| Value::Fraction(config.alerts.capacity_headroom),
        meaning: "the server's free connections, as a share of its `max_connections`, below which the capacity alert fires",
    },
    Setting {
        key: "alerts.resolve_after",
        allowed: duration(ZERO, HOUR),
        read: |config| Value::Duration(config.alerts.resolve_after),
        meaning: "how long a firing alert's condition must stay clear before it resolves (no flapping)",
    },
];

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of the module documentation, rendered from [`SETTINGS`]
    /// and `PoolConfig::default()`.
    fn table() -> String {
        let defaults = PoolConfig::default();
        let mut table = "| key | default | allowed | meaning |\n|---|---|---|---|\n".to_owned();
        for setting in SETTINGS {
            table += &format!(
                "| `{}` | `{}` | {} | {} |\n",
                setting.key(),
                setting.value(&defaults),
                setting.allowed(),
                setting.meaning()
            );
        }
        table
    }

    #[test]
    fn the_documented_table_is_the_settings_table() {
        let documented: String = include_str!("config.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("//! "))
            .filter(|line| line.starts_with('|'))
            .map(|line| format!("{line}\n"))
            .collect();
        let rendered = table();
        assert!(
            documented == rendered,
            "the table in config.rs's module documentation is out of date; it should read:\n\n{}",
            rendered
                .lines()
                .map(|line| format!("//! {line}\n"))
                .collect::<String>()
        );
    }

    /// The keys the table lists are the keys that serde reads and writes,
    /// and each reads what serde writes.
    #[test]
    fn the_settings_are_the_serialized_keys() {
        fn leaves(table: &toml::Table, prefix: &str, into: &mut Vec<(String, String)>) {
            for (key, value) in table {
                let key = format!("{prefix}{key}");
                match value {
                    toml::Value::Table(table) => leaves(table, &format!("{key}."), into),
                    value => into.push((key, value.to_string())),
                }
            }
        }
        let config = PoolConfig {
            keepalive_interval: Some(Duration::from_secs(90)),
            idle_order: IdleOrder::Fifo,
            ..PoolConfig::default()
        };
        let mut serialized = Vec::new();
        leaves(
            &toml::Table::try_from(&config).unwrap(),
            "",
            &mut serialized,
        );
        serialized.sort();
        let mut listed: Vec<(String, String)> = SETTINGS
            .iter()
            .map(|setting| (setting.key().to_owned(), setting.value(&config)))
            .collect();
        listed.sort();
        assert_eq!(listed, serialized);
    }

    #[test]
    fn every_choice_reads_as_written() {
        for setting in SETTINGS {
            let Allowed::Choice(names) = setting.allowed else {
                continue;
            };
            for name in names {
                let (table, key) = setting
                    .key()
                    .rsplit_once('.')
                    .unwrap_or(("", setting.key()));
                let text = format!("[{table}]\n{key} = {name:?}").replace("[]\n", "");
                let config: PoolConfig = toml::from_str(&text).unwrap();
                assert_eq!(setting.value(&config), format!("{name:?}"));
            }
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        PoolConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_key_its_value_and_what_it_accepts() {
        let cases = [
            (
                PoolConfig {
                    name: String::new(),
                    ..PoolConfig::default()
                },
                "name = , allowed: 1 to 64 characters",
            ),
            (
                PoolConfig {
                    idle_timeout: Some(Duration::from_secs(8 * 86_400)),
                    ..PoolConfig::default()
                },
                "idle_timeout = 8days, allowed: off, or 1ms to 7days",
            ),
            (
                PoolConfig {
                    validate_after: Duration::from_secs(7200),
                    ..PoolConfig::default()
                },
                "validate_after = 2h, allowed: 0s to 1h",
            ),
            (
                PoolConfig {
                    max_lifetime_jitter: f64::NAN,
                    ..PoolConfig::default()
                },
                "max_lifetime_jitter = NaN, allowed: 0 to 0.5",
            ),
            (
                PoolConfig {
                    connect_backoff: Backoff {
                        initial: Duration::from_secs(1),
                        max: Duration::from_millis(500),
                    },
                    ..PoolConfig::default()
                },
                "connect_backoff.max = 500ms, allowed: connect_backoff.initial (1s) to 10m",
            ),
            (
                PoolConfig {
                    sizing: SizingConfig {
                        step: 0.6,
                        ..SizingConfig::default()
                    },
                    ..PoolConfig::default()
                },
                "sizing.step = 0.6, allowed: 0.01 to 0.5",
            ),
        ];
        for (config, message) in cases {
            let error = config.validate().unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("invalid pool configuration: {message}")
            );
        }
    }

    #[test]
    fn a_key_alone_is_checked_against_its_own_range() {
        let config = PoolConfig {
            max_size: 4,
            min_idle: 60,
            ..PoolConfig::default()
        };
        config.validate_key("max_size").unwrap();
        assert_eq!(
            config.validate_key("min_idle").unwrap_err().key(),
            "min_idle"
        );
        let config = PoolConfig {
            max_size: 0,
            ..PoolConfig::default()
        };
        assert_eq!(
            config.validate_key("max_size").unwrap_err().allowed(),
            "1 to 10000"
        );
    }
}
