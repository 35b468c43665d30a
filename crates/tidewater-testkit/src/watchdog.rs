//! A watchdog process that cleans up after a test process that died without
//! running its destructors (an abort, SIGKILL, a server left in a `static`).
//!
//! It is a small `sh` loop that checks once a second whether the test
//! process still exists, and when it is gone runs a cleanup script: stop a
//! server, remove its folder. It runs in a process group of its own and
//! ignores the terminal's signals, so a Ctrl-C that kills the tests does not
//! kill it first. When the owner is dropped normally, it cleans up itself
//! and kills its watchdog.

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// Waits for the test process to end, then runs the cleanup script.
const LOOP: &str = r#"
trap '' HUP INT QUIT TERM PIPE
parent=$1
shift
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
"#;

/// A running watchdog; killed when dropped.
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Starts a watchdog of this process that runs `cleanup` (`sh` code,
    /// which sees `args` as `$1`, `$2`, ...) once this process is gone.
    pub(crate) fn spawn(cleanup: &str, args: &[&OsStr]) -> io::Result<Self> {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{LOOP}{cleanup}"))
            .arg("tidewater-watchdog")
            .arg(std::process::id().to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Self { child })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Our own child, by its pid: SIGKILL, then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
