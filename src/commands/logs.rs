//! `phantom_ci logs <REPO> [RUN] [--follow]`: print a run's log, or stream it while the run goes on.

use std::io::{ErrorKind, Write};

use clap::Args;

use crate::commands::Context;
use crate::commands::log_follow::{self, Ended, FollowError};
use crate::config::Config;
use crate::error::{Error, ExitStatus};
use crate::state::records::{self, RunResult};
use crate::state::{ad_hoc, queue};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The repo's name (see `phantom_ci status`), or `@<name>` for the ad-hoc runs of `run <path>`
    pub repo: String,
    /// The run's number [default: the newest run]
    pub run: Option<u64>,
    /// Stream the log as it grows until the run ends; exit 0 if it succeeded, else 1
    #[arg(long, short)]
    pub follow: bool,
}

pub fn run(args: LogsArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    // A repo's name, or `@<name>`: the records of ad-hoc runs (`run <path>`).
    ad_hoc::validate_record_name(&args.repo).map_err(Error::Usage)?;
    if args.follow && args.run.is_none() {
        wait_for_queued_run(ctx, &args.repo);
    }
    let numbers = records::list(&ctx.dirs, &args.repo);
    let (Some(first), Some(newest)) = (numbers.first(), numbers.last()) else {
        let configured =
            Config::load(&ctx.dirs.repo_toml()).is_ok_and(|c| c.get(&args.repo).is_some());
        return Err(Error::Usage(if configured {
            format!("repo `{}` has no runs yet", args.repo)
        } else {
            format!(
                "no runs of `{}`, and no such repo in Repo.toml; see `phantom_ci status`",
                args.repo
            )
        }));
    };
    let number = args.run.unwrap_or(*newest);
    if !numbers.contains(&number) {
        return Err(Error::Usage(format!(
            "repo `{}` has no run #{number} (its runs are #{first} to #{newest}; older ones are \
             pruned after `keep_runs`)",
            args.repo
        )));
    }
    let run = records::run_dir(&ctx.dirs, &args.repo, number);
    let mut stdout = std::io::stdout().lock();
    if !args.follow {
        // The log is printed whatever the record says; a record that cannot be read is said after it,
        // and makes the exit status 1.
        let record = records::peek(&run);
        let copied = match std::fs::File::open(run.log()) {
            Ok(mut log) => {
                match std::io::copy(&mut log, &mut stdout).and_then(|_| stdout.flush()) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
                    Err(e) => Err(Error::io("cannot copy", run.log(), e)),
                }
            }
            Err(e) => Err(Error::io("cannot read", run.log(), e)),
        };
        if let Err(unreadable) = record {
            if let Err(e) = copied {
                eprintln!("phantom_ci: {e}");
            }
            return Err(unreadable.into());
        }
        return copied.map(|()| ExitStatus::Success);
    }
    // A record that says `running` whose process is gone will be recorded `aborted` by the next
    // invocation; there is nothing more to follow.
    let alive = |_: &records::RunRecord| run.owner_alive().unwrap_or(true);
    let ended = log_follow::follow(&run, &mut stdout, &alive, log_follow::POLL);
    match ended {
        Ok(Ended::Finished(record)) if record.result == RunResult::Success => {
            Ok(ExitStatus::Success)
        }
        Ok(Ended::Finished(_)) => Ok(ExitStatus::RunFailed),
        Ok(Ended::Abandoned(record)) => {
            eprintln!(
                "phantom_ci: run #{} of `{}` is recorded as running, but its process is gone; the \
                 next `phantom_ci tick` or push records it as aborted",
                record.run, record.repo
            );
            Ok(ExitStatus::RunFailed)
        }
        // Whoever read the output went away (`logs --follow | head`): nothing left to do.
        Err(FollowError::Write(e)) if e.kind() == ErrorKind::BrokenPipe => Ok(ExitStatus::Success),
        Err(FollowError::Write(e)) => Err(Error::Other(format!("cannot write the log: {e}"))),
        Err(FollowError::Record(e)) => Err(e),
    }
}

/// `logs <repo> --follow` right after a push: the pushed commit may still wait in the queue (behind a
/// run in progress, or for the root `tick`). Wait until its run has started, so that it is the one
/// followed, not the previous one.
fn wait_for_queued_run(ctx: &Context, repo: &str) {
    let Some(entry) = queue::peek(&ctx.dirs, repo).or_else(|| queue::peek_claimed(&ctx.dirs, repo))
    else {
        return;
    };
    let newest = || records::list(&ctx.dirs, repo).last().copied();
    let before = newest();
    eprintln!(
        "phantom_ci: commit {} of `{repo}` is queued; waiting for its run to start",
        crate::describe::short(&entry.commit)
    );
    // After the worker takes the entry, its run needs a moment to get a number.
    let mut grace = 10;
    while newest() == before && grace > 0 {
        if !queue::is_pending(&ctx.dirs, repo) {
            grace -= 1;
        }
        std::thread::sleep(log_follow::POLL);
    }
}
