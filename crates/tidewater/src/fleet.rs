//! Fleet shares: how the pools of one service's replicas divide one
//! database server's connections so that, together, they never ask for
//! more than it has. This module is the rule, pure and deterministic; a
//! backend keeps the members' rows in the database and applies the rule
//! under a lock the database holds (`tidewater_postgres::fleet`).
//!
//! Each member publishes its **demand** (connections in use plus callers
//! waiting, at most its `max_size`) and holds a **grant**: the most
//! connections it may open. The server counts what each member **holds**.
//! At the end of every step, against the budget that step read, the rule
//! keeps
//!
//! ```text
//! Σ max(grantᵢ, heldᵢ)  ≤  budget
//! budget = max_connections − reserved slots − connections held by others − reserve
//! ```
//!
//! Between two heartbeats the budget can fall without any member growing
//! (another program connects, a member joins); the reserve covers that
//! until the others' next steps give it back.
//!
//! - **Targets** are max-min fair ([`targets`]): every member first gets
//!   `floor` (an even split of the budget when that is less), then what
//!   is left fills the demands evenly (a busy member borrows what idle
//!   ones do not use), then the spare is spread evenly up to each
//!   member's `max_size`, so a burst between two heartbeats finds room.
//! - **A member grows only into what nobody holds or is granted**
//!   ([`step`]): its new grant is at most the budget less every other
//!   member's `max(grant, held)`, read in the same locked transaction
//!   that writes it. It raises its pool's ceiling after the grant is
//!   written.
//! - **A member shrinks at home first**: it lowers its pool's ceiling,
//!   and lowers its grant only once it holds no more than the new one
//!   (its connections came back). A member that shrinks is thus never
//!   counted for less than it holds.
//!
//! So a member shrinks before another grows into its share, and what a
//! dead member held is counted (as held by others, then by its lease)
//! until the server has let it go.
//!
//! ```
//! use tidewater::fleet::{Member, Step, step, targets};
//!
//! // 40 connections for the fleet; one busy member, one idle, floor 2.
//! let members = [
//!     Member { grant: 2, held: 2, demand: 30, ceiling: 50 },
//!     Member { grant: 30, held: 3, demand: 1, ceiling: 50 },
//! ];
//! assert_eq!(targets(40, 2, &members), [34, 6]);
//! // The busy one may take only what the idle one does not hold or own.
//! assert_eq!(step(0, 40, 2, &members), Step::Grow(10));
//! // The idle one shrinks (at home first) to its target.
//! assert_eq!(step(1, 40, 2, &members), Step::Shrink(6));
//! ```

/// One member of a fleet, as the rule sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// The most connections it may open, as written in the fleet's table.
    pub grant: u32,
    /// The connections the server counts for it now.
    pub held: u32,
    /// Connections it would use: in use plus callers waiting, recently.
    pub demand: u32,
    /// Its `max_size`: it never wants more.
    pub ceiling: u32,
}

impl Member {
    /// What it may be holding at any moment: its grant, or more while it
    /// shrinks.
    pub fn committed(&self) -> u32 {
        self.grant.max(self.held)
    }
}

/// What a member does with its grant after one look at the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep it.
    Hold,
    /// Write this larger grant, then raise the pool's ceiling to it.
    Grow(u32),
    /// Lower the pool's ceiling to this at once; write it as the grant
    /// once the pool holds no more.
    Shrink(u32),
}

/// The fair share of each member of a budget of `budget` connections:
/// `floor` each first (an even split when the budget is smaller), then
/// demands filled evenly (max-min fair), then the spare spread evenly,
/// never above a member's `ceiling`. Deterministic: every member computes
/// the same shares from the same rows (in the same order).
///
/// ```
/// use tidewater::fleet::{Member, targets};
/// let member = |demand| Member { demand, ceiling: 50, ..Member::default() };
/// // Demands below the budget: each gets its demand, the spare is shared.
/// assert_eq!(targets(40, 2, &[member(10), member(4)]), [23, 17]);
/// // Demands above it: the smaller demand is met, the rest goes to the larger.
/// assert_eq!(targets(40, 2, &[member(50), member(6)]), [34, 6]);
/// // Less than a floor each: an even split.
/// assert_eq!(targets(3, 2, &[member(9), member(9), member(9), member(9)]), [1, 1, 1, 0]);
/// ```
pub fn targets(budget: u32, floor: u32, members: &[Member]) -> Vec<u32> {
    let count = u32::try_from(members.len()).unwrap_or(u32::MAX);
    if count == 0 {
        return Vec::new();
    }
    let base = floor.min(budget / count);
    let mut shares: Vec<u32> = members.iter().map(|m| base.min(m.ceiling)).collect();
    let mut left = budget - shares.iter().sum::<u32>();
    // The floors the budget could not give in full: one more each, in order.
    if base < floor {
        for (share, member) in shares.iter_mut().zip(members) {
            if left > 0 && *share < member.ceiling.min(floor) {
                *share += 1;
                left -= 1;
            }
        }
    }
    let wants: Vec<u32> = members.iter().map(|m| m.demand.min(m.ceiling)).collect();
    left = fill(&mut shares, &wants, left);
    let ceilings: Vec<u32> = members.iter().map(|m| m.ceiling).collect();
    fill(&mut shares, &ceilings, left);
    shares
}

/// Raises `shares` toward `wants` evenly (each round, an equal part of
/// what is left to every share still below its want; the indivisible rest
/// one each, in order) and returns what is left.
fn fill(shares: &mut [u32], wants: &[u32], mut left: u32) -> u32 {
    loop {
        let below = shares.iter().zip(wants).filter(|(s, w)| s < w).count();
        let Ok(below) = u32::try_from(below) else {
            return left;
        };
        if below == 0 || left == 0 {
            return left;
        }
        let each = (left / below).max(1);
        for (share, want) in shares.iter_mut().zip(wants) {
            let give = want.saturating_sub(*share).min(each).min(left);
            *share += give;
            left -= give;
        }
    }
}

/// What member `me` does with its grant, given the fleet's rows read under
/// the fleet's lock and the budget read in the same transaction: move
/// toward its [target](targets), growing only into what no other member
/// holds or is granted.
///
/// ```
/// use tidewater::fleet::{Member, Step, step};
/// let busy = Member { grant: 10, held: 10, demand: 40, ceiling: 50 };
/// let other = Member { grant: 25, held: 25, demand: 25, ceiling: 50 };
/// // Target 20 each, but the other still holds 25: grow to 15 now.
/// assert_eq!(step(0, 40, 2, &[busy, other]), Step::Grow(15));
/// // The budget fell below what is granted: shrink, whatever the target.
/// assert_eq!(step(0, 30, 2, &[busy, other]), Step::Shrink(5));
/// ```
pub fn step(me: usize, budget: u32, floor: u32, members: &[Member]) -> Step {
    let Some(member) = members.get(me) else {
        return Step::Hold;
    };
    let target = targets(budget, floor, members)[me];
    let others: u32 = members
        .iter()
        .enumerate()
        .filter(|&(index, _)| index != me)
        .map(|(_, other)| other.committed())
        .sum();
    let free = budget.saturating_sub(others);
    let next = target.min(free);
    match next.cmp(&member.grant) {
        std::cmp::Ordering::Less => Step::Shrink(next),
        std::cmp::Ordering::Greater => Step::Grow(next),
        std::cmp::Ordering::Equal => Step::Hold,
    }
}

/// What member `me` writes and sets after one look at the fleet (rows and
/// budget read under the fleet's lock): [`step`], with the shrink's two
/// halves in order. The caller lowers its pool's ceiling before it
/// commits the grant, and raises it only after.
///
/// ```
/// use tidewater::fleet::{Decision, Member, decide};
/// let idle = Member { grant: 30, held: 12, demand: 1, ceiling: 50 };
/// let busy = Member { grant: 2, held: 2, demand: 30, ceiling: 50 };
/// // Still holding 12: the ceiling drops now, the grant once they are back.
/// assert_eq!(decide(0, 40, 2, &[idle, busy]), Decision { grant: 30, ceiling: 6 });
/// let idle = Member { held: 5, ..idle };
/// assert_eq!(decide(0, 40, 2, &[idle, busy]), Decision { grant: 6, ceiling: 6 });
/// ```
pub fn decide(me: usize, budget: u32, floor: u32, members: &[Member]) -> Decision {
    let Some(member) = members.get(me) else {
        return Decision::default();
    };
    match step(me, budget, floor, members) {
        Step::Hold => Decision {
            grant: member.grant,
            ceiling: member.grant,
        },
        Step::Grow(grant) => Decision {
            grant,
            ceiling: grant,
        },
        Step::Shrink(to) => Decision {
            grant: if member.held <= to { to } else { member.grant },
            ceiling: to,
        },
    }
}

/// The outcome of [`decide`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The grant to write in the fleet's table (the one it has, when it
    /// must first wait for connections to come back).
    pub grant: u32,
    /// The pool's ceiling (`resize`) from now on.
    pub ceiling: u32,
}

/// The fleet's budget: what the server lets the fleet's members hold
/// together.
///
/// ```
/// let budget = tidewater::fleet::Budget { max_connections: 40, reserved: 3, others: 2, reserve: 2 };
/// assert_eq!(budget.total(), 33);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// The server's `max_connections`.
    pub max_connections: u32,
    /// Slots only superusers and reserved roles may use.
    pub reserved: u32,
    /// Client connections that belong to no live member (other programs,
    /// the coordinators' own sessions, a dead member's until they go).
    pub others: u32,
    /// Connections the fleet leaves free on purpose.
    pub reserve: u32,
}

impl Budget {
    /// `max_connections − reserved − others − reserve`, at least 0.
    pub fn total(&self) -> u32 {
        self.max_connections
            .saturating_sub(self.reserved)
            .saturating_sub(self.others)
            .saturating_sub(self.reserve)
    }
}

/// A member's view of its fleet, as its coordinator last saw it: what
/// `/api/pools`, the metrics, the health report and the dashboard show.
/// The coordinator (`tidewater_postgres::fleet`) hands it to the pool with
/// [`Pool::report_fleet`](crate::Pool::report_fleet).
///
/// ```
/// use tidewater::fleet::{FleetState, FleetStatus};
/// let status = FleetStatus {
///     fleet: "bank".into(),
///     member: "5f0c1a2b".into(),
///     state: FleetState::Coordinated,
///     reason: None,
///     grant: 12,
///     budget: 33,
///     members: Vec::new(),
/// };
/// assert_eq!(serde_json::to_value(&status).unwrap()["state"], "coordinated");
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FleetStatus {
    /// The fleet's name.
    pub fleet: String,
    /// This member's id.
    pub member: String,
    /// Coordinated, or on its fallback share.
    pub state: FleetState,
    /// Why it is degraded (the coordinator's last error); `None` when
    /// coordinated.
    pub reason: Option<String>,
    /// Its grant: the most connections its pool may open now.
    pub grant: u32,
    /// What the server leaves the fleet:
    /// `max_connections − reserved − others − reserve`.
    pub budget: u32,
    /// Every live member, this one included, by id.
    pub members: Vec<FleetMemberStatus>,
}

/// Whether a member coordinates with its fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FleetState {
    /// Its share comes from the fleet's table.
    Coordinated,
    /// The table cannot be reached: it keeps a conservative static share
    /// (its last grant, at most the configured fallback).
    Degraded,
}

/// One member in a [`FleetStatus`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FleetMemberStatus {
    /// Its id.
    pub member: String,
    /// Its grant.
    pub grant: u32,
    /// The connections the server counts for it.
    pub held: u32,
    /// Connections it would use (in use plus waiting, recently).
    pub demand: u32,
    /// Seconds since its last heartbeat.
    pub lease_age_seconds: f64,
}
