//! A branch's base tree (issue 23): a checkout phantom_ci keeps at `<data>/base/<repo>~<branch>/tree`
//! and moves from commit to commit by writing only what changed, so that a run of a big repository
//! after a small change pays for that change, not for every file. Each run's workspace is a
//! copy-on-write layer over it ([`crate::isolation::overlay`]); the base itself is never written by a
//! step.
//!
//! - **Private.** `<data>/base` is 0700, phantom_ci's: no step user can reach a base tree by its
//!   path. Its files belong to the step user (`run_as`) so that, in the layer, the steps may change
//!   the tracked files as they may in a plain checkout; a base made for another user is made again.
//! - **Exact or remade.** `base.json` names the commit the tree holds, its size, its owner and the
//!   machine's boot; it is removed before the tree changes and written after. A base without it, of
//!   another boot (a power loss may have left half-written files), of another owner, or that `git`
//!   cannot move, is removed and checked out again from scratch.
//! - **Bounded.** A move is counted before anything is written ([`crate::git::checkout_delta`], in
//!   O(change)) against the repo's `checkout_limit`, as a fresh checkout would be, and `git
//!   checkout` is stopped at the run's deadline. At most [`MAX_BASE_TREES`] bases are kept per data
//!   directory, the least recently used evicted first ([`evict`]).
//! - **One user at a time.** The base's lock (`<data>/base/<key>.lock`) is held from the move to the
//!   run's end, when the layer that reads the tree is gone; eviction takes it too, without waiting.

use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use serde::{Deserialize, Serialize};

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::Flock;

use crate::config::dirs::Dirs;
use crate::git::checkout::{write_files, write_packed_refs};
use crate::git::{Budget, CheckoutError, checkout_delta, checkout_workspace, other};
use crate::isolation::dirfd;
use crate::isolation::privilege::{self, StepUser};

/// The most base trees kept per data directory.
pub const MAX_BASE_TREES: usize = 16;

/// What the base tree holds, written after it changed (`base.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    commit: String,
    /// Its size as [`crate::git::checkout_size`] counts it.
    size: u64,
    uid: u32,
    gid: u32,
    /// `/proc/sys/kernel/random/boot_id` when it was written.
    boot: String,
    /// The repository whose objects the tree borrows (`objects/info/alternates`, `origin`).
    source: String,
}

/// A base tree at its commit, locked until this is dropped.
#[derive(Debug)]
pub struct BaseTree {
    /// The checkout (the layer's lower directory).
    pub tree: PathBuf,
    _lock: Flock<File>,
}

/// Locks the base `key`: `<data>/base/<key>.lock` (0600, in the 0700 `<data>/base`, never through a
/// link), an `flock` the kernel drops when its holder dies. `None` when another process holds it and
/// `wait` is false.
fn lock(dirs: &Dirs, key: &str, wait: bool) -> Result<Option<Flock<File>>, String> {
    let path = dirs.bases().join(format!("{key}.lock"));
    crate::config::dirs::lock_private(&path, wait)
        .map_err(|e| format!("cannot lock `{}`: {e}", path.display()))
}

/// How the base came to its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// It was there already.
    Unchanged,
    /// Moved from another commit: that many files and directories written, that many removed.
    Changed { written: usize, removed: u64 },
    /// Made from scratch: why (no base yet, or what was wrong with the one there).
    Made { why: String },
}

impl std::fmt::Display for Moved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Moved::Unchanged => f.write_str("at this commit already"),
            Moved::Changed { written, removed } => {
                write!(f, "moved: {written} written, {removed} removed")
            }
            Moved::Made { why } => write!(f, "checked out in full: {why}"),
        }
    }
}

/// Why the base could not be brought to the commit.
#[derive(Debug)]
pub enum BaseError {
    /// The commit itself is refused (too large, too deep) or the run's time is up: the run's error,
    /// as a plain checkout's would be.
    Checkout(CheckoutError),
    /// Something of phantom_ci's own (a directory it cannot write): the run makes a plain checkout.
    Other(String),
}

impl BaseTree {
    /// Locks the base of `key` (waiting for an eviction to end) and brings it to `commit` of
    /// `source`, its files `user`'s, within `budget`.
    pub fn prepare(
        dirs: &Dirs,
        key: &str,
        source: &Repository,
        commit: Oid,
        user: &StepUser,
        budget: &Budget,
    ) -> Result<(BaseTree, Moved), BaseError> {
        let dir = dirs.bases().join(key);
        let make = |dir: &Path| {
            dirs.make(dir)
                .map_err(|e| BaseError::Other(format!("cannot create `{}`: {e}", dir.display())))
        };
        make(&dirs.bases())?;
        let lock = lock(dirs, key, true)
            .map_err(BaseError::Other)?
            .ok_or_else(|| BaseError::Other("cannot lock the base tree".into()))?;
        // Made once locked: an eviction that held the lock may have just removed it.
        make(&dir)?;
        let base = BaseTree {
            tree: dir.join("tree"),
            _lock: lock,
        };
        let wanted = Marker {
            commit: commit.to_string(),
            size: 0,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            boot: boot_id(),
            source: source.path().to_string_lossy().into_owned(),
        };
        let marker = dir.join("base.json");
        let found: Option<Marker> = std::fs::read(&marker)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let why = match found {
            None if base.tree.exists() => "its `base.json` is missing or damaged".to_string(),
            None => "no base tree yet".to_string(),
            Some(found) if (found.uid, found.gid) != (wanted.uid, wanted.gid) => {
                "it belongs to another user (`run_as` changed)".to_string()
            }
            Some(found) if found.boot != wanted.boot => {
                "the machine restarted since it was written".to_string()
            }
            Some(found) if found.source != wanted.source => {
                "the repository's `path` changed".to_string()
            }
            Some(found) if found.commit == wanted.commit && base.tree.is_dir() => {
                // Written again: its time is the base's last use, for [`evict`].
                write_marker(&marker, &found)?;
                return Ok((base, Moved::Unchanged));
            }
            Some(found) => match base.move_to(&marker, &found, source, commit, user, budget) {
                Ok(moved) => {
                    let marker_now = Marker {
                        size: moved.1,
                        ..wanted
                    };
                    write_marker(&marker, &marker_now)?;
                    return Ok((base, moved.0));
                }
                Err(BaseError::Checkout(CheckoutError::Git(e))) => {
                    format!("it could not be moved ({e})")
                }
                Err(e) => return Err(e),
            },
        };
        let size = base.make(&marker, source, commit, user, budget)?;
        write_marker(&marker, &Marker { size, ..wanted })?;
        Ok((base, Moved::Made { why }))
    }

    /// Moves the tree from `found`'s commit to `commit`, writing what differs; the new size.
    fn move_to(
        &self,
        marker: &Path,
        found: &Marker,
        source: &Repository,
        commit: Oid,
        user: &StepUser,
        budget: &Budget,
    ) -> Result<(Moved, u64), BaseError> {
        let from = Oid::from_str(&found.commit).map_err(other("base.json"))?;
        let delta = checkout_delta(source, from, found.size, commit, budget)?;
        remove_marker(marker)?;
        let git_dir = self.tree.join(".git");
        write_packed_refs(source, &git_dir)
            .map_err(other("cannot copy the source's refs into the base tree"))?;
        write_files(&self.tree, &git_dir, commit, budget)?;
        // What git wrote is root's: the step user's, as the rest — by descriptor, following no
        // link (every tree was checked, so each path's parents are directories git wrote; a link
        // there would be a bug, not a way out).
        for path in &delta.written {
            dirfd::chown_below(&self.tree, path, user.uid, user.gid)
                .map_err(|e| cannot_give(&self.tree.join(path), user, e))?;
        }
        privilege::chown_tree(&git_dir, user).map_err(|e| cannot_give(&git_dir, user, e))?;
        Ok((
            Moved::Changed {
                written: delta.written.len(),
                removed: delta.removed,
            },
            delta.size,
        ))
    }

    /// Removes whatever is there and checks `commit` out in full; its size.
    fn make(
        &self,
        marker: &Path,
        source: &Repository,
        commit: Oid,
        user: &StepUser,
        budget: &Budget,
    ) -> Result<u64, BaseError> {
        remove_marker(marker)?;
        match crate::isolation::dirfd::remove_tree(&self.tree) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(BaseError::Other(format!(
                    "cannot remove `{}`: {e}",
                    self.tree.display()
                )));
            }
            _ => {}
        }
        let size = match checkout_workspace(source, commit, &self.tree, budget) {
            Ok(size) => size,
            Err(e) => {
                // Nothing of a refused or stopped checkout stays.
                let _ = crate::isolation::dirfd::remove_tree(&self.tree);
                return Err(BaseError::Checkout(e));
            }
        };
        // Giving the files to the step user changes their ctime and owner, which git's index
        // recorded: git is told to compare mtimes and sizes only, so that the next move rewrites
        // only what changed (and `git status` in a step does not hash every file again).
        Repository::open(&self.tree)
            .and_then(|repo| repo.config())
            .and_then(|mut config| {
                config.set_str("core.checkStat", "minimal")?;
                config.set_bool("core.trustctime", false)
            })
            .map_err(|e| {
                BaseError::Other(format!(
                    "cannot configure `{}`: {}",
                    self.tree.display(),
                    e.message()
                ))
            })?;
        privilege::chown_tree(&self.tree, user).map_err(|e| cannot_give(&self.tree, user, e))?;
        Ok(size)
    }
}

impl From<CheckoutError> for BaseError {
    fn from(error: CheckoutError) -> Self {
        BaseError::Checkout(error)
    }
}

impl From<crate::git::GitError> for BaseError {
    fn from(error: crate::git::GitError) -> Self {
        BaseError::Checkout(CheckoutError::Git(error))
    }
}

fn cannot_give(path: &Path, user: &StepUser, error: impl std::fmt::Display) -> BaseError {
    BaseError::Other(format!(
        "cannot give `{}` to `{}`: {error}",
        path.display(),
        user.name
    ))
}

/// Removes `base.json` before the tree changes: a crash from here on leaves a base that is made
/// again.
fn remove_marker(marker: &Path) -> Result<(), BaseError> {
    match std::fs::remove_file(marker) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BaseError::Other(format!(
            "cannot remove `{}`: {e}",
            marker.display()
        ))),
        _ => Ok(()),
    }
}

/// Written whole by a rename, not synced: after a power loss the boot differs and the base is made
/// again anyway.
fn write_marker(marker: &Path, value: &Marker) -> Result<(), BaseError> {
    let bytes = serde_json::to_vec(value).map_err(|e| BaseError::Other(e.to_string()))?;
    let scratch = marker.with_extension("json.new");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&scratch)
        .and_then(|mut file| std::io::Write::write_all(&mut file, &bytes));
    written
        .and_then(|()| std::fs::rename(&scratch, marker))
        .map_err(|e| BaseError::Other(format!("cannot write `{}`: {e}", marker.display())))
}

/// This boot of the machine; empty where the kernel does not say (then a restart is not noticed,
/// and a base is trusted as on any other day).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

/// Makes room for the base `coming` (which a run is about to use): the least recently used other
/// bases go until, with it, there are at most [`MAX_BASE_TREES`] — each only if nobody holds it (a
/// run of another repo may be layered over it). Returns the keys removed.
pub fn evict(dirs: &Dirs, coming: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dirs.bases()) else {
        return Vec::new();
    };
    let mut bases: Vec<(std::time::SystemTime, String)> = entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let used = std::fs::metadata(entry.path().join("base.json"))
                .or_else(|_| entry.metadata())
                .and_then(|m| m.modified())
                .ok()?;
            (name != coming).then_some((used, name))
        })
        .collect();
    bases.sort();
    let mut over = bases.len().saturating_sub(MAX_BASE_TREES - 1);
    let mut removed = Vec::new();
    for (_, key) in bases {
        if over == 0 {
            break;
        }
        let Ok(Some(_lock)) = lock(dirs, &key, false) else {
            continue;
        };
        if crate::isolation::dirfd::remove_tree(dirs.bases().join(&key)).is_ok() {
            over -= 1;
            removed.push(key);
        }
    }
    removed
}

/// Removes every base tree of `repo` that nobody uses (`phantom_ci remove`).
pub fn remove_repo(dirs: &Dirs, repo: &str) {
    let Ok(entries) = std::fs::read_dir(dirs.bases()) else {
        return;
    };
    let prefix = format!("{repo}~");
    for entry in entries.flatten() {
        let Ok(key) = entry.file_name().into_string() else {
            continue;
        };
        if key.starts_with(&prefix)
            && !key.ends_with(".lock")
            && let Ok(Some(_lock)) = lock(dirs, &key, false)
        {
            let _ = crate::isolation::dirfd::remove_tree(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A base directory `key` last used `age` seconds ago.
    fn base(dirs: &Dirs, key: &str, age: u64) {
        let dir = dirs.bases().join(key);
        std::fs::create_dir_all(dir.join("tree")).unwrap();
        let marker = File::create(dir.join("base.json")).unwrap();
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
        marker.set_modified(when).unwrap();
    }

    #[test]
    fn eviction_removes_the_least_recently_used_bases_nobody_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(tmp.path());
        for i in 0..MAX_BASE_TREES + 2 {
            // `app~0` is the oldest.
            base(&dirs, &format!("app~{i}"), 1000 - i as u64);
        }
        // Room for one more, `app~new`: with it, 16. The oldest is in use by a run: it stays, and
        // the next oldest go in its place.
        let held = lock(&dirs, "app~0", false).unwrap().unwrap();
        let mut removed = evict(&dirs, "app~new");
        removed.sort();
        assert_eq!(removed, ["app~1", "app~2", "app~3"]);
        assert!(dirs.bases().join("app~0/tree").is_dir());
        base(&dirs, "app~new", 0);
        // A base already there needs no room.
        assert!(evict(&dirs, "app~new").is_empty());
        // Another one, and the oldest is free now: it goes.
        drop(held);
        assert_eq!(evict(&dirs, "app~newer"), ["app~0"]);
        // `remove` of the repo takes the rest (never another repo's).
        base(&dirs, "other~main", 0);
        remove_repo(&dirs, "app");
        let left: Vec<String> = std::fs::read_dir(dirs.bases())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert_eq!(left, ["other~main"]);
    }
}
