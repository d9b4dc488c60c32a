//! One lock file per repo: runs of the same repo never overlap (SPEC §4.5).
//!
//! `flock` locks belong to the open file, so the kernel drops them when the holder dies, however it
//! dies: a SIGKILLed worker never leaves a repo locked. std opens files close-on-exec, so steps do not
//! inherit the lock.

use std::fs::{File, OpenOptions};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::dirs::Dirs;
use crate::error::Error;

pub struct RepoLock {
    _lock: Flock<File>,
}

impl RepoLock {
    /// Takes the lock of `repo`; `None` when another process holds it and `wait` is false.
    pub fn acquire(dirs: &Dirs, repo: &str, wait: bool) -> Result<Option<RepoLock>, Error> {
        let dir = dirs.locks();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
        let path = dir.join(format!("{repo}.lock"));
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
                Ok(lock) => return Ok(Some(RepoLock { _lock: lock })),
                Err((again, Errno::EINTR)) => file = again,
                Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
                Err((_, errno)) => {
                    return Err(Error::io("cannot lock", path, std::io::Error::from(errno)));
                }
            }
        }
    }
}
