//! `phantom_ci tick` (the default): check every configured repo once, run what moved, exit.

use clap::Args;

use crate::commands::Context;
use crate::config::{Config, Repo};
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
            "{}",
            ctx.no_repos(
                ctx.suggest(&["add"]).placeholder("<PATH|URL> [BRANCH]"),
                &["tick"]
            )
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
            // No run to recover; a `debug` session that died is still ended, and kept workspaces
            // that expired go.
            for note in recovery::tidy_sessions_and_kept(&ctx.dirs, &repo.name) {
                eprintln!("phantom_ci: note: {note}");
            }
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
    for note in &drained.notes {
        eprintln!("phantom_ci: note: {note}");
    }
    for error in &drained.errors {
        eprintln!("phantom_ci: {error}");
    }
    if !drained.all_succeeded() {
        status = ExitStatus::RunFailed;
    }
    Ok(status)
}

/// The fast path for a repo that did not move: each of its branches' tip, read from git's files, is
/// the commit the last hook or tick run started on, and every run of it has its final record. Then
/// there is nothing to recover and nothing to queue; what is queued already, the drain runs. Costs a
/// ref and a state file read per branch, and one `stat`; anything it cannot tell this way (a pattern
/// in `target_branch`, a branch not pushed yet) takes the full path.
fn unmoved_and_settled(ctx: &Context, repo: &Repo) -> bool {
    let crate::config::Location::Local(path) = &repo.location else {
        return false; // a mirror is fetched first
    };
    let Some(names) = repo.branches.names() else {
        return false; // the refs are listed
    };
    names.iter().all(|branch| {
        git::refs::branch_tip_id(path, branch)
            .is_some_and(|tip| seen::is(&ctx.dirs, &repo.name, branch, first(repo, branch), &tip))
    }) && records::all_settled(&ctx.dirs, &repo.name)
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

/// Records a dead run of `repo` as aborted, then queues the tip of each of its branches that moved
/// since the last run a hook or tick started (or that this is the first sight of). A branch that does
/// not exist yet is a note, not an error: a fresh repository has none until its first push.
pub fn recover_and_check(ctx: &Context, repo: &Repo) -> Result<Option<String>, String> {
    if let Some(lock) =
        RepoLock::acquire(&ctx.dirs, &repo.name, false).map_err(|e| e.to_string())?
        && let Some(run) = recovery::recover(&ctx.dirs, repo, &lock).map_err(|e| e.to_string())?
    {
        eprintln!("phantom_ci: {}", recovery::recovered_note(&repo.name, run));
        for note in worker::after_recovery(&ctx.dirs, repo, run) {
            eprintln!("phantom_ci: {note}");
        }
    }
    if let Some(note) = fetch(ctx, repo)? {
        return Ok(Some(note));
    }
    // The tips are read and queued in one step under the queue lock, like the hook does it.
    let queued = queue::with_lock(&ctx.dirs, &repo.name, || {
        let source = crate::runner::open_source(&ctx.dirs, repo)?;
        let tips = git::branch_tips(&source, &repo.branches)
            .map_err(|e| format!("repo `{}`: {e}", repo.name))?;
        for note in not_utf8(repo, &git::branches_not_utf8(&source, &repo.branches)) {
            eprintln!("phantom_ci: note: {note}");
        }
        if tips.is_empty() {
            return Ok(Some(not_pushed_yet(repo, &repo.branches.to_string())));
        }
        for (branch, tip) in tips {
            let tip = tip.to_string();
            // Pending, or taken by a worker whose run is about to start (`seen` is set when it has).
            // Read in the order an entry moves (pending → claimed → seen, then released), without
            // the repo's lock: read the other way round, an entry taken between two reads is in
            // neither, and before its run starts is not seen either — and would be queued twice.
            let pending = queue::peek(&ctx.dirs, &repo.name, &branch);
            let claimed = queue::peek_claimed(&ctx.dirs, &repo.name).filter(|e| e.branch == branch);
            let already_queued = [pending, claimed].iter().flatten().any(|e| e.commit == tip);
            if already_queued
                || seen::is(&ctx.dirs, &repo.name, &branch, first(repo, &branch), &tip)
            {
                continue;
            }
            let entry = queue::Entry {
                branch,
                commit: tip,
                trigger: Trigger::Tick,
                queued_at: records::rfc3339(std::time::SystemTime::now()),
                waiter: None,
            };
            queue::put(&ctx.dirs, &repo.name, &entry).map_err(|e| e.to_string())?;
        }
        Ok(None)
    });
    queued.map_err(|e| e.to_string())?
}

/// Fetches the branches of a URL repo into its mirror: its one branch, or its list — the patterns as
/// patterns, the names the remote has (one `git ls-remote` first, so that a name not pushed yet does
/// not fail the fetch). A note when the remote has none of them yet.
fn fetch(ctx: &Context, repo: &Repo) -> Result<Option<String>, String> {
    if !matches!(repo.location, crate::config::Location::Url(_)) {
        return Ok(None);
    }
    if let Some(branch) = repo.branches.single() {
        return match mirror::update(&ctx.dirs, repo, &[branch]) {
            Ok(()) => Ok(None),
            Err(message) => match mirror::remote_has_branch(repo, branch) {
                Some(false) => Ok(Some(not_pushed_yet(repo, branch))),
                _ => Err(message),
            },
        };
    }
    let found = mirror::remote_branches(repo)?;
    if found.is_empty() {
        return Ok(Some(not_pushed_yet(repo, &repo.branches.to_string())));
    }
    // As many refspecs as the list has entries, however many branches a pattern matches.
    let refspecs: Vec<&str> = repo
        .branches
        .entries()
        .iter()
        .filter(|entry| entry.contains('*') || found.contains(entry))
        .map(String::as_str)
        .collect();
    mirror::update(&ctx.dirs, repo, &refspecs).map(|()| None)
}

/// Whether `branch` is the first name of `repo`'s `target_branch` (what an earlier version's `seen`
/// file is about).
fn first(repo: &Repo, branch: &str) -> bool {
    repo.branches.default_branch() == Some(branch)
}

/// At most this many branches with names that are not UTF-8 are named per repo (a push can make
/// thousands); the rest are counted.
const MAX_NOT_UTF8_NOTES: usize = 16;

/// The notes for branches of `repo` that match its `target_branch` but whose names (`names`) are not
/// UTF-8: phantom_ci cannot run them (a run's records, queue and environment name its branch as
/// text), and says so instead of passing over them silently.
pub fn not_utf8(repo: &Repo, names: &[Vec<u8>]) -> Vec<String> {
    let mut notes: Vec<String> = names
        .iter()
        .take(MAX_NOT_UTF8_NOTES)
        .map(|name| {
            format!(
                "repo `{}`: branch `{}` matches `target_branch` but does not run: its name is not \
                 UTF-8 (shown escaped); rename it to run it (`git branch -m`)",
                repo.name,
                crate::describe::escaped_bytes(name)
            )
        })
        .collect();
    if names.len() > MAX_NOT_UTF8_NOTES {
        notes.push(format!(
            "repo `{}`: and {} more branches whose names are not UTF-8",
            repo.name,
            names.len() - MAX_NOT_UTF8_NOTES
        ));
    }
    notes
}

/// The note for a repo whose branch (or none of whose branches) has a commit yet.
pub fn not_pushed_yet(repo: &Repo, branch: &str) -> String {
    format!(
        "repo `{}` has no branch `{}` yet (`{}`); it runs once a commit is pushed to it",
        repo.name,
        crate::describe::terminal(branch),
        repo.location
    )
}
