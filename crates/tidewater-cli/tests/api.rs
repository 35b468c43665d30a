//! The service over HTTP, on SQLite, PostgreSQL and MariaDB: the API and
//! its problems, idempotent transfers (also under concurrency), the money
//! invariant under concurrent transfers, the mapping of pool exhaustion
//! and request deadlines to 503, and the monitoring routes.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Answer, Kind, Service, TestDb};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tidewater::metric_names::{ACQUIRED, CONNECTION_COUNT, CONNECTION_MAX, CONNECTION_TIMEOUTS};
use tidewater_axum::PoolsReport;

on_every_backend!(
    api,
    idempotency,
    concurrent_idempotency,
    money_invariant,
    ledger_paging,
    pool_timeout,
    request_deadline,
    monitoring,
);

/// Polls `check` every 10 ms until it holds; panics with `what` after 10 s.
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Connections the service's pool has checked out right now.
fn in_use(service: &Service) -> u32 {
    service.server().store().view().status().in_use
}

/// `GET /metrics`, parsed.
async fn scrape(service: &Service) -> prometheus_parse::Scrape {
    let answer = service.get("/metrics").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    prometheus_parse::Scrape::parse(answer.text.lines().map(|line| Ok(line.to_owned())))
        .expect("the metrics parse")
}

/// The sum of the series of `metric` (with or without a `_total` suffix)
/// for the pool `tidewater`; `None` when there is no such series.
fn metric(scrape: &prometheus_parse::Scrape, metric: &str) -> Option<f64> {
    let total = format!("{metric}{}", tidewater::metric_names::COUNTER_SUFFIX);
    let values: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric || sample.metric == total)
        .filter(|sample| sample.labels.get("pool_name") == Some("tidewater"))
        .map(|sample| match sample.value {
            prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Untyped(value) => value,
            ref other => panic!("{metric} is not a number: {other:?}"),
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Account `id`'s ledger, newest entry first (at most 1000 entries).
async fn ledger(service: &Service, id: i64) -> Vec<Value> {
    let answer = service
        .get(&format!("/api/accounts/{id}/ledger?limit=1000"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["account"], id, "{answer:?}");
    answer.body["entries"].as_array().unwrap().clone()
}

/// A POST whose body is `body`, sent as is with `content_type`.
async fn post_raw(service: &Service, path: &str, content_type: &str, body: &str) -> Answer {
    Answer::of(
        service
            .client
            .post(format!("{}{path}", service.base))
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn replayed(answer: &Answer) -> bool {
    answer
        .headers
        .get("idempotent-replayed")
        .is_some_and(|value| value == "true")
}

async fn api(kind: Kind) {
    let db = TestDb::create(kind, "api").await;
    let service = Service::on(&db).await;

    // Accounts: 201 with Location, then readable.
    let created = service
        .post(
            "/api/accounts",
            &json!({ "name": "alice", "balance": 1000 }),
            None,
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let alice = created.body["id"].as_i64().unwrap();
    assert_eq!(
        created.headers["location"],
        format!("/api/accounts/{alice}").as_str()
    );
    assert_eq!(created.body["name"], "alice");
    assert_eq!(created.body["balance"], 1000);
    assert!(created.body["created_at"].is_string(), "{created:?}");
    let read = service.get(&format!("/api/accounts/{alice}")).await;
    assert_eq!(read.status, StatusCode::OK, "{read:?}");
    assert_eq!(read.body, created.body);
    let bob = service.account(0).await;
    assert_ne!(alice, bob);

    // A transfer: 201 with Location, readable, both balances moved.
    let made = service.transfer(alice, bob, 300, None).await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    assert!(!replayed(&made), "{made:?}");
    let transfer = made.body["id"].as_i64().unwrap();
    assert_eq!(
        made.headers["location"],
        format!("/api/transfers/{transfer}").as_str()
    );
    assert_eq!(
        (&made.body["from"], &made.body["to"], &made.body["amount"]),
        (&json!(alice), &json!(bob), &json!(300))
    );
    assert!(made.body["idempotency_key"].is_null(), "{made:?}");
    let read = service.get(&format!("/api/transfers/{transfer}")).await;
    assert_eq!(read.status, StatusCode::OK, "{read:?}");
    assert_eq!(read.body, made.body);
    assert_eq!(service.balance(alice).await, 700);
    assert_eq!(service.balance(bob).await, 300);

    // The ledger: one entry per account and transfer, newest first.
    let entries = ledger(&service, alice).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["transfer_id"], transfer);
    assert_eq!(entries[0]["amount"], -300);
    assert_eq!(entries[0]["balance_after"], 700);
    let entries = ledger(&service, bob).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["transfer_id"], transfer);
    assert_eq!(entries[0]["amount"], 300);
    assert_eq!(entries[0]["balance_after"], 300);
    let back = service.transfer(bob, alice, 50, None).await;
    assert_eq!(back.status, StatusCode::CREATED, "{back:?}");
    let entries = ledger(&service, alice).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0]["transfer_id"], back.body["id"]);
    assert_eq!(entries[0]["amount"], 50);
    assert_eq!(entries[0]["balance_after"], 750);
    assert_eq!(entries[1]["transfer_id"], transfer);
    let newest = service
        .get(&format!("/api/accounts/{alice}/ledger?limit=1"))
        .await;
    assert_eq!(newest.status, StatusCode::OK, "{newest:?}");
    assert_eq!(newest.body["entries"].as_array().unwrap().len(), 1);
    assert_eq!(newest.body["entries"][0], entries[0]);
    service
        .get(&format!("/api/accounts/{alice}/ledger?limit=0"))
        .await
        .assert_problem(422, "invalid-request");
    service
        .get(&format!("/api/accounts/{alice}/ledger?limit=many"))
        .await
        .assert_problem(400, "bad-request");

    // 404s.
    let missing = i64::from(i32::MAX);
    let answer = service.get(&format!("/api/accounts/{missing}")).await;
    answer.assert_problem(404, "account-not-found");
    assert_eq!(answer.body["account"], missing);
    let answer = service.get(&format!("/api/transfers/{missing}")).await;
    answer.assert_problem(404, "transfer-not-found");
    assert_eq!(answer.body["transfer"], missing);
    service
        .get(&format!("/api/accounts/{missing}/ledger"))
        .await
        .assert_problem(404, "account-not-found");
    let answer = service.transfer(alice, missing, 10, None).await;
    answer.assert_problem(404, "account-not-found");
    assert_eq!(answer.body["account"], missing);
    let answer = service.transfer(missing, alice, 10, None).await;
    answer.assert_problem(404, "account-not-found");
    assert_eq!(answer.body["account"], missing);
    service
        .get("/no/such/path")
        .await
        .assert_problem(404, "not-found");

    // 422s.
    let answer = service.transfer(alice, bob, 751, None).await;
    answer.assert_problem(422, "insufficient-funds");
    assert_eq!(answer.body["account"], alice);
    assert_eq!(answer.body["balance"], 750);
    assert_eq!(answer.body["amount"], 751);
    for amount in [-5, 0] {
        service
            .transfer(alice, bob, amount, None)
            .await
            .assert_problem(422, "invalid-request");
    }
    service
        .transfer(alice, alice, 10, None)
        .await
        .assert_problem(422, "invalid-request");
    service
        .post(
            "/api/transfers",
            &json!({ "from": alice, "to": bob, "amount": "ten" }),
            None,
        )
        .await
        .assert_problem(422, "invalid-request");
    service
        .post(
            "/api/accounts",
            &json!({ "name": "debtor", "balance": -1 }),
            None,
        )
        .await
        .assert_problem(422, "invalid-request");

    // 400s.
    post_raw(
        &service,
        "/api/transfers",
        "application/json",
        r#"{"from": 1, "to": 2,"#,
    )
    .await
    .assert_problem(400, "bad-request");
    post_raw(
        &service,
        "/api/accounts",
        "application/json",
        "not json at all",
    )
    .await
    .assert_problem(400, "bad-request");
    post_raw(
        &service,
        "/api/transfers",
        "text/plain",
        &json!({ "from": alice, "to": bob, "amount": 1 }).to_string(),
    )
    .await
    .assert_problem(400, "bad-request");
    for path in [
        "/api/accounts/abc",
        "/api/accounts/1.5",
        "/api/transfers/abc",
        "/api/accounts/abc/ledger",
    ] {
        service.get(path).await.assert_problem(400, "bad-request");
    }

    // None of the refused requests moved money.
    assert_eq!(service.balance(alice).await, 750);
    assert_eq!(service.balance(bob).await, 250);
    assert_eq!(ledger(&service, alice).await.len(), 2);

    // An idempotency key used again with another body.
    let key = format!("reuse-{}", fastrand::u64(..));
    let first = service.transfer(alice, bob, 10, Some(&key)).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(first.body["idempotency_key"], key.as_str());
    let answer = service.transfer(alice, bob, 11, Some(&key)).await;
    answer.assert_problem(422, "idempotency-key-reused");
    assert_eq!(answer.body["transfer"], first.body["id"]);
    service
        .transfer(bob, alice, 10, Some(&key))
        .await
        .assert_problem(422, "idempotency-key-reused");
    assert_eq!(service.balance(alice).await, 740);
    assert_eq!(service.balance(bob).await, 260);

    service.stop().await;
}

async fn idempotency(kind: Kind) {
    let db = TestDb::create(kind, "idem").await;
    let service = Service::on(&db).await;
    let from = service.account(1000).await;
    let to = service.account(0).await;
    let key = format!("retry-{}", fastrand::u64(..));

    let first = service.transfer(from, to, 100, Some(&key)).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert!(!replayed(&first), "{first:?}");
    let second = service.transfer(from, to, 100, Some(&key)).await;
    assert_eq!(second.status, StatusCode::CREATED, "{second:?}");
    assert!(replayed(&second), "{second:?}");
    assert_eq!(second.body, first.body);
    assert_eq!(second.headers["location"], first.headers["location"]);

    assert_eq!(service.balance(from).await, 900);
    assert_eq!(service.balance(to).await, 100);
    let entries = ledger(&service, from).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["transfer_id"], first.body["id"]);

    // Another key is another transfer.
    let other = service
        .transfer(from, to, 100, Some(&format!("{key}-2")))
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{other:?}");
    assert!(!replayed(&other), "{other:?}");
    assert_ne!(other.body["id"], first.body["id"]);
    assert_eq!(service.balance(from).await, 800);

    service.stop().await;
}

async fn concurrent_idempotency(kind: Kind) {
    const TASKS: usize = 8;
    let db = TestDb::create(kind, "idem_race").await;
    let service = Arc::new(Service::on(&db).await);
    let from = service.account(1000).await;
    let to = service.account(0).await;
    let key = format!("race-{}", fastrand::u64(..));

    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let service = service.clone();
            let start = start.clone();
            let key = key.clone();
            tokio::spawn(async move {
                start.wait().await;
                service.transfer(from, to, 250, Some(&key)).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }

    for answer in &answers {
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        assert_eq!(answer.body, answers[0].body);
    }
    let made: Vec<&Answer> = answers.iter().filter(|answer| !replayed(answer)).collect();
    assert_eq!(made.len(), 1, "one answer made the transfer: {answers:?}");
    let id = &answers[0].body["id"];
    let read = service.get(&format!("/api/transfers/{id}")).await;
    assert_eq!(read.status, StatusCode::OK, "{read:?}");
    assert_eq!(read.body["idempotency_key"], key.as_str());

    assert_eq!(service.balance(from).await, 750);
    assert_eq!(service.balance(to).await, 250);
    for account in [from, to] {
        let entries = ledger(&service, account).await;
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(&entries[0]["transfer_id"], id);
    }

    Arc::into_inner(service).unwrap().stop().await;
}

/// The ids of a ledger page's entries.
fn entry_ids(answer: &Answer) -> Vec<i64> {
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["id"].as_i64().unwrap())
        .collect()
}

async fn ledger_paging(kind: Kind) {
    let db = TestDb::create(kind, "paging").await;
    let service = Service::on(&db).await;
    let alice = service.account(1000).await;
    let bob = service.account(1000).await;
    let mut transfers = Vec::new();
    for amount in 1..=5 {
        let made = service.transfer(alice, bob, amount, None).await;
        assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
        transfers.push(made.body["id"].as_i64().unwrap());
    }
    let all = entry_ids(
        &service
            .get(&format!("/api/accounts/{alice}/ledger?limit=1000"))
            .await,
    );
    assert_eq!(all.len(), 5, "{all:?}");

    // Pages of two, each continuing below the last id of the one before:
    // together the whole ledger, newest first, nothing twice.
    let mut paged = Vec::new();
    let mut before: Option<i64> = None;
    let mut pages = Vec::new();
    loop {
        let path = match before {
            Some(before) => format!("/api/accounts/{alice}/ledger?limit=2&before={before}"),
            None => format!("/api/accounts/{alice}/ledger?limit=2"),
        };
        let page = entry_ids(&service.get(&path).await);
        pages.push(page.len());
        assert!(pages.len() <= 5, "paging does not end: {pages:?}");
        if page.is_empty() {
            break;
        }
        assert!(
            page.iter()
                .all(|id| before.is_none_or(|before| *id < before)),
            "{page:?}"
        );
        before = page.last().copied();
        paged.extend(page);
    }
    assert_eq!(pages, [2, 2, 1, 0]);
    assert_eq!(paged, all);
    assert!(paged.windows(2).all(|pair| pair[0] > pair[1]), "{paged:?}");
    // The oldest page holds the first transfer.
    let oldest = service
        .get(&format!("/api/accounts/{alice}/ledger?before={}", all[3]))
        .await;
    assert_eq!(entry_ids(&oldest), [all[4]]);
    assert_eq!(oldest.body["entries"][0]["transfer_id"], transfers[0]);
    // A bound above every id is the first page; bob's ledger is his own.
    let first = service
        .get(&format!(
            "/api/accounts/{alice}/ledger?limit=2&before={}",
            i64::MAX
        ))
        .await;
    assert_eq!(entry_ids(&first), all[..2]);
    let bobs = entry_ids(
        &service
            .get(&format!("/api/accounts/{bob}/ledger?limit=1000"))
            .await,
    );
    assert_eq!(bobs.len(), 5);
    assert!(bobs.iter().all(|id| !all.contains(id)), "{bobs:?} {all:?}");

    for bad in ["0", "-3"] {
        service
            .get(&format!("/api/accounts/{alice}/ledger?before={bad}"))
            .await
            .assert_problem(422, "invalid-request");
    }
    service
        .get(&format!("/api/accounts/{alice}/ledger?before=newest"))
        .await
        .assert_problem(400, "bad-request");

    service.stop().await;
}

/// One transfer the load asked for and what became of it.
struct Attempt {
    from: i64,
    to: i64,
    amount: i64,
    /// Larger than all the money there is.
    hopeless: bool,
    answer: Answer,
}

async fn money_invariant(kind: Kind) {
    const ACCOUNTS: usize = 6;
    const INITIAL: i64 = 1000;
    const TASKS: u64 = 32;
    const PER_TASK: usize = 10;
    let db = TestDb::create(kind, "money").await;
    let service = Arc::new(Service::on(&db).await);
    let mut accounts = Vec::new();
    for _ in 0..ACCOUNTS {
        accounts.push(service.account(INITIAL).await);
    }
    let accounts = Arc::new(accounts);
    let seed = fastrand::u64(..);
    eprintln!("money_invariant seed: {seed}");

    let start = Arc::new(tokio::sync::Barrier::new(TASKS as usize));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let service = service.clone();
            let accounts = accounts.clone();
            let start = start.clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(task));
                start.wait().await;
                let mut attempts = Vec::new();
                for _ in 0..PER_TASK {
                    let from = accounts[rng.usize(..ACCOUNTS)];
                    let to = loop {
                        let to = accounts[rng.usize(..ACCOUNTS)];
                        if to != from {
                            break to;
                        }
                    };
                    let hopeless = rng.u8(..8) == 0;
                    let amount = if hopeless {
                        INITIAL * ACCOUNTS as i64 + 1
                    } else {
                        rng.i64(1..=400)
                    };
                    let answer = service.transfer(from, to, amount, None).await;
                    attempts.push(Attempt {
                        from,
                        to,
                        amount,
                        hopeless,
                        answer,
                    });
                }
                attempts
            })
        })
        .collect();
    let mut attempts = Vec::new();
    for task in tasks {
        attempts.extend(task.await.unwrap());
    }

    // Every request was either made or refused for want of money.
    let mut made = HashMap::new();
    for attempt in &attempts {
        let answer = &attempt.answer;
        if answer.status == StatusCode::CREATED && !attempt.hopeless {
            let id = answer.body["id"].as_i64().unwrap();
            assert_eq!(answer.body["amount"], attempt.amount, "{answer:?}");
            assert!(made.insert(id, attempt).is_none(), "id {id} given twice");
        } else {
            answer.assert_problem(422, "insufficient-funds");
            assert!(answer.body["balance"].as_i64().unwrap() < attempt.amount);
        }
    }
    assert!(attempts.iter().any(|attempt| attempt.hopeless));
    assert!(made.len() > attempts.len() / 4, "only {} made", made.len());

    // Each transfer made is there, as made.
    for (id, attempt) in &made {
        let read = service.get(&format!("/api/transfers/{id}")).await;
        assert_eq!(read.status, StatusCode::OK, "{read:?}");
        assert_eq!(read.body["from"], attempt.from);
        assert_eq!(read.body["to"], attempt.to);
        assert_eq!(read.body["amount"], attempt.amount);
    }

    // No money made or lost; each balance is its ledger's sum, and each
    // entry's balance_after the running sum; each transfer wrote a debit
    // and a credit.
    let mut total = 0;
    let mut effects: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    for &account in accounts.iter() {
        let balance = service.balance(account).await;
        assert!(balance >= 0, "account {account} holds {balance}");
        total += balance;
        let mut entries = ledger(&service, account).await;
        entries.reverse();
        let mut running = INITIAL;
        for entry in &entries {
            running += entry["amount"].as_i64().unwrap();
            assert_eq!(
                entry["balance_after"], running,
                "account {account}: {entry}"
            );
            assert!(running >= 0);
            effects
                .entry(entry["transfer_id"].as_i64().unwrap())
                .or_default()
                .push((account, entry["amount"].as_i64().unwrap()));
        }
        assert_eq!(balance, running, "account {account}: balance vs ledger");
    }
    assert_eq!(total, INITIAL * ACCOUNTS as i64);
    assert_eq!(
        effects.keys().copied().collect::<HashSet<_>>(),
        made.keys().copied().collect::<HashSet<_>>()
    );
    for (id, attempt) in &made {
        let mut effect = effects[id].clone();
        effect.sort_unstable();
        let mut expected = vec![
            (attempt.from, -attempt.amount),
            (attempt.to, attempt.amount),
        ];
        expected.sort_unstable();
        assert_eq!(effect, expected, "transfer {id}");
    }

    Arc::into_inner(service).unwrap().stop().await;
}

async fn pool_timeout(kind: Kind) {
    let db = TestDb::create(kind, "pool_timeout").await;
    let mut config = common::config(&db.url);
    config.pool.max_size = 1;
    config.pool.acquire_timeout = Duration::from_millis(300);
    let service = Arc::new(Service::start(config).await);
    let from = service.account(1000).await;
    let to = service.account(0).await;

    // A transfer that waits for the lock on `from` (SQLite: for the write
    // lock, within busy_timeout) holding the only connection.
    // Nothing else holds it when the transfer takes it.
    wait_until("the pool is idle", || in_use(&service) == 0).await;
    let lock = db.lock_account(from).await;
    let blocked = tokio::spawn({
        let service = service.clone();
        async move { service.transfer(from, to, 100, None).await }
    });
    wait_until("the transfer holds the connection", || {
        in_use(&service) == 1
    })
    .await;

    let asked = Instant::now();
    let answer = service.get(&format!("/api/accounts/{to}")).await;
    let waited = asked.elapsed();
    answer.assert_problem(503, "pool-timeout");
    assert_eq!(answer.retry_after(), Some(1), "{answer:?}");
    assert_eq!(answer.body["retryable"], true, "{answer:?}");
    assert_eq!(answer.body["pool"], "tidewater", "{answer:?}");
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(!blocked.is_finished(), "the transfer no longer waits");
    assert_eq!(in_use(&service), 1);
    let scraped = scrape(&service).await;
    assert!(metric(&scraped, CONNECTION_TIMEOUTS).unwrap() >= 1.0);

    // Once the lock goes, the transfer completes and the pool serves again.
    lock.release().await;
    let made = tokio::time::timeout(Duration::from_secs(20), blocked)
        .await
        .expect("the transfer completes once the lock is released")
        .unwrap();
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    assert_eq!(service.balance(from).await, 900);
    assert_eq!(service.balance(to).await, 100);

    Arc::into_inner(service).unwrap().stop().await;
}

async fn request_deadline(kind: Kind) {
    let db = TestDb::create(kind, "deadline").await;
    let mut config = common::config(&db.url);
    config.request_timeout = Duration::from_secs(1);
    let service = Service::start(config).await;
    let from = service.account(1000).await;
    let to = service.account(0).await;

    let lock = db.lock_account(from).await;
    let asked = Instant::now();
    let answer = service.transfer(from, to, 100, None).await;
    let waited = asked.elapsed();
    answer.assert_problem(503, "request-deadline-exceeded");
    assert_eq!(answer.retry_after(), Some(1), "{answer:?}");
    assert_eq!(answer.body["retryable"], true, "{answer:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    lock.release().await;

    // The service serves on; the abandoned transfer happened wholly or not
    // at all.
    let made = service.transfer(from, to, 10, None).await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let (paid, got) = (service.balance(from).await, service.balance(to).await);
    assert_eq!(paid + got, 1000);
    if kind == Kind::Sqlite {
        // A call on an SQLite connection runs to its end even when its
        // request went away: the transfer is made once the lock goes.
        assert!([990, 890].contains(&paid), "{paid}");
    } else {
        // The transaction never got to its commit.
        assert_eq!(paid, 990);
    }
    let entries = ledger(&service, from).await;
    let spent: i64 = entries.iter().map(|e| e["amount"].as_i64().unwrap()).sum();
    assert_eq!(1000 + spent, paid);

    service.stop().await;
}

async fn monitoring(kind: Kind) {
    const MAX_SIZE: u32 = 7;
    let db = TestDb::create(kind, "monitoring").await;
    let mut config = common::config(&db.url);
    config.pool.max_size = MAX_SIZE;
    let service = Service::start(config).await;

    let live = service.get("/health/live").await;
    assert_eq!(live.status, StatusCode::OK, "{live:?}");
    assert_eq!(live.body["live"], true);
    let ready = service.get("/health/ready").await;
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");
    assert_eq!(ready.body["ready"], true, "{ready:?}");
    assert_eq!(ready.body["pools"][0]["pool"], "tidewater", "{ready:?}");

    // Each request below checks out at least one connection.
    let account = service.account(5).await;
    let mut requests = 1;
    for _ in 0..20 {
        assert_eq!(service.balance(account).await, 5);
        requests += 1;
    }

    let scraped = scrape(&service).await;
    assert_eq!(metric(&scraped, CONNECTION_MAX), Some(f64::from(MAX_SIZE)));
    let acquired = metric(&scraped, ACQUIRED).expect("a checkout counter");
    assert!(acquired >= f64::from(requests), "{acquired} < {requests}");
    let open = metric(&scraped, CONNECTION_COUNT).expect("a connection gauge");
    assert!((1.0..=f64::from(MAX_SIZE)).contains(&open), "{open}");
    // The counter is live: more requests, more checkouts.
    for _ in 0..5 {
        service.balance(account).await;
    }
    let later = metric(&scrape(&service).await, ACQUIRED).unwrap();
    assert!(later >= acquired + 5.0, "{later} < {acquired} + 5");

    let pools = service.get("/api/pools").await;
    assert_eq!(pools.status, StatusCode::OK, "{pools:?}");
    let listed: PoolsReport = serde_json::from_value(pools.body.clone())
        .unwrap_or_else(|e| panic!("not a tidewater_axum::PoolsReport ({e}): {pools:?}"));
    assert_eq!(listed.pools.len(), 1, "{pools:?}");
    assert_eq!(listed.pools[0].name, "tidewater");
    assert_eq!(listed.pools[0].status.max_size, MAX_SIZE);
    assert!(listed.pools[0].totals.acquired as f64 >= later);

    service.stop().await;
}
