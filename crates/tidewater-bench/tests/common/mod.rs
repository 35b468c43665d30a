//! What the benchmark's end-to-end tests share: running the built binary
//! with a bound on its run time.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on a whole run (tens of seconds on a 2-core machine, debug build).
const RUN_BOUND: Duration = Duration::from_secs(240);

/// Runs the binary with `args`, killing it past [`RUN_BOUND`]; returns its
/// standard output, failing on a non-zero exit. `what` names the run in
/// the failure.
pub fn run_bench(what: &str, args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidewater-bench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the benchmark starts");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let mut stderr = child.stderr.take().unwrap();
    let error_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + RUN_BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the {what} ran past {RUN_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let errors = error_reader.join().unwrap();
    assert!(status.success(), "the {what} failed ({status}):\n{errors}");
    reader.join().unwrap().unwrap()
}
