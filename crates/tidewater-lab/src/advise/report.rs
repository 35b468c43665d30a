//! Reading the measurements `tidewater-lab advise --from` takes out of a
//! `tidewater-lab load --json` report. Only the fields listed on [`Measured`]
//! are read; anything else in the report is ignored, so the report may
//! grow without breaking this.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::AdviseError;

/// The largest report read; a larger file is not a report.
const MAX_REPORT_BYTES: u64 = 16 * 1024 * 1024;

/// What a load run measured, as read from its JSON report.
///
/// | field | meaning |
/// |---|---|
/// | `pool.checkouts_per_second` | arrival rate of checkouts |
/// | `pool.use_time_seconds.mean`, `.p99` | how long a connection was held |
/// | `pool.max_size` | the pool's size during the run |
/// | `pool.acquire_wait_seconds.p50`, `.p99`, `.max` | the acquisition wait measured |
/// | `throughput_rps`, `duration_seconds` | the run's requests per second and length |
///
/// ```
/// use tidewater_lab::advise::Measured;
/// let report = r#"{"throughput_rps": 950.5, "duration_seconds": 60, "other": [1, 2],
///     "pool": {"max_size": 50, "checkouts_per_second": 1901.0,
///              "use_time_seconds": {"mean": 0.0021, "p99": 0.0093},
///              "acquire_wait_seconds": {"p50": 0.00001, "p99": 0.0021, "max": 0.012}}}"#;
/// let measured = Measured::parse(report, "run.json").unwrap();
/// assert_eq!(measured.checkouts_per_second, Some(1901.0));
/// assert_eq!(measured.use_time_p99_seconds, Some(0.0093));
/// assert_eq!(measured.max_size, Some(50));
///
/// let error = Measured::parse(r#"{"rows": 3}"#, "other.json").unwrap_err();
/// assert!(error.to_string().contains("no `pool` object"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Measured {
    /// The report file.
    pub path: String,
    /// `duration_seconds`: how long the run lasted.
    pub duration_seconds: Option<f64>,
    /// `throughput_rps`: requests per second over the run.
    pub throughput_rps: Option<f64>,
    /// `pool.max_size`.
    pub max_size: Option<u32>,
    /// `pool.checkouts_per_second`.
    pub checkouts_per_second: Option<f64>,
    /// `pool.use_time_seconds.mean`.
    pub use_time_mean_seconds: Option<f64>,
    /// `pool.use_time_seconds.p99`.
    pub use_time_p99_seconds: Option<f64>,
    /// `pool.acquire_wait_seconds.p50`.
    pub wait_p50_seconds: Option<f64>,
    /// `pool.acquire_wait_seconds.p99`.
    pub wait_p99_seconds: Option<f64>,
    /// `pool.acquire_wait_seconds.max`.
    pub wait_max_seconds: Option<f64>,
}

impl Measured {
    /// Reads the report at `path` (at most 16 MiB).
    ///
    /// # Errors
    /// An error naming the file and what is wrong: it cannot be read
    /// ([`AdviseError::Unreadable`]), is not JSON
    /// ([`AdviseError::NotJson`]), is too large, has no `pool` object, or
    /// a field read holds a negative number or something that is not a
    /// number ([`AdviseError::Report`]).
    ///
    /// ```
    /// use tidewater_lab::advise::Measured;
    /// let error = Measured::read("/nonexistent/report.json".as_ref()).unwrap_err();
    /// assert!(error.to_string().starts_with("--from /nonexistent/report.json: cannot read it"));
    /// ```
    pub fn read(path: &Path) -> Result<Self, AdviseError> {
        let name = path.display().to_string();
        let unreadable = |source| AdviseError::Unreadable {
            path: name.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(unreadable)?;
        let mut text = String::new();
        file.take(MAX_REPORT_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(unreadable)?;
        if text.len() as u64 > MAX_REPORT_BYTES {
            return Err(AdviseError::Report {
                path: name,
                message: format!(
                    "larger than {} MiB: not a `tidewater-lab load --json` report",
                    MAX_REPORT_BYTES / 1024 / 1024
                ),
            });
        }
        Self::parse(&text, &name)
    }

    /// Reads a report from its text; `path` names it in errors.
    ///
    /// # Errors
    /// As [`read`](Self::read), less the file access.
    pub fn parse(text: &str, path: &str) -> Result<Self, AdviseError> {
        let error = |message: String| AdviseError::Report {
            path: path.to_owned(),
            message,
        };
        let report: Value = serde_json::from_str(text).map_err(|source| AdviseError::NotJson {
            path: path.to_owned(),
            source,
        })?;
        let Some(pool) = report.get("pool").filter(|pool| pool.is_object()) else {
            return Err(error(
                "not a `tidewater-lab load --json` report: it has no `pool` object \
                 (with `checkouts_per_second` and `use_time_seconds`)"
                    .into(),
            ));
        };
        let number = |value: Option<&Value>, field: &str| -> Result<Option<f64>, AdviseError> {
            match value {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => match n.as_f64() {
                    Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
                    _ => Err(error(format!(
                        "{field} = {n}: allowed: a number, 0 or more"
                    ))),
                },
                Some(other) => Err(error(format!(
                    "{field} = {other}: allowed: a number, 0 or more"
                ))),
            }
        };
        let at = |value: &Value, keys: &[&str]| {
            keys.iter()
                .try_fold(value, |value, key| value.get(key))
                .cloned()
        };
        let max_size = match number(pool.get("max_size"), "pool.max_size")? {
            None => None,
            Some(x) if x.fract() == 0.0 && (1.0..=10_000.0).contains(&x) => Some(x as u32),
            Some(x) => {
                return Err(error(format!(
                    "pool.max_size = {x}: allowed: a whole number, 1 to 10000"
                )));
            }
        };
        let use_time = at(pool, &["use_time_seconds"]);
        let wait = at(pool, &["acquire_wait_seconds"]);
        let nested = |object: &Option<Value>, key: &str, field: &str| {
            number(object.as_ref().and_then(|o| o.get(key)), field)
        };
        Ok(Self {
            path: path.to_owned(),
            duration_seconds: number(report.get("duration_seconds"), "duration_seconds")?,
            throughput_rps: number(report.get("throughput_rps"), "throughput_rps")?,
            max_size,
            checkouts_per_second: number(
                pool.get("checkouts_per_second"),
                "pool.checkouts_per_second",
            )?,
            use_time_mean_seconds: nested(&use_time, "mean", "pool.use_time_seconds.mean")?,
            use_time_p99_seconds: nested(&use_time, "p99", "pool.use_time_seconds.p99")?,
            wait_p50_seconds: nested(&wait, "p50", "pool.acquire_wait_seconds.p50")?,
            wait_p99_seconds: nested(&wait, "p99", "pool.acquire_wait_seconds.p99")?,
            wait_max_seconds: nested(&wait, "max", "pool.acquire_wait_seconds.max")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_the_listed_fields() {
        let measured = Measured::parse(
            r#"{"throughput_rps": 1000, "duration_seconds": 30.5, "verdict": "pass",
                "latency_seconds": {"p99": "n/a"},
                "pool": {"checkouts_per_second": 2000, "use_time_seconds": {"mean": 0.004},
                         "timeouts": 0, "acquire_wait_seconds": {"p99": null}}}"#,
            "r.json",
        )
        .unwrap();
        assert_eq!(
            measured,
            Measured {
                path: "r.json".into(),
                duration_seconds: Some(30.5),
                throughput_rps: Some(1000.0),
                checkouts_per_second: Some(2000.0),
                use_time_mean_seconds: Some(0.004),
                ..Measured::default()
            }
        );
    }

    #[test]
    fn refuses_what_is_not_a_report_naming_the_field() {
        let cases = [
            ("not json", "not JSON"),
            ("[1, 2]", "no `pool` object"),
            (r#"{"pool": 3}"#, "no `pool` object"),
            (
                r#"{"pool": {"checkouts_per_second": -1}}"#,
                "pool.checkouts_per_second = -1",
            ),
            (
                r#"{"pool": {"checkouts_per_second": "fast"}}"#,
                "pool.checkouts_per_second = \"fast\"",
            ),
            (
                r#"{"pool": {"use_time_seconds": {"mean": true}}}"#,
                "pool.use_time_seconds.mean = true",
            ),
            (r#"{"pool": {"max_size": 2.5}}"#, "pool.max_size = 2.5"),
            (r#"{"pool": {"max_size": 0}}"#, "pool.max_size = 0"),
            (
                r#"{"pool": {}, "duration_seconds": -3}"#,
                "duration_seconds = -3",
            ),
        ];
        for (text, expected) in cases {
            let message = Measured::parse(text, "bad.json").unwrap_err().to_string();
            assert!(
                message.starts_with("--from bad.json: ") && message.contains(expected),
                "{text}: {message}"
            );
        }
    }

    #[test]
    fn refuses_files_too_large_or_missing() {
        let dir = std::env::temp_dir().join(format!("tidewater-advise-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.json");
        std::fs::write(&big, vec![b' '; (MAX_REPORT_BYTES + 10) as usize]).unwrap();
        let message = Measured::read(&big).unwrap_err().to_string();
        assert!(message.contains("larger than 16 MiB"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
        let message = Measured::read(&dir.join("none.json"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("cannot read it"), "{message}");
    }
}
