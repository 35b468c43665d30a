//! `tidewater-lab load`: virtual users against the reference service over
//! HTTP, then a report with numbers, a correctness check and verdicts.
//!
//! A run: start the service (or check the URL is on this machine), open
//! the run's accounts, start the users (one phase, or one per step of a
//! ramp), sample the pool (`/api/pools`) and the service's memory every
//! second, scrape `/metrics` before and after each phase, stop the users
//! (at the deadline or when the request budget is spent; every request
//! has a timeout), check correctness, stop the service, and judge.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tidewater_lab::load::{LoadConfig, run};
//!
//! let config = LoadConfig {
//!     users: 50,
//!     duration: Some(Duration::from_secs(5)),
//!     ..LoadConfig::default() // spawns this executable's `serve` on SQLite
//! };
//! let report = run(&config).await?;
//! println!("{}", report.text());
//! assert!(report.passed);
//! # Ok(()) }
//! ```
//!
//! The modules, by concern:
//!
//! | module | owns |
//! |---|---|
//! | `config` | [`LoadConfig`]: the run, its defaults and checks |
//! | `error` | [`LoadError`], [`ProbeError`], [`AccountsError`] |
//! | `hooks` | [`Hooks`] and [`StopHandle`], for a caller embedding a run |
//! | `driver` | [`run`], [`run_with`]: a run from start to report |
//! | `phase` | the phases (one, or a ramp's steps): users started, waited for, measured |
//! | `sampler` | the second-by-second samples and the progress bar's numbers |
//! | `probe` | `GET /api/pools` and `GET /metrics` |
//! | `accounts` | opening the run's accounts |
//! | `signals`, `limits` | SIGINT and SIGTERM; the open-files limit |
//! | [`users`], [`record`], [`check`], [`observe`] | the virtual users, what they saw, the correctness check |
//! | [`report`], [`slo`], [`ramp`], [`html`], [`progress`] | the report, its verdicts, the ramp, the HTML page, the bar |
//!
//! The run reports through its return value and `tracing` events (notes
//! at INFO, such as the accounts being opened or a ramp step's numbers;
//! WARN when users had to be stopped); it prints nothing itself, but for
//! the progress bar when [`LoadConfig::progress`] asks for it.

pub mod check;
pub mod html;
pub mod observe;
pub mod progress;
pub mod ramp;
pub mod record;
pub mod report;
pub mod slo;
pub mod users;

pub(crate) mod accounts;
mod config;
mod driver;
mod error;
mod hooks;
mod limits;
mod phase;
mod probe;
mod sampler;
mod signals;

pub use config::{LoadConfig, MAX_MONEY, REQUESTS_ONLY_CAP};
pub use driver::{CHECK_PER_KEY, CHECK_TIMEOUT, run, run_with};
pub use error::{AccountsError, LoadError, ProbeError};
pub use hooks::{Hooks, StopHandle};
pub(crate) use probe::pool_status;
