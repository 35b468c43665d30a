//! `tidewater-lab advise` through the real binary: from flags, from a load
//! report written to a temporary folder, against the machine's shared
//! PostgreSQL (read only: `max_connections` is read, nothing is changed),
//! and refusing bad input with exit code 2 and a message naming the flag
//! or field.

mod common;
use common::{Run, run};

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// The shared PostgreSQL: 127.0.0.1:5432, user postgres, database test.
const PG: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Longest a run may take: advise reads a server within 10 s.
const LIMIT: Duration = Duration::from_secs(30);

/// Runs `tidewater-lab advise ARGS` in `dir` with an empty environment (but
/// `PATH`), so that no `PG*` or `TIDEWATER_*` variable changes the advice.
fn advise(dir: &Path, args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidewater-lab"));
    command
        .arg("advise")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(dir);
    run(command, LIMIT)
}

/// `advise ARGS --json`, which must succeed: the JSON printed.
fn advise_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let run = advise(dir, &all);
    assert_eq!(run.code, Some(0), "{run:#?}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("no JSON: {e}\n{run:#?}"))
}

/// The text with its line wrapping undone.
fn folded(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn advises_from_flags_with_the_steps_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--checkouts-per-second",
        "2000",
        "--use-time",
        "4ms",
        "--server-cores",
        "8",
        "--max-connections",
        "100",
        "--replicas",
        "2",
    ];
    let run = advise(dir.path(), &flags);
    assert_eq!(run.code, Some(0), "{run:#?}");
    let text = folded(&run.stdout);
    for expected in [
        "tidewater-lab advise: max_size = 5, min_idle = 4 for each of 2 replica(s)",
        "L = λ·W = 2000/s x 4ms = 8 connections in use on average",
        "Erlang C",
        "8 x 2 + 1 = 17 queries at once",
        "(100 - 10) / 2 = 45 per replica",
        "max_size = min(5, 9, 45) = 5",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not in\n{}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains("Warnings:"), "{}", run.stdout);

    let json = advise_json(dir.path(), &flags);
    assert_eq!(json["max_size"], 5);
    assert_eq!(json["min_idle"], 4);
    assert_eq!(
        json["inputs"]["checkouts_per_second"]["from"],
        "--checkouts-per-second"
    );
    assert!((json["load"]["busy_mean"].as_f64().unwrap() - 8.0).abs() < 1e-9);
    assert_eq!(json["warnings"], Value::Array(vec![]));

    // Twenty replicas at 40 connections each would exhaust the server.
    let mut crowded = flags[..8].to_vec();
    crowded.extend(["--replicas", "20", "--max-size", "40"]);
    let json = advise_json(dir.path(), &crowded);
    let warnings = json["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0]["kind"], "current_exhaustion");
    let message = warnings[0]["message"].as_str().unwrap();
    assert!(
        message.contains("max_size 40 (--max-size) x 20 replica(s) = 800 connections"),
        "{message}"
    );
    // 100/s per replica needs the floor of 2, within the rule of thumb's
    // share (17 / 20, rounded up) raised to that floor.
    assert_eq!(json["max_size"], 2);
    assert!(message.contains("Lower max_size to 4"), "{message}");
}

#[test]
fn advises_from_a_load_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    std::fs::write(
        &report,
        r#"{
          "throughput_rps": 1000.0, "duration_seconds": 60.0, "verdict": {"pass": true},
          "latency_seconds": {"p50": 0.002, "p99": 0.015},
          "pool": {
            "max_size": 50, "checkouts_per_second": 2000.0, "timeouts": 0,
            "use_time_seconds": {"mean": 0.004, "p99": 0.040},
            "acquire_wait_seconds": {"p50": 0.0, "p99": 0.003, "max": 0.021}
          }
        }"#,
    )
    .unwrap();
    let json = advise_json(
        dir.path(),
        &[
            "--from",
            "report.json",
            "--server-cores",
            "16",
            "--max-connections",
            "200",
            "--replicas",
            "4",
        ],
    );
    assert_eq!(json["inputs"]["checkouts_per_second"]["value"], 2000.0);
    assert_eq!(
        json["inputs"]["checkouts_per_second"]["from"],
        "--from report.json: pool.checkouts_per_second"
    );
    assert_eq!(json["inputs"]["use_time_p99_seconds"]["value"], 0.04);
    assert_eq!(json["inputs"]["current_max_size"]["value"], 50);
    // p99 ten times the mean: waits stretch about 3.8 times.
    let k = json["load"]["variability"].as_f64().unwrap();
    assert!((k - 3.844).abs() < 1e-3, "{k}");
    // 2 per replica on average; 50 x 4 = 200 > 180 left: the run's size
    // would exhaust the server.
    assert!((json["load"]["busy_mean_per_replica"].as_f64().unwrap() - 2.0).abs() < 1e-9);
    let kinds: Vec<&str> = json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["current_exhaustion"], "{json:#}");
    let check = &json["model_check"];
    assert_eq!(check["max_size"], 50);
    assert_eq!(check["measured_wait_p99_seconds"], 0.003);
    // By hand: 2 Erlangs per replica are unstable on 2 connections; on 3,
    // C(3, 2) = 4/9 and the p99 wait is 3.844 x 4 ms x ln(44.44) / (3 - 2)
    // = 15.38 ms x 3.794 = 58.3 ms, within 100 ms, at 67% busy, within
    // 80%. The caps are above it: 16 cores x 2 + 1 = 33 queries, 9 a
    // replica; (200 - 20 reserved) / 4 = 45 connections a replica.
    assert_eq!(json["max_size"], 3, "{json:#}");
    assert_eq!(json["limited_by"], "load");
    assert_eq!(json["needed"]["bound_by"], "wait");
    let p99 = json["at_max_size"]["wait_p99_seconds"].as_f64().unwrap();
    assert!((p99 - 0.0583).abs() < 1e-4, "{p99}");

    // The text names the run.
    let run = advise(
        dir.path(),
        &[
            "--from",
            "report.json",
            "--server-cores",
            "16",
            "--max-connections",
            "200",
        ],
    );
    assert_eq!(run.code, Some(0), "{run:#?}");
    let text = folded(&run.stdout);
    assert!(
        text.contains("acquisition wait p50 0ms, p99 3ms, max 21ms"),
        "{}",
        run.stdout
    );
    assert!(text.contains("Allen–Cunneen"), "{}", run.stdout);
}

#[test]
fn reads_max_connections_from_the_shared_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let expected = show_max_connections();
    let json = advise_json(
        dir.path(),
        &[
            "--database-url",
            PG,
            "--checkouts-per-second",
            "500",
            "--use-time",
            "2ms",
        ],
    );
    let inputs = &json["inputs"];
    assert_eq!(inputs["max_connections"]["value"], expected.0);
    assert!(
        inputs["max_connections"]["from"]
            .as_str()
            .unwrap()
            .contains("SHOW max_connections"),
        "{inputs:#}"
    );
    // The server is on loopback: its cores are this machine's.
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(inputs["server_cores"]["value"], cores);
    // Reserved: 10% of max_connections, at least the superuser slots.
    let reserved = expected.0.div_ceil(10).max(expected.1);
    assert_eq!(inputs["reserved"]["value"], reserved);
    assert!(inputs["held_by_others"]["value"].is_u64(), "{inputs:#}");
    assert_eq!(
        json["budget"]["available"].as_u64().unwrap(),
        u64::from(expected.0 - reserved)
    );

    // --max-connections wins over the server's; an unreachable server is
    // an error naming the flag, exit code 1.
    let json = advise_json(
        dir.path(),
        &[
            "--database-url",
            PG,
            "--max-connections",
            "42",
            "--checkouts-per-second",
            "1",
            "--use-time",
            "1ms",
        ],
    );
    assert_eq!(json["inputs"]["max_connections"]["value"], 42);
    let run = advise(
        dir.path(),
        &[
            "--database-url",
            "postgres://postgres:secret@127.0.0.1:1/test",
            "--checkouts-per-second",
            "1",
            "--use-time",
            "1ms",
        ],
    );
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .contains("--database-url postgres://postgres:***@127.0.0.1:1/test"),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("secret"), "{run:#?}");
}

/// `max_connections` and the reserved slots, asked with tokio-postgres.
fn show_max_connections() -> (u32, u32) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(PG, tokio_postgres::NoTls)
            .await
            .expect("the shared PostgreSQL at 127.0.0.1:5432 accepts postgres");
        tokio::spawn(connection);
        let max: String = client
            .query_one("SHOW max_connections", &[])
            .await
            .unwrap()
            .get(0);
        let reserved: String = client
            .query_one("SHOW superuser_reserved_connections", &[])
            .await
            .unwrap()
            .get(0);
        let extra: i32 = client
            .query_one(
                "SELECT coalesce(current_setting('reserved_connections', true)::int, 0)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (
            max.parse().unwrap(),
            reserved.parse::<u32>().unwrap() + extra as u32,
        )
    })
}

#[test]
fn bad_input_exits_2_naming_the_flag_or_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.json"), r#"{"rows": [1, 2, 3]}"#).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let server = ["--server-cores", "4", "--max-connections", "100"];
    let cases: &[(&[&str], &str)] = &[
        (
            &["--checkouts-per-second", "-50", "--use-time", "4ms"],
            "--checkouts-per-second = -50: allowed: 0 to 1000000000 checkouts per second",
        ),
        (
            &[
                "--checkouts-per-second",
                "50",
                "--use-time",
                "4ms",
                "--replicas",
                "0",
            ],
            "--replicas = 0: allowed: 1 to 10000",
        ),
        (
            &["--checkouts-per-second", "50", "--use-time", "soon"],
            "--use-time = soon: allowed: a duration such as 4ms",
        ),
        (
            &["--from", "notes.json"],
            "--from notes.json: not a `tidewater-lab load --json` report: it has no `pool` object",
        ),
        (&["--from", "notes.txt"], "--from notes.txt: not JSON"),
        (
            &["--from", "missing.json"],
            "--from missing.json: cannot read it",
        ),
        (
            &["--use-time", "4ms"],
            "missing the checkout rate: give --checkouts-per-second",
        ),
    ];
    for (args, expected) in cases {
        let mut all = args.to_vec();
        all.extend(server);
        let run = advise(dir.path(), &all);
        assert_eq!(run.code, Some(2), "{args:?}: {run:#?}");
        assert!(
            run.stderr
                .starts_with(&format!("tidewater-lab advise: {expected}")),
            "{args:?}: {run:#?}"
        );
        assert!(run.stdout.is_empty(), "{run:#?}");
    }
    // Without --server-cores and with no loopback server, the cores are asked for.
    let run = advise(
        dir.path(),
        &[
            "--checkouts-per-second",
            "50",
            "--use-time",
            "4ms",
            "--max-connections",
            "100",
        ],
    );
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.stderr.contains("give --server-cores (1 to 4096)"),
        "{run:#?}"
    );
}
