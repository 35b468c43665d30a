//! `tidewater-bench sizing` end to end, shortened: the `hot` workload on a
//! private PostgreSQL cluster (never the shared server) and the `sqlite`
//! workload, each on a fixed pool of 5 and on the adaptive pool.
//!
//! Nothing here asserts a speed: only that the run ends by itself, that
//! every configuration of every workload has its JSON line with operations
//! and no errors, and that the adaptive limit stayed within its floor and
//! ceiling.

use serde_json::Value;

mod common;

use common::run_bench;

#[test]
fn a_short_sizing_run_measures_every_configuration() {
    let output = run_bench(
        "sizing benchmark",
        &[
            "sizing",
            "--workloads",
            "hot,sqlite",
            "--sizes",
            "5",
            "--tasks",
            "50",
            "--warmup",
            "1s",
            "--duration",
            "2s",
            "--json",
        ],
    );
    let lines: Vec<Value> = output
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"))
        })
        .collect();
    let runs: Vec<&Value> = lines.iter().filter(|line| line["line"] == "run").collect();
    let configs: Vec<(&str, &str, u64)> = runs
        .iter()
        .map(|run| {
            assert_eq!(run["bench"], "sizing", "{run}");
            (
                run["workload"].as_str().unwrap(),
                run["pool"].as_str().unwrap(),
                run["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        configs,
        [
            ("hot", "fixed", 5),
            ("hot", "adaptive", 200),
            ("sqlite", "fixed", 5),
            ("sqlite", "adaptive", 200),
        ]
    );

    for run in &runs {
        assert!(run["ops"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(run["errors"].as_u64(), Some(0), "{run}");
        let limit = |name: &str| run[name].as_u64().unwrap();
        if run["pool"] == "fixed" {
            assert_eq!(limit("limit_final"), 5, "{run}");
            continue;
        }
        let (floor, ceiling) = (limit("floor"), limit("ceiling"));
        assert_eq!(ceiling, 200, "{run}");
        for name in ["limit_final", "limit_min", "limit_max"] {
            assert!((floor..=ceiling).contains(&limit(name)), "{name}: {run}");
        }
    }

    let summaries: Vec<&str> = lines
        .iter()
        .filter(|line| line["line"] == "summary")
        .map(|line| line["workload"].as_str().unwrap())
        .collect();
    assert_eq!(summaries, ["hot", "sqlite"]);
}
