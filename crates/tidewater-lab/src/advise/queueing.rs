//! The queueing arithmetic behind `tidewater-lab advise`: Little's law, the
//! Erlang B and C formulas of the M/M/c queue, the tail of the acquisition
//! wait, and the Allen–Cunneen correction for use times more variable than
//! the exponential.
//!
//! A pool of `c` connections is the `c` servers of the queue; checkouts
//! are the arrivals (rate λ); the time a connection is held is the service
//! time (mean W). The offered load `a = λ·W` (in Erlangs) is the mean
//! number of connections in use (Little's law), and the pool is stable only
//! when `c > a`.
//!
//! ```
//! use tidewater_lab::advise::queueing::{erlang_c, littles_law};
//!
//! // 2 000 checkouts a second, each holding its connection 4 ms:
//! let busy = littles_law(2000.0, 0.004);
//! assert!((busy - 8.0).abs() < 1e-12);
//! // with 10 connections, 41% of checkouts find them all in use:
//! assert!((erlang_c(10, busy) - 0.4092).abs() < 1e-4);
//! ```

/// The standard normal quantile at 0.99, for fitting a p99.
const Z99: f64 = 2.326_347_874_040_841;

/// Little's law, `L = λ·W`: the mean number of items in a system, from
/// the rate at which they arrive (per second) and the mean time each
/// spends inside (seconds). For a pool: mean connections in use, from
/// checkouts per second and the mean use time.
///
/// ```
/// use tidewater_lab::advise::queueing::littles_law;
/// assert_eq!(littles_law(500.0, 0.01), 5.0);
/// ```
pub fn littles_law(rate: f64, time: f64) -> f64 {
    rate * time
}

/// Erlang B: the probability that all `c` servers are busy in a loss
/// system (no queue) offered `a` Erlangs. Computed with the stable
/// recursion `B(0) = 1, B(n) = a·B(n-1) / (n + a·B(n-1))`, so large `c`
/// neither overflows nor loses precision.
///
/// ```
/// use tidewater_lab::advise::queueing::erlang_b;
/// assert!((erlang_b(1, 1.0) - 0.5).abs() < 1e-12);
/// assert_eq!(erlang_b(5, 0.0), 0.0);
/// ```
pub fn erlang_b(c: u32, a: f64) -> f64 {
    (1..=c).fold(1.0, |b, n| next_erlang_b(b, n, a))
}

/// One step of the Erlang B recursion: `B(n)` from `B(n-1)`.
fn next_erlang_b(previous: f64, n: u32, a: f64) -> f64 {
    let top = a * previous;
    top / (f64::from(n) + top)
}

/// Erlang C: the probability that a checkout has to wait (all `c`
/// connections in use) in an M/M/c queue offered `a` Erlangs; 1 when the
/// queue is unstable (`c <= a`), since then nearly every checkout waits.
///
/// ```
/// use tidewater_lab::advise::queueing::erlang_c;
/// // M/M/3 at 2 Erlangs: 4/9 of the arrivals wait.
/// assert!((erlang_c(3, 2.0) - 4.0 / 9.0).abs() < 1e-12);
/// assert_eq!(erlang_c(2, 2.0), 1.0);
/// ```
pub fn erlang_c(c: u32, a: f64) -> f64 {
    erlang_c_from_b(c, a, erlang_b(c, a))
}

/// Erlang C from Erlang B at the same `c` and `a`:
/// `C = c·B / (c - a·(1 - B))`.
fn erlang_c_from_b(c: u32, a: f64, b: f64) -> f64 {
    let c = f64::from(c);
    if c <= a {
        return 1.0;
    }
    (c * b / (c - a * (1.0 - b))).clamp(0.0, 1.0)
}

/// How much more the acquisition wait stretches than in M/M/c, from the
/// use time's mean and p99: the Allen–Cunneen factor `(1 + cs²) / 2`,
/// with the squared coefficient of variation `cs²` of a lognormal
/// distribution fitted to the two numbers (Poisson arrivals: `ca² = 1`).
///
/// Never below 1: the advice does not assume use times more regular than
/// the exponential. It is also 1 when the p99 is unknown, or at or below
/// the mean (outliers above the p99 then dominate the mean, and two
/// numbers cannot tell their spread). A p99 beyond about 15 times the
/// mean is past what any lognormal fits; the widest lognormal is taken.
///
/// ```
/// use tidewater_lab::advise::queueing::variability;
/// assert_eq!(variability(0.004, None), 1.0);
/// // p99 five times the mean: about as variable as the exponential.
/// assert!((variability(0.004, Some(0.020)) - 1.022).abs() < 1e-3);
/// // p99 ten times the mean: waits stretch by a factor of about 3.8.
/// assert!((variability(0.004, Some(0.040)) - 3.844).abs() < 1e-3);
/// ```
pub fn variability(mean: f64, p99: Option<f64>) -> f64 {
    let Some(p99) = p99 else { return 1.0 };
    if !(mean > 0.0 && p99 > mean) {
        return 1.0;
    }
    // ln(p99 / mean) = Z·σ - σ²/2 for a lognormal; the smaller root.
    let discriminant = Z99 * Z99 - 2.0 * (p99 / mean).ln();
    let sigma = Z99 - discriminant.max(0.0).sqrt();
    let cs2 = (sigma * sigma).exp_m1();
    ((1.0 + cs2) / 2.0).max(1.0)
}

/// The `quantile` (0.99 for the p99) of the acquisition wait in seconds,
/// for `c` connections offered `a` Erlangs with mean use time `use_time`
/// seconds and the Allen–Cunneen factor `variability`; `None` when the
/// queue is unstable (`c <= a`) and waits grow without bound.
///
/// In M/M/c a checkout waits with probability `C` (Erlang C), and a
/// waiting one waits an exponential time of mean `W / (c - a)`; so
/// `P(wait > t) = C·exp(-(c - a)·t / W)`. The factor stretches the
/// conditional wait: `W` becomes `variability·W`. The quantile is 0 when
/// `C <= 1 - quantile`: that caller does not wait at all.
///
/// ```
/// use tidewater_lab::advise::queueing::wait_quantile;
/// // M/M/1 at half load, 10 ms service: half wait, 20 ms on average if they do.
/// let p99 = wait_quantile(1, 0.5, 0.010, 1.0, 0.99).unwrap();
/// assert!((p99 - 0.020 * 50f64.ln()).abs() < 1e-12);
/// assert_eq!(wait_quantile(20, 5.0, 0.010, 1.0, 0.99), Some(0.0));
/// assert_eq!(wait_quantile(4, 4.0, 0.010, 1.0, 0.99), None);
/// ```
pub fn wait_quantile(
    c: u32,
    a: f64,
    use_time: f64,
    variability: f64,
    quantile: f64,
) -> Option<f64> {
    let demand = Demand {
        busy: a,
        use_time,
        variability,
    };
    wait_quantile_given(c, erlang_c(c, a), &demand, quantile)
}

/// [`wait_quantile`] for `demand` with Erlang C (`p_wait`) already
/// computed.
fn wait_quantile_given(c: u32, p_wait: f64, demand: &Demand, quantile: f64) -> Option<f64> {
    let spare = f64::from(c) - demand.busy;
    if spare <= 0.0 {
        return None;
    }
    let beyond = 1.0 - quantile;
    if p_wait <= beyond {
        return Some(0.0);
    }
    Some(demand.variability * demand.use_time * (p_wait / beyond).ln() / spare)
}

/// The load offered to one pool.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Demand {
    /// The offered load in Erlangs, `a = λ·W`: the mean connections in use.
    pub busy: f64,
    /// The mean time a checkout holds its connection, seconds (`W`).
    pub use_time: f64,
    /// The Allen–Cunneen factor stretching the waits (1: exponential use
    /// times; see [`variability`]).
    pub variability: f64,
}

/// What the size [`size_for`] finds must meet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Targets {
    /// The most the p99 acquisition wait may be, seconds.
    pub wait_p99: f64,
    /// The most the utilization `a / c` may be.
    pub max_utilization: f64,
    /// The largest size tried.
    pub limit: u32,
}

/// What a pool of one size gives under one load, in the M/M/c model.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Service {
    /// Connections in the pool (`c`).
    pub connections: u32,
    /// The share of checkouts that wait (Erlang C).
    pub p_wait: f64,
    /// The p99 acquisition wait in seconds; `None` when the pool cannot
    /// keep up (`c <= a`) and waits grow without bound.
    pub wait_p99_seconds: Option<f64>,
    /// Mean connections in use over the pool's size, `a / c`.
    pub utilization: f64,
}

impl Service {
    /// The model's answer for `connections` offered `a` Erlangs.
    ///
    /// ```
    /// use tidewater_lab::advise::queueing::Service;
    /// let service = Service::of(3, 2.0, 0.004, 1.0);
    /// assert!((service.p_wait - 4.0 / 9.0).abs() < 1e-12);
    /// assert!((service.utilization - 2.0 / 3.0).abs() < 1e-12);
    /// ```
    pub fn of(connections: u32, a: f64, use_time: f64, variability: f64) -> Self {
        let demand = Demand {
            busy: a,
            use_time,
            variability,
        };
        Self::given(connections, erlang_b(connections, a), &demand)
    }

    /// The model's answer for `connections` under `demand`, with Erlang B
    /// (`b`) already computed.
    fn given(connections: u32, b: f64, demand: &Demand) -> Self {
        let p_wait = erlang_c_from_b(connections, demand.busy, b);
        Self {
            connections,
            p_wait,
            wait_p99_seconds: wait_quantile_given(connections, p_wait, demand, 0.99),
            utilization: if connections == 0 {
                f64::INFINITY
            } else {
                demand.busy / f64::from(connections)
            },
        }
    }
}

/// Which condition decided the size [`size_for`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The p99 acquisition wait target.
    Wait,
    /// The utilization ceiling (headroom for surges).
    Utilization,
    /// Neither: one connection meets both.
    Minimum,
}

/// The smallest pool that meets the targets, and which target decided it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Sizing {
    /// The model at that size.
    pub service: Service,
    /// The condition met last.
    pub bound_by: Bound,
}

/// The smallest `c` from 1 to the targets' `limit` whose p99 acquisition
/// wait under `demand` is at most their `wait_p99` seconds and whose
/// utilization `a / c` is at most their `max_utilization`; `None` when
/// even `limit` connections do not.
///
/// ```
/// use tidewater_lab::advise::queueing::{Bound, Demand, Targets, size_for};
/// // 8 Erlangs, 4 ms use time, p99 wait under 100 ms, at most 80% busy:
/// let demand = Demand { busy: 8.0, use_time: 0.004, variability: 1.0 };
/// let targets = Targets { wait_p99: 0.100, max_utilization: 0.8, limit: 10_000 };
/// let sizing = size_for(&demand, &targets).unwrap();
/// assert_eq!(sizing.service.connections, 10);
/// assert_eq!(sizing.bound_by, Bound::Utilization);
/// ```
pub fn size_for(demand: &Demand, targets: &Targets) -> Option<Sizing> {
    let mut b = 1.0;
    let mut wait_met_before = false;
    for c in 1..=targets.limit {
        b = next_erlang_b(b, c, demand.busy);
        let service = Service::given(c, b, demand);
        let wait_ok = service
            .wait_p99_seconds
            .is_some_and(|wait| wait <= targets.wait_p99);
        // A small tolerance, so that 8 Erlangs on 10 connections counts
        // as the 80% it is.
        let utilization_ok = service.utilization <= targets.max_utilization * (1.0 + 1e-9);
        if wait_ok && utilization_ok {
            // Which one held out longer: was the wait already met one
            // connection earlier?
            let bound_by = if c == 1 {
                Bound::Minimum
            } else if wait_met_before {
                Bound::Utilization
            } else {
                Bound::Wait
            };
            return Some(Sizing { service, bound_by });
        }
        wait_met_before = wait_ok;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`size_for`] of `a` Erlangs held `use_time` each, stretched by
    /// `variability`, for a p99 wait of `wait_p99`, `max_utilization` and
    /// `limit`.
    fn size(
        a: f64,
        use_time: f64,
        variability: f64,
        wait_p99: f64,
        max_utilization: f64,
        limit: u32,
    ) -> Option<Sizing> {
        let demand = Demand {
            busy: a,
            use_time,
            variability,
        };
        size_for(
            &demand,
            &Targets {
                wait_p99,
                max_utilization,
                limit,
            },
        )
    }

    /// `actual` within `relative` of `expected`, or a message saying how far.
    fn assert_close(what: &str, actual: f64, expected: f64, relative: f64) {
        let off = (actual - expected).abs() / expected.abs();
        assert!(
            off <= relative,
            "{what}: {actual} is {:.2} % off {expected}, more than {:.2} %",
            off * 100.0,
            relative * 100.0
        );
    }

    #[test]
    fn littles_law_multiplies_rate_by_time() {
        assert_eq!(littles_law(0.0, 0.5), 0.0);
        assert!((littles_law(1234.0, 0.0035) - 4.319).abs() < 1e-12);
    }

    #[test]
    fn erlang_c_matches_published_values() {
        // The classic call-centre tables: 10 Erlangs on 11 and 12 agents.
        assert!((erlang_c(11, 10.0) - 0.6821).abs() < 1e-4);
        assert!((erlang_c(12, 10.0) - 0.4494).abs() < 1e-4);
        // M/M/1: the probability of waiting is the utilization.
        for a in [0.1, 0.5, 0.9] {
            assert!((erlang_c(1, a) - a).abs() < 1e-12);
        }
    }

    /// Erlang C worked by hand from the textbook formula
    /// `C(c, a) = T / (S + T)`, with `S = Σ_{k<c} a^k / k!` and
    /// `T = a^c / c! · c / (c - a)`, in exact fractions.
    #[test]
    fn erlang_c_matches_values_worked_by_hand() {
        // c = 2, a = 1 (λ = 250/s, W = 4 ms): S = 1 + 1 = 2,
        // T = 1/2 · 2/1 = 1, C = 1/3.
        assert_close("C(2, 1)", erlang_c(2, 1.0), 1.0 / 3.0, 1e-12);
        // c = 3, a = 2 (λ = 500/s, W = 4 ms): S = 1 + 2 + 4/2 = 5,
        // T = 8/6 · 3/1 = 4, C = 4/9.
        assert_close("C(3, 2)", erlang_c(3, 2.0), 4.0 / 9.0, 1e-12);
        // c = 7, a = 5: S = 1 + 5 + 12.5 + 20.833 + 26.042 + 26.042
        // + 21.701 = 113.118, T = 78125/5040 · 7/2 = 54.253,
        // C = 54.253 / 167.372 = 15625/48203 = 0.324150.
        assert_close("C(7, 5)", erlang_c(7, 5.0), 15625.0 / 48203.0, 1e-12);
        // c = 9, a = 8: S = 1766.359, T = 8^9/9! · 9/1 = 3328.813,
        // C = 1048576/1604979 = 0.653327.
        assert_close(
            "C(9, 8)",
            erlang_c(9, 8.0),
            1_048_576.0 / 1_604_979.0,
            1e-12,
        );
        // c = 10, a = 8: S = 2136.227, T = 8^10/10! · 10/2 = 1479.472,
        // C = 4194304/10250507 = 0.409180.
        assert_close(
            "C(10, 8)",
            erlang_c(10, 8.0),
            4_194_304.0 / 10_250_507.0,
            1e-12,
        );
        // Almost no load, c = 5, a = 0.2: S = 1 + 0.2 + 0.02 + 0.00133
        // + 0.0000667 = 1.2214, T = 0.2^5/120 · 5/4.8 = 2.778e-6,
        // C = 2.778e-6 / 1.2214 = 2.274e-6.
        assert_close("C(5, 0.2)", erlang_c(5, 0.2), 2.274e-6, 1e-3);
    }

    #[test]
    fn erlang_c_stays_finite_for_large_pools() {
        // Factorials of 5000 overflow f64; the recursion does not.
        let p = erlang_c(5000, 4900.0);
        assert!(p.is_finite() && p > 0.0 && p < 1.0, "{p}");
        assert_eq!(erlang_c(5000, 5000.0), 1.0);
        assert_eq!(erlang_c(3, 0.0), 0.0);
    }

    /// The wait quantiles worked by hand from
    /// `P(wait > t) = C · exp(-(c - a) · t / W)`, so
    /// `t_q = W · ln(C / (1 - q)) / (c - a)`.
    #[test]
    fn the_wait_quantile_matches_values_worked_by_hand() {
        // c = 3, a = 2, W = 4 ms, C = 4/9:
        // p99 = 4 ms · ln(44.44) / 1 = 4 ms · 3.79424 = 15.177 ms;
        // p90 = 4 ms · ln(4.444) = 4 ms · 1.49165 = 5.967 ms;
        // p50 = 0: C = 0.444 < 0.5, over half do not wait at all.
        let p99 = wait_quantile(3, 2.0, 0.004, 1.0, 0.99).unwrap();
        assert_close("p99, c = 3, a = 2", p99, 0.015_177, 1e-4);
        let p90 = wait_quantile(3, 2.0, 0.004, 1.0, 0.90).unwrap();
        assert_close("p90, c = 3, a = 2", p90, 0.005_967, 1e-4);
        assert_eq!(wait_quantile(3, 2.0, 0.004, 1.0, 0.5), Some(0.0));
        // c = 7, a = 5, W = 5 ms, C = 0.324150:
        // p99 = 5 ms · ln(32.415) / 2 = 2.5 ms · 3.47862 = 8.697 ms.
        let p99 = wait_quantile(7, 5.0, 0.005, 1.0, 0.99).unwrap();
        assert_close("p99, c = 7, a = 5", p99, 0.008_697, 1e-4);
        // c = 9, a = 8, W = 4 ms, C = 0.653327:
        // p99 = 4 ms · ln(65.333) = 4 ms · 4.17949 = 16.718 ms;
        // twice the variability, twice the wait: 33.436 ms.
        let p99 = wait_quantile(9, 8.0, 0.004, 1.0, 0.99).unwrap();
        assert_close("p99, c = 9, a = 8", p99, 0.016_718, 1e-4);
        let doubled = wait_quantile(9, 8.0, 0.004, 2.0, 0.99).unwrap();
        assert_close("p99, c = 9, a = 8, doubled", doubled, 0.033_436, 1e-4);
    }

    #[test]
    fn the_wait_tail_falls_with_more_connections() {
        let mut last = f64::INFINITY;
        for c in 9..20 {
            let wait = wait_quantile(c, 8.0, 0.004, 1.0, 0.99).unwrap();
            assert!(wait <= last, "p99 at {c} rose: {wait} > {last}");
            last = wait;
        }
        assert_eq!(last, 0.0);
    }

    /// The acquisition waits of `checkouts` checkouts in a pool of `c`
    /// connections, simulated event by event: Poisson arrivals at `rate`
    /// per second, exponential use times of mean `use_time` seconds, a
    /// FIFO queue (each checkout takes the connection that frees first).
    /// Seeded, so every run gives the same waits. The first 10 000
    /// checkouts, while the queue fills from empty, are left out.
    fn simulated_waits(c: u32, rate: f64, use_time: f64, checkouts: usize, seed: u64) -> Vec<f64> {
        const WARM_UP: usize = 10_000;
        let mut rng = fastrand::Rng::with_seed(seed);
        // An exponential draw of `mean`; 1 - f64() is in (0, 1].
        let mut exponential = |mean: f64| -mean * (1.0 - rng.f64()).ln();
        let mut free_at = vec![0.0_f64; c as usize];
        let mut now = 0.0;
        let mut waits = Vec::with_capacity(checkouts);
        for n in 0..WARM_UP + checkouts {
            now += exponential(1.0 / rate);
            let (first, &free) = free_at
                .iter()
                .enumerate()
                .min_by(|x, y| x.1.total_cmp(y.1))
                .expect("at least one connection");
            let start = free.max(now);
            if n >= WARM_UP {
                waits.push(start - now);
            }
            free_at[first] = start + exponential(use_time);
        }
        waits
    }

    /// The `q` quantile of `sorted` (ascending): the value at rank `⌈q·n⌉`.
    fn quantile_of(sorted: &[f64], q: f64) -> f64 {
        let rank = (q * sorted.len() as f64).ceil() as usize;
        sorted[rank.max(1) - 1]
    }

    /// The model's waits against a simulation of the queue it models.
    ///
    /// The simulation is checked first against what M/M/c gives by hand,
    /// so that it can be trusted: the share that waits is C and the mean
    /// wait is `C · W / (c - a)` (c = 3, a = 2, W = 4 ms: 4/9 · 4 ms =
    /// 1.778 ms; c = 10, a = 8: 0.40918 · 4 ms / 2 = 0.818 ms).
    ///
    /// The tolerances: over seeds 0 to 7, a million simulated checkouts
    /// gave the share waiting within 1 % of C, the mean within 2.2 % of
    /// the formula, p90 and p95 within 2 % and p99 within 4 % of the
    /// model's; the tolerances (2 %, 5 %, 6 %) leave room over that, and
    /// the formula errors they guard against move the p99 by 20 % or more
    /// (the wait not conditioned on C: +21 %; Erlang B for C: -20 %;
    /// c for c - a: -67 %).
    #[test]
    fn the_wait_quantiles_match_a_simulation_of_the_queue() {
        // Each case with its C worked by hand above.
        let cases = [
            (3, 500.0, 0.004, 4.0 / 9.0),
            (10, 2000.0, 0.004, 4_194_304.0 / 10_250_507.0),
        ];
        for (c, rate, use_time, p_wait) in cases {
            let a = littles_law(rate, use_time);
            let mut waits = simulated_waits(c, rate, use_time, 1_000_000, 7);
            let waited = waits.iter().filter(|&&wait| wait > 0.0).count() as f64;
            assert_close(
                &format!("share waiting, c = {c}"),
                waited / waits.len() as f64,
                p_wait,
                0.02,
            );
            let mean = waits.iter().sum::<f64>() / waits.len() as f64;
            assert_close(
                &format!("simulated mean wait, c = {c}"),
                mean,
                p_wait * use_time / (f64::from(c) - a),
                0.05,
            );
            waits.sort_by(f64::total_cmp);
            for q in [0.90, 0.95, 0.99] {
                let model = wait_quantile(c, a, use_time, 1.0, q).unwrap();
                assert_close(
                    &format!("wait quantile {q}, c = {c}, a = {a}"),
                    model,
                    quantile_of(&waits, q),
                    0.06,
                );
            }
            // Below the share that waits, the model says no wait, and so
            // does the simulation.
            assert_eq!(wait_quantile(c, a, use_time, 1.0, 0.5), Some(0.0));
            assert_eq!(quantile_of(&waits, 0.5), 0.0);
        }
    }

    #[test]
    fn size_for_picks_the_smallest_pool_that_meets_both_targets() {
        // 0.5 Erlangs, 20 ms use: one connection waits p99 = 20ms·ln(50)/0.5
        // = 156 ms, over 100 ms; two connections meet it.
        let sizing = size(0.5, 0.020, 1.0, 0.100, 1.0, 100).unwrap();
        assert_eq!(sizing.service.connections, 2);
        assert_eq!(sizing.bound_by, Bound::Wait);
        let one = Service::of(1, 0.5, 0.020, 1.0);
        assert!(one.wait_p99_seconds.unwrap() > 0.100);
        // The utilization ceiling: 8 Erlangs at 50% needs 16.
        let sizing = size(8.0, 0.004, 1.0, 0.100, 0.5, 100).unwrap();
        assert_eq!(sizing.service.connections, 16);
        assert_eq!(sizing.bound_by, Bound::Utilization);
        // A tight wait target with long use times needs more.
        let loose = size(8.0, 0.050, 1.0, 0.100, 1.0, 100).unwrap();
        let tight = size(8.0, 0.050, 1.0, 0.001, 1.0, 100).unwrap();
        assert!(tight.service.connections > loose.service.connections);
        assert!(tight.service.wait_p99_seconds.unwrap() <= 0.001);
        // No load: one connection.
        let idle = size(0.0, 0.004, 1.0, 0.100, 0.8, 100).unwrap();
        assert_eq!(idle.service.connections, 1);
        assert_eq!(idle.bound_by, Bound::Minimum);
        // More than the limit can serve.
        assert!(size(200.0, 0.004, 1.0, 0.100, 0.8, 100).is_none());
    }

    #[test]
    fn variability_grows_with_the_tail() {
        assert_eq!(variability(0.004, Some(0.004)), 1.0);
        assert_eq!(variability(0.004, Some(0.001)), 1.0);
        assert_eq!(variability(0.0, Some(0.001)), 1.0);
        let mut last = 1.0;
        for ratio in [6.0, 8.0, 10.0, 14.0, 20.0, 100.0] {
            let k = variability(0.001, Some(0.001 * ratio));
            assert!(k.is_finite() && k >= last, "{ratio}: {k} < {last}");
            last = k;
        }
    }
}
