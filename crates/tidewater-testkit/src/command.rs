//! Running server programs: as the `postgres` system user when the tests run
//! as root (PostgreSQL and PgBouncer refuse root), in a folder of their own,
//! with a deadline on every run.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::unistd::{Gid, Uid, User};
use tempfile::TempDir;

use crate::wait::poll;

/// The user that server processes run as.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunAs {
    /// `Some` when switching users: running as root, the `postgres` user.
    switch: Option<(Uid, Gid)>,
}

impl RunAs {
    /// The `postgres` system user when running as root, else the current user.
    pub(crate) fn server_user() -> io::Result<Self> {
        if !Uid::effective().is_root() {
            return Ok(Self { switch: None });
        }
        let user = User::from_name("postgres")
            .map_err(io::Error::from)?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "running as root, and there is no `postgres` system user to run servers as \
                     (PostgreSQL and PgBouncer refuse root)",
                )
            })?;
        Ok(Self {
            switch: Some((user.uid, user.gid)),
        })
    }

    /// Gives `path` to the server user, so its processes can write there.
    pub(crate) fn own(&self, path: &Path) -> io::Result<()> {
        match self.switch {
            Some((uid, gid)) => {
                std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw()))
            }
            None => Ok(()),
        }
    }

    /// A new folder under `/tmp` (whose path is short enough for Unix
    /// sockets and which the server user can reach) owned by the server
    /// user, and its canonical path.
    pub(crate) fn folder(&self, prefix: &str) -> io::Result<(TempDir, PathBuf)> {
        let folder = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp")?;
        self.own(folder.path())?;
        let path = folder.path().canonicalize()?;
        Ok((folder, path))
    }

    /// A command for `program` that runs as the server user in `home`, with
    /// messages in English and no `PG*` variables of the caller's leaking in.
    pub(crate) fn command(&self, program: impl AsRef<Path>, home: &Path) -> Command {
        let mut command = Command::new(program.as_ref());
        if let Some((uid, gid)) = self.switch {
            // std drops root's supplementary groups too.
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command
            .current_dir(home)
            .env("HOME", home)
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PG") {
                command.env_remove(name);
            }
        }
        command
    }
}

/// Runs `command` to its end within `deadline` and returns its standard
/// output. A failure (non-zero exit, or still running at the deadline, when
/// it is killed) is an error naming `what` and holding what it printed.
///
/// Output goes to anonymous files rather than pipes, so a daemon that the
/// command leaves running cannot hold the run open.
pub(crate) fn run(command: &mut Command, what: &str, deadline: Duration) -> io::Result<String> {
    let mut stdout = tempfile::tempfile()?;
    let mut stderr = tempfile::tempfile()?;
    command
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?);
    let mut child = command
        .spawn()
        .map_err(|error| io::Error::new(error.kind(), format!("{what}: cannot start: {error}")))?;
    let status = wait_child(&mut child, what, deadline);
    let out = read_all(&mut stdout)?;
    let err = read_all(&mut stderr)?;
    let printed = format!("{}\n{}", err.trim(), out.trim()).trim().to_owned();
    match status {
        Ok(status) if status.success() => Ok(out),
        Ok(status) => Err(io::Error::other(format!(
            "{what} failed ({status}): {printed}"
        ))),
        Err(error) => Err(io::Error::new(
            error.kind(),
            format!("{error}; it printed: {printed}"),
        )),
    }
}

/// Waits for `child` to exit within `deadline`; kills it (it is this
/// process's own child) if it does not.
pub(crate) fn wait_child(
    child: &mut Child,
    what: &str,
    deadline: Duration,
) -> io::Result<ExitStatus> {
    let waited = poll(what, deadline, || child.try_wait());
    if waited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    waited
}

fn read_all(file: &mut File) -> io::Result<String> {
    let mut text = String::new();
    file.rewind()?;
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// A port on 127.0.0.1 that nothing listens on right now. Another process
/// may take it before the caller binds it; callers retry on a clash.
pub(crate) fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The last `lines` lines of the text file at `path` (empty if unreadable),
/// to quote a server's log in an error.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
