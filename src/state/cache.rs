//! A repo's build cache (`cache = true`, SPEC §6): `<data>/cache/<repo>/`, kept between runs, owned by
//! the step user, trimmed back to `cache_limit` after each run, oldest files first.
//!
//! `<data>/cache` is phantom_ci's (0711): the step user goes through it but cannot rename or replace
//! what is in it, so `<data>/cache/<repo>` stays the directory phantom_ci made. What is *inside* is the
//! step user's, and any process of that user may change it at any time: phantom_ci only ever walks it
//! by file descriptor, each directory opened relative to its parent without following a link, and
//! changes owners and removes files relative to those descriptors — a link planted there leads
//! nowhere.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::sys::stat::{SFlag, fstatat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, unlinkat};

use crate::config::dirs::Dirs;
use crate::isolation::dirfd;
use crate::isolation::privilege::{self, StepUser};

/// How deep the cache is walked (every level holds a descriptor open). Deeper files are neither
/// counted nor trimmed.
pub const MAX_DEPTH: usize = 64;

/// `<data>/cache/<repo>`.
pub fn path(dirs: &Dirs, repo: &str) -> PathBuf {
    dirs.cache().join(repo)
}

/// Makes the repo's cache ready for a run: `<data>/cache` (0711) and `<data>/cache/<repo>` (0700, the
/// step user's). When the cache belongs to someone else (`run_as` changed), everything in it is given
/// to the step user. Returns its path. The error is the message of an `error` run.
pub fn prepare(dirs: &Dirs, repo: &str, user: &StepUser) -> Result<PathBuf, String> {
    let parent = dirs.cache();
    dirs.make(&parent)
        .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    if let Some(blocked) = privilege::unreachable_parent(user, &parent) {
        return Err(format!(
            "the `run_as` user `{}` cannot reach the cache in `{}`: `{}` is not searchable by it. \
             Use a data directory every user can traverse, such as `/var/lib/phantom_ci`",
            user.name,
            parent.display(),
            blocked.display()
        ));
    }
    let dir = path(dirs, repo);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create the cache `{}`: {e}", dir.display())),
    }
    let cannot = |e: &dyn std::fmt::Display| {
        format!(
            "cannot prepare the cache `{}`: {e}; `phantom_ci cache clear {repo}` starts it afresh",
            dir.display()
        )
    };
    // Opened without following a link; only phantom_ci can have put anything at this name.
    let top = dirfd::open_dir(None, dir.as_os_str()).map_err(|e| cannot(&e))?;
    let meta = std::fs::File::from(top.try_clone().map_err(|e| cannot(&e))?)
        .metadata()
        .map_err(|e| cannot(&e))?;
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    if meta.uid() != uid || meta.gid() != gid {
        chown_below(&top, user.uid, user.gid, 0).map_err(|e| cannot(&e))?;
        nix::unistd::fchown(&top, Some(user.uid), Some(user.gid)).map_err(|e| cannot(&e))?;
    }
    if meta.mode() & 0o7777 != 0o700 {
        let file = std::fs::File::from(top);
        file.set_permissions(std::fs::Permissions::from_mode(0o700))
            .map_err(|e| cannot(&e))?;
    }
    Ok(dir)
}

/// Gives everything below `dir` to `uid`:`gid`, never following a link.
fn chown_below(dir: &OwnedFd, uid: Uid, gid: Gid, depth: usize) -> nix::Result<()> {
    if depth >= MAX_DEPTH {
        return Err(nix::errno::Errno::ELOOP);
    }
    for name in dirfd::names(dir) {
        fchownat(
            dir,
            name.as_os_str(),
            Some(uid),
            Some(gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        if dirfd::kind(dir, &name)? == SFlag::S_IFDIR {
            let sub = dirfd::open_dir(Some(dir), &name)?;
            chown_below(&sub, uid, gid, depth + 1)?;
        }
    }
    Ok(())
}

/// One file of the cache: where it is (its names from the cache's top), when it was last written and
/// how much disk it takes.
struct Entry {
    names: Vec<OsString>,
    mtime: (i64, i64),
    bytes: u64,
}

/// Every file (anything but a directory) below `dir`, walked by descriptor.
fn entries(dir: &OwnedFd, prefix: &[OsString], out: &mut Vec<Entry>, deep: &mut bool) {
    if prefix.len() >= MAX_DEPTH {
        *deep = true;
        return;
    }
    for name in dirfd::names(dir) {
        let Ok(stat) = fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        let mut names = prefix.to_vec();
        names.push(name.clone());
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            if let Ok(sub) = dirfd::open_dir(Some(dir), &name) {
                entries(&sub, &names, out, deep);
            }
            continue;
        }
        out.push(Entry {
            names,
            mtime: (stat.st_mtime, stat.st_mtime_nsec),
            // Disk use, as `du` counts it: a sparse file cannot hide its size, nor a small file its block.
            bytes: u64::try_from(stat.st_blocks).unwrap_or(0) * 512,
        });
    }
}

/// The disk space the files of the cache `dir` take, in bytes (`None` when it cannot be opened — no
/// cache yet, or this user may not read it).
pub fn size(dir: &Path) -> Option<u64> {
    let top = dirfd::open_dir(None, dir.as_os_str()).ok()?;
    let mut found = Vec::new();
    entries(&top, &[], &mut found, &mut false);
    Some(found.iter().map(|e| e.bytes).sum())
}

/// What trimming did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Disk use before and after, in bytes.
    pub before: u64,
    pub after: u64,
    /// How many files were removed.
    pub removed: usize,
    /// Whether some directories were too deep to look into.
    pub too_deep: bool,
}

/// Removes the oldest files (by modification time) of the cache `dir` until it takes at most `limit`
/// bytes. Call it when no step of the repo runs any more.
pub fn trim(dir: &Path, limit: u64) -> Result<Trimmed, String> {
    let top = dirfd::open_dir(None, dir.as_os_str())
        .map_err(|e| format!("cannot open the cache `{}`: {e}", dir.display()))?;
    let mut found = Vec::new();
    let mut trimmed = Trimmed::default();
    entries(&top, &[], &mut found, &mut trimmed.too_deep);
    trimmed.before = found.iter().map(|e| e.bytes).sum();
    trimmed.after = trimmed.before;
    if trimmed.before <= limit {
        return Ok(trimmed);
    }
    found.sort_by_key(|e| e.mtime);
    for entry in found {
        if trimmed.after <= limit {
            break;
        }
        if remove_entry(&top, &entry.names).is_ok() {
            trimmed.after = trimmed.after.saturating_sub(entry.bytes);
            trimmed.removed += 1;
        }
    }
    Ok(trimmed)
}

/// Unlinks the file at `names` below `top`, opening each directory on the way without following links.
fn remove_entry(top: &OwnedFd, names: &[OsString]) -> nix::Result<()> {
    let Some((file, dirs)) = names.split_last() else {
        return Err(nix::errno::Errno::EINVAL);
    };
    let mut held: Option<OwnedFd> = None;
    for name in dirs {
        let next = dirfd::open_dir(Some(held.as_ref().unwrap_or(top)), name)?;
        held = Some(next);
    }
    let dir = held.as_ref().unwrap_or(top);
    if dirfd::kind(dir, file)? == SFlag::S_IFDIR {
        return Err(nix::errno::Errno::EISDIR);
    }
    unlinkat(dir, file.as_os_str(), UnlinkatFlags::NoRemoveDir)
}

/// Removes the repo's cache altogether (the next run starts with an empty one). Returns whether there
/// was one. The caller holds the repo's lock.
pub fn clear(dirs: &Dirs, repo: &str) -> Result<bool, String> {
    let parent = dirs.cache();
    let top = match dirfd::open_dir(None, parent.as_os_str()) {
        Ok(top) => top,
        Err(nix::errno::Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(format!("cannot open `{}`: {e}", parent.display())),
    };
    match dirfd::kind(&top, OsStr::new(repo)) {
        Ok(_) => {}
        Err(nix::errno::Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(format!("cannot clear the cache of `{repo}`: {e}")),
    }
    remove_tree(&top, OsStr::new(repo), 0).map_err(|e| {
        format!(
            "cannot clear the cache `{}`: {e}",
            path(dirs, repo).display()
        )
    })?;
    Ok(true)
}

/// [`dirfd::remove_all`], [`MAX_DEPTH`] levels deep.
fn remove_tree(dir: &OwnedFd, name: &OsStr, depth: usize) -> nix::Result<()> {
    if dirfd::kind(dir, name)? != SFlag::S_IFDIR {
        return unlinkat(dir, name, UnlinkatFlags::NoRemoveDir);
    }
    if depth >= MAX_DEPTH {
        return Err(nix::errno::Errno::ELOOP);
    }
    let sub = dirfd::open_dir(Some(dir), name)?;
    for inner in dirfd::names(&sub) {
        remove_tree(&sub, &inner, depth + 1)?;
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn file(path: &Path, bytes: usize, age_secs: u64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![1u8; bytes]).unwrap();
        let when = SystemTime::now() - Duration::from_secs(age_secs);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[test]
    fn trimming_removes_the_oldest_files_first_and_follows_no_link() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        file(&outside.join("precious"), 64 << 10, 10_000);
        let cache = tmp.path().join("cache");
        file(&cache.join("old"), 64 << 10, 3000);
        file(&cache.join("deep/older"), 64 << 10, 4000);
        file(&cache.join("new"), 64 << 10, 10);
        std::os::unix::fs::symlink(&outside, cache.join("link")).unwrap();

        let before = size(&cache).unwrap();
        assert!(before >= 3 * (64 << 10), "{before}");
        let trimmed = trim(&cache, 100 << 10).unwrap();
        assert_eq!(trimmed.removed, 2, "{trimmed:?}");
        assert!(trimmed.after <= 100 << 10);
        assert!(cache.join("new").exists());
        assert!(!cache.join("old").exists() && !cache.join("deep/older").exists());
        assert!(outside.join("precious").exists(), "a link is not followed");

        // Under the limit: nothing goes.
        assert_eq!(trim(&cache, 10 << 20).unwrap().removed, 0);
        assert!(cache.join("new").exists());
    }

    #[test]
    fn a_missing_cache_has_no_size() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(size(&tmp.path().join("none")), None);
    }
}
