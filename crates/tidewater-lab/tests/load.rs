//! `tidewater-lab load` end to end: the real binary spawns the service on
//! SQLite, loads it, checks correctness, stops it, and reports. Each run
//! is short and bounded; the whole file takes seconds.
//!
//! No test here asserts a speed: how fast the service answered depends on
//! the machine and what else runs on it. They assert what does not: the
//! report is made and holds together, the scenario ran, the correctness
//! check passed, and the exit code is the one the report's own verdicts
//! give. Whether an objective is met or missed is judged on numbers
//! known in advance by the unit tests of `tidewater_lab::load` (`slo`,
//! `ramp`, and the synthetic ramps of `load::tests`); here, only
//! objectives that no run can miss, or none can meet.

mod common;
use common::{assert_passed, exit_code_of, json, lab, verdict, verdict_names};

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

/// One run at a time: each spawns a service and up to 50 users on a
/// machine of two cores, and the numbers they check should not depend on
/// the others.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Objectives that every run meets, however slow: an error rate is at
/// most 1, and no acquisition waits 60 s (the service gives up at its
/// `acquire_timeout` of 5 s).
const ALWAYS_MET: [&str; 4] = ["--slo-acquire-p99", "60s", "--slo-error-rate", "1"];

/// An objective that no run meets, however fast: no HTTP round trip
/// through the service and its database is answered in a microsecond.
const NEVER_MET: [&str; 2] = ["--slo-latency-p99", "1us"];

/// The ramp of the ramp tests: 5 then 10 users, 2 s each.
const RAMP: [&str; 7] = [
    "load",
    "--spawn",
    "--ramp",
    "5,10",
    "--step-duration",
    "2s",
    "--json",
];

#[test]
fn a_short_run_reports_and_exits_as_its_verdicts_say() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let run = lab(
        &[
            "load",
            "--spawn",
            "--users",
            "50",
            "--duration",
            "4s",
            "--think",
            "200ms",
            "--resend",
            "0.5",
            "--json",
            "--html",
            html.to_str().unwrap(),
        ],
        dir.path(),
        Duration::from_secs(45),
    );
    let report = json(&run);
    assert_eq!(run.code, Some(exit_code_of(&report)), "{run:?}");
    assert_eq!(
        verdict_names(&report),
        [
            "requests",
            "acquire_wait_p99",
            "error_rate",
            "correctness",
            "clean_shutdown"
        ]
    );
    // Whether the objectives were met depends on the machine; these do not.
    assert_passed(&report, &["requests", "correctness", "clean_shutdown"]);
    // The default objectives, and what they were judged on.
    let acquire = verdict(&report, "acquire_wait_p99");
    assert_eq!(acquire["bound"], 0.1);
    let wait = &report["pool"]["acquire_wait_seconds"];
    if wait["above_last_bucket"] == true {
        assert!(acquire["measured"].is_null(), "{acquire:#}");
    } else {
        assert_eq!(acquire["measured"], wait["p99"], "{acquire:#}");
    }
    let errors = verdict(&report, "error_rate");
    assert_eq!(errors["bound"], 0.001);
    assert_eq!(errors["measured"], report["error_rate"]);

    // The counts add up.
    let requests = report["requests"].as_u64().unwrap();
    assert!(requests > 0, "{report:#}");
    let count = |value: &Value| value.as_u64().unwrap();
    let (errors, unavailable) = (count(&report["errors"]), count(&report["unavailable"]));
    assert!(unavailable <= errors && errors <= requests, "{report:#}");
    assert_eq!(
        report["error_rate"].as_f64().unwrap(),
        errors as f64 / requests as f64
    );
    assert_eq!(
        report["availability"].as_f64().unwrap(),
        1.0 - unavailable as f64 / requests as f64
    );
    let answered: u64 = report["answers"]
        .as_object()
        .unwrap()
        .values()
        .map(count)
        .sum();
    assert_eq!(answered, requests, "every request has one answer");
    // The users run for the whole duration, however slowly.
    let seconds = report["duration_seconds"].as_f64().unwrap();
    assert!(seconds >= 4.0, "{seconds}");
    let rps = report["throughput_rps"].as_f64().unwrap();
    assert!((rps * seconds - requests as f64).abs() < 1e-6 * requests as f64);
    assert_eq!(report["users"], 50);
    assert_eq!(report["target"]["spawned"], true);
    assert_eq!(report["target"]["backend"], "sqlite");
    let latency = &report["latency_seconds"];
    let p50 = latency["p50"].as_f64().unwrap();
    let p99 = latency["p99"].as_f64().unwrap();
    assert!(0.0 < p50 && p50 <= p99 && p99 <= latency["max"].as_f64().unwrap());

    // The pool's numbers, as `advise --from` reads them: quantiles are
    // bucket bounds (at least 10 µs), in order.
    let pool = &report["pool"];
    assert_eq!(pool["metrics_read"], true, "{pool:#}");
    assert_eq!(pool["max_size"], 50, "{pool:#}");
    assert!(pool["checkouts"].as_u64().unwrap() >= requests, "{pool:#}");
    assert!(pool["checkouts_per_second"].as_f64().unwrap() > 0.0);
    let used = &pool["use_time_seconds"];
    assert!(used["mean"].as_f64().unwrap() > 0.0, "{pool:#}");
    assert!(used["p99"].as_f64().unwrap() > 0.0, "{pool:#}");
    let (w50, w99, wmax) = (
        wait["p50"].as_f64().unwrap(),
        wait["p99"].as_f64().unwrap(),
        wait["max"].as_f64().unwrap(),
    );
    assert!(0.0 < w50 && w50 <= w99 && w99 <= wmax, "{pool:#}");

    // The scenario ran: reads, transfers, re-sends answered with the same
    // transfer, and the check saw them.
    let ops = report["operations"].as_object().unwrap();
    for op in ["read_account", "transfer", "resend"] {
        assert!(count(&ops[op]["requests"]) > 0, "{op}: {ops:#?}");
    }
    let by_operation: u64 = ops.values().map(|op| count(&op["requests"])).sum();
    assert_eq!(by_operation, requests);
    let check = &report["correctness"];
    assert_eq!(check["passed"], true, "{check:#}");
    assert_eq!(check["violation_count"], 0);
    assert_eq!(check["accounts"], 100);
    assert_eq!(check["money_found"], check["money_opened"]);
    assert!(check["transfers_acknowledged"].as_u64().unwrap() > 0);
    assert!(check["replays"].as_u64().unwrap() > 0, "{check:#}");
    assert_eq!(
        check["ledger_entries"].as_u64().unwrap(),
        2 * check["transfers_booked"].as_u64().unwrap()
    );

    // The service's memory and shutdown.
    assert!(report["memory"]["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(report["shutdown"]["exit_code"], 0);
    let timeline = report["timeline"].as_array().unwrap();
    assert!(!timeline.is_empty(), "{report:#}");
    assert!(
        timeline
            .windows(2)
            .all(|w| w[0]["t"].as_f64() < w[1]["t"].as_f64()),
        "{timeline:?}"
    );
    assert!(timeline.iter().any(|s| s["pool"]["max_size"] == 50));

    // The HTML report: self-contained, with charts, and the same verdict.
    let page = std::fs::read_to_string(&html).expect("the HTML report is written");
    assert!(page.contains("<svg"), "charts are inline SVG");
    assert!(
        page.matches("<svg").count() >= 4,
        "latency, throughput, errors, pool"
    );
    let outcome = if report["passed"] == true {
        "PASSED"
    } else {
        "FAILED"
    };
    assert!(page.contains(outcome), "the page says {outcome}");
    assert!(!page.contains("<script"), "no script");
    assert!(!page.contains(" src="), "nothing loaded from elsewhere");
}

/// Each step of a ramp, as reported: its users, requests and verdicts.
fn assert_steps(ramp: &Value, users: &[u64], verdicts: &[&str]) {
    let steps = ramp["steps"].as_array().unwrap();
    let run: Vec<u64> = steps.iter().map(|s| s["users"].as_u64().unwrap()).collect();
    assert_eq!(run, users, "{ramp:#}");
    for step in steps {
        assert!(step["requests"].as_u64().unwrap() > 0, "{step:#}");
        assert!(
            step["duration_seconds"].as_f64().unwrap() >= 2.0,
            "{step:#}"
        );
        assert_eq!(verdict_names(step), verdicts, "{step:#}");
    }
}

/// With objectives every step meets, the knee is by construction the last
/// step, and nothing broke: the ramp passes and exits 0.
#[test]
fn a_ramp_whose_every_step_meets_the_objectives_has_its_knee_at_the_top() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = lab(
        &[&RAMP[..], &ALWAYS_MET[..], &["--think", "100ms"][..]].concat(),
        dir.path(),
        Duration::from_secs(45),
    );
    let report = json(&run);
    let ramp = &report["ramp"];
    assert_eq!(ramp["planned"], serde_json::json!([5, 10]));
    assert_steps(
        ramp,
        &[5, 10],
        &["requests", "acquire_wait_p99", "error_rate"],
    );
    assert_eq!(ramp["knee_users"], 10, "{ramp:#}");
    assert!(ramp["broke_at_users"].is_null(), "{ramp:#}");
    assert_eq!(
        verdict_names(&report),
        ["ramp_knee", "correctness", "clean_shutdown"]
    );
    assert_passed(&report, &["ramp_knee", "correctness", "clean_shutdown"]);
    assert_eq!(exit_code_of(&report), 0);
    assert_eq!(run.code, Some(0), "{run:?}");
    // The timeline shows the users rising.
    let users: Vec<u64> = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["users"].as_u64().unwrap())
        .collect();
    assert!(users.contains(&5) && users.contains(&10), "{users:?}");
}

/// With an objective no step meets, the first step breaks it: the ramp
/// stops there, has no knee, and fails with exit code 1.
#[test]
fn a_ramp_stops_at_the_first_step_that_breaks_an_objective() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = lab(
        &[&RAMP[..], &NEVER_MET[..], &["--think", "100ms"][..]].concat(),
        dir.path(),
        Duration::from_secs(45),
    );
    let report = json(&run);
    let ramp = &report["ramp"];
    assert_steps(
        ramp,
        &[5],
        &["requests", "acquire_wait_p99", "error_rate", "latency_p99"],
    );
    assert_eq!(ramp["steps"][0]["passed"], false, "{ramp:#}");
    assert!(ramp["knee_users"].is_null(), "{ramp:#}");
    assert_eq!(ramp["broke_at_users"], 5, "{ramp:#}");
    assert_eq!(verdict(&report, "ramp_knee")["passed"], false);
    assert_passed(&report, &["correctness", "clean_shutdown"]);
    assert_eq!(exit_code_of(&report), 1);
    assert_eq!(run.code, Some(1), "{run:?}");
}

/// The same for a plain run, in its text report: the one objective missed
/// fails the run, whatever else went well.
#[test]
fn an_objective_not_met_fails_the_run() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = lab(
        &[
            &["load", "--spawn", "--users", "10", "--duration", "2s"][..],
            &ALWAYS_MET[..],
            &NEVER_MET[..],
            &["--think", "50ms"][..],
        ]
        .concat(),
        dir.path(),
        Duration::from_secs(45),
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    let failing: Vec<&str> = run
        .stdout
        .lines()
        .filter(|line| line.trim_start().starts_with("FAIL "))
        .collect();
    assert_eq!(failing.len(), 1, "{run:?}");
    assert!(failing[0].contains("latency_p99"), "{run:?}");
    assert!(failing[0].contains("objective ≤ 1 µs"), "{run:?}");
    assert!(run.stdout.contains("PASS  correctness"), "{run:?}");
    assert!(run.stdout.trim_end().ends_with("FAILED"), "{run:?}");
}

#[test]
fn bad_options_name_the_flag_and_what_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let limit = Duration::from_secs(20);
    for (args, says) in [
        (&["load", "--spawn"][..], "--duration, --requests"),
        (
            &["load", "--spawn", "--users", "0", "--duration", "1s"][..],
            "--users",
        ),
        (
            &["load", "--spawn", "--duration", "0s"][..],
            "allowed 1s to 24h",
        ),
        (
            &["load", "--spawn", "--duration", "5s", "--resend", "2"][..],
            "allowed 0 to 1",
        ),
        (
            &["load", "--spawn", "--ramp", "10,5"][..],
            "strictly ascending",
        ),
        (
            &["load", "--spawn", "--ramp", "5,10", "--duration", "5s"][..],
            "--duration",
        ),
        (
            &[
                "load",
                "--spawn",
                "--duration",
                "1s",
                "--slo-acquire-p99",
                "1ns",
            ][..],
            "allowed 10us to 60s",
        ),
        (&["load", "--duration", "1s"][..], "--url"),
        (
            &[
                "load",
                "--spawn",
                "--duration",
                "1s",
                "--set",
                "pool.max_size=0",
            ][..],
            "pool.max_size",
        ),
        (
            &[
                "load",
                "--url",
                "http://192.168.1.1:8080",
                "--duration",
                "1s",
            ][..],
            "not on this machine",
        ),
        (
            &[
                "load",
                "--spawn",
                "--database-url",
                "postgres://db.example/x",
                "--duration",
                "1s",
            ][..],
            "not on this machine",
        ),
    ] {
        let run = lab(args, dir.path(), limit);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(
            run.stderr.contains(says),
            "{args:?} should say {says:?}: {run:?}"
        );
    }
}
