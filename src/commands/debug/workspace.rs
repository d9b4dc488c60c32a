//! Where a `debug` session works: the run's kept workspace (pinned while the session lives) or a
//! fresh checkout, made ready with its sandbox, and what is left of it afterwards.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::time::Instant;

use git2::{Oid, Repository};
use nix::unistd::Uid;

use crate::commands::Context;
use crate::config::{Repo, Sandbox};
use crate::error::Error;
use crate::git::workspace::Workspace;
use crate::isolation::privilege::StepUser;
use crate::isolation::sandbox::Sandbox as BwrapSandbox;
use crate::runner;
use crate::state::kept::{self, Kept};
use crate::state::{cache, sessions};

/// Where a session works.
pub enum Place {
    /// The run's kept workspace, pinned while the session lives.
    Kept { kept: Kept, pin: kept::Pin },
    /// A fresh checkout (after the replay, with `--replay`).
    Fresh { replay: bool },
}

/// The workspace of a session, ready: its sandbox (or why there is none), and the build cache it
/// sees, if any.
pub struct Prepared {
    pub workspace: Workspace,
    /// The session's own directory, `<data>/work/<repo>/debug-<pid>/` (for a kept workspace, only
    /// its owner record).
    session_root: PathBuf,
    pub sandbox: Result<Option<BwrapSandbox>, String>,
    pub cache: Option<PathBuf>,
}

impl Prepared {
    pub fn new(
        ctx: &Context,
        repo: &Repo,
        user: &StepUser,
        source: &Repository,
        commit: Oid,
        place: &Place,
        keep: bool,
    ) -> Result<Prepared, Error> {
        let dirs = &ctx.dirs;
        let name = sessions::dir_name(std::process::id());
        // The cache as a step sees it, but read-only: bound so by the sandbox, or as root by a
        // mount namespace of the session's own (the boundary's invariant 10); else not there.
        let cache = (repo.cache && (repo.sandbox != Sandbox::None || Uid::effective().is_root()))
            .then(|| cache::path(dirs, &repo.name))
            .filter(|dir| dir.is_dir());
        match place {
            Place::Kept { kept, .. } => {
                let session_root = dirs.work().join(&repo.name).join(&name);
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&session_root)
                    .map_err(|e| Error::io("cannot create", session_root.clone(), e))?;
                if let Err(e) = sessions::write_in(&session_root, kept.run) {
                    let _ = crate::isolation::dirfd::remove_tree(&session_root);
                    return Err(e);
                }
                let workspace = Workspace::existing(kept.root.clone());
                let sandbox = workspace.reopen(user).and_then(|()| {
                    runner::debug_sandbox(dirs, repo, &workspace, source, user, cache.as_deref())
                });
                Ok(Prepared {
                    workspace,
                    session_root,
                    sandbox,
                    cache,
                })
            }
            Place::Fresh { .. } => {
                let mut workspace =
                    Workspace::create_named(dirs, &repo.name, &name, user).map_err(Error::Other)?;
                // Before anything runs: a session that dies is cleaned up by the next `tick` or `run`.
                if let Err(e) = sessions::write(&workspace.root, keep) {
                    let _ = workspace.remove();
                    return Err(e);
                }
                let sandbox = workspace
                    .checkout(source, commit, repo, Instant::now() + repo.timeout)
                    .and_then(|()| workspace.hand_over(user))
                    .and_then(|()| {
                        runner::debug_sandbox(
                            dirs,
                            repo,
                            &workspace,
                            source,
                            user,
                            cache.as_deref(),
                        )
                    });
                Ok(Prepared {
                    session_root: workspace.root.clone(),
                    workspace,
                    sandbox,
                    cache,
                })
            }
        }
    }

    /// Closes the workspace again, and removes what the session made: a fresh workspace (unless
    /// `keep`), or a kept one's session record (the kept workspace stays, unless another session
    /// still uses it, closed to the step user again).
    pub fn finish(mut self, place: Place, keep: bool) {
        match place {
            Place::Kept { kept, pin } => {
                drop(pin);
                if !kept::pinned(&kept)
                    && let Err(message) = self.workspace.take_back()
                {
                    eprintln!("phantom_ci: {message}");
                }
                let _ = crate::isolation::dirfd::remove_tree(&self.session_root);
            }
            Place::Fresh { .. } => {
                if let Err(message) = self.workspace.take_back() {
                    eprintln!("phantom_ci: {message}");
                }
                if keep {
                    sessions::forget(&self.workspace.root);
                    eprintln!(
                        "phantom_ci: workspace kept at {}",
                        self.workspace.tree.display()
                    );
                } else if let Err(e) = self.workspace.remove() {
                    eprintln!(
                        "phantom_ci: cannot remove the workspace `{}`: {e}; remove it by hand",
                        self.workspace.root.display()
                    );
                }
            }
        }
    }
}
