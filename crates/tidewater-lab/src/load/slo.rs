//! Service level objectives and the verdicts against them, each with the
//! measured value and the bound.
//!
//! The defaults are the original fix's: the pool's acquisition wait p99
//! at most 100 ms, and at most 0.1% of requests in error. The acquisition
//! wait comes from the service's `db_client_connection_wait_time_seconds`
//! histogram, so its p99 is known only as the upper bound of a bucket; the
//! verdict is judged on that bound (it passes only when the bucket holding
//! the p99 lies wholly within the objective).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::load::check::CheckReport;
use crate::service::StopReport;

/// The objectives a run is judged against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slos {
    /// Most the pool's acquisition wait p99 may be.
    pub acquire_p99: Duration,
    /// Most errors over requests may be (0 to 1).
    pub error_rate: f64,
    /// Most the request latency p99 may be; `None`: not judged.
    pub latency_p99: Option<Duration>,
}

impl Default for Slos {
    /// Acquisition wait p99 ≤ 100 ms, error rate ≤ 0.1%, request latency
    /// not judged.
    fn default() -> Self {
        Self {
            acquire_p99: Duration::from_millis(100),
            error_rate: 0.001,
            latency_p99: None,
        }
    }
}

/// One pass or fail, with what was measured and the bound.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// `acquire_wait_p99`, `error_rate`, `latency_p99`, `requests`,
    /// `correctness` or `clean_shutdown`.
    pub name: String,
    /// Whether it was met.
    pub passed: bool,
    /// The measured value (seconds, or a ratio); `null` when unknown.
    pub measured: Option<f64>,
    /// The bound it is judged against; `null` for a yes/no check.
    pub bound: Option<f64>,
    /// In words: what was measured against what.
    pub text: String,
}

/// Ends a report's text: one line a verdict (`PASS` or `FAIL`, its name,
/// what was measured against what), then `PASSED` or `FAILED`.
///
/// ```
/// use tidewater_lab::load::slo::{Verdict, write_verdicts};
/// let verdict = Verdict { name: "requests".into(), passed: true, measured: None, bound: None, text: "12 requests made".into() };
/// let mut out = String::new();
/// write_verdicts(&mut out, &[verdict], true);
/// assert_eq!(out, "  PASS  requests          12 requests made\nPASSED\n");
/// ```
pub fn write_verdicts(out: &mut String, verdicts: &[Verdict], passed: bool) {
    use std::fmt::Write as _;
    for verdict in verdicts {
        let _ = writeln!(
            out,
            "  {}  {:<17} {}",
            if verdict.passed { "PASS" } else { "FAIL" },
            verdict.name,
            verdict.text
        );
    }
    let _ = writeln!(out, "{}", if passed { "PASSED" } else { "FAILED" });
}

/// What the latency and error verdicts are judged on.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Measured {
    /// Requests sent.
    pub requests: u64,
    /// Errors over requests.
    pub error_rate: f64,
    /// Request latency p99, seconds.
    pub latency_p99: f64,
    /// The upper bound of the acquisition wait's p99 bucket, seconds
    /// (infinite: above the last bucket); `None` when `/metrics` gave no
    /// acquisition for the run.
    pub acquire_p99: Option<f64>,
}

/// Seconds, written for people with three significant digits: `250 µs`,
/// `12.5 ms`, `3.20 s`.
pub fn seconds(value: f64) -> String {
    fn three(value: f64) -> String {
        let digits = if value >= 100.0 {
            0
        } else if value >= 10.0 {
            1
        } else {
            2
        };
        format!("{value:.digits$}")
    }
    if value.is_infinite() {
        "∞".into()
    } else if value >= 1.0 {
        format!("{} s", three(value))
    } else if value >= 0.001 {
        let ms = three(value * 1e3);
        let ms = if ms.contains('.') {
            ms.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            ms
        };
        format!("{ms} ms")
    } else {
        format!("{:.0} µs", value * 1e6)
    }
}

/// A ratio as a percentage: `0.100 %`.
pub fn percent(value: f64) -> String {
    format!("{:.3} %", value * 100.0)
}

/// The verdicts on latency and errors: at least one request was made,
/// and each objective of `slos`.
pub fn judge(slos: &Slos, measured: &Measured) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    verdicts.push(Verdict {
        name: "requests".into(),
        passed: measured.requests > 0,
        measured: Some(measured.requests as f64),
        bound: None,
        text: format!("{} requests made (at least one needed)", measured.requests),
    });
    let bound = slos.acquire_p99.as_secs_f64();
    verdicts.push(match measured.acquire_p99 {
        Some(p99) => Verdict {
            name: "acquire_wait_p99".into(),
            passed: p99 <= bound,
            measured: p99.is_finite().then_some(p99),
            bound: Some(bound),
            text: format!(
                "acquisition wait p99 ≤ {} (histogram bucket bound), objective ≤ {}",
                seconds(p99),
                seconds(bound)
            ),
        },
        None => Verdict {
            name: "acquire_wait_p99".into(),
            passed: false,
            measured: None,
            bound: Some(bound),
            text: format!(
                "acquisition wait p99 unknown: /metrics gave no acquisition for the run; objective ≤ {}",
                seconds(bound)
            ),
        },
    });
    verdicts.push(Verdict {
        name: "error_rate".into(),
        passed: measured.error_rate <= slos.error_rate,
        measured: Some(measured.error_rate),
        bound: Some(slos.error_rate),
        text: format!(
            "error rate {}, objective ≤ {}",
            percent(measured.error_rate),
            percent(slos.error_rate)
        ),
    });
    if let Some(limit) = slos.latency_p99 {
        let bound = limit.as_secs_f64();
        verdicts.push(Verdict {
            name: "latency_p99".into(),
            passed: measured.latency_p99 <= bound,
            measured: Some(measured.latency_p99),
            bound: Some(bound),
            text: format!(
                "request latency p99 {}, objective ≤ {}",
                seconds(measured.latency_p99),
                seconds(bound)
            ),
        });
    }
    verdicts
}

/// The verdict of the correctness check.
pub fn correctness(check: &CheckReport) -> Verdict {
    let text = if check.passed {
        format!(
            "money conserved ({} cents in {} accounts), {} acknowledged transfers each booked once, {} replays answered with the same transfer, every ledger balances",
            check.money_found, check.accounts, check.transfers_acknowledged, check.replays
        )
    } else {
        format!(
            "{} violation(s): {}",
            check.violation_count,
            check.violations.first().map_or("", String::as_str)
        )
    };
    Verdict {
        name: "correctness".into(),
        passed: check.passed,
        measured: Some(check.violation_count as f64),
        bound: Some(0.0),
        text,
    }
}

/// The verdict on a spawned service's shutdown: exit code 0 after
/// SIGTERM, within the bound.
pub fn clean_shutdown(stop: &StopReport) -> Verdict {
    let how = match (stop.killed, stop.exit_code) {
        (true, _) => "did not exit in time and was killed".to_owned(),
        (false, Some(code)) => format!("exited with code {code}"),
        (false, None) => "was ended by a signal".to_owned(),
    };
    Verdict {
        name: "clean_shutdown".into(),
        passed: stop.clean(),
        measured: Some(stop.seconds),
        bound: None,
        text: format!(
            "after SIGTERM the service {how} in {}",
            seconds(stop.seconds)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_name<'a>(verdicts: &'a [Verdict], name: &str) -> &'a Verdict {
        verdicts.iter().find(|v| v.name == name).unwrap()
    }

    fn measured() -> Measured {
        Measured {
            requests: 10_000,
            error_rate: 0.0005,
            latency_p99: 0.030,
            acquire_p99: Some(0.025),
        }
    }

    #[test]
    fn defaults_are_the_original_fix() {
        let slos = Slos::default();
        assert_eq!(slos.acquire_p99, Duration::from_millis(100));
        assert_eq!(slos.error_rate, 0.001);
        let verdicts = judge(&slos, &measured());
        assert!(verdicts.iter().all(|v| v.passed), "{verdicts:?}");
        assert_eq!(verdicts.len(), 3, "no latency objective by default");
        let acquire = by_name(&verdicts, "acquire_wait_p99");
        assert_eq!((acquire.measured, acquire.bound), (Some(0.025), Some(0.1)));
        assert!(acquire.text.contains("≤ 25 ms"), "{}", acquire.text);
        assert!(acquire.text.contains("≤ 100 ms"), "{}", acquire.text);
    }

    #[test]
    fn each_objective_fails_on_its_own() {
        let slos = Slos {
            latency_p99: Some(Duration::from_millis(20)),
            ..Slos::default()
        };
        let mut slow = measured();
        slow.acquire_p99 = Some(0.25);
        let verdicts = judge(&slos, &slow);
        assert!(!by_name(&verdicts, "acquire_wait_p99").passed);
        assert!(by_name(&verdicts, "error_rate").passed);
        assert!(!by_name(&verdicts, "latency_p99").passed);

        let mut failing = measured();
        failing.error_rate = 0.0011;
        let verdicts = judge(&Slos::default(), &failing);
        let errors = by_name(&verdicts, "error_rate");
        assert!(!errors.passed);
        assert!(errors.text.contains("0.110 %"), "{}", errors.text);
        assert!(by_name(&verdicts, "acquire_wait_p99").passed);
    }

    #[test]
    fn the_bound_itself_passes() {
        let mut at = measured();
        at.acquire_p99 = Some(0.1);
        at.error_rate = 0.001;
        assert!(judge(&Slos::default(), &at).iter().all(|v| v.passed));
    }

    #[test]
    fn unknown_or_overflowing_waits_fail() {
        let mut unknown = measured();
        unknown.acquire_p99 = None;
        let verdicts = judge(&Slos::default(), &unknown);
        let acquire = by_name(&verdicts, "acquire_wait_p99");
        assert!(!acquire.passed);
        assert!(acquire.text.contains("unknown"), "{}", acquire.text);
        let mut above = measured();
        above.acquire_p99 = Some(f64::INFINITY);
        let acquire = judge(&Slos::default(), &above)
            .into_iter()
            .find(|v| v.name == "acquire_wait_p99")
            .unwrap();
        assert!(!acquire.passed);
        assert_eq!(acquire.measured, None, "JSON has no infinity");
    }

    #[test]
    fn no_requests_fails() {
        let verdicts = judge(&Slos::default(), &Measured::default());
        assert!(!by_name(&verdicts, "requests").passed);
    }

    #[test]
    fn correctness_and_shutdown_verdicts() {
        let failed = CheckReport {
            passed: false,
            violation_count: 2,
            violations: vec!["money not conserved".into(), "x".into()],
            ..CheckReport::default()
        };
        let verdict = correctness(&failed);
        assert!(!verdict.passed);
        assert!(verdict.text.contains("2 violation(s): money not conserved"));
        let stop = StopReport {
            exit_code: Some(0),
            seconds: 0.2,
            killed: false,
        };
        assert!(clean_shutdown(&stop).passed);
        let killed = StopReport {
            killed: true,
            ..stop
        };
        let verdict = clean_shutdown(&killed);
        assert!(!verdict.passed);
        assert!(verdict.text.contains("killed"), "{}", verdict.text);
        let failed = StopReport {
            exit_code: Some(1),
            ..stop
        };
        assert!(!clean_shutdown(&failed).passed);
    }

    #[test]
    fn seconds_are_readable() {
        assert_eq!(seconds(0.1), "100 ms");
        assert_eq!(seconds(0.0125), "12.5 ms");
        assert_eq!(seconds(0.000_25), "250 µs");
        assert_eq!(seconds(3.2), "3.20 s");
        assert_eq!(seconds(0.001391), "1.39 ms");
        assert_eq!(seconds(0.212_4), "212 ms");
        assert_eq!(seconds(45.0), "45.0 s");
        assert_eq!(seconds(f64::INFINITY), "∞");
        assert_eq!(percent(0.001), "0.100 %");
    }
}
