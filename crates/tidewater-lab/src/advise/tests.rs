//! The advice end to end: the steps' numbers, the caps, the warnings and
//! the errors naming their flag or field.

use super::*;

fn inputs(rate: f64, use_time: f64, cores: u32, max_connections: u32, replicas: u32) -> Inputs {
    Inputs::new(
        Given::new(rate, "--checkouts-per-second"),
        Given::new(use_time, "--use-time"),
    )
    .with_server(
        Given::new(cores, "--server-cores"),
        Given::new(max_connections, "--max-connections"),
    )
    .with_replicas(Given::new(replicas, "--replicas"))
}

fn kinds(advice: &Advice) -> Vec<WarningKind> {
    advice.warnings.iter().map(|w| w.kind).collect()
}

#[test]
fn littles_law_splits_the_load_over_the_replicas() {
    let advice = advise(&inputs(3000.0, 0.005, 16, 500, 3)).unwrap();
    assert!((advice.load.busy_mean - 15.0).abs() < 1e-9);
    assert!((advice.load.busy_mean_per_replica - 5.0).abs() < 1e-9);
    assert!((advice.load.checkouts_per_second_per_replica - 1000.0).abs() < 1e-9);
    // 5 Erlangs at most 80% busy: 7 (6.25 rounded up), and the wait target
    // is long met: C(7, 5) = 15625/48203 = 0.324150 (worked by hand in
    // `queueing`), p99 = 5 ms · ln(32.415) / 2 = 2.5 ms · 3.47862 = 8.697 ms.
    assert_eq!(advice.max_size, 7);
    assert_eq!(advice.limited_by, Limit::Load);
    assert_eq!(advice.needed.unwrap().bound_by, Bound::Utilization);
    assert_eq!(advice.min_idle, 5);
    let p_wait = advice.at_max_size.p_wait;
    assert!(
        (p_wait - 0.324_150).abs() < 1e-6,
        "P(wait) {p_wait}, by hand 0.324150"
    );
    let p99 = advice.at_max_size.wait_p99_seconds.unwrap();
    assert!(
        (p99 - 0.008_697).abs() < 1e-6,
        "p99 {p99} s, by hand 8.697 ms"
    );
    assert!(advice.warnings.is_empty(), "{:#?}", advice.warnings);
    assert!(
        advice.why[0].contains("3000/s x 5ms = 15 connections"),
        "{}",
        advice.why[0]
    );
    assert!(
        advice.why[0].contains("1000/s and 5 in use on each"),
        "{}",
        advice.why[0]
    );
}

#[test]
fn a_long_tail_in_use_time_needs_a_bigger_pool() {
    let plain = inputs(100.0, 0.050, 16, 500, 1);
    let mut tailed = plain.clone();
    tailed.use_time_p99_seconds = Some(Given::new(1.0, "--use-time-p99"));
    let plain = advise(&plain).unwrap();
    let tailed = advise(&tailed).unwrap();
    assert!(tailed.load.variability > 5.0, "{}", tailed.load.variability);
    assert!(
        tailed.max_size > plain.max_size,
        "{} <= {}",
        tailed.max_size,
        plain.max_size
    );
    assert_eq!(tailed.needed.unwrap().bound_by, Bound::Wait);
    assert!(tailed.why[1].contains("Allen–Cunneen"), "{}", tailed.why[1]);
    assert!(tailed.at_max_size.wait_p99_seconds.unwrap() <= 0.1);
}

#[test]
fn the_server_rule_of_thumb_caps_and_warns_of_saturation() {
    // 2 cores: about 2 x 2 + 1 = 5 queries at once; the load keeps 8 busy.
    let advice = advise(&inputs(2000.0, 0.004, 2, 100, 1)).unwrap();
    assert_eq!(advice.throughput.active_connections, 5);
    assert_eq!(advice.max_size, 5);
    assert_eq!(advice.limited_by, Limit::ServerThroughput);
    assert_eq!(advice.at_max_size.wait_p99_seconds, None);
    assert_eq!(
        kinds(&advice),
        [WarningKind::Saturation, WarningKind::WaitTarget]
    );
    let saturation = &advice.warnings[0].message;
    assert!(
        saturation.contains("8 connections in use on average, more than the ~5 queries"),
        "{saturation}"
    );
    // 4 cores: 9 at once; the load needs 10 at 80%: capped at 9 but the
    // server keeps up and the wait target is met, so no warning.
    let advice = advise(&inputs(2000.0, 0.004, 4, 100, 1)).unwrap();
    assert_eq!(advice.max_size, 9);
    assert_eq!(advice.limited_by, Limit::ServerThroughput);
    assert!(advice.at_max_size.wait_p99_seconds.unwrap() <= 0.1);
    assert!(advice.warnings.is_empty(), "{:#?}", advice.warnings);
    // The share per replica is rounded up.
    let advice = advise(&inputs(10.0, 0.004, 4, 100, 4)).unwrap();
    assert_eq!(advice.throughput.per_replica, 3);
}

#[test]
fn the_connection_budget_caps_and_warns_of_exhaustion() {
    // 25 000/s x 4 ms = 100 in use, 10 on each of 10 replicas: 13 each at
    // 80%; 64 cores carry 129. max_connections 100 - 10 reserved leaves 9
    // per replica.
    let advice = advise(&inputs(25_000.0, 0.004, 64, 100, 10)).unwrap();
    assert_eq!(advice.needed.unwrap().service.connections, 13);
    assert_eq!(advice.budget.available, 90);
    assert_eq!(advice.budget.per_replica, 9);
    assert_eq!(advice.max_size, 9);
    assert_eq!(advice.limited_by, Limit::ConnectionBudget);
    assert_eq!(kinds(&advice), [WarningKind::Exhaustion]);
    let message = &advice.warnings[0].message;
    for expected in [
        "13 connections per replica, 130 in all",
        "max_connections 100 - 10 reserved leaves 90",
        "9 per replica",
        "PgBouncer",
        "Fewer replicas",
        // One pool of 125 (100 Erlangs at 80%) carries the lot.
        "one pool would carry the whole load with 125",
    ] {
        assert!(message.contains(expected), "{expected:?} not in {message}");
    }
    // The replicas x max_size + reserved <= max_connections rule holds.
    assert!(advice.max_size * 10 + advice.inputs.reserved.value <= 100);
}

#[test]
fn warns_when_the_current_size_would_exhaust_the_server() {
    let mut four = inputs(100.0, 0.004, 8, 100, 4);
    four.current_max_size = Some(Given::new(50, "--max-size"));
    let advice = advise(&four).unwrap();
    assert_eq!(kinds(&advice), [WarningKind::CurrentExhaustion]);
    let message = &advice.warnings[0].message;
    assert!(
        message.contains("max_size 50 (--max-size) x 4 replica(s) = 200 connections"),
        "{message}"
    );
    assert!(message.contains("Lower max_size to 22"), "{message}");
    let mut one = four.clone();
    one.replicas = Given::new(1, "--replicas");
    assert!(advise(&one).unwrap().warnings.is_empty());
}

#[test]
fn no_room_at_all_is_said() {
    let advice = advise(&inputs(100.0, 0.004, 8, 20, 30)).unwrap();
    assert_eq!(advice.budget.per_replica, 0);
    assert_eq!(advice.max_size, 1);
    assert_eq!(kinds(&advice), [WarningKind::NoRoom]);
    assert!(
        advice.warnings[0]
            .message
            .contains("17 connections for 30 replicas")
    );
}

#[test]
fn a_light_load_gets_the_floor() {
    let advice = advise(&inputs(1.0, 0.002, 4, 100, 1)).unwrap();
    assert_eq!(advice.needed.unwrap().service.connections, 1);
    assert_eq!(advice.max_size, MIN_RECOMMENDED);
    assert_eq!(advice.limited_by, Limit::Floor);
    assert_eq!(advice.min_idle, 1);
    let idle = advise(&inputs(0.0, 0.002, 4, 100, 1)).unwrap();
    assert_eq!((idle.max_size, idle.min_idle), (2, 0));
}

#[test]
fn others_above_the_reserve_are_flagged() {
    let mut given = inputs(100.0, 0.004, 8, 100, 1);
    given.held_by_others = Some(Given::new(25, "the server"));
    let advice = advise(&given).unwrap();
    assert_eq!(kinds(&advice), [WarningKind::Reserved]);
    assert!(
        advice.warnings[0]
            .message
            .contains("raise --reserved to at least 25")
    );
}

#[test]
fn the_model_is_checked_against_the_run() {
    let mut given = inputs(1000.0, 0.002, 8, 100, 1);
    given.measured = Some(Measured {
        path: "run.json".into(),
        max_size: Some(50),
        checkouts_per_second: Some(1000.0),
        use_time_mean_seconds: Some(0.002),
        wait_p99_seconds: Some(0.250),
        ..Measured::default()
    });
    let advice = advise(&given).unwrap();
    let check = advice.model_check.unwrap();
    assert_eq!(check.predicted_wait_p99_seconds, Some(0.0));
    assert_eq!(kinds(&advice), [WarningKind::Model]);
    assert!(
        advice
            .why
            .last()
            .unwrap()
            .contains("the run measured at most 250ms")
    );
}

#[test]
fn bad_inputs_name_their_flag_and_range() {
    let cases: Vec<(Inputs, &str)> = vec![
        (
            inputs(-1.0, 0.004, 8, 100, 1),
            "--checkouts-per-second = -1: allowed: 0 to 1000000000 checkouts per second",
        ),
        (
            inputs(f64::NAN, 0.004, 8, 100, 1),
            "--checkouts-per-second = NaN",
        ),
        (
            inputs(10.0, 0.0, 8, 100, 1),
            "--use-time = 0: allowed: 1us to 1h",
        ),
        (
            inputs(10.0, 0.004, 0, 100, 1),
            "--server-cores = 0: allowed: 1 to 4096",
        ),
        (
            inputs(10.0, 0.004, 8, 0, 1),
            "--max-connections = 0: allowed: 1 to 262143",
        ),
        (
            inputs(10.0, 0.004, 8, 100, 0),
            "--replicas = 0: allowed: 1 to 10000",
        ),
    ];
    for (given, expected) in cases {
        let message = advise(&given).unwrap_err().to_string();
        assert!(message.starts_with(expected), "{message}");
    }
    let mut reserved = inputs(10.0, 0.004, 8, 100, 1);
    reserved.reserved = Given::new(100, "--reserved");
    assert_eq!(
        advise(&reserved).unwrap_err().to_string(),
        "--reserved = 100: allowed: 0 to max_connections - 1 (99)"
    );
}

fn request(pairs: &[(&str, &str)]) -> Request {
    let mut request = Request::default();
    for (flag, value) in pairs {
        let value = Some((*value).to_owned());
        match *flag {
            "rate" => request.checkouts_per_second = value,
            "use" => request.use_time = value,
            "p99" => request.use_time_p99 = value,
            "cores" => request.server_cores = value,
            "max" => request.max_connections = value,
            "replicas" => request.replicas = value,
            "reserved" => request.reserved = value,
            "url" => request.database_url = value,
            "target" => request.target_wait_p99 = value,
            "util" => request.max_utilization = value,
            "size" => request.max_size = value,
            "from" => request.from = value.map(PathBuf::from),
            other => panic!("no flag {other}"),
        }
    }
    request
}

#[tokio::test]
async fn flags_are_parsed_and_missing_ones_named() {
    let base = [
        ("rate", "1000"),
        ("use", "4ms"),
        ("cores", "8"),
        ("max", "100"),
    ];
    let inputs = request(&base).resolve().await.unwrap();
    assert_eq!(inputs.checkouts_per_second.value, 1000.0);
    assert!((inputs.use_time_seconds.value - 0.004).abs() < 1e-12);
    assert_eq!(inputs.reserved.value, 10);
    assert!(
        inputs
            .reserved
            .from
            .starts_with("default: 10% of max_connections")
    );

    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("use", "4ms"), ("cores", "8"), ("max", "100")],
            "missing the checkout rate: give --checkouts-per-second",
        ),
        (
            &[("rate", "1000"), ("cores", "8"), ("max", "100")],
            "missing the connection use time: give --use-time",
        ),
        (
            &[("rate", "1000"), ("use", "4ms"), ("max", "100")],
            "missing the server's cores: give --server-cores (1 to 4096)",
        ),
        (
            &[("rate", "1000"), ("use", "4ms"), ("cores", "8")],
            "missing the server's max_connections: give --max-connections",
        ),
        (
            &[
                ("rate", "-3"),
                ("use", "4ms"),
                ("cores", "8"),
                ("max", "100"),
            ],
            "--checkouts-per-second = -3: allowed: 0 to",
        ),
        (
            &[
                ("rate", "lots"),
                ("use", "4ms"),
                ("cores", "8"),
                ("max", "100"),
            ],
            "--checkouts-per-second = lots: allowed: 0 to",
        ),
        (
            &[("rate", "1"), ("use", "4"), ("cores", "8"), ("max", "100")],
            "--use-time = 4: allowed: a duration such as 4ms",
        ),
        (
            &[
                ("rate", "1"),
                ("use", "4ms"),
                ("cores", "-2"),
                ("max", "100"),
            ],
            "--server-cores = -2: allowed: 1 to 4096",
        ),
        (
            &[
                ("rate", "1"),
                ("use", "4ms"),
                ("cores", "2"),
                ("max", "100"),
                ("replicas", "0"),
            ],
            "--replicas = 0: allowed: 1 to 10000",
        ),
        (
            &[
                ("rate", "1"),
                ("use", "4ms"),
                ("cores", "2"),
                ("max", "100"),
                ("util", "1.5"),
            ],
            "--max-utilization = 1.5: allowed: 0.05 to 1",
        ),
        (
            &[
                ("rate", "1"),
                ("use", "4ms"),
                ("cores", "2"),
                ("max", "100"),
                ("target", "0s"),
            ],
            "--target-wait-p99 = 0: allowed: 1ms to 1h",
        ),
        (
            &[
                ("rate", "1"),
                ("use", "4ms"),
                ("cores", "2"),
                ("url", "mysql://root:pw@127.0.0.1/test"),
            ],
            "--database-url = mysql://root:***@127.0.0.1/test: allowed: a PostgreSQL URL",
        ),
    ];
    for (pairs, expected) in cases {
        let message = request(pairs).resolve().await.unwrap_err().to_string();
        assert!(message.starts_with(expected), "{pairs:?}: {message}");
    }
}

#[tokio::test]
async fn a_report_gives_the_load_and_flags_win_over_it() {
    let dir = std::env::temp_dir().join(format!("tidewater-advise-req-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.json");
    std::fs::write(
        &path,
        r#"{"throughput_rps": 800, "duration_seconds": 60,
            "pool": {"max_size": 50, "checkouts_per_second": 1600,
                     "use_time_seconds": {"mean": 0.003, "p99": 0.012},
                     "acquire_wait_seconds": {"p50": 0.0, "p99": 0.004, "max": 0.020}}}"#,
    )
    .unwrap();
    let from = path.to_str().unwrap();
    let inputs = request(&[("from", from), ("cores", "8"), ("max", "200")])
        .resolve()
        .await
        .unwrap();
    assert_eq!(inputs.checkouts_per_second.value, 1600.0);
    assert_eq!(
        inputs.checkouts_per_second.from,
        format!("--from {from}: pool.checkouts_per_second")
    );
    assert_eq!(inputs.use_time_p99_seconds.as_ref().unwrap().value, 0.012);
    assert_eq!(inputs.current_max_size.as_ref().unwrap().value, 50);
    let advice = advise(&inputs).unwrap();
    assert!(advice.model_check.is_some());

    let inputs = request(&[
        ("from", from),
        ("rate", "3200"),
        ("size", "20"),
        ("cores", "8"),
        ("max", "200"),
    ])
    .resolve()
    .await
    .unwrap();
    assert_eq!(inputs.checkouts_per_second.value, 3200.0);
    assert_eq!(inputs.checkouts_per_second.from, "--checkouts-per-second");
    assert_eq!(inputs.current_max_size.unwrap().value, 20);

    std::fs::write(
        &path,
        r#"{"pool": {"checkouts_per_second": -5, "use_time_seconds": {"mean": 0.003}}}"#,
    )
    .unwrap();
    let message = request(&[("from", from), ("cores", "8"), ("max", "200")])
        .resolve()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("pool.checkouts_per_second = -5"),
        "{message}"
    );
    std::fs::write(&path, r#"{"pool": {"checkouts_per_second": 5}}"#).unwrap();
    let message = request(&[("from", from), ("cores", "8"), ("max", "200")])
        .resolve()
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("pool.use_time_seconds.mean"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_report_shows_every_step_and_serializes() {
    let advice = advise(&inputs(2000.0, 0.004, 8, 100, 2)).unwrap();
    let text = advice.to_string();
    for expected in [
        "max_size = 5, min_idle = 4 for each of 2 replica(s)",
        "Little's law: L = λ·W = 2000/s x 4ms = 8 connections",
        "Erlang C",
        "8 x 2 + 1 = 17",
        "(100 - 10) / 2 = 45 per replica",
        "max_size = min(5, 9, 45) = 5",
    ] {
        // The text is wrapped; compare with whitespace folded.
        let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(folded.contains(expected), "{expected:?} not in\n{text}");
    }
    let json: serde_json::Value = serde_json::to_value(&advice).unwrap();
    assert_eq!(json["max_size"], 5);
    assert_eq!(json["min_idle"], 4);
    assert_eq!(json["limited_by"], "load");
    assert_eq!(json["inputs"]["replicas"]["value"], 2);
    assert_eq!(json["inputs"]["replicas"]["from"], "--replicas");
    assert_eq!(json["budget"]["per_replica"], 45);
    assert_eq!(json["needed"]["bound_by"], "wait");
    assert_eq!(json["why"].as_array().unwrap().len(), 6);
}
