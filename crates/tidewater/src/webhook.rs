//! Alerts to Prometheus Alertmanager (feature `webhook`).
//!
//! [`AlertmanagerWebhook`] is an [`AlertSink`] that POSTs firing and
//! resolved alerts to Alertmanager's v2 API (`/api/v2/alerts`), in its
//! format. A dead or slow receiver never slows the pool: `notify` only puts
//! the event on a bounded queue (dropping it, and counting the drop, when
//! the queue is full), and a background task sends it with bounded retries.
//! Firing alerts are sent again every `repeat` (Alertmanager forgets an
//! alert not refreshed within its `resolve_timeout`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::alerts::{AlertEvent, AlertSink};
use crate::backoff::Backoff;

/// How the webhook queues and retries.
///
/// ```
/// let options = tidewater::webhook::WebhookOptions::default();
/// assert_eq!((options.queue, options.attempts), (256, 3));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebhookOptions {
    /// Events waiting to be sent; more are dropped (and counted).
    pub queue: usize,
    /// Tries per POST, the first included.
    pub attempts: u32,
    /// Bound on one POST.
    pub timeout: Duration,
    /// Delay between tries.
    pub backoff: Backoff,
    /// How often firing alerts are sent again.
    pub repeat: Duration,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        Self {
            queue: 256,
            attempts: 3,
            timeout: Duration::from_secs(5),
            backoff: Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(5),
            },
            repeat: Duration::from_secs(60),
        }
    }
}

/// An [`AlertSink`] that sends alerts to Alertmanager.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use tidewater_testkit::ScriptedManager;
/// use tidewater::webhook::AlertmanagerWebhook;
/// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default())?;
/// pool.add_alert_sink(AlertmanagerWebhook::new("http://127.0.0.1:9093/api/v2/alerts")?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AlertmanagerWebhook {
    queue: mpsc::Sender<AlertEvent>,
    dropped: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

/// A webhook URL that cannot be used.
#[derive(Debug)]
pub struct WebhookError(String);

impl std::fmt::Display for WebhookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "alert webhook: {}", self.0)
    }
}

impl std::error::Error for WebhookError {}

impl AlertmanagerWebhook {
    /// Sends to `url` with the default options. Needs a Tokio runtime.
    ///
    /// # Errors
    /// A URL that is not `http://` (or `https://` with the `webhook-tls`
    /// feature).
    pub fn new(url: &str) -> Result<Self, WebhookError> {
        Self::with_options(url, WebhookOptions::default())
    }

    /// Sends to `url` with `options`. Needs a Tokio runtime.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_options(url: &str, options: WebhookOptions) -> Result<Self, WebhookError> {
        let tls = cfg!(feature = "webhook-tls");
        if !(url.starts_with("http://") || (tls && url.starts_with("https://"))) {
            let allowed = if tls {
                "http:// or https://"
            } else {
                "http:// (https:// needs the webhook-tls feature)"
            };
            return Err(WebhookError(format!("{url:?} is not an {allowed} URL")));
        }
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .build()
            .map_err(|error| WebhookError(error.to_string()))?;
        let (queue, events) = mpsc::channel(options.queue.max(1));
        let failed = Arc::new(AtomicU64::new(0));
        let sender = Sender {
            client,
            url: url.to_owned(),
            options,
            failed: failed.clone(),
        };
        tokio::spawn(sender.run(events));
        Ok(Self {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            failed,
        })
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// POSTs that failed every try.
    pub fn failed(&self) -> u64 {
        self.failed.load(Relaxed)
    }
}

impl AlertSink for AlertmanagerWebhook {
    fn notify(&self, event: &AlertEvent) {
        if self.queue.try_send(event.clone()).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

/// One alert as Alertmanager's v2 API takes it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Postable {
    labels: BTreeMap<&'static str, String>,
    annotations: BTreeMap<&'static str, String>,
    starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl Postable {
    fn of(event: &AlertEvent) -> Self {
        let alert = &event.alert;
        let labels = BTreeMap::from([
            ("alertname", alert.name.as_str().to_owned()),
            ("pool_name", alert.pool.to_string()),
            ("severity", alert.severity.as_str().to_owned()),
        ]);
        let annotations = BTreeMap::from([
            ("summary", alert.summary.clone()),
            ("description", alert.description.clone()),
        ]);
        Self {
            labels,
            annotations,
            starts_at: rfc3339(alert.since),
            ends_at: event.resolved_at.map(rfc3339),
        }
    }
}

/// The background task that sends.
struct Sender {
    client: reqwest::Client,
    url: String,
    options: WebhookOptions,
    failed: Arc<AtomicU64>,
}

impl Sender {
    async fn run(self, mut events: mpsc::Receiver<AlertEvent>) {
        let mut firing: BTreeMap<(String, String), Postable> = BTreeMap::new();
        let mut repeat = tokio::time::interval(self.options.repeat);
        repeat.tick().await;
        loop {
            let batch = tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { return };
                    let postable = Postable::of(&event);
                    let key = (postable.labels["alertname"].clone(), postable.labels["pool_name"].clone());
                    if event.is_firing() {
                        firing.insert(key, postable.clone());
                    } else {
                        firing.remove(&key);
                    }
                    vec![postable]
                }
                _ = repeat.tick() => firing.values().cloned().collect(),
            };
            if !batch.is_empty() {
                self.post(&batch).await;
            }
        }
    }

    async fn post(&self, batch: &[Postable]) {
        for attempt in 1..=self.options.attempts {
            match self.client.post(&self.url).json(batch).send().await {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => {
                    tracing::debug!(url = %self.url, status = %response.status(), attempt, "alert webhook refused")
                }
                Err(error) => {
                    tracing::debug!(url = %self.url, %error, attempt, "alert webhook failed")
                }
            }
            if attempt < self.options.attempts {
                tokio::time::sleep(self.options.backoff.delay(attempt)).await;
            }
        }
        self.failed.fetch_add(1, Relaxed);
        tracing::warn!(url = %self.url, alerts = batch.len(), "alert webhook unreachable; alerts not delivered");
    }
}
