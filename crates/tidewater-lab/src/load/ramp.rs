//! `--ramp`: raise the number of users step by step, each step for a
//! fixed time, until a step breaks an objective; the knee is the last
//! step that met them all.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::load::record::LatencySummary;
use crate::load::slo::Verdict;

/// Most steps a ramp may have.
pub const MAX_STEPS: usize = 100;
/// Most users a step may have.
pub const MAX_USERS: u32 = 100_000;

/// The steps of a ramp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ramp {
    /// Users in each step, ascending.
    pub steps: Vec<u32>,
    /// How long each step runs.
    pub step_duration: Duration,
}

/// Reads `--ramp`: a list (`50,100,200,400,800`) or `START:STEP:MAX`
/// (`100:100:1000` is 100, 200, …, 1000), users strictly ascending, each
/// from 1 to 100 000, at most 100 steps.
///
/// ```
/// use tidewater_lab::load::ramp::parse_steps;
/// assert_eq!(parse_steps("50,100,200"), Ok(vec![50, 100, 200]));
/// assert_eq!(parse_steps("100:100:450"), Ok(vec![100, 200, 300, 400]));
/// assert!(parse_steps("200,100").unwrap_err().contains("ascending"));
/// ```
///
/// # Errors
/// Anything else, with a message saying what is allowed.
pub fn parse_steps(text: &str) -> Result<Vec<u32>, String> {
    const FORMS: &str = "write a list of user counts (50,100,200) or START:STEP:MAX (100:100:1000)";
    let number = |part: &str| -> Result<u32, String> {
        let value: u32 = part
            .trim()
            .parse()
            .map_err(|_| format!("{part:?} is not a number of users; {FORMS}"))?;
        if !(1..=MAX_USERS).contains(&value) {
            return Err(format!("{value} users: allowed 1 to {MAX_USERS} per step"));
        }
        Ok(value)
    };
    let steps: Vec<u32> = match text.split(':').collect::<Vec<_>>()[..] {
        [single] => single.split(',').map(number).collect::<Result<_, _>>()?,
        [start, step, max] => {
            let (start, step, max) = (number(start)?, number(step)?, number(max)?);
            if max < start {
                return Err(format!(
                    "START:STEP:MAX with MAX ({max}) below START ({start})"
                ));
            }
            let count = (max - start) / step + 1;
            if count as usize > MAX_STEPS {
                return Err(format!(
                    "{count} steps: allowed at most {MAX_STEPS}; take a larger STEP"
                ));
            }
            (0..count).map(|n| start + n * step).collect()
        }
        _ => return Err(FORMS.to_owned()),
    };
    if steps.len() > MAX_STEPS {
        return Err(format!(
            "{} steps: allowed at most {MAX_STEPS}",
            steps.len()
        ));
    }
    if steps.windows(2).any(|pair| pair[1] <= pair[0]) {
        return Err(format!(
            "the user counts must be strictly ascending, not {text}"
        ));
    }
    Ok(steps)
}

/// One step of a ramp, as measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Users in the step.
    pub users: u32,
    /// How long it ran, seconds.
    pub duration_seconds: f64,
    /// Requests made.
    pub requests: u64,
    /// Requests per second.
    pub throughput_rps: f64,
    /// Request latency.
    pub latency_seconds: LatencySummary,
    /// Errors over requests.
    pub error_rate: f64,
    /// Requests answered without transport failure or 5xx, over all.
    pub availability: f64,
    /// The upper bound of the acquisition wait's p99 bucket, seconds;
    /// `null` when unknown or above the last bucket.
    pub acquire_wait_p99_seconds: Option<f64>,
    /// Most connections in use at a sample.
    pub peak_in_use: u32,
    /// Most callers waiting for a connection at a sample.
    pub peak_waiters: u32,
    /// The step's verdicts.
    pub verdicts: Vec<Verdict>,
    /// All met.
    pub passed: bool,
}

/// The outcome of a ramp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RampReport {
    /// Seconds each step was to run.
    pub step_seconds: f64,
    /// The user counts asked for.
    pub planned: Vec<u32>,
    /// The steps run, in order; the ramp stops at the first that fails.
    pub steps: Vec<StepReport>,
    /// Users at the knee: the last step that met every objective; `null`
    /// when the first step already failed.
    pub knee_users: Option<u32>,
    /// Users at the first step that failed; `null` when none did.
    pub broke_at_users: Option<u32>,
}

impl RampReport {
    /// The report of `steps` run out of `planned`.
    pub fn of(planned: Vec<u32>, step_duration: Duration, steps: Vec<StepReport>) -> Self {
        let knee = knee(&steps);
        Self {
            step_seconds: step_duration.as_secs_f64(),
            planned,
            knee_users: knee.map(|index| steps[index].users),
            broke_at_users: steps.iter().find(|step| !step.passed).map(|s| s.users),
            steps,
        }
    }

    /// A sentence about the knee.
    pub fn summary(&self) -> String {
        match (self.knee_users, self.broke_at_users) {
            (Some(knee), Some(broke)) => format!(
                "knee at {knee} users: the last step that met every objective; {broke} users broke one"
            ),
            (Some(knee), None) => {
                format!("every step met the objectives, up to {knee} users: the knee lies beyond")
            }
            (None, Some(broke)) => {
                format!("no knee: the first step ({broke} users) already broke an objective")
            }
            (None, None) => "no step ran".into(),
        }
    }
}

/// The index of the last passing step before the first failing one.
pub fn knee(steps: &[StepReport]) -> Option<usize> {
    let passing = steps.iter().take_while(|step| step.passed).count();
    passing.checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        assert_eq!(parse_steps("5"), Ok(vec![5]));
        assert_eq!(parse_steps(" 50, 100 ,200"), Ok(vec![50, 100, 200]));
        assert_eq!(parse_steps("100:100:300"), Ok(vec![100, 200, 300]));
        assert_eq!(parse_steps("10:5:10"), Ok(vec![10]));
    }

    #[test]
    fn refusals_say_what_is_allowed() {
        for (bad, says) in [
            ("", "not a number"),
            ("0,10", "allowed 1 to 100000"),
            ("10,10", "strictly ascending"),
            ("1:1:1000", "at most 100"),
            ("100:10:50", "below START"),
            ("1:2", "START:STEP:MAX"),
            ("a,b", "not a number"),
            ("200000", "allowed 1 to 100000"),
        ] {
            let error = parse_steps(bad).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
        let many: Vec<String> = (1..=101).map(|n| n.to_string()).collect();
        assert!(
            parse_steps(&many.join(","))
                .unwrap_err()
                .contains("at most 100")
        );
    }

    fn step(users: u32, passed: bool) -> StepReport {
        StepReport {
            users,
            duration_seconds: 1.0,
            requests: 1,
            throughput_rps: 1.0,
            latency_seconds: LatencySummary::default(),
            error_rate: 0.0,
            availability: 1.0,
            acquire_wait_p99_seconds: Some(0.0),
            peak_in_use: 0,
            peak_waiters: 0,
            verdicts: Vec::new(),
            passed,
        }
    }

    #[test]
    fn the_knee_is_the_last_step_before_the_first_failure() {
        let second = Duration::from_secs(1);
        let ramp = RampReport::of(
            vec![10, 20, 40, 80],
            second,
            vec![step(10, true), step(20, true), step(40, false)],
        );
        assert_eq!((ramp.knee_users, ramp.broke_at_users), (Some(20), Some(40)));
        assert!(ramp.summary().contains("knee at 20 users"));
        let none = RampReport::of(vec![10], second, vec![step(10, false)]);
        assert_eq!((none.knee_users, none.broke_at_users), (None, Some(10)));
        let all = RampReport::of(vec![10, 20], second, vec![step(10, true), step(20, true)]);
        assert_eq!((all.knee_users, all.broke_at_users), (Some(20), None));
        assert!(all.summary().contains("beyond"));
        // A pass after a failure does not move the knee.
        assert_eq!(
            knee(&[step(1, true), step(2, false), step(3, true)]),
            Some(0)
        );
    }
}
