//! The spool (SPEC §4.7): where a pusher who may not run the work itself drops a note that a branch
//! moved, for a root `tick` to pick up. A note carries no commit and no command — a forged one can only
//! make phantom_ci look at its configured branches again — so `tick` just removes the notes and checks
//! every repo.

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

/// Removes every note; returns how many there were.
pub fn clear(spool: &Path) -> usize {
    let mut removed = 0;
    for entry in std::fs::read_dir(spool).into_iter().flatten().flatten() {
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}
