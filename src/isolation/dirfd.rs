//! Walking directories by file descriptor, never following a symbolic link: for directories whose
//! contents someone else controls (a step's artifacts, the pushers' spool), where a path could be
//! swapped for a link between two looks at it.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// Opens a directory — relative to `at`, or by path — refusing a symbolic link.
pub fn open_dir(at: Option<&OwnedFd>, name: &OsStr) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match at {
        Some(dir) => openat(dir, name, flags, Mode::empty()),
        None => nix::fcntl::open(name, flags, Mode::empty()),
    }
}

/// Gives `relative` (below the directory `root`) to `uid` and `gid`, going down by descriptor: no
/// directory on the way and not the last part is followed if it is a symbolic link (a link itself is
/// given, not what it names). Nothing to do where the last part does not exist.
pub fn chown_below(
    root: &std::path::Path,
    relative: &std::path::Path,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
) -> nix::Result<()> {
    let mut parts: Vec<&OsStr> = relative.iter().collect();
    let Some(last) = parts.pop() else {
        return Ok(());
    };
    let mut dir = open_dir(None, root.as_os_str())?;
    for part in parts {
        dir = open_dir(Some(&dir), part)?;
    }
    match nix::unistd::fchownat(
        &dir,
        last,
        Some(uid),
        Some(gid),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Err(nix::errno::Errno::ENOENT) => Ok(()),
        other => other,
    }
}

/// The names in a directory, sorted, without `.` and `..`.
pub fn names(dir: &OwnedFd) -> Vec<OsString> {
    let mut names = Vec::new();
    each_name(dir, |name| names.push(name.to_os_string()));
    names.sort();
    names
}

/// Calls `each` with every name in a directory, without `.` and `..`, as the listing goes: memory for
/// one name, however many the directory holds (`each` may remove the name it is given).
pub fn each_name(dir: &OwnedFd, mut each: impl FnMut(&OsStr)) {
    let Some(mut listing) = dir
        .try_clone()
        .ok()
        .and_then(|fd| nix::dir::Dir::from_fd(fd).ok())
    else {
        return;
    };
    for entry in listing.iter().flatten() {
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name != "." && name != ".." {
            each(name);
        }
    }
}

/// The first `max` names of a directory in sorted order, without `.` and `..`, and whether it holds
/// more: memory for `max` names, however many the directory holds (a step may have made millions).
pub fn first_names(dir: &OwnedFd, max: usize) -> (Vec<OsString>, bool) {
    // A max-heap of the smallest names so far: a smaller name pushes out the largest.
    let mut smallest = std::collections::BinaryHeap::with_capacity(max.min(4096) + 1);
    let mut more = false;
    each_name(dir, |name| {
        if smallest.len() < max {
            smallest.push(name.to_os_string());
        } else {
            more = true;
            if smallest
                .peek()
                .is_some_and(|largest: &OsString| name < largest.as_os_str())
            {
                smallest.pop();
                smallest.push(name.to_os_string());
            }
        }
    });
    (smallest.into_sorted_vec(), more)
}

/// What `name` in `dir` is (`S_IFDIR`, `S_IFREG`, `S_IFLNK`, …), without following a link.
pub fn kind(dir: &OwnedFd, name: &OsStr) -> nix::Result<SFlag> {
    let stat = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    Ok(SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT)
}

/// How deep [`remove_all`] goes: every level holds a file descriptor open, and someone else may have
/// built the tree to exhaust them.
pub const MAX_DEPTH: usize = 32;

/// Removes `name` in `dir`, and everything below it if it is a directory, down to [`MAX_DEPTH`] levels
/// (deeper, it fails with `ELOOP` and leaves what it could not remove).
pub fn remove_all(dir: &OwnedFd, name: &OsStr) -> nix::Result<()> {
    remove_below(dir, name, 0)
}

fn remove_below(dir: &OwnedFd, name: &OsStr, depth: usize) -> nix::Result<()> {
    if kind(dir, name)? != SFlag::S_IFDIR {
        return unlinkat(dir, name, UnlinkatFlags::NoRemoveDir);
    }
    if depth >= MAX_DEPTH {
        return Err(nix::errno::Errno::ELOOP);
    }
    let sub = open_dir(Some(dir), name)?;
    for inner in names(&sub) {
        remove_below(&sub, &inner, depth + 1)?;
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

/// How many directories deep [`remove_tree`] holds open at once (two descriptors each).
const OPEN_LEVELS: usize = 16;

/// Removes the directory `path` and everything in it — a tree a step wrote, however deep: with at
/// most [`OPEN_LEVELS`] directories open at once and memory that does not grow with the tree.
/// `std::fs::remove_dir_all` holds a descriptor per level, so a tree deeper than the open-file limit
/// (a step's `mkdir d; cd d` 25,000 times) stopped it with `EMFILE` and stayed on disk for good. A
/// directory found at the deepest open level is moved into a directory of phantom_ci's own, made
/// in `path` under a name nobody can guess (names the tree holds never collide with the moved
/// ones), and emptied by a later pass. Never follows a link; a `path` that is gone is not an error.
pub fn remove_tree(path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
    use nix::errno::Errno;
    let path = path.as_ref();
    let top = match open_dir(None, path.as_os_str()) {
        Ok(top) => top,
        Err(Errno::ENOENT) => return Ok(()),
        // A link or a file where a directory was expected: removed, not followed.
        Err(Errno::ENOTDIR | Errno::ELOOP) => return std::fs::remove_file(path),
        Err(e) => return Err(e.into()),
    };
    let mut remover = Remover {
        staging: None,
        moved: 0,
    };
    // Each pass empties what it finds; what it moved is emptied by the next.
    loop {
        let in_top = remover.empty(&top, &top, 0)?;
        let staging = match &remover.staging {
            Some((_, staging)) => Some(staging.try_clone()?),
            None => None,
        };
        let in_staging = match staging {
            Some(staging) => remover.empty(&top, &staging, 0)?,
            None => false,
        };
        if !in_top && !in_staging {
            break;
        }
    }
    if let Some((name, staging)) = remover.staging.take() {
        drop(staging);
        unlinkat(&top, name.as_str(), UnlinkatFlags::RemoveDir)?;
    }
    drop(top);
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Gives `dir` and the directory `name` in it back to their owner (`rwx`): a step that ran as
/// phantom_ci's own user may have locked either. (As root, never needed.)
fn unlocked(dir: &OwnedFd, name: &OsStr) -> nix::Result<()> {
    nix::sys::stat::fchmod(dir, Mode::S_IRWXU)?;
    nix::sys::stat::fchmodat(
        dir,
        name,
        Mode::S_IRWXU,
        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
    )
}

/// [`remove_tree`] at work.
struct Remover {
    /// Where directories too deep to enter now are moved: its name in the top directory, and itself.
    staging: Option<(String, OwnedFd)>,
    /// How many were moved (each one's name there).
    moved: u64,
}

impl Remover {
    /// Removes what is in `dir`, `depth` levels below the directory being emptied (`top`, or the
    /// staging directory); whether it found anything. The staging directory itself is passed over.
    fn empty(&mut self, top: &OwnedFd, dir: &OwnedFd, depth: usize) -> nix::Result<bool> {
        use nix::errno::Errno;
        let mut listing = nix::dir::Dir::from_fd(dir.try_clone().map_err(|_| Errno::EMFILE)?)?;
        let mut found = false;
        for entry in listing.iter() {
            let entry = entry?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            let staging = self.staging.as_ref().map(|(name, _)| name.as_str());
            if name == "." || name == ".." || (depth == 0 && Some(name) == staging.map(OsStr::new))
            {
                continue;
            }
            found = true;
            let is_dir = match entry.file_type() {
                Some(nix::dir::Type::Directory) => true,
                Some(_) => false,
                None => kind(dir, name)? == SFlag::S_IFDIR,
            };
            // Gone already is removed; a directory its owner made unwritable (`chmod 500`: the
            // step ran as phantom_ci's own user) is made writable again, then removed from.
            let remove = |flags: UnlinkatFlags| match unlinkat(dir, name, flags) {
                Err(Errno::ENOENT) => Ok(()),
                Err(Errno::EACCES) => {
                    nix::sys::stat::fchmod(dir, Mode::S_IRWXU)?;
                    match unlinkat(dir, name, flags) {
                        Err(Errno::ENOENT) => Ok(()),
                        other => other,
                    }
                }
                other => other,
            };
            if !is_dir {
                remove(UnlinkatFlags::NoRemoveDir)?;
            } else if depth + 1 < OPEN_LEVELS {
                let sub = match open_dir(Some(dir), name) {
                    Err(Errno::ENOENT) => continue,
                    // `chmod 000` by its owner (of it, or of `dir`, which must be searchable to
                    // reach it): opened once both are its owner's again.
                    Err(Errno::EACCES) => {
                        unlocked(dir, name)?;
                        open_dir(Some(dir), name)?
                    }
                    sub => sub?,
                };
                self.empty(top, &sub, depth + 1)?;
                drop(sub);
                remove(UnlinkatFlags::RemoveDir)?;
            } else {
                self.moved += 1;
                let new = self.moved.to_string();
                let staging = self.staging(top)?;
                // Moving a directory writes to it (its `..`) and to `dir`.
                match nix::fcntl::renameat(dir, name, staging, new.as_str()) {
                    Err(Errno::EACCES) => {
                        unlocked(dir, name)?;
                        nix::fcntl::renameat(dir, name, staging, new.as_str())?;
                    }
                    moved => moved?,
                }
            }
        }
        Ok(found)
    }

    /// The staging directory, made in `top` the first time it is needed.
    fn staging(&mut self, top: &OwnedFd) -> nix::Result<&OwnedFd> {
        use nix::errno::Errno;
        if self.staging.is_none() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let mut made = None;
            for attempt in 0..16u32 {
                let name = format!(
                    ".phantom_ci-removing-{}-{nanos}-{attempt}",
                    std::process::id()
                );
                match nix::sys::stat::mkdirat(top, name.as_str(), Mode::S_IRWXU) {
                    Ok(()) => {
                        made = Some(name);
                        break;
                    }
                    Err(Errno::EEXIST) => continue,
                    Err(e) => return Err(e),
                }
            }
            let name = made.ok_or(Errno::EEXIST)?;
            let dir = open_dir(Some(top), OsStr::new(&name))?;
            self.staging = Some((name, dir));
        }
        match &self.staging {
            Some((_, dir)) => Ok(dir),
            None => Err(Errno::ENOENT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_tree_removes_a_tree_deeper_than_it_holds_open_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let root = tmp.path().join("ws");
        // Deep (ten times the levels held open), with files, links and a wide level on the way.
        std::fs::create_dir(&root).unwrap();
        let mut deep = root.clone();
        for level in 0..OPEN_LEVELS * 10 {
            deep.push(if level % 7 == 0 { "dd" } else { "d" });
            std::fs::create_dir(&deep).unwrap();
            std::fs::write(deep.join("f"), "x").unwrap();
            std::os::unix::fs::symlink(&outside, deep.join("link")).unwrap();
            if level == OPEN_LEVELS {
                for i in 0..50 {
                    std::fs::create_dir_all(deep.join(format!("w{i}/x/y"))).unwrap();
                }
            }
        }
        // Names like those of the remover's own directory, many, taken by the tree.
        for i in 0..100 {
            std::fs::create_dir_all(root.join(format!(".phantom_ci-removing-{i}/full"))).unwrap();
        }
        // Directories their owner made unreadable and unwritable.
        std::fs::create_dir_all(root.join("locked/inner")).unwrap();
        std::fs::write(root.join("locked/inner/f"), "x").unwrap();
        std::fs::create_dir_all(root.join("readonly/inner")).unwrap();
        std::fs::write(root.join("readonly/f"), "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &str, mode| {
            std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(mode))
                .unwrap()
        };
        // Readable but not searchable, and a locked chain deeper than the levels held open.
        std::fs::create_dir_all(root.join("unsearchable/b/c")).unwrap();
        let mut chain = root.join("chain");
        for _ in 0..OPEN_LEVELS + 4 {
            chain.push("c");
        }
        std::fs::create_dir_all(&chain).unwrap();
        mode("locked/inner", 0o000);
        mode("locked", 0o000);
        mode("readonly", 0o500);
        mode("unsearchable", 0o600);
        let mut level = chain.clone();
        while level != root {
            std::fs::set_permissions(&level, std::fs::Permissions::from_mode(0o500)).unwrap();
            level.pop();
        }
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        assert!(outside.join("keep").exists(), "a link was followed");
        // Gone already, a link in its place, a file: no error, the link not followed.
        remove_tree(&root).unwrap();
        std::os::unix::fs::symlink(&outside, &root).unwrap();
        remove_tree(&root).unwrap();
        assert!(root.symlink_metadata().is_err());
        assert!(outside.join("keep").exists());
    }

    #[test]
    fn remove_all_does_not_follow_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let dir = tmp.path().join("dir");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("sub/link")).unwrap();
        std::fs::write(dir.join("file"), "x").unwrap();
        let fd = open_dir(None, dir.as_os_str()).unwrap();
        assert_eq!(names(&fd), ["file", "sub"]);
        for name in names(&fd) {
            remove_all(&fd, &name).unwrap();
        }
        assert!(names(&fd).is_empty());
        let mut deep = dir.join("deep");
        for _ in 0..=MAX_DEPTH {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(
            remove_all(&fd, OsStr::new("deep")),
            Err(nix::errno::Errno::ELOOP)
        );
        assert!(outside.join("keep").exists());
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(
            open_dir(None, link.as_os_str()).is_err(),
            "a link is not opened"
        );
    }

    #[test]
    fn first_names_keeps_the_smallest_and_says_there_are_more() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["d", "b", "e", "a", "c"] {
            std::fs::write(tmp.path().join(name), "").unwrap();
        }
        let fd = open_dir(None, tmp.path().as_os_str()).unwrap();
        assert_eq!(
            first_names(&fd, 3),
            (vec!["a".into(), "b".into(), "c".into()], true)
        );
        assert!(!first_names(&fd, 5).1);
        assert_eq!(first_names(&fd, 9).0, names(&fd));
        assert_eq!(first_names(&fd, 0), (vec![], true));
    }
}
