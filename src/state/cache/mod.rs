//! A repo's build cache (`cache = true`, SPEC §6): `<data>/cache/<repo>/`, kept between runs, owned by
//! the step user, trimmed back to `cache_limit` after each run, oldest files first.
//!
//! `<data>/cache` is phantom_ci's (0711): the step user goes through it but cannot rename or replace
//! what is in it, so `<data>/cache/<repo>` stays the directory phantom_ci made. What is *inside* is the
//! step user's, and any process of that user may change it at any time: phantom_ci only ever walks it
//! by file descriptor, each directory opened relative to its parent without following a link, and
//! changes owners and removes files relative to those descriptors — a link planted there leads
//! nowhere. The walk ([`walk`](crate::isolation::walk)) holds one directory open at a time and goes
//! back up by `..`, checked, so no depth escapes it; trimming (the `trim` module) keeps no list of
//! the files. `status` shows what the last trim recorded (`<data>/cache/<repo>.size`), never walks.

mod trim;

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, unlinkat};
use serde::{Deserialize, Serialize};

use crate::config::dirs::Dirs;
use crate::isolation::dirfd;
use crate::isolation::privilege::{self, StepUser};
use crate::isolation::walk::{self, Seen};
use crate::state::atomic_file;

pub use trim::{BLOCK, Trimmed};

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
        chown_below(&top, user.uid, user.gid).map_err(|e| cannot(&e))?;
        nix::unistd::fchown(&top, Some(user.uid), Some(user.gid)).map_err(|e| cannot(&e))?;
    }
    if meta.mode() & 0o7777 != 0o700 {
        let file = std::fs::File::from(top);
        file.set_permissions(std::fs::Permissions::from_mode(0o700))
            .map_err(|e| cannot(&e))?;
    }
    Ok(dir)
}

/// Gives everything below `dir` to `uid`:`gid`, never following a link, however deep. A file with
/// more than one name may be a hard link the old user made to a file elsewhere (their own, or one
/// they may write): its name in the cache is removed instead, so the new owner never gets that file.
fn chown_below(dir: &OwnedFd, uid: Uid, gid: Gid) -> Result<(), String> {
    let mut first: Option<nix::Error> = None;
    walk::walk(dir, |seen| {
        let (Seen::Entry {
            dir, name, stat, ..
        }
        | Seen::Dir {
            dir, name, stat, ..
        }) = seen
        else {
            return;
        };
        // A directory has one name: given by it.
        if stat.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR {
            if let Err(e) = fchownat(
                dir,
                name,
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                first.get_or_insert(e);
            }
            return;
        }
        // Anything else is looked at once, by a descriptor that does not open it (`O_PATH`: a fifo
        // or a device is not touched): its count of names and the owner given are the same file's,
        // whatever an old user's process puts at the name meanwhile.
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let file = match nix::fcntl::openat(dir, name, flags, Mode::empty()) {
            Ok(file) => file,
            Err(nix::errno::Errno::ENOENT) => return,
            Err(e) => {
                first.get_or_insert(e);
                return;
            }
        };
        let given = match nix::sys::stat::fstat(&file) {
            Ok(own) if own.st_nlink > 1 => unlinkat(dir, name, UnlinkatFlags::NoRemoveDir),
            Ok(_) => fchownat(&file, "", Some(uid), Some(gid), AtFlags::AT_EMPTY_PATH),
            Err(e) => Err(e),
        };
        if let Err(e) = given {
            first.get_or_insert(e);
        }
    })
    .map_err(|e| e.to_string())?;
    first.map_or(Ok(()), |e| Err(e.to_string()))
}

/// `<data>/cache/<repo>.size`: what the last trim found (the name cannot be a repo's: repo names
/// have no dot). phantom_ci's, 0600.
pub fn record_path(dirs: &Dirs, repo: &str) -> PathBuf {
    dirs.cache().join(format!("{repo}.size"))
}

/// What the last trim left in a repo's cache, as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Recorded {
    /// What the cache counts against `cache_limit`, in bytes.
    pub bytes: u64,
    /// Its files, links and directories.
    pub entries: u64,
    /// When it was measured (RFC 3339).
    pub measured_at: String,
}

/// What the last trim recorded for the repo's cache; `None` when no trim has recorded it yet (or
/// this user may not read it).
pub fn recorded(dirs: &Dirs, repo: &str) -> Option<Recorded> {
    let bytes = std::fs::read(record_path(dirs, repo)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes the oldest entries (by modification time) of the cache `dir` until it counts at most
/// `limit` bytes (see the `trim` module for how, in bounded memory), and records its size for
/// `status`. Call it when no step of the repo runs any more.
pub fn trim(dirs: &Dirs, repo: &str, dir: &Path, limit: u64) -> Result<Trimmed, String> {
    let record = record_path(dirs, repo);
    let result = dirfd::open_dir(None, dir.as_os_str())
        .map_err(|e| format!("cannot open the cache `{}`: {e}", dir.display()))
        .and_then(|top| {
            trim::trim(&top, limit)
                .map_err(|e| format!("cannot trim the cache `{}`: {e}", dir.display()))
        });
    let trimmed = match result {
        Ok(trimmed) => trimmed,
        Err(message) => {
            // A size from before is not the size any more.
            let _ = std::fs::remove_file(&record);
            return Err(message);
        }
    };
    let recorded = Recorded {
        bytes: trimmed.after,
        entries: trimmed.entries,
        measured_at: crate::state::records::rfc3339(std::time::SystemTime::now()),
    };
    let json = serde_json::to_vec(&recorded).unwrap_or_default();
    atomic_file::write(&record, &json).map_err(|e| {
        format!(
            "cannot record the cache's size in `{}`: {e}",
            record.display()
        )
    })?;
    Ok(trimmed)
}

/// Removes the repo's cache altogether (the next run starts with an empty one), and what the last
/// trim recorded of it. Returns whether there was one. The caller holds the repo's lock.
pub fn clear(dirs: &Dirs, repo: &str) -> Result<bool, String> {
    match std::fs::remove_file(record_path(dirs, repo)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "cannot remove `{}`: {e}",
                record_path(dirs, repo).display()
            ));
        }
    }
    let parent = dirs.cache();
    let top = match dirfd::open_dir(None, parent.as_os_str()) {
        Ok(top) => top,
        Err(nix::errno::Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(format!("cannot open `{}`: {e}", parent.display())),
    };
    let cannot = |e: &dyn std::fmt::Display| {
        format!(
            "cannot clear the cache `{}`: {e}",
            path(dirs, repo).display()
        )
    };
    match dirfd::kind(&top, OsStr::new(repo)) {
        Ok(SFlag::S_IFDIR) => {}
        Ok(_) => {
            unlinkat(&top, repo, UnlinkatFlags::NoRemoveDir).map_err(|e| cannot(&e))?;
            return Ok(true);
        }
        Err(nix::errno::Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(cannot(&e)),
    }
    let dir = dirfd::open_dir(Some(&top), OsStr::new(repo)).map_err(|e| cannot(&e))?;
    remove_below(&dir).map_err(|e| cannot(&e))?;
    unlinkat(&top, repo, UnlinkatFlags::RemoveDir).map_err(|e| cannot(&e))?;
    Ok(true)
}

/// Removes everything below `dir`, however deep, never following a link.
fn remove_below(dir: &OwnedFd) -> Result<(), String> {
    let mut first: Option<nix::Error> = None;
    walk::walk(dir, |seen| {
        let result = match seen {
            Seen::Entry { dir, name, .. } => unlinkat(dir, name, UnlinkatFlags::NoRemoveDir),
            Seen::Left { dir, name, .. } => unlinkat(dir, name, UnlinkatFlags::RemoveDir),
            Seen::Dir { .. } => Ok(()),
        };
        if let Err(e) = result {
            first.get_or_insert(e);
        }
    })
    .map_err(|e| e.to_string())?;
    first.map_or(Ok(()), |e| Err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn file(path: &Path, bytes: usize, age_secs: u64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![1u8; bytes]).unwrap();
        age(path, age_secs);
    }

    fn age(path: &Path, age_secs: u64) {
        let when = SystemTime::now() - Duration::from_secs(age_secs);
        std::fs::File::open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    fn trim_dir(dir: &Path, limit: u64) -> Trimmed {
        let top = dirfd::open_dir(None, dir.as_os_str()).unwrap();
        trim::trim(&top, limit).unwrap()
    }

    /// `levels` directories `d` one inside the other below `top`; the deepest.
    fn deep(top: &Path, levels: usize) -> PathBuf {
        let mut dir = top.to_path_buf();
        for _ in 0..levels {
            dir.push("d");
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
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
        std::os::unix::fs::symlink(outside.join("precious"), cache.join("file-link")).unwrap();

        let trimmed = trim_dir(&cache, 1 << 30);
        assert_eq!(trimmed.removed, 0);
        // Three files, one directory, two links, the cache itself.
        assert_eq!(trimmed.before, 3 * (64 << 10) + 4 * BLOCK, "{trimmed:?}");
        assert_eq!(trimmed.entries, 6);
        let trimmed = trim_dir(&cache, 100 << 10);
        assert!(trimmed.after <= 100 << 10, "{trimmed:?}");
        assert!(cache.join("new").exists());
        assert!(!cache.join("old").exists() && !cache.join("deep/older").exists());
        assert!(
            !cache.join("deep").exists(),
            "a directory the trim emptied goes too"
        );
        assert!(outside.join("precious").exists(), "a link is not followed");
        assert_eq!(
            std::fs::read(outside.join("precious")).unwrap().len(),
            64 << 10
        );

        // Under the limit: nothing goes.
        assert_eq!(trim_dir(&cache, 10 << 20).removed, 0);
        assert!(cache.join("new").exists());
    }

    #[test]
    fn a_tree_deeper_than_the_old_limit_is_counted_and_trimmed() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let bottom = deep(&cache, 300);
        file(&bottom.join("old"), 64 << 10, 5000);
        file(&cache.join("new"), 64 << 10, 10);
        for level in (1..=300).rev() {
            age(&cache.join("d/".repeat(level)), 4000);
        }
        let trimmed = trim_dir(&cache, 1 << 30);
        assert_eq!(trimmed.entries, 300 + 2, "{trimmed:?}");
        assert_eq!(trimmed.before, 2 * (64 << 10) + 301 * BLOCK);

        // Over the limit: the old file 300 levels down goes, and with it the directories it leaves
        // empty (they are older than the new file).
        let trimmed = trim_dir(&cache, 100 << 10);
        assert!(!bottom.join("old").exists(), "{trimmed:?}");
        assert!(cache.join("new").exists());
        assert!(trimmed.after <= 100 << 10, "{trimmed:?}");
        assert!(!cache.join("d").exists(), "{trimmed:?}");
    }

    #[test]
    fn empty_files_count_a_block_each() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        for i in 0..100u64 {
            let path = cache.join(format!("e{i}"));
            std::fs::write(&path, "").unwrap();
            age(&path, 10_000 - i * 10);
        }
        let trimmed = trim_dir(&cache, 1 << 30);
        assert_eq!(trimmed.before, 101 * BLOCK);
        // Room for the cache itself and 40 files: the 60 oldest go, whatever their size.
        let trimmed = trim_dir(&cache, 41 * BLOCK);
        assert_eq!(trimmed.removed, 60, "{trimmed:?}");
        assert_eq!(trimmed.after, 41 * BLOCK);
        for i in 0..100 {
            assert_eq!(cache.join(format!("e{i}")).exists(), i >= 60, "e{i}");
        }
    }

    /// Modification times spread over years and clustered within seconds take the histogram through
    /// merges and finer walks (it has 16 buckets in tests): still exactly the oldest go.
    #[test]
    fn oldest_first_holds_across_merged_buckets_and_finer_walks() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let mut ages = Vec::new();
        for i in 0..200u64 {
            // Ten clusters years apart; inside each, files milliseconds to hours apart.
            let age = (i % 10) * 365 * 86_400 + (i / 10) * (i / 10) * 7 + 100;
            ages.push(age);
            let path = cache.join(format!("f{i}"));
            std::fs::write(&path, "").unwrap();
            let when = SystemTime::now() - Duration::from_secs(age) + Duration::from_millis(i);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        let trimmed = trim_dir(&cache, 51 * BLOCK);
        assert_eq!(trimmed.after, 51 * BLOCK, "{trimmed:?}");
        assert!(trimmed.walks > 2, "finer walks were needed: {trimmed:?}");
        let mut by_age: Vec<(u64, u64)> = ages
            .iter()
            .enumerate()
            .map(|(i, a)| (*a, i as u64))
            .collect();
        by_age.sort();
        for (rank, (_, i)) in by_age.iter().enumerate() {
            assert_eq!(
                cache.join(format!("f{i}")).exists(),
                rank < 50,
                "f{i}, rank {rank}"
            );
        }
    }

    /// The oldest entry is a directory that cannot go (a new file is in it): what it was counted on
    /// to free must come from the next oldest file.
    #[test]
    fn an_old_directory_that_stays_is_made_up_for() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        file(&cache.join("olddir/new"), 64 << 10, 10);
        age(&cache.join("olddir"), 9000);
        for (name, secs) in [("old1", 5003), ("old2", 5002), ("old3", 5001)] {
            file(&cache.join(name), 64 << 10, secs);
        }
        // 264 KiB; old1 and old2 would do, were the directory to go.
        let limit = 2 * BLOCK + 2 * (64 << 10) - 1;
        let trimmed = trim_dir(&cache, limit);
        assert!(trimmed.after <= limit, "{trimmed:?}");
        assert_eq!(trimmed.removed, 3, "{trimmed:?}");
        assert!(cache.join("olddir/new").exists());
    }

    #[test]
    fn clearing_and_changing_hands_reach_any_depth() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: tmp.path().join("config"),
            data: tmp.path().join("data"),
        };
        std::fs::create_dir_all(dirs.cache()).unwrap();
        let cache = path(&dirs, "app");
        let bottom = deep(&cache, 200);
        file(&bottom.join("f"), 10, 0);
        let top = dirfd::open_dir(None, cache.as_os_str()).unwrap();
        let me = (Uid::current(), Gid::current());
        chown_below(&top, me.0, me.1).unwrap();
        drop(top);
        std::fs::write(record_path(&dirs, "app"), "{}").unwrap();
        assert!(clear(&dirs, "app").unwrap());
        assert!(!cache.exists());
        assert!(!record_path(&dirs, "app").exists());
        assert!(!clear(&dirs, "app").unwrap());
    }

    #[test]
    fn a_trim_records_the_size_for_status() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: tmp.path().join("config"),
            data: tmp.path().join("data"),
        };
        std::fs::create_dir_all(dirs.cache()).unwrap();
        let cache = path(&dirs, "app");
        assert_eq!(recorded(&dirs, "app"), None);
        file(&cache.join("a"), 10, 0);
        let trimmed = trim(&dirs, "app", &cache, 1 << 30).unwrap();
        let record = recorded(&dirs, "app").unwrap();
        assert_eq!(record.bytes, trimmed.after);
        assert_eq!(record.bytes, 2 * BLOCK);
        assert_eq!(record.entries, 1);
        let mode = std::fs::metadata(record_path(&dirs, "app"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A cache that cannot be trimmed has no size any more.
        std::fs::remove_dir_all(&cache).unwrap();
        assert!(trim(&dirs, "app", &cache, 1 << 30).is_err());
        assert_eq!(recorded(&dirs, "app"), None);
    }
}
