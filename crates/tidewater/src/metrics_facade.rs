//! The pools' metrics through the `metrics` facade (feature `metrics`),
//! for services that already run another exporter: the maintenance task
//! publishes the catalog on every tick. Gauges and counters keep their
//! names (counters with `_total`, as set absolutely); a latency histogram
//! becomes a `<name>_count` counter, a `<name>_sum` gauge and `<name>` gauges
//! labelled `quantile` (0.5, 0.9, 0.99) over the pool's whole life.

use metrics::Label;

use crate::metric_names::COUNTER_SUFFIX;
use crate::metrics::{Kind, Value, families};
use crate::view::PoolView;

/// Publishes `pool`'s metrics to whatever recorder the process installed.
pub(crate) fn publish(pool: &dyn PoolView) {
    for family in families(&[pool]) {
        for sample in family.samples {
            let labels: Vec<Label> = sample
                .labels
                .into_iter()
                .map(|(key, value)| Label::new(key, value))
                .collect();
            match (family.kind, sample.value) {
                (Kind::Counter, Value::Number(value)) => {
                    metrics::counter!(format!("{}{COUNTER_SUFFIX}", family.name), labels)
                        .absolute(value as u64);
                }
                (_, Value::Number(value)) => metrics::gauge!(family.name, labels).set(value),
                (_, Value::Histogram(histogram)) => {
                    metrics::counter!(format!("{}_count", family.name), labels.clone())
                        .absolute(histogram.count());
                    metrics::gauge!(format!("{}_sum", family.name), labels.clone())
                        .set(histogram.sum().as_secs_f64());
                    for quantile in [0.5, 0.9, 0.99] {
                        let mut labels = labels.clone();
                        labels.push(Label::new("quantile", quantile.to_string()));
                        metrics::gauge!(family.name, labels)
                            .set(histogram.quantile(quantile).as_secs_f64());
                    }
                }
            }
        }
    }
}
