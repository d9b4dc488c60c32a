//! The scratch directory a run works in: `<data>/work/<repo>/<run>/` holding `workspace/` (a git working
//! tree of the commit) and `artifacts/` (what steps leave to keep), removed after the run unless kept.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
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
    /// [`ARTIFACTS_CAP`] bytes. Returns one note per thing left out.
    pub fn collect_artifacts(&self, dest: &Path) -> Vec<String> {
        let mut notes = Vec::new();
        let mut budget = ARTIFACTS_CAP;
        copy_regular_files(
            &self.artifacts,
            dest,
            Path::new(""),
            &mut budget,
            &mut notes,
        );
        notes
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

fn copy_regular_files(
    from: &Path,
    to: &Path,
    relative: &Path,
    budget: &mut u64,
    notes: &mut Vec<String>,
) {
    let Ok(entries) = std::fs::read_dir(from.join(relative)) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let rel = relative.join(entry.file_name());
        let shown = crate::sanitize::terminal(&rel.to_string_lossy());
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() {
            copy_regular_files(from, to, &rel, budget, notes);
        } else if meta.is_file() {
            if let Err(note) = copy_one(&entry.path(), &to.join(&rel), budget) {
                notes.push(format!("artifact `{shown}` not kept: {note}"));
            }
        } else {
            notes.push(format!(
                "artifact `{shown}` not kept: only regular files are kept (not links, devices or FIFOs)"
            ));
        }
    }
}

fn copy_one(from: &Path, to: &Path, budget: &mut u64) -> Result<(), String> {
    let mut source = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(from)
        .map_err(|e| e.to_string())?;
    let meta = source.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > *budget {
        return Err(format!(
            "the artifacts cap of {ARTIFACTS_CAP} bytes is reached"
        ));
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let mut dest = File::create(to).map_err(|e| e.to_string())?;
    let mut limited = (&mut source).take(*budget + 1);
    let copied = std::io::copy(&mut limited, &mut dest).map_err(|e| e.to_string())?;
    if copied > *budget {
        drop(dest);
        let _ = std::fs::remove_file(to);
        return Err(format!(
            "the artifacts cap of {ARTIFACTS_CAP} bytes is reached"
        ));
    }
    dest.flush().map_err(|e| e.to_string())?;
    *budget -= copied;
    Ok(())
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
        let notes = ws.collect_artifacts(&dest);
        assert_eq!(
            std::fs::read_to_string(dest.join("sub/report.txt")).unwrap(),
            "ok"
        );
        assert!(!dest.join("passwd").exists() && !dest.join("etc").exists());
        assert!(!dest.join("fifo").exists());
        assert_eq!(notes.len(), 3, "{notes:?}");
    }
}
