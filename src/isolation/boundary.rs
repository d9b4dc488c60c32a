//! The step boundary (SPEC §4.8): the one function every step crosses to start — in every mode (the
//! hook's worker, `tick`, `run`), sandboxed or not. Review [`Boundary::spawn`]; no other code starts a
//! step.
//!
//! When the step's program (or `bwrap`, which then runs it) starts, all of this holds:
//!
//! 1. **Its own session, no controlling terminal.** The child calls `setsid()`: it leads a new session
//!    and process group (both ids are its pid, so phantom_ci's `killpg(pid)` reaches the step's
//!    group), and has no controlling terminal: `/dev/tty` cannot be opened, so nothing can be injected
//!    into the operator's terminal (TIOCSTI), no Ctrl-Z or read of what the operator types. Ctrl-C in
//!    that terminal reaches phantom_ci alone, which ends the run ([`crate::isolation::signals`]).
//! 2. **stdin is `/dev/null`; stdout and stderr are the run's output pipe.**
//! 3. **Only descriptors 0, 1 and 2.** Every other descriptor is marked close-on-exec in the child
//!    (`close_range(3, ~0, CLOSE_RANGE_CLOEXEC)`, or a loop of `fcntl` up to the descriptor limit on
//!    kernels before 5.11), so whatever phantom_ci inherited (`phantom_ci run app 7<secret`) or holds
//!    (locks, logs) is gone at `exec` — and std's own error pipe still reports a failed `exec`.
//! 4. **Default signal dispositions**: nothing phantom_ci's parent ignored (`nohup`) stays ignored.
//! 5. **The run's cgroup**, when the run has one ([`crate::isolation::cgroup`]): the child writes `0`
//!    to the cgroup's `cgroup.procs`, opened by phantom_ci before the fork; a failure aborts the spawn.
//! 6. **The rlimits** of the repo's `limits`.
//! 7. **The `run_as` user**, when phantom_ci must switch: supplementary groups, then gid, then uid
//!    (last, while the others still may be set); a failure aborts the spawn, so a step never runs with
//!    privileges it should have dropped.
//! 8. **The sandbox**, when configured: the program is `bwrap` with the arguments of
//!    [`crate::isolation::sandbox`], and 1–7 hold for `bwrap` (which starts yet another session).
//! 9. **The environment** is exactly the one given (the step environment of SPEC §4.2), the working
//!    directory the workspace.
//!
//! 10. **`debug` only, as root without the sandbox: the build cache read-only**
//!     ([`Boundary::read_only`]): the child enters a mount namespace of its own (private
//!     propagation) and binds the directory onto itself read-only, before it drops privileges; the
//!     machine's mounts are untouched. A failure aborts the spawn.
//!
//! Steps 1 and 3–7 run in the child between `fork` and `exec`: only system calls on values computed
//! before the fork — no allocation, no lock — as `pre_exec` requires.
//!
//! **The one exception: `phantom_ci debug`'s terminal** ([`Boundary::spawn_in_terminal`]). An
//! interactive shell in a step's conditions needs a terminal, which invariants 1 and 2 withhold. It
//! may have one because the operator started `debug` and is at the keyboard — but the commit's code
//! (a `make` typed into that shell) still runs there, as the step user, so it must not get the
//! *operator's* terminal: with it as controlling terminal, TIOCSTI would type commands into the
//! operator's (root) shell once `debug` exits. So the variant changes invariants 1 and 2 only, and
//! narrowly: the child still calls `setsid()`, then takes as its controlling terminal a **new
//! pseudo-terminal that phantom_ci allocated for it** ([`crate::isolation::pty`]), which is its stdin,
//! stdout and stderr; phantom_ci relays bytes between that pty and the operator's terminal. Whatever
//! the shell's processes type into their own pty reaches only their own shell. Invariants 3–9 are the
//! same code. In the sandbox bwrap still starts its new session, without a terminal, and util-linux's
//! `setsid --ctty --wait` inside it (the step's program, as far as the boundary is concerned) makes
//! the pty the controlling terminal of a session of its own within the sandbox's PID namespace.

use std::io::PipeWriter;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::libc;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::{Gid, Uid, setgid, setgroups, setsid, setuid};

use crate::isolation::cgroup::RunCgroup;
use crate::isolation::privilege::StepUser;
use crate::isolation::reaper;
use crate::isolation::sandbox::Sandbox;

/// The descriptors the fallback loop of invariant 3 covers at most (the kernel's default `nr_open`).
const MAX_FDS: u64 = 1 << 20;

/// What every step of a run crosses with: who it runs as, its limits, its sandbox and its cgroup.
pub struct Boundary<'a> {
    pub user: &'a StepUser,
    pub limits: &'a [(Resource, u64)],
    pub sandbox: Option<&'a Sandbox>,
    pub cgroup: Option<&'a RunCgroup>,
    /// A directory the child sees read-only, in a mount namespace of its own (invariant 10):
    /// `phantom_ci debug`'s view of the build cache as root without the sandbox. Needs root.
    pub read_only: Option<&'a Path>,
}

/// Where a step's descriptors 0, 1 and 2 go.
enum Io<'a> {
    /// Every step: stdin `/dev/null`, stdout and stderr the run's output pipe; no terminal.
    Pipe(&'a PipeWriter),
    /// `debug`'s interactive shell: all three the slave of a pty phantom_ci allocated for it, which
    /// becomes its controlling terminal.
    Terminal(&'a OwnedFd),
}

impl Boundary<'_> {
    /// Starts `argv` in `cwd` with exactly `env`, its stdout and stderr going to `output`, with every
    /// invariant of this module established; it is registered with the [`reaper`] until
    /// [`reaper::finished`]. The child's pid is its process group and its session.
    pub fn spawn(
        &self,
        argv: &[String],
        cwd: &Path,
        env: &[(String, String)],
        output: &PipeWriter,
    ) -> std::io::Result<Child> {
        self.start(argv, cwd, env, Io::Pipe(output))
    }

    /// `phantom_ci debug`'s interactive variant (see the module's documentation): the same boundary,
    /// but the child's stdin, stdout and stderr are `pty_slave`, the slave of a pseudo-terminal
    /// phantom_ci allocated for this child alone, and it becomes the new session's controlling
    /// terminal. Never the operator's own terminal.
    pub fn spawn_in_terminal(
        &self,
        argv: &[String],
        cwd: &Path,
        env: &[(String, String)],
        pty_slave: &OwnedFd,
    ) -> std::io::Result<Child> {
        self.start(argv, cwd, env, Io::Terminal(pty_slave))
    }

    #[allow(unsafe_code)]
    fn start(
        &self,
        argv: &[String],
        cwd: &Path,
        env: &[(String, String)],
        io: Io,
    ) -> std::io::Result<Child> {
        let Some((program, args)) = argv.split_first() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the step has no command",
            ));
        };
        // With `Io::Terminal`, the pty becomes the controlling terminal of a new session: made by
        // the child itself, or in the sandbox by util-linux's `setsid --ctty` inside it — bwrap's
        // `--new-session` leaves no terminal, and a session led from outside its PID namespace
        // would leave the shell's job control a process group it cannot see.
        let terminal = matches!(io, Io::Terminal(_));
        let take_terminal = terminal && self.sandbox.is_none();
        let in_own_session: Vec<String>;
        let argv = if terminal && self.sandbox.is_some() {
            in_own_session = ["setsid", "--ctty", "--wait", "--"]
                .iter()
                .map(|w| w.to_string())
                .chain(argv.iter().cloned())
                .collect();
            &in_own_session
        } else {
            argv
        };
        let mut command = match self.sandbox {
            Some(sandbox) => sandbox.command(argv, cwd),
            None => {
                let mut command = Command::new(program);
                command.args(args);
                command
            }
        };
        command
            .current_dir(cwd)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)));
        match io {
            Io::Pipe(output) => command
                .stdin(Stdio::null())
                .stdout(output.try_clone()?)
                .stderr(output.try_clone()?),
            Io::Terminal(slave) => command
                .stdin(slave.try_clone()?)
                .stdout(slave.try_clone()?)
                .stderr(slave.try_clone()?),
        };

        // Everything the child needs, computed now: after the fork nothing may allocate.
        let switch: Option<(Uid, Gid, Vec<Gid>)> = self
            .user
            .switch
            .then(|| (self.user.uid, self.user.gid, self.user.groups.clone()));
        let limits: Vec<(Resource, u64)> = self.limits.to_vec();
        let cgroup: Option<RawFd> = self.cgroup.map(RunCgroup::procs_fd);
        let read_only: Option<std::ffi::CString> = match self.read_only {
            Some(dir) => Some(
                std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
                    .map_err(std::io::Error::other)?,
            ),
            None => None,
        };
        let fd_bound = getrlimit(Resource::RLIMIT_NOFILE)
            .map_or(MAX_FDS, |(soft, hard)| soft.max(hard).min(MAX_FDS))
            as libc::c_int;
        // SAFETY: the closure runs in the child between fork and exec. It makes only system calls
        // (setsid, ioctl, signal, write, close_range/fcntl, setrlimit, setgroups, setgid, setuid) on values
        // computed before the fork: it allocates nothing, takes no lock and touches no state another
        // thread could hold. The cgroup's descriptor stays open in phantom_ci until the spawn is
        // over (`self.cgroup` outlives this call). Any failure aborts the spawn.
        unsafe {
            command.pre_exec(move || {
                setsid()?;
                // Only with `Io::Terminal` and no sandbox: descriptor 0 is then the pty phantom_ci
                // made for this child, and becomes the new session's controlling terminal.
                if take_terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for signal in 1..=libc::SIGRTMAX() {
                    if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                        // Signals the C library keeps for itself refuse; nothing to undo there.
                        libc::signal(signal, libc::SIG_DFL);
                    }
                }
                if let Some(procs) = cgroup
                    && libc::write(procs, b"0".as_ptr().cast(), 1) != 1
                {
                    return Err(std::io::Error::last_os_error());
                }
                close_on_exec_from_3(fd_bound)?;
                if let Some(dir) = &read_only {
                    read_only_view(dir)?;
                }
                for (resource, value) in &limits {
                    setrlimit(*resource, *value, *value)?;
                }
                if let Some((uid, gid, groups)) = &switch {
                    setgroups(groups)?;
                    setgid(*gid)?;
                    setuid(*uid)?;
                }
                Ok(())
            });
        }
        let spawned = reaper::spawn(&mut command);
        // The command holds copies of the pipe's write end: close them.
        drop(command);
        spawned
    }
}

/// Invariant 10: a mount namespace of this process's own in which `dir` is read-only.
/// Async-signal-safe: system calls on a string made before the fork.
#[allow(unsafe_code)]
fn read_only_view(dir: &std::ffi::CStr) -> std::io::Result<()> {
    let none = std::ptr::null();
    let root = c"/";
    // SAFETY: unshare and mount take plain integers and NUL-terminated strings that outlive the
    // calls; they change only this process's (new) mount namespace.
    let done = unsafe {
        libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::mount(
                none,
                root.as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                none.cast(),
            ) == 0
            && libc::mount(
                dir.as_ptr(),
                dir.as_ptr(),
                none,
                libc::MS_BIND | libc::MS_REC,
                none.cast(),
            ) == 0
            && libc::mount(
                none,
                dir.as_ptr(),
                none,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                none.cast(),
            ) == 0
    };
    if done {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Marks every descriptor from 3 up close-on-exec. Async-signal-safe: system calls only.
#[allow(unsafe_code)]
fn close_on_exec_from_3(bound: libc::c_int) -> std::io::Result<()> {
    // SAFETY: close_range only changes flags of this process's descriptors; it takes plain integers.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if done == 0 {
        return Ok(());
    }
    // Before Linux 5.11 (ENOSYS, or EINVAL for the flag): one descriptor at a time.
    for fd in 3..bound {
        // SAFETY: fcntl on a descriptor number; EBADF for the ones not open is expected.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 && unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
