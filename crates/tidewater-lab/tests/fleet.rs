//! `tidewater-lab fleet` end to end: the real binary creates a private
//! PostgreSQL with `max_connections = 40`, starts four services of
//! `max_size = 50` in fleet mode on it, drives transfers through all of
//! them while sampling `pg_stat_activity` every 100 ms, kills one halfway,
//! and reports. Bounded: about half a minute.
//!
//! Nothing here depends on speed: no "too many clients", no sample above
//! the server's limit or the fleet's budget, every replica served, money
//! conserved, and the dead replica's share given out (within 30 s, where
//! it takes about a heartbeat).

mod common;
use common::{assert_passed, exit_code_of, json, lab};

use std::time::Duration;

#[test]
fn four_replicas_of_fifty_share_forty_connections_and_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let run = lab(
        &[
            "fleet",
            "--replicas",
            "4",
            "--max-connections",
            "40",
            "--max-size",
            "50",
            "--duration",
            "6s",
            "--kill-one",
            "--json",
        ],
        dir.path(),
        Duration::from_secs(180),
    );
    let report = json(&run);
    assert_passed(
        &report,
        &[
            "too_many_clients",
            "sessions_within_limit",
            "within_budget",
            "every_replica_served",
            "correctness",
            "share_moved",
        ],
    );
    assert_eq!(run.code, Some(exit_code_of(&report)), "{run:?}");
    let killed = &report["per_replica"][0];
    assert_eq!(killed["killed"], true);
    // The killed member's row is capped at its fallback share until its
    // lease ends; the others grew.
    let grants = report["grants"].as_object().unwrap();
    assert!(
        grants
            .values()
            .filter(|grant| grant.as_u64().unwrap() <= 2)
            .count()
            <= 1,
        "{report:#}"
    );
}
