//! [`Fault`], the ways to break the server, and [`FaultWindow`], when an
//! injected one broke it and when it was back.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One way to break the server. [`Fault::ALL`] is the default schedule, in
/// the order it runs; [`Fault::EVERY`] adds the faults run only when named.
///
/// ```
/// use tidewater_lab::faults::Fault;
///
/// assert_eq!("hang".parse::<Fault>().unwrap(), Fault::Hang);
/// assert_eq!("cpu-hog".parse::<Fault>().unwrap(), Fault::CpuHog);
/// assert_eq!(Fault::FillConnections.to_string(), "fill-connections");
/// assert_eq!(Fault::ALL.len(), 5);
/// assert!(!Fault::ALL.contains(&Fault::CpuHog));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// `pg_ctl stop -m fast`, then start at once: every session is closed
    /// (SQLSTATE 57P01), the server is back as soon as it has started. The
    /// hold time is not used.
    Restart,
    /// SIGKILL to the postmaster: the server is gone at once, its sessions
    /// die with it; it stays down for the hold time, then starts (with
    /// crash recovery).
    Crash,
    /// SIGSTOP to the postmaster and every backend for the hold time, then
    /// SIGCONT: connections are accepted into the listen queue but nothing
    /// answers, queries in flight get no reply.
    Hang,
    /// `pg_terminate_backend` on every client session (SQLSTATE 57P01);
    /// the server keeps accepting. The hold time is not used.
    TerminateBackends,
    /// A side client opens sessions until the server refuses more
    /// (`max_connections`, SQLSTATE 53300), then ends every other client
    /// session one at a time, taking each freed slot itself: the pool has
    /// lost its connections and cannot open new ones. After the hold time
    /// the side client lets go.
    ///
    /// The lock-out is complete for ordinary roles only: a superuser may
    /// use the slots PostgreSQL reserves for superusers
    /// (`superuser_reserved_connections`, 3), so a pool connecting as one
    /// may win some back.
    FillConnections,
    /// [`HOG_SESSIONS`](super::HOG_SESSIONS) side sessions each run a CPU-bound query for the
    /// hold time, then are cancelled: the server stays up and accepting,
    /// but every query is slower, at every concurrency. Not in the
    /// default schedule ([`Fault::ALL`]): run it with `--faults cpu-hog`.
    CpuHog,
}

impl Fault {
    /// Every fault, in the order of the default schedule.
    pub const ALL: [Fault; 5] = [
        Fault::Restart,
        Fault::Crash,
        Fault::Hang,
        Fault::TerminateBackends,
        Fault::FillConnections,
    ];

    /// Every fault there is: the default schedule ([`ALL`](Self::ALL)),
    /// then the faults run only when named.
    pub const EVERY: [Fault; 6] = [
        Fault::Restart,
        Fault::Crash,
        Fault::Hang,
        Fault::TerminateBackends,
        Fault::FillConnections,
        Fault::CpuHog,
    ];

    /// Its name on a command line and in reports.
    ///
    /// ```
    /// assert_eq!(tidewater_lab::faults::Fault::TerminateBackends.name(), "terminate-backends");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Fault::Restart => "restart",
            Fault::Crash => "crash",
            Fault::Hang => "hang",
            Fault::TerminateBackends => "terminate-backends",
            Fault::FillConnections => "fill-connections",
            Fault::CpuHog => "cpu-hog",
        }
    }

    /// What it does, in a few words, for a report.
    ///
    /// ```
    /// assert!(tidewater_lab::faults::Fault::Crash.describe().contains("SIGKILL"));
    /// ```
    pub fn describe(self) -> &'static str {
        match self {
            Fault::Restart => "fast restart (pg_ctl stop -m fast, then start)",
            Fault::Crash => "SIGKILL the postmaster, down for the hold time, start",
            Fault::Hang => "SIGSTOP the postmaster and backends for the hold time, SIGCONT",
            Fault::TerminateBackends => "pg_terminate_backend every client session",
            Fault::FillConnections => "a side client takes every connection slot for the hold time",
            Fault::CpuHog => {
                "side sessions run CPU-bound queries for the hold time: the database slows down at every concurrency"
            }
        }
    }

    /// Whether the hold time changes anything (false for the faults that
    /// are over as soon as they happened).
    ///
    /// ```
    /// use tidewater_lab::faults::Fault;
    /// assert!(Fault::Hang.holds() && !Fault::Restart.holds());
    /// ```
    pub fn holds(self) -> bool {
        !matches!(self, Fault::Restart | Fault::TerminateBackends)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;

    /// Any of [`Fault::EVERY`], by its [`name`](Fault::name).
    fn from_str(text: &str) -> Result<Self, String> {
        Fault::EVERY
            .into_iter()
            .find(|fault| fault.name() == text)
            .ok_or_else(|| {
                let names: Vec<_> = Fault::EVERY.iter().map(|fault| fault.name()).collect();
                format!("unknown fault {text:?}; one of {}", names.join(", "))
            })
    }
}

/// When an injected fault broke the database and when it was available
/// again.
///
/// `broken_at` is when the fault took effect (for
/// [`FillConnections`](Fault::FillConnections): when the server was full);
/// `restored_at` is when the database served again: a restarted server's
/// first accepted connection (a side session tries every 5 ms while it
/// starts), the resume of a paused one, the return of the
/// `pg_terminate_backend` query (every ended session has exited), the
/// moment the side client's sessions had left a full server, or the
/// moment the cancelled CPU-bound sessions had left it.
/// For [`CpuHog`](Fault::CpuHog), `broken_at` is when the last of its
/// queries started, once the server showed them all `active`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultWindow {
    /// The fault.
    pub fault: Fault,
    /// When it took effect.
    pub broken_at: Instant,
    /// When the database was available again.
    pub restored_at: Instant,
    /// What the injection did, for a report (sessions ended or held).
    pub detail: String,
}

impl FaultWindow {
    /// How long the database was broken.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tidewater_lab::faults::{Fault, FaultWindow};
    ///
    /// let broken_at = Instant::now();
    /// let window = FaultWindow {
    ///     fault: Fault::Crash,
    ///     broken_at,
    ///     restored_at: broken_at + Duration::from_secs(3),
    ///     detail: String::new(),
    /// };
    /// assert_eq!(window.outage(), Duration::from_secs(3));
    /// ```
    pub fn outage(&self) -> Duration {
        self.restored_at.saturating_duration_since(self.broken_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_from_their_names() {
        // The CPU hog is not in the default schedule, but parses.
        assert!(!Fault::ALL.contains(&Fault::CpuHog));
        assert!(Fault::ALL.iter().all(|fault| Fault::EVERY.contains(fault)));
        for fault in Fault::EVERY {
            assert_eq!(fault.name().parse::<Fault>(), Ok(fault));
            assert_eq!(
                serde_json::to_value(fault).unwrap(),
                serde_json::Value::from(fault.name())
            );
        }
        let error = "reboot".parse::<Fault>().unwrap_err();
        assert!(error.contains("restart, crash, hang"), "{error}");
        assert!(error.contains("cpu-hog"), "{error}");
        assert!(Fault::CpuHog.holds());
    }
}
