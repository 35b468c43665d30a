//! `tidewater-lab fleet`: N replicas of the reference service in fleet
//! mode (`postgres.fleet`) on one private PostgreSQL with a small
//! `max_connections`, each configured with a `max_size` that alone would
//! take most of it, under transfers through all of them, while a sampler
//! reads `pg_stat_activity` every 100 ms. Optionally one replica is
//! killed (`SIGKILL`) halfway: the time until its share is given to the
//! others is measured. Verdicts: no "too many clients", no sample above
//! the server's limit, every replica served, money conserved.
//!
//! ```no_run
//! # async fn f() -> Result<(), tidewater_lab::fleet::FleetError> {
//! use tidewater_lab::fleet::{FleetConfig, run};
//! let report = run(&FleetConfig { replicas: 4, kill_one: true, ..FleetConfig::default() }).await?;
//! println!("{}", report.text());
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidewater_testkit::{PgCluster, SessionSampler};
use tokio::task::JoinHandle;

use crate::drill::{database_url, private_database};
use crate::load::AccountsError;
use crate::load::accounts::open_accounts;
use crate::load::slo::{Verdict, write_verdicts};
use crate::load::users::slug;
use crate::service::{Service, ServiceError, SpawnOptions, Target};

/// Accounts opened for the run (20: see [`Callers::start`]).
const ACCOUNTS: u32 = 20;
const OPENING: i64 = 1_000_000;
/// The most a share may take to move after a kill before the run says so.
const MOVE_DEADLINE: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// Service processes (2 to 16).
    pub replicas: u32,
    /// The private server's `max_connections` (8 to 1000).
    pub max_connections: u32,
    /// Each replica's `pool.max_size` (1 to 1000).
    pub max_size: u32,
    /// Callers per replica, each sending transfers back to back (1 to 500).
    pub callers: u32,
    /// How long the load runs (1 s to 1 h).
    pub duration: Duration,
    /// Kill one replica (`SIGKILL`) halfway through.
    pub kill_one: bool,
    /// Fleet mode on (the point); off shows what the same replicas do
    /// without it.
    pub fleet: bool,
    /// The service binary (see [`SpawnOptions::exe`]).
    pub exe: PathBuf,
    /// More keys of the services' configuration (`KEY=VALUE`).
    pub settings: Vec<String>,
    /// The command line, for the report.
    pub command: String,
}

impl Default for FleetConfig {
    /// 4 replicas of 50 on a server of 40, 20 callers each, 10 s.
    fn default() -> Self {
        Self {
            replicas: 4,
            max_connections: 40,
            max_size: 50,
            callers: 20,
            duration: Duration::from_secs(10),
            kill_one: false,
            fleet: true,
            exe: SpawnOptions::default().exe,
            settings: Vec::new(),
            command: String::new(),
        }
    }
}

impl FleetConfig {
    /// Checks each option against its range.
    ///
    /// # Errors
    /// The first option out of range, named.
    ///
    /// ```
    /// let config = tidewater_lab::fleet::FleetConfig { replicas: 1, ..Default::default() };
    /// assert!(config.check().unwrap_err().contains("--replicas"));
    /// ```
    pub fn check(&self) -> Result<(), String> {
        let within = |name: &str, value: u32, min: u32, max: u32| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(format!("{name} {value}: allowed {min} to {max}"))
            }
        };
        within("--replicas", self.replicas, 2, 16)?;
        within("--max-connections", self.max_connections, 8, 1000)?;
        within("--max-size", self.max_size, 1, 1000)?;
        within("--callers", self.callers, 1, 500)?;
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.duration) {
            return Err("--duration: allowed 1s to 1h".into());
        }
        Ok(())
    }
}

/// Why no fleet run could be made.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The options are out of range.
    #[error("{0}")]
    Invalid(String),
    /// The private PostgreSQL could not be made or used.
    #[error("the private PostgreSQL: {0}")]
    Cluster(#[source] std::io::Error),
    /// A replica did not start.
    #[error("a replica: {0}")]
    Service(#[source] ServiceError),
    /// The run's own sessions (sampler, reader) could not connect.
    #[error("a session of the run's own: {0}")]
    Session(#[source] tokio_postgres::Error),
    /// The accounts could not be opened.
    #[error("opening the accounts: {0}")]
    Accounts(#[source] AccountsError),
}

impl FleetError {
    /// 2 for bad options, 3 when the run could not be made.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid(_) => 2,
            _ => 3,
        }
    }
}

/// One replica's answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaReport {
    /// Transfers answered with success.
    pub transfers: u64,
    /// Failed answers by kind (`503 pool-timeout`, `error: …`).
    pub failed: BTreeMap<String, u64>,
    /// Whether it was the one killed.
    pub killed: bool,
}

/// The run's report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetReport {
    /// The command that made it.
    pub command: String,
    /// Service processes.
    pub replicas: u32,
    /// Whether they ran in fleet mode.
    pub fleet: bool,
    /// Each replica's `pool.max_size`.
    pub max_size: u32,
    /// The private server's `max_connections`.
    pub max_connections: u32,
    /// Sessions the server allows its users: `max_connections` less the
    /// reserved slots.
    pub limit: u32,
    /// Per replica.
    pub per_replica: Vec<ReplicaReport>,
    /// Answers that named "too many clients".
    pub too_many_clients: u64,
    /// Client sessions, every 100 ms.
    pub sessions: Vec<u32>,
    /// Of those, the members' pool connections.
    pub fleet_sessions: Vec<u32>,
    /// Samples above `limit`.
    pub samples_over_limit: usize,
    /// Samples where the members' pools held more than the budget.
    pub samples_over_budget: usize,
    /// The fleet's grants at the end, by member.
    pub grants: BTreeMap<String, u32>,
    /// After the kill: seconds until the dead member's share was given to
    /// the others (`null` when nothing was killed, or it never was).
    pub share_moved_seconds: Option<f64>,
    /// The accounts' total at the end, and at the start.
    pub money: (i64, i64),
    /// The verdicts.
    pub verdicts: Vec<Verdict>,
    /// Whether every verdict passed.
    pub passed: bool,
}

/// Runs the fleet `config` describes.
///
/// # Errors
/// Bad options, a private PostgreSQL or a replica that could not be made.
pub async fn run(config: &FleetConfig) -> Result<FleetReport, FleetError> {
    config.check().map_err(FleetError::Invalid)?;
    tracing::info!("creating a private PostgreSQL cluster");
    let cluster = PgCluster::new().await.map_err(FleetError::Cluster)?;
    private_database(&cluster, config.max_connections)
        .await
        .map_err(FleetError::Cluster)?;
    let url = database_url(&cluster);
    // The run's own sessions first: they count among the others' from the
    // fleet's first step on, so the budget does not move under the load.
    let sampler = SessionSampler::connect(&cluster.url(), "tidewater-fleet/")
        .await
        .map_err(FleetError::Session)?;
    let db = Arc::new(reader(&url).await?);
    let mut replicas = Vec::new();
    let mut accounts = Vec::new();
    for index in 0..config.replicas {
        replicas.push(start_replica(config, &url).await?);
        if index == 0 {
            let client = reqwest::Client::new();
            let opened = open_accounts(&client, replicas[0].base(), "fleet", ACCOUNTS, OPENING)
                .await
                .map_err(FleetError::Accounts)?;
            accounts = opened.iter().map(|account| account.id).collect();
        }
    }
    let accounts: Arc<[i64]> = accounts.into();
    tracing::info!(
        "{} replicas of max_size {} on max_connections {}; load for {}",
        config.replicas,
        config.max_size,
        config.max_connections,
        humantime::format_duration(config.duration)
    );
    let sampler = sampler.start();
    let deadline = tokio::time::Instant::now() + config.duration;
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = replicas
        .iter()
        .map(|replica| Callers::start(replica.base(), &accounts, config.callers, &stop))
        .collect();
    // Killed halfway; the share is watched while the load goes on.
    let moving = if config.kill_one {
        tokio::time::sleep(config.duration / 2).await;
        let before = grants(&db).await;
        let killed = Instant::now();
        tracing::info!("killing replica 1 with SIGKILL");
        replicas[0].kill();
        config
            .fleet
            .then(|| tokio::spawn(share_moved(db.clone(), before, killed)))
    } else {
        None
    };
    tokio::time::sleep_until(deadline).await;
    stop.store(true, Relaxed);
    let mut per_replica = Vec::new();
    for callers in load {
        per_replica.push(callers.finish().await);
    }
    if config.kill_one {
        per_replica[0].killed = true;
    }
    let share_moved = match moving {
        Some(task) => task.await.ok().flatten(),
        None => None,
    };
    let samples = sampler.finish().await;
    let sessions = samples.iter().map(|sample| sample.all).collect();
    let fleet_sessions = samples.iter().map(|sample| sample.tagged).collect();
    let grants = grants(&db).await;
    let money = (money(&db).await, i64::from(ACCOUNTS) * OPENING);
    for replica in replicas {
        replica.stop().await;
    }
    Ok(FleetReport::judge(
        config,
        Outcome {
            per_replica,
            sessions,
            fleet_sessions,
            grants,
            share_moved,
            money,
        },
    ))
}

async fn start_replica(config: &FleetConfig, url: &str) -> Result<Service, FleetError> {
    let mut settings = vec![
        format!("pool.max_size={}", config.max_size),
        "pool.acquire_timeout=10s".to_owned(),
    ];
    if config.fleet {
        settings.push("postgres.fleet.name=lab".to_owned());
    }
    settings.extend(config.settings.iter().cloned());
    let spawn = SpawnOptions {
        exe: config.exe.clone(),
        database_url: Some(url.to_owned()),
        settings,
        ..SpawnOptions::default()
    };
    Service::start(&Target::Spawn(spawn))
        .await
        .map_err(FleetError::Service)
}

/// Seconds until a member's grant grew over what it had at the kill: the
/// killed member's share given to the others (its own row is capped at its
/// fallback share at once, and deleted when its lease ends).
async fn share_moved(
    db: Arc<tokio_postgres::Client>,
    before: BTreeMap<String, u32>,
    killed: Instant,
) -> Option<f64> {
    while killed.elapsed() < MOVE_DEADLINE {
        let now = grants(&db).await;
        let grew = now
            .iter()
            .any(|(member, grant)| before.get(member).is_some_and(|had| grant > had));
        if grew {
            return Some(killed.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// A session on the run's database, for reading the fleet's table and the
/// accounts.
async fn reader(url: &str) -> Result<tokio_postgres::Client, FleetError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(FleetError::Session)?;
    tokio::spawn(connection);
    Ok(client)
}

/// The fleet's grants by member (empty before the table exists).
async fn grants(db: &tokio_postgres::Client) -> BTreeMap<String, u32> {
    let sql = "SELECT member, grant_size FROM tidewater_fleet WHERE fleet = 'lab'";
    db.query(sql, &[])
        .await
        .unwrap_or_default()
        .iter()
        .map(|row| (row.get(0), row.get::<_, i32>(1).unsigned_abs()))
        .collect()
}

/// The accounts' total (`-1` when it cannot be read).
async fn money(db: &tokio_postgres::Client) -> i64 {
    db.query_one("SELECT sum(balance)::bigint FROM accounts", &[])
        .await
        .map_or(-1, |row| row.get(0))
}

/// One replica's callers.
struct Callers {
    tasks: Vec<JoinHandle<ReplicaReport>>,
}

impl Callers {
    /// `callers` tasks, each moving 1 cent between two of `accounts`
    /// (never the same one: with 20 accounts, `t` and `7t + 3` differ mod
    /// 20) until `stop`, or until its replica refuses connections (killed).
    fn start(base: &str, accounts: &Arc<[i64]>, callers: u32, stop: &Arc<AtomicBool>) -> Self {
        let client = reqwest::Client::new();
        let tasks = (0..callers)
            .map(|caller| {
                let (base, client, stop) = (base.to_owned(), client.clone(), stop.clone());
                let accounts = accounts.clone();
                tokio::spawn(async move {
                    let mut report = ReplicaReport::default();
                    let mut turn = caller as usize;
                    let n = accounts.len();
                    while !stop.load(Relaxed) {
                        turn += 1;
                        let pair = (accounts[turn % n], accounts[(turn * 7 + 3) % n]);
                        if transfer(&client, &base, pair, &mut report).await.is_break() {
                            break;
                        }
                    }
                    report
                })
            })
            .collect();
        Self { tasks }
    }

    async fn finish(self) -> ReplicaReport {
        let mut total = ReplicaReport::default();
        for task in self.tasks {
            let Ok(report) = task.await else { continue };
            total.transfers += report.transfers;
            for (kind, count) in report.failed {
                *total.failed.entry(kind).or_default() += count;
            }
        }
        total
    }
}

/// One transfer of 1 cent, its outcome counted in `report`; `Break` when
/// the replica refuses connections (it was killed: its caller stops rather
/// than spin).
async fn transfer(
    client: &reqwest::Client,
    base: &str,
    (from, to): (i64, i64),
    report: &mut ReplicaReport,
) -> ControlFlow<()> {
    let answer = client
        .post(format!("{base}/api/transfers"))
        .json(&serde_json::json!({ "from": from, "to": to, "amount": 1 }))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    let (kind, flow) = match answer {
        Ok(answer) if answer.status().is_success() => {
            report.transfers += 1;
            return ControlFlow::Continue(());
        }
        Ok(answer) => {
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap_or_default();
            let kind = if body.contains("too many clients") || body.contains("53300") {
                format!("{status} too many clients")
            } else {
                let problem = serde_json::from_str(&body).unwrap_or_default();
                format!("{status} {}", slug(&problem).unwrap_or_default())
            };
            (kind, ControlFlow::Continue(()))
        }
        Err(error) if error.is_connect() => {
            ("connection refused".to_owned(), ControlFlow::Break(()))
        }
        Err(error) if error.is_request() => {
            ("connection lost".to_owned(), ControlFlow::Continue(()))
        }
        Err(error) => (format!("error: {error}"), ControlFlow::Continue(())),
    };
    *report.failed.entry(kind).or_default() += 1;
    flow
}

/// What the run measured, before the verdicts.
struct Outcome {
    per_replica: Vec<ReplicaReport>,
    sessions: Vec<u32>,
    fleet_sessions: Vec<u32>,
    grants: BTreeMap<String, u32>,
    share_moved: Option<f64>,
    money: (i64, i64),
}

/// The cluster's `superuser_reserved_connections`.
const RESERVED: u32 = 3;
/// `postgres.fleet.reserve`'s default, which the run keeps.
const DEFAULT_RESERVE: u32 = 3;

impl FleetReport {
    fn judge(config: &FleetConfig, outcome: Outcome) -> Self {
        let limit = config.max_connections - RESERVED;
        let samples_over_limit = outcome.sessions.iter().filter(|&&s| s > limit).count();
        // The members' pools within the fleet's budget (the limit, less the
        // reserve and the others' sessions) is the sessions within the
        // limit less the reserve.
        let over_budget = outcome
            .sessions
            .iter()
            .filter(|&&all| all + DEFAULT_RESERVE > limit)
            .count();
        let too_many_clients: u64 = outcome
            .per_replica
            .iter()
            .flat_map(|replica| &replica.failed)
            .filter(|(kind, _)| kind.contains("too many clients"))
            .map(|(_, count)| count)
            .sum();
        let served = outcome
            .per_replica
            .iter()
            .filter(|r| r.transfers > 0)
            .count();
        let mut verdicts = vec![
            yes_no(
                "too_many_clients",
                too_many_clients == 0,
                format!("{too_many_clients} answers named \"too many clients\""),
            ),
            yes_no(
                "sessions_within_limit",
                samples_over_limit == 0 && !outcome.sessions.is_empty(),
                format!(
                    "{samples_over_limit} of {} samples above the server's {limit} (most: {})",
                    outcome.sessions.len(),
                    outcome.sessions.iter().max().copied().unwrap_or(0)
                ),
            ),
            yes_no(
                "within_budget",
                over_budget == 0,
                format!(
                    "{over_budget} of {} samples with the members' pools above the budget \
                     (the limit less the reserve, {DEFAULT_RESERVE}, and the others' sessions)",
                    outcome.sessions.len()
                ),
            ),
            yes_no(
                "every_replica_served",
                served == outcome.per_replica.len(),
                format!(
                    "{served} of {} replicas made transfers",
                    outcome.per_replica.len()
                ),
            ),
            yes_no(
                "correctness",
                outcome.money.0 == outcome.money.1,
                format!(
                    "{} cents at the end, {} opened",
                    outcome.money.0, outcome.money.1
                ),
            ),
        ];
        if !config.fleet {
            // Without a fleet there is no budget to keep.
            verdicts.retain(|verdict| verdict.name != "within_budget");
        }
        if config.kill_one && config.fleet {
            verdicts.push(yes_no(
                "share_moved",
                outcome.share_moved.is_some(),
                match outcome.share_moved {
                    Some(seconds) => {
                        format!("the killed replica's share was given out after {seconds:.2} s")
                    }
                    None => format!("not given out within {MOVE_DEADLINE:?}"),
                },
            ));
        }
        Self {
            command: config.command.clone(),
            replicas: config.replicas,
            fleet: config.fleet,
            max_size: config.max_size,
            max_connections: config.max_connections,
            limit,
            per_replica: outcome.per_replica,
            too_many_clients,
            sessions: outcome.sessions,
            fleet_sessions: outcome.fleet_sessions,
            samples_over_limit,
            samples_over_budget: over_budget,
            grants: outcome.grants,
            share_moved_seconds: outcome.share_moved,
            money: outcome.money,
            passed: verdicts.iter().all(|verdict| verdict.passed),
            verdicts,
        }
    }

    /// The report as text: the replicas, the sessions, the verdicts.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "tidewater-lab fleet: {} replicas of max_size {} on max_connections {} (limit {}), fleet mode {}",
            self.replicas,
            self.max_size,
            self.max_connections,
            self.limit,
            if self.fleet { "on" } else { "off" }
        );
        for (index, replica) in self.per_replica.iter().enumerate() {
            let killed = if replica.killed {
                " (killed halfway)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  replica {}{killed}: {} transfers, failed {:?}",
                index + 1,
                replica.transfers,
                replica.failed
            );
        }
        let _ = writeln!(
            out,
            "  sessions: {} samples, most {} (the members' pools: most {}); grants at the end {:?}",
            self.sessions.len(),
            self.sessions.iter().max().copied().unwrap_or(0),
            self.fleet_sessions.iter().max().copied().unwrap_or(0),
            self.grants.values().collect::<Vec<_>>()
        );
        write_verdicts(&mut out, &self.verdicts, self.passed);
        out
    }
}

fn yes_no(name: &str, passed: bool, text: String) -> Verdict {
    Verdict {
        name: name.to_owned(),
        passed,
        measured: None,
        bound: None,
        text,
    }
}
