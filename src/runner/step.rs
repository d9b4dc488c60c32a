//! One step: started directly (no shell) in its own process group, its output streamed as it arrives,
//! stopped with SIGTERM then SIGKILL when its time is up.

use std::io::{PipeReader, Read};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::resource::Resource;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::output::Output;
use crate::privilege::{self, StepUser};
use crate::records::StepResult;
use crate::workflow::Step;

/// How long a step has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// How often the loop looks at the child when its output is quiet.
const TICK: Duration = Duration::from_millis(100);

/// The most bytes read in one go; phantom_ci's memory does not grow with a step's output.
const CHUNK: usize = 64 * 1024;

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
}

pub struct StepContext<'a> {
    pub cwd: &'a Path,
    pub env: &'a [(String, String)],
    pub user: &'a StepUser,
    pub limits: &'a [(Resource, u64)],
}

pub fn run(step: &Step, ctx: &StepContext, timeout: Duration, out: &mut Output) -> StepOutcome {
    let started = Instant::now();
    let failed_to_start = |message: String| StepOutcome {
        result: StepResult::Failure,
        exit_code: None,
        signal: None,
        duration: started.elapsed(),
        message: Some(message),
        process_group: None,
    };
    let (reader, writer) = match std::io::pipe() {
        Ok(pipe) => pipe,
        Err(e) => return failed_to_start(format!("cannot create a pipe: {e}")),
    };
    let writer_err = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return failed_to_start(format!("cannot create a pipe: {e}")),
    };
    let mut command = Command::new(&step.argv[0]);
    command
        .args(&step.argv[1..])
        .current_dir(ctx.cwd)
        .env_clear()
        .envs(ctx.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_err)
        .process_group(0);
    privilege::apply(&mut command, ctx.user, ctx.limits.to_vec());
    let spawned = command.spawn();
    // The command holds the pipe's write ends: drop it so that only the child has them.
    drop(command);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return failed_to_start(format!(
                "cannot start `{}`: {e}",
                crate::sanitize::terminal(&step.argv[0])
            ));
        }
    };
    let pgid = Pid::from_raw(child.id() as i32);
    let (status, timed_out) = supervise(&mut child, pgid, reader, started + timeout, out);
    if timed_out {
        // Whatever of the group survived SIGTERM goes now.
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    let (exit_code, signal) = match &status {
        Ok(status) => (status.code(), status.signal()),
        Err(_) => (None, None),
    };
    let result = if timed_out {
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
    }
}

/// Streams the child's output until it exits; on `deadline` sends the group SIGTERM, and SIGKILL after
/// [`KILL_GRACE`]. Returns the exit status and whether the deadline was hit.
fn supervise(
    child: &mut Child,
    pgid: Pid,
    reader: PipeReader,
    deadline: Instant,
    out: &mut Output,
) -> (std::io::Result<std::process::ExitStatus>, bool) {
    let mut buf = vec![0u8; CHUNK];
    let mut pipe = Some(reader);
    let mut term_sent: Option<Instant> = None;
    let mut kill_sent = false;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if let Some(reader) = pipe.as_mut() {
                    drain(reader, &mut buf, out);
                }
                return (Ok(status), term_sent.is_some());
            }
            Ok(None) => {}
            Err(e) => return (Err(e), term_sent.is_some()),
        }
        let now = Instant::now();
        if term_sent.is_none() && now >= deadline {
            let _ = killpg(pgid, Signal::SIGTERM);
            term_sent = Some(now);
        }
        if let Some(sent) = term_sent
            && !kill_sent
            && now >= sent + KILL_GRACE
        {
            let _ = killpg(pgid, Signal::SIGKILL);
            kill_sent = true;
        }
        let next_deadline = match term_sent {
            None => deadline,
            Some(sent) if !kill_sent => sent + KILL_GRACE,
            Some(_) => now + TICK,
        };
        let wait = next_deadline.saturating_duration_since(now).min(TICK);
        match pipe.as_mut() {
            Some(reader) => {
                if wait_readable(reader, wait) {
                    match reader.read(&mut buf) {
                        Ok(0) => pipe = None,
                        Ok(n) => out.step_bytes(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => pipe = None,
                    }
                }
            }
            // Output closed but the process lives on: look again shortly.
            None => std::thread::sleep(wait.min(Duration::from_millis(10))),
        }
    }
}

/// Reads what is already in the pipe when the step's main process has exited. A background process may
/// keep the pipe open and go on writing; that output is not waited for.
fn drain(reader: &mut PipeReader, buf: &mut [u8], out: &mut Output) {
    for _ in 0..64 {
        if !wait_readable(reader, Duration::ZERO) {
            return;
        }
        match reader.read(buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => out.step_bytes(&buf[..n]),
        }
    }
}

fn wait_readable(reader: &PipeReader, wait: Duration) -> bool {
    let millis = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(millis)), Ok(n) if n > 0)
}
