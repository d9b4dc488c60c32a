//! Queued work: at most one pending commit per repo, in `<data>/queue/<repo>.json` (SPEC §4.5).
//!
//! Each repo runs exactly one branch, so a newer push simply replaces the pending entry: the newest
//! commit runs and a replaced one leaves no record. Entries are written atomically and survive
//! phantom_ci being killed; the next `hook` or `tick` picks them up.
//!
//! The life of an entry: [`with_lock`] reads the branch tip and [`put`]s it (the short queue lock makes
//! "read the tip, queue it" one step, so an older tip never replaces a newer one); the holder of the
//! repo's run lock [`take`]s it by renaming it to `<repo>.claimed` (a push that lands meanwhile makes a
//! new pending entry, nothing is lost); once the run's record says `running`, [`release`] drops the
//! claim. A claim left by a process that died before its run started is put back by [`restore`].

use std::fs::File;
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};
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

fn path(dirs: &Dirs, repo: &str) -> PathBuf {
    dirs.queue().join(format!("{repo}.json"))
}

fn claimed(dirs: &Dirs, repo: &str) -> PathBuf {
    dirs.queue().join(format!("{repo}.claimed"))
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
    let file: File = crate::state::lock::open_private(&lock_path)
        .map_err(|e| Error::io("cannot open the lock file", &lock_path, e))?;
    let _lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| Error::io("cannot lock", &lock_path, std::io::Error::from(errno)))?;
    Ok(f())
}

/// Queues `entry` for `repo`, replacing whatever was pending. Call it inside [`with_lock`].
pub fn put(dirs: &Dirs, repo: &str, entry: &Entry) -> Result<(), Error> {
    create_dir(dirs)?;
    let bytes = serde_json::to_vec(entry)
        .map_err(|e| Error::Other(format!("cannot serialise a queue entry: {e}")))?;
    let path = path(dirs, repo);
    atomic_file::write(&path, &bytes).map_err(|e| Error::io("cannot write", path, e))
}

/// Makes the pending entry of `repo` anyone's work if `waiter` queued it: the waiting pusher gives up
/// (it was told to stop) and leaves the run to a worker.
pub fn forget_waiter(dirs: &Dirs, repo: &str, waiter: &Waiter) -> Result<(), Error> {
    with_lock(dirs, repo, || match peek(dirs, repo) {
        Some(mut entry) if entry.waiter.as_deref() == Some(waiter.as_str()) => {
            entry.waiter = None;
            put(dirs, repo, &entry)
        }
        _ => Ok(()),
    })?
}

/// Drops the commit(s) of `repo` waiting to run (`cancel --queued`); returns what was dropped. A
/// claimed entry is left alone: its run is starting, and `cancel` stops that.
pub fn drop_pending(dirs: &Dirs, repo: &str) -> Result<Vec<Entry>, Error> {
    if !path(dirs, repo).exists() {
        return Ok(Vec::new());
    }
    with_lock(dirs, repo, || {
        let entry = peek(dirs, repo);
        match std::fs::remove_file(path(dirs, repo)) {
            Ok(()) => Ok(entry.into_iter().collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("cannot remove", path(dirs, repo), e)),
        }
    })?
}

/// Whether `repo` has work that has not started yet (pending, or claimed by a worker that died).
pub fn is_pending(dirs: &Dirs, repo: &str) -> bool {
    path(dirs, repo).exists() || claimed(dirs, repo).exists()
}

/// The pending entry of `repo`, left in place.
pub fn peek(dirs: &Dirs, repo: &str) -> Option<Entry> {
    serde_json::from_slice(&std::fs::read(path(dirs, repo)).ok()?).ok()
}

/// The entry of `repo` a worker has taken but whose run has not started yet.
pub fn peek_claimed(dirs: &Dirs, repo: &str) -> Option<Entry> {
    serde_json::from_slice(&std::fs::read(claimed(dirs, repo)).ok()?).ok()
}

/// Takes the pending entry of `repo`, if any, by claiming it. Only the holder of the repo's run lock
/// may take: the run it starts is then the only one of that repo.
pub fn take(dirs: &Dirs, repo: &str, _lock: &RepoLock) -> Result<Option<Entry>, Error> {
    let (pending, claim) = (path(dirs, repo), claimed(dirs, repo));
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

/// Puts back a claim whose worker died before its run started; drops it when a newer entry is pending
/// or when the claimed commit's run did start. The caller holds the repo's run lock.
pub fn restore(dirs: &Dirs, repo: &str, _lock: &RepoLock) {
    let claim = claimed(dirs, repo);
    let Ok(bytes) = std::fs::read(&claim) else {
        return;
    };
    let entry = serde_json::from_slice::<Entry>(&bytes).ok();
    let started = entry.as_ref().is_some_and(|entry| {
        records::last(dirs, repo, None)
            .is_some_and(|run| run.commit == entry.commit && run.started_at >= entry.queued_at)
    });
    if let Some(entry) = entry.filter(|_| started) {
        // Its run started (and died, or it would have released the claim): the commit counts as seen,
        // so that `tick` does not run it again by itself.
        let _ = crate::state::seen::set(dirs, repo, &entry.commit);
    }
    if started || path(dirs, repo).exists() {
        let _ = std::fs::remove_file(&claim);
    } else {
        let _ = std::fs::rename(&claim, path(dirs, repo));
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
            Some(repo.to_string())
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
        assert_eq!(take(&dirs, "app", &lock).unwrap(), Some(entry("b")));
        assert_eq!(take(&dirs, "app", &lock).unwrap(), None);
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
        assert!(take(&dirs, "app", &lock).unwrap().is_some());
        // The worker dies here. The next one restores the claim and takes it again.
        restore(&dirs, "app", &lock);
        assert_eq!(peek(&dirs, "app"), Some(entry.clone()));
        assert_eq!(take(&dirs, "app", &lock).unwrap(), Some(entry));
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
        forget_waiter(&dirs, "app", &Waiter(format!("1 {}", u64::MAX))).unwrap();
        assert!(
            peek(&dirs, "app").unwrap().waited_for(),
            "not another's to forget"
        );
        forget_waiter(&dirs, "app", &me).unwrap();
        let left = peek(&dirs, "app").unwrap();
        assert_eq!((left.commit.as_str(), left.waiter), ("a", None));
    }
}
