#![allow(dead_code)] // each test file uses a part

//! Running the `tidewater-lab` binary itself: its exit
//! code and output, bounded in time; and reading the JSON report it
//! prints: its verdicts and the exit code they give.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What a run of the binary left.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `tidewater-lab ARGS` in `dir`; kills it and panics if it has not
/// exited within `limit`.
pub fn lab(args: &[&str], dir: &Path, limit: Duration) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidewater-lab"));
    command.args(args).current_dir(dir);
    run(command, limit)
}

/// Runs `command` (the binary, set up by the caller) with no standard
/// input; kills it and panics if it has not exited within `limit`.
pub fn run(mut command: Command, limit: Duration) -> Run {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} still running after {limit:?}; stderr:\n{}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The run's standard output as JSON.
pub fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"))
}

/// The verdict named `name` in a report's `verdicts`.
pub fn verdict<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|verdict| verdict["name"] == name)
        .unwrap_or_else(|| panic!("no verdict {name} in {report:#}"))
}

/// The names of a report's verdicts, in order.
pub fn verdict_names(report: &Value) -> Vec<&str> {
    report["verdicts"]
        .as_array()
        .unwrap_or_else(|| panic!("no verdicts in {report:#}"))
        .iter()
        .map(|verdict| verdict["name"].as_str().expect("a verdict's name"))
        .collect()
}

/// Asserts that each verdict named in `names` passed.
pub fn assert_passed(report: &Value, names: &[&str]) {
    for name in names {
        let verdict = verdict(report, name);
        assert_eq!(verdict["passed"], true, "{name} failed: {verdict:#}");
    }
}

/// The exit code a lab report's verdicts give: 0 when every verdict
/// passed, 1 when one failed. Asserts first that the report agrees with
/// itself: `passed` says whether every verdict passed, and no verdict
/// passed with its measured value beyond its bound.
pub fn exit_code_of(report: &Value) -> i32 {
    let names = verdict_names(report);
    assert!(!names.is_empty(), "a report without verdicts: {report:#}");
    let verdicts = report["verdicts"].as_array().unwrap();
    for verdict in verdicts {
        if let (true, Some(measured), Some(bound)) = (
            verdict["passed"] == true,
            verdict["measured"].as_f64(),
            verdict["bound"].as_f64(),
        ) {
            assert!(measured <= bound, "passed beyond its bound: {verdict:#}");
        }
    }
    let all = verdicts.iter().all(|verdict| verdict["passed"] == true);
    assert_eq!(
        report["passed"], all,
        "`passed` is not whether every verdict passed: {report:#}"
    );
    if all { 0 } else { 1 }
}
