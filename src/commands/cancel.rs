//! `phantom_ci cancel <REPO> [--queued]`: end the repo's running run; its result is `cancelled`
//! (SPEC §6).
//!
//! The request is a file in the run's directory ([`RunDir::request_cancel`], 0600), so only phantom_ci's
//! user or root can make it; the process running the run (its `owner` file) is then nudged with
//! SIGUSR1 and its step loop stops the step as for SIGTERM: SIGTERM to the step's process group,
//! SIGKILL after the grace period, then the run's cgroup and every orphan it adopted. The run ends as
//! usual — remaining steps `skipped`, workspace cleaned, notifications posted. `--queued` also drops
//! the commit waiting to run.

use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::commands::Context;
use crate::config::{self, Config};
use crate::describe::{short, terminal};
use crate::error::{Error, ExitStatus};
use crate::runner::step::KILL_GRACE;
use crate::state::queue;
use crate::state::records::{self, RunDir, RunResult};

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The repo's name in Repo.toml (see `phantom_ci status`)
    pub repo: String,
    /// Also drop the commit that waits to run (pushed while the run went on)
    #[arg(long)]
    pub queued: bool,
}

/// How many of a repo's newest runs are looked at for the one in progress.
const NEWEST: usize = 5;

pub fn run(args: CancelArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let name = args.repo;
    config::validate_repo_name(&name).map_err(Error::Usage)?;
    let file = ctx.dirs.repo_toml();
    let known = Config::load(&file)?.get(&name).is_some() || ctx.dirs.runs(&name).is_dir();
    if !known {
        return Err(Error::Usage(format!(
            "no repo `{name}` in `{}`; see `{}`",
            file.display(),
            ctx.suggest(&["status"])
        )));
    }
    let mut cancelled_something = false;
    if args.queued {
        for entry in queue::drop_pending(&ctx.dirs, &name)? {
            println!(
                "dropped the queued commit {} of `{name}` (branch `{}`); it will not run",
                short(&entry.commit),
                terminal(&entry.branch)
            );
            cancelled_something = true;
        }
    }
    let Some((run, owner)) = running(ctx, &name) else {
        if cancelled_something {
            return Ok(ExitStatus::Success);
        }
        let queued = queue::is_pending(&ctx.dirs, &name);
        eprintln!(
            "phantom_ci: repo `{name}` has no run in progress; nothing was cancelled{}",
            if queued {
                format!(
                    " (a commit is queued: `{}` drops it)",
                    ctx.suggest(&["cancel", &name, "--queued"])
                )
            } else {
                String::new()
            }
        );
        return Ok(ExitStatus::RunFailed);
    };
    run.request_cancel(&who()).map_err(|e| {
        Error::Other(format!(
            "cannot ask run #{} of `{name}` to stop: cannot write `{}`: {e}; run `phantom_ci \
             cancel` as phantom_ci's user or root",
            run.number,
            run.cancel_request().display()
        ))
    })?;
    // The nudge only hurries it: without it, the run sees the request within a second.
    let nudged = kill(Pid::from_raw(owner as i32), Signal::SIGUSR1);
    let deadline = Instant::now() + KILL_GRACE + Duration::from_secs(25);
    loop {
        match records::peek(&run) {
            Ok(Some(record)) if record.result != RunResult::Running => {
                let message = record.message.as_deref().map(terminal).unwrap_or_default();
                if record.result == RunResult::Cancelled {
                    println!("run #{} of `{name}`: {message}", run.number);
                    return Ok(ExitStatus::Success);
                }
                // It ended by itself before it saw the request.
                println!(
                    "run #{} of `{name}` ended `{}` before it saw the request: {message}",
                    run.number,
                    record.result.as_str()
                );
                return Ok(ExitStatus::RunFailed);
            }
            _ if run.live_owner().is_none() => {
                println!(
                    "run #{} of `{name}`: its process is gone; the next run or `{}` records it",
                    run.number,
                    ctx.suggest(&["tick"])
                );
                return Ok(ExitStatus::Success);
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            let how = match nudged {
                Ok(()) => String::new(),
                Err(e) => format!(" (cannot signal its process {owner}: {e})"),
            };
            println!(
                "asked run #{} of `{name}` to stop{how}; it has not ended yet: see `{}`",
                run.number,
                ctx.suggest(&["status"])
            );
            return Ok(ExitStatus::Success);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The run of `repo` in progress and the pid of the process running it.
fn running(ctx: &Context, repo: &str) -> Option<(RunDir, u32)> {
    records::list(&ctx.dirs, repo)
        .into_iter()
        .rev()
        .take(NEWEST)
        .map(|number| records::run_dir(&ctx.dirs, repo, number))
        .find_map(|run| {
            let record = records::peek(&run).ok()??;
            let owner = run.live_owner()?;
            (record.result == RunResult::Running).then_some((run, owner))
        })
}

/// Who cancels, for the run's message: the user name, or the uid.
fn who() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |user| user.name)
}
