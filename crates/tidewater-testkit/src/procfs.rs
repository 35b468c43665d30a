//! What `/proc` says about processes: their state and their children.

use std::fs;
use std::path::PathBuf;

/// The fields of `/proc/PID/stat` this crate reads.
struct Stat {
    /// One letter: `R` running, `S` sleeping, `T` stopped, `Z` zombie, ...
    state: char,
    parent: u32,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses,
    // so read after the last `)`.
    let mut fields = text.get(text.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some(Stat { state, parent })
}

/// Whether `pid` has ended: no such process, or only its zombie is left
/// (its parent may be a process that never reaps, such as an orphan's).
pub(crate) fn is_gone(pid: u32) -> bool {
    stat(pid).is_none_or(|stat| matches!(stat.state, 'Z' | 'X' | 'x'))
}

/// Whether `pid` is stopped by a signal (or has ended).
pub(crate) fn is_stopped(pid: u32) -> bool {
    stat(pid).is_none_or(|stat| matches!(stat.state, 'T' | 'Z' | 'X' | 'x'))
}

/// The live processes whose parent is `pid`.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            stat(child).is_some_and(|stat| stat.parent == pid && !matches!(stat.state, 'Z' | 'X'))
        })
        .collect()
}

/// The working directory of `pid`, if it is alive and this process may see
/// it. A server's is its data folder, which tells it from an unrelated
/// process that got a reused pid.
pub(crate) fn cwd(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// The live processes that have `arg`, exactly, among their command-line
/// arguments.
#[cfg(feature = "browser")]
pub(crate) fn with_arg(arg: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            !is_gone(pid)
                && fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|line| line.split(|&byte| byte == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}
