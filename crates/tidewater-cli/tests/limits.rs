//! The documented range of balances and amounts, 0 to 2^53 - 1 cents
//! (`store::MAX_AMOUNT`), on SQLite, PostgreSQL and MariaDB: a transfer
//! that would credit an account past it is refused with a 422 naming the
//! limit and changes nothing (balances, ledger, transfers, idempotency
//! key); an opening balance past it is refused; and the schema refuses such
//! a row too, on a new database and on one the previous version created.

mod common;

use common::{Kind, Service, TestDb};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tidewater_cli::store::{MAX_AMOUNT, MIGRATIONS};

on_every_backend!(
    credit_past_the_limit,
    schema_refuses_past_the_limit,
    upgrade_adds_the_limit,
    upgrade_refuses_a_balance_past_the_limit,
);

/// Account `id`'s ledger entries.
async fn ledger(service: &Service, id: i64) -> Vec<Value> {
    let answer = service
        .get(&format!("/api/accounts/{id}/ledger?limit=1000"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body["entries"].as_array().unwrap().clone()
}

async fn credit_past_the_limit(kind: Kind) {
    let db = TestDb::create(kind, "credit_limit").await;
    let service = Service::on(&db).await;
    let limit = MAX_AMOUNT.to_string();
    assert_eq!(MAX_AMOUNT, 9_007_199_254_740_991);

    // Opening balances: the limit is accepted, one more cent is not.
    let sender = service.account(MAX_AMOUNT).await;
    let receiver = service.account(MAX_AMOUNT).await;
    let third = service.account(0).await;
    let answer = service
        .post(
            "/api/accounts",
            &json!({ "name": "too rich", "balance": MAX_AMOUNT + 1 }),
            None,
        )
        .await;
    answer.assert_problem(422, "invalid-request");
    assert!(
        answer.body["detail"].as_str().unwrap().contains(&limit),
        "{answer:?}"
    );

    // The transfer of the report: 10 onto a balance at the limit, under an
    // idempotency key; and one cent, without one.
    let key = format!("limit-{}", fastrand::u64(..));
    let answer = service.transfer(sender, receiver, 10, Some(&key)).await;
    answer.assert_problem(422, "balance-limit-exceeded");
    assert_eq!(answer.body["limit"], MAX_AMOUNT, "{answer:?}");
    assert_eq!(answer.body["account"], receiver, "{answer:?}");
    assert_eq!(answer.body["balance"], MAX_AMOUNT, "{answer:?}");
    assert_eq!(answer.body["amount"], 10, "{answer:?}");
    let detail = answer.body["detail"].as_str().unwrap();
    assert!(detail.contains(&limit), "{answer:?}");
    service
        .transfer(sender, receiver, 1, None)
        .await
        .assert_problem(422, "balance-limit-exceeded");

    // Nothing changed: balances, ledgers, transfers.
    assert_eq!(service.balance(sender).await, MAX_AMOUNT);
    assert_eq!(service.balance(receiver).await, MAX_AMOUNT);
    assert!(ledger(&service, sender).await.is_empty());
    assert!(ledger(&service, receiver).await.is_empty());
    assert_eq!(db.count("SELECT COUNT(*) FROM transfers").await, 0);
    assert_eq!(db.count("SELECT COUNT(*) FROM ledger_entries").await, 0);

    // The key was not consumed: once the receiver has room, the same
    // request under it is made (not replayed), up to the limit exactly.
    let room = service.transfer(receiver, third, 10, None).await;
    assert_eq!(room.status, StatusCode::CREATED, "{room:?}");
    let made = service.transfer(sender, receiver, 10, Some(&key)).await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    assert!(
        made.headers.get("idempotent-replayed").is_none(),
        "{made:?}"
    );
    assert_eq!(made.body["idempotency_key"], key.as_str());
    assert_eq!(service.balance(sender).await, MAX_AMOUNT - 10);
    assert_eq!(service.balance(receiver).await, MAX_AMOUNT);
    assert_eq!(
        ledger(&service, receiver).await[0]["balance_after"],
        MAX_AMOUNT
    );

    service.stop().await;
}

/// Asserts that `sql` is refused, naming `constraint`.
async fn refused(db: &TestDb, sql: &str, constraint: &str) {
    let error = db
        .execute(sql)
        .await
        .expect_err(&format!("the schema refuses `{sql}`"));
    assert!(error.contains(constraint), "`{sql}`: {error}");
}

/// Asserts that the schema keeps balances and amounts within the limit.
async fn assert_schema_limits(db: &TestDb, account: i64) {
    let past = MAX_AMOUNT + 1;
    refused(
        db,
        &format!("UPDATE accounts SET balance = balance + 1 WHERE id = {account}"),
        "accounts_balance_max",
    )
    .await;
    refused(
        db,
        &format!("INSERT INTO accounts (name, balance, created_at) VALUES ('x', {past}, 0)"),
        "accounts_balance_max",
    )
    .await;
    refused(
        db,
        &format!(
            "INSERT INTO transfers (from_account, to_account, amount, created_at) \
             VALUES ({account}, {account}, {past}, 0)"
        ),
        "transfers_amount_max",
    )
    .await;
    // At the limit, rows are fine.
    db.execute(&format!(
        "INSERT INTO accounts (name, balance, created_at) VALUES ('x', {MAX_AMOUNT}, 0)"
    ))
    .await
    .unwrap();
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM accounts WHERE balance > {MAX_AMOUNT}"
        ))
        .await,
        0
    );
}

async fn schema_refuses_past_the_limit(kind: Kind) {
    let db = TestDb::create(kind, "schema_limit").await;
    let service = Service::on(&db).await;
    let account = service.account(MAX_AMOUNT).await;
    assert_schema_limits(&db, account).await;
    assert_eq!(service.balance(account).await, MAX_AMOUNT);
    service.stop().await;
}

/// Makes `db` what the previous version (schema version 1) left.
async fn previous_version(db: &TestDb) {
    let first = &MIGRATIONS[0];
    let script = match db.kind {
        Kind::Sqlite => first.sqlite,
        Kind::Postgres => first.postgres,
        Kind::MySql => first.mysql,
    };
    db.execute(script).await.unwrap();
    db.execute(
        "CREATE TABLE tidewater_migrations (version BIGINT NOT NULL PRIMARY KEY, \
         name VARCHAR(200) NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .await
    .unwrap();
    db.execute(&format!(
        "INSERT INTO tidewater_migrations (version, name, applied_at) VALUES (1, '{}', 0)",
        first.name
    ))
    .await
    .unwrap();
}

async fn upgrade_adds_the_limit(kind: Kind) {
    let db = TestDb::create(kind, "upgrade_limit").await;
    previous_version(&db).await;
    // An account at the limit, which version 1 would credit further.
    db.execute(&format!(
        "INSERT INTO accounts (name, balance, created_at) VALUES ('rich', {MAX_AMOUNT}, 0)"
    ))
    .await
    .unwrap();
    let account = db
        .count("SELECT MAX(id) FROM accounts WHERE name = 'rich'")
        .await;

    let service = Service::on(&db).await;
    assert_eq!(
        db.count("SELECT MAX(version) FROM tidewater_migrations")
            .await,
        MIGRATIONS.last().unwrap().version
    );
    assert_eq!(service.balance(account).await, MAX_AMOUNT);
    assert_schema_limits(&db, account).await;
    let sender = service.account(10).await;
    service
        .transfer(sender, account, 10, None)
        .await
        .assert_problem(422, "balance-limit-exceeded");
    assert_eq!(service.balance(account).await, MAX_AMOUNT);
    service.stop().await;
}

async fn upgrade_refuses_a_balance_past_the_limit(kind: Kind) {
    let db = TestDb::create(kind, "upgrade_past").await;
    previous_version(&db).await;
    // What the overflow left behind under version 1.
    db.execute(&format!(
        "INSERT INTO accounts (name, balance, created_at) VALUES ('overflowed', {}, 0)",
        MAX_AMOUNT + 10
    ))
    .await
    .unwrap();

    let Err(error) = tidewater_cli::serve::start(common::config(&db.url)).await else {
        panic!("the migration refuses a balance past the limit");
    };
    let message = error.to_string();
    assert!(message.contains("accounts_balance_max"), "{message}");
    // Nothing recorded: a start after the row is fixed migrates.
    assert_eq!(
        db.count("SELECT MAX(version) FROM tidewater_migrations")
            .await,
        1
    );
    db.execute(&format!(
        "UPDATE accounts SET balance = {MAX_AMOUNT} WHERE name = 'overflowed'"
    ))
    .await
    .unwrap();
    let service = Service::on(&db).await;
    assert_eq!(
        db.count("SELECT MAX(version) FROM tidewater_migrations")
            .await,
        MIGRATIONS.last().unwrap().version
    );
    service.stop().await;
}
