//! `phantom_ci run <REPO>`: run a repo's workflow now, in the foreground.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::commands::Context;
use crate::config::{self, Config, Location, Repo};
use crate::error::{Error, ExitStatus, GitError};
use crate::git::{self, mirror};
use crate::runner::{self, Console, Request};
use crate::state::lock::RepoLock;
use crate::state::records::{RunResult, Trigger};
use crate::state::{ad_hoc, slots};
use crate::worker;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A repo name from Repo.toml, or the path of a local git repository
    pub repo: String,
    /// Run this branch instead of the repo's `target_branch`
    #[arg(long, value_name = "B")]
    pub branch: Option<String>,
    /// Run this exact revision (a commit id, tag, `HEAD~2`, …) instead of the branch tip
    #[arg(long, value_name = "REV")]
    pub commit: Option<String>,
    /// Keep the workspace after the run and print its path
    #[arg(long)]
    pub keep: bool,
    /// Run the steps as this user instead of the repo's `run_as`
    #[arg(long, value_name = "USER")]
    pub run_as: Option<String>,
    /// Post an ad-hoc run (a path not in Repo.toml) to the webhooks in .env, as a configured repo's
    /// would be; without it, ad-hoc runs notify nobody
    #[arg(long)]
    pub notify: bool,
}

pub fn run(args: RunArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let config = Config::load(&ctx.dirs.repo_toml())?;
    let mut repo = find_repo(ctx, &config, &args.repo, args.branch.as_deref())?;
    // A configured repo whose `path` or `run_as` user does not exist (`--run-as` replaces the latter).
    if let Some(problem) = repo
        .problems
        .iter()
        .find(|p| !(p.key == "run_as" && args.run_as.is_some()))
    {
        return Err(Error::Config(problem.to_error()));
    }
    let branch = match args.branch {
        Some(branch) => {
            config::validate_branch(&branch).map_err(Error::Usage)?;
            branch
        }
        None => repo.branches.default_branch().map(str::to_string).ok_or_else(|| {
            Error::Usage(format!(
                "repo `{}` runs only branch patterns (`{}`); say which branch to run with `--branch`",
                repo.name,
                crate::describe::terminal(&repo.branches.to_string())
            ))
        })?,
    };
    if let Some(user) = args.run_as {
        repo.run_as = Some(user);
    }
    if args.notify && ad_hoc::is_ad_hoc(&repo.name) {
        repo.notify = config::Notify::Always;
    }
    let not_pushed_yet = || {
        Error::Other(format!(
            "repo `{}` has no branch `{}` yet (nothing was pushed to it in `{}`): push a commit \
             to it first, or run another branch with `--branch`",
            repo.name,
            crate::describe::terminal(&branch),
            repo.location
        ))
    };
    if let Err(message) = mirror::update(&ctx.dirs, &repo, &[&branch]) {
        return Err(match mirror::remote_has_branch(&repo, &branch) {
            Some(false) => not_pushed_yet(),
            _ => Error::Other(message),
        });
    }
    let source = runner::open_source(&ctx.dirs, &repo).map_err(Error::Other)?;
    let commit = match &args.commit {
        Some(rev) => git::resolve_commit(&source, rev)?,
        None => git::branch_tip(&source, &branch).map_err(|e| match e {
            GitError::NoBranch { .. } => not_pushed_yet(),
            e => Error::Git(e),
        })?,
    };
    drop(source);
    let request = Request {
        branch,
        repo,
        commit,
        trigger: Trigger::Manual,
        keep_workspace: args.keep,
    };
    let lock = match RepoLock::acquire(&ctx.dirs, &request.repo.name, false)? {
        Some(lock) => lock,
        None => {
            eprintln!(
                "phantom_ci: a run of `{}` is in progress; waiting for it to end",
                request.repo.name
            );
            RepoLock::acquire(&ctx.dirs, &request.repo.name, true)?
                .ok_or_else(|| Error::Other("cannot lock the repo".into()))?
        }
    };
    // Its turn among the runs of every repo (`max_parallel_runs`), like any other run.
    let now = crate::state::records::rfc3339(std::time::SystemTime::now());
    let limit = config.parallel_runs();
    let mut waits = || {
        eprintln!(
            "phantom_ci: {limit} run(s) already going on (`max_parallel_runs`); waiting for a free slot"
        );
    };
    let slot = match slots::acquire(&ctx.dirs, limit, &now, &mut waits)? {
        Some(slot) => slot,
        None => {
            return Err(Error::Other(
                "told to stop while waiting for a free run slot (`max_parallel_runs`); nothing ran"
                    .into(),
            ));
        }
    };
    let finished = worker::execute(
        &ctx.dirs,
        &request,
        Some(Console::stdout()),
        &lock,
        &mut || {},
    )?;
    drop(slot);
    drop(lock);
    // A push that arrived during this run found the lock taken and left its work to the lock's holder.
    if let Err(e) = worker::hand_on(&ctx.dirs, &finished.record.repo) {
        eprintln!("phantom_ci: {e}; queued work waits for the next push or `tick`");
    }
    for note in &finished.notes {
        eprintln!("phantom_ci: {note}");
    }
    if ad_hoc::is_ad_hoc(&finished.record.repo) {
        let record = &finished.record;
        eprintln!(
            "phantom_ci: `{}` is not in Repo.toml: this ad-hoc run is recorded as `{}` #{} in \
             `{}`; see it again with `{} logs {} {}`",
            request.repo.location,
            record.repo,
            record.run,
            finished.log.parent().unwrap_or(&finished.log).display(),
            ctx.invocation(),
            record.repo,
            record.run
        );
    }
    Ok(match finished.record.result {
        RunResult::Success => ExitStatus::Success,
        _ => ExitStatus::RunFailed,
    })
}

/// A configured name; or a path, matched against the configured local paths, else run with defaults
/// as an ad-hoc run, recorded under `@<the directory's name>` (see [`ad_hoc`]).
fn find_repo(
    ctx: &Context,
    config: &Config,
    arg: &str,
    branch: Option<&str>,
) -> Result<Repo, Error> {
    let dirs = &ctx.dirs;
    if let Some(repo) = config.get(arg) {
        return Ok(repo.clone());
    }
    let path = Path::new(arg);
    let Ok(canonical) = path.canonicalize() else {
        return Err(Error::Usage(format!(
            "no repo `{}` in Repo.toml and no directory `{}`; see `{}`",
            crate::describe::terminal(arg),
            crate::describe::terminal(arg),
            ctx.suggest(&["list"])
        )));
    };
    // A configured path runs as its section: the one of that branch if there is one, else the first
    // (with `--branch` overriding its `target_branch`), so its settings (`run_as`, `sandbox`, …) apply.
    let same_path: Vec<&Repo> = config
        .repos
        .iter()
        .filter(|repo| {
            matches!(&repo.location, Location::Local(p)
                if p.canonicalize().is_ok_and(|p| p == canonical))
        })
        .collect();
    let configured = same_path
        .iter()
        .find(|repo| branch.is_none_or(|b| repo.branches.matches(b)))
        .or(same_path.first());
    if let Some(repo) = configured {
        return Ok((*repo).clone());
    }
    let source = git::open(&canonical)?;
    let branch = git::head_branch(&source).ok_or_else(|| {
        Error::Usage(format!(
            "`{}` has a detached HEAD; say which branch to run with --branch",
            canonical.display()
        ))
    })?;
    let dir_name = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = dir_name.strip_suffix(".git").unwrap_or(&dir_name);
    config::validate_repo_name(base).map_err(|e| {
        Error::Usage(format!(
            "{e}: the run records of `{}` are named after its directory; add it to Repo.toml \
             under a valid name with `phantom_ci add`",
            canonical.display()
        ))
    })?;
    // Never the records of a configured repo of the same name: ad-hoc runs have their own.
    let name = ad_hoc::name_for(dirs, base, &canonical)?;
    Ok(Repo::ad_hoc(name, PathBuf::from(&canonical), branch))
}
