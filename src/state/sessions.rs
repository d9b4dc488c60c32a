//! The owner record of a `phantom_ci debug` session (SPEC §6), so that a session that died (SIGKILL,
//! power loss) is cleaned up like a run: `<data>/work/<repo>/debug-<pid>/session` says which process
//! runs the session (pid and start time, as a run's `owner` file does) and whether its workspace is to
//! be kept (`--keep`). The next invocation that recovers the repo's runs finds the sessions whose owner
//! is gone ([`dead`]); [`crate::state::recovery`] ends their processes and removes their workspaces.
//!
//! A session in the kept workspace of a failed run ([`crate::state::kept`]) has a directory and a
//! record too (`in <run>` instead of `keep`/`remove`), for its processes; its workspace is the run's,
//! which recovery of the session never removes.
//!
//! The record sits in the session's directory, which is phantom_ci's (mode 0711 while the session
//! runs): the step user can neither write nor replace it. A directory without a record (a session
//! that is just starting, or one from an earlier version) is left alone.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::config::dirs::Dirs;
use crate::error::Error;
use crate::state::atomic_file;
use crate::state::records::process_start_time;

/// The name of a session's directory under `<data>/work/<repo>/`: `debug-<pid>`.
pub fn dir_name(pid: u32) -> String {
    format!("debug-{pid}")
}

/// The record's path in the session directory `root`.
fn record(root: &Path) -> PathBuf {
    root.join("session")
}

/// Notes that this process runs the debug session in `root` (`keep`: its workspace outlives it).
pub fn write(root: &Path, keep: bool) -> Result<(), Error> {
    write_record(root, if keep { "keep" } else { "remove" })
}

/// Notes that this process runs a debug session in the kept workspace of run `run`.
pub fn write_in(root: &Path, run: u64) -> Result<(), Error> {
    write_record(root, &format!("in {run}"))
}

fn write_record(root: &Path, what: &str) -> Result<(), Error> {
    let me = std::process::id();
    let start = process_start_time(me).unwrap_or_default();
    atomic_file::write(&record(root), format!("{me} {start} {what}\n").as_bytes())
        .map_err(|e| Error::io("cannot write", record(root), e))
}

/// Removes the record of the session in `root`, whose workspace is kept: nothing is left to clean
/// up there.
pub fn forget(root: &Path) {
    let _ = std::fs::remove_file(record(root));
}

/// A debug session whose process is gone.
#[derive(Debug, PartialEq, Eq)]
pub struct Dead {
    /// Its directory, `<data>/work/<repo>/debug-<pid>/`.
    pub root: PathBuf,
    pub pid: u32,
    /// Started with `--keep`: its workspace stays.
    pub keep: bool,
    /// A session in the kept workspace of this run: its workspace is the run's, and stays.
    pub in_run: Option<u64>,
}

impl Dead {
    /// What its processes carry as `PHANTOM_CI_WORKSPACE`.
    pub fn workspace(&self) -> PathBuf {
        self.root.join("workspace")
    }

    /// Its record is dealt with: removed with the directory, or alone when the workspace is kept.
    pub fn forget(&self) {
        forget(&self.root);
    }
}

/// The debug sessions of `repo` whose owner process is gone (by its pid and start time, so a reused
/// pid is never taken for it). Live sessions, and directories without a readable record, are not
/// listed.
pub fn dead(dirs: &Dirs, repo: &str) -> Vec<Dead> {
    let dir = dirs.work().join(repo);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let pid: u32 = name.to_str()?.strip_prefix("debug-")?.parse().ok()?;
            let root = entry.path();
            let (owner, start, keep, in_run) =
                parse(&std::fs::read_to_string(record(&root)).ok()?)?;
            // A record that names another process than its directory does was not written by
            // phantom_ci: leave it be.
            (owner == pid && !alive(pid, start)).then_some(Dead {
                root,
                pid,
                keep,
                in_run,
            })
        })
        .collect()
}

/// Whether process `pid`, started at `start`, still runs. Where `/proc` cannot tell, a process that
/// exists counts as alive: a live session is never taken for a dead one.
fn alive(pid: u32, start: u64) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return true;
    };
    if raw <= 0 {
        return true;
    }
    match process_start_time(pid) {
        Some(now) => now == start,
        None => kill(Pid::from_raw(raw), None) != Err(Errno::ESRCH),
    }
}

/// `<pid> <start time> <keep|remove|in RUN>`.
fn parse(text: &str) -> Option<(u32, u64, bool, Option<u64>)> {
    let mut fields = text.split_whitespace();
    let pid = fields.next()?.parse().ok()?;
    let start = fields.next()?.parse().ok()?;
    let (keep, in_run) = match fields.next()? {
        "keep" => (true, None),
        "remove" => (false, None),
        "in" => (true, Some(fields.next()?.parse().ok()?)),
        _ => return None,
    };
    Some((pid, start, keep, in_run))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(root: &std::path::Path) -> Dirs {
        Dirs::under(root)
    }

    #[test]
    fn a_session_is_dead_once_its_owner_is_gone_and_never_while_it_lives() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = dirs(tmp.path());
        let repo = dirs.work().join("app");
        let live = repo.join(dir_name(std::process::id()));
        std::fs::create_dir_all(&live).unwrap();
        write(&live, false).unwrap();
        // A session that died: pid 1 never started at the end of time.
        let gone = repo.join(dir_name(1));
        std::fs::create_dir_all(&gone).unwrap();
        std::fs::write(record(&gone), format!("1 {} keep\n", u64::MAX)).unwrap();
        // Starting (no record yet), forged (another pid), garbled, and not a session at all.
        for (name, text) in [
            ("debug-2", None),
            ("debug-3", Some("1 1 remove\n")),
            ("debug-4", Some("4 x remove\n")),
            ("7", Some("7 1 remove\n")),
            // Never a process group or every process to signal.
            ("debug-0", Some("0 1 remove\n")),
            ("debug-4294967295", Some("4294967295 1 remove\n")),
        ] {
            std::fs::create_dir_all(repo.join(name)).unwrap();
            if let Some(text) = text {
                std::fs::write(record(&repo.join(name)), text).unwrap();
            }
        }
        assert_eq!(
            dead(&dirs, "app"),
            [Dead {
                root: gone.clone(),
                pid: 1,
                keep: true,
                in_run: None,
            }]
        );
        assert_eq!(parse("12 34 remove\n"), Some((12, 34, false, None)));
        assert_eq!(parse("12 34 in 7\n"), Some((12, 34, true, Some(7))));
        assert_eq!(parse("12 34 in\n"), None);
        forget(&gone);
        assert!(dead(&dirs, "app").is_empty());
        assert!(dead(&dirs, "other").is_empty());
    }
}
