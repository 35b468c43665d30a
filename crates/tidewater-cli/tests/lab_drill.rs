//! `tidewater drill` end to end: the real binary creates a private
//! PostgreSQL (never the shared one), spawns the service on it, runs the
//! load's users while it hangs and crashes the server, and reports each
//! phase with its verdicts and the correctness check. The drill is short
//! (a few users, 1 s calm phases, 3 s holds) and bounded; the file takes
//! about half a minute.

mod common;
use common::binary::{json, tidewater, verdict};

use std::time::Duration;

use serde_json::Value;

/// The request deadline the drill gives the service: below the 3 s hold,
/// so requests caught by the hang must be cut off by it.
const DEADLINE_S: f64 = 2.0;
/// The margin an answer may take beyond it.
const MARGIN_S: f64 = 1.0;

#[test]
fn a_hang_and_a_crash_get_503s_naming_the_cause_within_the_deadline_and_lose_no_money() {
    let dir = tempfile::tempdir().unwrap();
    let run = tidewater(
        &[
            "drill",
            "--faults",
            "hang,crash",
            "--hold",
            "3s",
            "--phase",
            "1s",
            "--users",
            "10",
            "--think",
            "50ms",
            "--request-timeout",
            "2s",
            "--margin",
            "1s",
            "--json",
        ],
        dir.path(),
        Duration::from_secs(80),
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let report = json(&run);

    for name in [
        "answers",
        "deadline",
        "recovery",
        "requests",
        "correctness",
        "clean_shutdown",
    ] {
        assert_eq!(
            verdict(&report, name)["passed"],
            true,
            "{name}: {:#}",
            verdict(&report, name)
        );
    }
    assert_eq!(report["passed"], true);

    let phases = report["phases"].as_array().unwrap();
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["baseline", "hang", "crash"]);
    let limit = DEADLINE_S + MARGIN_S;
    for phase in phases {
        let name = phase["phase"].as_str().unwrap();
        assert!(phase["requests"].as_u64().unwrap() > 0, "{phase:#}");
        // Every failure is a 503 with a problem type: no 500, no
        // transport error.
        for (kind, count) in phase["failed_by_kind"].as_object().unwrap() {
            assert!(
                kind.starts_with("503 ") && kind.len() > 4,
                "{name}: {count} failed as {kind:?}"
            );
        }
        let longest = phase["longest_wait_s"].as_f64().unwrap();
        assert!(longest <= limit, "{name}: waited {longest} s > {limit} s");
        assert_eq!(phase["within_deadline"], true, "{phase:#}");
    }
    assert_eq!(phases[0]["failed"], 0, "the calm baseline: {:#}", phases[0]);
    assert!(phases[0]["recovery_s"].is_null());

    // The hang outlasts the deadline: the requests caught in it were cut
    // off by the service's deadline, answered 503 naming it, at about 2 s.
    let hang = &phases[1];
    assert_eq!(hang["fault"], "hang");
    assert!(
        hang["failed_by_kind"]["503 request-deadline-exceeded"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{hang:#}"
    );
    assert!(
        hang["longest_wait_s"].as_f64().unwrap() >= DEADLINE_S * 0.9,
        "{hang:#}"
    );
    assert!(hang["outage_s"].as_f64().unwrap() >= 3.0, "{hang:#}");

    // Both faults broke the database for the hold, and both recovered
    // within the bound after it came back.
    let bound = report["settings"]["recovery_bound_seconds"]
        .as_f64()
        .unwrap();
    for phase in &phases[1..] {
        let recovery = phase["recovery_s"]
            .as_f64()
            .unwrap_or_else(|| panic!("no recovery: {phase:#}"));
        assert!(recovery <= bound, "{phase:#}");
        assert_eq!(phase["recovered_in_bound"], true);
    }
    let crash = &phases[2];
    assert_eq!(crash["fault"], "crash");
    assert!(
        crash["failed"].as_u64().unwrap() > 0,
        "the crash was seen: {crash:#}"
    );

    // The correctness check ran over real traffic.
    let check = &report["correctness"];
    assert_eq!(check["passed"], true, "{check:#}");
    assert_eq!(check["violation_count"], 0);
    assert_eq!(check["money_found"], check["money_opened"]);
    assert!(check["transfers_acknowledged"].as_u64().unwrap() > 0);
    assert!(report["load"]["requests"].as_u64().unwrap() > 100);
    assert!(
        report["settings"]["service_settings"]
            .as_array()
            .unwrap()
            .contains(&Value::from("request_timeout=2000ms"))
    );
}

#[test]
fn bad_options_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let run = tidewater(
        &["drill", "--faults", "reboot"],
        dir.path(),
        Duration::from_secs(20),
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("unknown fault \"reboot\""), "{run:?}");

    let run = tidewater(
        &["drill", "--max-size", "30", "--max-connections", "20"],
        dir.path(),
        Duration::from_secs(20),
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("max_size + 4"), "{run:?}");
}
