//! Fleet mode: the pools of one service's replicas share one PostgreSQL
//! server's connections, coordinated through that server, with nothing
//! else to run. The rule is [`tidewater::fleet`]; this is its
//! coordinator.
//!
//! Each member (one pool, in one process) keeps a row in a small table
//! (`tidewater_fleet` by default: fleet, member, grant, demand, ceiling,
//! heartbeat) and, once a heartbeat (1 s), runs one transaction on a
//! session of its own: it takes the fleet's advisory lock
//! (`pg_advisory_xact_lock`), deletes the rows whose heartbeat is older
//! than the lease (5 s: a process gone, hung or cut off), caps at the
//! fallback share, with no demand, the rows of members whose coordinator
//! session is no longer on the server (a process killed with `kill -9`,
//! whose sessions the server ends at once, or a live one that lost its
//! session and holds at most that share until its next step), writes its own
//! (demand: connections in use plus callers waiting, the most seen since
//! the last heartbeat), reads every row and the server's sessions
//! (`pg_stat_activity`, where its pool's connections carry the
//! `application_name` `tidewater-fleet/MEMBER`) and budget
//! (`max_connections`, reserved slots), and applies
//! [`tidewater::fleet::decide`]: it lowers its pool's ceiling
//! ([`Pool::resize`]) before it commits a smaller grant, and raises it only
//! after it committed a larger one.
//!
//! When the table cannot be reached, the member keeps a conservative
//! static share (its last grant, at most [`FleetOptions::fallback`]),
//! says so (a warning, the health report, the metrics), and rejoins at a
//! later heartbeat. A clean shutdown deletes the member's row.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tidewater_postgres::{FleetOptions, PgManager, PgOptions};
//!
//! let options = PgOptions {
//!     url: "postgres://app@db/orders".into(),
//!     fleet: Some(FleetOptions { name: "orders".into(), ..Default::default() }),
//!     ..Default::default()
//! };
//! // Every replica: at most 50 connections, together at most what the server has.
//! let pool = PgManager::new(options)?.into_pool(tidewater::PoolConfig::default())?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewater::fleet::{Budget, FleetMemberStatus, FleetState, FleetStatus, Member, decide};
use tidewater::{Pool, WeakPool};
use tokio_postgres::Client;

use crate::connect::SessionWatch;
use crate::error::PgError;
use crate::manager::PgManager;

/// Settings of fleet mode (`[postgres.fleet]` in the service's
/// configuration). Only `name` is required.
///
/// ```
/// let options: tidewater_postgres::FleetOptions = toml::from_str(r#"
///     name = "orders"
///     reserve = 5
/// "#).unwrap();
/// assert_eq!(options.heartbeat, std::time::Duration::from_secs(1));
/// options.check().unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetOptions {
    /// The fleet: pools with the same name on the same server share its
    /// connections (letters, digits, `_`, `-`, `.`; 1 to 40 characters).
    pub name: String,
    /// How often a member renews its lease and reconsiders its share
    /// (100 ms to 1 min).
    #[serde(with = "tidewater::config::duration")]
    pub heartbeat: Duration,
    /// How long a member's row outlives its last heartbeat: a member that
    /// died gives its share back within this (3 heartbeats to 1 h).
    #[serde(with = "tidewater::config::duration")]
    pub lease: Duration,
    /// Connections every member gets before demands are filled (1 to 1000).
    pub floor: u32,
    /// Connections the fleet leaves free on the server: room for a
    /// joining member's coordinator session and for other clients
    /// between two heartbeats (0 to 10000).
    pub reserve: u32,
    /// The most connections a member keeps while it cannot reach the
    /// table (1 to 10000; never more than its last grant).
    pub fallback: u32,
    /// The table, created if missing (a lower-case SQL identifier,
    /// optionally schema-qualified: `ops.tidewater_fleet`).
    pub table: String,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            name: String::new(),
            heartbeat: Duration::from_secs(1),
            lease: Duration::from_secs(5),
            floor: 2,
            reserve: 3,
            fallback: 2,
            table: "tidewater_fleet".into(),
        }
    }
}

impl FleetOptions {
    /// Checks every key; the error names the first one that is wrong.
    ///
    /// # Errors
    /// [`PgError::Config`] naming the key and what it accepts.
    ///
    /// ```
    /// let options = tidewater_postgres::FleetOptions::default();
    /// let error = options.check().unwrap_err().to_string();
    /// assert!(error.contains("fleet.name"), "{error}");
    /// ```
    pub fn check(&self) -> Result<(), PgError> {
        let wrong = |key: &str, allowed: &str| {
            Err(PgError::Config(format!("fleet.{key}: allowed {allowed}")))
        };
        let name_ok = (1..=40).contains(&self.name.len())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            return wrong(
                "name",
                "1 to 40 letters, digits, '_', '-' or '.' (pools with the same name share the server)",
            );
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.heartbeat) {
            return wrong("heartbeat", "100ms to 1m");
        }
        if !(3 * self.heartbeat..=Duration::from_secs(3600)).contains(&self.lease) {
            return wrong("lease", "3 heartbeats to 1h");
        }
        if !(1..=1000).contains(&self.floor) {
            return wrong("floor", "1 to 1000");
        }
        if self.reserve > 10_000 {
            return wrong("reserve", "0 to 10000");
        }
        if !(1..=10_000).contains(&self.fallback) {
            return wrong("fallback", "1 to 10000");
        }
        let identifier = |part: &str| {
            (1..=63).contains(&part.len())
                && part.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        let parts: Vec<&str> = self.table.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|part| identifier(part)) {
            return wrong(
                "table",
                "a lower-case SQL identifier, optionally schema-qualified (ops.tidewater_fleet)",
            );
        }
        Ok(())
    }
}

/// The `application_name` of a member's pool connections, by which the
/// server's sessions are counted for it.
pub(crate) fn session_tag(member: &str) -> String {
    format!("tidewater-fleet/{member}")
}

/// The `application_name` of a member's coordinator session: while it is
/// on the server, the member is alive.
fn coordinator_tag(member: &str) -> String {
    format!("tidewater-fleet-coordinator/{member}")
}

/// A new member id: 12 hex digits, random.
pub(crate) fn new_member_id() -> String {
    format!("{:012x}", fastrand::u64(..) >> 16)
}

/// Runs the coordinator of `pool`'s membership until the pool is dropped,
/// then deletes the member's row. Spawned by [`PgManager::into_pool`].
pub(crate) async fn coordinate(
    pool: WeakPool<PgManager>,
    manager: PgManager,
    options: FleetOptions,
    member: String,
) {
    let mut coordinator = Coordinator::new(manager, options, member);
    let mut ticker = tokio::time::interval(coordinator.options.heartbeat / 10);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick: u32 = 0;
    let mut demand = 0;
    loop {
        ticker.tick().await;
        let Some(pool) = pool.upgrade() else { break };
        let status = pool.status();
        demand = demand.max(status.in_use + status.waiters);
        tick = tick.wrapping_add(1);
        if tick % 10 != 1 {
            continue;
        }
        let seen = demand.min(pool.config().max_size);
        demand = status.in_use + status.waiters;
        // A step that hangs (a black-holed socket, a member stuck holding
        // the lock) must not keep the grant past the lease, when the others
        // give it away: it gives up early and degrades.
        let bound = coordinator.step_timeout();
        let report = match tokio::time::timeout(bound, coordinator.step(&pool, seen)).await {
            Ok(Ok(report)) => coordinator.coordinated(report),
            Ok(Err(error)) => coordinator.degrade(&pool, &error),
            Err(_) => coordinator.degrade(&pool, &format!("a step took longer than {bound:?}")),
        };
        pool.report_fleet(report);
    }
    coordinator.leave().await;
}

/// One member's coordinator: its own session, its last view of the fleet.
struct Coordinator {
    manager: PgManager,
    options: FleetOptions,
    member: String,
    session: Option<(Client, SessionWatch)>,
    /// Whether this session made sure the table exists.
    table_ready: bool,
    /// Its grant as last committed (0 before the first step).
    grant: u32,
    /// The last coordinated view, shown while degraded.
    last: Option<FleetStatus>,
    degraded: bool,
}

/// What one step read: the rows (in member order) and the server's
/// sessions by `application_name`, with its limits.
struct Snapshot {
    rows: Vec<Row>,
    sessions: HashMap<String, u32>,
    max_connections: u32,
    reserved: u32,
}

struct Row {
    member: String,
    grant: u32,
    demand: u32,
    ceiling: u32,
    age_seconds: f64,
}

impl Coordinator {
    fn new(manager: PgManager, options: FleetOptions, member: String) -> Self {
        Self {
            manager,
            options,
            member,
            session: None,
            table_ready: false,
            grant: 0,
            last: None,
            degraded: false,
        }
    }

    /// The longest a step may take: the lease less two heartbeats (at least
    /// one), so a stuck member is on its fallback share before its lease
    /// ends.
    fn step_timeout(&self) -> Duration {
        let options = &self.options;
        options
            .lease
            .saturating_sub(2 * options.heartbeat)
            .max(options.heartbeat)
    }

    /// The coordinator's session, opened (and named) when there is none.
    async fn client(&mut self) -> Result<&mut Client, PgError> {
        if self
            .session
            .as_ref()
            .is_some_and(|(client, _)| client.is_closed())
        {
            self.session = None;
        }
        if self.session.is_none() {
            self.table_ready = false;
            let (client, watch) = self.manager.open_session(None).await?;
            let name = coordinator_tag(&self.member);
            client
                .batch_execute(&format!("SET application_name = '{name}'"))
                .await?;
            self.session = Some((client, watch));
        }
        Ok(&mut self.session.as_mut().expect("opened above").0)
    }

    /// One heartbeat: the locked transaction that renews the lease and
    /// moves the grant, with the pool's ceiling lowered before a smaller
    /// grant is committed and raised after a larger one.
    async fn step(&mut self, pool: &Pool<PgManager>, demand: u32) -> Result<FleetStatus, PgError> {
        let options = self.options.clone();
        let member = self.member.clone();
        let ceiling = pool.status().max_size;
        let max_size = pool.config().max_size;
        let beat = Heartbeat {
            // A new row claims what the pool may hold now: honest, and
            // shrunk below if the fleet has no room for it.
            claimed: ceiling,
            demand,
            max_size,
            create_table: !self.table_ready,
        };
        if self
            .session
            .as_ref()
            .is_some_and(|(client, _)| client.is_closed())
        {
            // Lost since the last step: the others may have capped this
            // member's row already (see `gone`); keep to the fallback
            // share until this step has read the fleet again.
            resize(pool, self.fallback_share(pool));
        }
        let client = self.client().await?;
        let transaction = client.transaction().await?;
        renew(&transaction, &options, &member, &beat).await?;
        let mut snapshot = read_snapshot(&transaction, &options).await?;
        let gone = snapshot.gone(&member);
        if !gone.is_empty() {
            // Their coordinator's session ended: a killed process, or one
            // still alive that lost its session (a restart) and keeps at
            // most its fallback share until its next step. All but that is
            // free now (its demand is read as none, so its target is the
            // floor); the lease deletes the row of one that never returns.
            let fallback = sql_int(options.fallback);
            transaction
                .execute(
                    &format!(
                        "UPDATE {} SET grant_size = LEAST(grant_size, $3), demand = 0 \
                         WHERE fleet = $1 AND member = ANY($2)",
                        options.table
                    ),
                    &[&options.name, &gone, &fallback],
                )
                .await?;
            for row in snapshot
                .rows
                .iter_mut()
                .filter(|row| gone.contains(&row.member))
            {
                row.grant = row.grant.min(options.fallback);
                row.demand = 0;
            }
        }
        let (members, budget) = snapshot.members_and_budget(&options);
        let me = snapshot
            .rows
            .iter()
            .position(|row| row.member == member)
            .ok_or_else(|| PgError::Config("fleet: the member's own row is missing".into()))?;
        let decision = decide(me, budget, options.floor, &members);
        let next_ceiling = decision.ceiling.clamp(1, max_size);
        if next_ceiling < ceiling {
            resize(pool, next_ceiling);
        }
        // A pool holds at least one connection: its grant says so.
        let granted = decision.grant.max(next_ceiling);
        transaction
            .execute(
                &format!(
                    "UPDATE {} SET grant_size = $3 WHERE fleet = $1 AND member = $2",
                    options.table
                ),
                &[&options.name, &member, &sql_int(granted)],
            )
            .await?;
        transaction.commit().await?;
        self.table_ready = true;
        self.grant = granted;
        if next_ceiling > ceiling {
            resize(pool, next_ceiling);
        }
        pool.report_capacity(snapshot.capacity());
        Ok(snapshot.status(&options, &member, granted, budget))
    }

    /// The conservative static share: the last grant, at most `fallback`
    /// (and at least 1, the smallest pool).
    fn fallback_share(&self, pool: &Pool<PgManager>) -> u32 {
        self.options
            .fallback
            .min(pool.status().max_size)
            .min(self.grant.max(1))
    }

    /// A step succeeded: back to coordinated, said once.
    fn coordinated(&mut self, report: FleetStatus) -> FleetStatus {
        if self.degraded {
            tracing::info!(fleet = %self.options.name, member = %self.member, grant = report.grant, "fleet coordination restored");
            self.degraded = false;
        }
        self.last = Some(report.clone());
        report
    }

    /// A step failed: keep a conservative share, say why (once per outage).
    fn degrade(&mut self, pool: &Pool<PgManager>, error: &dyn std::fmt::Display) -> FleetStatus {
        self.session = None;
        let share = self.fallback_share(pool);
        resize(pool, share);
        if !self.degraded {
            tracing::warn!(fleet = %self.options.name, member = %self.member, %error, share, "fleet coordination lost: on a fallback share");
            self.degraded = true;
        }
        let mut report = self.last.clone().unwrap_or_else(|| FleetStatus {
            fleet: self.options.name.clone(),
            member: self.member.clone(),
            state: FleetState::Degraded,
            reason: None,
            grant: share,
            budget: 0,
            members: Vec::new(),
        });
        report.state = FleetState::Degraded;
        report.reason = Some(error.to_string());
        report.grant = share;
        report
    }

    /// The pool is gone: delete the member's row, so its share is free at
    /// once rather than after the lease.
    async fn leave(mut self) {
        let statement = format!(
            "DELETE FROM {} WHERE fleet = $1 AND member = $2",
            self.options.table
        );
        let (name, member) = (self.options.name.clone(), self.member.clone());
        if let Ok(client) = self.client().await {
            let left = client.execute(&statement, &[&name, &member]).await;
            if let Err(error) = left {
                tracing::debug!(fleet = %name, member = %member, %error, "could not leave the fleet; the lease will expire");
            }
        }
    }
}

/// What a member writes in its row at a heartbeat.
struct Heartbeat {
    /// Its grant, if it has no row yet.
    claimed: u32,
    demand: u32,
    max_size: u32,
    /// Whether to create the table first (once per session).
    create_table: bool,
}

/// The start of a step, in its transaction: the fleet's lock, the table
/// (once per session), the expired rows deleted, the member's row written.
async fn renew(
    transaction: &tokio_postgres::Transaction<'_>,
    options: &FleetOptions,
    member: &str,
    beat: &Heartbeat,
) -> Result<(), PgError> {
    let table = &options.table;
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('tidewater-fleet:' || $1, 0))",
            &[&options.name],
        )
        .await?;
    let missing = beat.create_table
        && transaction
            .query_one("SELECT to_regclass($1) IS NULL", &[table])
            .await?
            .get::<_, bool>(0);
    if missing {
        // Under the lock: members starting together do not race. (Only
        // when missing: CREATE ... IF NOT EXISTS needs CREATE on the schema
        // even when the table is there, which a role given the table need
        // not have.)
        transaction
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (fleet text NOT NULL, member text NOT NULL, \
                 grant_size integer NOT NULL, demand integer NOT NULL, ceiling integer NOT NULL, \
                 heartbeat timestamptz NOT NULL, PRIMARY KEY (fleet, member))"
            ))
            .await?;
    }
    transaction
        .execute(
            &format!(
                "DELETE FROM {table} WHERE fleet = $1 \
                 AND heartbeat < now() - make_interval(secs => $2)"
            ),
            &[&options.name, &options.lease.as_secs_f64()],
        )
        .await?;
    transaction
        .execute(
            &format!(
                "INSERT INTO {table} (fleet, member, grant_size, demand, ceiling, heartbeat) \
                 VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (fleet, member) DO UPDATE \
                 SET demand = EXCLUDED.demand, ceiling = EXCLUDED.ceiling, heartbeat = now()"
            ),
            &[
                &options.name,
                &member,
                &sql_int(beat.claimed),
                &sql_int(beat.demand),
                &sql_int(beat.max_size),
            ],
        )
        .await?;
    Ok(())
}

/// A count as an SQL `integer`.
fn sql_int(count: u32) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

/// Sets the pool's ceiling; a value the pool refuses is logged, not fatal.
fn resize(pool: &Pool<PgManager>, ceiling: u32) {
    if let Err(error) = pool.resize(ceiling) {
        tracing::error!(pool = pool.name(), %error, "fleet: could not resize the pool");
    }
}

/// Client sessions by `application_name`. A role without
/// `pg_read_all_stats` sees other roles' sessions with no `backend_type`
/// (and no `application_name`) but with their user: counted too, so
/// nobody's connections are missed (a parallel worker of another role
/// would be counted as well: on the safe side).
const SESSIONS: &str = "SELECT coalesce(application_name, ''), count(*)::int \
     FROM pg_stat_activity WHERE backend_type = 'client backend' \
        OR (backend_type IS NULL AND usename IS NOT NULL) GROUP BY 1";

const LIMITS: &str = "SELECT current_setting('max_connections')::int, \
     current_setting('superuser_reserved_connections')::int \
       + coalesce(current_setting('reserved_connections', true)::int, 0)";

async fn read_snapshot(
    transaction: &tokio_postgres::Transaction<'_>,
    options: &FleetOptions,
) -> Result<Snapshot, PgError> {
    let rows = transaction
        .query(
            &format!(
                "SELECT member, grant_size, demand, ceiling, \
                 extract(epoch FROM now() - heartbeat)::float8 \
                 FROM {} WHERE fleet = $1 ORDER BY member",
                options.table
            ),
            &[&options.name],
        )
        .await?;
    let count = |value: i32| u32::try_from(value).unwrap_or(0);
    let rows = rows
        .iter()
        .map(|row| Row {
            member: row.get(0),
            grant: count(row.get(1)),
            demand: count(row.get(2)),
            ceiling: count(row.get(3)),
            age_seconds: row.get(4),
        })
        .collect();
    let sessions = transaction
        .query(SESSIONS, &[])
        .await?
        .iter()
        .map(|row| (row.get::<_, String>(0), count(row.get(1))))
        .collect();
    let limits = transaction.query_one(LIMITS, &[]).await?;
    Ok(Snapshot {
        rows,
        sessions,
        max_connections: count(limits.get(0)),
        reserved: count(limits.get(1)),
    })
}

impl Snapshot {
    /// The members, other than `me`, whose coordinator has no session on
    /// the server: their process is gone (`kill -9` closes its sockets,
    /// and the server ends their sessions at once) or cut off.
    fn gone(&self, me: &str) -> Vec<String> {
        self.rows
            .iter()
            .filter(|row| {
                row.member != me && !self.sessions.contains_key(&coordinator_tag(&row.member))
            })
            .map(|row| row.member.clone())
            .collect()
    }

    /// The server's free connections, for the pool's capacity alert and
    /// gauges (the capacity check does not run in fleet mode).
    fn capacity(&self) -> tidewater::alerts::ServerCapacity {
        let total: u32 = self.sessions.values().sum();
        tidewater::alerts::ServerCapacity {
            max_connections: self.max_connections,
            available: self
                .max_connections
                .saturating_sub(self.reserved)
                .saturating_sub(total),
        }
    }

    /// What the server counts for `member`'s pool.
    fn held(&self, member: &str) -> u32 {
        self.sessions
            .get(&session_tag(member))
            .copied()
            .unwrap_or(0)
    }

    /// The rows as the rule reads them, and the fleet's budget: the
    /// server's limit less the reserved slots, the sessions of no live
    /// member, and the reserve.
    fn members_and_budget(&self, options: &FleetOptions) -> (Vec<Member>, u32) {
        let members: Vec<Member> = self
            .rows
            .iter()
            .map(|row| Member {
                grant: row.grant,
                held: self.held(&row.member),
                demand: row.demand,
                ceiling: row.ceiling,
            })
            .collect();
        let total: u32 = self.sessions.values().sum();
        let fleet: u32 = members.iter().map(|member| member.held).sum();
        let budget = Budget {
            max_connections: self.max_connections,
            reserved: self.reserved,
            others: total.saturating_sub(fleet),
            reserve: options.reserve,
        };
        (members, budget.total())
    }

    fn status(&self, options: &FleetOptions, member: &str, grant: u32, budget: u32) -> FleetStatus {
        FleetStatus {
            fleet: options.name.clone(),
            member: member.to_owned(),
            state: FleetState::Coordinated,
            reason: None,
            grant,
            budget,
            members: self
                .rows
                .iter()
                .map(|row| FleetMemberStatus {
                    member: row.member.clone(),
                    grant: if row.member == member {
                        grant
                    } else {
                        row.grant
                    },
                    held: self.held(&row.member),
                    demand: row.demand,
                    lease_age_seconds: row.age_seconds,
                })
                .collect(),
        }
    }
}
