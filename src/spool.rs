//! The spool (SPEC §4.7): where a pusher who may not run the work itself drops a note that a branch
//! moved, for a root `tick` to pick up. A note carries no commit and no command — a forged one can only
//! make phantom_ci look at its configured branches again — so `tick` just removes the notes and checks
//! every repo.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::atomic_file;
use crate::error::Error;

#[derive(Serialize)]
struct Note<'a> {
    path: &'a Path,
    branch: &'a str,
}

/// Drops a note that `branch` of the repository at `path` moved.
pub fn write(spool: &Path, path: &Path, branch: &str) -> Result<(), Error> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let file = spool.join(format!("{nanos}-{}.json", std::process::id()));
    let bytes = serde_json::to_vec(&Note { path, branch })
        .map_err(|e| Error::Other(format!("cannot serialise a spool note: {e}")))?;
    atomic_file::write(&file, &bytes).map_err(|e| Error::io("cannot write the spool note", file, e))
}

/// Creates the spool as a drop box (mode 1733: anyone may add a note, nobody else may list, read or
/// remove the notes) if it does not exist. Only root's `tick` does this: it is the one that drains it.
pub fn ensure(spool: &Path) -> Result<(), Error> {
    if spool.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(spool).map_err(|e| Error::io("cannot create the spool", spool, e))?;
    std::fs::set_permissions(spool, std::fs::Permissions::from_mode(0o1733))
        .map_err(|e| Error::io("cannot set the mode of the spool", spool, e))
}

/// Removes everything in the spool — whatever a pusher put there, so that the path unit that watches
/// it for "not empty" does not start `tick` again and again. Returns how many entries there were.
pub fn clear(spool: &Path) -> usize {
    let mut removed = 0;
    for entry in std::fs::read_dir(spool).into_iter().flatten().flatten() {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let gone = if is_dir {
            std::fs::remove_dir_all(entry.path())
        } else {
            std::fs::remove_file(entry.path())
        };
        removed += usize::from(gone.is_ok());
    }
    removed
}
