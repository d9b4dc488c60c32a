//! `phantom_ci debug <REPO> [RUN] [--step N] [--replay] [--keep] [-- COMMAND…]` (SPEC §6, §9; issue
//! 20): a shell — or COMMAND — started exactly as a step would be: through the step boundary, as the
//! step user, with the repo's limits, sandbox and cgroup, in the environment of one step of that run
//! (its workflow and matrix variables included: [`env::for_step`]). Nothing is recorded as a run.
//!
//! Where: the run's **kept workspace** (`keep_failed`, [`crate::state::kept`]), as the failing step
//! left it, in the conditions of the first step that failed (or `--step`); with `--replay`, a fresh
//! checkout at the run's commit where the steps the failed one needs run again first; without RUN
//! and without a kept workspace of the last run, a fresh checkout. A fresh workspace
//! (`<data>/work/<repo>/debug-<pid>/`) is removed at the end unless `--keep`. Each session has an
//! owner record ([`crate::state::sessions`]) so that the next `tick` or `run` cleans up after one
//! that was killed; a session in a kept workspace pins it ([`kept::Pin`]) and holds no lock of the
//! repo. The repo's build cache is bound read-only in the sandbox, and not mounted without one.
//!
//! With a terminal on stdin the shell gets a pseudo-terminal of its own, with the operator's `TERM`
//! and window size, which phantom_ci relays to the operator's (see [`crate::isolation::boundary`]
//! for why never the operator's own); otherwise COMMAND runs as a step does, stdin `/dev/null`, its
//! output passed on to stdout.

mod done;
mod session;
mod steps;
mod workspace;

use std::io::IsTerminal;

use clap::Args;
use git2::{Oid, Repository};
use nix::unistd::Uid;

use crate::commands::Context;
use crate::config::workflow::Step;
use crate::config::{Config, Repo, Sandbox};
use crate::describe::{self, short};
use crate::error::{Error, ExitStatus};
use crate::isolation::boundary::Boundary;
use crate::isolation::cgroup::RunCgroup;
use crate::isolation::privilege::{self, StepUser};
use crate::isolation::sandbox::Sandbox as BwrapSandbox;
use crate::isolation::signature::{self, Refusal};
use crate::isolation::{reaper, signals};
use crate::runner::{self, env};
use crate::state::kept;
use crate::state::records::{self, RunRecord};
use crate::state::recovery;
use session::Session;
use workspace::{Place, Prepared};

#[derive(Debug, Args)]
pub struct DebugArgs {
    /// A repo name from Repo.toml
    pub repo: String,
    /// The run to debug [default: the repo's last run]
    pub run: Option<u64>,
    /// The step whose conditions to take, `N` or `N.k` [default: the first step that failed]
    #[arg(long, value_name = "N")]
    pub step: Option<String>,
    /// A fresh checkout at the run's commit where the steps the failed one needs run again first
    #[arg(long, conflicts_with_all = ["fresh", "done"])]
    pub replay: bool,
    /// A fresh checkout at the run's commit, even where the run's workspace is kept
    #[arg(long, conflicts_with = "done")]
    pub fresh: bool,
    /// Remove the run's kept workspace (without RUN: every kept workspace of the repo)
    #[arg(long, conflicts_with_all = ["keep", "step", "command"])]
    pub done: bool,
    /// Keep a fresh workspace afterwards and print its path
    #[arg(long)]
    pub keep: bool,
    /// What to run instead of the step user's shell (after `--`)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub fn run(args: DebugArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let dirs = &ctx.dirs;
    let config = Config::load(&dirs.repo_toml())?;
    let repo = config.get(&args.repo).cloned().ok_or_else(|| {
        Error::Usage(format!(
            "no repo `{}` in Repo.toml; see `{}`",
            describe::terminal(&args.repo),
            ctx.suggest(&["list"])
        ))
    })?;
    if let Some(problem) = repo.problems.first() {
        return Err(Error::Config(problem.to_error()));
    }
    // Sessions that died and kept workspaces that expired go first, as a `tick` does it.
    for note in recovery::tidy_sessions_and_kept(dirs, &repo.name) {
        eprintln!("phantom_ci: note: {note}");
    }
    if args.done {
        return done::done(ctx, &repo, args.run);
    }
    let interactive = std::io::stdin().is_terminal();
    if args.command.is_empty() && !interactive {
        let mut suggestion = ctx.suggest(&["debug", &repo.name]);
        if let Some(run) = args.run {
            suggestion = suggestion.arg(run.to_string());
        }
        return Err(Error::Usage(format!(
            "`debug` without a command starts a shell, which needs a terminal on stdin: give the \
             command after `--` (`{}`)",
            suggestion.arg("--").placeholder("COMMAND…")
        )));
    }
    let record = the_run(ctx, &repo.name, args.run)?;
    // What `run` refuses, `debug` refuses: root without `run_as`, another user when not root, …
    let user = privilege::step_user(&repo.name, repo.run_as.as_deref()).map_err(Error::Other)?;
    signals::install()
        .and_then(|()| reaper::become_subreaper())
        .map_err(Error::Other)?;
    let source = runner::open_source(dirs, &repo).map_err(Error::Other)?;
    let commit = commit_of(&source, &repo, &record)?;
    check_signature(&source, &repo, &record, commit)?;

    let kept = kept::find(dirs, &repo.name, record.run).filter(|_| !args.replay && !args.fresh);
    // A failed run that kept nothing: say so rather than open a checkout where nothing failed yet.
    if kept.is_none()
        && !args.replay
        && !args.fresh
        && args.run.is_some()
        && kept::keeps(record.result)
    {
        return Err(done::nothing_kept(ctx, &repo, &record));
    }
    let workflow = runner::load_workflow(&repo, &source, commit, &record.branch);
    let target = match (&workflow, &args.step) {
        (Ok(workflow), wanted) => {
            steps::choose(workflow, &record, wanted.as_deref()).map_err(Error::Usage)?
        }
        (Err(message), Some(_)) => return Err(Error::Other(message.clone())),
        (Err(_), None) => None,
    };
    let replayed = match (&workflow, target) {
        (Ok(workflow), Some(target)) if args.replay => steps::replayed(workflow, target),
        _ if args.replay => {
            return Err(Error::Usage(format!(
                "run #{} of `{}` has no failed step whose `needs` could run again: name the step \
                 with `--step N`",
                record.run, repo.name
            )));
        }
        _ => Vec::new(),
    };
    let place = match kept {
        Some(kept) => {
            let pin = kept::Pin::take(&kept).map_err(Error::Other)?;
            Place::Kept { kept, pin }
        }
        None => Place::Fresh {
            replay: args.replay,
        },
    };
    let prepared = Prepared::new(ctx, &repo, &user, &source, commit, &place, args.keep)?;
    drop(source);
    let outcome = prepared
        .sandbox
        .as_ref()
        .map_err(|e| Error::Other(e.clone()))
        .and_then(|sandbox| {
            let plan = Plan {
                repo: &repo,
                record: &record,
                user: &user,
                workflow_env: workflow.as_ref().map(|w| w.env.as_slice()).unwrap_or(&[]),
                target,
                replayed: &replayed,
                interactive,
                command: &args.command,
                previous_commit: records::list(&ctx.dirs, &repo.name)
                    .into_iter()
                    .rev()
                    .filter(|n| *n < record.run)
                    .find_map(|n| records::load(&ctx.dirs, &repo.name, n).ok())
                    .map(|p| p.commit),
            };
            plan.carry_out(ctx, &prepared, sandbox.as_ref(), &place, args.fresh)
        });
    prepared.finish(place, args.keep);
    outcome
}

/// What a session runs, and in which step's conditions.
struct Plan<'a> {
    repo: &'a Repo,
    record: &'a RunRecord,
    user: &'a StepUser,
    workflow_env: &'a [(String, String)],
    /// The step whose conditions the session takes; `None`: the run's (no step failed).
    target: Option<&'a Step>,
    /// With `--replay`: the steps to run again first.
    replayed: &'a [&'a Step],
    interactive: bool,
    command: &'a [String],
    /// The commit of the repo's run before `record` (`PHANTOM_CI_PREVIOUS_COMMIT`), looked up once.
    previous_commit: Option<String>,
}

impl Plan<'_> {
    /// The environment of `step` (or of the run's steps), for this session's workspace.
    fn env(&self, prepared: &Prepared, step: Option<&Step>) -> Vec<(String, String)> {
        let record = self.record;
        let vars = env::RunVars {
            run: record.run,
            branch: &record.branch,
            commit: &record.commit,
            previous_commit: self.previous_commit.as_deref(),
            workspace: &prepared.workspace.tree,
            artifacts: &prepared.workspace.artifacts,
            cache: prepared.cache.as_deref(),
        };
        match step {
            Some(step) => env::for_step(self.repo, self.user, &vars, self.workflow_env, step),
            None => env::step_env(self.repo, self.user, &vars),
        }
    }

    fn carry_out(
        &self,
        ctx: &Context,
        prepared: &Prepared,
        sandbox: Option<&BwrapSandbox>,
        place: &Place,
        fresh: bool,
    ) -> Result<ExitStatus, Error> {
        let repo = self.repo;
        let mut env = self.env(prepared, self.target);
        if self.interactive
            && let Some(term) = session::operator_term()
        {
            env.retain(|(name, _)| name != "TERM");
            env.push(("TERM".into(), term));
        }
        let argv = if self.command.is_empty() {
            session::shell_env(&mut env, &repo.name);
            session::shell_argv(self.user)
        } else {
            self.command.to_vec()
        };
        eprintln!(
            "phantom_ci: {}",
            self.first_line(prepared, sandbox.is_some(), place, fresh)
        );
        let limits = privilege::rlimits(&repo.limits);
        let cgroup = RunCgroup::create_for_debug(&ctx.dirs.data, &repo.name, std::process::id());
        let boundary = Boundary {
            user: self.user,
            limits: &limits,
            sandbox,
            cgroup: cgroup.as_ref(),
            read_only: prepared.cache.as_deref().filter(|_| sandbox.is_none()),
            mount_ns: None,
        };
        let status = self
            .replay(prepared, &boundary)
            .and_then(|replayed| match replayed {
                Some(failed) => Ok(failed),
                None => {
                    let session = Session {
                        boundary: &boundary,
                        argv: &argv,
                        cwd: &prepared.workspace.tree,
                        env: &env,
                    };
                    if self.interactive {
                        session.in_terminal(self.user)
                    } else {
                        session.piped()
                    }
                    .map_err(|e| {
                        format!(
                            "cannot start `{}` in the steps' conditions: {e}",
                            describe::terminal(&argv[0])
                        )
                    })
                }
            });
        // Nothing of the session outlives it.
        if let Some(cgroup) = &cgroup {
            cgroup.kill();
        }
        if self.interactive {
            // phantom_ci's own word, after everything the session's processes printed.
            eprintln!("phantom_ci: the debug session of `{}` ended", repo.name);
        }
        let survivors = reaper::kill_orphans();
        if let Some(Err(message)) = cgroup.map(RunCgroup::remove) {
            eprintln!("phantom_ci: {message}");
        }
        if !survivors.is_empty() {
            eprintln!(
                "phantom_ci: {} process(es) of the session could not be killed: {survivors:?}",
                survivors.len()
            );
        }
        status.map_err(Error::Other)
    }

    /// Runs the replayed steps one at a time, their output on stdout; the status of the first that
    /// fails, which ends the session there.
    fn replay(
        &self,
        prepared: &Prepared,
        boundary: &Boundary,
    ) -> Result<Option<ExitStatus>, String> {
        for step in self.replayed {
            eprintln!("phantom_ci: replay {}", step.label());
            let env = self.env(prepared, Some(step));
            let session = Session {
                boundary,
                argv: &step.argv,
                cwd: &prepared.workspace.tree,
                env: &env,
            };
            let status = session.piped().map_err(|e| {
                format!(
                    "cannot start step [{}] of the replay (`{}`): {e}",
                    step.id(),
                    describe::terminal(&step.argv[0])
                )
            })?;
            if status != ExitStatus::Passed(0) {
                eprintln!(
                    "phantom_ci: step [{}] failed again in the replay ({}): stopped there, before \
                     the {}; its output is above",
                    step.id(),
                    match status {
                        ExitStatus::Passed(code) => format!("exit status {code}"),
                        _ => "no exit status".to_string(),
                    },
                    if self.command.is_empty() {
                        "shell"
                    } else {
                        "command"
                    }
                );
                return Ok(Some(status));
            }
            if signals::requested().is_some() {
                return Ok(Some(ExitStatus::RunFailed));
            }
        }
        Ok(None)
    }

    /// The line that says which workspace and which step: `a shell in the kept workspace of `app`
    /// #3 (…), in the conditions of step [1] …`.
    fn first_line(
        &self,
        prepared: &Prepared,
        sandboxed: bool,
        place: &Place,
        fresh: bool,
    ) -> String {
        let record = self.record;
        let what = if self.command.is_empty() {
            "a shell"
        } else {
            "the command"
        };
        let run = format!(
            "`{}` #{} ({} at {})",
            self.repo.name,
            record.run,
            describe::terminal(&record.branch),
            short(&record.commit)
        );
        let place_words = match place {
            Place::Kept { kept, .. } => format!(
                "in the kept workspace of {run}, as the run left it (kept until {})",
                humantime::format_rfc3339_seconds(kept.until)
            ),
            Place::Fresh { replay: true } => format!(
                "in a fresh checkout of {run}, after the replay of {}",
                match self.replayed {
                    [] => "no step (the step needs none)".to_string(),
                    steps => format!(
                        "step{} {}",
                        if steps.len() == 1 { "" } else { "s" },
                        steps
                            .iter()
                            .map(|s| format!("[{}]", s.id()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            ),
            Place::Fresh { replay: false } => format!(
                "in a fresh checkout of {run}{}",
                if kept::keeps(record.result) && !fresh {
                    " (the run kept no workspace)"
                } else {
                    ""
                }
            ),
        };
        let step = match self.target {
            Some(step) => format!("in the conditions of step {}", step.label()),
            None => "in the steps' conditions".to_string(),
        };
        let mut line = format!(
            "{what} {place_words}, {step}, as `{}`{}, in `{}`",
            self.user.name,
            if sandboxed { ", in the sandbox" } else { "" },
            prepared.workspace.tree.display()
        );
        if self.repo.cache {
            line.push_str(if prepared.cache.is_some() {
                "; the build cache is mounted read-only"
            } else if self.repo.sandbox == Sandbox::None && !Uid::effective().is_root() {
                "; the build cache is not mounted (without the sandbox only root can mount it \
                 read-only)"
            } else {
                "; the build cache is empty"
            });
        }
        if let Place::Fresh { .. } = place {
            // `--keep` is said at the end; without it the fresh workspace goes.
            line.push_str("; it is removed at the end (`--keep` keeps it)");
        }
        line
    }
}

/// The run's commit, which the repository must still have.
fn commit_of(source: &Repository, repo: &Repo, record: &RunRecord) -> Result<Oid, Error> {
    Oid::from_str(&record.commit)
        .ok()
        .filter(|oid| source.find_commit(*oid).is_ok())
        .ok_or_else(|| {
            Error::Other(format!(
                "run #{} of `{}` is of commit `{}`, which its repository `{}` no longer has",
                record.run,
                repo.name,
                describe::terminal(&record.commit),
                repo.location
            ))
        })
}

/// With `require_signed`, `debug` runs only what `run` would.
fn check_signature(
    source: &Repository,
    repo: &Repo,
    record: &RunRecord,
    commit: Oid,
) -> Result<(), Error> {
    if !repo.require_signed {
        return Ok(());
    }
    let refused = match &repo.allowed_signers {
        None => Some(format!(
            "repo `{}` has `require_signed = true` but no `allowed_signers`",
            repo.name
        )),
        Some(allowed) => match signature::verify(source, commit, allowed) {
            Ok(_) => None,
            Err(Refusal::Rejected(message) | Refusal::Error(message)) => Some(message),
        },
    };
    match refused {
        None => Ok(()),
        Some(why) => Err(Error::Other(format!(
            "`debug` does not run commit {} of `{}`: {why}",
            short(&record.commit),
            repo.name
        ))),
    }
}

/// The record of run `number` of `repo`, or of its last run.
fn the_run(ctx: &Context, repo: &str, number: Option<u64>) -> Result<RunRecord, Error> {
    let dirs = &ctx.dirs;
    match number {
        Some(number) => records::load(dirs, repo, number).map_err(|e| {
            let known = records::list(dirs, repo);
            if known.contains(&number) {
                Error::Other(e.to_string())
            } else {
                Error::Usage(format!(
                    "repo `{repo}` has no run #{number} (its runs: {}); see `{}`",
                    describe_runs(&known),
                    ctx.suggest(&["status"])
                ))
            }
        }),
        None => match records::newest(dirs, repo) {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Err(Error::Usage(format!(
                "repo `{repo}` has no runs yet, so there is no commit to debug: run it first \
                 (`{}`), then debug that run",
                ctx.suggest(&["run", repo])
            ))),
            Err(e) => Err(Error::Other(e.to_string())),
        },
    }
}

fn describe_runs(runs: &[u64]) -> String {
    match (runs.first(), runs.last()) {
        (Some(first), Some(last)) if first == last => format!("#{first}"),
        (Some(first), Some(last)) => format!("#{first} to #{last}"),
        _ => "none".into(),
    }
}
