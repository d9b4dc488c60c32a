//! One lock file per repo: runs of the same repo never overlap (SPEC §4.5).
//!
//! `flock` locks belong to the open file, so the kernel drops them when the holder dies, however it
//! dies: a SIGKILLed worker never leaves a repo locked. std opens files close-on-exec, so steps do not
//! inherit the lock. Nobody else can take it either: `<data>/locks` is 0700 and its files 0600, so a
//! step running as another user cannot even open a lock file (and hold it past phantom_ci's death).

use std::fs::File;

use nix::fcntl::Flock;

use crate::config::dirs::Dirs;
use crate::error::Error;

pub struct RepoLock {
    _lock: Flock<File>,
}

impl RepoLock {
    /// Takes the lock of `repo`; `None` when another process holds it and `wait` is false.
    pub fn acquire(dirs: &Dirs, repo: &str, wait: bool) -> Result<Option<RepoLock>, Error> {
        Ok(lock(dirs, &format!("{repo}.lock"), wait)?.map(|lock| RepoLock { _lock: lock }))
    }
}

/// Held while the HTML report is written, so that two runs ending at once do not leave an index that
/// misses one of them. Its file starts with a dot: no repo name can take it.
pub struct ReportLock {
    _lock: Flock<File>,
}

impl ReportLock {
    pub fn acquire(dirs: &Dirs) -> Result<ReportLock, Error> {
        let lock = lock(dirs, ".report.lock", true)?;
        let lock = lock.ok_or_else(|| Error::Other("cannot lock the report".into()))?;
        Ok(ReportLock { _lock: lock })
    }
}

pub use crate::config::dirs::open_private;

/// Locks `<data>/locks/<name>`; `None` when another process holds it and `wait` is false.
fn lock(dirs: &Dirs, name: &str, wait: bool) -> Result<Option<Flock<File>>, Error> {
    let dir = dirs.locks();
    dirs.make(&dir)
        .map_err(|e| Error::io("cannot create", &dir, e))?;
    let path = dir.join(name);
    crate::config::dirs::lock_private(&path, wait).map_err(|e| Error::io("cannot lock", path, e))
}
