//! `phantom_ci tick` (the default): check every configured repo once, run what moved, exit.

use clap::Args;

use crate::commands::Context;
use crate::config::{Config, Repo};
use crate::error::{Error, ExitStatus};
use crate::git::{self, mirror};
use crate::state::lock::RepoLock;
use crate::state::records::{self, Trigger};
use crate::state::{queue, recovery, seen, spool};
use crate::worker;

#[derive(Debug, Args, Default)]
pub struct TickArgs {}

pub fn run(_args: TickArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let config = Config::load(&ctx.dirs.repo_toml())?;
    if config.repos.is_empty() {
        eprintln!(
            "phantom_ci: no repos configured in `{}`; add one with `{}`",
            ctx.dirs.repo_toml().display(),
            ctx.suggest(&["add"]).placeholder("<PATH|URL> [BRANCH]")
        );
        return Ok(ExitStatus::Success);
    }
    // Notes that arrive from now on start another tick (the path unit); this one checks everything.
    if nix::unistd::geteuid().is_root()
        && let Err(e) = spool::ensure(&ctx.spool)
    {
        eprintln!("phantom_ci: {e}");
    }
    if let Err(e) = spool::clear(&ctx.spool, &ctx.dirs.data.join("spool-junk")) {
        eprintln!("phantom_ci: {e}");
    }
    let mut status = ExitStatus::Success;
    for repo in &config.repos {
        // A repo whose `path` or `run_as` user does not exist is not run; the others are.
        if !repo.problems.is_empty() {
            for problem in &repo.problems {
                eprintln!("phantom_ci: {problem}");
            }
            status = ExitStatus::RunFailed;
            continue;
        }
        if let Err(message) = recover_and_check(ctx, repo) {
            eprintln!("phantom_ci: {}", super::about_repo(&repo.name, &message));
            status = ExitStatus::RunFailed;
        }
    }
    let stdout = || -> Option<Box<dyn std::io::Write + Send>> { Some(Box::new(std::io::stdout())) };
    let drained = worker::drain(&ctx.dirs, &config, None, false, &stdout);
    for finished in &drained.finished {
        for note in &finished.notes {
            eprintln!("phantom_ci: {note}");
        }
    }
    for error in &drained.errors {
        eprintln!("phantom_ci: {error}");
    }
    if !drained.all_succeeded() {
        status = ExitStatus::RunFailed;
    }
    Ok(status)
}

/// Records a dead run of `repo` as aborted, then queues the branch tip if it moved since the last run
/// a hook or tick started (or if this is the first sight of the repo).
fn recover_and_check(ctx: &Context, repo: &Repo) -> Result<(), String> {
    if let Some(lock) =
        RepoLock::acquire(&ctx.dirs, &repo.name, false).map_err(|e| e.to_string())?
    {
        recovery::recover(&ctx.dirs, repo, &lock).map_err(|e| e.to_string())?;
    }
    mirror::update(&ctx.dirs, repo)?;
    // The tip is read and queued in one step under the queue lock, like the hook does it.
    let queued = queue::with_lock(&ctx.dirs, &repo.name, || {
        let source = crate::runner::open_source(&ctx.dirs, repo)?;
        let tip = git::branch_tip(&source, &repo.branch)
            .map_err(|e| format!("repo `{}`: {e}", repo.name))?
            .to_string();
        // Pending, or taken by a worker whose run is about to start (`seen` is set when it has).
        let already_queued = [
            queue::peek(&ctx.dirs, &repo.name),
            queue::peek_claimed(&ctx.dirs, &repo.name),
        ]
        .iter()
        .flatten()
        .any(|e| e.commit == tip);
        if already_queued || seen::get(&ctx.dirs, &repo.name).as_deref() == Some(tip.as_str()) {
            return Ok(());
        }
        let entry = queue::Entry {
            branch: repo.branch.clone(),
            commit: tip,
            trigger: Trigger::Tick,
            queued_at: records::rfc3339(std::time::SystemTime::now()),
        };
        queue::put(&ctx.dirs, &repo.name, &entry).map_err(|e| e.to_string())
    });
    queued.map_err(|e| e.to_string())?
}
