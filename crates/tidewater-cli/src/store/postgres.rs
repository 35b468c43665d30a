//! The store's SQL for PostgreSQL. A transfer locks both accounts
//! (`SELECT ... FOR UPDATE`, in id order) under READ COMMITTED, and claims
//! its idempotency key with `INSERT ... ON CONFLICT DO NOTHING`.

use tidewater::Pool;
use tidewater_postgres::PgManager;
use tidewater_postgres::tokio_postgres::Row;

use super::migrations::{self, TABLE};
use super::{
    Account, LedgerEntry, NewTransfer, Step, Transfer, check_transfer, now_ms, retry_policy,
};
use crate::error::ApiError;

/// The key of the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x7469_6465_7761_7465; // "tidewate"

const TRANSFER_COLUMNS: &str = "id, from_account, to_account, amount, idempotency_key, created_at";

fn transfer_row(row: &Row) -> Transfer {
    Transfer {
        id: row.get(0),
        from: row.get(1),
        to: row.get(2),
        amount: row.get(3),
        idempotency_key: row.get(4),
        created_at: row.get(5),
    }
}

fn account_row(row: &Row) -> Account {
    Account {
        id: row.get(0),
        name: row.get(1),
        balance: row.get(2),
        created_at: row.get(3),
    }
}

pub(super) async fn migrate(pool: &Pool<PgManager>) -> Result<Vec<i64>, ApiError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
    ))
    .await?;
    let applied: Vec<i64> = tx
        .query(&format!("SELECT version FROM {TABLE}"), &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let pending = migrations::pending(&applied).map_err(ApiError::Invalid)?;
    let mut done = Vec::new();
    for migration in pending {
        tx.batch_execute(migration.postgres).await?;
        tx.execute(
            &format!("INSERT INTO {TABLE} (version, name, applied_at) VALUES ($1, $2, $3)"),
            &[&migration.version, &migration.name, &now_ms()],
        )
        .await?;
        done.push(migration.version);
    }
    tx.commit().await?;
    Ok(done)
}

pub(super) async fn create_account(
    pool: &Pool<PgManager>,
    name: String,
    balance: i64,
    created_at: i64,
) -> Result<Account, ApiError> {
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "INSERT INTO accounts (name, balance, created_at) VALUES ($1, $2, $3) \
             RETURNING id, name, balance, created_at",
            &[&name, &balance, &created_at],
        )
        .await?;
    Ok(account_row(&row))
}

pub(super) async fn account(pool: &Pool<PgManager>, id: i64) -> Result<Option<Account>, ApiError> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            "SELECT id, name, balance, created_at FROM accounts WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(account_row))
}

pub(super) async fn ledger(
    pool: &Pool<PgManager>,
    id: i64,
    limit: i64,
    before: i64,
) -> Result<Vec<LedgerEntry>, ApiError> {
    let conn = pool.get().await?;
    let rows = conn
        .query(
            "SELECT id, transfer_id, amount, balance_after, created_at FROM ledger_entries \
             WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            &[&id, &before, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| LedgerEntry {
            id: row.get(0),
            transfer_id: row.get(1),
            amount: row.get(2),
            balance_after: row.get(3),
            created_at: row.get(4),
        })
        .collect())
}

pub(super) async fn transfer(
    pool: &Pool<PgManager>,
    id: i64,
) -> Result<Option<Transfer>, ApiError> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            &format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(transfer_row))
}

/// Claims the idempotency key, moves both balances and writes both ledger
/// entries in one statement: the row locks taken by the `FOR UPDATE` are
/// then held across two round trips (this and `COMMIT`), not six.
/// Nothing is written unless the key was claimed (`FROM claimed`).
const POST_TRANSFER: &str = "WITH claimed AS ( \
       INSERT INTO transfers (from_account, to_account, amount, idempotency_key, created_at) \
       VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id), \
     posted AS ( \
       UPDATE accounts SET balance = CASE accounts.id WHEN $1 THEN $6 ELSE $7 END \
       FROM claimed WHERE accounts.id IN ($1, $2)), \
     ledger AS ( \
       INSERT INTO ledger_entries (transfer_id, account_id, amount, balance_after, created_at) \
       SELECT claimed.id, p.account, p.change, p.after, $5 FROM claimed, \
         (VALUES (1, $1, -$3, $6), (2, $2, $3, $7)) AS p(n, account, change, after) ORDER BY p.n) \
     SELECT id FROM claimed";

/// A transfer in four round trips: `BEGIN`; the idempotency lookup and the
/// row locks, pipelined; [`POST_TRANSFER`]; `COMMIT`. Each statement is sent
/// with its parameter types (`query_typed`: parse, bind and execute in one
/// round trip, nothing prepared). Measured in docs/benchmarks.md ("Where
/// the time goes inside a transfer").
pub(super) async fn make_transfer(
    pool: &Pool<PgManager>,
    new: NewTransfer,
) -> Result<Step, ApiError> {
    use tidewater_postgres::tokio_postgres::types::{ToSql, Type};
    tidewater_postgres::transaction(pool, retry_policy(), async move |tx| {
        let ids: &[i64] = &[new.from, new.to];
        let lock_params: [(&(dyn ToSql + Sync), Type); 1] = [(&ids, Type::INT8_ARRAY)];
        let lookup = async {
            match &new.key {
                Some(key) => {
                    tx.query_typed_opt(
                        &format!(
                            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE idempotency_key = $1"
                        ),
                        &[(key, Type::TEXT)],
                    )
                    .await
                }
                None => Ok(None),
            }
        };
        let lock = tx.query_typed(
            "SELECT id, balance FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &lock_params,
        );
        let (existing, rows) = tokio::try_join!(lookup, lock)?;
        if let Some(existing) = existing {
            return Ok(Step::Existing(transfer_row(&existing)));
        }
        let balance = |id: i64| {
            rows.iter()
                .find(|row| row.get::<_, i64>(0) == id)
                .map(|row| row.get::<_, i64>(1))
        };
        let [debit, credit] = check_transfer(&new, balance(new.from), balance(new.to))?;
        let created_at = now_ms();
        let claimed = tx
            .query_typed_opt(
                POST_TRANSFER,
                &[
                    (&new.from, Type::INT8),
                    (&new.to, Type::INT8),
                    (&new.amount, Type::INT8),
                    (&new.key, Type::TEXT),
                    (&created_at, Type::INT8),
                    (&debit.balance_after, Type::INT8),
                    (&credit.balance_after, Type::INT8),
                ],
            )
            .await?;
        let Some(claimed) = claimed else {
            return Err(ApiError::KeyClaimed);
        };
        Ok(Step::Created(new.made(claimed.get(0), created_at)))
    })
    .await
}
