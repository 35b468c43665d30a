//! The store's SQL for SQLite. Every call runs on the connection's own
//! thread; a transfer is one `BEGIN IMMEDIATE` transaction (the write lock
//! taken first, so transfers run one at a time and never see a stale
//! balance).

use tidewater::Pool;
use tidewater_sqlite::rusqlite::{self, OptionalExtension, Row, TransactionBehavior, params};
use tidewater_sqlite::{SqliteError, SqliteManager};

use super::migrations::{self, TABLE};
use super::{
    Account, LedgerEntry, NewTransfer, Posting, Step, Transfer, check_transfer, now_ms,
    retry_policy,
};
use crate::error::ApiError;

const TRANSFER_COLUMNS: &str = "id, from_account, to_account, amount, idempotency_key, created_at";

fn transfer_row(row: &Row<'_>) -> rusqlite::Result<Transfer> {
    Ok(Transfer {
        id: row.get(0)?,
        from: row.get(1)?,
        to: row.get(2)?,
        amount: row.get(3)?,
        idempotency_key: row.get(4)?,
        created_at: row.get(5)?,
    })
}

fn account_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        name: row.get(1)?,
        balance: row.get(2)?,
        created_at: row.get(3)?,
    })
}

pub(super) async fn migrate(pool: &Pool<SqliteManager>) -> Result<Vec<i64>, ApiError> {
    let conn = pool.get().await?;
    conn.interact(|c| -> Result<Vec<i64>, ApiError> {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        ))?;
        let applied = tx
            .prepare(&format!("SELECT version FROM {TABLE}"))?
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        let pending = migrations::pending(&applied).map_err(ApiError::Invalid)?;
        let mut done = Vec::new();
        for migration in pending {
            tx.execute_batch(migration.sqlite)?;
            tx.execute(
                &format!("INSERT INTO {TABLE} (version, name, applied_at) VALUES (?1, ?2, ?3)"),
                params![migration.version, migration.name, now_ms()],
            )?;
            done.push(migration.version);
        }
        tx.commit()?;
        Ok(done)
    })
    .await?
}

pub(super) async fn create_account(
    pool: &Pool<SqliteManager>,
    name: String,
    balance: i64,
    created_at: i64,
) -> Result<Account, ApiError> {
    let conn = pool.get().await?;
    let id = conn
        .interact(move |c| -> rusqlite::Result<i64> {
            c.prepare_cached(
                "INSERT INTO accounts (name, balance, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![name, balance, created_at])?;
            Ok(c.last_insert_rowid())
        })
        .await??;
    drop(conn);
    account(pool, id).await?.ok_or(ApiError::NotFound {
        what: "account",
        id,
    })
}

pub(super) async fn account(
    pool: &Pool<SqliteManager>,
    id: i64,
) -> Result<Option<Account>, ApiError> {
    let conn = pool.get().await?;
    Ok(conn
        .interact(move |c| {
            c.prepare_cached("SELECT id, name, balance, created_at FROM accounts WHERE id = ?1")?
                .query_row([id], account_row)
                .optional()
        })
        .await??)
}

pub(super) async fn ledger(
    pool: &Pool<SqliteManager>,
    id: i64,
    limit: i64,
    before: i64,
) -> Result<Vec<LedgerEntry>, ApiError> {
    let conn = pool.get().await?;
    Ok(conn
        .interact(move |c| {
            c.prepare_cached(
                "SELECT id, transfer_id, amount, balance_after, created_at FROM ledger_entries \
                 WHERE account_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
            )?
            .query_map([id, before, limit], |row| {
                Ok(LedgerEntry {
                    id: row.get(0)?,
                    transfer_id: row.get(1)?,
                    amount: row.get(2)?,
                    balance_after: row.get(3)?,
                    created_at: row.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await??)
}

pub(super) async fn transfer(
    pool: &Pool<SqliteManager>,
    id: i64,
) -> Result<Option<Transfer>, ApiError> {
    let conn = pool.get().await?;
    Ok(conn
        .interact(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?1"
            ))?
            .query_row([id], transfer_row)
            .optional()
        })
        .await??)
}

pub(super) async fn make_transfer(
    pool: &Pool<SqliteManager>,
    new: NewTransfer,
) -> Result<Step, ApiError> {
    tidewater_sqlite::transaction(pool, retry_policy(), move |tx| {
        if let Some(key) = &new.key {
            let existing = tx
                .prepare_cached(&format!(
                    "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE idempotency_key = ?1"
                ))?
                .query_row([key], transfer_row)
                .optional()?;
            if let Some(existing) = existing {
                return Ok(Step::Existing(existing));
            }
        }
        let balance = |id: i64| -> Result<Option<i64>, SqliteError> {
            Ok(tx
                .prepare_cached("SELECT balance FROM accounts WHERE id = ?1")?
                .query_row([id], |row| row.get(0))
                .optional()?)
        };
        let postings =
            check_transfer(&new, balance(new.from)?, balance(new.to)?)?;
        let created_at = now_ms();
        tx.prepare_cached(
            "INSERT INTO transfers (from_account, to_account, amount, idempotency_key, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![new.from, new.to, new.amount, new.key, created_at])?;
        let id = tx.last_insert_rowid();
        let mut update = tx.prepare_cached("UPDATE accounts SET balance = ?1 WHERE id = ?2")?;
        let mut entry = tx.prepare_cached(
            "INSERT INTO ledger_entries (transfer_id, account_id, amount, balance_after, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for Posting {
            account,
            change,
            balance_after: after,
        } in postings
        {
            update.execute(params![after, account])?;
            entry.execute(params![id, account, change, after, created_at])?;
        }
        Ok(Step::Created(new.made(id, created_at)))
    })
    .await
}
