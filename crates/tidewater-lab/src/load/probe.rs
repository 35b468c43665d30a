//! What the lab reads from the service besides the users' requests: the
//! pool's numbers (`GET /api/pools`) and the metrics (`GET /metrics`).

use std::time::Duration;

use tidewater_axum::PoolsReport;

use super::ProbeError;
use super::report::PoolSample;
use crate::scrape::Metrics;

/// The pool's name and numbers, from `GET /api/pools` (its first pool,
/// or the one named `pool`).
pub(crate) async fn pool_status(
    client: &reqwest::Client,
    base: &str,
    pool: Option<&str>,
    timeout: Duration,
) -> Result<(String, PoolSample), ProbeError> {
    let mut url = reqwest::Url::parse(&format!("{base}/api/pools"))?;
    // No history: only the numbers now.
    url.query_pairs_mut()
        .append_pair("after", &u64::MAX.to_string());
    if let Some(pool) = pool {
        url.query_pairs_mut().append_pair("pool", pool);
    }
    let response = client.get(url).timeout(timeout).send().await?;
    let status = response.status();
    if !status.is_success() {
        return Err(ProbeError::Status(status));
    }
    let report: PoolsReport = response.json().await?;
    let Some(first) = report.pools.first() else {
        return Err(ProbeError::NoPool);
    };
    let pool = &first.status;
    Ok((
        first.name.clone(),
        PoolSample {
            in_use: pool.in_use,
            idle: pool.idle,
            size: pool.size,
            max_size: pool.max_size,
            limit: pool.limit,
            adaptive: first.sizing.mode == tidewater::SizingMode::Adaptive,
            waiters: pool.waiters,
        },
    ))
}

/// `GET /metrics`, parsed; `None` when it cannot be read.
pub(super) async fn scrape(client: &reqwest::Client, base: &str) -> Option<Metrics> {
    let response = client
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    Metrics::parse(&response.text().await.ok()?).ok()
}
