//! # tidewater-lab
//!
//! The lab behind the `tidewater-lab` command's `load`, `drill`, `soak`,
//! `advise` and `fleet`: virtual users against the reference service over
//! HTTP, fault drills on a private PostgreSQL, long leak runs, pool sizing
//! and replicas sharing one server, each ending in a report with numbers
//! and a verdict.

pub mod advise;
pub mod drill;
pub mod faults;
pub mod fleet;
pub mod load;
pub mod scrape;
pub mod service;
pub mod soak;
