//! One step: started through the step boundary ([`crate::isolation::boundary`]: its own session and
//! process group, no terminal, only descriptors 0–2, user, limits, sandbox, cgroup), its output
//! streamed as it arrives, stopped with SIGTERM then SIGKILL when its time is up or phantom_ci is told
//! to stop (SIGTERM/SIGINT, see [`crate::isolation::signals`]) or the run is cancelled (`phantom_ci
//! cancel`: a request file in the run's directory, looked at when SIGUSR1 nudges and every
//! [`CANCEL_LOOK`]).

use crate::isolation::spawn::StepChild;
use std::io::{PipeReader, PipeWriter, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, SpliceFFlags, fcntl, splice};
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::config::workflow::Step;
use crate::isolation::boundary::Boundary;
use crate::isolation::{pidfd, reaper, signals};
use crate::runner::lanes::StepLog;
use crate::runner::output::Output;
use crate::state::records::StepResult;

/// How long a step has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// How long, at most, the loop sleeps without looking at the clock, the cancel request and, where
/// the kernel gives no pidfd for the step ([`pidfd`]), the step itself.
pub(super) const TICK: Duration = Duration::from_millis(100);

/// How often, at most, the loop looks for a cancel request nobody nudged it about (the nudge is lost
/// when `cancel` may not signal the runner).
const CANCEL_LOOK: Duration = Duration::from_secs(1);

/// The most bytes read in one go; phantom_ci's memory does not grow with a step's output.
const CHUNK: usize = 256 * 1024;

/// The capacity asked for the run's pipe (the kernel's default is 64 KiB, and what an unprivileged
/// user may ask is capped by `/proc/sys/fs/pipe-max-size`): a step that prints fast fills it while
/// phantom_ci writes the log, instead of waiting for phantom_ci after every 64 KiB.
const PIPE_SIZE: i32 = 1 << 20;

#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub result: StepResult,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration: Duration,
    /// Why it failed, when the exit status does not say (it could not start).
    pub message: Option<String>,
    /// The step's process group, to be killed when the run ends.
    pub process_group: Option<Pid>,
    /// The signal phantom_ci received that stopped the step, if one did.
    pub aborted_by: Option<Signal>,
    /// Whether `phantom_ci cancel` stopped the step: the run is `cancelled`, not failed (nothing more
    /// runs after it, `always` steps included).
    pub cancelled: bool,
}

impl StepOutcome {
    /// A step that could not start (`message` says why), `started` when it was tried.
    pub(super) fn not_started(message: String, started: Instant) -> StepOutcome {
        StepOutcome {
            result: StepResult::Failure,
            exit_code: None,
            signal: None,
            duration: started.elapsed(),
            message: Some(message),
            process_group: None,
            aborted_by: None,
            cancelled: false,
        }
    }

    /// A step whose process group `pgid`, started at `started`, ended with `status`, or was stopped.
    pub(super) fn ended(
        status: std::io::Result<std::process::ExitStatus>,
        stopped: Option<Stop>,
        started: Instant,
        pgid: Pid,
    ) -> StepOutcome {
        let (exit_code, signal) = match &status {
            Ok(status) => (status.code(), status.signal()),
            Err(_) => (None, None),
        };
        let result = if stopped == Some(Stop::Deadline) {
            StepResult::Timeout
        } else if exit_code == Some(0) {
            StepResult::Success
        } else {
            StepResult::Failure
        };
        StepOutcome {
            result,
            exit_code,
            signal,
            duration: started.elapsed(),
            message: status
                .err()
                .map(|e| format!("cannot wait for the step: {e}")),
            process_group: Some(pgid),
            aborted_by: match stopped {
                Some(Stop::Signal(signal)) => Some(signal),
                _ => None,
            },
            cancelled: stopped == Some(Stop::Cancelled),
        }
    }
}

/// The one pipe every step of a run writes to, stdout and stderr alike, so they interleave as they
/// come. It lives as long as the run: a background process a step started (a database for the next
/// step, say) can go on writing, and its output shows up as it arrives, until the run ends and kills it.
/// phantom_ci keeps a write end itself, so the pipe never reports end-of-file: a step is over when its
/// main process exits.
pub struct RunPipe {
    reader: PipeReader,
    writer: PipeWriter,
    buf: Vec<u8>,
    /// The log of the step that runs now: what arrives goes there too.
    tee: Option<StepLog>,
}

impl RunPipe {
    pub fn new() -> std::io::Result<RunPipe> {
        let (reader, writer) = std::io::pipe()?;
        // Best effort: a pipe of the default size only costs more wake-ups.
        let _ = fcntl(&reader, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        Ok(RunPipe {
            reader,
            writer,
            buf: vec![0u8; CHUNK],
            tee: None,
        })
    }

    /// From now on, what arrives also goes to `log` (the step that runs now), or to no step's log.
    pub fn tee(&mut self, log: Option<StepLog>) {
        self.tee = log;
    }

    /// Passes on what is in the pipe now (a bounded amount: a process that never stops writing does
    /// not hold phantom_ci here).
    pub fn drain(&mut self, out: &mut Output) {
        for _ in 0..64 {
            if !self.wait(Duration::ZERO, None).output || !self.pass_on(out) {
                return;
            }
        }
    }

    /// Waits up to `wait` until the pipe has output or `exit` (the step's pidfd) says the step ended.
    fn wait(&self, wait: Duration, exit: Option<&OwnedFd>) -> Ready {
        let output = PollFd::new(self.reader.as_fd(), PollFlags::POLLIN);
        let timeout = nix::sys::time::TimeSpec::from_duration(wait);
        let readable = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        match exit {
            Some(exit) => {
                let mut fds = [output, PollFd::new(exit.as_fd(), PollFlags::POLLIN)];
                if !matches!(ppoll(&mut fds, Some(timeout), None), Ok(n) if n > 0) {
                    return Ready::default();
                }
                Ready {
                    output: readable(&fds[0]),
                    exited: readable(&fds[1]),
                }
            }
            None => {
                let mut fds = [output];
                if !matches!(ppoll(&mut fds, Some(timeout), None), Ok(n) if n > 0) {
                    return Ready::default();
                }
                Ready {
                    output: readable(&fds[0]),
                    exited: false,
                }
            }
        }
    }

    /// Passes on one chunk of what is in the pipe; whether there was any.
    fn pass_on(&mut self, out: &mut Output) -> bool {
        // Past the log's cap, to a console that never blocks (a file, /dev/null): the kernel moves
        // all but the last byte straight from the pipe; that one is read, so that phantom_ci knows
        // whether the output ended a line.
        let mut chunk = CHUNK;
        let teeing = self.tee.as_ref().is_some_and(|tee| !tee.full());
        if let Some(console) = out.splice_target().filter(|_| !teeing) {
            // What is read is only that last byte (all of it when `FIONREAD` cannot tell).
            let pending = crate::isolation::pipe::pending_bytes(&self.reader).unwrap_or(CHUNK);
            chunk = pending.clamp(1, CHUNK);
            if pending > 1 {
                match splice(
                    &self.reader,
                    None,
                    console,
                    None,
                    pending - 1,
                    SpliceFFlags::empty(),
                ) {
                    Ok(moved) if moved > 0 => return true,
                    Ok(_) => {}
                    // A file opened for appending refuses splice: write from now on.
                    Err(_) => out.splice_failed(),
                }
            }
        }
        match self.reader.read(&mut self.buf[..chunk]) {
            Ok(n) if n > 0 => {
                if let Some(tee) = &mut self.tee {
                    tee.write(&self.buf[..n]);
                }
                out.step_bytes(&self.buf[..n]);
                true
            }
            _ => false,
        }
    }
}

/// What [`RunPipe::wait`] found.
#[derive(Debug, Default, Clone, Copy)]
struct Ready {
    output: bool,
    exited: bool,
}

pub struct StepContext<'a> {
    pub cwd: &'a Path,
    pub env: &'a [(String, String)],
    /// What every step of the run crosses to start: user, limits, sandbox, cgroup.
    pub boundary: &'a Boundary<'a>,
    /// The run's cancel request ([`crate::state::records::RunDir::cancel_request`]): once it exists,
    /// the step is stopped as for a signal and the run ends `cancelled`.
    pub cancel: Option<&'a Path>,
}

pub fn run(
    step: &Step,
    ctx: &StepContext,
    pipe: &mut RunPipe,
    timeout: Duration,
    out: &mut Output,
) -> StepOutcome {
    let started = Instant::now();
    // Bytes the log cannot take from now on are this step's (in the record's `log_lost`).
    out.set_step(Some(&step.id()));
    let spawned = ctx
        .boundary
        .spawn(&step.argv, ctx.cwd, ctx.env, &pipe.writer);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return StepOutcome::not_started(cannot_start(step, &e), started),
    };
    // The step leads its own session and process group (the boundary's `setsid`).
    let pgid = Pid::from_raw(child.id() as i32);
    let (status, stopped) = supervise(&mut child, pgid, pipe, started + timeout, ctx.cancel, out);
    reaper::finished(child.id());
    if stopped.is_some() {
        // Whatever of the group survived SIGTERM goes now.
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    StepOutcome::ended(status, stopped, started, pgid)
}

/// Why phantom_ci stopped a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    Deadline,
    Signal(Signal),
    /// `phantom_ci cancel` asked for it.
    Cancelled,
}

/// Whether the run was cancelled, looking at the request file only when SIGUSR1 nudged or
/// [`CANCEL_LOOK`] passed since the last look (the loop goes round often; a `stat` each time is waste).
pub(super) struct CancelWatch<'a> {
    request: Option<&'a Path>,
    nudges: usize,
    looked: Instant,
}

impl<'a> CancelWatch<'a> {
    pub(super) fn new(request: Option<&'a Path>) -> CancelWatch<'a> {
        CancelWatch {
            request,
            nudges: signals::cancel_nudges(),
            looked: Instant::now(),
        }
    }

    pub(super) fn requested(&mut self, now: Instant) -> bool {
        let Some(request) = self.request else {
            return false;
        };
        let nudges = signals::cancel_nudges();
        if nudges == self.nudges && now < self.looked + CANCEL_LOOK {
            return false;
        }
        self.nudges = nudges;
        self.looked = now;
        request.exists()
    }
}

/// Streams the child's output until it exits; on `deadline`, or when phantom_ci receives a terminating
/// signal, sends the group SIGTERM, and SIGKILL after [`KILL_GRACE`] (at once on a second signal).
/// Returns the exit status and why the step was stopped, if it was.
fn supervise(
    child: &mut StepChild,
    pgid: Pid,
    pipe: &mut RunPipe,
    deadline: Instant,
    cancel: Option<&Path>,
    out: &mut Output,
) -> (std::io::Result<std::process::ExitStatus>, Option<Stop>) {
    let mut cancel = CancelWatch::new(cancel);
    let mut term_sent: Option<Instant> = None;
    let mut stop: Option<Stop> = None;
    let mut kill_sent = false;
    // The pipe never ends, so the step's end is noticed through its pidfd, in the same poll as its
    // output. Without one it is looked at: soon after the start (most steps are short), then less and
    // less often, up to every TICK.
    let exit = pidfd::open_pid(child.id());
    let mut look_again = Duration::from_micros(100);
    let mut ended = true;
    loop {
        if ended {
            match child.try_wait() {
                Ok(Some(status)) => {
                    pipe.drain(out);
                    return (Ok(status), stop);
                }
                Ok(None) => {}
                Err(e) => return (Err(e), stop),
            }
        }
        let now = Instant::now();
        if stop.is_none() {
            if let Some(signal) = signals::requested() {
                stop = Some(Stop::Signal(signal));
            } else if cancel.requested(now) {
                stop = Some(Stop::Cancelled);
            } else if now >= deadline {
                stop = Some(Stop::Deadline);
            }
        }
        if stop.is_some() && term_sent.is_none() {
            let _ = killpg(pgid, Signal::SIGTERM);
            term_sent = Some(now);
        }
        if let Some(sent) = term_sent
            && !kill_sent
            && (now >= sent + KILL_GRACE || signals::insisted())
        {
            let _ = killpg(pgid, Signal::SIGKILL);
            kill_sent = true;
        }
        let next_deadline = match term_sent {
            None => deadline,
            Some(sent) if !kill_sent => sent + KILL_GRACE,
            Some(_) => now + TICK,
        };
        let poll_for = if exit.is_some() { TICK } else { look_again };
        let wait = next_deadline.saturating_duration_since(now).min(poll_for);
        let ready = pipe.wait(wait, exit.as_ref());
        // Without a pidfd the step is looked at every time round; with one, when it says so (and
        // after a signal or a timeout, in case the poll was cut short).
        ended = exit.is_none() || ready.exited || !ready.output;
        if ready.output {
            pipe.pass_on(out);
        } else {
            look_again = (look_again * 2).min(TICK);
        }
    }
}

/// Why `step` could not start: the error, and what in its `run` looks written for a shell, if
/// anything does (a missing `cd` is the usual reason).
pub fn cannot_start(step: &Step, e: &std::io::Error) -> String {
    let hint = step
        .shell_warnings()
        .into_iter()
        .next()
        .map_or(String::new(), |w| format!(" ({w})"));
    format!(
        "cannot start `{}`: {e}{hint}",
        crate::describe::terminal(&step.argv[0])
    )
}
