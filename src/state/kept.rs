//! Kept workspaces of failed runs (`keep_failed`, SPEC §9): the workspace of a run that ended
//! `failure`, `timeout` or `error` after its checkout stays, as the run left it, for `phantom_ci debug
//! <repo> <run>` — until its time is up, and at most the newest [`KEEP_NEWEST`] per repo.
//!
//! A kept workspace is the run's own directory, `<data>/work/<repo>/<run>/`, with a record `kept`
//! beside `workspace/`: `<until, seconds since the epoch>\n`, written atomically by the run (under the
//! repo's lock) once its processes are gone. A later run never shares it: each run has its own
//! directory.
//!
//! **Crash safety.** A run killed before its record is final leaves its record `running`; recovery
//! records it `aborted` and removes its directory, the `kept` record with it. [`sweep`] also removes a
//! kept directory whose run did not end `failure`, `timeout` or `error`: a half-kept workspace is
//! undone, never left.
//!
//! **Pinning.** A `debug` session in a kept workspace holds a shared `flock` on its `kept` record
//! ([`Pin`]); removing a kept workspace takes the exclusive lock without waiting first, and leaves the
//! workspace alone when it cannot: a live session's workspace is never removed, and the kernel drops
//! the pin of a session that died. Neither lock is the repo's: a session delays no run.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};

use crate::config::dirs::Dirs;
use crate::state::atomic_file;
use crate::state::records::{self, RunResult};

/// How many kept workspaces a repo has at most, across its branches: the newest.
pub const KEEP_NEWEST: usize = 3;

/// The record's name in a run's directory.
const RECORD: &str = "kept";

/// A kept workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub run: u64,
    /// `<data>/work/<repo>/<run>/`.
    pub root: PathBuf,
    /// When it goes.
    pub until: SystemTime,
}

impl Kept {
    /// Its working tree, where the steps ran.
    pub fn tree(&self) -> PathBuf {
        self.root.join("workspace")
    }

    pub fn expired(&self, now: SystemTime) -> bool {
        self.until <= now
    }
}

/// Whether a run that ended with `result` keeps its workspace under `keep_failed`.
pub fn keeps(result: RunResult) -> bool {
    matches!(
        result,
        RunResult::Failure | RunResult::Timeout | RunResult::Error
    )
}

/// Notes that the run directory `root` is kept for `keep_for`; returns until when.
pub fn write(root: &Path, keep_for: Duration) -> std::io::Result<SystemTime> {
    let until = SystemTime::now() + keep_for;
    let secs = until.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    atomic_file::write(&root.join(RECORD), format!("{secs}\n").as_bytes())?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The kept workspace of run `run` of `repo`, if it is (still) kept.
pub fn find(dirs: &Dirs, repo: &str, run: u64) -> Option<Kept> {
    read(dirs.work().join(repo).join(run.to_string()), run)
}

fn read(root: PathBuf, run: u64) -> Option<Kept> {
    let text = std::fs::read_to_string(root.join(RECORD)).ok()?;
    let secs: u64 = text.trim().parse().ok()?;
    Some(Kept {
        run,
        root,
        until: UNIX_EPOCH + Duration::from_secs(secs),
    })
}

/// The kept workspaces of `repo`, oldest run first.
pub fn list(dirs: &Dirs, repo: &str) -> Vec<Kept> {
    let Ok(entries) = std::fs::read_dir(dirs.work().join(repo)) else {
        return Vec::new();
    };
    let mut kept: Vec<Kept> = entries
        .flatten()
        .filter_map(|entry| {
            let run: u64 = entry.file_name().to_str()?.parse().ok()?;
            read(entry.path(), run)
        })
        .collect();
    kept.sort_by_key(|k| k.run);
    kept
}

/// What [`remove`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    Removed,
    /// A live `debug` session uses it: it stays.
    Pinned,
}

/// Removes a kept workspace unless a live session pins it.
pub fn remove(dirs: &Dirs, repo: &str, kept: &Kept) -> std::io::Result<Removed> {
    let _lock = match try_exclusive(kept) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Ok(Removed::Pinned),
        // Removed meanwhile (another sweep): nothing left to do.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Removed::Removed),
        Err(e) => return Err(e),
    };
    match crate::isolation::dirfd::remove_tree(&kept.root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // The per-repo directory too once it is empty.
    let _ = std::fs::remove_dir(dirs.work().join(repo));
    Ok(Removed::Removed)
}

/// Removes the kept workspaces of `repo` that expired, those past the newest [`KEEP_NEWEST`], and —
/// `under_lock`, when no run of the repo can be writing its records — those whose run did not end
/// in a result that keeps one (a crash between the two records); never a pinned one. Returns a note
/// per workspace that could not be removed.
pub fn sweep(dirs: &Dirs, repo: &str, now: SystemTime, under_lock: bool) -> Vec<String> {
    let kept = list(dirs, repo);
    let newest_first = kept.len().saturating_sub(KEEP_NEWEST);
    let mut notes = Vec::new();
    for (i, one) in kept.iter().enumerate() {
        let settled =
            !under_lock || records::load(dirs, repo, one.run).is_ok_and(|r| keeps(r.result));
        if settled && !one.expired(now) && i >= newest_first {
            continue;
        }
        if let Err(e) = remove(dirs, repo, one) {
            notes.push(format!(
                "cannot remove the kept workspace `{}`: {e}",
                one.root.display()
            ));
        }
    }
    notes
}

/// A live `debug` session's hold on a kept workspace (see the module's documentation).
#[derive(Debug)]
pub struct Pin {
    _lock: Flock<File>,
}

impl Pin {
    /// Pins `kept`, or says why it cannot be used (gone, or being removed right now).
    pub fn take(kept: &Kept) -> Result<Pin, String> {
        let path = kept.root.join(RECORD);
        let gone = || {
            format!(
                "the kept workspace of run #{} was removed meanwhile (it expired)",
                kept.run
            )
        };
        let file = File::open(&path).map_err(|_| gone())?;
        let lock = Flock::lock(file, FlockArg::LockSharedNonblock).map_err(|_| gone())?;
        // Still the record in place, not one a removal unlinked before we held it.
        let held = lock.metadata().map_err(|_| gone())?;
        match std::fs::metadata(&path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                Ok(Pin { _lock: lock })
            }
            _ => Err(gone()),
        }
    }
}

/// Whether a live session pins `kept` (a probe: the exclusive lock, released at once).
pub fn pinned(kept: &Kept) -> bool {
    matches!(try_exclusive(kept), Ok(None))
}

/// The exclusive lock of `kept`'s record if no session holds it (`None`: a live session does).
fn try_exclusive(kept: &Kept) -> std::io::Result<Option<Flock<File>>> {
    let record = File::open(kept.root.join(RECORD))?;
    match Flock::lock(record, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(root: &std::path::Path) -> Dirs {
        Dirs::under(root)
    }

    fn kept_run(dirs: &Dirs, run: u64, keep_for: Duration) -> Kept {
        let root = dirs.work().join("app").join(run.to_string());
        std::fs::create_dir_all(root.join("workspace")).unwrap();
        write(&root, keep_for).unwrap();
        find(dirs, "app", run).unwrap()
    }

    #[test]
    fn the_newest_three_stay_until_they_expire_and_a_pinned_one_always() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = dirs(tmp.path());
        let hour = Duration::from_secs(3600);
        for run in 1..=5 {
            kept_run(&dirs, run, hour);
        }
        let runs = || -> Vec<u64> { list(&dirs, "app").iter().map(|k| k.run).collect() };
        // Without the lock: the newest three stay until they expire, whatever the records say.
        sweep(&dirs, "app", SystemTime::now(), false);
        assert_eq!(runs(), [3, 4, 5]);
        let pin = Pin::take(&find(&dirs, "app", 4).unwrap()).unwrap();
        assert!(pinned(&find(&dirs, "app", 4).unwrap()));
        sweep(&dirs, "app", SystemTime::now() + 2 * hour, false);
        assert_eq!(runs(), [4], "expired, except what a live session uses");
        kept_run(&dirs, 6, hour);
        // Under the lock, without run records (as after a crash between the two records): nothing
        // is kept but what a live session uses.
        sweep(&dirs, "app", SystemTime::now(), true);
        assert_eq!(runs(), [4]);
        drop(pin);
        assert!(!pinned(&find(&dirs, "app", 4).unwrap()));
        sweep(&dirs, "app", SystemTime::now(), true);
        assert!(list(&dirs, "app").is_empty());
        assert!(!dirs.work().join("app").exists());
    }

    #[test]
    fn a_removed_workspace_cannot_be_pinned() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = dirs(tmp.path());
        let kept = kept_run(&dirs, 7, Duration::from_secs(60));
        assert!(!kept.expired(SystemTime::now()));
        assert!(kept.expired(SystemTime::now() + Duration::from_secs(61)));
        assert_eq!(remove(&dirs, "app", &kept).unwrap(), Removed::Removed);
        assert!(Pin::take(&kept).unwrap_err().contains("removed meanwhile"));
        assert!(find(&dirs, "app", 7).is_none());
    }
}
