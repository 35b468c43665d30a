//! Prometheus exposition of any number of pools (feature `prometheus`),
//! rendered with the maintained `prometheus-client` crate from the lock-free
//! statistics: a scrape never blocks or slows `get()`.

use std::fmt;
use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::metrics::{self, Kind, Value};
use crate::view::PoolView;

/// The pools a service exports, as one Prometheus collector.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use tidewater_testkit::ScriptedManager;
/// let pool = tidewater::Pool::new(ScriptedManager::new(), Default::default()).unwrap();
/// let metrics = tidewater::prometheus::PoolMetrics::new();
/// metrics.register(pool.clone());
/// let text = metrics.render();
/// let max = tidewater::metric_names::CONNECTION_MAX;
/// assert!(text.contains(&format!("{max}{{pool_name=\"default\"}} 50")));
/// # }
/// ```
#[derive(Default)]
pub struct PoolMetrics {
    pools: RwLock<Vec<Arc<dyn PoolView>>>,
}

impl fmt::Debug for PoolMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .views()
            .iter()
            .map(|pool| pool.name().to_owned())
            .collect();
        f.debug_struct("PoolMetrics")
            .field("pools", &names)
            .finish()
    }
}

impl PoolMetrics {
    /// The content type of [`render`](Self::render)'s output.
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// No pools yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Exports `pool` too (a [`Pool`](crate::Pool) clone, say).
    pub fn register(&self, pool: impl PoolView) {
        self.pools
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::new(pool));
    }

    fn views(&self) -> Vec<Arc<dyn PoolView>> {
        self.pools
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every registered pool's metrics in the OpenMetrics text format, which
    /// Prometheus scrapes.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Rendering(self.views())));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String never fails");
        text
    }
}

impl Collector for PoolMetrics {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        Rendering(self.views()).encode(encoder)
    }
}

/// The pools of one scrape.
#[derive(Debug)]
struct Rendering(Vec<Arc<dyn PoolView>>);

impl fmt::Debug for dyn PoolView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Collector for Rendering {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let views: Vec<&dyn PoolView> = self.0.iter().map(|pool| &**pool).collect();
        for family in metrics::families(&views) {
            if family.samples.is_empty() {
                continue;
            }
            let kind = match family.kind {
                Kind::Gauge => MetricType::Gauge,
                Kind::Counter => MetricType::Counter,
                Kind::Histogram => MetricType::Histogram,
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, kind)?;
            for sample in &family.samples {
                let mut series = metric.encode_family(&sample.labels)?;
                match (&sample.value, family.kind) {
                    (Value::Number(value), Kind::Counter) => {
                        series.encode_counter::<NoLabelSet, _, u64>(&(*value as u64), None)?;
                    }
                    (Value::Number(value), _) => series.encode_gauge(value)?,
                    (Value::Histogram(histogram), _) => {
                        let (sum, count, buckets) = metrics::buckets(histogram);
                        series.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}
