//! `tidewater soak` end to end: the real binary spawns the service on
//! SQLite, runs the load's users against it for 20 s while sampling its
//! memory and the pool's counters, fits the memory trend, checks that
//! every slot is back and no money was lost, and reports. Bounded; the
//! file takes about half a minute.

mod common;
use common::binary::{json, tidewater, verdict};

use std::time::Duration;

use serde_json::Value;

/// The CI soak's bound, MiB per million checkouts: looser than the
/// default (32), because 20 s is mostly warm-up (SQLite's page caches and
/// the allocator fill while the database grows); a leak of half a
/// kilobyte a checkout still fails it.
const CI_LEAK_BOUND_MIB: f64 = 512.0;

#[test]
fn a_short_soak_finds_no_leak_gets_every_slot_back_and_loses_no_money() {
    let dir = tempfile::tempdir().unwrap();
    let bound = CI_LEAK_BOUND_MIB.to_string();
    let run = tidewater(
        &[
            "soak",
            "--duration",
            "20s",
            "--users",
            "20",
            "--think",
            "20ms",
            "--sample-every",
            "1s",
            "--warm-up",
            "0.5",
            "--leak-bound",
            &bound,
            "--json",
        ],
        dir.path(),
        Duration::from_secs(80),
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let report = json(&run);
    for name in [
        "memory_trend",
        "slots_returned",
        "leaks_detected",
        "correctness",
        "requests",
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
    assert_eq!(report["backend"], "sqlite");

    // The fit covered the second half of the run, on real samples.
    let trend = &report["trend"];
    assert!(trend["samples"].as_u64().unwrap() >= 5, "{trend:#}");
    assert!(trend["checkouts"].as_u64().unwrap() >= 1000, "{trend:#}");
    let slope = trend["bytes_per_million_checkouts"].as_f64().unwrap();
    assert!(slope <= CI_LEAK_BOUND_MIB * 1048576.0, "{trend:#}");
    let memory_trend = verdict(&report, "memory_trend");
    assert_eq!(memory_trend["measured"].as_f64(), Some(slope));
    assert_eq!(
        memory_trend["bound"].as_f64(),
        Some(CI_LEAK_BOUND_MIB * 1048576.0)
    );
    let from = trend["from_seconds"].as_f64().unwrap();
    let to = trend["to_seconds"].as_f64().unwrap();
    assert!((to - from - 10.0).abs() < 0.5, "half of 20 s: {trend:#}");

    // Samples every second while the users ran, each with memory,
    // checkouts growing, and the pool's numbers; one more after.
    let samples = report["samples"].as_array().unwrap();
    let during: Vec<&Value> = samples.iter().filter(|s| s["load"] == true).collect();
    assert!(during.len() >= 15, "{} samples", during.len());
    for sample in samples {
        assert!(
            sample["rss_bytes"].as_u64().unwrap() > 1 << 20,
            "{sample:#}"
        );
        assert!(sample["in_use"].is_u64(), "{sample:#}");
    }
    let checkouts: Vec<u64> = during
        .iter()
        .map(|s| s["checkouts"].as_u64().unwrap())
        .collect();
    assert!(checkouts.windows(2).all(|w| w[0] <= w[1]), "{checkouts:?}");
    let last = samples.last().unwrap();
    assert_eq!(last["load"], false);
    assert_eq!(last["in_use"], 0);
    assert_eq!(last["leak_suspects"], 0);

    // Every slot was back once the users stopped.
    let end = &report["end_state"];
    assert_eq!(end["read"], true);
    assert_eq!(end["in_use"], 0);
    assert_eq!(end["leak_suspects"], 0);
    assert!(end["settled_after_seconds"].as_f64().unwrap() <= 30.0);
    assert_eq!(report["leaks_detected"], 0);

    // The correctness check ran over real traffic.
    let check = &report["correctness"];
    assert_eq!(check["passed"], true, "{check:#}");
    assert_eq!(check["money_found"], check["money_opened"]);
    assert!(check["transfers_acknowledged"].as_u64().unwrap() > 100);
    assert!(report["load"]["checkouts"].as_u64().unwrap() >= 1000);
}

#[test]
fn a_soak_too_short_for_the_trend_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = tidewater(
        &["soak", "--duration", "10s", "--sample-every", "5s"],
        dir.path(),
        Duration::from_secs(20),
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("the trend needs at least 5"), "{run:?}");
    let run = tidewater(
        &["soak", "--duration", "3s"],
        dir.path(),
        Duration::from_secs(20),
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("allowed 10s to 7days"), "{run:?}");
}
