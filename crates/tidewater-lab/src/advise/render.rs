//! The advice in words: the warnings, the steps ("why") with their
//! numbers, and the human-readable report.

use std::fmt;

use super::queueing::{self, Demand, Service};
use super::{
    Advice, Given, Inputs, Limit, MAX_POOL_SIZE, MIN_RECOMMENDED, Measured, Warning, WarningKind,
};

/// Lines of the text report are wrapped at this width.
const WIDTH: usize = 92;

/// A number with about three significant digits, no trailing zeros.
pub(super) fn num(x: f64) -> String {
    if !x.is_finite() {
        return "unbounded".into();
    }
    let text = if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Seconds as a readable duration, written as the flags take them (`4ms`).
pub(super) fn secs(s: f64) -> String {
    if s == 0.0 {
        "0ms".into()
    } else if s < 1e-3 {
        format!("{}µs", num(s * 1e6))
    } else if s < 1.0 {
        format!("{}ms", num(s * 1e3))
    } else {
        format!("{}s", num(s))
    }
}

/// A p99 wait, or "unbounded" when the pool cannot keep up.
fn wait(p99: Option<f64>) -> String {
    p99.map_or_else(|| "unbounded (the pool cannot keep up)".into(), secs)
}

/// A share as a percentage.
fn percent(x: f64) -> String {
    format!("{}%", num(x * 100.0))
}

/// The model at one size, in words.
fn service(s: &Service) -> String {
    format!(
        "P(wait) {}, p99 wait {}, utilization {}",
        num(s.p_wait),
        wait(s.wait_p99_seconds),
        percent(s.utilization)
    )
}

/// The warnings for `advice` (its `warnings` field not yet filled).
pub(super) fn warnings(advice: &Advice) -> Vec<Warning> {
    [
        connections_warning(advice),
        current_warning(advice),
        saturation_warning(advice),
        wait_warning(advice),
        reserved_warning(advice),
        model_warning(advice),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A warning of `kind`.
fn warning(kind: WarningKind, message: String) -> Option<Warning> {
    Some(Warning { kind, message })
}

/// `max_connections M - R reserved leaves A`.
fn left(advice: &Advice) -> String {
    format!(
        "max_connections {} - {} reserved leaves {}",
        advice.inputs.max_connections.value, advice.inputs.reserved.value, advice.budget.available
    )
}

/// The server's connections leave no room for one per replica
/// ([`WarningKind::NoRoom`]), or fewer than the load needs
/// ([`WarningKind::Exhaustion`]).
fn connections_warning(advice: &Advice) -> Option<Warning> {
    let inputs = &advice.inputs;
    let replicas = inputs.replicas.value;
    let left = left(advice);
    if advice.budget.per_replica == 0 {
        return warning(
            WarningKind::NoRoom,
            format!(
                "{left} connections for {replicas} replicas: not even one each. Put a pooler \
                 such as PgBouncer (transaction mode; tidewater-postgres: transaction_pooler = \
                 true) between the replicas and the server, run fewer replicas against it, or \
                 raise max_connections."
            ),
        );
    }
    if advice.limited_by != Limit::ConnectionBudget {
        return None;
    }
    let need = needed(advice);
    let whole_load = Demand {
        busy: advice.load.busy_mean,
        use_time: inputs.use_time_seconds.value,
        variability: advice.load.variability,
    };
    let one_pool = queueing::size_for(&whole_load, &inputs.targets()).map_or_else(
        || format!("more than {MAX_POOL_SIZE}"),
        |s| s.service.connections.to_string(),
    );
    warning(
        WarningKind::Exhaustion,
        format!(
            "The load needs {need} connections per replica, {} in all, but {left}: {} per \
             replica. max_size is capped at {}, where the model gives {}. Fewer replicas \
             sharing this server each get a bigger share, and bigger pools queue more \
             efficiently (one pool would carry the whole load with {one_pool}); or put a \
             pooler such as PgBouncer (transaction mode; tidewater-postgres: \
             transaction_pooler = true) in front of the server so the replicas share its \
             connections; or raise max_connections.",
            u64::from(need) * u64::from(replicas),
            advice.budget.per_replica,
            advice.max_size,
            service(&advice.at_max_size),
        ),
    )
}

/// The `max_size` run now, times the replicas, exceeds what the server
/// leaves ([`WarningKind::CurrentExhaustion`]).
fn current_warning(advice: &Advice) -> Option<Warning> {
    let current = advice.inputs.current_max_size.as_ref()?;
    let replicas = advice.inputs.replicas.value;
    let demand = u64::from(current.value) * u64::from(replicas);
    if demand <= u64::from(advice.budget.available) {
        return None;
    }
    warning(
        WarningKind::CurrentExhaustion,
        format!(
            "max_size {} ({}) x {replicas} replica(s) = {demand} connections, but \
             {}: at a peak the server would refuse connections (too many clients, \
             SQLSTATE 53300). Lower max_size to {} or less.",
            current.value,
            current.from,
            left(advice),
            advice.budget.per_replica.max(1),
        ),
    )
}

/// The load keeps more queries busy than the server's cores serve well
/// ([`WarningKind::Saturation`]).
fn saturation_warning(advice: &Advice) -> Option<Warning> {
    if advice.load.busy_mean <= f64::from(advice.throughput.active_connections) {
        return None;
    }
    warning(
        WarningKind::Saturation,
        format!(
            "The load keeps {} connections in use on average, more than the ~{} queries \
             the server runs well at once ({} cores x 2 + {} spindle(s), a rule of thumb): \
             the load needs more than this server can serve. More connections will not \
             add throughput; they make every query slower. Shorten the use time (faster \
             queries, shorter transactions, no waiting on other services while holding a \
             connection), send reads to a replica, or give the database more cores; a \
             pooler shares connections, not CPU.",
            num(advice.load.busy_mean),
            advice.throughput.active_connections,
            advice.inputs.server_cores.value,
            advice.inputs.spindles.value,
        ),
    )
}

/// At the recommended size the wait target is missed
/// ([`WarningKind::WaitTarget`]): capped by the server's throughput, or no
/// pool meets it.
fn wait_warning(advice: &Advice) -> Option<Warning> {
    let target = advice.inputs.target_wait_p99_seconds.value;
    let misses = advice
        .at_max_size
        .wait_p99_seconds
        .is_none_or(|wait| wait > target);
    if misses && matches!(advice.limited_by, Limit::ServerThroughput) {
        warning(
            WarningKind::WaitTarget,
            format!(
                "Capped by the server's throughput at {}, the pool misses the p99 wait target \
                 of {}: {}. The rule of thumb counts queries running on the server; if much \
                 of the use time is spent elsewhere (network round trips, application work \
                 inside a transaction) and the server's CPUs are not saturated at peak, up to \
                 {} per replica fits its connections.",
                advice.max_size,
                secs(target),
                service(&advice.at_max_size),
                needed(advice).min(advice.budget.per_replica),
            ),
        )
    } else if misses && advice.needed.is_none() {
        warning(
            WarningKind::WaitTarget,
            format!(
                "No pool of up to {MAX_POOL_SIZE} connections per replica meets the targets \
                 for this load; run more replicas or shorten the use time."
            ),
        )
    } else {
        None
    }
}

/// Other clients hold more connections than reserved for them
/// ([`WarningKind::Reserved`]).
fn reserved_warning(advice: &Advice) -> Option<Warning> {
    let inputs = &advice.inputs;
    let others = inputs.held_by_others.as_ref()?;
    let reserved = inputs.reserved.value;
    if others.value <= reserved {
        return None;
    }
    warning(
        WarningKind::Reserved,
        format!(
            "Other clients hold {} connections on the server now, more than the {} \
             reserved for them ({}): raise --reserved to at least {}.",
            others.value, reserved, inputs.reserved.from, others.value
        ),
    )
}

/// The run's measured wait is above the target where the model predicts
/// it within ([`WarningKind::Model`]).
fn model_warning(advice: &Advice) -> Option<Warning> {
    let check = advice.model_check.as_ref()?;
    let target = advice.inputs.target_wait_p99_seconds.value;
    let predicted_ok = check
        .predicted_wait_p99_seconds
        .is_some_and(|p| p <= target);
    if !predicted_ok || check.measured_wait_p99_seconds <= target {
        return None;
    }
    warning(
        WarningKind::Model,
        format!(
            "The run measured a p99 wait of up to {} at max_size {}, above the target of {}, \
             where the model predicts {}: the load is burstier than the model assumes \
             (or connections were being opened). Leave more headroom with a lower \
             --max-utilization.",
            secs(check.measured_wait_p99_seconds),
            check.max_size,
            secs(target),
            wait(check.predicted_wait_p99_seconds),
        ),
    )
}

/// The load's own need per replica, with the floor of 2.
fn needed(advice: &Advice) -> u32 {
    advice
        .needed
        .map_or(MAX_POOL_SIZE, |s| s.service.connections)
        .max(MIN_RECOMMENDED)
}

/// Each step, with its numbers.
pub(super) fn why(advice: &Advice) -> Vec<String> {
    let mut steps = vec![
        little_step(advice),
        variability_step(advice),
        peaks_step(advice),
        throughput_step(advice),
        format!(
            "Server connections: replicas x max_size + reserved <= max_connections, so max_size <= \
             ({} - {}) / {} = {} per replica.",
            advice.inputs.max_connections.value,
            advice.inputs.reserved.value,
            advice.inputs.replicas.value,
            advice.budget.per_replica,
        ),
        max_size_step(advice),
    ];
    if let Some(check) = &advice.model_check {
        steps.push(format!(
            "Check against the run: at its max_size {} and its own rate and use time, the \
             model predicts a p99 wait of {}; the run measured at most {} (a histogram bucket \
             bound).",
            check.max_size,
            wait(check.predicted_wait_p99_seconds),
            secs(check.measured_wait_p99_seconds),
        ));
    }
    steps
}

/// Step 1: Little's law, all replicas and each.
fn little_step(advice: &Advice) -> String {
    let inputs = &advice.inputs;
    let replicas = inputs.replicas.value;
    let load = &advice.load;
    let mut little = format!(
        "Little's law: L = λ·W = {}/s x {} = {} connections in use on average",
        num(inputs.checkouts_per_second.value),
        secs(inputs.use_time_seconds.value),
        num(load.busy_mean),
    );
    if replicas > 1 {
        little.push_str(&format!(
            "; spread over {replicas} replicas, {}/s and {} in use on each",
            num(load.checkouts_per_second_per_replica),
            num(load.busy_mean_per_replica),
        ));
    }
    little.push('.');
    little
}

/// How variable the use time is, and what that does to the waits.
fn variability_step(advice: &Advice) -> String {
    let use_time = advice.inputs.use_time_seconds.value;
    let variability = advice.load.variability;
    match &advice.inputs.use_time_p99_seconds {
        None => "No use-time p99 given: use times are taken as exponential (p99 about 4.6x \
                 the mean)."
            .to_owned(),
        Some(p99) if variability > 1.0 => format!(
            "The use time's p99 ({}) is {}x its mean: a lognormal fitted to both has cs² = {}, \
             so waits stretch by (1 + cs²) / 2 = {} (Allen–Cunneen).",
            secs(p99.value),
            num(p99.value / use_time),
            num(2.0 * variability - 1.0),
            num(variability),
        ),
        Some(p99) => format!(
            "The use time's p99 ({}) is {}x its mean, no more variable than the exponential: \
             the M/M/c waits are used as they are.",
            secs(p99.value),
            num(p99.value / use_time),
        ),
    }
}

/// Step 2: the smallest pool meeting the targets per replica.
fn peaks_step(advice: &Advice) -> String {
    let inputs = &advice.inputs;
    let busy = advice.load.busy_mean_per_replica;
    let targets = format!(
        "p99 acquisition wait <= {} and utilization <= {}",
        secs(inputs.target_wait_p99_seconds.value),
        percent(inputs.max_utilization.value),
    );
    match &advice.needed {
        Some(sizing) => format!(
            "Peaks (M/M/c queue, Erlang C, {} Erlangs per replica): the smallest pool with {} \
             is c = {}, {}: {}.",
            num(busy),
            targets,
            sizing.service.connections,
            sizing.bound_by.describe(),
            service(&sizing.service),
        ),
        None => format!(
            "Peaks (M/M/c queue, Erlang C): no pool of up to {MAX_POOL_SIZE} connections per \
             replica meets {targets} at {} Erlangs.",
            num(busy),
        ),
    }
}

/// Step 3: the server's throughput, by the rule of thumb.
fn throughput_step(advice: &Advice) -> String {
    let inputs = &advice.inputs;
    let replicas = inputs.replicas.value;
    let mut rule = format!(
        "Server throughput (rule of thumb from the PostgreSQL wiki, \"Number Of Database \
         Connections\"): cores x 2 + effective_spindle_count = {} x 2 + {} = {} queries at once",
        inputs.server_cores.value, inputs.spindles.value, advice.throughput.active_connections,
    );
    if replicas > 1 {
        rule.push_str(&format!(
            ", a share of {} / {replicas} = {} per replica (rounded up)",
            advice.throughput.active_connections, advice.throughput.per_replica
        ));
    }
    rule.push_str(&format!(
        "; the load keeps {} of them busy on average.",
        num(advice.load.busy_mean)
    ));
    rule
}

/// The outcome: `max_size` as the smallest of the steps, what decided
/// it, and `min_idle`.
fn max_size_step(advice: &Advice) -> String {
    let need = advice
        .needed
        .map_or(MAX_POOL_SIZE, |s| s.service.connections);
    let raised = if need < MIN_RECOMMENDED {
        format!(" ({need} raised to the floor of {MIN_RECOMMENDED})")
    } else {
        String::new()
    };
    let smallest = need
        .max(MIN_RECOMMENDED)
        .min(advice.throughput.per_replica)
        .min(advice.budget.per_replica);
    let floor = if advice.max_size > smallest {
        format!(
            ", raised to {}: {}",
            advice.max_size,
            if advice.max_size == 1 {
                "the least a pool takes"
            } else {
                "with fewer than 2 connections one slow checkout stalls every caller"
            }
        )
    } else {
        String::new()
    };
    let decided = match advice.limited_by {
        Limit::Load => "the load",
        Limit::Floor => "the floor",
        Limit::ServerThroughput => "the server's throughput",
        Limit::ConnectionBudget => "the server's connections",
    };
    format!(
        "max_size = min({}{raised}, {}, {}) = {smallest}{floor}; decided by {decided}. At that \
         size: {}. min_idle = min(ceil({}), max_size) = {}: the connections in use on average \
         stay open through quiet spells, so returning load does not wait for connects.",
        need.max(MIN_RECOMMENDED),
        advice.throughput.per_replica,
        advice.budget.per_replica,
        service(&advice.at_max_size),
        num(advice.load.busy_mean_per_replica),
        advice.min_idle,
    )
}

/// `text` wrapped at [`WIDTH`], the first line after `first`, the rest
/// indented by `indent` spaces.
fn wrap(f: &mut fmt::Formatter<'_>, first: &str, indent: usize, text: &str) -> fmt::Result {
    let mut line = first.to_owned();
    let mut width = line.chars().count();
    let mut empty = first.trim().is_empty();
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if !empty && width + 1 + len > WIDTH {
            writeln!(f, "{line}")?;
            line = " ".repeat(indent);
            width = indent;
            empty = true;
        }
        if !empty {
            line.push(' ');
            width += 1;
        }
        line.push_str(word);
        width += len;
        empty = false;
    }
    writeln!(f, "{line}")
}

/// One row of the inputs table.
fn row<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    label: &str,
    given: &Given<T>,
    show: impl Fn(&T) -> String,
) -> fmt::Result {
    writeln!(f, "  {label:<24} {:<12} {}", show(&given.value), given.from)
}

impl fmt::Display for Advice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let replicas = self.inputs.replicas.value;
        writeln!(
            f,
            "tidewater-lab advise: max_size = {}, min_idle = {} for each of {replicas} replica(s) \
             ({} connections in all, of the {} the server leaves for these pools)",
            self.max_size,
            self.min_idle,
            u64::from(self.max_size) * u64::from(replicas),
            self.budget.available,
        )?;
        writeln!(f)?;
        writeln!(f, "Inputs:")?;
        inputs_table(f, &self.inputs)?;
        if let Some(run) = &self.inputs.measured {
            run_row(f, run)?;
        }
        writeln!(f)?;
        writeln!(f, "Why:")?;
        for (n, step) in self.why.iter().enumerate() {
            wrap(f, &format!("  {}.", n + 1), 5, step)?;
        }
        if !self.warnings.is_empty() {
            writeln!(f)?;
            writeln!(f, "Warnings:")?;
            for warning in &self.warnings {
                wrap(f, "  !", 4, &warning.message)?;
            }
        }
        Ok(())
    }
}

/// The inputs table: each value and where it came from.
fn inputs_table(f: &mut fmt::Formatter<'_>, inputs: &Inputs) -> fmt::Result {
    row(
        f,
        "checkouts per second",
        &inputs.checkouts_per_second,
        |v| num(*v),
    )?;
    row(f, "use time, mean", &inputs.use_time_seconds, |v| secs(*v))?;
    if let Some(p99) = &inputs.use_time_p99_seconds {
        row(f, "use time, p99", p99, |v| secs(*v))?;
    }
    row(f, "target p99 wait", &inputs.target_wait_p99_seconds, |v| {
        secs(*v)
    })?;
    row(f, "max utilization", &inputs.max_utilization, |v| {
        percent(*v)
    })?;
    row(f, "server cores", &inputs.server_cores, u32::to_string)?;
    row(f, "spindles", &inputs.spindles, u32::to_string)?;
    row(
        f,
        "max_connections",
        &inputs.max_connections,
        u32::to_string,
    )?;
    row(f, "reserved", &inputs.reserved, u32::to_string)?;
    if let Some(others) = &inputs.held_by_others {
        row(f, "held by others now", others, u32::to_string)?;
    }
    row(f, "replicas", &inputs.replicas, u32::to_string)?;
    if let Some(current) = &inputs.current_max_size {
        row(f, "max_size now", current, u32::to_string)?;
    }
    Ok(())
}

/// The row of the load run the numbers came from: its length, rate and
/// measured waits, and its file.
fn run_row(f: &mut fmt::Formatter<'_>, run: &Measured) -> fmt::Result {
    let mut said = Vec::new();
    if let Some(d) = run.duration_seconds {
        said.push(format!("{} long", secs(d)));
    }
    if let Some(rps) = run.throughput_rps {
        said.push(format!("{} requests/s", num(rps)));
    }
    let waits = [
        ("p50", run.wait_p50_seconds),
        ("p99", run.wait_p99_seconds),
        ("max", run.wait_max_seconds),
    ];
    let waits: Vec<String> = waits
        .iter()
        .filter_map(|(name, value)| value.map(|v| format!("{name} {}", secs(v))))
        .collect();
    if !waits.is_empty() {
        said.push(format!("acquisition wait {}", waits.join(", ")));
    }
    if said.is_empty() {
        return Ok(());
    }
    wrap(
        f,
        &format!("  {:<24}", "the run"),
        27,
        &format!("{} ({})", said.join("; "), run.path),
    )
}
