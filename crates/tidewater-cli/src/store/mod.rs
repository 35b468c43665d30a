//! The bank's data, on any of the three databases: one [`Store`] whose
//! methods the handlers call, whatever the backend; the SQL of each
//! dialect in a module of its own.
//!
//! Every transfer runs in a transaction through the backend's helper
//! (`tidewater_sqlite::transaction`, `tidewater_postgres::transaction`,
//! `tidewater_mysql::transaction`), which retries it on a conflict (busy
//! database, serialization failure, deadlock, lock wait timeout). Inside
//! it: the transfer already made under the request's idempotency key, if
//! any, is returned; otherwise both accounts are read (locked, in id order
//! so that two transfers never wait for each other in a cycle), the
//! balance is checked, the transfer row is inserted (its unique key
//! claims the idempotency key), both balances change and two ledger
//! entries are written. So money is never created nor lost, no balance
//! goes negative nor past [`MAX_AMOUNT`] (also constraints in the schema),
//! and a key is used once.

mod migrations;
mod mysql;
mod postgres;
mod sqlite;

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use tidewater::{CloseReport, Pool, PoolConfig, PoolView, RetryPolicy};
use tidewater_mysql::MySqlManager;
use tidewater_postgres::PgManager;
use tidewater_sqlite::SqliteManager;

use crate::config::Backend;
use crate::error::ApiError;

pub use migrations::{MIGRATIONS, Migration};

/// An account and its balance, in cents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Its id.
    pub id: i64,
    /// Its holder's name.
    pub name: String,
    /// Its balance, in cents; never negative.
    pub balance: i64,
    /// When it was opened (RFC 3339).
    #[serde(serialize_with = "rfc3339")]
    pub created_at: i64,
}

/// A transfer of money between two accounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Transfer {
    /// Its id.
    pub id: i64,
    /// The account debited.
    pub from: i64,
    /// The account credited.
    pub to: i64,
    /// The amount, in cents.
    pub amount: i64,
    /// The `Idempotency-Key` it was made under, if any.
    pub idempotency_key: Option<String>,
    /// When it was made (RFC 3339).
    #[serde(serialize_with = "rfc3339")]
    pub created_at: i64,
}

/// One line of an account's ledger: a transfer's effect on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    /// Its id.
    pub id: i64,
    /// The transfer that wrote it.
    pub transfer_id: i64,
    /// The change to the balance: negative for a debit.
    pub amount: i64,
    /// The balance just after.
    pub balance_after: i64,
    /// When (RFC 3339).
    #[serde(serialize_with = "rfc3339")]
    pub created_at: i64,
}

/// A transfer to make.
#[derive(Clone, Debug)]
pub struct NewTransfer {
    /// The account to debit.
    pub from: i64,
    /// The account to credit.
    pub to: i64,
    /// The amount, in cents (positive).
    pub amount: i64,
    /// The request's `Idempotency-Key`.
    pub key: Option<String>,
}

/// What a transfer request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    /// A new transfer.
    Created(Transfer),
    /// The transfer made earlier under the same idempotency key, for the
    /// same request.
    Replayed(Transfer),
}

/// One attempt of a backend's transfer transaction.
pub(crate) enum Step {
    /// The transfer made under the key already.
    Existing(Transfer),
    /// Made now.
    Created(Transfer),
}

/// The largest amount or balance accepted: 2^53 - 1 cents, the largest
/// integer every JSON reader keeps exact. An opening balance or an amount
/// past it is refused (`422 invalid-request`), and so is a transfer that
/// would credit an account past it (`422 balance-limit-exceeded`); the
/// schema's constraints (migration 2) refuse such a row as well.
pub const MAX_AMOUNT: i64 = (1 << 53) - 1;

/// The bank on one of the three databases.
#[derive(Clone)]
pub enum Store {
    /// SQLite.
    Sqlite(Pool<SqliteManager>),
    /// PostgreSQL.
    Postgres(Pool<PgManager>),
    /// MySQL or MariaDB.
    MySql(Pool<MySqlManager>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Store").field(&self.backend()).finish()
    }
}

/// Why a store could not be opened.
#[derive(Debug)]
pub struct OpenError {
    /// The configuration key at fault, if one is.
    pub key: Option<String>,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(f, "invalid configuration: {key}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for OpenError {}

fn invalid(key: &str, error: impl std::fmt::Display) -> OpenError {
    OpenError {
        key: Some(key.to_owned()),
        message: error.to_string(),
    }
}

impl Store {
    /// Builds the pool for `backend` (no connection opened yet).
    ///
    /// # Errors
    /// The backend's settings or the pool's are wrong.
    pub fn open(backend: Backend, pool: PoolConfig) -> Result<Self, OpenError> {
        let pool_key =
            |error: tidewater::ConfigError| invalid(&format!("pool.{}", error.key()), error);
        Ok(match backend {
            Backend::Sqlite(options) => {
                let manager = SqliteManager::new(options).map_err(|e| invalid("sqlite", e))?;
                Self::Sqlite(manager.into_pool(pool).map_err(pool_key)?)
            }
            Backend::Postgres(options) => {
                let manager = PgManager::new(options).map_err(|e| invalid("postgres", e))?;
                Self::Postgres(manager.into_pool(pool).map_err(pool_key)?)
            }
            Backend::MySql(options) => {
                let manager = MySqlManager::new(options).map_err(|e| invalid("mysql", e))?;
                Self::MySql(manager.into_pool(pool).map_err(pool_key)?)
            }
        })
    }

    /// `sqlite`, `postgres` or `mysql`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
            Self::MySql(_) => "mysql",
        }
    }

    /// The pool, backend erased: for monitoring.
    pub fn view(&self) -> Box<dyn PoolView> {
        match self {
            Self::Sqlite(pool) => Box::new(pool.clone()),
            Self::Postgres(pool) => Box::new(pool.clone()),
            Self::MySql(pool) => Box::new(pool.clone()),
        }
    }

    /// Registers the pool with `monitoring`.
    pub fn register(&self, monitoring: &tidewater_axum::Monitoring) {
        match self {
            Self::Sqlite(pool) => monitoring.register(pool.clone()),
            Self::Postgres(pool) => monitoring.register(pool.clone()),
            Self::MySql(pool) => monitoring.register(pool.clone()),
        };
    }

    /// Closes the pool: idle connections at once, those in use as they
    /// come back, waiting at most the pool's `drain_timeout`.
    pub async fn close(&self) -> CloseReport {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
            Self::MySql(pool) => pool.close().await,
        }
    }

    /// Applies the migrations the database has not seen yet, each once
    /// (recorded in `tidewater_migrations`), holding a lock so that
    /// replicas starting together do not race. Returns the versions
    /// applied now.
    ///
    /// # Errors
    /// The database's, or a database whose schema is newer than this
    /// program knows.
    pub async fn migrate(&self) -> Result<Vec<i64>, ApiError> {
        match self {
            Self::Sqlite(pool) => sqlite::migrate(pool).await,
            Self::Postgres(pool) => postgres::migrate(pool).await,
            Self::MySql(pool) => mysql::migrate(pool).await,
        }
    }

    /// Opens an account with `balance` cents.
    ///
    /// # Errors
    /// A balance out of range (422), or the database's.
    pub async fn create_account(&self, name: String, balance: i64) -> Result<Account, ApiError> {
        if !(0..=MAX_AMOUNT).contains(&balance) {
            return Err(ApiError::Invalid(format!(
                "balance must be an integer number of cents from 0 to {MAX_AMOUNT}, not {balance}"
            )));
        }
        if name.chars().count() > 200 {
            return Err(ApiError::Invalid(
                "name must be at most 200 characters".into(),
            ));
        }
        let created_at = now_ms();
        match self {
            Self::Sqlite(pool) => sqlite::create_account(pool, name, balance, created_at).await,
            Self::Postgres(pool) => postgres::create_account(pool, name, balance, created_at).await,
            Self::MySql(pool) => mysql::create_account(pool, name, balance, created_at).await,
        }
    }

    /// The account `id`.
    ///
    /// # Errors
    /// None with that id (404), or the database's.
    pub async fn account(&self, id: i64) -> Result<Account, ApiError> {
        let found = match self {
            Self::Sqlite(pool) => sqlite::account(pool, id).await,
            Self::Postgres(pool) => postgres::account(pool, id).await,
            Self::MySql(pool) => mysql::account(pool, id).await,
        }?;
        found.ok_or(ApiError::NotFound {
            what: "account",
            id,
        })
    }

    /// The newest `limit` ledger entries of account `id`, newest first;
    /// with `before`, only entries whose id is below it (the next page:
    /// pass the last id received).
    ///
    /// # Errors
    /// No such account (404), or the database's.
    pub async fn ledger(
        &self,
        id: i64,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<LedgerEntry>, ApiError> {
        self.account(id).await?;
        let limit = i64::from(limit);
        let before = before.unwrap_or(i64::MAX);
        match self {
            Self::Sqlite(pool) => sqlite::ledger(pool, id, limit, before).await,
            Self::Postgres(pool) => postgres::ledger(pool, id, limit, before).await,
            Self::MySql(pool) => mysql::ledger(pool, id, limit, before).await,
        }
    }

    /// The transfer `id`.
    ///
    /// # Errors
    /// None with that id (404), or the database's.
    pub async fn transfer(&self, id: i64) -> Result<Transfer, ApiError> {
        let found = match self {
            Self::Sqlite(pool) => sqlite::transfer(pool, id).await,
            Self::Postgres(pool) => postgres::transfer(pool, id).await,
            Self::MySql(pool) => mysql::transfer(pool, id).await,
        }?;
        found.ok_or(ApiError::NotFound {
            what: "transfer",
            id,
        })
    }

    /// Moves `amount` cents from one account to another, once per
    /// idempotency key: the same key with the same request returns the
    /// transfer made the first time; with another request, an error.
    ///
    /// # Errors
    /// An amount out of range or both accounts the same (422), an unknown
    /// account (404), insufficient funds (422), a credit that would take
    /// the destination past [`MAX_AMOUNT`] (422), a key used for another
    /// request (422), or the pool's or the database's.
    pub async fn make_transfer(&self, new: NewTransfer) -> Result<TransferOutcome, ApiError> {
        if !(1..=MAX_AMOUNT).contains(&new.amount) {
            return Err(ApiError::Invalid(format!(
                "amount must be a positive integer number of cents, at most {MAX_AMOUNT}, not {}",
                new.amount
            )));
        }
        if new.from == new.to {
            return Err(ApiError::Invalid(format!(
                "from and to are the same account ({})",
                new.from
            )));
        }
        if let Some(key) = &new.key
            && (key.is_empty() || key.len() > 255)
        {
            return Err(ApiError::BadRequest(
                "Idempotency-Key must be 1 to 255 characters".into(),
            ));
        }
        // A key claimed by a concurrent request is found on the next try.
        for _ in 0..3 {
            let step = match self {
                Self::Sqlite(pool) => sqlite::make_transfer(pool, new.clone()).await,
                Self::Postgres(pool) => postgres::make_transfer(pool, new.clone()).await,
                Self::MySql(pool) => mysql::make_transfer(pool, new.clone()).await,
            };
            return match step {
                Ok(Step::Created(transfer)) => Ok(TransferOutcome::Created(transfer)),
                Ok(Step::Existing(transfer)) => {
                    if (transfer.from, transfer.to, transfer.amount)
                        == (new.from, new.to, new.amount)
                    {
                        Ok(TransferOutcome::Replayed(transfer))
                    } else {
                        Err(ApiError::KeyReused {
                            key: new.key.clone().unwrap_or_default(),
                            transfer: transfer.id,
                        })
                    }
                }
                Err(ApiError::KeyClaimed) => continue,
                Err(error) => Err(error),
            };
        }
        Err(ApiError::KeyClaimed)
    }
}

/// How each backend's transfer transaction is retried.
fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 10,
        ..RetryPolicy::default()
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Writes milliseconds since the epoch as an RFC 3339 time.
fn rfc3339<S: Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    let time = UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(*ms).unwrap_or(0));
    serializer.collect_str(&humantime::format_rfc3339_millis(time))
}

/// One account's side of a transfer: the change to its balance and the
/// balance after it, written as one ledger entry.
pub(crate) struct Posting {
    /// The account.
    pub(crate) account: i64,
    /// The change: negative for the debit.
    pub(crate) change: i64,
    /// The account's balance after the change.
    pub(crate) balance_after: i64,
}

/// The checks of a transfer inside its transaction, the same on every
/// backend: both accounts exist (`from_balance`, `to_balance`), the
/// source holds enough, and the credit leaves the destination within
/// [`MAX_AMOUNT`] (the schema refuses a balance past it too). Returns the
/// debit and the credit to write. A refusal here writes nothing: the
/// idempotency key is not claimed, and a retry may succeed later.
pub(crate) fn check_transfer(
    new: &NewTransfer,
    from_balance: Option<i64>,
    to_balance: Option<i64>,
) -> Result<[Posting; 2], ApiError> {
    let from = from_balance.ok_or(ApiError::NotFound {
        what: "account",
        id: new.from,
    })?;
    let to = to_balance.ok_or(ApiError::NotFound {
        what: "account",
        id: new.to,
    })?;
    if from < new.amount {
        return Err(ApiError::InsufficientFunds {
            account: new.from,
            balance: from,
            amount: new.amount,
        });
    }
    let credited = to
        .checked_add(new.amount)
        .filter(|after| *after <= MAX_AMOUNT)
        .ok_or(ApiError::BalanceLimit {
            account: new.to,
            balance: to,
            amount: new.amount,
            limit: MAX_AMOUNT,
        })?;
    Ok([
        Posting {
            account: new.from,
            change: -new.amount,
            balance_after: from - new.amount,
        },
        Posting {
            account: new.to,
            change: new.amount,
            balance_after: credited,
        },
    ])
}

impl NewTransfer {
    /// The transfer as made: row `id`, at `created_at`.
    pub(crate) fn made(&self, id: i64, created_at: i64) -> Transfer {
        Transfer {
            id,
            from: self.from,
            to: self.to,
            amount: self.amount,
            idempotency_key: self.key.clone(),
            created_at,
        }
    }
}
