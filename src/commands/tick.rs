//! `phantom_ci tick` (the default): check every configured repo once, run what moved, exit.

use clap::Args;

use crate::commands::Context;
use crate::config::{Config, Repo};
use crate::error::GitError;
use crate::error::{Error, ExitStatus};
use crate::git::{self, mirror};
use crate::runner::Console;
use crate::state::lock::RepoLock;
use crate::state::records::{self, Trigger};
use crate::state::{queue, recovery, seen, spool};
use crate::worker;

#[derive(Debug, Args, Default)]
pub struct TickArgs {
    /// Check only this repo (repeatable): one fetch, not one per configured repo; work already queued
    /// for others still runs
    #[arg(long = "repo", value_name = "NAME")]
    pub repos: Vec<String>,
}

pub fn run(args: TickArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let config = Config::load(&ctx.dirs.repo_toml())?;
    let checked = only(&config, &args.repos, ctx)?;
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
    for repo in checked {
        // A repo whose `path` or `run_as` user does not exist is not run; the others are.
        if !repo.problems.is_empty() {
            for problem in &repo.problems {
                eprintln!("phantom_ci: {problem}");
            }
            status = ExitStatus::RunFailed;
            continue;
        }
        if unmoved_and_settled(ctx, repo) {
            continue;
        }
        match recover_and_check(ctx, repo) {
            Ok(None) => {}
            // Not pushed yet: nothing to run, and nothing wrong (`add` says the same).
            Ok(Some(note)) => eprintln!("phantom_ci: note: {note}"),
            Err(message) => {
                eprintln!("phantom_ci: {}", super::about_repo(&repo.name, &message));
                status = ExitStatus::RunFailed;
            }
        }
    }
    let stdout = || Some(Console::stdout());
    let drained = worker::drain(&ctx.dirs, &config, &stdout);
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

/// The fast path for a repo that did not move: its branch tip, read from git's files, is the commit
/// the last hook or tick run started on, and every run of it has its final record. Then there is
/// nothing to recover and nothing to queue; what is queued already, the drain runs. Costs a ref and a
/// state file read, and one `stat`; anything it cannot tell this way takes the full path.
fn unmoved_and_settled(ctx: &Context, repo: &Repo) -> bool {
    let crate::config::Location::Local(path) = &repo.location else {
        return false; // a mirror is fetched first
    };
    git::refs::branch_tip_id(path, &repo.branch)
        .is_some_and(|tip| seen::get(&ctx.dirs, &repo.name).as_deref() == Some(tip.as_str()))
        && records::all_settled(&ctx.dirs, &repo.name)
}

/// The repos `tick` checks: every configured one, or those `--repo` names (each must be configured).
fn only<'a>(config: &'a Config, names: &[String], ctx: &Context) -> Result<Vec<&'a Repo>, Error> {
    if let Some(unknown) = names.iter().find(|n| config.get(n).is_none()) {
        return Err(Error::Usage(format!(
            "`--repo {}`: no such repo in `{}`; see the configured ones with `{}`",
            crate::describe::terminal(unknown),
            ctx.dirs.repo_toml().display(),
            ctx.suggest(&["list"])
        )));
    }
    Ok(config
        .repos
        .iter()
        .filter(|r| names.is_empty() || names.contains(&r.name))
        .collect())
}

/// Records a dead run of `repo` as aborted, then queues the branch tip if it moved since the last run
/// a hook or tick started (or if this is the first sight of the repo). A branch that does not exist
/// yet is a note, not an error: a fresh repository has none until its first push.
pub fn recover_and_check(ctx: &Context, repo: &Repo) -> Result<Option<String>, String> {
    if let Some(lock) =
        RepoLock::acquire(&ctx.dirs, &repo.name, false).map_err(|e| e.to_string())?
    {
        recovery::recover(&ctx.dirs, repo, &lock).map_err(|e| e.to_string())?;
    }
    if let Err(message) = mirror::update(&ctx.dirs, repo) {
        return match mirror::remote_has_branch(repo) {
            Some(false) => Ok(Some(not_pushed_yet(repo))),
            _ => Err(message),
        };
    }
    // The tip is read and queued in one step under the queue lock, like the hook does it.
    let queued = queue::with_lock(&ctx.dirs, &repo.name, || {
        let source = crate::runner::open_source(&ctx.dirs, repo)?;
        let tip = match git::branch_tip(&source, &repo.branch) {
            Ok(tip) => tip.to_string(),
            Err(GitError::NoBranch { .. }) => return Ok(Some(not_pushed_yet(repo))),
            Err(e) => return Err(format!("repo `{}`: {e}", repo.name)),
        };
        // Pending, or taken by a worker whose run is about to start (`seen` is set when it has).
        let already_queued = [
            queue::peek(&ctx.dirs, &repo.name),
            queue::peek_claimed(&ctx.dirs, &repo.name),
        ]
        .iter()
        .flatten()
        .any(|e| e.commit == tip);
        if already_queued || seen::get(&ctx.dirs, &repo.name).as_deref() == Some(tip.as_str()) {
            return Ok(None);
        }
        let entry = queue::Entry {
            branch: repo.branch.clone(),
            commit: tip,
            trigger: Trigger::Tick,
            queued_at: records::rfc3339(std::time::SystemTime::now()),
            waiter: None,
        };
        queue::put(&ctx.dirs, &repo.name, &entry)
            .map(|()| None)
            .map_err(|e| e.to_string())
    });
    queued.map_err(|e| e.to_string())?
}

/// The note for a repo whose branch has no commit yet.
pub fn not_pushed_yet(repo: &Repo) -> String {
    format!(
        "repo `{}` has no branch `{}` yet (`{}`); it runs once a commit is pushed to it",
        repo.name,
        crate::describe::terminal(&repo.branch),
        repo.location
    )
}
