//! Reading a service's `/metrics`: a small parser of the Prometheus text
//! format (and OpenMetrics, which it extends), and the arithmetic on
//! histograms that the reports need: the difference between two scrapes,
//! quantiles and maximum from bucket counts, and the mean from sum and
//! count.
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

/// One sample line: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric's name, with any `_bucket`, `_sum`, `_count` or `_total` suffix.
    pub name: String,
    /// Its labels, in the order written.
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
    /// The samples, in the order written.
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parses the text format. Comments (`# HELP`, `# TYPE`, `# EOF`) and
    /// blank lines are skipped; a timestamp after the value is ignored.
    ///
    /// # Errors
    /// A sample line that is not `name{labels} value`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut samples = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let sample = parse_line(line).map_err(|message| ParseError {
                line: index + 1,
                message,
            })?;
            samples.push(sample);
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

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or_else(|| "a sample without a value".to_owned())?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("a sample without a metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inside)?;
        labels = parsed;
        rest = after;
    }
    let value = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| format!("{name}: no value"))?;
    let value = parse_value(value).ok_or_else(|| format!("{name}: not a number: {value:?}"))?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// A sample's labels, in the order written.
type Labels = Vec<(String, String)>;

/// Reads `k="v",k2="v2"}` and returns the labels and what follows `}`.
fn parse_labels(mut text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = text
            .find('=')
            .ok_or_else(|| "a label without '='".to_owned())?;
        let key = text[..eq].trim().to_owned();
        let quoted = text[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("label {key}: the value is not quoted"))?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {key}: the value is not closed")),
                Some((at, '"')) => break at,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => return Err(format!("label {key}: the value is not closed")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key, value));
        text = &quoted[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
odd{pool_name="a \"quoted\", odd\\name",x="}"} NaN
# EOF
"#;

    #[test]
    fn parses_labels_values_and_escapes() {
        let metrics = Metrics::parse(SCRAPE).unwrap();
        assert_eq!(metrics.samples.len(), 11);
        let odd = metrics.samples.last().unwrap();
        assert_eq!(odd.label("pool_name"), Some("a \"quoted\", odd\\name"));
        assert_eq!(odd.label("x"), Some("}"));
        assert!(odd.value.is_nan());
        assert_eq!(
            metrics.sum("tidewater_acquired_total", Some("tidewater")),
            Some(3.0)
        );
        assert_eq!(metrics.sum("tidewater_acquired_total", Some("nope")), None);
    }

    #[test]
    fn refuses_broken_lines_naming_them() {
        let error = Metrics::parse("ok 1\nbroken{le=\"1\" 2\n").unwrap_err();
        assert_eq!(error.line, 2);
        let error = Metrics::parse("x notanumber\n").unwrap_err();
        assert!(error.message.contains("not a number"), "{error}");
    }

    #[test]
    fn histogram_of_one_pool() {
        let metrics = Metrics::parse(SCRAPE).unwrap();
        let wait = metrics
            .histogram("db_client_connection_wait_time_seconds", Some("tidewater"))
            .unwrap();
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
        let all = metrics
            .histogram("db_client_connection_wait_time_seconds", None)
            .unwrap();
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
