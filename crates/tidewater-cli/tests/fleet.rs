//! Fleet mode end to end: `tidewater` processes, each configured with
//! `max_size = 50`, on one private PostgreSQL with `max_connections = 40`
//! (`--set postgres.fleet.name=bank`), under HTTP load through all of them,
//! while a sampler reads `pg_stat_activity` every 100 ms. No answer may be
//! a "too many clients", no sample above the server's limit, and every
//! replica serves. Then one is killed (`kill -9`): its share moves to the
//! others (its row, capped at once, is gone when its 1 s lease ends; the
//! poll allows 30 s, no speed is asserted); a new one starts: shares rebalance; the server
//! restarts: the fleet reforms and no money was lost.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use common::{Service, poll_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tidewater_cli::serve::Ready;
use tidewater_testkit::{PgCluster, SessionSampler, Shutdown};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

const MAX_CONNECTIONS: u32 = 40;
/// The cluster's `superuser_reserved_connections`.
const RESERVED: u32 = 3;
const DEADLINE: Duration = Duration::from_secs(30);
const ACCOUNTS: i64 = 20;
const OPENING: i64 = 1_000_000;

/// One `tidewater` process in the fleet.
struct Replica {
    child: Child,
    service: Service,
    _dir: tempfile::TempDir,
}

impl Replica {
    async fn start(cluster: &PgCluster) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ready_file: PathBuf = dir.path().join("ready.json");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidewater"))
            .args(["--bind", "127.0.0.1:0", "--max-size", "50"])
            .args(["--database-url", &cluster.url()])
            .args(["--log-format", "json", "--log-level", "warn"])
            .args(["--set", "postgres.fleet.name=bank"])
            .args(["--set", "postgres.fleet.heartbeat=200ms"])
            .args(["--set", "postgres.fleet.lease=1s"])
            .args(["--set", "pool.acquire_timeout=10s"])
            .arg("--ready-file")
            .arg(&ready_file)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the tidewater binary starts");
        let ready = poll_until("the replica serves", DEADLINE, async || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the replica exited ({status}) before serving");
            }
            Ready::read(&ready_file).unwrap()
        })
        .await;
        Self {
            child,
            service: Service {
                server: None,
                base: ready.url,
                client: reqwest::Client::builder()
                    .timeout(DEADLINE)
                    .build()
                    .unwrap(),
            },
            _dir: dir,
        }
    }

    fn kill_9(&self) {
        let pid = self.child.id().expect("running");
        kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGKILL).unwrap();
    }
}

/// Transfers through every replica by `callers` tasks each, until `stop`;
/// returns, per replica, the transfers made and the failed answers.
fn load(
    replicas: &[Replica],
    callers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<(u64, Vec<String>)>> {
    replicas
        .iter()
        .flat_map(|replica| {
            (0..callers).map(|caller| {
                let (base, client, stop) = (
                    replica.service.base.clone(),
                    replica.service.client.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let (mut made, mut failed) = (0, Vec::new());
                    let mut turn = caller as i64;
                    while !stop.load(Relaxed) {
                        turn += 1;
                        let from = 1 + turn % ACCOUNTS;
                        let to = 1 + (turn * 7 + 3) % ACCOUNTS;
                        if from == to {
                            continue;
                        }
                        let answer = client
                            .post(format!("{base}/api/transfers"))
                            .json(&serde_json::json!({ "from": from, "to": to, "amount": 1 }))
                            .send()
                            .await;
                        match answer {
                            Ok(answer) if answer.status().is_success() => made += 1,
                            Ok(answer) => failed.push(format!(
                                "{}: {}",
                                answer.status(),
                                answer.text().await.unwrap_or_default()
                            )),
                            Err(error) => failed.push(error.to_string()),
                        }
                    }
                    (made, failed)
                })
            })
        })
        .collect()
}

/// Runs the load for `how_long` and checks every replica served and no
/// answer failed; returns the transfers each replica made.
async fn drive(replicas: &[Replica], how_long: Duration) -> Vec<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(replicas, 20, &stop);
    tokio::time::sleep(how_long).await;
    stop.store(true, Relaxed);
    let mut per_replica = vec![0; replicas.len()];
    for (index, task) in tasks.into_iter().enumerate() {
        let (made, failed) = task.await.unwrap();
        assert!(failed.is_empty(), "failed answers: {failed:?}");
        per_replica[index / 20] += made;
    }
    assert!(per_replica.iter().all(|&made| made > 0), "{per_replica:?}");
    per_replica
}

/// The fleet's rows: (member, grant).
async fn rows(cluster: &PgCluster) -> Vec<(String, u32)> {
    let text = cluster
        .execute(
            "SELECT member, grant_size FROM tidewater_fleet WHERE fleet = 'bank' ORDER BY member",
        )
        .await
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (member, grant) = line.split_once('|')?;
            Some((member.to_owned(), grant.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_replicas_of_fifty_share_forty_connections() {
    let cluster = PgCluster::new().await.unwrap();
    cluster.set_max_connections(MAX_CONNECTIONS).await.unwrap();
    // The first replica creates the schema; then the accounts.
    let mut replicas = vec![Replica::start(&cluster).await];
    for _ in 0..ACCOUNTS {
        replicas[0].service.account(OPENING).await;
    }
    for _ in 1..4 {
        replicas.push(Replica::start(&cluster).await);
    }
    poll_until("four members", DEADLINE, async || {
        (rows(&cluster).await.len() == 4).then_some(())
    })
    .await;
    let sampler = SessionSampler::connect(&cluster.url(), "tidewater-fleet/")
        .await
        .unwrap()
        .start();
    let served = drive(&replicas, Duration::from_secs(3)).await;
    let before = rows(&cluster).await;

    // kill -9: the share comes back within the lease and goes to the others.
    replicas.remove(0).kill_9();
    let killed = std::time::Instant::now();
    let moved = poll_until("the dead member's share moved", DEADLINE, async || {
        // One row less, and the members left hold more than at the kill.
        let now = rows(&cluster).await;
        let total: u32 = now.iter().map(|(_, grant)| grant).sum();
        let had: u32 = before
            .iter()
            .filter(|(member, _)| now.iter().any(|(left, _)| left == member))
            .map(|(_, grant)| grant)
            .sum();
        (now.len() == 3 && total > had).then_some(now)
    })
    .await;
    let moved_after = killed.elapsed();
    drive(&replicas, Duration::from_secs(1)).await;

    // A new replica: shares rebalance.
    replicas.push(Replica::start(&cluster).await);
    poll_until("four members again", DEADLINE, async || {
        (rows(&cluster).await.len() == 4).then_some(())
    })
    .await;
    drive(&replicas, Duration::from_secs(2)).await;
    let samples: Vec<u32> = sampler
        .finish()
        .await
        .iter()
        .map(|sample| sample.all)
        .collect();
    let limit = MAX_CONNECTIONS - RESERVED;
    assert!(samples.len() >= 30, "{samples:?}");
    assert!(
        samples.iter().all(|&sessions| sessions <= limit),
        "over the server's {limit}: {samples:?}"
    );

    // The server restarts: the fleet reforms and serves; no money lost.
    cluster.restart(Shutdown::Fast).await.unwrap();
    let restarted = std::time::Instant::now();
    poll_until("the fleet reformed", DEADLINE, async || {
        let renewed = cluster
            .execute(
                "SELECT count(*) FROM tidewater_fleet \
                 WHERE fleet = 'bank' AND heartbeat > pg_postmaster_start_time()",
            )
            .await
            .ok()?;
        (renewed == "4").then_some(())
    })
    .await;
    let reformed_after = restarted.elapsed();
    drive(&replicas, Duration::from_secs(1)).await;
    let total = cluster
        .execute("SELECT sum(balance) FROM accounts")
        .await
        .unwrap();
    assert_eq!(total, (ACCOUNTS * OPENING).to_string());
    eprintln!(
        "transfers per replica in 3 s: {served:?}; grants before the kill {before:?}, \
         {moved_after:?} after it {moved:?}; {} samples, most sessions {:?} of {limit}; \
         reformed {reformed_after:?} after the restart",
        samples.len(),
        samples.iter().max()
    );
}
