//! # tidewater-lab
//!
//! The lab behind the `tidewater` command's `load`, `drill`, `soak` and
//! `advise`: virtual users against the reference service over HTTP, fault
//! drills on a private PostgreSQL, long leak runs and pool sizing, each
//! ending in a report with numbers and a verdict.

pub mod advise;
pub mod drill;
pub mod faults;
pub mod load;
pub mod scrape;
pub mod service;
pub mod soak;
