//! `tidewater-bench drill --quick --json` end to end: every pool goes
//! through every fault on a private PostgreSQL cluster of its own (never
//! the shared server), and the report says what each saw.
//!
//! Nothing here asserts a speed: only that the run ends by itself, that
//! every phase is there and saw requests, that every failure reached the
//! HTTP client as a 503 naming its cause (none hung up to the client's
//! own timeout), and that tidewater recovered from every fault.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Bound on the whole run (about 45 s on a 2-core machine, debug build).
const RUN_BOUND: Duration = Duration::from_secs(240);

/// Runs the binary with `args`, killing it past [`RUN_BOUND`]; returns its
/// standard output, failing on a non-zero exit.
fn run_bench(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidewater-bench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the benchmark starts");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let mut stderr = child.stderr.take().unwrap();
    let error_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + RUN_BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the drill ran past {RUN_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let errors = error_reader.join().unwrap();
    assert!(status.success(), "the drill failed ({status}):\n{errors}");
    reader.join().unwrap().unwrap()
}

#[test]
fn the_quick_drill_runs_every_pool_through_every_fault() {
    let output = run_bench(&["drill", "--quick", "--json"]);
    let report: Value = serde_json::from_str(output.trim())
        .unwrap_or_else(|error| panic!("not one JSON object ({error}): {output}"));
    assert_eq!(report["bench"], "drill");
    let hold = report["settings"]["hold_s"].as_f64().unwrap();
    let pools = report["pools"].as_array().unwrap();
    let names: Vec<_> = pools
        .iter()
        .map(|pool| pool["pool"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tidewater", "deadpool", "bb8", "sqlx"]);

    for pool in pools {
        let name = pool["pool"].as_str().unwrap();
        let phases = pool["phases"].as_array().unwrap();
        let phase_names: Vec<_> = phases
            .iter()
            .map(|phase| phase["phase"].as_str().unwrap())
            .collect();
        assert_eq!(
            phase_names,
            [
                "baseline",
                "restart",
                "crash",
                "hang",
                "terminate-backends",
                "fill-connections"
            ],
            "{name}"
        );
        for phase in phases {
            let phase_name = phase["phase"].as_str().unwrap();
            let context = format!("{name}, {phase_name}: {phase}");
            assert!(phase["requests"].as_u64().unwrap() > 0, "{context}");
            // Every failure was the service's 503 naming a cause, within
            // its deadline: none hung up to the HTTP client's timeout.
            for kind in phase["failed_by_kind"].as_object().unwrap().keys() {
                assert!(
                    !kind.starts_with("HTTP")
                        && !kind.contains("client timeout")
                        && !kind.starts_with("503"),
                    "{context}"
                );
            }
            if phase_name == "baseline" {
                assert!(phase["fault"].is_null(), "{context}");
                continue;
            }
            assert_eq!(phase["fault"], phase_name, "{context}");
            if ["crash", "hang", "fill-connections"].contains(&phase_name) {
                assert!(phase["outage_s"].as_f64().unwrap() >= hold, "{context}");
            }
            if name == "tidewater" {
                assert!(
                    phase["recovery_s"].is_number(),
                    "tidewater did not recover: {context}"
                );
            }
        }
    }
}
