//! `tidewater load` end to end: the real binary spawns the service on
//! SQLite, loads it, checks correctness, stops it, and reports. Each run
//! is short and bounded; the whole file takes seconds.

mod common;
use common::binary::{json, tidewater, verdict};

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

#[test]
fn a_short_run_passes_and_reports() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let run = tidewater(
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
    assert_eq!(run.code, Some(0), "{run:?}");
    let report = json(&run);
    assert_eq!(report["passed"], true, "{run:?}");
    for name in [
        "requests",
        "acquire_wait_p99",
        "error_rate",
        "correctness",
        "clean_shutdown",
    ] {
        assert_eq!(verdict(&report, name)["passed"], true, "{name}: {run:?}");
    }
    assert_eq!(verdict(&report, "acquire_wait_p99")["bound"], 0.1);
    assert_eq!(verdict(&report, "error_rate")["bound"], 0.001);

    // The numbers are sane.
    let requests = report["requests"].as_u64().unwrap();
    assert!(requests > 0, "{report:#}");
    let seconds = report["duration_seconds"].as_f64().unwrap();
    assert!((3.9..20.0).contains(&seconds), "{seconds}");
    let rps = report["throughput_rps"].as_f64().unwrap();
    assert!(
        rps > 0.0 && (rps * seconds - requests as f64).abs() < 1.0,
        "{rps}"
    );
    assert_eq!(report["users"], 50);
    assert_eq!(report["target"]["spawned"], true);
    assert_eq!(report["target"]["backend"], "sqlite");
    let latency = &report["latency_seconds"];
    let p50 = latency["p50"].as_f64().unwrap();
    let p99 = latency["p99"].as_f64().unwrap();
    assert!(0.0 < p50 && p50 <= p99 && p99 <= latency["max"].as_f64().unwrap());
    assert_eq!(report["availability"], 1.0, "{report:#}");

    // The pool's numbers, as `advise --from` reads them.
    let pool = &report["pool"];
    assert_eq!(pool["max_size"], 50, "{pool:#}");
    assert!(pool["checkouts"].as_u64().unwrap() >= requests, "{pool:#}");
    assert!(pool["checkouts_per_second"].as_f64().unwrap() > 0.0);
    let used = &pool["use_time_seconds"];
    assert!(used["mean"].as_f64().unwrap() > 0.0, "{pool:#}");
    assert!(used["p99"].as_f64().unwrap() > 0.0, "{pool:#}");
    let wait = &pool["acquire_wait_seconds"];
    let (w50, w99, wmax) = (
        wait["p50"].as_f64().unwrap(),
        wait["p99"].as_f64().unwrap(),
        wait["max"].as_f64().unwrap(),
    );
    assert!(
        0.0 < w50 && w50 <= w99 && w99 <= wmax && wmax <= 5.0,
        "{pool:#}"
    );

    // The scenario ran: reads, transfers, re-sends answered with the same
    // transfer, and the check saw them.
    let ops = &report["operations"];
    for op in ["read_account", "transfer", "resend"] {
        assert!(ops[op]["requests"].as_u64().unwrap() > 0, "{op}: {ops:#}");
    }
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
    assert!(timeline.len() >= 3, "{timeline:?}");
    assert!(timeline.iter().any(|s| s["pool"]["max_size"] == 50));

    // The HTML report: self-contained, with charts.
    let page = std::fs::read_to_string(&html).expect("the HTML report is written");
    assert!(page.contains("<svg"), "charts are inline SVG");
    assert!(
        page.matches("<svg").count() >= 4,
        "latency, throughput, errors, pool"
    );
    assert!(page.contains("PASSED"));
    assert!(!page.contains("<script"), "no script");
    assert!(!page.contains(" src="), "nothing loaded from elsewhere");
}

#[test]
fn a_ramp_reports_each_step_and_the_knee() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = tidewater(
        &[
            "load",
            "--spawn",
            "--ramp",
            "5,10",
            "--step-duration",
            "2s",
            "--think",
            "100ms",
            "--json",
        ],
        dir.path(),
        Duration::from_secs(45),
    );
    let report = json(&run);
    let ramp = &report["ramp"];
    let steps = ramp["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{ramp:#}");
    assert_eq!(ramp["planned"], serde_json::json!([5, 10]));
    for (step, users) in steps.iter().zip([5, 10]) {
        assert_eq!(step["users"], users);
        assert!(step["requests"].as_u64().unwrap() > 0, "{step:#}");
        assert!(
            step["duration_seconds"].as_f64().unwrap() >= 1.9,
            "{step:#}"
        );
        let names: Vec<&str> = step["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["requests", "acquire_wait_p99", "error_rate"]);
    }
    // The knee is the last passing step before the first failing one, and
    // the ramp stopped at that failure.
    let passing = steps.iter().take_while(|s| s["passed"] == true).count();
    let knee = passing.checked_sub(1).map(|i| steps[i]["users"].clone());
    assert_eq!(ramp["knee_users"], knee.unwrap_or(Value::Null), "{ramp:#}");
    assert!(steps.len() == 2 || steps.last().unwrap()["passed"] == false);
    assert_eq!(verdict(&report, "correctness")["passed"], true, "{run:?}");
    assert_eq!(
        verdict(&report, "ramp_knee")["passed"],
        !ramp["knee_users"].is_null()
    );
    let expected = if report["passed"] == true { 0 } else { 1 };
    assert_eq!(run.code, Some(expected), "{run:?}");
    // The timeline shows the users rising.
    let users: Vec<u64> = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["users"].as_u64().unwrap())
        .collect();
    assert!(
        users.contains(&5) && (steps.len() < 2 || users.contains(&10)),
        "{users:?}"
    );
}

/// No HTTP round trip through a service and its database is answered
/// in a microsecond: the objective cannot be met, and the run must say so
/// and exit non-zero, whatever else went well.
#[test]
fn an_objective_not_met_fails_the_run() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = tidewater(
        &[
            "load",
            "--spawn",
            "--users",
            "10",
            "--duration",
            "2s",
            "--think",
            "50ms",
            "--slo-latency-p99",
            "1us",
        ],
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
        let run = tidewater(args, dir.path(), limit);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(
            run.stderr.contains(says),
            "{args:?} should say {says:?}: {run:?}"
        );
    }
}
