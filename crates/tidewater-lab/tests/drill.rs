//! `tidewater-lab drill` end to end: the real binary creates a private
//! PostgreSQL (never the shared one), spawns the service on it, runs the
//! load's users while it hangs and crashes the server, and reports each
//! phase with its verdicts and the correctness check. The drill is short
//! (a few users, 1 s calm phases, 3 s holds) and bounded; the file takes
//! about half a minute.
//!
//! How fast answers came (`deadline`: within the request deadline plus a
//! margin; `recovery`: within a bound of the database's return) depends
//! on the machine and what else runs on it, so those two verdicts are not
//! required to pass here: their logic is tested on phases with known
//! numbers in `tidewater_lab::drill`, and the deadline itself under a
//! paused clock in `tidewater-axum`. What does not depend on speed is: the
//! kind of every answer, that the hang's requests were cut off by the
//! deadline, that each fault recovered, the correctness check, and the
//! exit code the report's own verdicts give.

mod common;
use common::{assert_passed, exit_code_of, json, lab, verdict_names};

use std::time::Duration;

use serde_json::Value;

/// The request deadline the drill gives the service: below the 3 s hold,
/// so requests caught by the hang must be cut off by it.
const DEADLINE_S: f64 = 2.0;
/// The hold of each fault, seconds.
const HOLD_S: f64 = 3.0;

#[test]
fn a_hang_and_a_crash_get_503s_naming_the_cause_and_lose_no_money() {
    let dir = tempfile::tempdir().unwrap();
    let run = lab(
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
    let report = json(&run);
    assert_eq!(run.code, Some(exit_code_of(&report)), "{run:?}");
    assert_eq!(
        verdict_names(&report),
        [
            "answers",
            "deadline",
            "recovery",
            "requests",
            "correctness",
            "clean_shutdown"
        ]
    );
    assert_passed(
        &report,
        &["answers", "requests", "correctness", "clean_shutdown"],
    );

    let phases = report["phases"].as_array().unwrap();
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["baseline", "hang", "crash"]);
    let limit = report["settings"]["request_timeout_seconds"]
        .as_f64()
        .unwrap()
        + report["settings"]["margin_seconds"].as_f64().unwrap();
    let bound = report["settings"]["recovery_bound_seconds"]
        .as_f64()
        .unwrap();
    for phase in phases {
        let name = phase["phase"].as_str().unwrap();
        assert!(
            phase["requests"].as_u64().unwrap() > 0,
            "no request ended in {name}: {phase:#}"
        );
        // Every failure is a 503 with a problem type: no 500, no
        // transport error.
        for (kind, count) in phase["failed_by_kind"].as_object().unwrap() {
            assert!(
                kind.starts_with("503 ") && kind.len() > 4,
                "{name}: {count} failed as {kind:?}"
            );
        }
        // Each phase is judged on its own numbers.
        let longest = phase["longest_wait_s"].as_f64().unwrap();
        assert_eq!(phase["within_deadline"], longest <= limit, "{phase:#}");
        assert!(
            phase["latency_p99_s"].as_f64().unwrap() <= longest,
            "{phase:#}"
        );
        // The pool was read in every phase; its sizing is fixed: no limit.
        assert!(phase["peak_in_use"].as_u64().is_some(), "{phase:#}");
        for key in ["limit_min", "limit_max", "limit_last"] {
            assert!(phase[key].is_null(), "{key}: {phase:#}");
        }
    }

    // The calm baseline: only a slow machine can fail a request there,
    // and then by a deadline.
    let baseline = &phases[0];
    for kind in baseline["failed_by_kind"].as_object().unwrap().keys() {
        assert!(
            ["503 request-deadline-exceeded", "503 pool-timeout"].contains(&kind.as_str()),
            "the calm baseline failed as {kind:?}: {baseline:#}"
        );
    }
    assert!(baseline["recovery_s"].is_null(), "{baseline:#}");

    // The hang outlasts the deadline: requests caught in it were cut off
    // by the service's deadline, answered 503 naming it, no sooner than it.
    let hang = &phases[1];
    assert_eq!(hang["fault"], "hang");
    assert!(
        hang["failed_by_kind"]["503 request-deadline-exceeded"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "no request was cut off by the {DEADLINE_S} s deadline during the hang: {hang:#}"
    );
    assert!(
        hang["longest_wait_s"].as_f64().unwrap() >= DEADLINE_S,
        "cut off by the deadline sooner than it: {hang:#}"
    );

    // Both faults broke the database for the hold, and both recovered: a
    // request started after the database's return succeeded.
    for phase in &phases[1..] {
        assert!(
            phase["outage_s"].as_f64().unwrap() >= HOLD_S,
            "the fault lasted less than its {HOLD_S} s hold: {phase:#}"
        );
        let recovery = phase["recovery_s"]
            .as_f64()
            .unwrap_or_else(|| panic!("no recovery: {phase:#}"));
        assert_eq!(phase["recovered_in_bound"], recovery <= bound, "{phase:#}");
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
    let run = lab(
        &["drill", "--faults", "reboot"],
        dir.path(),
        Duration::from_secs(20),
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("unknown fault \"reboot\""), "{run:?}");

    let run = lab(
        &["drill", "--max-size", "30", "--max-connections", "20"],
        dir.path(),
        Duration::from_secs(20),
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("max_size + 4"), "{run:?}");
}
