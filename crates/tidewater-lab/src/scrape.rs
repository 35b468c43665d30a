//! Reading a service's `/metrics` (the Prometheus text format, and
//! OpenMetrics, which extends it) with the `prometheus-parse` crate, and
//! the arithmetic on histograms that the reports need: the difference
//! between two scrapes, quantiles and maximum from bucket counts, and the
//! mean from sum and count. Metric names are
//! [`tidewater::metric_names`]'s.
//!
//! `prometheus-parse` splits labels on `,` and `=` and does not unescape
//! them, so a line whose label values hold a `"`, `\`, `,` or `=` is
//! refused (naming the line) rather than misread.
//!
//! A histogram only knows how many observations fell at or below each
//! bucket bound, so a quantile read from it is a bound, not a value: the
//! upper bound of the bucket its rank falls in. [`BucketHistogram::quantile`]
//! returns that upper bound, and the reports say so ("p99 ≤ 25 ms").
//!
//! ```
//! use tidewater_lab::scrape::Metrics;
//!
//! let before = Metrics::parse("w_bucket{le=\"0.01\"} 5\nw_bucket{le=\"0.1\"} 5\nw_bucket{le=\"+Inf\"} 5\nw_sum 0.01\nw_count 5\n").unwrap();
//! let after = Metrics::parse("w_bucket{le=\"0.01\"} 90\nw_bucket{le=\"0.1\"} 104\nw_bucket{le=\"+Inf\"} 105\nw_sum 2.5\nw_count 105\n").unwrap();
//! let run = after.histogram("w", None).unwrap().since(&before.histogram("w", None).unwrap());
//! assert_eq!(run.count, 100.0);
//! assert_eq!(run.quantile(0.5), Some(0.01));      // 85 of 100 at or below 10 ms
//! assert_eq!(run.quantile(0.99), Some(0.1));      // 99 at or below 100 ms
//! assert_eq!(run.max(), Some(f64::INFINITY));     // one above the last finite bound
//! ```

use std::fmt;

use prometheus_parse::{LineInfo, Scrape, Value};

/// One sample line: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric's name, with any `_bucket`, `_sum`, `_count` or `_total` suffix.
    pub name: String,
    /// Its labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| label == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A line of the exposition that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The line's number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "metrics line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Every sample of one scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// The samples: counters, gauges and undeclared series in the order
    /// written, then the buckets of declared histograms and the quantiles
    /// of declared summaries.
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parses the text format. Comments (`# HELP`, `# TYPE`, `# EOF`) and
    /// blank lines are skipped; a timestamp after the value is ignored. A
    /// histogram declared by `# TYPE` is read as its `_bucket` samples
    /// (labelled `le`), like an undeclared one.
    ///
    /// # Errors
    /// A sample line that is not `name{labels} value`, or whose labels
    /// `prometheus-parse` cannot read faithfully (see the module docs).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        for (index, line) in text.lines().enumerate() {
            check_line(line).map_err(|message| ParseError {
                line: index + 1,
                message,
            })?;
        }
        let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
            .expect("reading lines from a str never fails");
        let mut samples = Vec::new();
        for sample in scrape.samples {
            let mut labels: Labels = sample
                .labels
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            labels.sort();
            let with = |key: &str, bound: f64| {
                let mut labels = labels.clone();
                labels.push((key.to_owned(), format_bound(bound)));
                labels
            };
            match sample.value {
                Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => {
                    samples.push(Sample {
                        name: sample.metric,
                        labels,
                        value,
                    });
                }
                Value::Histogram(buckets) => {
                    let name = format!("{}_bucket", sample.metric);
                    samples.extend(buckets.iter().map(|bucket| Sample {
                        name: name.clone(),
                        labels: with("le", bucket.less_than),
                        value: bucket.count,
                    }));
                }
                Value::Summary(quantiles) => {
                    samples.extend(quantiles.iter().map(|quantile| Sample {
                        name: sample.metric.clone(),
                        labels: with("quantile", quantile.quantile),
                        value: quantile.count,
                    }));
                }
            }
        }
        Ok(Self { samples })
    }

    /// The samples named `name` whose `pool_name` label is `pool` (any,
    /// when `pool` is `None`).
    fn series<'a>(
        &'a self,
        name: &'a str,
        pool: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |sample| {
            sample.name == name && pool.is_none_or(|pool| sample.label("pool_name") == Some(pool))
        })
    }

    /// The sum of every series named `name` (for the pool `pool`, or any);
    /// `None` when there is none. Counters split by a label (the
    /// checkouts' `path`, say) add up to their total.
    pub fn sum(&self, name: &str, pool: Option<&str>) -> Option<f64> {
        let mut found = false;
        let total = self
            .series(name, pool)
            .inspect(|_| found = true)
            .map(|sample| sample.value)
            .sum();
        found.then_some(total)
    }

    /// The counter `name` (a family of [`tidewater::metric_names::COUNTERS`],
    /// read from its `_total` series), summed like [`sum`](Self::sum).
    pub fn counter(&self, name: &str, pool: Option<&str>) -> Option<f64> {
        self.sum(
            &format!("{name}{}", tidewater::metric_names::COUNTER_SUFFIX),
            pool,
        )
    }

    /// The histogram `name` (its `_bucket`, `_sum` and `_count` series),
    /// for the pool `pool` or summed over all; `None` when there are no
    /// buckets.
    pub fn histogram(&self, name: &str, pool: Option<&str>) -> Option<BucketHistogram> {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for sample in self.series(&bucket, pool) {
            let Some(le) = sample.label("le").and_then(parse_value) else {
                continue;
            };
            match buckets.iter_mut().find(|(bound, _)| *bound == le) {
                Some((_, count)) => *count += sample.value,
                None => buckets.push((le, sample.value)),
            }
        }
        if buckets.is_empty() {
            return None;
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let sum = self.sum(&format!("{name}_sum"), pool).unwrap_or(0.0);
        let count = self
            .sum(&format!("{name}_count"), pool)
            .or_else(|| buckets.last().map(|(_, count)| *count))
            .unwrap_or(0.0);
        Some(BucketHistogram {
            buckets,
            sum,
            count,
        })
    }
}

/// A Prometheus histogram: cumulative counts per upper bound (`le`),
/// ascending, the last usually `+Inf`; the sum and count of observations.
#[derive(Clone, Debug, PartialEq)]
pub struct BucketHistogram {
    /// `(upper bound, observations at or below it)`, bounds ascending.
    pub buckets: Vec<(f64, f64)>,
    /// The sum of the observations.
    pub sum: f64,
    /// The number of observations.
    pub count: f64,
}

impl BucketHistogram {
    /// The observations made after `earlier` (a scrape of the same
    /// histogram taken before): counts and sum subtracted bucket by
    /// bucket, never below zero (a restarted service resets its counters).
    pub fn since(&self, earlier: &Self) -> Self {
        let before = |bound: f64| {
            earlier
                .buckets
                .iter()
                .find(|(le, _)| *le == bound)
                .map_or(0.0, |(_, count)| *count)
        };
        Self {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, count)| (le, (count - before(le)).max(0.0)))
                .collect(),
            sum: (self.sum - earlier.sum).max(0.0),
            count: (self.count - earlier.count).max(0.0),
        }
    }

    /// The upper bound of the bucket in which quantile `q` (0 to 1) of
    /// the observations falls: at least that share of them were at or
    /// below it. `f64::INFINITY` when it fell above the last finite
    /// bound; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        // The rank of the observation: at least the first.
        let rank = (q.clamp(0.0, 1.0) * self.count).ceil().max(1.0);
        Some(
            self.buckets
                .iter()
                .find(|(_, count)| *count >= rank)
                .map_or(f64::INFINITY, |(le, _)| *le),
        )
    }

    /// The upper bound of the highest bucket holding an observation: the
    /// largest observation was at most this. `f64::INFINITY` when one was
    /// above the last finite bound; `None` without observations.
    pub fn max(&self) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let mut below = 0.0;
        let mut highest = None;
        for &(le, count) in &self.buckets {
            if count > below {
                highest = Some(le);
            }
            below = count;
        }
        if self.count > below {
            // Observations the finite buckets do not cover (no `+Inf` line).
            return Some(f64::INFINITY);
        }
        highest
    }

    /// The mean observation (sum / count); `None` without observations.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The largest finite bucket bound (what an infinite quantile is
    /// reported as, with a note that it lies above).
    pub fn last_finite_bound(&self) -> Option<f64> {
        self.buckets
            .iter()
            .rev()
            .map(|(le, _)| *le)
            .find(|le| le.is_finite())
    }
}

/// A sample value: a number, `+Inf`, `-Inf` or `NaN`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// A bound as the text format writes it (`+Inf`, `0.025`).
fn format_bound(bound: f64) -> String {
    match bound {
        f64::INFINITY => "+Inf".to_owned(),
        f64::NEG_INFINITY => "-Inf".to_owned(),
        _ => bound.to_string(),
    }
}

/// A sample's labels, sorted by name.
type Labels = Vec<(String, String)>;

/// Refuses a line `prometheus-parse` would skip or misread.
fn check_line(line: &str) -> Result<(), String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(());
    }
    let LineInfo::Sample {
        metric_name,
        labels,
        value,
        ..
    } = LineInfo::parse(line)
    else {
        return Err("not a sample: `name{labels} value`".to_owned());
    };
    if parse_value(value).is_none() {
        return Err(format!("{metric_name}: not a number: {value:?}"));
    }
    for label in labels.unwrap_or_default().split(',') {
        if label.is_empty() {
            continue;
        }
        let plain = label.split_once('=').is_some_and(|(key, value)| {
            !key.is_empty()
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && value.len() >= 2
                && value.starts_with('"')
                && value.ends_with('"')
                && !value[1..value.len() - 1].contains(['"', '\\', '='])
        });
        if !plain {
            return Err(format!(
                "{metric_name}: label {label:?} is not `name=\"value\"` without quotes, \
                 backslashes, commas or '=' in the value"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: &str = tidewater::metric_names::CONNECTION_WAIT_TIME;

    const SCRAPE: &str = r#"# HELP db_client_connection_wait_time_seconds Time to get a connection.
# TYPE db_client_connection_wait_time_seconds histogram
db_client_connection_wait_time_seconds_bucket{le="0.00001",pool_name="tidewater"} 2
db_client_connection_wait_time_seconds_bucket{le="0.01",pool_name="tidewater"} 2
db_client_connection_wait_time_seconds_bucket{le="0.025",pool_name="tidewater"} 3
db_client_connection_wait_time_seconds_bucket{le="+Inf",pool_name="tidewater"} 3
db_client_connection_wait_time_seconds_sum{pool_name="tidewater"} 0.015
db_client_connection_wait_time_seconds_count{pool_name="tidewater"} 3
db_client_connection_wait_time_seconds_bucket{le="0.00001",pool_name="other"} 100
db_client_connection_wait_time_seconds_bucket{le="+Inf",pool_name="other"} 100
tidewater_acquired_total{pool_name="tidewater",path="direct"} 2
tidewater_acquired_total{pool_name="tidewater",path="waited"} 1 1795903264656
odd{pool_name="a space; and: punctuation!",x="+Inf"} NaN
# EOF
"#;

    #[test]
    fn parses_labels_and_values() {
        let metrics = Metrics::parse(SCRAPE).unwrap();
        assert_eq!(metrics.samples.len(), 11);
        let odd = metrics
            .samples
            .iter()
            .find(|sample| sample.name == "odd")
            .unwrap();
        assert_eq!(odd.label("pool_name"), Some("a space; and: punctuation!"));
        assert_eq!(odd.label("x"), Some("+Inf"));
        assert!(odd.value.is_nan());
        let acquired = tidewater::metric_names::ACQUIRED;
        assert_eq!(metrics.counter(acquired, Some("tidewater")), Some(3.0));
        assert_eq!(
            metrics.sum("tidewater_acquired_total", Some("tidewater")),
            Some(3.0)
        );
        assert_eq!(metrics.counter(acquired, Some("nope")), None);
        let sorted = &metrics.samples[0].labels;
        assert!(
            sorted.windows(2).all(|pair| pair[0].0 <= pair[1].0),
            "{sorted:?}"
        );
    }

    #[test]
    fn refuses_broken_lines_naming_them() {
        let error = Metrics::parse("ok 1\nbroken{le=\"1\" 2\n").unwrap_err();
        assert_eq!(error.line, 2);
        let error = Metrics::parse("x notanumber\n").unwrap_err();
        assert!(error.message.contains("not a number"), "{error}");
        let error = Metrics::parse("x{le=1} 2\n").unwrap_err();
        assert!(error.message.contains("le=1"), "{error}");
    }

    /// What `prometheus-parse` would misread (it neither unescapes nor
    /// splits quoted commas) is refused, not silently mangled.
    #[test]
    fn refuses_labels_the_parser_would_misread() {
        for line in [
            r#"odd{pool_name="a \"quoted\" name"} 1"#,
            r#"odd{pool_name="a, b"} 1"#,
            r#"odd{pool_name="a=b"} 1"#,
            r#"odd{pool_name="back\\slash"} 1"#,
            r#"odd{x="}"} 1"#,
        ] {
            let text = format!("ok 1\n{line}\n");
            let error = Metrics::parse(&text).unwrap_err();
            assert_eq!(error.line, 2, "{line}: {error}");
        }
    }

    #[test]
    fn declared_and_undeclared_histograms_read_alike() {
        let declared = Metrics::parse(SCRAPE).unwrap();
        let undeclared: String = SCRAPE
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| format!("{line}\n"))
            .collect();
        let undeclared = Metrics::parse(&undeclared).unwrap();
        for pool in [Some("tidewater"), Some("other"), None] {
            assert_eq!(
                declared.histogram(WAIT, pool),
                undeclared.histogram(WAIT, pool),
                "{pool:?}"
            );
        }
    }

    #[test]
    fn histogram_of_one_pool() {
        let metrics = Metrics::parse(SCRAPE).unwrap();
        let wait = metrics.histogram(WAIT, Some("tidewater")).unwrap();
        assert_eq!(
            wait.buckets,
            [
                (0.00001, 2.0),
                (0.01, 2.0),
                (0.025, 3.0),
                (f64::INFINITY, 3.0)
            ]
        );
        assert_eq!((wait.sum, wait.count), (0.015, 3.0));
        assert_eq!(wait.quantile(0.5), Some(0.00001));
        assert_eq!(wait.quantile(0.99), Some(0.025));
        assert_eq!(wait.max(), Some(0.025));
        assert_eq!(wait.mean(), Some(0.005));
        let all = metrics.histogram(WAIT, None).unwrap();
        assert_eq!(all.buckets[0], (0.00001, 102.0));
    }

    fn histogram(buckets: &[(f64, f64)], sum: f64) -> BucketHistogram {
        BucketHistogram {
            buckets: buckets.to_vec(),
            sum,
            count: buckets.last().unwrap().1,
        }
    }

    #[test]
    fn quantiles_come_from_the_difference_of_two_scrapes() {
        let inf = f64::INFINITY;
        // Before the run: 1000 fast waits. During: 100 more, 98 fast, one
        // at 50 ms, one at 200 ms.
        let start = histogram(
            &[(0.01, 1000.0), (0.1, 1000.0), (0.25, 1000.0), (inf, 1000.0)],
            1.0,
        );
        let end = histogram(
            &[(0.01, 1098.0), (0.1, 1099.0), (0.25, 1100.0), (inf, 1100.0)],
            1.35,
        );
        let run = end.since(&start);
        assert_eq!(run.count, 100.0);
        assert!((run.sum - 0.35).abs() < 1e-9);
        assert_eq!(run.quantile(0.5), Some(0.01));
        assert_eq!(run.quantile(0.98), Some(0.01));
        assert_eq!(run.quantile(0.99), Some(0.1));
        assert_eq!(run.quantile(1.0), Some(0.25));
        assert_eq!(run.max(), Some(0.25));
        // The whole histogram's p99 hides the run's slow waits.
        assert_eq!(end.quantile(0.99), Some(0.01));
    }

    #[test]
    fn empty_and_overflowing_histograms() {
        let inf = f64::INFINITY;
        let empty = histogram(&[(0.1, 0.0), (inf, 0.0)], 0.0);
        assert_eq!(empty.quantile(0.99), None);
        assert_eq!(empty.max(), None);
        assert_eq!(empty.mean(), None);
        let over = histogram(&[(0.1, 1.0), (60.0, 1.0), (inf, 2.0)], 100.0);
        assert_eq!(over.max(), Some(inf));
        assert_eq!(over.quantile(0.99), Some(inf));
        assert_eq!(over.last_finite_bound(), Some(60.0));
        // Without a +Inf bucket the uncovered observations are above.
        let cut = BucketHistogram {
            buckets: vec![(0.1, 1.0)],
            sum: 1.0,
            count: 2.0,
        };
        assert_eq!(cut.max(), Some(inf));
    }

    #[test]
    fn a_reset_counter_never_goes_negative() {
        let inf = f64::INFINITY;
        let start = histogram(&[(0.1, 50.0), (inf, 50.0)], 5.0);
        let end = histogram(&[(0.1, 3.0), (inf, 3.0)], 0.3);
        let run = end.since(&start);
        assert_eq!(run.count, 0.0);
        assert_eq!(run.sum, 0.0);
        assert_eq!(run.quantile(0.5), None);
    }
}
