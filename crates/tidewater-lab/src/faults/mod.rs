//! The fault schedule shared by `tidewater-lab drill` and the peer comparison
//! (`tidewater-bench drill`): what breaks a private PostgreSQL, and what the
//! requests made meanwhile saw, phase by phase.
//!
//! - [`Fault`] names one way to break the server, [`inject`] breaks a
//!   [`PgCluster`](tidewater_testkit::PgCluster) that way, holds it broken, restores it, and returns the
//!   [`FaultWindow`]: when it broke and when the database was available
//!   again. [`inject_until`] holds it broken until a future completes
//!   instead of for a fixed time, so a test can keep it so until it has
//!   seen what it does.
//! - [`PhaseRecorder`] collects one [`Record`] per request (start, end,
//!   [`Outcome`]) from any number of tasks, and cuts them into phases: a
//!   baseline, then one phase per fault. [`PhaseStats`] is what one phase
//!   saw: requests, failures by kind (and how many of them started after
//!   the database was back), the longest wait and the p99 latency, and the
//!   recovery time (from the database's return to the first success
//!   started after it).
//! - [`Schedule`] runs faults one after another against a cluster while the
//!   caller's load records into a recorder, waiting in each phase for the
//!   recovery (bounded) and a steady stretch after it.
//!
//! What drives the load, and how a failure is named, is the caller's: the
//! phase computation only sees instants and outcome strings, so
//! `tidewater-lab drill` (virtual users against the reference service) and the
//! benchmark (one small HTTP service per peer pool) share it.
//!
//! Faults are only ever injected into a
//! [`PgCluster`](tidewater_testkit::PgCluster), a private server made for
//! breaking: never a shared one. A fault that cannot be injected (or whose
//! server does not come back) is a [`FaultError`].
//!
//! The modules, by concern:
//!
//! | module | owns |
//! |---|---|
//! | `fault` | [`Fault`] and [`FaultWindow`]: the kinds of fault and what one did |
//! | `inject` | [`inject`], [`inject_until`]: breaking and restoring the server; the restart, crash, hang and terminate faults |
//! | `side` | the side client's sessions (superuser, over the Unix socket) that the faults work through |
//! | `fill` | [`Fault::FillConnections`]: taking every connection slot |
//! | `hog` | [`Fault::CpuHog`]: CPU-bound side sessions ([`HOG`], [`HOG_SESSIONS`], [`HOG_SQL`]) |
//! | `phases` | [`Outcome`], [`Record`], [`Phase`], [`PhaseStats`], [`PhaseRecorder`]: what the requests saw, phase by phase |
//! | `schedule` | [`Schedule`]: faults one after another, each in its phase |
//! | `error` | [`FaultError`] |
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tidewater_lab::faults::{Outcome, PhaseRecorder};
//!
//! let recorder = PhaseRecorder::new();
//! let t0 = Instant::now();
//! recorder.begin_phase_at("baseline", t0, None);
//! recorder.record(t0, t0 + Duration::from_millis(3), Outcome::Ok);
//! recorder.record(t0, t0 + Duration::from_millis(9), Outcome::failed("deadline"));
//! recorder.end_at(t0 + Duration::from_millis(10));
//! let stats = recorder.stats();
//! assert_eq!((stats[0].requests, stats[0].failed), (2, 1));
//! assert_eq!(stats[0].longest_wait, Duration::from_millis(9));
//! ```

mod error;
mod fault;
mod fill;
mod hog;
mod inject;
mod phases;
mod schedule;
mod side;

pub use error::FaultError;
pub use fault::{Fault, FaultWindow};
pub use hog::{HOG, HOG_SESSIONS, HOG_SQL};
pub use inject::{inject, inject_until};
pub use phases::{Outcome, Phase, PhaseRecorder, PhaseStats, Record, phase_stats};
pub use schedule::Schedule;
