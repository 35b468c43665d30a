//! `tidewater-bench drill --quick --json` end to end: every pool goes
//! through every fault on a private PostgreSQL cluster of its own (never
//! the shared server), and the report says what each saw.
//!
//! Nothing here asserts a speed: only that the run ends by itself, that
//! every phase is there and saw requests, that every failure reached the
//! HTTP client as a 503 naming its cause (none hung up to the client's
//! own timeout), and that tidewater recovered from every fault.

use serde_json::Value;

mod common;

use common::run_bench;

#[test]
fn the_quick_drill_runs_every_pool_through_every_fault() {
    let output = run_bench("drill", &["drill", "--quick", "--json"]);
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
