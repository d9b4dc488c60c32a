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
//!    (locks, logs) is gone at `exec` — and the pipe that reports a failed `exec` still works.
//! 4. **Default signal dispositions, no signal blocked**: nothing phantom_ci's parent ignored
//!    (`nohup`) stays ignored.
//! 5. **The run's cgroup** (or the step's below it), when the run has one
//!    ([`crate::isolation::cgroup`]): the child is **born in it** — `clone3` with
//!    `CLONE_INTO_CGROUP` (Linux ≥ 5.7, [`crate::isolation::spawn`]), which spares the kernel's wait
//!    when a process moves between cgroups. Where the kernel or the cgroup refuses that clone (or
//!    `PHANTOM_CI_CLONE_INTO_CGROUP=0` says not to try), the fallback: a `fork`, then the child writes
//!    `0` to the cgroup's `cgroup.procs`, opened by phantom_ci before; a failure aborts the spawn.
//!    Either way the step never runs a single instruction of its own outside the cgroup. A step that
//!    runs as phantom_ci's own user (no `run_as` switch) is born sharing phantom_ci's memory until its
//!    `exec` (`CLONE_VM | CLONE_VFORK`, x86_64, Linux ≥ 5.16, [`crate::isolation::spawn`]), which spares a copy of
//!    phantom_ci's address space per step; **a step that switches user is always a copy**, so no
//!    process of the step user ever maps phantom_ci's memory (it could be `ptrace`d by another process
//!    of that user between `setuid` and `exec`).
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
//! 11. **A layered workspace's mount namespace** ([`Boundary::mount_ns`], issue 23): where the run's
//!     workspace is an overlay over the branch's base tree ([`crate::isolation::overlay`]), the child
//!     joins the run's mount namespace (`setns`) and goes to its working directory again there,
//!     before it drops privileges; only the run's processes see the layer. A failure aborts the
//!     spawn.
//!
//! Steps 1, 3–7, 10 and 11 are one function, `Plan::establish`, run in the child between `clone3` (or `fork`)
//! and `exec`: raw system calls only ([`crate::isolation::sys`]) on values computed before — no
//! allocation, no lock, none of libc's `set*id` wrappers (a `clone3` child skipped libc's fork
//! handling). A failure of any of them, or of `exec`, is reported to phantom_ci and the step does not
//! start.
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

use std::ffi::OsString;
use std::fs::File;
use std::io::PipeWriter;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::libc;
use nix::sys::resource::{Resource, getrlimit};

use crate::isolation::cgroup::RunCgroup;
use crate::isolation::privilege::StepUser;
use crate::isolation::sandbox::Sandbox;
use crate::isolation::spawn::{self, Exec, StepChild};
use crate::isolation::{reaper, sys};

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
    /// The run's mount namespace, where its workspace is a layer (invariant 11). Needs root.
    pub mount_ns: Option<BorrowedFd<'a>>,
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
    ) -> std::io::Result<StepChild> {
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
    ) -> std::io::Result<StepChild> {
        self.start(argv, cwd, env, Io::Terminal(pty_slave))
    }

    fn start(
        &self,
        argv: &[String],
        cwd: &Path,
        env: &[(String, String)],
        io: Io,
    ) -> std::io::Result<StepChild> {
        if argv.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the step has no command",
            ));
        }
        // With `Io::Terminal`, the pty becomes the controlling terminal of a new session: made by
        // the child itself, or in the sandbox by util-linux's `setsid --ctty` inside it — bwrap's
        // `--new-session` leaves no terminal, and a session led from outside its PID namespace
        // would leave the shell's job control a process group it cannot see.
        let terminal = matches!(io, Io::Terminal(_));
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
        // Invariant 8: the program, or bwrap running it.
        let argv: Vec<OsString> = match self.sandbox {
            Some(sandbox) => sandbox.argv(argv, cwd),
            None => argv.iter().map(OsString::from).collect(),
        };
        // Invariant 2: descriptors for 0, 1 and 2 — never themselves below 3, so that putting one in
        // place cannot overwrite another (copied to 3 and up if they are).
        let given: [BorrowedFd; 3] = match io {
            Io::Pipe(output) => [dev_null()?, output.as_fd(), output.as_fd()],
            Io::Terminal(slave) => [slave.as_fd(), slave.as_fd(), slave.as_fd()],
        };
        let copies: Option<[OwnedFd; 3]> = if given.iter().any(|fd| fd.as_raw_fd() < 3) {
            Some(spawn::above_2(given)?)
        } else {
            None
        };
        let stdio: [RawFd; 3] = match &copies {
            Some(copies) => copies.each_ref().map(AsRawFd::as_raw_fd),
            None => given.map(|fd| fd.as_raw_fd()),
        };
        let cgroup = self.cgroup;
        // Everything the child needs, computed now: after the clone nothing may allocate.
        let mut plan = Plan {
            take_terminal: terminal && self.sandbox.is_none(),
            signals: crate::isolation::signals::not_default(),
            join: None,
            fd_bound: getrlimit(Resource::RLIMIT_NOFILE)
                .map_or(MAX_FDS, |(soft, hard)| soft.max(hard).min(MAX_FDS))
                as libc::c_int,
            limits: self
                .limits
                .iter()
                .map(|&(resource, value)| (resource as libc::c_int, value))
                .collect(),
            switch: self.user.switch.then(|| {
                (
                    self.user.uid.as_raw(),
                    self.user.gid.as_raw(),
                    self.user.groups.iter().map(|g| g.as_raw()).collect(),
                )
            }),
            enter: match self.mount_ns {
                Some(ns) => Some((
                    ns.as_raw_fd(),
                    std::ffi::CString::new(cwd.as_os_str().as_encoded_bytes())
                        .map_err(std::io::Error::other)?,
                )),
                None => None,
            },
            read_only: match self.read_only {
                Some(dir) => Some(
                    std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
                        .map_err(std::io::Error::other)?,
                ),
                None => None,
            },
        };

        // Invariant 5, the fast way: the child is born in the cgroup.
        if let Some(cgroup) = cgroup
            && clone_into_cgroup_allowed()
        {
            let mut exec = Exec::new(&argv, env, Some(cwd), stdio)?;
            let started = reaper::register(|| {
                spawn::clone_into(
                    cgroup.dir_fd(),
                    &mut exec,
                    &|| plan.establish(),
                    plan.switch.is_none(),
                )
            })?;
            if let Some(child) = started {
                return Ok(child);
            }
        }

        // The fallback (no cgroup, or the kernel or the cgroup refused the clone): std's `fork`, the
        // same `establish`, which then moves the child into the cgroup itself.
        plan.join = cgroup.map(RunCgroup::procs_fd).transpose()?;
        let [stdin, stdout, stderr] = match copies {
            Some(copies) => copies,
            None => spawn::above_2(given)?,
        };
        let (program, args) = (&argv[0], &argv[1..]);
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr);
        // SAFETY: the closure runs in the child between fork and exec; `establish` makes only raw
        // system calls on values computed before the fork (no allocation, no lock). The cgroup's
        // descriptor stays open in phantom_ci until the spawn is over (`self.cgroup` outlives this
        // call). Any failure aborts the spawn.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || plan.establish().map_err(std::io::Error::from_raw_os_error));
        }
        let spawned = reaper::spawn(&mut command);
        // The command holds copies of the pipe's write end: close them.
        drop(command);
        Ok(StepChild::new(spawned?.id()))
    }
}

/// `/dev/null`, opened once per process (every step's stdin is a copy of it).
fn dev_null() -> std::io::Result<BorrowedFd<'static>> {
    static NULL: std::sync::OnceLock<File> = std::sync::OnceLock::new();
    if let Some(null) = NULL.get() {
        return Ok(null.as_fd());
    }
    let opened = File::open("/dev/null")?;
    Ok(NULL.get_or_init(|| opened).as_fd())
}

/// What the child establishes between the clone (or fork) and `exec`: invariants 1, 3–7, 10 and 11, on
/// values computed before. Raw system calls only ([`sys`]): no allocation, no lock, nothing of
/// libc's that a `clone3` child (which skipped libc's fork handling) must not touch.
struct Plan {
    /// Invariant 1's exception (`debug`'s terminal, unsandboxed): descriptor 0 is the pty
    /// phantom_ci made for this child, to become the new session's controlling terminal.
    take_terminal: bool,
    /// The cgroup's `cgroup.procs` to write `0` to — only when the child was not born in it.
    join: Option<RawFd>,
    /// How far the fallback loop of invariant 3 goes.
    fd_bound: libc::c_int,
    /// Invariant 4: the signals whose disposition is not the default here.
    signals: u64,
    limits: Vec<(libc::c_int, u64)>,
    /// uid, gid, supplementary groups.
    switch: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    /// Invariant 10: the directory bound read-only in a mount namespace of the child's own.
    read_only: Option<std::ffi::CString>,
    /// Invariant 11: the run's mount namespace to join, and the working directory to take in it.
    enter: Option<(RawFd, std::ffi::CString)>,
}

impl Plan {
    fn establish(&self) -> Result<(), libc::c_int> {
        sys::setsid()?;
        if self.take_terminal {
            sys::take_terminal(0)?;
        }
        sys::default_signals(self.signals);
        if let Some(procs) = self.join {
            sys::write_once(procs, b"0")?;
        }
        sys::close_on_exec_from_3(self.fd_bound)?;
        if let Some((ns, cwd)) = &self.enter {
            sys::enter_mount_namespace(*ns, cwd)?;
        }
        if let Some(dir) = &self.read_only {
            sys::read_only_view(dir)?;
        }
        for &(resource, value) in &self.limits {
            sys::set_rlimit(resource, value)?;
        }
        if let Some((uid, gid, groups)) = &self.switch {
            sys::switch_user(*uid, *gid, groups)?;
        }
        Ok(())
    }
}

/// Whether steps may be born in their cgroup: `PHANTOM_CI_CLONE_INTO_CGROUP=0` in phantom_ci's
/// environment turns it off (the fork-and-move fallback then starts every step; for diagnosis and
/// the tests of the fallback).
fn clone_into_cgroup_allowed() -> bool {
    std::env::var_os("PHANTOM_CI_CLONE_INTO_CGROUP").is_none_or(|v| v != "0")
}
