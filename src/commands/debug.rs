//! `phantom_ci debug <REPO> [RUN] [--keep] [-- COMMAND…]` (SPEC §6): a workspace at a run's commit and
//! a shell — or COMMAND — started exactly as a step would be: through the step boundary, as the step
//! user, with the repo's limits, sandbox and cgroup, in the step environment of that run, in the
//! workspace. Nothing is recorded as a run; the workspace (`<data>/work/<repo>/debug-<pid>/`) is
//! removed at the end unless `--keep`. Its owner record ([`crate::state::sessions`]) lets the next
//! `tick` or `run` clean up after a session that was killed.
//!
//! With a terminal on stdin the shell gets a pseudo-terminal of its own, which phantom_ci relays to
//! the operator's (see [`crate::isolation::boundary`] for why never the operator's own); otherwise
//! COMMAND runs as a step does, stdin `/dev/null`, its output passed on to stdout.

use crate::isolation::spawn::StepChild;
use std::io::{IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use git2::Oid;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, User};

use crate::commands::Context;
use crate::config::Config;
use crate::describe::escapes::{FilteredWriter, TerminalFilter};
use crate::describe::{self, short};
use crate::error::{Error, ExitStatus};
use crate::git::workspace::Workspace;
use crate::isolation::boundary::Boundary;
use crate::isolation::cgroup::RunCgroup;
use crate::isolation::privilege::{self, StepUser};
use crate::isolation::pty::{Pty, RawMode};
use crate::isolation::signature::{self, Refusal};
use crate::isolation::{reaper, signals};
use crate::runner::{self, env};
use crate::state::records::{self, RunRecord};
use crate::state::{recovery, sessions};

/// How long the shell's processes have between SIGTERM and SIGKILL when phantom_ci is told to stop.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How often, at most, the relay looks at the child when nothing happens.
const TICK: u16 = 100;

#[derive(Debug, Args)]
pub struct DebugArgs {
    /// A repo name from Repo.toml
    pub repo: String,
    /// The run whose commit, branch and `PHANTOM_CI_*` to use [default: the repo's last run]
    pub run: Option<u64>,
    /// Keep the workspace afterwards and print its path
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
    let interactive = std::io::stdin().is_terminal();
    if args.command.is_empty() && !interactive {
        return Err(Error::Usage(format!(
            "`debug` without a command starts a shell, which needs a terminal on stdin: give the \
             command after `--` (`{}`)",
            ctx.suggest(&["debug", &repo.name])
                .arg("--")
                .placeholder("COMMAND…")
        )));
    }
    let record = the_run(ctx, &repo.name, args.run)?;
    // What `run` refuses, `debug` refuses: root without `run_as`, another user when not root, …
    let user = privilege::step_user(&repo.name, repo.run_as.as_deref()).map_err(Error::Other)?;
    signals::install()
        .and_then(|()| reaper::become_subreaper())
        .map_err(Error::Other)?;
    let source = runner::open_source(dirs, &repo).map_err(Error::Other)?;
    let commit = Oid::from_str(&record.commit)
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
        })?;
    if repo.require_signed {
        let refused = match &repo.allowed_signers {
            None => Some(format!(
                "repo `{}` has `require_signed = true` but no `allowed_signers`",
                repo.name
            )),
            Some(allowed) => match signature::verify(&source, commit, allowed) {
                Ok(_) => None,
                Err(Refusal::Rejected(message) | Refusal::Error(message)) => Some(message),
            },
        };
        if let Some(why) = refused {
            return Err(Error::Other(format!(
                "`debug` does not run commit {} of `{}`: {why}",
                short(&record.commit),
                repo.name
            )));
        }
    }

    // A session of a process that died with this one's pid would be in the way.
    recovery::end_dead_sessions(dirs, &repo.name);
    let workspace = Workspace::create_named(
        dirs,
        &repo.name,
        &sessions::dir_name(std::process::id()),
        &user,
    )
    .map_err(Error::Other)?;
    // Before anything runs: a session that dies is cleaned up by the next `tick` or `run`.
    if let Err(e) = sessions::write(&workspace.root, args.keep) {
        let _ = workspace.remove();
        return Err(e);
    }
    let prepared = workspace
        .checkout(&source, commit, &repo, Instant::now() + repo.timeout)
        .and_then(|()| workspace.hand_over(&user))
        .and_then(|()| runner::step_sandbox(dirs, &repo, &workspace, &source, &user, None));
    drop(source);
    let outcome = match prepared {
        Err(message) => Err(Error::Other(message)),
        Ok(sandbox) => {
            let previous = records::list(dirs, &repo.name)
                .into_iter()
                .rev()
                .filter(|n| *n < record.run)
                .find_map(|n| records::load(dirs, &repo.name, n).ok());
            let env = env::step_env(
                &repo,
                &user,
                &env::RunVars {
                    run: record.run,
                    branch: &record.branch,
                    commit: &record.commit,
                    previous_commit: previous.as_ref().map(|p| p.commit.as_str()),
                    workspace: &workspace.tree,
                    artifacts: &workspace.artifacts,
                    // A debug session holds no lock of the repo: it never touches the build cache
                    // that a run may be using.
                    cache: None,
                },
            );
            let argv = if args.command.is_empty() {
                vec![shell_of(&user)]
            } else {
                args.command.clone()
            };
            eprintln!(
                "phantom_ci: {} of `{}` #{} ({} at {}) as `{}`{}, in `{}`{}",
                if args.command.is_empty() {
                    "a shell in the steps' conditions"
                } else {
                    "the command in the steps' conditions"
                },
                repo.name,
                record.run,
                describe::terminal(&record.branch),
                short(&record.commit),
                user.name,
                if sandbox.is_some() {
                    ", in the sandbox"
                } else {
                    ""
                },
                workspace.tree.display(),
                if args.keep {
                    ""
                } else {
                    "; it is removed at the end (`--keep` keeps it)"
                }
            );
            let limits = privilege::rlimits(&repo.limits);
            let cgroup = RunCgroup::create_for_debug(&dirs.data, &repo.name, std::process::id());
            let boundary = Boundary {
                user: &user,
                limits: &limits,
                sandbox: sandbox.as_ref(),
                cgroup: cgroup.as_ref(),
            };
            let session = Session {
                boundary: &boundary,
                argv: &argv,
                cwd: &workspace.tree,
                env: &env,
            };
            let status = if interactive {
                session.in_terminal(&user)
            } else {
                session.piped()
            };
            // Nothing of the session outlives it.
            if let Some(cgroup) = &cgroup {
                cgroup.kill();
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
            status.map_err(|e| {
                Error::Other(format!(
                    "cannot start `{}` in the steps' conditions: {e}",
                    describe::terminal(&argv[0])
                ))
            })
        }
    };
    if let Err(message) = workspace.take_back() {
        eprintln!("phantom_ci: {message}");
    }
    if args.keep {
        sessions::forget(&workspace.root);
        eprintln!("phantom_ci: workspace kept at {}", workspace.tree.display());
    } else if let Err(e) = workspace.remove() {
        eprintln!(
            "phantom_ci: cannot remove the workspace `{}`: {e}; remove it by hand",
            workspace.root.display()
        );
    }
    outcome
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

/// The step user's login shell, or `/bin/sh` when it has none that works (`nobody`'s is `nologin`).
fn shell_of(user: &StepUser) -> String {
    let fallback = "/bin/sh".to_string();
    let Ok(Some(entry)) = User::from_uid(user.uid) else {
        return fallback;
    };
    let shell = entry.shell;
    let name = shell.file_name().map(|n| n.to_string_lossy().into_owned());
    let refuses = matches!(name.as_deref(), None | Some("nologin" | "false"));
    if refuses || !shell.is_file() {
        return fallback;
    }
    shell.to_string_lossy().into_owned()
}

/// One process started through the boundary, and phantom_ci relaying for it.
struct Session<'a> {
    boundary: &'a Boundary<'a>,
    argv: &'a [String],
    cwd: &'a Path,
    env: &'a [(String, String)],
}

impl Session<'_> {
    /// With a pty of its own; the operator's terminal in raw mode meanwhile, its keys relayed.
    fn in_terminal(&self, user: &StepUser) -> std::io::Result<ExitStatus> {
        let stdin = std::io::stdin();
        let (pty, slave) = Pty::open(user, stdin.as_fd()).map_err(std::io::Error::other)?;
        let mut child = self
            .boundary
            .spawn_in_terminal(self.argv, self.cwd, self.env, &slave)?;
        // The shell's copies only: the master reports EIO once its processes are gone.
        drop(slave);
        let raw = RawMode::enter(stdin.as_fd());
        let master = pty.master.as_fd();
        let status = relay(
            &mut child,
            master,
            Some((stdin.as_fd(), master)),
            &mut || {
                pty.copy_size(stdin.as_fd());
            },
        );
        drop(raw);
        status
    }

    /// As a step: stdin `/dev/null`, stdout and stderr one pipe, passed on to phantom_ci's stdout.
    fn piped(&self) -> std::io::Result<ExitStatus> {
        let (reader, writer) = std::io::pipe()?;
        let mut child = self
            .boundary
            .spawn(self.argv, self.cwd, self.env, &writer)?;
        drop(writer);
        relay(&mut child, reader.as_fd(), None, &mut || {})
    }
}

/// Passes `output` on to stdout — and, with `input`, stdin on to the pty's master — until `child`
/// exits, then its exit status (128 + n for a signal); `every_tick` is called each round (the
/// window size follows the operator's terminal). SIGTERM, SIGINT or SIGHUP to phantom_ci end
/// the child's process group (SIGTERM, then SIGKILL after [`KILL_GRACE`] or a second signal).
fn relay(
    child: &mut StepChild,
    output: BorrowedFd,
    input: Option<(BorrowedFd, BorrowedFd)>,
    every_tick: &mut dyn FnMut(),
) -> std::io::Result<ExitStatus> {
    let pgid = Pid::from_raw(child.id() as i32);
    // What reaches the operator's terminal is filtered: from the session's own pty everything but
    // strings (OSC, DCS, …) and C1 controls, so that editors and pagers work; from a pipe, as a run's
    // console (colours only). A pipe or a file gets every byte.
    let stdout = std::io::stdout().lock();
    let mut stdout: Box<dyn Write> = if input.is_some() {
        Box::new(FilteredWriter::new(stdout, TerminalFilter::for_pty()))
    } else if stdout.is_terminal() {
        Box::new(FilteredWriter::new(stdout, TerminalFilter::new()))
    } else {
        Box::new(stdout)
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut output_open = true;
    let mut input_open = input.is_some();
    let mut term_sent: Option<Instant> = None;
    let mut kill_sent = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        every_tick();
        if signals::requested().is_some() {
            let now = Instant::now();
            let sent = *term_sent.get_or_insert_with(|| {
                let _ = killpg(pgid, Signal::SIGTERM);
                now
            });
            if !kill_sent && (now >= sent + KILL_GRACE || signals::insisted()) {
                let _ = killpg(pgid, Signal::SIGKILL);
                kill_sent = true;
            }
        }
        let mut fds = Vec::with_capacity(3);
        if output_open {
            fds.push(PollFd::new(output, PollFlags::POLLIN));
        }
        if let Some((stdin, master)) = input {
            if pending.is_empty() && input_open {
                fds.push(PollFd::new(stdin, PollFlags::POLLIN));
            } else if !pending.is_empty() {
                fds.push(PollFd::new(master, PollFlags::POLLOUT));
            }
        }
        match poll(&mut fds, PollTimeout::from(TICK)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut ready = ready.into_iter();
        if output_open && ready.next() == Some(true) {
            output_open = pass_on(output, &mut buf, &mut stdout);
        }
        if let Some((stdin, master)) = input
            && ready.next() == Some(true)
        {
            if pending.is_empty() {
                match nix::unistd::read(stdin, &mut buf) {
                    Ok(0) | Err(Errno::EIO) => input_open = false,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            } else {
                match nix::unistd::write(master, &pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(Errno::EAGAIN | Errno::EINTR) => {}
                    // The pty is gone: what the operator typed has nowhere to go.
                    Err(_) => pending.clear(),
                }
            }
        }
    };
    reaper::finished(child.id());
    // What is already written, a bounded amount: a process that never stops does not hold us here.
    for _ in 0..64 {
        let mut fds = [PollFd::new(output, PollFlags::POLLIN)];
        if !output_open || !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
            break;
        }
        output_open = pass_on(output, &mut buf, &mut stdout);
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = stdout.flush();
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Passed(u8::try_from(code).unwrap_or(u8::MAX)),
        (None, Some(signal)) => ExitStatus::Passed(u8::try_from(128 + signal).unwrap_or(u8::MAX)),
        (None, None) => ExitStatus::RunFailed,
    })
}

/// Copies one chunk of `from` to `to`; whether `from` is still open.
fn pass_on(from: BorrowedFd, buf: &mut [u8], to: &mut impl Write) -> bool {
    match nix::unistd::read(from, buf) {
        Ok(0) | Err(Errno::EIO) => false,
        Ok(n) => {
            // A console that went away does not end the session: its output is dropped.
            let _ = to.write_all(&buf[..n]).and_then(|()| to.flush());
            true
        }
        Err(Errno::EAGAIN | Errno::EINTR) => true,
        Err(_) => false,
    }
}
