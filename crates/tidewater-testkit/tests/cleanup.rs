//! A test process killed outright (SIGKILL: no destructor runs) leaves no
//! server, process or folder behind: the watchdogs clean up.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BOUND, connect};
use tidewater_testkit::{PgBouncer, PgCluster};

/// Set in the child process, naming the file it reports to.
const REPORT: &str = "TIDEWATER_CLEANUP_REPORT";

/// Runs only as the child of `watchdogs_clean_up_after_a_killed_test_process`:
/// starts a paused server with a client and a PgBouncer, reports what it
/// started, then blocks until it is killed.
#[tokio::test]
#[ignore = "run by watchdogs_clean_up_after_a_killed_test_process"]
async fn child_that_gets_killed() {
    let Some(report) = std::env::var_os(REPORT) else {
        return;
    };
    let cluster = PgCluster::new().await.unwrap();
    let (_client, _driver) = connect(&cluster.url()).await;
    let bouncer = PgBouncer::start(&cluster).await.unwrap();
    let postmaster = cluster.postmaster_pid().unwrap();
    cluster.pause().await.unwrap();
    let lines = [
        cluster.socket_dir().display().to_string(),
        cluster.port().to_string(),
        postmaster.to_string(),
        bouncer.folder().display().to_string(),
        bouncer.port().to_string(),
        bouncer.pid().to_string(),
    ];
    std::fs::write(&report, lines.join("\n")).unwrap();
    // Blocks until the parent kills this process (or closes the pipe).
    let _ = std::io::stdin().read(&mut [0]);
}

#[test]
fn watchdogs_clean_up_after_a_killed_test_process() {
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_that_gets_killed",
            "--ignored",
            "--nocapture",
        ])
        .env(REPORT, report.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let text = poll("the child's report", || {
        let text = std::fs::read_to_string(report.path()).unwrap_or_default();
        (text.lines().count() == 6).then_some(text)
    });
    let lines: Vec<&str> = text.lines().collect();
    let (cluster_dir, cluster_port, postmaster) = (lines[0], lines[1], lines[2]);
    let (bouncer_dir, bouncer_port, bouncer) = (lines[3], lines[4], lines[5]);
    assert!(Path::new(cluster_dir).exists() && Path::new(bouncer_dir).exists());

    child.kill().unwrap();
    child.wait().unwrap();

    poll("the watchdogs to clean up", || {
        let gone = [cluster_dir, bouncer_dir]
            .iter()
            .all(|dir| !Path::new(dir).exists())
            && [postmaster, bouncer].iter().all(|pid| is_gone(pid));
        gone.then_some(())
    });
    for port in [cluster_port, bouncer_port] {
        let addr = format!("127.0.0.1:{port}");
        assert!(
            std::net::TcpStream::connect(&addr).is_err(),
            "{addr} still listens"
        );
    }
}

/// No such process, or only its zombie.
fn is_gone(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next());
    matches!(state, None | Some("Z") | Some("X"))
}

fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < BOUND, "{what}: not done within {BOUND:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
