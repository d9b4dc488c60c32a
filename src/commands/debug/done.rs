//! `debug --done`, and what `debug RUN` says of a failed run that kept no workspace.

use crate::commands::Context;
use crate::config::Repo;
use crate::error::{Error, ExitStatus};
use crate::state::kept::{self, Kept};
use crate::state::records::RunRecord;

/// `debug --done`: removes the kept workspace of `run` (or every kept workspace of the repo).
pub fn done(ctx: &Context, repo: &Repo, run: Option<u64>) -> Result<ExitStatus, Error> {
    let dirs = &ctx.dirs;
    let all = kept::list(dirs, &repo.name);
    let chosen: Vec<&Kept> = all
        .iter()
        .filter(|k| run.is_none_or(|n| k.run == n))
        .collect();
    if chosen.is_empty() {
        eprintln!(
            "phantom_ci: {} has no kept workspace: nothing to remove",
            match run {
                Some(n) => format!("run #{n} of `{}`", repo.name),
                None => format!("repo `{}`", repo.name),
            }
        );
        return Ok(ExitStatus::Success);
    }
    let mut status = ExitStatus::Success;
    for one in chosen {
        match kept::remove(dirs, &repo.name, one) {
            Ok(kept::Removed::Removed) => eprintln!(
                "phantom_ci: removed the kept workspace of `{}` #{}",
                repo.name, one.run
            ),
            Ok(kept::Removed::Pinned) => {
                eprintln!(
                    "phantom_ci: the kept workspace of `{}` #{} is in use by a live `debug` \
                     session: it stays (it goes once the session ends and it expired, or with \
                     `{}` then)",
                    repo.name,
                    one.run,
                    ctx.suggest(&["debug", &repo.name, &one.run.to_string(), "--done"])
                );
                status = ExitStatus::RunFailed;
            }
            Err(e) => {
                eprintln!(
                    "phantom_ci: cannot remove the kept workspace `{}`: {e}",
                    one.root.display()
                );
                status = ExitStatus::RunFailed;
            }
        }
    }
    Ok(status)
}

/// `debug RUN` of a run without a kept workspace: says so, and how to go on.
pub fn nothing_kept(ctx: &Context, repo: &Repo, record: &RunRecord) -> Error {
    let run = record.run.to_string();
    let why = if !kept::keeps(record.result) {
        format!("it ended `{}`", record.result.as_str())
    } else if repo.keep_failed.is_none() {
        "`keep_failed` is off for this repo".to_string()
    } else {
        "it expired or was removed (`keep_failed`, the newest 3 per repo)".to_string()
    };
    Error::Usage(format!(
        "run #{run} of `{}` has no kept workspace: {why}. Run the steps the failed one needs \
         again in a fresh checkout, then a shell: `{}`; or only a fresh checkout: `{}`",
        repo.name,
        ctx.suggest(&["debug", &repo.name, &run, "--replay"]),
        ctx.suggest(&["debug", &repo.name, &run, "--fresh"])
    ))
}
