//! Reading what the service holds after a run, for the correctness
//! check: each account's balance, its whole ledger (paged with
//! `?before=`), and every transfer acknowledged or booked. Requests are
//! retried a few times on a transport failure or a 5xx; what still cannot
//! be read is listed, and fails the check.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::load::check::{Entry, KeyAnswer, KeyLog, Observed, Opened, Stored};

/// Requests in flight at once while reading.
const PARALLEL: usize = 16;
/// The ledger page size (the API's largest).
const PAGE: usize = 1000;
/// Attempts per request.
const ATTEMPTS: u32 = 4;

/// `GET base+path`: the status and the JSON body, retried on a transport
/// failure or a 5xx.
async fn get(client: &reqwest::Client, base: &str, path: &str) -> Result<(u16, Value), String> {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        match client.get(format!("{base}{path}")).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(bytes) if status < 500 => {
                        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        return Ok((status, body));
                    }
                    Ok(_) => last = format!("status {status}"),
                    Err(error) => last = error.to_string(),
                }
            }
            Err(error) => last = error.to_string(),
        }
    }
    Err(format!("GET {path}: {last} (after {ATTEMPTS} attempts)"))
}

/// One account's balance and whole ledger.
async fn account(
    client: &reqwest::Client,
    base: &str,
    id: i64,
) -> Result<(i64, Vec<Entry>), String> {
    let (status, body) = get(client, base, &format!("/api/accounts/{id}")).await?;
    let balance = body["balance"]
        .as_i64()
        .filter(|_| status == 200)
        .ok_or_else(|| format!("GET /api/accounts/{id}: status {status}, no balance"))?;
    let mut entries = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let path = match before {
            Some(before) => format!("/api/accounts/{id}/ledger?limit={PAGE}&before={before}"),
            None => format!("/api/accounts/{id}/ledger?limit={PAGE}"),
        };
        let (status, body) = get(client, base, &path).await?;
        let page = body["entries"]
            .as_array()
            .filter(|_| status == 200)
            .ok_or_else(|| format!("GET {path}: status {status}, no entries"))?;
        for entry in page {
            let field = |name: &str| {
                entry[name]
                    .as_i64()
                    .ok_or_else(|| format!("GET {path}: an entry without {name}"))
            };
            let entry = Entry {
                id: field("id")?,
                transfer_id: field("transfer_id")?,
                amount: field("amount")?,
            };
            if before.is_some_and(|before| entry.id >= before) {
                return Err(format!(
                    "GET {path}: entry {} is not before {before:?}: the ledger does not page",
                    entry.id
                ));
            }
            entries.push(entry);
        }
        if page.len() < PAGE {
            return Ok((balance, entries));
        }
        before = entries.last().map(|entry| entry.id);
    }
}

/// One transfer: `None` when the service says 404.
async fn transfer(client: &reqwest::Client, base: &str, id: i64) -> Result<Option<Stored>, String> {
    let (status, body) = get(client, base, &format!("/api/transfers/{id}")).await?;
    match status {
        404 => Ok(None),
        200 => {
            let field = |name: &str| {
                body[name]
                    .as_i64()
                    .ok_or_else(|| format!("GET /api/transfers/{id}: no {name}"))
            };
            Ok(Some(Stored {
                from: field("from")?,
                to: field("to")?,
                amount: field("amount")?,
                key: body["idempotency_key"].as_str().map(str::to_owned),
            }))
        }
        other => Err(format!("GET /api/transfers/{id}: status {other}")),
    }
}

/// Reads the state of `accounts` and of every transfer `journal`
/// acknowledged or the ledgers hold.
pub async fn observe(
    client: &reqwest::Client,
    base: &str,
    accounts: &[Opened],
    journal: &HashMap<String, KeyLog>,
) -> Observed {
    let mut observed = Observed::default();
    let limit = Arc::new(Semaphore::new(PARALLEL));

    let mut reads = JoinSet::new();
    for account in accounts {
        let (client, base, limit, id) =
            (client.clone(), base.to_owned(), limit.clone(), account.id);
        reads.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (id, self::account(&client, &base, id).await)
        });
    }
    while let Some(done) = reads.join_next().await {
        match done {
            Ok((id, Ok((balance, entries)))) => {
                observed.balances.insert(id, balance);
                observed.ledgers.insert(id, entries);
            }
            Ok((_, Err(error))) => observed.unreadable.push(error),
            Err(error) => observed.unreadable.push(format!("an account: {error}")),
        }
    }

    let mut ids: BTreeSet<i64> = observed
        .ledgers
        .values()
        .flatten()
        .map(|entry| entry.transfer_id)
        .collect();
    for log in journal.values() {
        for answer in &log.answers {
            if let KeyAnswer::Made { id, .. } = answer {
                ids.insert(*id);
            }
        }
    }
    let mut reads = JoinSet::new();
    for id in ids {
        let (client, base, limit) = (client.clone(), base.to_owned(), limit.clone());
        reads.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (id, transfer(&client, &base, id).await)
        });
    }
    while let Some(done) = reads.join_next().await {
        match done {
            Ok((id, Ok(stored))) => {
                observed.transfers.insert(id, stored);
            }
            Ok((_, Err(error))) => observed.unreadable.push(error),
            Err(error) => observed.unreadable.push(format!("a transfer: {error}")),
        }
    }
    observed.unreadable.sort();
    observed
}
