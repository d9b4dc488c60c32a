//! The spool (SPEC §4.7): where a pusher who may not run the work itself drops a note that a branch
//! moved, for a root `tick` to pick up. A note carries no commit and no command — a forged one can only
//! make phantom_ci look at its configured branches again — so `tick` just removes the notes and checks
//! every repo.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::Error;
use crate::isolation::dirfd;
use crate::state::atomic_file;

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
    match std::fs::symlink_metadata(spool) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Its parents (the data dir, for the default spool) are gone through, not listed.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(spool)
                .map_err(|e| Error::io("cannot create the spool", spool, e))?;
            std::fs::set_permissions(spool, std::fs::Permissions::from_mode(0o1733))
                .map_err(|e| Error::io("cannot set the mode of the spool", spool, e))
        }
        Err(e) => Err(Error::io("cannot look at the spool", spool, e)),
    }
}

/// Removes everything in the spool — whatever a pusher put there, so that the path unit that watches
/// it for "not empty" does not start `tick` again and again. Returns how many entries there were.
///
/// The spool is opened without following a link and must belong to phantom_ci's user; its entries are
/// removed relative to it, so a pusher's links lead nowhere. What cannot be removed (a tree built
/// deeper than phantom_ci walks) is moved into `junk`, a directory of phantom_ci's own, when it is on
/// the same file system.
pub fn clear(spool: &Path, junk: &Path) -> Result<usize, Error> {
    let dir = match dirfd::open_dir(None, spool.as_os_str()) {
        Ok(dir) => dir,
        Err(nix::errno::Errno::ENOENT) => return Ok(0),
        Err(e) => {
            return Err(Error::io(
                "cannot open the spool (it must be a directory, not a link)",
                spool,
                e.into(),
            ));
        }
    };
    let owner = nix::sys::stat::fstat(&dir).map(|s| s.st_uid);
    if owner != Ok(nix::unistd::geteuid().as_raw()) {
        return Err(Error::Other(format!(
            "the spool `{}` does not belong to phantom_ci's user: left alone",
            spool.display()
        )));
    }
    // Removed as the listing goes: a pusher may have dropped a million notes, and their names are
    // never held all at once.
    let mut removed = 0;
    dirfd::each_name(&dir, |name| {
        let gone = dirfd::remove_all(&dir, name).is_ok() || move_to_junk(&dir, name, junk);
        removed += usize::from(gone);
    });
    Ok(removed)
}

fn move_to_junk(spool: &OwnedFd, name: &OsStr, junk: &Path) -> bool {
    let made = std::fs::DirBuilder::new().mode(0o700).create(junk);
    if made.is_err() && !junk.is_dir() {
        return false;
    }
    let Ok(junk_dir) = dirfd::open_dir(None, junk.as_os_str()) else {
        return false;
    };
    // Only phantom_ci's user may look into it (one made by an earlier version may be open).
    match nix::sys::stat::fstat(&junk_dir) {
        Ok(stat) if stat.st_uid == nix::unistd::geteuid().as_raw() => {
            if stat.st_mode & 0o7777 != 0o700 {
                let _ = nix::sys::stat::fchmod(&junk_dir, nix::sys::stat::Mode::S_IRWXU);
            }
        }
        _ => return false,
    }
    // Best effort: what an earlier tick moved there and can now be removed goes.
    dirfd::each_name(&junk_dir, |old| {
        let _ = dirfd::remove_all(&junk_dir, old);
    });
    let unique = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    nix::fcntl::renameat(spool, name, &junk_dir, unique.as_str()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_that_is_a_link_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::create_dir_all(victim.join("sub")).unwrap();
        std::fs::write(victim.join("important"), "x").unwrap();
        let spool = tmp.path().join("spool");
        std::os::unix::fs::symlink(&victim, &spool).unwrap();
        assert!(clear(&spool, &tmp.path().join("junk")).is_err());
        assert!(victim.join("important").exists() && victim.join("sub").exists());
    }

    #[test]
    fn a_flood_of_notes_is_removed_whole_as_the_listing_goes() {
        // Names long enough to spread the directory over many blocks: removing while listing must
        // not skip any.
        let tmp = tempfile::tempdir().unwrap();
        let spool = tmp.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let long = "n".repeat(200);
        for i in 0..20_000 {
            std::fs::write(spool.join(format!("{long}{i}")), "").unwrap();
        }
        assert_eq!(clear(&spool, &tmp.path().join("junk")).unwrap(), 20_000);
        assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    }

    #[test]
    fn notes_and_whatever_else_is_there_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = tmp.path().join("spool");
        ensure(&spool).unwrap();
        write(&spool, Path::new("/srv/git/app.git"), "main").unwrap();
        std::fs::create_dir_all(spool.join("a-dir/inner")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), spool.join("a-link")).unwrap();
        let mut deep = spool.join("deep");
        for _ in 0..=dirfd::MAX_DEPTH {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(clear(&spool, &tmp.path().join("junk")).unwrap(), 4);
        assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
        assert!(tmp.path().join("spool").exists());
    }
}
