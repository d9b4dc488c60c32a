//! `phantom_ci logs <REPO> [RUN] [--follow] [--raw]`: print a run's log, or stream it while the run
//! goes on; on a terminal through the terminal filter, unless `--raw`.

use std::io::{ErrorKind, IsTerminal, Write};

use clap::Args;

use crate::commands::Context;
use crate::commands::log_follow::{self, Ended, FollowError};
use crate::config::{Config, ConfigError};
use crate::describe::escapes::{FilteredWriter, TerminalFilter};
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
    /// Print the log's bytes as recorded, escape sequences and all, even to a terminal (where
    /// otherwise only colours pass)
    #[arg(long)]
    pub raw: bool,
    /// Only the output of step N (`N.k` for a copy of a matrix step), exactly as it printed it
    #[arg(long, value_name = "N")]
    pub step: Option<String>,
}

pub fn run(args: LogsArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    // A repo's name, or `@<name>`: the records of ad-hoc runs (`run <path>`).
    ad_hoc::validate_record_name(&args.repo).map_err(Error::Usage)?;
    if args.follow && args.run.is_none() {
        wait_for_queued_run(ctx, &args.repo);
    }
    let numbers = records::list(&ctx.dirs, &args.repo);
    let (Some(first), Some(newest)) = (numbers.first(), numbers.last()) else {
        return Err(no_runs(ctx, &args.repo));
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
    let path = match &args.step {
        Some(step) => step_log(&run, step, args.follow)?,
        None => run.log(),
    };
    // A terminal gets the log as `run` showed it there: colours, and no other escape sequence.
    let stdout = std::io::stdout().lock();
    let mut stdout: Box<dyn Write> = if !args.raw && stdout.is_terminal() {
        Box::new(FilteredWriter::new(stdout, TerminalFilter::new()))
    } else {
        Box::new(stdout)
    };
    if !args.follow {
        // The log is printed whatever the record says; a record that cannot be read is said after it,
        // and makes the exit status 1.
        let record = records::peek(&run);
        let copied = match std::fs::File::open(&path) {
            // A step that printed nothing has no file (`step_log` checked that it ran).
            Err(e) if e.kind() == ErrorKind::NotFound && args.step.is_some() => Ok(()),
            Ok(mut log) => {
                match std::io::copy(&mut log, &mut stdout).and_then(|_| stdout.flush()) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
                    Err(e) => Err(Error::io("cannot copy", &path, e)),
                }
            }
            Err(e) => Err(Error::io("cannot read", &path, e)),
        };
        let record = match record {
            Ok(record) => record,
            Err(unreadable) => {
                if let Err(e) = copied {
                    eprintln!("phantom_ci: {e}");
                }
                return Err(unreadable.into());
            }
        };
        if let Some(record) = &record {
            say_what_is_missing(record);
        }
        return copied.map(|()| ExitStatus::Success);
    }
    // A record that says `running` whose process is gone will be recorded `aborted` by the next
    // invocation; there is nothing more to follow.
    let alive = |_: &records::RunRecord| run.owner_alive().unwrap_or(true);
    let ended = log_follow::follow_file(&run, &path, &mut *stdout, &alive, log_follow::POLL);
    if let Ok(Ended::Finished(record) | Ended::Abandoned(record)) = &ended {
        say_what_is_missing(record);
    }
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

/// After the log, on stderr: what it is missing, when the run could not write all of it.
fn say_what_is_missing(record: &records::RunRecord) {
    if let Some(lost) = &record.log_lost {
        eprintln!(
            "phantom_ci: note: this log of run #{} is incomplete: {}",
            record.run,
            crate::describe::terminal(&lost.describe())
        );
    }
}

/// The log of step `step` (`N` or `N.k`) of `run` — a path without a file when the step ended
/// without printing. A step that has no log is a usage error naming the steps that do, unless the run
/// still goes on and `follow` waits for the step to start.
fn step_log(run: &records::RunDir, step: &str, follow: bool) -> Result<std::path::PathBuf, Error> {
    let valid = match step.split_once('.') {
        Some((n, k)) => n.parse::<u64>().is_ok() && k.parse::<u32>().is_ok(),
        None => step.parse::<u64>().is_ok(),
    };
    if !valid || step.contains('+') {
        return Err(Error::Usage(format!(
            "`--step {}`: a step is its number, like `--step 3`, or `3.1` for a copy of a matrix \
             step",
            crate::describe::terminal(step)
        )));
    }
    let path = run.step_log(step);
    if path.is_file() {
        return Ok(path);
    }
    let record = records::peek(run).ok().flatten();
    if record
        .as_ref()
        .is_none_or(|r| r.result == RunResult::Running)
    {
        if follow {
            return Ok(path);
        }
        return Err(Error::Usage(format!(
            "step {step} of run #{} of `{}` has no output yet (it has not started, or the run has \
             no such step); `--follow` waits for it",
            run.number, run.repo
        )));
    }
    let steps = match record {
        Some(record) if !record.steps.is_empty() => record.steps,
        _ => records::journal_steps(run),
    };
    let why = match steps.iter().find(|s| s.id() == step) {
        Some(s) if s.result == records::StepResult::Skipped => "it was skipped".to_string(),
        // It ran and printed nothing: its log is empty, and has no file.
        Some(_) if run.path.join("steps").is_dir() => return Ok(path),
        Some(_) => "it has no log of its own (the run is older than step logs)".to_string(),
        None => {
            let ids: Vec<String> = steps.iter().map(|s| s.id()).collect();
            format!(
                "it has no such step (its steps: {})",
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                }
            )
        }
    };
    Err(Error::Usage(format!(
        "run #{} of `{}` has no log of step {step}: {why}",
        run.number, run.repo
    )))
}

/// Why `repo` shows no run: none yet, no such repo, or — the real cause, said first — the records or
/// `Repo.toml` cannot be read by this user.
fn no_runs(ctx: &Context, repo: &str) -> Error {
    if let Some(message) = super::records_unreadable(ctx, repo) {
        return Error::Usage(message);
    }
    match Config::load(&ctx.dirs.repo_toml()) {
        Ok(config) if config.get(repo).is_some() => {
            Error::Usage(format!("repo `{repo}` has no runs yet"))
        }
        Ok(_) => Error::Usage(format!(
            "no runs of `{repo}`, and no such repo in `{}`; see `{}`",
            ctx.dirs.repo_toml().display(),
            ctx.suggest(&["status"])
        )),
        Err(ConfigError::Read { path, source }) => Error::Usage(format!(
            "no runs of `{repo}` in `{}`, and `{}` cannot be read to tell whether it is configured: \
             {}{}",
            ctx.dirs.runs(repo).display(),
            path.display(),
            super::io_words(&source),
            super::as_the_service(&source)
        )),
        Err(e) => Error::Config(e),
    }
}

/// `logs <repo> --follow` right after a push: the pushed commit may still wait in the queue (behind a
/// run in progress, or for the root `tick`). Wait until its run has started, so that it is the one
/// followed, not the previous one.
fn wait_for_queued_run(ctx: &Context, repo: &str) {
    let pending = queue::pending_entries(&ctx.dirs, repo).pop();
    let from_claim = pending.is_none();
    let Some(entry) = pending.or_else(|| queue::peek_claimed(&ctx.dirs, repo)) else {
        return;
    };
    let newest = || records::list(&ctx.dirs, repo).last().copied();
    let before = newest();
    // A claimed entry whose run has started already (its worker may have died after that, leaving
    // the claim): that run is the one to follow, there is nothing to wait for.
    let started = before
        .and_then(|n| records::load(&ctx.dirs, repo, n).ok())
        .is_some_and(|run| run.commit == entry.commit);
    if from_claim && started {
        return;
    }
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
