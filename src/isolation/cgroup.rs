//! The run's cgroup v2 (SPEC §4.4, §4.8): where phantom_ci can create one, every step of a run joins
//! the run's own cgroup (in [`crate::isolation::boundary`], before `exec`), and when the run ends
//! `cgroup.kill` ends every process in it — including those that called `setsid`, double-forked and
//! cleared their environment — and the cgroup is removed.
//!
//! Where a cgroup can be made is probed, never assumed: phantom_ci's own cgroup (the `0::` line of
//! `/proc/self/cgroup`, found under a `cgroup2` mount of `/proc/self/mountinfo`) must let it create a
//! child and move a process out of it into that child. That holds for root with a writable cgroup2
//! mount (a systemd machine's `/sys/fs/cgroup`, or the controller-less `/sys/fs/cgroup/unified` of a v1
//! hybrid) and for a systemd unit with `Delegate=yes` (its cgroup belongs to its user). The run cgroups
//! enable no controller, so the no-internal-process rule does not stand in the way. Elsewhere there is
//! no run cgroup, and the subreaper, the process groups and recovery by environment do the work alone.
//!
//! Steps running as another user than phantom_ci's cannot write to any of these cgroups, so cannot
//! leave the run's. A step running as phantom_ci's own user in a delegated unit has phantom_ci's
//! rights there and could move itself out (it could also signal phantom_ci): give steps a `run_as`
//! user of their own.
//!
//! The name of a run's cgroup says whose run it is — a hash of the data dir and the repo's name, the
//! name itself and the run number — so that the next invocation, finding the run dead, finds its
//! cgroup from the data dir, the repo and the number alone ([`kill_dead_run`]).

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::{AccessFlags, Pid, access};

/// How many times (10 ms apart) phantom_ci looks for a killed cgroup to be empty before giving up.
const ROUNDS: usize = 5000;
/// Between two looks at a cgroup that is emptying: short, as a run's end waits for it.
const PAUSE: Duration = Duration::from_millis(1);

/// How deep [`kill_dead_run`] looks for a dead run's cgroup, and how many cgroups it looks at.
const SEARCH_DEPTH: usize = 16;
const SEARCH_LIMIT: usize = 100_000;

/// The cgroup of one run, made by [`RunCgroup::create`]. Dropping it kills what is in it and removes it.
#[derive(Debug)]
pub struct RunCgroup {
    path: PathBuf,
    /// Its `cgroup.procs`, open for writing: a step that was not born in the cgroup writes `0` to it
    /// to join, before `exec`. A step's cgroup opens it only when a step needs it (most are born
    /// in theirs).
    procs: std::cell::OnceCell<OwnedFd>,
    /// The directory, open: `clone3` makes a step inside the cgroup it names.
    dir: OwnedFd,
    removed: bool,
}

impl RunCgroup {
    /// Creates the cgroup of run `run` of `repo` (records in the data dir `data`), or `None` where
    /// phantom_ci cannot make one here. A left-over cgroup of the same name is emptied and used.
    pub fn create(data: &Path, repo: &str, run: u64) -> Option<RunCgroup> {
        RunCgroup::create_named(name(data, repo, run))
    }

    /// The cgroup of a `phantom_ci debug` session of `repo` (process `pid`): named like a run's, with
    /// `debug-<pid>` for the run number, so it never is a run's.
    pub fn create_for_debug(data: &Path, repo: &str, pid: u32) -> Option<RunCgroup> {
        RunCgroup::create_named(labelled(data, repo, &format!("debug-{pid}")))
    }

    /// A cgroup below this one, `name` (a step's, SPEC §8): killing it ends that step's processes
    /// alone, `setsid` ones included; killing or removing this one ends it too. `None` where it cannot
    /// be made (the step then joins this cgroup).
    pub fn child(&self, name: &str) -> Option<RunCgroup> {
        if name.starts_with("cgroup.") || name.contains('/') || name.starts_with('.') {
            return None;
        }
        // Below a domain cgroup (this one), a new cgroup is a domain too: nothing to check, and its
        // `cgroup.procs` is opened only if a step must join it.
        RunCgroup::create_at(self.path.join(name), true)
    }

    fn create_named(name: String) -> Option<RunCgroup> {
        RunCgroup::create_at(parent()?.join(name), false)
    }

    /// Makes (or empties) the cgroup `path`, checked to be one processes can join unless
    /// `below_domain` (its parent is one of ours, a domain).
    fn create_at(path: PathBuf, below_domain: bool) -> Option<RunCgroup> {
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => kill_all(&path),
            Err(_) => return None,
        }
        let procs = if below_domain {
            Some(std::cell::OnceCell::new())
        } else {
            // A cgroup processes can join: a plain domain, not one below a threaded subtree (before
            // Linux 4.14 there were no threaded cgroups, nor the file).
            let domain = match std::fs::read_to_string(path.join("cgroup.type")) {
                Ok(kind) => kind.trim() == "domain",
                Err(e) => e.kind() == ErrorKind::NotFound,
            };
            open_procs(&path)
                .ok()
                .filter(|_| domain)
                .map(std::cell::OnceCell::from)
        };
        match procs.zip(open_dir(&path)) {
            Some((procs, dir)) => Some(RunCgroup {
                path,
                procs,
                dir,
                removed: false,
            }),
            None => {
                let _ = std::fs::remove_dir(&path);
                None
            }
        }
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor a child writes `0` to (between `fork` and `exec`) to join the cgroup.
    pub fn procs_fd(&self) -> std::io::Result<RawFd> {
        if let Some(procs) = self.procs.get() {
            return Ok(procs.as_raw_fd());
        }
        let opened = open_procs(&self.path)?;
        Ok(self.procs.get_or_init(|| opened).as_raw_fd())
    }

    /// The cgroup's directory, open (for `clone3`'s `CLONE_INTO_CGROUP`).
    pub fn dir_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Kills every process in the cgroup (and in cgroups a step made below it).
    pub fn kill(&self) {
        kill_all(&self.path);
    }

    /// Lets go of the cgroup without killing what is in it (a step's background processes live on
    /// until the run ends): its descriptor is closed, and it goes when the cgroup above it is killed
    /// and removed.
    pub fn leave(mut self) {
        self.removed = true;
    }

    /// Whether no process is left in the cgroup or below it (`populated 0` in `cgroup.events`); not
    /// when that cannot be read.
    pub fn is_empty(&self) -> bool {
        populated_state(&self.path) == Some(false)
    }

    /// Kills what is left and removes the cgroup. The error says what could not be removed.
    pub fn remove(mut self) -> Result<(), String> {
        self.removed = true;
        kill_all(&self.path);
        remove_tree(&self.path)
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if !self.removed {
            kill_all(&self.path);
            let _ = remove_tree(&self.path);
        }
    }
}

/// The cgroup's `cgroup.procs`, open for writing.
fn open_procs(cgroup: &Path) -> std::io::Result<OwnedFd> {
    OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(cgroup.join("cgroup.procs"))
        .map(OwnedFd::from)
}

/// The cgroup's directory, open (for `CLONE_INTO_CGROUP`).
fn open_dir(cgroup: &Path) -> Option<OwnedFd> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_DIRECTORY)
        .open(cgroup)
        .ok()
        .map(OwnedFd::from)
}

/// The name of the cgroup of run `run` of `repo` with records in `data`:
/// `phantom_ci-<hash of data dir and repo>-<repo>-<run>`.
pub fn name(data: &Path, repo: &str, run: u64) -> String {
    labelled(data, repo, &run.to_string())
}

fn labelled(data: &Path, repo: &str, run: &str) -> String {
    let mut key = data.as_os_str().as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(repo.as_bytes());
    let readable: String = repo
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("phantom_ci-{:016x}-{readable}-{run}", fnv1a(&key))
}

/// Kills and removes the cgroup of run `run` of `repo` if it is still there (the run's phantom_ci
/// died). Whether there was one.
pub fn kill_dead_run(data: &Path, repo: &str, run: u64) -> bool {
    kill_dead(&name(data, repo, run))
}

/// Kills and removes the cgroup of the `phantom_ci debug` session `pid` of `repo` if it is still
/// there (that phantom_ci died). Whether there was one.
pub fn kill_dead_debug(data: &Path, repo: &str, pid: u32) -> bool {
    kill_dead(&labelled(data, repo, &format!("debug-{pid}")))
}

fn kill_dead(name: &str) -> bool {
    let mut found = false;
    let quick = parent().map(|p| p.join(name)).filter(|p| p.is_dir());
    let places: Vec<PathBuf> = match quick {
        Some(path) => vec![path],
        None => cgroup2_mounts(&read("/proc/self/mountinfo"))
            .into_iter()
            .filter_map(|mount| search(&mount.point, name))
            .collect(),
    };
    for path in places {
        kill_all(&path);
        let _ = remove_tree(&path);
        found = true;
    }
    found
}

/// Where run cgroups are made: phantom_ci's own cgroup, if it may create a child there and move a
/// process from it into that child.
fn parent() -> Option<PathBuf> {
    let own = own_cgroup(&read("/proc/self/cgroup"))?;
    let dir = locate(&cgroup2_mounts(&read("/proc/self/mountinfo")), &own)?;
    let may = |path: &Path, flags| access(path, flags).is_ok();
    (may(&dir, AccessFlags::W_OK | AccessFlags::X_OK)
        && may(&dir.join("cgroup.procs"), AccessFlags::W_OK))
    .then_some(dir)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The path of the unified-hierarchy cgroup in `/proc/self/cgroup` text (`0::/system.slice/x`).
fn own_cgroup(text: &str) -> Option<String> {
    let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    // Outside our cgroup namespace (`/../x`), or removed: nothing to build on.
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") || path.ends_with(" (deleted)")
    {
        return None;
    }
    Some(path.to_string())
}

/// A mounted cgroup2 hierarchy: the cgroup at its root, and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    root: String,
    point: PathBuf,
}

/// The cgroup2 mounts in `/proc/self/mountinfo` text.
fn cgroup2_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            // `id parent major:minor root point options [optional…] - fstype source super-options`
            let (left, right) = line.split_once(" - ")?;
            if right.split(' ').next()? != "cgroup2" {
                return None;
            }
            let fields: Vec<&str> = left.split(' ').collect();
            Some(Mount {
                root: String::from_utf8_lossy(&unescape(fields.get(3)?)).into_owned(),
                point: PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(fields.get(4)?))),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The directory of cgroup `own` under the first mount whose root holds it.
fn locate(mounts: &[Mount], own: &str) -> Option<PathBuf> {
    mounts.iter().find_map(|mount| {
        let below = Path::new(own).strip_prefix(&mount.root).ok()?;
        Some(mount.point.join(below))
    })
}

/// The cgroup named `name` somewhere below `dir`.
fn search(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut level = vec![dir.to_path_buf()];
    let mut seen = 0;
    for _ in 0..SEARCH_DEPTH {
        let mut next = Vec::new();
        for dir in level {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                // Only a cgroup phantom_ci's own user made: a step user with a delegated subtree of
                // its own could make a decoy of the same name to hide the real one.
                if entry.file_name() == name
                    && entry
                        .metadata()
                        .is_ok_and(|m| m.uid() == nix::unistd::geteuid().as_raw())
                {
                    return Some(entry.path());
                }
                seen += 1;
                if seen > SEARCH_LIMIT {
                    return None;
                }
                next.push(entry.path());
            }
        }
        level = next;
    }
    None
}

/// Kills every process in the cgroup `dir` and below, and waits (bounded) until they are gone.
fn kill_all(dir: &Path) {
    let killed = OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.kill"))
        .and_then(|mut file| file.write_all(b"1"));
    for _ in 0..ROUNDS {
        if !populated(dir) {
            return;
        }
        if killed.is_err() {
            // Before Linux 5.14 there is no `cgroup.kill`: kill what is listed, again and again,
            // so that a process forking meanwhile is caught in the next round.
            for pid in members(dir) {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        std::thread::sleep(PAUSE);
    }
}

/// Whether processes are left in the cgroup `dir` or below (`populated 1` in `cgroup.events`); not
/// when it is gone, or not a cgroup (any more).
fn populated(dir: &Path) -> bool {
    populated_state(dir).unwrap_or(false)
}

/// What `cgroup.events` of `dir` says: whether processes are left in it or below; `None` when the
/// file cannot be read or has no `populated` line.
fn populated_state(dir: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(dir.join("cgroup.events")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("populated "))
        .map(|value| value != "0")
}

/// The processes in the cgroup `dir` and in the cgroups below it.
fn members(dir: &Path) -> Vec<Pid> {
    let mut pids: Vec<Pid> = read(&dir.join("cgroup.procs").to_string_lossy())
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .map(Pid::from_raw)
        .collect();
    for child in subgroups(dir) {
        pids.extend(members(&child));
    }
    pids
}

fn subgroups(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Removes the cgroup `dir` and the cgroups below it (deepest first). A cgroup whose last process is
/// still exiting refuses with `EBUSY` for a moment: retried, bounded.
fn remove_tree(dir: &Path) -> Result<(), String> {
    for child in subgroups(dir) {
        remove_tree(&child)?;
    }
    let mut last = None;
    for _ in 0..ROUNDS {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => last = Some(e),
            Err(e) => return Err(format!("cannot remove the cgroup `{}`: {e}", dir.display())),
        }
        std::thread::sleep(PAUSE);
    }
    Err(format!(
        "cannot remove the cgroup `{}`: {}",
        dir.display(),
        last.map_or_else(|| "busy".to_string(), |e| e.to_string())
    ))
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust releases (the name must be found again
/// by the next phantom_ci, which may be a newer build).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tell_data_dirs_repos_and_runs_apart_and_stay_stable() {
        let a = name(Path::new("/var/lib/phantom_ci"), "app", 7);
        assert_eq!(a, name(Path::new("/var/lib/phantom_ci"), "app", 7));
        assert!(a.starts_with("phantom_ci-") && a.ends_with("-app-7"), "{a}");
        assert_ne!(a, name(Path::new("/srv/ci"), "app", 7));
        assert_ne!(a, name(Path::new("/var/lib/phantom_ci"), "app", 8));
        assert_ne!(a, name(Path::new("/var/lib/phantom_ci"), "ap", 7));
        // The hash is FNV-1a: the same in every build.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        // Odd characters of a repo given by path become `_`; the hash keeps such names apart.
        let odd = name(Path::new("/d"), "my repo.v2/x\n", 1);
        assert!(odd.ends_with("-my_repo_v2_x_-1"), "{odd}");
        assert_ne!(odd, name(Path::new("/d"), "my_repo_v2_x_", 1));
        assert!(!odd.contains('/') && !odd.contains('\n'));
        let long = name(Path::new("/d"), &"x".repeat(300), 1);
        assert!(long.len() < 100, "{long}");
    }

    #[test]
    fn own_cgroup_is_the_unified_line() {
        let hybrid = "9:name=systemd:/\n4:memory:/x/y\n1:cpu:/\n0::/\n";
        assert_eq!(own_cgroup(hybrid).as_deref(), Some("/"));
        let systemd = "0::/system.slice/phantom_ci.service\n";
        assert_eq!(
            own_cgroup(systemd).as_deref(),
            Some("/system.slice/phantom_ci.service")
        );
        assert_eq!(own_cgroup("4:memory:/x\n1:cpu:/\n"), None, "v1 only");
        assert_eq!(own_cgroup("0::/../../elsewhere\n"), None);
        assert_eq!(own_cgroup("0::/gone (deleted)\n"), None);
        assert_eq!(own_cgroup(""), None);
    }

    #[test]
    fn cgroup2_mounts_are_read_from_mountinfo() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:38 /ci /srv/odd\\040place rw shared:7 master:2 - cgroup2 cgroup2 rw,nsdelegate
garbage line
";
        let mounts = cgroup2_mounts(text);
        assert_eq!(
            mounts,
            [
                Mount {
                    root: "/".into(),
                    point: "/sys/fs/cgroup/unified".into()
                },
                Mount {
                    root: "/ci".into(),
                    point: "/srv/odd place".into()
                },
            ]
        );
        assert_eq!(
            locate(&mounts, "/").as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            locate(&mounts[1..], "/ci/runner.service").as_deref(),
            Some(Path::new("/srv/odd place/runner.service"))
        );
        assert_eq!(locate(&mounts[1..], "/cix"), None);
        assert_eq!(unescape(r"a\134b\011c\12"), b"a\\b\tc\\12");
    }

    #[test]
    fn a_dead_runs_cgroup_is_found_by_name_below_a_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/phantom_ci-0-app-3");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::create_dir_all(tmp.path().join("c/d/e")).unwrap();
        assert_eq!(search(tmp.path(), "phantom_ci-0-app-3"), Some(deep));
        assert_eq!(search(tmp.path(), "phantom_ci-0-app-4"), None);
    }
}
