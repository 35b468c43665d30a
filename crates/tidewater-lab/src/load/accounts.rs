//! Opening the run's accounts (`POST /api/accounts`), a few at a time,
//! each tried again while the service answers 5xx or not at all.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::AccountsError;
use super::check::Opened;

/// Accounts opened at once.
const AT_ONCE: usize = 8;
/// Tries per account.
const TRIES: u64 = 4;

/// Opens `count` accounts of `opening` cents, named `{run_id}-{n}`, a few
/// at a time; returns them by id.
pub(crate) async fn open_accounts(
    client: &reqwest::Client,
    base: &str,
    run_id: &str,
    count: u32,
    opening: i64,
) -> Result<Vec<Opened>, AccountsError> {
    let limit = Arc::new(Semaphore::new(AT_ONCE));
    let mut opening_all = JoinSet::new();
    for n in 0..count {
        let (client, base, limit) = (client.clone(), base.to_owned(), limit.clone());
        let name = format!("{run_id}-{n}");
        opening_all.spawn(async move {
            let _permit = limit.acquire_owned().await;
            open_account(&client, &base, &name, opening).await
        });
    }
    let mut accounts = Vec::new();
    while let Some(done) = opening_all.join_next().await {
        accounts.push(done.map_err(AccountsError::Task)??);
    }
    accounts.sort_by_key(|account| account.id);
    Ok(accounts)
}

/// Opens the account `name` of `opening` cents, trying again (after 250,
/// 500, 750 ms) while the service answers 5xx or not at all.
async fn open_account(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    opening: i64,
) -> Result<Opened, AccountsError> {
    let mut attempt = 0;
    loop {
        let sent = client
            .post(format!("{base}/api/accounts"))
            .json(&json!({ "name": name, "balance": opening }))
            .send()
            .await;
        let error = match sent {
            Ok(response) if response.status().as_u16() == 201 => {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                return body["id"]
                    .as_i64()
                    .map(|id| Opened { id, opening })
                    .ok_or(AccountsError::NoId);
            }
            Ok(response) if response.status().is_server_error() => {
                AccountsError::Unavailable(response.status())
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                return Err(AccountsError::Refused { status, body });
            }
            Err(error) => AccountsError::Request(error),
        };
        attempt += 1;
        if attempt == TRIES {
            return Err(error);
        }
        tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
    }
}
