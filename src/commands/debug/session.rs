//! A `debug` session's one process, started through the step boundary, and phantom_ci relaying for
//! it: with a pty of its own under a terminal (the window size follows the operator's, on every
//! SIGWINCH), else piped as a step.

use crate::isolation::spawn::StepChild;
use std::io::{IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, User};

use crate::describe::escapes::{FilteredWriter, TerminalFilter};
use crate::error::ExitStatus;
use crate::isolation::boundary::Boundary;
use crate::isolation::privilege::StepUser;
use crate::isolation::pty::{Pty, RawMode};
use crate::isolation::{reaper, signals};

/// How long the shell's processes have between SIGTERM and SIGKILL when phantom_ci is told to stop.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How often, at most, the relay looks at the child when nothing happens.
const TICK: u16 = 100;

/// The step user's login shell, or `/bin/sh` when it has none that works (`nobody`'s is `nologin`).
pub fn shell_of(user: &StepUser) -> String {
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

/// The step user's shell started without its start-up files (`~/.bashrc`, `~/.profile`, `$ENV`,
/// …): they live in the step user's home, which the commit's steps may write, and a planted one
/// could print a fake end of the session and a root prompt into the operator's terminal.
pub fn shell_argv(user: &StepUser) -> Vec<String> {
    let shell = shell_of(user);
    let name = Path::new(&shell)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let flags: &[&str] = match name.as_str() {
        "bash" => &["--norc", "--noprofile"],
        "zsh" => &["-f"],
        "fish" => &["--no-config"],
        _ => &[],
    };
    std::iter::once(shell)
        .chain(flags.iter().map(|f| f.to_string()))
        .collect()
}

/// The interactive shell's environment: the step's, without what makes a shell read a file at
/// start (`ENV`, `BASH_ENV`, `ZDOTDIR`) or draw its prompt from the commit (`PS1`, `PROMPT_COMMAND`):
/// the prompt says plainly where the operator is.
pub fn shell_env(env: &mut Vec<(String, String)>, repo: &str) {
    const FROM_FILES: [&str; 5] = ["ENV", "BASH_ENV", "ZDOTDIR", "PS1", "PROMPT_COMMAND"];
    env.retain(|(name, _)| !FROM_FILES.contains(&name.as_str()));
    env.push(("PS1".into(), format!("(phantom_ci debug {repo}) $ ")));
}

/// The operator's `TERM`, for the shell's pty, if it is a plain terminal name: letters, digits and
/// `.+-_`, at most 64 bytes (it reaches the step user's programs, which look it up in terminfo).
pub fn operator_term() -> Option<String> {
    checked_term(&std::env::var("TERM").ok()?)
}

fn checked_term(term: &str) -> Option<String> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b".+-_".contains(&b);
    (!term.is_empty() && term.len() <= 64 && term.bytes().all(plain)).then(|| term.to_string())
}

/// One process started through the boundary, and phantom_ci relaying for it.
pub struct Session<'a> {
    pub boundary: &'a Boundary<'a>,
    pub argv: &'a [String],
    pub cwd: &'a Path,
    pub env: &'a [(String, String)],
}

impl Session<'_> {
    /// With a pty of its own; the operator's terminal in raw mode meanwhile, its keys relayed.
    pub fn in_terminal(&self, user: &StepUser) -> std::io::Result<ExitStatus> {
        let stdin = std::io::stdin();
        let (pty, slave) = Pty::open(user, stdin.as_fd()).map_err(std::io::Error::other)?;
        let mut child = self
            .boundary
            .spawn_in_terminal(self.argv, self.cwd, self.env, &slave)?;
        // The shell's copies only: the master reports EIO once its processes are gone.
        drop(slave);
        let raw = RawMode::enter(stdin.as_fd());
        let master = pty.master.as_fd();
        // The size was copied when the pty was made; again on every SIGWINCH.
        let _ = signals::install_winch();
        let mut seen = signals::window_changes();
        let status = relay(
            &mut child,
            master,
            Some((stdin.as_fd(), master)),
            &mut || {
                let now = signals::window_changes();
                if now != seen {
                    seen = now;
                    pty.copy_size(stdin.as_fd());
                }
            },
        );
        drop(raw);
        status
    }

    /// As a step: stdin `/dev/null`, stdout and stderr one pipe, passed on to phantom_ci's stdout.
    pub fn piped(&self) -> std::io::Result<ExitStatus> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_terminal_name_is_passed_on() {
        assert_eq!(
            checked_term("xterm-256color").as_deref(),
            Some("xterm-256color")
        );
        assert_eq!(
            checked_term("rxvt-unicode+x_1.2").as_deref(),
            Some("rxvt-unicode+x_1.2")
        );
        for bad in ["", "xterm\u{1b}]0;x", "a b", "../../etc/x", &"x".repeat(65)] {
            assert_eq!(checked_term(bad), None, "{bad:?}");
        }
        assert!(checked_term(&"x".repeat(64)).is_some());
    }
}
