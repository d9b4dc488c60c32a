//! Running the `git` command (for the fetch of a mirror and for writing a checkout), bounded by a
//! deadline: the child is killed when the deadline passes or phantom_ci is told to stop, and only the
//! first few KiB of its error output are kept.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::time::TimeSpec;

/// The most of git's error output kept for a message.
const STDERR_KEPT: usize = 4096;

/// Variables a git hook sets that would redirect a `git` command phantom_ci starts.
pub const GIT_HOOK_VARIABLES: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
];

/// How a `git` command ended when it did not exit by itself.
#[derive(Debug)]
pub enum Stopped {
    /// It could not be started (no `git` on `PATH`, …).
    Spawn(std::io::Error),
    /// The deadline passed; it was killed.
    Deadline,
    /// phantom_ci was told to stop (SIGTERM, SIGINT); it was killed.
    Interrupted,
    /// Waiting for it failed.
    Wait(std::io::Error),
}

/// A `git` command that ran to its end.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    /// The beginning of its error output, made safe for a terminal, on one line.
    pub stderr: String,
}

/// Where `git` is looked for when it is not on `PATH` (a service started with a minimal `PATH`).
const FALLBACK: &[&str] = &["/usr/local/bin/git", "/usr/bin/git", "/bin/git"];

/// The `git` to run: the first on `PATH`, else the first of [`FALLBACK`] that exists, else plain `git`
/// (whose failure to start then says it is missing).
pub fn program() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain(
            FALLBACK
                .iter()
                .filter_map(|p| Path::new(p).parent().map(Path::to_path_buf)),
        )
        .map(|dir| dir.join("git"))
        .find(|candidate| candidate.is_absolute() && candidate.is_file());
    on_path.unwrap_or_else(|| PathBuf::from("git"))
}

/// `git` with stdin from /dev/null, stdout discarded and stderr kept, without the variables of a hook
/// and without asking anyone for a password.
pub fn git() -> Command {
    let mut command = Command::new(program());
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for variable in GIT_HOOK_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// The variable that carries a URL's password to the `git` phantom_ci starts, and back to phantom_ci
/// itself when git asks for it (`GIT_ASKPASS`). A process's environment is readable by its own user
/// only, its command line by everyone: the password goes here, never into an argument.
pub const PASSWORD_VARIABLE: &str = "PHANTOM_CI_GIT_PASSWORD";

/// Points `command` (a `git` from [`git`]) at `url`: returns the URL for its command line, without a
/// password, and lets git ask phantom_ci for the password, if the URL has one.
pub fn remote(command: &mut Command, url: &str) -> String {
    let (shown, password) = crate::config::split_password(url);
    if let Some(password) = password
        && let Ok(exe) = std::env::current_exe()
    {
        command
            .env("GIT_ASKPASS", exe)
            .env(PASSWORD_VARIABLE, password);
    }
    shown
}

/// phantom_ci started by git as its `GIT_ASKPASS` ([`remote`]): the answer to git's password prompt
/// (its one argument, `Password for '…': `), or `None` when this is not such a call.
pub fn askpass_answer() -> Option<String> {
    let password = std::env::var(PASSWORD_VARIABLE).ok()?;
    let mut args = std::env::args_os().skip(1);
    let prompt = args.next()?;
    (args.next().is_none() && prompt.to_string_lossy().starts_with("Password for "))
        .then_some(password)
}

/// Runs `command` until it exits, `deadline` passes or phantom_ci is asked to stop.
pub fn run(command: Command, deadline: Instant) -> Result<Ran, Stopped> {
    run_keeping(command, deadline, 0).map(|(ran, _)| ran)
}

/// [`run`], keeping the first `max` bytes of the command's output (the rest is read and dropped).
pub fn run_keeping(
    mut command: Command,
    deadline: Instant,
    max: u64,
) -> Result<(Ran, Vec<u8>), Stopped> {
    if max > 0 {
        command.stdout(Stdio::piped());
    }
    crate::isolation::reaper::dies_with_phantom_ci(&mut command);
    let mut child = command.spawn().map_err(Stopped::Spawn)?;
    let mut stdout = child.stdout.take();
    let output = std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(stdout) = stdout.as_mut() {
            let _ = stdout.take(max).read_to_end(&mut kept);
            let _ = std::io::copy(stdout, &mut std::io::sink());
        }
        kept
    });
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.take(STDERR_KEPT as u64).read_to_end(&mut kept);
            let _ = std::io::copy(stderr, &mut std::io::sink());
        }
        kept
    });
    let status = wait(&mut child, deadline);
    if status.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let kept = reader.join().unwrap_or_default();
    let output = output.join().unwrap_or_default();
    let text = String::from_utf8_lossy(&kept);
    let ran = Ran {
        status: status?,
        stderr: crate::describe::terminal(text.trim()).replace('?', " "),
    };
    Ok((ran, output))
}

/// Waits for `child`: through its pidfd ([`crate::isolation::pidfd`]), woken the moment it exits
/// and at least every 100 ms to look at the deadline and phantom_ci's signals; without one, by
/// looking at it from 100 µs up to 5 ms apart (a quick command — a small checkout — is noticed within
/// a fraction of its own time, and a long one costs 200 wake-ups a second).
fn wait(child: &mut Child, deadline: Instant) -> Result<ExitStatus, Stopped> {
    let exit = crate::isolation::pidfd::open(child);
    let mut pause = Duration::from_micros(100);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => return Err(Stopped::Deadline),
            Ok(None) if crate::isolation::signals::requested().is_some() => {
                return Err(Stopped::Interrupted);
            }
            Ok(None) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match &exit {
                    Some(exit) => {
                        let wait = left.min(Duration::from_millis(100));
                        let mut fds = [PollFd::new(exit.as_fd(), PollFlags::POLLIN)];
                        // A signal cuts the poll short (EINTR): the loop looks at it above.
                        let _ = ppoll(&mut fds, Some(TimeSpec::from_duration(wait)), None);
                    }
                    None => {
                        std::thread::sleep(pause.min(left));
                        pause = (pause * 2).min(Duration::from_millis(5));
                    }
                }
            }
            Err(e) => return Err(Stopped::Wait(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_past_its_deadline_is_killed() {
        let mut command = Command::new("sleep");
        command.arg("30").stderr(Stdio::piped());
        let stopped = run(command, Instant::now() + Duration::from_millis(50));
        assert!(matches!(stopped, Err(Stopped::Deadline)), "{stopped:?}");
    }

    #[test]
    fn error_output_is_kept_on_one_safe_line() {
        let mut command = Command::new("sh");
        command
            .args([
                "-c",
                "printf 'fatal: \\033[31mred\\033[0m\\nsecond\\n' >&2; exit 3",
            ])
            .stderr(Stdio::piped());
        let ran = run(command, Instant::now() + Duration::from_secs(600)).unwrap();
        assert_eq!(ran.status.code(), Some(3));
        assert!(!ran.stderr.contains('\u{1b}'), "{:?}", ran.stderr);
        assert!(ran.stderr.starts_with("fatal: "), "{:?}", ran.stderr);
    }
}
