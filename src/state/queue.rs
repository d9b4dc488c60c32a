//! Queued work: at most one pending commit per branch of a repo, in `<data>/queue/<repo>~<branch>.json`
//! (SPEC §4.5, §6).
//!
//! A newer push of a branch simply replaces that branch's pending entry: the newest commit runs and a
//! replaced one leaves no record. Entries of different branches wait side by side and run oldest
//! first, one at a time (runs of a repo never overlap). Entries are written atomically and survive
//! phantom_ci being killed; the next `hook` or `tick` picks them up.
//!
//! The life of an entry: [`with_lock`] reads the branch tip and [`put`]s it (the short queue lock makes
//! "read the tip, queue it" one step, so an older tip never replaces a newer one); the holder of the
//! repo's run lock [`take`]s it by renaming it to `<repo>.claimed` (a push that lands meanwhile makes a
//! new pending entry, nothing is lost); once the run's record says `running`, [`release`] drops the
//! claim. A claim left by a process that died before its run started is put back by [`restore`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::dirs::Dirs;
use crate::error::Error;
use crate::state::atomic_file;
use crate::state::lock::RepoLock;
use crate::state::records::{self, Trigger};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(expecting = "a queue entry: a JSON object with `branch`, `commit`, `trigger`, `queued_at`")]
pub struct Entry {
    pub branch: String,
    pub commit: String,
    pub trigger: Trigger,
    pub queued_at: String,
    /// The `hook --wait` that queued this entry and waits to run it for its pusher ([`Waiter`]);
    /// `None` for work anyone may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiter: Option<String>,
}

impl Entry {
    /// Whether a pusher's `hook --wait` waits to run this entry itself and is still alive: then no
    /// one else takes it, so that its output reaches that pusher (and no other).
    pub fn waited_for(&self) -> bool {
        self.waiter.as_deref().is_some_and(Waiter::alive)
    }
}

/// A process that waits to run its own queue entries (`hook --wait`), named by its pid and start time
/// (`"<pid> <start>"`), so that a pid reused after it died does not pass for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter(String);

impl Waiter {
    /// This process.
    pub fn me() -> Waiter {
        let pid = std::process::id();
        let start = records::process_start_time(pid).unwrap_or_default();
        Waiter(format!("{pid} {start}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the process `token` names still lives.
    fn alive(token: &str) -> bool {
        let mut fields = token.split_whitespace();
        let pid = fields.next().and_then(|p| p.parse::<u32>().ok());
        let start = fields.next().and_then(|s| s.parse::<u64>().ok());
        match (pid, start) {
            (Some(pid), Some(start)) => records::process_start_time(pid) == Some(start),
            _ => false,
        }
    }
}

/// The file of the commit of `branch` waiting to run: `<repo>~<branch key>.json`.
fn path(dirs: &Dirs, repo: &str, branch: &str) -> PathBuf {
    dirs.queue()
        .join(format!("{repo}~{}.json", branch_key(branch)))
}

/// A branch as part of a file name: `/` and `%` written `%2F` and `%25`, so no two branches share
/// one; a name too long for a file name is written as `%sha1-` and its SHA-1, which no written name
/// starts with (a `%` of a name is `%25`). (A repo name has no `~`.)
pub fn branch_key(branch: &str) -> String {
    let mut key = String::with_capacity(branch.len());
    for c in branch.chars() {
        match c {
            '/' => key.push_str("%2F"),
            '%' => key.push_str("%25"),
            c => key.push(c),
        }
    }
    if key.len() > 120 {
        key = git2::Oid::hash_object(git2::ObjectType::Blob, branch.as_bytes())
            .map_or_else(|_| "%long".to_string(), |id| format!("%sha1-{id}"));
    }
    key
}

/// Earlier versions kept one pending entry per repo, here; it is still read and run.
fn legacy_path(dirs: &Dirs, repo: &str) -> PathBuf {
    dirs.queue().join(format!("{repo}.json"))
}

/// The entry a worker has taken: one per repo, since runs of a repo never overlap.
fn claimed(dirs: &Dirs, repo: &str) -> PathBuf {
    dirs.queue().join(format!("{repo}.claimed"))
}

/// The files of the commits of `repo` waiting to run, one per branch.
fn pending_files(dirs: &Dirs, repo: &str) -> Vec<PathBuf> {
    let prefix = format!("{repo}~");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dirs.queue())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name().to_str().is_some_and(|name| {
                name.starts_with(&prefix) && name.ends_with(".json")
                    || name == format!("{repo}.json")
            })
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

fn read(path: &std::path::Path) -> Option<Entry> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Makes `<data>/queue` (0700: only phantom_ci's user may open its entries and locks).
fn create_dir(dirs: &Dirs) -> Result<(), Error> {
    let dir = dirs.queue();
    dirs.make(&dir)
        .map_err(|e| Error::io("cannot create", &dir, e))
}

/// Runs `f` while holding the queue lock of `repo` (not the run lock: it is held only for as long as
/// reading a branch tip and writing an entry take).
pub fn with_lock<T>(dirs: &Dirs, repo: &str, f: impl FnOnce() -> T) -> Result<T, Error> {
    create_dir(dirs)?;
    let lock_path = dirs.queue().join(format!("{repo}.lock"));
    let _lock = crate::config::dirs::lock_private(&lock_path, true)
        .map_err(|e| Error::io("cannot lock", &lock_path, e))?;
    Ok(f())
}

/// Queues `entry` for `repo`, replacing whatever was pending for its branch. Call it inside
/// [`with_lock`].
pub fn put(dirs: &Dirs, repo: &str, entry: &Entry) -> Result<(), Error> {
    put_with(dirs, repo, entry, atomic_file::write)
}

/// [`put`] for the hook, which a pusher waits for: the entry is written whole but not synced to the
/// disk. A power loss before its run starts may lose it; the branch's tip then has no run that saw
/// it, and the next `tick` queues it again. (Once the worker starts the run, the run's record and the
/// branch's `seen` are durable.)
pub fn put_quick(dirs: &Dirs, repo: &str, entry: &Entry) -> Result<(), Error> {
    put_with(dirs, repo, entry, atomic_file::write_unsynced)
}

fn put_with(
    dirs: &Dirs,
    repo: &str,
    entry: &Entry,
    write: fn(&Path, &[u8]) -> std::io::Result<()>,
) -> Result<(), Error> {
    create_dir(dirs)?;
    let bytes = serde_json::to_vec(entry)
        .map_err(|e| Error::Other(format!("cannot serialise a queue entry: {e}")))?;
    let path = path(dirs, repo, &entry.branch);
    write(&path, &bytes).map_err(|e| Error::io("cannot write", &path, e))?;
    // An earlier version's entry of the same branch is replaced too.
    let legacy = legacy_path(dirs, repo);
    if read(&legacy).is_some_and(|old| old.branch == entry.branch) {
        let _ = std::fs::remove_file(legacy);
    }
    Ok(())
}

/// Makes the pending entry of `branch` of `repo` anyone's work if `waiter` queued it: the waiting
/// pusher is done with it (it ran it, or gave up) and leaves it to a worker.
pub fn forget_waiter(dirs: &Dirs, repo: &str, branch: &str, waiter: &Waiter) -> Result<(), Error> {
    with_lock(dirs, repo, || match peek(dirs, repo, branch) {
        Some(mut entry) if entry.waiter.as_deref() == Some(waiter.as_str()) => {
            entry.waiter = None;
            put(dirs, repo, &entry)
        }
        _ => Ok(()),
    })?
}

/// Drops the commits of `repo` waiting to run (`cancel --queued`), each marked seen so that no
/// `tick` queues it again; returns what was dropped. A
/// claimed entry is left alone: its run is starting, and `cancel` stops that.
pub fn drop_pending(dirs: &Dirs, repo: &str) -> Result<Vec<Entry>, Error> {
    if pending_files(dirs, repo).is_empty() {
        return Ok(Vec::new());
    }
    with_lock(dirs, repo, || {
        let mut dropped = Vec::new();
        for file in pending_files(dirs, repo) {
            let entry = read(&file);
            // Handled, under the queue's lock: the next `tick` finds it the branch's tip and must
            // not queue it again — and a newer commit's run, which can only start once this lock is
            // let go, marks its own.
            if let Some(entry) = &entry {
                crate::state::seen::set(dirs, repo, &entry.branch, &entry.commit)?;
            }
            match std::fs::remove_file(&file) {
                Ok(()) => dropped.extend(entry),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("cannot remove", file, e)),
            }
        }
        Ok(dropped)
    })?
}

/// Whether `repo` has work that has not started yet (pending, or claimed by a worker that died).
pub fn is_pending(dirs: &Dirs, repo: &str) -> bool {
    claimed(dirs, repo).exists() || !pending_files(dirs, repo).is_empty()
}

/// The entries of `repo` waiting to run, oldest first (the order they run in). A file whose entry
/// names another branch than its name says is not one (only phantom_ci writes here).
pub fn pending_entries(dirs: &Dirs, repo: &str) -> Vec<Entry> {
    let legacy = legacy_path(dirs, repo);
    let mut entries: Vec<Entry> = pending_files(dirs, repo)
        .into_iter()
        .filter_map(|file| {
            read(&file).filter(|entry| file == legacy || file == path(dirs, repo, &entry.branch))
        })
        .collect();
    entries.sort_by(|a, b| a.queued_at.cmp(&b.queued_at));
    entries
}

/// The entry of `repo` that runs next: the oldest that no living pusher waits to run itself.
pub fn next(dirs: &Dirs, repo: &str) -> Option<Entry> {
    pending_entries(dirs, repo)
        .into_iter()
        .find(|entry| !entry.waited_for())
}

/// [`next`], passing over the entries of the branches in `but`.
pub fn next_but(dirs: &Dirs, repo: &str, but: &[String]) -> Option<Entry> {
    pending_entries(dirs, repo)
        .into_iter()
        .find(|entry| !entry.waited_for() && !but.contains(&entry.branch))
}

/// The pending entry of `branch` of `repo`, left in place.
pub fn peek(dirs: &Dirs, repo: &str, branch: &str) -> Option<Entry> {
    read(&path(dirs, repo, branch))
        .or_else(|| read(&legacy_path(dirs, repo)).filter(|entry| entry.branch == branch))
}

/// The entry of `repo` a worker has taken but whose run has not started yet.
pub fn peek_claimed(dirs: &Dirs, repo: &str) -> Option<Entry> {
    read(&claimed(dirs, repo))
}

/// Takes the pending entry of `branch` of `repo`, if any, by claiming it. Only the holder of the
/// repo's run lock may take: the run it starts is then the only one of that repo.
pub fn take(
    dirs: &Dirs,
    repo: &str,
    branch: &str,
    _lock: &RepoLock,
) -> Result<Option<Entry>, Error> {
    let mut pending = path(dirs, repo, branch);
    if !pending.exists() && read(&legacy_path(dirs, repo)).is_some_and(|e| e.branch == branch) {
        pending = legacy_path(dirs, repo);
    }
    let claim = claimed(dirs, repo);
    match std::fs::rename(&pending, &claim) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot claim", pending, e)),
    }
    let entry = std::fs::read(&claim)
        .map_err(|e| Error::io("cannot read", &claim, e))
        .and_then(|bytes| {
            serde_json::from_slice(&bytes).map_err(|e| {
                Error::Other(format!(
                    "dropped the damaged queue entry `{}`: {e}",
                    pending.display()
                ))
            })
        });
    if entry.is_err() {
        // A damaged entry cannot be run; dropping it is safe: `tick` queues the branch tip again.
        let _ = std::fs::remove_file(&claim);
    }
    entry.map(Some)
}

/// Drops the claim of `repo`: its run has started (its record says `running`).
pub fn release(dirs: &Dirs, repo: &str) {
    let _ = std::fs::remove_file(claimed(dirs, repo));
}

/// Puts back a claim whose worker died before its run started; drops it when a newer entry of its
/// branch is pending, when the claimed commit's run did start, or when it cannot be read. The caller
/// holds the repo's run lock.
pub fn restore(dirs: &Dirs, repo: &str, _lock: &RepoLock) {
    let claim = claimed(dirs, repo);
    let Ok(bytes) = std::fs::read(&claim) else {
        return;
    };
    let Ok(entry) = serde_json::from_slice::<Entry>(&bytes) else {
        // Nothing can run it; `tick` queues the branch tip again.
        let _ = std::fs::remove_file(&claim);
        return;
    };
    let started = records::last(dirs, repo, None).is_some_and(|run| {
        run.branch == entry.branch
            && run.commit == entry.commit
            && run.started_at >= entry.queued_at
    });
    if started {
        // Its run started (and died, or it would have released the claim): the commit counts as seen,
        // so that `tick` does not run it again by itself.
        let _ = crate::state::seen::set(dirs, repo, &entry.branch, &entry.commit);
    }
    if started || peek(dirs, repo, &entry.branch).is_some() {
        let _ = std::fs::remove_file(&claim);
    } else {
        let _ = std::fs::rename(&claim, path(dirs, repo, &entry.branch));
    }
}

/// The repos that have work that has not started yet.
pub fn pending(dirs: &Dirs) -> Vec<String> {
    let mut repos: Vec<String> = std::fs::read_dir(dirs.queue())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let repo = name
                .strip_suffix(".json")
                .or_else(|| name.strip_suffix(".claimed"))?;
            Some(repo.split('~').next().unwrap_or(repo).to_string())
        })
        .collect();
    repos.sort();
    repos.dedup();
    repos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_entry_replaces_the_pending_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: tmp.path().join("c"),
            data: tmp.path().join("d"),
        };
        let entry = |commit: &str| Entry {
            branch: "master".into(),
            commit: commit.into(),
            trigger: Trigger::Hook,
            queued_at: "now".into(),
            waiter: None,
        };
        put(&dirs, "app", &entry("a")).unwrap();
        put(&dirs, "app", &entry("b")).unwrap();
        assert_eq!(pending(&dirs), ["app"]);
        let lock = RepoLock::acquire(&dirs, "app", true).unwrap().unwrap();
        assert_eq!(
            take(&dirs, "app", "master", &lock).unwrap(),
            Some(entry("b"))
        );
        assert_eq!(take(&dirs, "app", "master", &lock).unwrap(), None);
        assert_eq!(pending(&dirs), ["app"], "claimed, not started");
        release(&dirs, "app");
        assert!(pending(&dirs).is_empty());
    }

    #[test]
    fn a_claim_whose_run_never_started_is_put_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: tmp.path().join("c"),
            data: tmp.path().join("d"),
        };
        let entry = Entry {
            branch: "master".into(),
            commit: "a".into(),
            trigger: Trigger::Hook,
            queued_at: "2026-01-01T00:00:00.000Z".into(),
            waiter: None,
        };
        put(&dirs, "app", &entry).unwrap();
        let lock = RepoLock::acquire(&dirs, "app", true).unwrap().unwrap();
        assert!(take(&dirs, "app", "master", &lock).unwrap().is_some());
        // The worker dies here. The next one restores the claim and takes it again.
        restore(&dirs, "app", &lock);
        assert_eq!(peek(&dirs, "app", "master"), Some(entry.clone()));
        assert_eq!(take(&dirs, "app", "master", &lock).unwrap(), Some(entry));
    }

    #[test]
    fn an_entry_is_waited_for_only_while_its_waiter_lives() {
        let mut entry = Entry {
            branch: "master".into(),
            commit: "a".into(),
            trigger: Trigger::Hook,
            queued_at: "now".into(),
            waiter: None,
        };
        assert!(!entry.waited_for());
        entry.waiter = Some(Waiter::me().as_str().to_string());
        assert!(entry.waited_for());
        // Pid 1 started long before this test: the token names another process, gone.
        entry.waiter = Some(format!("1 {}", u64::MAX));
        assert!(!entry.waited_for());
        entry.waiter = Some("garbage".into());
        assert!(!entry.waited_for());
        // Entries written before waiters existed still read.
        let old: Entry = serde_json::from_str(
            r#"{"branch":"master","commit":"a","trigger":"hook","queued_at":"now"}"#,
        )
        .unwrap();
        assert_eq!(old.waiter, None);
        assert!(!serde_json::to_string(&old).unwrap().contains("waiter"));
    }

    #[test]
    fn a_waiter_that_gives_up_leaves_its_entry_to_anyone() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: tmp.path().join("c"),
            data: tmp.path().join("d"),
        };
        let me = Waiter::me();
        let entry = Entry {
            branch: "master".into(),
            commit: "a".into(),
            trigger: Trigger::Hook,
            queued_at: "now".into(),
            waiter: Some(me.as_str().to_string()),
        };
        put(&dirs, "app", &entry).unwrap();
        forget_waiter(&dirs, "app", "master", &Waiter(format!("1 {}", u64::MAX))).unwrap();
        assert!(
            peek(&dirs, "app", "master").unwrap().waited_for(),
            "not another's to forget"
        );
        forget_waiter(&dirs, "app", "other", &me).unwrap();
        assert!(
            peek(&dirs, "app", "master").unwrap().waited_for(),
            "another branch's entry is not forgotten"
        );
        forget_waiter(&dirs, "app", "master", &me).unwrap();
        let left = peek(&dirs, "app", "master").unwrap();
        assert_eq!((left.commit.as_str(), left.waiter), ("a", None));
    }

    #[test]
    fn each_branch_has_its_own_slot_and_the_oldest_runs_first() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: tmp.path().join("c"),
            data: tmp.path().join("d"),
        };
        let entry = |branch: &str, commit: &str, at: &str| Entry {
            branch: branch.into(),
            commit: commit.into(),
            trigger: Trigger::Hook,
            queued_at: at.into(),
            waiter: None,
        };
        put(
            &dirs,
            "app",
            &entry("release/1.2", "r1", "2026-01-01T00:00:01.000Z"),
        )
        .unwrap();
        put(
            &dirs,
            "app",
            &entry("main", "m1", "2026-01-01T00:00:02.000Z"),
        )
        .unwrap();
        // A newer push of `release/1.2` replaces its own entry only, and keeps its turn by its time.
        put(
            &dirs,
            "app",
            &entry("release/1.2", "r2", "2026-01-01T00:00:03.000Z"),
        )
        .unwrap();
        // A branch with `%` and `/` cannot collide with another one's file.
        put(
            &dirs,
            "app",
            &entry("release%2F1.2", "x", "2026-01-01T00:00:04.000Z"),
        )
        .unwrap();
        let branches: Vec<String> = pending_entries(&dirs, "app")
            .into_iter()
            .map(|e| format!("{} {}", e.branch, e.commit))
            .collect();
        assert_eq!(branches, ["main m1", "release/1.2 r2", "release%2F1.2 x"]);
        assert_eq!(next(&dirs, "app").unwrap().commit, "m1");
        assert_eq!(pending(&dirs), ["app"]);
        // An entry left by an earlier version (`app.json`) still runs, and a push of its branch replaces it.
        std::fs::write(
            dirs.queue().join("old.json"),
            serde_json::to_vec(&entry("master", "o1", "2026-01-01T00:00:00.000Z")).unwrap(),
        )
        .unwrap();
        assert_eq!(pending(&dirs), ["app", "old"]);
        assert_eq!(peek(&dirs, "old", "master").unwrap().commit, "o1");
        put(
            &dirs,
            "old",
            &entry("master", "o2", "2026-01-01T00:00:05.000Z"),
        )
        .unwrap();
        assert_eq!(pending_entries(&dirs, "old").len(), 1);
        let lock = RepoLock::acquire(&dirs, "app", true).unwrap().unwrap();
        assert_eq!(
            take(&dirs, "app", "main", &lock).unwrap().unwrap().commit,
            "m1"
        );
        release(&dirs, "app");
        assert_eq!(drop_pending(&dirs, "app").unwrap().len(), 2);
        assert!(!is_pending(&dirs, "app"));
    }
}
