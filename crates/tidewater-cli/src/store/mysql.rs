//! The store's SQL for MySQL and MariaDB (InnoDB). A transfer locks both
//! accounts (`SELECT ... FOR UPDATE`, in id order); a concurrent request
//! with the same idempotency key fails its insert on the unique key
//! (1062) and looks the key up again.

use tidewater::Pool;
use tidewater_mysql::{MySqlConnection, MySqlManager};

use super::migrations::{self, TABLE};
use super::{
    Account, LedgerEntry, NewTransfer, Posting, Step, Transfer, check_transfer, now_ms,
    retry_policy,
};
use crate::error::ApiError;

/// `ER_DUP_ENTRY`: a unique key already holds the value.
const DUPLICATE_ENTRY: u16 = 1062;

/// A constraint of that name is already there: MariaDB's
/// `ER_DUP_CONSTRAINT_NAME` and MySQL's `ER_CHECK_CONSTRAINT_DUP_NAME`.
/// A migration statement adding one was applied by a start interrupted
/// before the migration was recorded (DDL commits by itself here).
const DUPLICATE_CONSTRAINT: [u16; 2] = [1826, 3822];

/// The named lock held while migrating.
const MIGRATION_LOCK: &str = "tidewater_migrations";

const TRANSFER_COLUMNS: &str = "id, from_account, to_account, amount, idempotency_key, created_at";

type TransferRow = (i64, i64, i64, i64, Option<String>, i64);

fn transfer_of((id, from, to, amount, idempotency_key, created_at): TransferRow) -> Transfer {
    Transfer {
        id,
        from,
        to,
        amount,
        idempotency_key,
        created_at,
    }
}

/// The server answered an insert without the row's id.
fn no_id() -> ApiError {
    ApiError::database(
        tidewater::ErrorClass::Permanent,
        std::io::Error::other("the server returned no id for the inserted row"),
    )
}

pub(super) async fn migrate(pool: &Pool<MySqlManager>) -> Result<Vec<i64>, ApiError> {
    let mut conn = pool.get().await?;
    let locked: Option<Option<i64>> = conn
        .exec_first("SELECT GET_LOCK(?, 60)", (MIGRATION_LOCK,))
        .await?;
    if locked.flatten() != Some(1) {
        return Err(ApiError::Invalid(format!(
            "could not take the lock {MIGRATION_LOCK:?} within 60 s: another instance is migrating"
        )));
    }
    let result = apply(&mut conn).await;
    let released = conn
        .exec_drop("DO RELEASE_LOCK(?)", (MIGRATION_LOCK,))
        .await;
    if released.is_err() {
        // The lock goes with the session.
        drop(conn.detach());
    }
    result
}

async fn apply(conn: &mut MySqlConnection) -> Result<Vec<i64>, ApiError> {
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (version BIGINT NOT NULL PRIMARY KEY, name VARCHAR(200) NOT NULL, applied_at BIGINT NOT NULL) ENGINE = InnoDB"
    ))
    .await?;
    let applied: Vec<i64> = conn.query(format!("SELECT version FROM {TABLE}")).await?;
    let pending = migrations::pending(&applied).map_err(ApiError::Invalid)?;
    let mut done = Vec::new();
    for migration in pending {
        for statement in migrations::statements(migration.mysql) {
            match conn.query_drop(statement).await {
                Err(error)
                    if error
                        .code()
                        .is_some_and(|code| DUPLICATE_CONSTRAINT.contains(&code)) => {}
                other => other?,
            }
        }
        conn.exec_drop(
            format!("INSERT INTO {TABLE} (version, name, applied_at) VALUES (?, ?, ?)"),
            (migration.version, migration.name, now_ms()),
        )
        .await?;
        done.push(migration.version);
    }
    Ok(done)
}

pub(super) async fn create_account(
    pool: &Pool<MySqlManager>,
    name: String,
    balance: i64,
    created_at: i64,
) -> Result<Account, ApiError> {
    let mut conn = pool.get().await?;
    conn.exec_drop(
        "INSERT INTO accounts (name, balance, created_at) VALUES (?, ?, ?)",
        (&name, balance, created_at),
    )
    .await?;
    let id = conn.last_insert_id().and_then(|id| i64::try_from(id).ok());
    let id = id.ok_or_else(no_id)?;
    Ok(Account {
        id,
        name,
        balance,
        created_at,
    })
}

pub(super) async fn account(
    pool: &Pool<MySqlManager>,
    id: i64,
) -> Result<Option<Account>, ApiError> {
    let mut conn = pool.get().await?;
    let row: Option<(i64, String, i64, i64)> = conn
        .exec_first(
            "SELECT id, name, balance, created_at FROM accounts WHERE id = ?",
            (id,),
        )
        .await?;
    Ok(row.map(|(id, name, balance, created_at)| Account {
        id,
        name,
        balance,
        created_at,
    }))
}

pub(super) async fn ledger(
    pool: &Pool<MySqlManager>,
    id: i64,
    limit: i64,
    before: i64,
) -> Result<Vec<LedgerEntry>, ApiError> {
    let mut conn = pool.get().await?;
    let rows: Vec<(i64, i64, i64, i64, i64)> = conn
        .exec(
            "SELECT id, transfer_id, amount, balance_after, created_at FROM ledger_entries \
             WHERE account_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (id, before, limit),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, transfer_id, amount, balance_after, created_at)| LedgerEntry {
                id,
                transfer_id,
                amount,
                balance_after,
                created_at,
            },
        )
        .collect())
}

pub(super) async fn transfer(
    pool: &Pool<MySqlManager>,
    id: i64,
) -> Result<Option<Transfer>, ApiError> {
    let mut conn = pool.get().await?;
    let row: Option<TransferRow> = conn
        .exec_first(
            format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?"),
            (id,),
        )
        .await?;
    Ok(row.map(transfer_of))
}

pub(super) async fn make_transfer(
    pool: &Pool<MySqlManager>,
    new: NewTransfer,
) -> Result<Step, ApiError> {
    tidewater_mysql::transaction(pool, retry_policy(), async move |conn: &mut MySqlConnection| {
        if let Some(key) = &new.key {
            let existing: Option<TransferRow> = conn
                .exec_first(
                    format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE idempotency_key = ?"),
                    (key,),
                )
                .await?;
            if let Some(existing) = existing {
                return Ok(Step::Existing(transfer_of(existing)));
            }
        }
        let rows: Vec<(i64, i64)> = conn
            .exec(
                "SELECT id, balance FROM accounts WHERE id IN (?, ?) ORDER BY id FOR UPDATE",
                (new.from, new.to),
            )
            .await?;
        let balance = |id: i64| rows.iter().find(|row| row.0 == id).map(|row| row.1);
        let postings = check_transfer(&new, balance(new.from), balance(new.to))?;
        let created_at = now_ms();
        let inserted = conn
            .exec_drop(
                "INSERT INTO transfers (from_account, to_account, amount, idempotency_key, created_at) \
                 VALUES (?, ?, ?, ?, ?)",
                (new.from, new.to, new.amount, &new.key, created_at),
            )
            .await;
        match inserted {
            Err(error) if error.code() == Some(DUPLICATE_ENTRY) => {
                return Err(ApiError::KeyClaimed);
            }
            other => other?,
        }
        let id = conn
            .last_insert_id()
            .and_then(|id| i64::try_from(id).ok())
            .ok_or_else(no_id)?;
        for Posting {
            account,
            change,
            balance_after: after,
        } in postings
        {
            conn.exec_drop(
                "UPDATE accounts SET balance = ? WHERE id = ?",
                (after, account),
            )
            .await?;
            conn.exec_drop(
                "INSERT INTO ledger_entries (transfer_id, account_id, amount, balance_after, created_at) \
                 VALUES (?, ?, ?, ?, ?)",
                (id, account, change, after, created_at),
            )
            .await?;
        }
        Ok::<_, ApiError>(Step::Created(new.made(id, created_at)))
    })
    .await
}
