//! Queued work: at most one pending commit per repo, in `<data>/queue/<repo>.json` (SPEC §4.5).
//!
//! Each repo runs exactly one branch, so a newer push simply replaces the pending entry: the newest
//! commit runs and a replaced one leaves no record. Entries are written atomically and survive
//! phantom_ci being killed; the next `hook` or `tick` picks them up.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::atomic_file;
use crate::dirs::Dirs;
use crate::error::Error;
use crate::lock::RepoLock;
use crate::records::Trigger;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub branch: String,
    pub commit: String,
    pub trigger: Trigger,
    pub queued_at: String,
}

fn path(dirs: &Dirs, repo: &str) -> PathBuf {
    dirs.queue().join(format!("{repo}.json"))
}

/// Queues `entry` for `repo`, replacing whatever was pending.
pub fn put(dirs: &Dirs, repo: &str, entry: &Entry) -> Result<(), Error> {
    let dir = dirs.queue();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
    let bytes = serde_json::to_vec(entry)
        .map_err(|e| Error::Other(format!("cannot serialise a queue entry: {e}")))?;
    let path = path(dirs, repo);
    atomic_file::write(&path, &bytes).map_err(|e| Error::io("cannot write", path, e))
}

pub fn is_pending(dirs: &Dirs, repo: &str) -> bool {
    path(dirs, repo).exists()
}

/// The pending entry of `repo`, left in place.
pub fn peek(dirs: &Dirs, repo: &str) -> Option<Entry> {
    serde_json::from_slice(&std::fs::read(path(dirs, repo)).ok()?).ok()
}

/// Takes the pending entry of `repo`, if any. Only the holder of the repo's lock may take: the run it
/// starts is then the only one of that repo.
pub fn take(dirs: &Dirs, repo: &str, _lock: &RepoLock) -> Result<Option<Entry>, Error> {
    let path = path(dirs, repo);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot read", path, e)),
    };
    std::fs::remove_file(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
    match serde_json::from_slice(&bytes) {
        Ok(entry) => Ok(Some(entry)),
        // A damaged entry cannot be run; dropping it is safe: `tick` queues the branch tip again.
        Err(e) => Err(Error::Other(format!(
            "dropped the damaged queue entry `{}`: {e}",
            path.display()
        ))),
    }
}

/// The repos that have pending work.
pub fn pending(dirs: &Dirs) -> Vec<String> {
    let mut repos: Vec<String> = std::fs::read_dir(dirs.queue())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    repos.sort();
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
        };
        put(&dirs, "app", &entry("a")).unwrap();
        put(&dirs, "app", &entry("b")).unwrap();
        assert_eq!(pending(&dirs), ["app"]);
        let lock = RepoLock::acquire(&dirs, "app", true).unwrap().unwrap();
        assert_eq!(take(&dirs, "app", &lock).unwrap(), Some(entry("b")));
        assert_eq!(take(&dirs, "app", &lock).unwrap(), None);
        assert!(pending(&dirs).is_empty());
    }
}
