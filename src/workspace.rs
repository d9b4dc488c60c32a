//! The scratch directory a run works in: `<data>/work/<repo>/<run>/` holding `workspace/` (a git working
//! tree of the commit) and `artifacts/` (what steps leave to keep), removed after the run unless kept.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};

use crate::dirs::Dirs;
use crate::privilege::{self, StepUser};

/// The most bytes of artifacts kept per run.
pub const ARTIFACTS_CAP: u64 = 256 << 20;

#[derive(Debug)]
pub struct Workspace {
    pub root: PathBuf,
    pub tree: PathBuf,
    pub artifacts: PathBuf,
}

impl Workspace {
    /// Creates the directories, owned by the step user, after checking that it can reach them.
    pub fn create(dirs: &Dirs, repo: &str, run: u64, user: &StepUser) -> Result<Workspace, String> {
        let root = dirs.work().join(repo).join(run.to_string());
        let workspace = Workspace {
            tree: root.join("workspace"),
            artifacts: root.join("artifacts"),
            root,
        };
        for dir in [&workspace.tree, &workspace.artifacts] {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        }
        if user.switch {
            for dir in [&workspace.tree, &workspace.artifacts] {
                privilege::chown_tree(dir, user).map_err(|e| {
                    format!("cannot give `{}` to `{}`: {e}", dir.display(), user.name)
                })?;
            }
        }
        for dir in [&workspace.tree, &workspace.artifacts] {
            if let Some(blocked) = privilege::unreachable_parent(user, dir) {
                return Err(format!(
                    "the `run_as` user `{}` cannot reach `{}`: `{}` is not searchable by it. \
                     Use a data directory every user can traverse, such as `/var/lib/phantom_ci` \
                     (`--data-dir`, `PHANTOM_CI_DATA_DIR`; `configure service --system` sets it up)",
                    user.name,
                    dir.display(),
                    blocked.display()
                ));
            }
        }
        Ok(workspace)
    }

    /// Checks the commit out into `workspace/` and gives the files to the step user.
    pub fn checkout(
        &self,
        source: &Repository,
        commit: Oid,
        user: &StepUser,
    ) -> Result<(), String> {
        crate::git::checkout_workspace(source, commit, &self.tree).map_err(|e| e.to_string())?;
        if user.switch {
            privilege::chown_tree(&self.tree, user).map_err(|e| {
                format!(
                    "cannot give `{}` to `{}`: {e}",
                    self.tree.display(),
                    user.name
                )
            })?;
        }
        Ok(())
    }

    /// Copies the regular files of `artifacts/` into `dest`, without following links, up to
    /// [`ARTIFACTS_CAP`] bytes. With `owner`, only files that user owns are kept: a step cannot pass off
    /// a hard link to a file it could not read itself (where the kernel allows such links at all) as its
    /// artifact. Returns one note per thing left out.
    pub fn collect_artifacts(&self, dest: &Path, owner: Option<u32>) -> Vec<String> {
        let mut collector = Collector {
            from: &self.artifacts,
            to: dest,
            owner,
            budget: ARTIFACTS_CAP,
            notes: Vec::new(),
        };
        collector.copy_dir(Path::new(""));
        collector.notes
    }

    pub fn remove(&self) -> std::io::Result<()> {
        std::fs::remove_dir_all(&self.root)?;
        // Also the per-repo directory once it is empty; another run's directory keeps it.
        if let Some(parent) = self.root.parent() {
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }
}

struct Collector<'a> {
    from: &'a Path,
    to: &'a Path,
    owner: Option<u32>,
    budget: u64,
    notes: Vec<String>,
}

impl Collector<'_> {
    fn copy_dir(&mut self, relative: &Path) {
        let Ok(entries) = std::fs::read_dir(self.from.join(relative)) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let rel = relative.join(entry.file_name());
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            let refused = if meta.is_dir() {
                self.copy_dir(&rel);
                continue;
            } else if !meta.is_file() {
                "only regular files are kept (not links, devices or FIFOs)".to_string()
            } else {
                match self.copy_file(&entry.path(), &self.to.join(&rel)) {
                    Ok(()) => continue,
                    Err(why) => why,
                }
            };
            let shown = crate::sanitize::terminal(&rel.to_string_lossy());
            self.notes
                .push(format!("artifact `{shown}` not kept: {refused}"));
        }
    }

    fn copy_file(&mut self, from: &Path, to: &Path) -> Result<(), String> {
        let cap_reached = || format!("the artifacts cap of {ARTIFACTS_CAP} bytes is reached");
        let mut source = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(from)
            .map_err(|e| e.to_string())?;
        let meta = source.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        if self.owner.is_some_and(|uid| uid != meta.uid()) {
            return Err("not owned by the user the steps run as".into());
        }
        if meta.len() > self.budget {
            return Err(cap_reached());
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let mut dest = File::create(to).map_err(|e| e.to_string())?;
        let mut limited = (&mut source).take(self.budget + 1);
        let copied = std::io::copy(&mut limited, &mut dest).map_err(|e| e.to_string())?;
        if copied > self.budget {
            drop(dest);
            let _ = std::fs::remove_file(to);
            return Err(cap_reached());
        }
        dest.flush().map_err(|e| e.to_string())?;
        self.budget -= copied;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace {
            root: tmp.path().to_path_buf(),
            tree: tmp.path().join("workspace"),
            artifacts: tmp.path().join("artifacts"),
        };
        std::fs::create_dir_all(ws.artifacts.join("sub")).unwrap();
        std::fs::write(ws.artifacts.join("sub/report.txt"), "ok").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ws.artifacts.join("passwd")).unwrap();
        std::os::unix::fs::symlink("/etc", ws.artifacts.join("etc")).unwrap();
        nix::unistd::mkfifo(&ws.artifacts.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let dest = tmp.path().join("kept");
        let notes = ws.collect_artifacts(&dest, None);
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
        let ws = Workspace {
            root: tmp.path().to_path_buf(),
            tree: tmp.path().join("workspace"),
            artifacts: tmp.path().join("artifacts"),
        };
        std::fs::create_dir_all(&ws.artifacts).unwrap();
        std::fs::write(ws.artifacts.join("mine.txt"), "ok").unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let dest = tmp.path().join("kept");
        assert!(ws.collect_artifacts(&dest, Some(me)).is_empty());
        assert!(dest.join("mine.txt").exists());
        let other = tmp.path().join("kept-other");
        let notes = ws.collect_artifacts(&other, Some(me + 1));
        assert!(notes[0].contains("not owned by the user"), "{notes:?}");
        assert!(!other.join("mine.txt").exists());
    }
}
