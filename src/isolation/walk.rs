//! A streaming walk of a directory tree that someone else controls (a repo's build cache), in memory
//! that does not grow with the number of files, their names or — beyond 16 bytes a level — the depth.
//!
//! Invariants, for a reviewer:
//! - **One directory open at a time** (two while changing level), whatever the depth: the walk goes
//!   down with `openat(name, O_DIRECTORY | O_NOFOLLOW)` and back up with `openat("..")`. No symbolic
//!   link is ever followed: entries are looked at with `AT_SYMLINK_NOFOLLOW`, and a directory is only
//!   entered when the descriptor opened for it is the inode just looked at (same device and inode).
//! - **Never outside the top**: going down, the walk remembers the inode of the directory it leaves
//!   (16 bytes a level: that inode and where its listing resumes); coming back by `..`, it checks that
//!   it arrived in that very directory (device and inode) and stops with an error otherwise — a
//!   directory moved elsewhere while it was walked (by another process of the step user) cannot lead
//!   the walk out. It never goes up from the top, and never enters a directory of another device.
//! - **Nothing per file is kept**: a directory's listing is read with `getdents64` into one buffer
//!   (1–32 KiB), and where a listing resumes after a subdirectory is the kernel's own position cookie
//!   (`d_off`), which `lseek` on a fresh descriptor of the same directory accepts (ext4, tmpfs, btrfs,
//!   xfs; NFS export relies on it). Should a file system not honour it, the listing is read again from
//!   its start and resumes after the subdirectory's inode.
//!
//! What the walk reports goes to a visitor: each entry with the descriptor of its directory, so that
//! the visitor acts on it (`unlinkat`, `fchownat`) relative to that descriptor, never by path.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::libc;
use nix::sys::stat::{FileStat, SFlag, fstat, fstatat};
use nix::unistd::{Whence, lseek};

use crate::isolation::dirfd;

/// What the walk met.
pub enum Seen<'a> {
    /// Anything that is not a directory the walk enters (a file, a link, a fifo, a directory of
    /// another device or one that could not be opened): `name` in `dir`, `depth` levels below the top.
    Entry {
        dir: &'a OwnedFd,
        name: &'a OsStr,
        stat: &'a FileStat,
        depth: usize,
    },
    /// The directory `name` in `dir`, which the walk enters next (everything in it follows, at
    /// `depth + 1`, then [`Seen::Left`]).
    Dir {
        dir: &'a OwnedFd,
        name: &'a OsStr,
        stat: &'a FileStat,
        depth: usize,
    },
    /// Back in `dir` from its directory `name`, everything in it seen.
    Left {
        dir: &'a OwnedFd,
        name: &'a OsStr,
        depth: usize,
    },
}

/// Why a walk stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum WalkError {
    /// A directory was not where the walk left it (moved while walked).
    Moved,
    /// The system refused something the walk needs (reading a listing, opening `..`).
    Io(Errno),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::Moved => write!(f, "a directory was moved while phantom_ci walked the tree"),
            WalkError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<Errno> for WalkError {
    fn from(e: Errno) -> Self {
        WalkError::Io(e)
    }
}

/// One level of the way down: the directory left (its inode) and the position of the entry of the
/// subdirectory entered in its listing.
struct Level {
    ino: u64,
    at: i64,
}

/// The smallest and largest read of a listing. After a subdirectory the walk reads little (what it
/// reads past the next subdirectory is read again on return), then doubles.
const WINDOW_MIN: usize = 1024;
const WINDOW_MAX: usize = 32 * 1024;

/// A listing in a buffer: entries `pos..len` not handed out yet; `off` the position after the last
/// one handed out (where reading resumes).
struct Listing {
    buf: Vec<u8>,
    len: usize,
    pos: usize,
    window: usize,
    off: i64,
}

/// One raw entry of a listing.
struct Raw {
    ino: u64,
    /// The position of this entry.
    at: i64,
    name_start: usize,
    name_end: usize,
}

impl Listing {
    fn new() -> Listing {
        Listing {
            buf: vec![0; WINDOW_MAX],
            len: 0,
            pos: 0,
            window: WINDOW_MIN,
            off: 0,
        }
    }

    /// Starts reading `dir` at position `at` (0: its beginning).
    fn seek(&mut self, dir: &OwnedFd, at: i64) -> Result<(), WalkError> {
        lseek(dir, at, Whence::SeekSet)?;
        self.len = 0;
        self.pos = 0;
        self.window = WINDOW_MIN;
        self.off = at;
        Ok(())
    }

    /// The next entry of `dir`, `None` at its end.
    fn next(&mut self, dir: &OwnedFd) -> Result<Option<Raw>, WalkError> {
        if self.pos >= self.len {
            self.len = getdents(dir, &mut self.buf[..self.window])?;
            self.pos = 0;
            self.window = (self.window * 2).min(WINDOW_MAX);
            if self.len == 0 {
                return Ok(None);
            }
        }
        let entry = parse(&self.buf[self.pos..self.len]).ok_or(WalkError::Io(Errno::EIO))?;
        let raw = Raw {
            ino: entry.0,
            at: self.off,
            name_start: self.pos + 19,
            name_end: self.pos + 19 + entry.3,
        };
        self.pos += entry.2;
        self.off = entry.1;
        Ok(Some(raw))
    }

    fn name(&self, raw: &Raw) -> &OsStr {
        OsStr::from_bytes(&self.buf[raw.name_start..raw.name_end])
    }
}

/// Reads entries of `dir` into `buf`; the number of bytes read, 0 at the end of the listing.
#[allow(unsafe_code)]
fn getdents(dir: &OwnedFd, buf: &mut [u8]) -> nix::Result<usize> {
    // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`, which is ours and writable for
    // that length, and reads nothing else of this process.
    let read = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            dir.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if read < 0 {
        return Err(Errno::last());
    }
    usize::try_from(read).map_err(|_| Errno::EIO)
}

/// The entry at the start of `bytes` (a `struct linux_dirent64`): inode, next position, record length
/// and name length; `None` if it is not whole.
fn parse(bytes: &[u8]) -> Option<(u64, i64, usize, usize)> {
    let ino = u64::from_ne_bytes(bytes.get(0..8)?.try_into().ok()?);
    let next = i64::from_ne_bytes(bytes.get(8..16)?.try_into().ok()?);
    let reclen = usize::from(u16::from_ne_bytes(bytes.get(16..18)?.try_into().ok()?));
    let name = bytes.get(19..reclen)?;
    let len = name.iter().position(|b| *b == 0)?;
    Some((ino, next, reclen, len))
}

fn is_dir(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

/// Walks everything below the directory `top` (not `top` itself), handing each entry to `visit`.
/// The visitor may remove the entry it is handed (and, on [`Seen::Left`], the directory left).
pub fn walk(top: &OwnedFd, mut visit: impl FnMut(Seen<'_>)) -> Result<(), WalkError> {
    let top_stat = fstat(top)?;
    let dev = top_stat.st_dev;
    // Our own descriptor of the top, so that its position is ours.
    let mut cur = dirfd::open_dir(Some(top), OsStr::new("."))?;
    if fstat(&cur)?.st_ino != top_stat.st_ino {
        return Err(WalkError::Moved);
    }
    let mut cur_ino = top_stat.st_ino;
    let mut levels: Vec<Level> = Vec::new();
    let mut listing = Listing::new();
    listing.seek(&cur, 0)?;
    loop {
        let Some(raw) = listing.next(&cur)? else {
            // The end of `cur`: back to its parent, unless it is the top.
            let Some(level) = levels.pop() else {
                return Ok(());
            };
            let parent = dirfd::open_dir(Some(&cur), OsStr::new(".."))?;
            let stat = fstat(&parent)?;
            if stat.st_dev != dev || stat.st_ino != level.ino {
                return Err(WalkError::Moved);
            }
            let child = cur_ino;
            cur = parent;
            cur_ino = level.ino;
            let raw = find(&mut listing, &cur, level.at, child)?;
            let depth = levels.len();
            let name = listing.name(&raw);
            visit(Seen::Left {
                dir: &cur,
                name,
                depth,
            });
            continue;
        };
        let name = listing.name(&raw);
        if name == "." || name == ".." {
            continue;
        }
        let depth = levels.len();
        let stat = match fstatat(&cur, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        let sub = if is_dir(&stat) && stat.st_dev == dev {
            dirfd::open_dir(Some(&cur), name)
                .ok()
                .filter(|sub| fstat(sub).is_ok_and(|s| s.st_ino == stat.st_ino && s.st_dev == dev))
        } else {
            None
        };
        let Some(sub) = sub else {
            visit(Seen::Entry {
                dir: &cur,
                name,
                stat: &stat,
                depth,
            });
            continue;
        };
        visit(Seen::Dir {
            dir: &cur,
            name,
            stat: &stat,
            depth,
        });
        levels.push(Level {
            ino: cur_ino,
            at: raw.at,
        });
        cur = sub;
        cur_ino = stat.st_ino;
        listing.seek(&cur, 0)?;
    }
}

/// Positions `listing` just after the entry of the subdirectory `child` (an inode) of `dir`, which
/// started at position `at`, and returns that entry. Should the position not lead to it, the listing
/// is read from its start.
fn find(listing: &mut Listing, dir: &OwnedFd, at: i64, child: u64) -> Result<Raw, WalkError> {
    listing.seek(dir, at)?;
    if let Some(raw) = listing.next(dir)?
        && raw.ino == child
    {
        return Ok(raw);
    }
    listing.seek(dir, 0)?;
    while let Some(raw) = listing.next(dir)? {
        if raw.ino == child {
            return Ok(raw);
        }
    }
    Err(WalkError::Moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn open(path: &Path) -> OwnedFd {
        crate::isolation::dirfd::open_dir(None, path.as_os_str()).unwrap()
    }

    /// Every entry, as `depth:name` (`>` entering a directory, `<` back from it).
    fn events(top: &Path) -> Result<Vec<String>, WalkError> {
        let mut seen = Vec::new();
        walk(&open(top), |s| {
            seen.push(match s {
                Seen::Entry { name, depth, .. } => format!("{depth}:{}", name.to_string_lossy()),
                Seen::Dir { name, depth, .. } => format!("{depth}>{}", name.to_string_lossy()),
                Seen::Left { name, depth, .. } => format!("{depth}<{}", name.to_string_lossy()),
            })
        })?;
        Ok(seen)
    }

    #[test]
    fn every_entry_once_however_deep_or_wide() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("top");
        // 500 levels (the old walk stopped at 64) ...
        let mut deep = top.clone();
        for _ in 0..500 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("bottom"), "").unwrap();
        // ... and 3,000 directories side by side, each with a long-named file: the listing resumes
        // after each of them.
        let long = "n".repeat(200);
        for i in 0..3000 {
            let dir = top.join(format!("w{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(&long), "").unwrap();
        }
        let seen = events(&top).unwrap();
        assert!(seen.contains(&"500:bottom".to_string()));
        assert_eq!(seen.iter().filter(|s| s.contains(">d")).count(), 500);
        assert_eq!(seen.iter().filter(|s| s.contains("<d")).count(), 500);
        for i in 0..3000 {
            let entered = format!("0>w{i}");
            let left = format!("0<w{i}");
            assert_eq!(
                seen.iter().filter(|s| **s == entered).count(),
                1,
                "{entered}"
            );
            assert_eq!(seen.iter().filter(|s| **s == left).count(), 1, "{left}");
        }
        assert_eq!(seen.len(), 2 * 500 + 1 + 3 * 3000);
    }

    #[test]
    fn links_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(outside.join("inner")).unwrap();
        std::fs::write(outside.join("inner/secret"), "").unwrap();
        let top = tmp.path().join("top");
        std::fs::create_dir(&top).unwrap();
        std::os::unix::fs::symlink(&outside, top.join("link")).unwrap();
        let seen = events(&top).unwrap();
        assert_eq!(seen, ["0:link"]);
    }

    /// The attack on climbing by `..`: while the walk is deep inside, the directory holding it is
    /// moved out of the tree. Coming back up, `..` is the new place — the walk notices and stops
    /// instead of walking (and a trim removing) what is there.
    #[test]
    fn climbing_back_stays_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("top");
        std::fs::create_dir_all(top.join("a/b/c")).unwrap();
        std::fs::write(top.join("a/b/c/f"), "").unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim"), "").unwrap();
        let mut seen = Vec::new();
        let result = walk(&open(&top), |s| {
            if let Seen::Entry { name, .. } = &s {
                seen.push(name.to_string_lossy().into_owned());
                if *name == "f" {
                    std::fs::rename(top.join("a/b"), outside.join("b")).unwrap();
                }
            }
            if let Seen::Left { name, .. } = &s {
                seen.push(format!("<{}", name.to_string_lossy()));
            }
        });
        assert_eq!(result, Err(WalkError::Moved));
        // Back into `b` (checked: it is the directory left), then `..` of `b` is `outside`: refused.
        assert_eq!(seen, ["f", "<c"]);
        assert!(outside.join("victim").exists());
    }

    /// Where a file system would not honour a listing position, the subdirectory is found again by
    /// its inode from the start of the listing, and the listing goes on after it.
    #[test]
    fn a_position_that_does_not_lead_back_is_made_up_for() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..200 {
            std::fs::create_dir(tmp.path().join(format!("s{i}"))).unwrap();
        }
        let dir = open(tmp.path());
        let child = nix::sys::stat::stat(&tmp.path().join("s150"))
            .unwrap()
            .st_ino;
        let mut listing = Listing::new();
        // Position 0 leads to `.` (or another entry), not to `s150`.
        let raw = find(&mut listing, &dir, 0, child).unwrap();
        assert_eq!(listing.name(&raw), "s150");
        let mut rest = 0;
        while let Some(raw) = listing.next(&dir).unwrap() {
            assert_ne!(raw.ino, child);
            rest += 1;
        }
        assert!(rest < 202, "{rest}");
        // An inode that is not there: the directory was moved.
        assert_eq!(
            find(&mut listing, &dir, 0, u64::MAX).err(),
            Some(WalkError::Moved)
        );
    }

    #[test]
    fn the_listing_parser_refuses_a_broken_entry() {
        assert_eq!(parse(&[0; 10]), None);
        let mut entry = vec![0u8; 24];
        entry[16] = 24;
        entry[19] = b'x';
        assert_eq!(parse(&entry), Some((0, 0, 24, 1)));
        entry[16] = 200;
        assert_eq!(parse(&entry), None);
    }
}
