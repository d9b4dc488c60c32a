//! The scratch directory a run works in: `<data>/work/<repo>/<run>/` holding `workspace/` (a git working
//! tree of the commit) and `artifacts/` (what steps leave to keep), removed after the run unless kept.
//!
//! Root never works by path inside a directory the step user can change. The run directory stays
//! phantom_ci's: created mode 0700, the checkout is written and given to the step user while only
//! phantom_ci can enter it; then ([`Workspace::hand_over`]) `workspace/` and `artifacts/` become the
//! step user's, mode 0700, and the run directory 0711 — the step user can go through it but cannot
//! rename what is in it, so `workspace/` stays `workspace/`. After the steps it is 0700 again
//! ([`Workspace::take_back`]) before the artifacts are collected, walking them by file descriptor,
//! never following a link.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use git2::{Oid, Repository};
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag};

use crate::config::Repo;
use crate::config::dirs::Dirs;
use crate::config::quantities::ByteSize;
use crate::describe::human;
use crate::git::base::{self, BaseError, BaseTree, Moved};
use crate::git::{Budget, CheckoutError};
use crate::isolation::dirfd;
use crate::isolation::overlay::Layer;
use crate::isolation::privilege::{self, StepUser};

/// The most bytes of artifacts kept per run.
pub const ARTIFACTS_CAP: u64 = 256 << 20;

#[derive(Debug)]
pub struct Workspace {
    pub root: PathBuf,
    pub tree: PathBuf,
    pub artifacts: PathBuf,
    /// Where `tree` is a copy-on-write layer over the branch's base tree (issue 23).
    layered: Option<Layered>,
}

/// A layered workspace's layer and the base it reads: dropped in this order, so the base stays locked
/// until no mount reads it.
#[derive(Debug)]
struct Layered {
    layer: Layer,
    _base: BaseTree,
}

/// Where a run's workspace may be a layer: the data directory and the base tree's key
/// (`<repo>~<branch key>`), or why not.
pub type Layering<'a> = Result<(&'a Dirs, String), String>;

/// How a workspace got its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filled {
    /// A copy-on-write layer over the branch's base tree, and how the base got to the commit.
    Layer(Moved),
    /// A checkout of every file, and why not a layer. `tried`: a layer could have been made, and
    /// was not (the run's log says why).
    Full { why: String, tried: bool },
}

impl std::fmt::Display for Filled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filled::Layer(moved) => write!(f, "layer over the base tree ({moved})"),
            Filled::Full { why, .. } => write!(f, "full checkout ({why})"),
        }
    }
}

impl Workspace {
    /// Creates the run directory (mode 0700, phantom_ci's) with an empty `workspace/` and `artifacts/`,
    /// after checking that the step user will be able to reach it.
    pub fn create(dirs: &Dirs, repo: &str, run: u64, user: &StepUser) -> Result<Workspace, String> {
        Workspace::create_named(dirs, repo, &run.to_string(), user)
    }

    /// The same as [`Workspace::create`], in `<data>/work/<repo>/<name>/` (`phantom_ci debug` uses
    /// `debug-<pid>`, which no run number can be). The directory must not exist yet.
    pub fn create_named(
        dirs: &Dirs,
        repo: &str,
        name: &str,
        user: &StepUser,
    ) -> Result<Workspace, String> {
        let root = dirs.work().join(repo).join(name);
        let parent = root.parent().unwrap_or(&root).to_path_buf();
        // `<data>`, `<data>/work` and `<data>/work/<repo>`: 0711, gone through but not listed.
        dirs.make(&parent)
            .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
        if let Some(blocked) = privilege::unreachable_parent(user, &parent) {
            return Err(format!(
                "the `run_as` user `{}` cannot reach `{}`: `{}` is not searchable by it. \
                 Use a data directory every user can traverse, such as `/var/lib/phantom_ci` \
                 (`--data-dir`, `PHANTOM_CI_DATA_DIR`; `configure service --system` sets it up)",
                user.name,
                root.display(),
                blocked.display()
            ));
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&root)
            .map_err(|e| format!("cannot create `{}`: {e}", root.display()))?;
        let workspace = Workspace::existing(root);
        for dir in [&workspace.tree, &workspace.artifacts] {
            std::fs::create_dir(dir)
                .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        }
        Ok(workspace)
    }

    /// Checks the commit out into `workspace/`, within the repo's `checkout_limit` and before the run's
    /// `deadline`. A checkout that is refused or stopped leaves `workspace/` empty, whatever
    /// `keep_workspace` says: nothing of a commit too large to check out stays on the disk.
    pub fn checkout(
        &self,
        source: &Repository,
        commit: Oid,
        repo: &Repo,
        deadline: Instant,
    ) -> Result<(), String> {
        let budget = Budget {
            bytes: repo.checkout_limit,
            deadline: Some(deadline),
        };
        let outcome = crate::git::checkout_workspace(source, commit, &self.tree, &budget).map(drop);
        let Err(error) = outcome else {
            return Ok(());
        };
        let emptied = crate::isolation::dirfd::remove_tree(&self.tree)
            .and_then(|()| std::fs::create_dir(&self.tree));
        let mut message = checkout_error(error, repo);
        if let Err(e) = emptied {
            message.push_str(&format!(
                " (and `{}` could not be emptied: {e})",
                self.tree.display()
            ));
        }
        Err(message)
    }

    /// Gives `workspace/` the commit's files: as a copy-on-write layer over the branch's base tree
    /// where `layering` names one and it can be made (phantom_ci as root, steps as `user`), else by
    /// [`Workspace::checkout`]. A commit the base refuses (`checkout_limit`, the deadline) is the
    /// run's error, as a plain checkout's would be.
    pub fn fill(
        &mut self,
        source: &Repository,
        commit: Oid,
        repo: &Repo,
        deadline: Instant,
        layering: Layering,
        user: &StepUser,
    ) -> Result<Filled, String> {
        let full = |ws: &Workspace, why: String, tried: bool| {
            ws.checkout(source, commit, repo, deadline)
                .map(|()| Filled::Full { why, tried })
        };
        let (dirs, key) = match layering {
            Ok(base) => base,
            Err(why) => return full(self, why, false),
        };
        let budget = Budget {
            bytes: repo.checkout_limit,
            deadline: Some(deadline),
        };
        // Beyond the limit, the least recently used bases of other branches go first (never one
        // that a run holds).
        base::evict(dirs, &key);
        let (base, moved) = match BaseTree::prepare(dirs, &key, source, commit, user, &budget) {
            Ok(prepared) => prepared,
            Err(BaseError::Checkout(error)) => return Err(checkout_error(error, repo)),
            Err(BaseError::Other(why)) => {
                return full(
                    self,
                    format!("the base tree could not be prepared: {why}"),
                    true,
                );
            }
        };
        match self.layer_over(&base, user) {
            Ok(layer) => {
                self.layered = Some(Layered { layer, _base: base });
                Ok(Filled::Layer(moved))
            }
            Err(why) => {
                drop(base);
                let _ = crate::isolation::dirfd::remove_tree(self.root.join("layer"));
                full(self, why, true)
            }
        }
    }

    /// Mounts the layer: `layer/upper` (the step user's, mode 0700: the workspace's root as the
    /// steps see it) and `layer/work` in the run directory, over `base`'s tree, on `workspace/`.
    fn layer_over(&self, base: &BaseTree, user: &StepUser) -> Result<Layer, String> {
        let layer = self.root.join("layer");
        let (upper, work) = (layer.join("upper"), layer.join("work"));
        let made = std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&layer)
            .and_then(|()| std::fs::DirBuilder::new().mode(0o700).create(&upper))
            .and_then(|()| std::fs::DirBuilder::new().mode(0o700).create(&work))
            .and_then(|()| {
                std::os::unix::fs::chown(&upper, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            })
            .and_then(|()| set_mode(&upper, 0o700));
        made.map_err(|e| format!("cannot prepare `{}`: {e}", layer.display()))?;
        Layer::mount(
            &base.tree,
            &upper,
            &work,
            &self.tree,
            (user.uid.as_raw(), user.gid.as_raw()),
        )
    }

    /// The mount namespace every step joins, where the workspace is a layer.
    pub fn namespace(&self) -> Option<BorrowedFd<'_>> {
        self.layered.as_ref().map(|l| l.layer.namespace())
    }

    /// Makes a layered workspace a plain directory, to be kept past the run: what the steps see is
    /// copied out (`cp -a`), the layer goes, and the copy takes `workspace/`'s place. Nothing to do
    /// for a plain workspace.
    pub fn unlayer(&mut self) -> Result<(), String> {
        let Some(layered) = &self.layered else {
            return Ok(());
        };
        let copy = self.root.join("workspace.copy");
        let copied = layered.layer.copy_out(&copy);
        self.layered = None;
        let _ = crate::isolation::dirfd::remove_tree(self.root.join("layer"));
        copied
            .and_then(|()| {
                std::fs::remove_dir(&self.tree)
                    .and_then(|()| std::fs::rename(&copy, &self.tree))
                    .map_err(|e| format!("cannot put `{}` in place: {e}", copy.display()))
            })
            .inspect_err(|_| {
                let _ = crate::isolation::dirfd::remove_tree(&copy);
            })
    }

    /// Gives `workspace/` and `artifacts/` (mode 0700) to the step user and lets it through the run
    /// directory (mode 0711, still phantom_ci's).
    pub fn hand_over(&self, user: &StepUser) -> Result<(), String> {
        if !user.switch {
            return Ok(());
        }
        let give = |path: &Path, result: std::io::Result<()>| {
            result.map_err(|e| format!("cannot give `{}` to `{}`: {e}", path.display(), user.name))
        };
        for dir in [&self.tree, &self.artifacts] {
            give(dir, privilege::chown_tree(dir, user))?;
            give(dir, set_mode(dir, 0o700))?;
        }
        give(&self.root, set_mode(&self.root, 0o711))
    }

    /// The run directory `root`: made by [`Workspace::create`], or an earlier run's kept for
    /// `phantom_ci debug` ([`crate::state::kept`]).
    pub fn existing(root: PathBuf) -> Workspace {
        Workspace {
            tree: root.join("workspace"),
            artifacts: root.join("artifacts"),
            root,
            layered: None,
        }
    }

    /// Lets the step user through the run directory again (mode 0711), for a `debug` session in a
    /// kept workspace: its files are the step user's already, as the run left them. Refused when
    /// `workspace/` belongs to another user (`run_as` changed since the run).
    pub fn reopen(&self, user: &StepUser) -> Result<(), String> {
        if !user.switch {
            return Ok(());
        }
        let owner = std::fs::metadata(&self.tree)
            .map_err(|e| format!("cannot read `{}`: {e}", self.tree.display()))?
            .uid();
        if owner != user.uid.as_raw() {
            return Err(format!(
                "`{}` belongs to uid {owner}, not to the step user `{}` (`run_as` changed since \
                 the run)",
                self.tree.display(),
                user.name
            ));
        }
        set_mode(&self.root, 0o711)
            .map_err(|e| format!("cannot open `{}`: {e}", self.root.display()))
    }

    /// Closes the run directory again: from now on only phantom_ci can enter it. Safe to call twice.
    pub fn take_back(&self) -> Result<(), String> {
        set_mode(&self.root, 0o700)
            .map_err(|e| format!("cannot close `{}`: {e}", self.root.display()))
    }

    /// Copies the regular files of `artifacts/` into `dest`, without following links, up to
    /// [`ARTIFACTS_CAP`] bytes and `max_files` files and directories (the repo's `artifact_files`:
    /// every name met counts, in sorted order, depth first; the rest are dropped). With `owner`, only
    /// files that user owns are kept: a step cannot pass off a hard link to a file it could not read
    /// itself (where the kernel allows such links at all) as its artifact. Returns the notes for the
    /// log: one per thing left out, and one for each cap reached, however many it dropped.
    pub fn collect_artifacts(
        &self,
        dest: &Path,
        owner: Option<u32>,
        max_files: u64,
    ) -> Vec<String> {
        let mut collector = Collector {
            to: dest,
            owner,
            budget: ARTIFACTS_CAP,
            files_left: max_files,
            over_files: false,
            over_bytes: 0,
            notes: Vec::new(),
        };
        match dirfd::open_dir(None, self.artifacts.as_os_str()) {
            Ok(dir) => collector.copy_dir(dir, Path::new("")),
            Err(e) => collector.notes.push(format!(
                "artifacts not kept: cannot open `{}`: {e}",
                self.artifacts.display()
            )),
        }
        if collector.over_bytes > 0 {
            collector.notes.push(format!(
                "{} artifact file(s) not kept: the artifacts cap of {} is reached",
                collector.over_bytes,
                ByteSize(ARTIFACTS_CAP)
            ));
        }
        if collector.over_files {
            collector.notes.push(format!(
                "artifacts past the first {max_files} files and directories not kept (the repo's \
                 `artifact_files`; raise it in Repo.toml to keep more)"
            ));
        }
        collector.notes
    }

    pub fn remove(&mut self) -> std::io::Result<()> {
        // The layer first: its mount goes with its namespace, and with it the base's lock.
        self.layered = None;
        crate::isolation::dirfd::remove_tree(&self.root)?;
        // Also the per-repo directory once it is empty; another run's directory keeps it.
        if let Some(parent) = self.root.parent() {
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }
}

/// The run's error for a checkout (or a base tree's move) that was refused or stopped.
fn checkout_error(error: CheckoutError, repo: &Repo) -> String {
    match error {
        CheckoutError::TooLarge { limit } => format!(
            "the commit is larger than `checkout_limit` ({}): its files would take more than \
             that (each file counts its size in 4 KiB blocks, at least one), so nothing was \
             checked out. Raise `checkout_limit` of repo `{}` in Repo.toml if the commit is \
             meant to be this large",
            ByteSize(limit),
            repo.name
        ),
        CheckoutError::Deadline => format!(
            "the run timed out after {} (the repo's `timeout`) while checking out the commit; \
             nothing of the checkout was kept",
            human(repo.timeout)
        ),
        CheckoutError::TooDeep
        | CheckoutError::Malformed(_)
        | CheckoutError::TreesTooLarge
        | CheckoutError::Interrupted
        | CheckoutError::Git(_) => error.to_string(),
    }
}

/// Sets the mode of a directory phantom_ci owns, in a directory only phantom_ci can change.
fn set_mode(dir: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// How deep the artifacts are walked: every level holds a file descriptor open.
const MAX_DEPTH: usize = 32;

/// Copies artifacts by file descriptor: every directory is opened relative to its parent without
/// following links, so nothing a step left behind can lead phantom_ci outside the artifacts directory.
struct Collector<'a> {
    to: &'a Path,
    owner: Option<u32>,
    budget: u64,
    /// How many more files and directories may be kept (`artifact_files`).
    files_left: u64,
    /// Whether anything was dropped past `artifact_files` (one note for all of it).
    over_files: bool,
    /// How many files the byte cap dropped (one note for all of them).
    over_bytes: u64,
    notes: Vec<String>,
}

impl Collector<'_> {
    fn copy_dir(&mut self, dir: OwnedFd, relative: &Path) {
        if relative.components().count() >= MAX_DEPTH {
            let shown = crate::describe::terminal(&relative.to_string_lossy());
            self.notes.push(format!(
                "artifacts below `{shown}` not kept: directories are kept {MAX_DEPTH} levels deep"
            ));
            return;
        }
        // Never more names in memory than may still be kept, however many the directory holds.
        let wanted = usize::try_from(self.files_left).unwrap_or(usize::MAX);
        let (names, more) = dirfd::first_names(&dir, wanted);
        for name in names {
            if self.files_left == 0 {
                self.over_files = true;
                return;
            }
            self.files_left -= 1;
            let rel = relative.join(&name);
            let refused = match dirfd::kind(&dir, &name) {
                Ok(SFlag::S_IFDIR) => {
                    if let Ok(sub) = dirfd::open_dir(Some(&dir), &name) {
                        self.copy_dir(sub, &rel);
                    }
                    continue;
                }
                Ok(SFlag::S_IFREG) => match self.copy_file(&dir, &name, &rel) {
                    Ok(()) => continue,
                    Err(CopyError::OverBytes) => {
                        self.over_bytes += 1;
                        continue;
                    }
                    Err(CopyError::Other(why)) => why,
                },
                Ok(_) => "only regular files are kept (not links, devices or FIFOs)".to_string(),
                Err(e) => e.to_string(),
            };
            let shown = crate::describe::terminal(&rel.to_string_lossy());
            self.notes
                .push(format!("artifact `{shown}` not kept: {refused}"));
        }
        if more {
            self.over_files = true;
        }
    }

    fn copy_file(&mut self, dir: &OwnedFd, name: &OsStr, rel: &Path) -> Result<(), CopyError> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let mut source =
            File::from(openat(dir, name, flags, Mode::empty()).map_err(|e| e.to_string())?);
        let meta = source.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        if self.owner.is_some_and(|uid| uid != meta.uid()) {
            return Err("not owned by the user the steps run as".into());
        }
        if meta.len() > self.budget {
            return Err(CopyError::OverBytes);
        }
        let to = self.to.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let mut dest = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&to)
            .map_err(|e| e.to_string())?;
        let mut limited = (&mut source).take(self.budget + 1);
        let copied = std::io::copy(&mut limited, &mut dest).map_err(|e| e.to_string())?;
        if copied > self.budget {
            drop(dest);
            let _ = std::fs::remove_file(&to);
            return Err(CopyError::OverBytes);
        }
        dest.flush().map_err(|e| e.to_string())?;
        self.budget -= copied;
        Ok(())
    }
}

/// Why one file was not kept.
enum CopyError {
    /// The byte cap: counted, and told once.
    OverBytes,
    Other(String),
}

impl From<String> for CopyError {
    fn from(why: String) -> Self {
        CopyError::Other(why)
    }
}

impl From<&str> for CopyError {
    fn from(why: &str) -> Self {
        CopyError::Other(why.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkout_past_the_deadline_names_the_timeout_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let source = Repository::init_bare(tmp.path().join("source.git")).unwrap();
        let blob = source.blob(b"content").unwrap();
        let mut builder = source.treebuilder(None).unwrap();
        builder.insert("file", blob, 0o100644).unwrap();
        let tree = source.find_tree(builder.write().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.org").unwrap();
        let commit = source.commit(None, &sig, &sig, "c", &tree, &[]).unwrap();
        let ws = in_dir(tmp.path());
        std::fs::create_dir(&ws.tree).unwrap();
        let mut repo = Repo::ad_hoc("app".into(), tmp.path().join("source.git"), "master".into());
        repo.timeout = std::time::Duration::from_secs(10);

        let late = ws
            .checkout(&source, commit, &repo, Instant::now())
            .unwrap_err();
        assert!(
            late.contains("the run timed out after 10s (the repo's `timeout`) while checking out"),
            "{late}"
        );
        assert_eq!(std::fs::read_dir(&ws.tree).unwrap().count(), 0);

        repo.checkout_limit = 1 << 20;
        let in_time = Instant::now() + std::time::Duration::from_secs(3600);
        ws.checkout(&source, commit, &repo, in_time).unwrap();
        assert_eq!(std::fs::read(ws.tree.join("file")).unwrap(), b"content");
    }

    /// A workspace whose root is `root` (made by the test, not by [`Workspace::create`]).
    fn in_dir(root: &Path) -> Workspace {
        Workspace::existing(root.to_path_buf())
    }

    #[test]
    fn only_regular_files_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = in_dir(tmp.path());
        std::fs::create_dir_all(ws.artifacts.join("sub")).unwrap();
        std::fs::write(ws.artifacts.join("sub/report.txt"), "ok").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ws.artifacts.join("passwd")).unwrap();
        std::os::unix::fs::symlink("/etc", ws.artifacts.join("etc")).unwrap();
        nix::unistd::mkfifo(&ws.artifacts.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let dest = tmp.path().join("kept");
        let notes = ws.collect_artifacts(&dest, None, 100);
        assert_eq!(
            std::fs::read_to_string(dest.join("sub/report.txt")).unwrap(),
            "ok"
        );
        assert!(!dest.join("passwd").exists() && !dest.join("etc").exists());
        assert!(!dest.join("fifo").exists());
        assert_eq!(notes.len(), 3, "{notes:?}");
    }

    #[test]
    fn with_an_owner_only_that_users_files_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = in_dir(tmp.path());
        std::fs::create_dir_all(&ws.artifacts).unwrap();
        std::fs::write(ws.artifacts.join("mine.txt"), "ok").unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let dest = tmp.path().join("kept");
        assert!(ws.collect_artifacts(&dest, Some(me), 100).is_empty());
        assert!(dest.join("mine.txt").exists());
        let other = tmp.path().join("kept-other");
        let notes = ws.collect_artifacts(&other, Some(me + 1), 100);
        assert!(notes[0].contains("not owned by the user"), "{notes:?}");
        assert!(!other.join("mine.txt").exists());
    }

    #[test]
    fn the_file_count_cap_keeps_the_first_names_and_says_so_once() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = in_dir(tmp.path());
        std::fs::create_dir_all(ws.artifacts.join("b")).unwrap();
        for name in ["a1", "a2", "b/x", "b/y", "c1", "c2", "c3"] {
            std::fs::write(ws.artifacts.join(name), "x").unwrap();
        }
        // Five names: `a1`, `a2`, the folder `b`, `b/x`, `b/y`.
        let dest = tmp.path().join("kept");
        let notes = ws.collect_artifacts(&dest, None, 5);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("past the first 5 files and directories"),
            "{notes:?}"
        );
        assert!(notes[0].contains("`artifact_files`"), "{notes:?}");
        assert!(dest.join("b/y").exists() && !dest.join("c1").exists());
        // Cut inside a folder, and exactly at the end: no note when nothing is dropped.
        let dest = tmp.path().join("kept-4");
        assert_eq!(ws.collect_artifacts(&dest, None, 4).len(), 1);
        assert!(dest.join("b/x").exists() && !dest.join("b/y").exists());
        let dest = tmp.path().join("kept-all");
        assert!(ws.collect_artifacts(&dest, None, 8).is_empty());
        assert!(dest.join("c3").exists());
    }

    #[test]
    fn the_byte_cap_is_one_note_however_many_files_it_drops() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = in_dir(tmp.path());
        std::fs::create_dir_all(&ws.artifacts).unwrap();
        for name in ["big1", "big2", "big3"] {
            // Sparse: refused by its size before a byte is read.
            File::create(ws.artifacts.join(name))
                .unwrap()
                .set_len(ARTIFACTS_CAP + 1)
                .unwrap();
        }
        std::fs::write(ws.artifacts.join("small"), "s").unwrap();
        let notes = ws.collect_artifacts(&tmp.path().join("kept"), None, 100);
        assert_eq!(
            notes,
            ["3 artifact file(s) not kept: the artifacts cap of 256MiB is reached"]
        );
        assert!(tmp.path().join("kept/small").exists());
    }
}
