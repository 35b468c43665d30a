//! The virtual users: each one loops over the bank scenario until its
//! phase is over (its deadline passed, or the run's request budget is
//! spent), pausing a random think time before each request.
//!
//! One round of the scenario:
//! 1. read an account (`GET /api/accounts/{id}`): its balance;
//! 2. transfer from it to another account, at most the balance read and at
//!    most [`Scenario::max_amount`], with a new `Idempotency-Key`;
//! 3. after a `201`, with probability [`Scenario::resend`], send the same
//!    transfer again with the same key (a duplicate delivery: the answer
//!    must name the same transfer); after a timeout or a 5xx, retry once
//!    with the same key (what a careful client does);
//! 4. with probability [`Scenario::ledger`], read the account's ledger.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::load::check::{Journal, KeyAnswer};
use crate::load::record::{Op, Outcome, Recorder};

/// What the users do, and how often.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Mean pause before each request (exponentially distributed, at most
    /// ten times the mean).
    pub think: Duration,
    /// Chance of re-sending a transfer answered `201`, 0 to 1.
    pub resend: f64,
    /// Chance of reading the ledger in a round, 0 to 1.
    pub ledger: f64,
    /// Largest transfer, cents.
    pub max_amount: i64,
}

impl Default for Scenario {
    /// Think 1 s, re-send 10% of transfers, read the ledger in 20% of
    /// rounds, transfers of at most 10.00.
    fn default() -> Self {
        Self {
            think: Duration::from_secs(1),
            resend: 0.1,
            ledger: 0.2,
            max_amount: 1000,
        }
    }
}

/// What every user of a run shares.
pub struct Shared {
    /// The one HTTP client (timeouts set).
    pub client: reqwest::Client,
    /// The service's base URL.
    pub base: String,
    /// The run's accounts.
    pub accounts: Vec<i64>,
    /// What to do.
    pub scenario: Scenario,
    /// Prefix of the run's idempotency keys.
    pub run_id: String,
    /// Where latencies and answers go.
    pub recorder: Recorder,
    /// Every transfer request and its answers, for the check.
    pub journal: Journal,
}

/// When a phase's users stop: at its deadline, or when the run's request
/// budget is spent.
pub struct Stop {
    /// No request starts after this.
    pub deadline: Instant,
    /// Requests left to the run; `None`: no limit but the deadline.
    pub budget: Option<Arc<AtomicU64>>,
}

impl Stop {
    /// Whether one more request may start; takes it from the budget.
    pub fn take(&self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        self.budget.as_ref().is_none_or(|budget| {
            budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
        })
    }

    /// Whether the budget is spent.
    fn spent(&self) -> bool {
        self.budget
            .as_ref()
            .is_some_and(|budget| budget.load(Ordering::Relaxed) == 0)
    }

    /// Sleeps `pause`, or until the deadline; false when the phase is over.
    async fn pause(&self, pause: Duration) -> bool {
        if self.spent() {
            return false;
        }
        let until = Instant::now() + pause;
        if until >= self.deadline {
            tokio::time::sleep_until(self.deadline).await;
            return false;
        }
        if !pause.is_zero() {
            tokio::time::sleep_until(until).await;
        }
        true
    }
}

/// A think time: exponentially distributed around `mean`, at most ten
/// times it.
pub fn think_time(rng: &mut fastrand::Rng, mean: Duration) -> Duration {
    if mean.is_zero() {
        return Duration::ZERO;
    }
    // 1 - f64() is in (0, 1]: its logarithm is finite.
    let factor = (-(1.0 - rng.f64()).ln()).min(10.0);
    mean.mul_f64(factor)
}

/// An HTTP answer.
struct Reply {
    status: u16,
    problem: Option<String>,
    body: Value,
    replayed: bool,
}

/// The slug of a problem's `type`: its last path segment.
pub(crate) fn slug(body: &Value) -> Option<String> {
    let kind = body.get("type")?.as_str()?;
    Some(kind.rsplit('/').next().unwrap_or(kind).to_owned())
}

/// Sends `request`, records it as `op`, and returns the answer (or how it
/// failed).
async fn call(
    shared: &Shared,
    op: Op,
    request: reqwest::RequestBuilder,
) -> Result<Reply, &'static str> {
    let started = Instant::now();
    let result = async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|value| value == "true");
        let bytes = response.bytes().await?;
        Ok::<_, reqwest::Error>((status, replayed, bytes))
    }
    .await;
    let latency = started.elapsed();
    match result {
        Ok((status, replayed, bytes)) => {
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let problem = if status >= 400 { slug(&body) } else { None };
            shared.recorder.record(
                op,
                latency,
                &Outcome::Answered {
                    status,
                    problem: problem.clone(),
                },
            );
            Ok(Reply {
                status,
                problem,
                body,
                replayed,
            })
        }
        Err(error) => {
            let kind = if error.is_timeout() {
                "timeout"
            } else if error.is_connect() {
                "connect"
            } else {
                "other"
            };
            shared
                .recorder
                .record(op, latency, &Outcome::Transport(kind));
            Err(kind)
        }
    }
}

/// A transfer a user asks for, under its idempotency key.
struct Transfer<'a> {
    key: &'a str,
    from: i64,
    to: i64,
    amount: i64,
}

/// Sends `transfer` (as `op`: first sent, or resent); notes its answer in
/// the journal. Returns the answer, and when to try again after an
/// unknown outcome (seconds; `None`: not at all).
async fn transfer(shared: &Shared, op: Op, transfer: &Transfer<'_>) -> (KeyAnswer, Option<u64>) {
    let Transfer {
        key,
        from,
        to,
        amount,
    } = *transfer;
    let request = shared
        .client
        .post(format!("{}/api/transfers", shared.base))
        .header("Idempotency-Key", key)
        .json(&json!({ "from": from, "to": to, "amount": amount }));
    let slot = shared.journal.sent(key, from, to, amount);
    let reply = call(shared, op, request).await;
    let (answer, retry_after) = match reply {
        Ok(reply) if reply.status == 201 => match reply.body["id"].as_i64() {
            Some(id) => (
                KeyAnswer::Made {
                    id,
                    replayed: reply.replayed,
                },
                None,
            ),
            None => (KeyAnswer::Unknown, None),
        },
        Ok(reply) if reply.status >= 500 => (KeyAnswer::Unknown, Some(1)),
        Ok(reply) => (
            KeyAnswer::Refused {
                answer: match reply.problem {
                    Some(problem) => format!("{} {problem}", reply.status),
                    None => reply.status.to_string(),
                },
            },
            None,
        ),
        Err(_) => (KeyAnswer::Unknown, Some(0)),
    };
    shared.journal.settle(key, slot, answer.clone());
    (answer, retry_after)
}

/// One virtual user, number `user` of phase `phase`, until `stop`.
pub async fn user(shared: Arc<Shared>, stop: Arc<Stop>, phase: usize, user: u32, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let accounts = shared.accounts.len();
    if accounts < 2 {
        return;
    }
    let think = shared.scenario.think;
    // Users start spread over one mean think time.
    if !stop.pause(think.mul_f64(rng.f64())).await {
        return;
    }
    let mut round = 0u64;
    loop {
        let from = shared.accounts[rng.usize(..accounts)];
        if !stop.take() {
            return;
        }
        let request = shared
            .client
            .get(format!("{}/api/accounts/{from}", shared.base));
        let balance = match call(&shared, Op::ReadAccount, request).await {
            Ok(reply) if reply.status == 200 => reply.body["balance"].as_i64(),
            _ => None,
        };

        if !stop.pause(think_time(&mut rng, think)).await {
            return;
        }
        let to = loop {
            let to = shared.accounts[rng.usize(..accounts)];
            if to != from {
                break to;
            }
        };
        let most = balance
            .unwrap_or(shared.scenario.max_amount)
            .clamp(1, shared.scenario.max_amount.max(1));
        let amount = rng.i64(1..=most);
        round += 1;
        let key = format!("{}-{phase}-{user}-{round}", shared.run_id);
        if !stop.take() {
            return;
        }
        let asked = Transfer {
            key: &key,
            from,
            to,
            amount,
        };
        let (answer, retry_after) = transfer(&shared, Op::Transfer, &asked).await;
        let again = match (&answer, retry_after) {
            (KeyAnswer::Made { .. }, _) => rng.f64() < shared.scenario.resend,
            (KeyAnswer::Unknown, Some(seconds)) => {
                // Retry once, after the service's Retry-After (at most 1 s).
                stop.pause(Duration::from_secs(seconds)).await
            }
            _ => false,
        };
        if again && stop.take() {
            transfer(&shared, Op::Resend, &asked).await;
        }

        if rng.f64() < shared.scenario.ledger {
            if !stop.pause(think_time(&mut rng, think)).await || !stop.take() {
                return;
            }
            let request = shared.client.get(format!(
                "{}/api/accounts/{from}/ledger?limit=20",
                shared.base
            ));
            let _ = call(&shared, Op::Ledger, request).await;
        }
        if !stop.pause(think_time(&mut rng, think)).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_times_average_the_mean_and_stay_bounded() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mean = Duration::from_millis(50);
        let samples: Vec<Duration> = (0..20_000).map(|_| think_time(&mut rng, mean)).collect();
        let average = samples.iter().sum::<Duration>() / 20_000;
        assert!(
            (45..=55).contains(&average.as_millis()),
            "average {average:?}"
        );
        assert!(samples.iter().all(|d| *d <= mean * 10));
        assert!(samples.iter().any(|d| *d < mean / 10), "randomised");
        assert_eq!(think_time(&mut rng, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_budget_is_shared_and_exact() {
        let budget = Arc::new(AtomicU64::new(3));
        let stop = Stop {
            deadline: Instant::now() + Duration::from_secs(3600),
            budget: Some(budget.clone()),
        };
        let other = Stop {
            deadline: stop.deadline,
            budget: Some(budget),
        };
        assert!(stop.take());
        assert!(other.take());
        assert!(stop.take());
        assert!(!other.take());
        assert!(!stop.take());
        let past = Stop {
            deadline: Instant::now(),
            budget: None,
        };
        assert!(!past.take());
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_end_at_the_deadline() {
        let stop = Stop {
            deadline: Instant::now() + Duration::from_secs(1),
            budget: None,
        };
        assert!(stop.pause(Duration::from_millis(300)).await);
        let before = Instant::now();
        assert!(!stop.pause(Duration::from_secs(10)).await);
        assert_eq!(Instant::now(), stop.deadline);
        assert!(Instant::now() - before < Duration::from_secs(1));
    }

    #[test]
    fn problem_slugs() {
        let body = json!({ "type": "/problems/pool-timeout" });
        assert_eq!(slug(&body).as_deref(), Some("pool-timeout"));
        assert_eq!(slug(&json!({})), None);
    }
}
