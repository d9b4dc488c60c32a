//! Repos configured by URL (`file://`, `https://`, ssh) are fetched into a bare mirror under
//! `<data>/mirrors/<repo>.git`, only the branches they run (and the tags that point into them).
//!
//! The fetch runs the `git` command rather than libgit2: it honours the operator's `~/.ssh/config`,
//! known_hosts, ssh agent and credential helpers exactly as their own `git fetch` does, and libgit2 is
//! built here without network transports, so phantom_ci itself contains no TLS or SSH client for git.
//!
//! Who may read a mirror (SPEC §4.8): the workspace of a run borrows the mirror's objects, so the repo's
//! `run_as` user must read them — and no other repo's user may. `<data>/mirrors` is 0711 (entered, not
//! listed). When phantom_ci is root and the repo runs as another user, the mirror belongs to that
//! user's primary group, mode 0750, and so does everything in it (directories group-searchable, files
//! group-readable), given again after every fetch; otherwise it is 0700. No set-group-ID bits and no
//! `core.sharedRepository`: the system unit's `RestrictSUIDSGID=yes` refuses setgid directories, and
//! git would then fail to create its own.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::unistd::{Gid, User, geteuid};

use crate::config::dirs::Dirs;
use crate::config::{Location, Repo};
use crate::git::cli::{self, Stopped};

pub use crate::git::cli::GIT_HOOK_VARIABLES;

pub fn path(dirs: &Dirs, repo: &Repo) -> PathBuf {
    dirs.mirrors().join(format!("{}.git", repo.name))
}

/// Who may read a mirror besides phantom_ci's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nobody: the mirror is 0700.
    Private,
    /// The members of this group (the step user's primary group): the mirror is 0750, of that group.
    Group(Gid),
}

impl Access {
    /// The access a repo's mirror gets: its step user's group when phantom_ci (root) switches to
    /// another user for its steps, else none.
    pub fn of(repo: &Repo) -> Access {
        if !geteuid().is_root() {
            return Access::Private;
        }
        let user = repo
            .run_as
            .as_deref()
            .and_then(|name| User::from_name(name).ok().flatten());
        match user {
            Some(user) if !user.uid.is_root() => Access::Group(user.gid),
            _ => Access::Private,
        }
    }

    /// Whether the mirror directory `meta` describes has this access.
    fn holds(self, meta: &std::fs::Metadata) -> bool {
        match self {
            Access::Private => meta.mode() & 0o777 == 0o700,
            Access::Group(gid) => meta.gid() == gid.as_raw() && meta.mode() & 0o7777 == 0o750,
        }
    }
}

/// Fetches `branches` of a URL repo into its mirror — names, or `target_branch` patterns, which git
/// takes as they are (`+refs/heads/release/*:refs/heads/release/*`) — pruning what the remote no longer
/// has among them (so a deleted `feature/a` never blocks a new `feature/a/b`); a local repo needs
/// nothing.
pub fn update(dirs: &Dirs, repo: &Repo, branches: &[&str]) -> Result<(), String> {
    let Location::Url(url) = &repo.location else {
        return Ok(());
    };
    if branches.is_empty() {
        return Ok(());
    }
    let mirrors = dirs.mirrors();
    dirs.make(&mirrors)
        .map_err(|e| format!("cannot create `{}`: {e}", mirrors.display()))?;
    let mirror = path(dirs, repo);
    let access = Access::of(repo);
    prepare(&mirror, access).map_err(|e| {
        format!(
            "cannot prepare the mirror `{}` of repo `{}`: {e}",
            mirror.display(),
            repo.name
        )
    })?;
    let mut command = cli::git();
    let url = cli::remote(&mut command, url);
    command.arg("--git-dir").arg(&mirror).args([
        "fetch",
        "--quiet",
        "--prune",
        "--no-write-fetch-head",
        "--",
        &url,
    ]);
    command.args(
        branches
            .iter()
            .map(|branch| format!("+refs/heads/{branch}:refs/heads/{branch}")),
    );
    let ran = match cli::run(command, Instant::now() + repo.timeout) {
        Ok(ran) => ran,
        Err(Stopped::Spawn(e)) => {
            return Err(format!(
                "cannot run `git fetch` for repo `{}`: {e}",
                repo.name
            ));
        }
        Err(Stopped::Deadline) => {
            return Err(format!(
                "`git fetch` of repo `{}` did not finish within its timeout",
                repo.name
            ));
        }
        Err(Stopped::Interrupted) => {
            return Err(format!(
                "`git fetch` of repo `{}` was stopped: phantom_ci was told to stop",
                repo.name
            ));
        }
        Err(Stopped::Wait(e)) => return Err(format!("cannot wait for `git fetch`: {e}")),
    };
    if ran.status.success() {
        // What the fetch wrote belongs to phantom_ci's group: give it to the step user's.
        if access != Access::Private {
            grant(&mirror, access).map_err(|e| {
                format!(
                    "cannot give the mirror `{}` of repo `{}` to its step user's group: {e}",
                    mirror.display(),
                    repo.name
                )
            })?;
        }
        return Ok(());
    }
    Err(format!(
        "`git fetch` of branch `{}` from `{}` for repo `{}` failed: {}",
        crate::describe::terminal(&branches.join("`, `")),
        repo.location,
        repo.name,
        ran.stderr
    ))
}

/// The most bytes of `git ls-remote` output read: some 150,000 branches.
const MAX_LS_REMOTE: u64 = 16 << 20;

/// The branches of a URL repo's remote that the repo runs (`git ls-remote --heads`), sorted; empty for
/// a local repo.
pub fn remote_branches(repo: &Repo) -> Result<Vec<String>, String> {
    let Location::Url(url) = &repo.location else {
        return Ok(Vec::new());
    };
    let mut command = cli::git();
    let url = cli::remote(&mut command, url);
    command.args(["ls-remote", "--heads", "--", &url]);
    let failed = |why: String| {
        format!(
            "`git ls-remote` of `{}` for repo `{}` {why}",
            repo.location, repo.name
        )
    };
    let (ran, output) =
        match cli::run_keeping(command, Instant::now() + repo.timeout, MAX_LS_REMOTE) {
            Ok(done) => done,
            Err(Stopped::Spawn(e)) => return Err(failed(format!("could not start: {e}"))),
            Err(Stopped::Deadline) => {
                return Err(failed("did not finish within its timeout".into()));
            }
            Err(Stopped::Interrupted) => return Err(failed("was stopped".into())),
            Err(Stopped::Wait(e)) => return Err(failed(format!("could not be waited for: {e}"))),
        };
    if !ran.status.success() {
        return Err(failed(format!("failed: {}", ran.stderr)));
    }
    let mut branches: Vec<String> = output
        .split(|b| *b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .filter_map(|line| line.split_once('\t')?.1.strip_prefix("refs/heads/"))
        .filter(|branch| repo.branches.matches(branch))
        .map(str::to_string)
        .collect();
    branches.sort_unstable();
    branches.dedup();
    Ok(branches)
}

/// Whether the remote of a URL repo has `branch`: `Some(false)` when `git ls-remote` says it
/// has no such branch (a repository nothing was pushed to yet), `None` when that cannot be told (a
/// local repo, an unreachable remote). For telling a fetch that failed for lack of the branch from
/// one that failed for any other reason.
pub fn remote_has_branch(repo: &Repo, branch: &str) -> Option<bool> {
    let Location::Url(url) = &repo.location else {
        return None;
    };
    let mut command = cli::git();
    let url = cli::remote(&mut command, url);
    command.args([
        "ls-remote",
        "--exit-code",
        "--heads",
        "--",
        &url,
        &format!("refs/heads/{branch}"),
    ]);
    // `--exit-code`: 2 when the remote answered and has no matching ref.
    let ran = cli::run(command, Instant::now() + repo.timeout).ok()?;
    match ran.status.code() {
        Some(0) => Some(true),
        Some(2) => Some(false),
        _ => None,
    }
}

/// Creates the mirror if it does not exist yet, and gives it `access` if it has another (a new
/// mirror, one of an earlier version, or one whose repo now runs as another user).
fn prepare(mirror: &Path, access: Access) -> Result<(), String> {
    let fresh = !mirror.join("HEAD").exists();
    if fresh {
        match std::fs::DirBuilder::new().mode(0o700).create(mirror) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.to_string()),
        }
        // Closed before anything is written into it; given to the group once it is complete.
        grant(mirror, Access::Private).map_err(|e| e.to_string())?;
        git2::Repository::init_bare(mirror).map_err(|e| e.message().to_string())?;
    }
    let meta = std::fs::symlink_metadata(mirror).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    if fresh || !access.holds(&meta) {
        grant(mirror, access).map_err(|e| e.to_string())?;
    }
    // An earlier version set it; git would make setgid directories, which the system unit refuses.
    let repository = git2::Repository::open_bare(mirror).map_err(|e| e.message().to_string())?;
    let mut config = repository.config().map_err(|e| e.message().to_string())?;
    if config.get_string("core.sharedRepository").is_ok() {
        config
            .remove("core.sharedRepository")
            .map_err(|e| e.message().to_string())?;
    }
    Ok(())
}

/// Gives the mirror `access`. For a group, everything in it first (never following a link; only
/// phantom_ci's user writes there), the mirror's own directory last: once that directory has the
/// group's mode, the whole mirror has it, even if phantom_ci died half-way before.
fn grant(mirror: &Path, access: Access) -> std::io::Result<()> {
    match access {
        Access::Private => std::fs::set_permissions(mirror, std::fs::Permissions::from_mode(0o700)),
        Access::Group(gid) => {
            give_to_group(mirror, gid, 0)?;
            std::os::unix::fs::chown(mirror, None, Some(gid.as_raw()))?;
            std::fs::set_permissions(mirror, std::fs::Permissions::from_mode(0o750))
        }
    }
}

/// How deep a mirror is walked (`objects/pack/…` is three levels; refs can be deeper).
const MAX_DEPTH: usize = 64;

fn give_to_group(dir: &Path, gid: Gid, depth: usize) -> std::io::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            continue;
        }
        std::os::unix::fs::chown(&path, None, Some(gid.as_raw()))?;
        let mode = meta.mode() & 0o7777;
        let wanted = if meta.is_dir() {
            (mode | 0o050) & !0o2022
        } else {
            (mode | 0o040) & !0o022
        };
        if wanted != mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted))?;
        }
        if meta.is_dir() {
            give_to_group(&path, gid, depth + 1)?;
        }
    }
    Ok(())
}
