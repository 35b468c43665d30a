//! The fleet rule at scale, by simulation: up to 100 members joining,
//! dying (`kill -9`: their sessions linger until the server notices) and
//! changing demand against one server, in discrete 100 ms ticks with a
//! seeded random source: no clock, no threads, the same run every time.
//! The coordinator is scripted as tidewater-postgres runs it: each
//! member's heartbeat is one step under the fleet's lock (rows older than
//! the lease deleted, its own row written, [`decide`] applied); the
//! server counts each member's pool connections for it, and the
//! coordinators' own sessions among the others'.
//!
//! Checked at every tick: the server never has more client sessions than
//! `max_connections − reserved` (no "too many clients"), no member's pool
//! ceiling is above its grant, and no dead member's row outlives its lease
//! by more than a heartbeat; at every step that grows a grant, what the
//! members hold or are granted stays within the budget the step read (a
//! budget that falls, as sessions of others or of a joining member's
//! coordinator appear, is given back at the next heartbeats, and the
//! reserve covers the meantime). At the end of a calm stretch, every grant
//! is its fair target and every demand that fits is served.

use tidewater::fleet::{Budget, Member, decide, targets};

/// Ticks between two heartbeats of a member (1 s).
const HEARTBEAT: u64 = 10;
/// Ticks after its last heartbeat that a row is deleted (3 s).
const LEASE: u64 = 30;
const RESERVED: u32 = 3;
const RESERVE: u32 = 5;
/// Sessions of other programs.
const EXTERNAL: u32 = 10;
const FLOOR: u32 = 2;
const MAX_SIZE: u32 = 50;
const MEMBERS: usize = 100;

/// A live service process: its pool (and a coordinator session, counted
/// among the others').
struct Process {
    id: u64,
    /// The pool's ceiling (`resize`).
    ceiling: u32,
    /// The pool's open connections.
    open: u32,
    /// Connections it would use now.
    demand: u32,
    /// Its heartbeats fall on ticks congruent to this.
    phase: u64,
}

impl Process {
    /// Sessions the server counts for it: its pool's.
    fn held(&self) -> u32 {
        self.open
    }
}

/// A row of the fleet's table.
struct Row {
    id: u64,
    grant: u32,
    demand: u32,
    heartbeat: u64,
}

/// Sessions of a killed process, until the server notices.
struct Lingering {
    id: u64,
    until: u64,
    sessions: u32,
}

struct Sim {
    /// The server's `max_connections`.
    max_connections: u32,
    rng: fastrand::Rng,
    tick: u64,
    processes: Vec<Process>,
    rows: Vec<Row>,
    lingering: Vec<Lingering>,
    deaths: Vec<(u64, u64)>,
    next_id: u64,
    steps: u64,
}

impl Sim {
    fn new(seed: u64, max_connections: u32) -> Self {
        Self {
            max_connections,
            rng: fastrand::Rng::with_seed(seed),
            tick: 0,
            processes: Vec::new(),
            rows: Vec::new(),
            lingering: Vec::new(),
            deaths: Vec::new(),
            next_id: 1,
            steps: 0,
        }
    }

    /// Client sessions on the server.
    fn sessions(&self) -> u32 {
        let coordinators = u32::try_from(self.processes.len()).unwrap();
        EXTERNAL
            + coordinators
            + self.processes.iter().map(Process::held).sum::<u32>()
            + self.lingering.iter().map(|l| l.sessions).sum::<u32>()
    }

    /// What the server counts for the member of row `id`.
    fn held(&self, id: u64) -> u32 {
        self.processes
            .iter()
            .find(|p| p.id == id)
            .map(Process::held)
            .unwrap_or_else(|| {
                self.lingering
                    .iter()
                    .filter(|l| l.id == id)
                    .map(|l| l.sessions)
                    .sum()
            })
    }

    /// The rows as the rule sees them, and the budget, read in one snapshot.
    fn read(&self) -> (Vec<Member>, u32) {
        let members: Vec<Member> = self
            .rows
            .iter()
            .map(|row| Member {
                grant: row.grant,
                held: self.held(row.id),
                demand: row.demand,
                ceiling: MAX_SIZE,
            })
            .collect();
        let fleet: u32 = members.iter().map(|m| m.held).sum();
        let budget = Budget {
            max_connections: self.max_connections,
            reserved: RESERVED,
            others: self.sessions() - fleet,
            reserve: RESERVE,
        };
        (members, budget.total())
    }

    fn join(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        let phase = self.rng.u64(..HEARTBEAT);
        self.processes.push(Process {
            id,
            ceiling: 0,
            open: 0,
            demand: self.rng.u32(0..=4),
            phase,
        });
        // A new member coordinates before its pool opens anything.
        self.heartbeat(id);
    }

    fn kill(&mut self, index: usize) {
        let process = self.processes.swap_remove(index);
        let until = self.tick + self.rng.u64(1..=5);
        self.lingering.push(Lingering {
            id: process.id,
            until,
            sessions: process.held(),
        });
        // Its coordinator's session, among the others'.
        self.lingering.push(Lingering {
            id: 0,
            until,
            sessions: 1,
        });
        self.deaths.push((process.id, self.tick));
    }

    /// One step of member `id` under the fleet's lock.
    fn heartbeat(&mut self, id: u64) {
        let now = self.tick;
        self.rows.retain(|row| row.heartbeat + LEASE >= now);
        let demand = self.processes.iter().find(|p| p.id == id).unwrap().demand;
        match self.rows.iter_mut().find(|row| row.id == id) {
            Some(row) => {
                row.demand = demand;
                row.heartbeat = now;
            }
            None => self.rows.push(Row {
                id,
                grant: 0,
                demand,
                heartbeat: now,
            }),
        }
        self.rows.sort_by_key(|row| row.id);
        let (mut members, budget) = self.read();
        let me = self.rows.iter().position(|row| row.id == id).unwrap();
        let decision = decide(me, budget, FLOOR, &members);
        if decision.grant > members[me].grant {
            members[me].grant = decision.grant;
            let committed: u32 = members.iter().map(Member::committed).sum();
            assert!(
                committed <= budget,
                "tick {now}: {id} grew to {} leaving {committed} held or granted, budget {budget}",
                decision.grant
            );
        }
        self.rows[me].grant = decision.grant;
        let process = self.processes.iter_mut().find(|p| p.id == id).unwrap();
        process.ceiling = decision.ceiling;
        self.steps += 1;
    }

    /// The pools: connections opened toward the demand (two attempts at a
    /// time), returned over a few ticks when above the ceiling, closed
    /// slowly when idle.
    fn pools(&mut self) {
        for process in &mut self.processes {
            let want = process.demand.min(process.ceiling);
            if process.open < want {
                process.open += (want - process.open).min(2);
            } else if process.open > process.ceiling {
                process.open -= self.rng.u32(0..=3).min(process.open - process.ceiling);
            } else if process.open > want && self.rng.u32(0..5) == 0 {
                process.open -= 1;
            }
        }
    }

    fn tick(&mut self, churn: bool) {
        self.tick += 1;
        let now = self.tick;
        self.lingering.retain(|l| l.until > now);
        if churn {
            if self.processes.len() < MEMBERS && self.rng.u32(0..20) == 0 {
                self.join();
            }
            if !self.processes.is_empty() && self.rng.u32(0..30) == 0 {
                let index = self.rng.usize(..self.processes.len());
                self.kill(index);
            }
            for process in &mut self.processes {
                if self.rng.u32(0..20) == 0 {
                    process.demand = if self.rng.u32(0..8) == 0 {
                        self.rng.u32(10..=MAX_SIZE)
                    } else {
                        self.rng.u32(0..=4)
                    };
                }
            }
        }
        self.pools();
        let due: Vec<u64> = self
            .processes
            .iter()
            .filter(|p| (now + p.phase) % HEARTBEAT == 0)
            .map(|p| p.id)
            .collect();
        for id in due {
            self.heartbeat(id);
        }
        self.check();
    }

    fn check(&self) {
        let now = self.tick;
        let sessions = self.sessions();
        assert!(
            sessions <= self.max_connections - RESERVED,
            "tick {now}: {sessions} sessions, the server allows {}",
            self.max_connections - RESERVED
        );
        for process in &self.processes {
            if let Some(row) = self.rows.iter().find(|row| row.id == process.id) {
                assert!(
                    process.ceiling <= row.grant,
                    "tick {now}: member {} has ceiling {} over its grant {}",
                    process.id,
                    process.ceiling,
                    row.grant
                );
            }
        }
        for &(id, died) in &self.deaths {
            if now > died + LEASE + HEARTBEAT {
                assert!(
                    self.rows.iter().all(|row| row.id != id),
                    "tick {now}: the row of {id}, dead at {died}, is still there"
                );
            }
        }
    }
}

#[test]
fn a_hundred_members_never_overshoot_and_converge() {
    for seed in 1..=5 {
        let mut sim = Sim::new(seed, 400);
        // The fleet forms: members join over 30 s.
        while sim.processes.len() < 60 {
            sim.tick(false);
            if sim.rng.u32(0..5) == 0 {
                sim.join();
            }
        }
        // Two minutes of churn: joins up to 100, kills, bursts of demand.
        for _ in 0..1200 {
            sim.tick(true);
        }
        assert!(!sim.deaths.is_empty(), "seed {seed}: nobody died");
        assert!(
            sim.next_id > 100,
            "seed {seed}: fewer than 100 members joined"
        );
        // Then calm: 20 s without churn.
        for _ in 0..200 {
            sim.tick(false);
        }
        let (members, budget) = sim.read();
        let committed: u32 = members.iter().map(Member::committed).sum();
        assert!(
            committed <= budget,
            "seed {seed}: {committed} over {budget} when calm"
        );
        let fair = targets(budget, FLOOR, &members);
        for (row, target) in sim.rows.iter().zip(&fair) {
            let process = sim.processes.iter().find(|p| p.id == row.id).unwrap();
            assert_eq!(
                row.grant, *target,
                "seed {seed}: member {} not at its target",
                row.id
            );
            if process.demand <= *target {
                assert_eq!(
                    process.open, process.demand,
                    "seed {seed}: demand not served"
                );
            }
        }
        assert_eq!(sim.rows.len(), sim.processes.len(), "seed {seed}");
    }
}

#[test]
fn a_dead_members_share_goes_to_the_busy_within_a_lease() {
    // 120 connections: 98 for the fleet (4 coordinators), a quarter each,
    // less than they want.
    let mut sim = Sim::new(7, 120);
    let budget = 120 - RESERVED - RESERVE - EXTERNAL - 4;
    for _ in 0..4 {
        sim.join();
    }
    for process in &mut sim.processes {
        process.demand = MAX_SIZE;
    }
    for _ in 0..100 {
        sim.tick(false);
    }
    let shares = |sim: &Sim| sim.rows.iter().map(|row| row.grant).collect::<Vec<_>>();
    let before = shares(&sim);
    assert_eq!(before.iter().sum::<u32>(), budget, "{before:?}");
    assert!(
        before.iter().all(|&share| share >= budget / 4),
        "{before:?}"
    );
    let died = sim.tick;
    sim.kill(0);
    while sim.rows.len() > 3 || shares(&sim).iter().sum::<u32>() < budget {
        sim.tick(false);
        assert!(
            sim.tick <= died + LEASE + 2 * HEARTBEAT,
            "not shared out within a lease and two heartbeats: {:?}",
            shares(&sim)
        );
    }
    let after = shares(&sim);
    assert!(
        after.iter().all(|&share| share >= budget / 3),
        "{before:?} -> {after:?}"
    );
}
