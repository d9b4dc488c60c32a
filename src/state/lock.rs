//! One lock file per repo: runs of the same repo never overlap (SPEC §4.5).
//!
//! `flock` locks belong to the open file, so the kernel drops them when the holder dies, however it
//! dies: a SIGKILLed worker never leaves a repo locked. std opens files close-on-exec, so steps do not
//! inherit the lock.

use std::fs::{File, OpenOptions};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

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

/// Locks `<data>/locks/<name>`; `None` when another process holds it and `wait` is false.
fn lock(dirs: &Dirs, name: &str, wait: bool) -> Result<Option<Flock<File>>, Error> {
    let dir = dirs.locks();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
    let path = dir.join(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("cannot open the lock file", &path, e))?;
    let arg = if wait {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockExclusiveNonblock
    };
    let mut file = file;
    loop {
        match Flock::lock(file, arg) {
            Ok(lock) => return Ok(Some(lock)),
            Err((again, Errno::EINTR)) => file = again,
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, errno)) => {
                return Err(Error::io("cannot lock", path, std::io::Error::from(errno)));
            }
        }
    }
}
