//! A step's process started by `clone3` with `CLONE_INTO_CGROUP` (Linux ≥ 5.7): born inside its
//! cgroup instead of moved there after a `fork`, which costs the kernel's wait for a grace period
//! (10–16 ms when the machine is idle, docs/bench.md). [`crate::isolation::boundary`] decides when;
//! this module does the clone, the child's side up to `exec`, and [`StepChild`], the handle of a step
//! however it was started.
//!
//! The child of `clone3` is a copy of phantom_ci, like a `fork`'s, but libc's fork handling did not
//! run in it: between the clone and the `exec` it makes only raw system calls ([`super::sys`]) on
//! values prepared before the clone ([`Exec`]) — no allocation, no lock, no panic — and reports a
//! failure (of a step of the boundary, or of `exec`) as its `errno` through a pipe made for it, which
//! `exec` closes when it succeeds. Signals are blocked in phantom_ci's thread across the clone, so no
//! handler of phantom_ci's runs in the child; the child sets every disposition to the default and
//! unblocks them just before `exec`.
//!
//! A step that does not switch user may instead share phantom_ci's memory until its `exec`
//! (`CLONE_VM | CLONE_VFORK`, as `posix_spawn` does; x86_64 only, [`clone3_shared`]): no copy of the
//! address space is made and thrown away per step. The child then runs on a stack of its own (with a
//! guard page), entered from the few instructions after the system call, leaves its errno in the
//! shared memory instead of a pipe, and phantom_ci's thread waits until it has called `exec`. A step
//! that switches user never shares memory ([`crate::isolation::boundary`], invariant 5), and none
//! does before Linux 5.16, where a core dump of one process sharing the memory killed them all.

use std::ffi::{CString, OsStr, OsString};
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::libc::{self, c_char, c_int};
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};

use crate::isolation::sys;

/// `CLONE_INTO_CGROUP` (Linux 5.7): the `cgroup` field of the arguments names the child's cgroup.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Set once the kernel said it has no `clone3` or no `CLONE_INTO_CGROUP`: later steps go straight
/// to the fallback.
static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
#[repr(C, align(8))]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// A step's main process, started by [`crate::isolation::boundary::Boundary`]. Like
/// [`std::process::Child`], it stays a zombie (its pid reserved) until waited for.
#[derive(Debug)]
pub struct StepChild {
    pid: libc::pid_t,
    status: Option<ExitStatus>,
}

impl StepChild {
    pub(crate) fn new(pid: u32) -> StepChild {
        StepChild {
            pid: pid as libc::pid_t,
            status: None,
        }
    }

    /// The process id, which is also its process group and session.
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Its exit status if it has ended (reaping it), else `None`.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.reap(libc::WNOHANG)
    }

    /// Waits for it to end.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.reap(0)? {
                return Ok(status);
            }
        }
    }

    #[allow(unsafe_code)]
    fn reap(&mut self, flags: c_int) -> std::io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let mut raw: c_int = 0;
        loop {
            // SAFETY: waitpid writes one int to `raw`, a live local.
            let got = unsafe { libc::waitpid(self.pid, &mut raw, flags) };
            if got == self.pid {
                let status = ExitStatus::from_raw(raw);
                self.status = Some(status);
                return Ok(Some(status));
            }
            if got == 0 {
                return Ok(None);
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

/// Everything the child needs to start the program, made before the clone.
pub(super) struct Exec {
    /// Kept alive for the pointers below.
    _strings: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    /// Where to look for the program, in order (`execvp`'s search of the step's `PATH`).
    candidates: Vec<CString>,
    /// `/bin/sh <candidate> args…`, for a file without `#!` (`ENOEXEC`), as `execvp` does; slot 1
    /// is filled in by the child.
    sh_argv: Vec<*const c_char>,
    sh: CString,
    /// The working directory, or `None` to keep phantom_ci's.
    cwd: Option<CString>,
    /// The descriptors that become 0, 1 and 2 (none of them below 3).
    stdio: [RawFd; 3],
}

fn c_string(bytes: Vec<u8>) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        std::io::Error::new(ErrorKind::InvalidInput, "nul byte found in provided data")
    })
}

impl Exec {
    /// `argv` run in `cwd` with exactly `env` (later keys win, sorted as std's `Command` passes
    /// them), with `stdio` as descriptors 0, 1 and 2.
    pub(super) fn new<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        argv: &[OsString],
        env: &[(K, V)],
        cwd: Option<&Path>,
        stdio: [RawFd; 3],
    ) -> std::io::Result<Exec> {
        let Some(program) = argv.first() else {
            return Err(std::io::Error::new(
                ErrorKind::InvalidInput,
                "the step has no command",
            ));
        };
        let mut strings = Vec::new();
        for arg in argv {
            strings.push(c_string(arg.clone().into_vec())?);
        }
        let vars: std::collections::BTreeMap<&OsStr, &OsStr> =
            env.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        for (key, value) in &vars {
            strings.push(c_string([key.as_bytes(), b"=", value.as_bytes()].concat())?);
        }
        let pointers = |range: std::ops::Range<usize>| -> Vec<*const c_char> {
            strings[range]
                .iter()
                .map(|s| s.as_ptr())
                .chain([std::ptr::null()])
                .collect()
        };
        let argv_ptrs = pointers(0..argv.len());
        let envp = pointers(argv.len()..strings.len());
        let program = program.as_bytes();
        let candidates = if program.contains(&b'/') {
            vec![c_string(program.to_vec())?]
        } else {
            let path = vars
                .get(OsStr::new("PATH"))
                .map_or(&b"/bin:/usr/bin"[..], |p| p.as_bytes());
            path.split(|b| *b == b':')
                .map(|dir| match dir {
                    b"" => c_string(program.to_vec()),
                    dir => c_string([dir, b"/", program].concat()),
                })
                .collect::<std::io::Result<_>>()?
        };
        let sh = c_string(b"/bin/sh".to_vec())?;
        let mut sh_argv = vec![sh.as_ptr(), std::ptr::null()];
        sh_argv.extend(argv_ptrs.iter().skip(1));
        Ok(Exec {
            _strings: strings,
            argv: argv_ptrs,
            envp,
            candidates,
            sh_argv,
            sh,
            cwd: cwd
                .map(|cwd| c_string(cwd.as_os_str().as_bytes().to_vec()))
                .transpose()?,
            stdio,
        })
    }

    /// The child's side: descriptors 0–2, the working directory, `establish` (the boundary's
    /// invariants), signals unblocked, `exec`. Returns only the `errno` of what failed.
    #[allow(unsafe_code)]
    fn run_child(&mut self, establish: &dyn Fn() -> Result<(), c_int>) -> c_int {
        let prepared = (|| {
            for (to, from) in (0..).zip(self.stdio) {
                sys::dup_to(from, to)?;
            }
            if let Some(cwd) = &self.cwd {
                sys::chdir(cwd)?;
            }
            establish()?;
            sys::unblock_signals()
        })();
        if let Err(errno) = prepared {
            return errno;
        }
        let mut last = libc::ENOENT;
        let mut denied = false;
        for candidate in &self.candidates {
            // SAFETY: `argv` and `envp` point into `_strings` and end with a null pointer.
            let errno =
                unsafe { sys::execve(candidate.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
            match errno {
                libc::ENOEXEC => {
                    if let Some(slot) = self.sh_argv.get_mut(1) {
                        *slot = candidate.as_ptr();
                    }
                    // SAFETY: `sh_argv` points into `_strings`, `sh` and `candidates`, ending
                    // with a null pointer.
                    return unsafe {
                        sys::execve(self.sh.as_ptr(), self.sh_argv.as_ptr(), self.envp.as_ptr())
                    };
                }
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR => {}
                other => return other,
            }
            last = errno;
        }
        if denied { libc::EACCES } else { last }
    }
}

/// `clone3` with `args` (without `CLONE_VM`: the child is a copy of this process, with this thread
/// alone, like a `fork`'s), signals blocked in this thread across it so that no handler of
/// phantom_ci's runs in the child. The child runs `child` and then ends (`exit_group(127)`) if
/// `child` returned: it never comes back here. `child` must only make raw system calls
/// ([`super::sys`]) on values prepared before the clone — no allocation, no lock, no libc state that
/// fork handling would have reset. The parent gets the child's pid, or the clone's error.
#[allow(unsafe_code)]
fn clone3(args: &mut CloneArgs, child: impl FnOnce()) -> std::io::Result<libc::pid_t> {
    with_signals_blocked(|| {
        // SAFETY: `args` is a live clone_args of the size passed. The child returns here with 0,
        // runs `child` under the contract above, and leaves by `exit_group` without returning from
        // this function.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                args as *mut CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if pid == 0 {
            child();
            sys::exit(127);
        }
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(pid as libc::pid_t)
    })?
}

/// Runs `clone` (a clone and nothing else) with every signal blocked in this thread, so that no
/// handler of phantom_ci's runs in the child it makes; the mask is restored after.
fn with_signals_blocked<T>(clone: impl FnOnce() -> T) -> std::io::Result<T> {
    let mut blocked = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut blocked),
    )?;
    let made = clone();
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&blocked), None);
    Ok(made)
}

/// `CLONE_VM | CLONE_VFORK`: the child shares phantom_ci's memory, and this thread waits until the
/// child has called `exec` (or ended) — `posix_spawn`'s way, which spares copying phantom_ci's
/// address space for a child that throws it away at once.
const CLONE_VM_VFORK: u64 = (libc::CLONE_VM | libc::CLONE_VFORK) as u64;

/// The stack of a child that shares phantom_ci's memory: its own, as its calls must not overwrite
/// phantom_ci's frames, with a page that faults below it (an overflow kills the child instead of
/// writing into phantom_ci's memory).
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    /// Room for the child's few frames (`Exec::run_child`, the boundary's `establish`): they hold
    /// no buffers.
    const SIZE: usize = 64 * 1024;

    #[allow(unsafe_code)]
    fn new() -> std::io::Result<ChildStack> {
        let guard = 4096;
        let len = guard + Self::SIZE;
        // SAFETY: a new private anonymous mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let stack = ChildStack { base, len };
        // SAFETY: the lowest page of the mapping just made, which nothing uses.
        if unsafe { libc::mprotect(base, guard, libc::PROT_NONE) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stack)
    }
}

impl Drop for ChildStack {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no child runs on it any more (the
        // clone that used it returned only after the child's `exec` or end).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Where a child sharing phantom_ci's memory starts, on its own stack: runs the closure `data`
/// points to, then ends (`exit_group(127)`) if it returned.
extern "C" fn shared_child(data: *mut libc::c_void) -> ! {
    // SAFETY: `clone3_shared` passes a pointer to a live `&mut dyn FnMut()`, which it keeps alive
    // until the child has called `exec` or ended (CLONE_VFORK).
    #[allow(unsafe_code)]
    let child = unsafe { &mut *data.cast::<&mut dyn FnMut()>() };
    child();
    sys::exit(127)
}

/// `clone3` with `args` plus `CLONE_VM | CLONE_VFORK`, signals blocked across it like [`clone3`]'s:
/// the child runs `child` on a stack of its own and never returns; this thread goes on once the
/// child has called `exec` or ended. `child` is under [`clone3`]'s contract, and more: whatever it
/// writes, phantom_ci sees. It writes its own stack, what `child` captured to report with, and —
/// through libc's `syscall` wrapper, without a TLS of its own — this thread's `errno`, which nothing
/// reads after this function (it returns the kernel's own result). Only on x86_64, whose system call
/// this function makes itself: the child must not return through a libc wrapper onto a stack that is
/// not its own. Only from Linux 5.16 ([`may_share_memory`]).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn clone3_shared(args: &mut CloneArgs, mut child: impl FnMut()) -> std::io::Result<libc::pid_t> {
    thread_local! {
        /// Made at this thread's first such clone and used by every later one: a child is done with
        /// it when its clone returns.
        static STACK: std::cell::OnceCell<ChildStack> = const { std::cell::OnceCell::new() };
    }
    STACK.with(|stack| {
        let stack = match stack.get() {
            Some(stack) => stack,
            None => {
                let made = ChildStack::new()?;
                stack.get_or_init(|| made)
            }
        };
        clone3_on(stack, args, &mut child)
    })
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn clone3_on(
    stack: &ChildStack,
    args: &mut CloneArgs,
    mut child: &mut dyn FnMut(),
) -> std::io::Result<libc::pid_t> {
    args.flags |= CLONE_VM_VFORK;
    args.stack = stack.base as u64;
    // The kernel starts the child at `stack + stack_size`: 16-byte aligned, as a `call` expects.
    args.stack_size = stack.len as u64;
    let data: *mut &mut dyn FnMut() = &mut child;
    let result = with_signals_blocked(|| {
        let result: libc::c_long;
        // SAFETY: `args` is a live clone_args of the size passed, naming a stack that stays mapped
        // until this call returns, which with CLONE_VFORK is after the child's `exec` or end. In
        // the parent (rax != 0) the code after `syscall` only jumps to the end. In the child
        // (rax == 0), on the new stack, it clears the frame pointer and calls `shared_child(data)`,
        // which never returns (`ud2` would stop it if it did). `data` points to `child` on this
        // frame, alive until we return.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "xor ebp, ebp",
                "mov rdi, r12",
                "call r13",
                "ud2",
                "2:",
                inlateout("rax") libc::SYS_clone3 => result,
                in("rdi") args as *mut CloneArgs,
                in("rsi") std::mem::size_of::<CloneArgs>(),
                in("r12") data,
                in("r13") shared_child as extern "C" fn(*mut libc::c_void) -> !,
                lateout("rcx") _,
                lateout("r11") _,
            );
        }
        result
    })?;
    if result < 0 {
        return Err(std::io::Error::from_raw_os_error(-result as i32));
    }
    Ok(result as libc::pid_t)
}

/// Whether a child may share phantom_ci's memory on this kernel: from Linux 5.16 on. Before, a core
/// dump of any process sharing the memory killed them all (`zap_threads`): a child that crashed
/// before its `exec`, with core dumps on, would have taken phantom_ci and its other runs with it.
fn may_share_memory() -> bool {
    static FROM_5_16: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FROM_5_16.get_or_init(|| {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        kernel_at_least(&release, (5, 16))
    })
}

/// Whether the kernel release `release` (`6.18.44-fc-v1300`) is `at_least` (major, minor).
fn kernel_at_least(release: &str, at_least: (u32, u32)) -> bool {
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= at_least,
        _ => false,
    }
}

/// Close-on-exec copies of `fds`, numbered 3 or above (std duplicates from 3 up): descriptors a
/// child can put in place as 0, 1 and 2 without one overwriting another.
pub(super) fn above_2([a, b, c]: [BorrowedFd; 3]) -> std::io::Result<[std::os::fd::OwnedFd; 3]> {
    Ok([
        a.try_clone_to_owned()?,
        b.try_clone_to_owned()?,
        c.try_clone_to_owned()?,
    ])
}

/// Starts `program` with `args` and exactly `env`, its descriptors 0–2 `stdio`, in a session of its
/// own (`setsid`), signals at their defaults — and returns at once: unlike a step's start it does not
/// wait for the `exec` (phantom_ci's hook starting its detached worker: the pusher waits for this).
/// A failure of the child after the clone is written to its stderr as `<failure><errno>`. Where the
/// kernel has no `clone3` (Linux < 5.3, or a filter refusing it), std's spawn with the same session,
/// which waits for the `exec`.
pub fn detached(
    program: &Path,
    args: &[&OsStr],
    env: &[(OsString, OsString)],
    stdio: [BorrowedFd; 3],
    failure: &str,
) -> std::io::Result<()> {
    let argv: Vec<OsString> = std::iter::once(program.as_os_str())
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect();
    // Copies numbered 3 and up, so that putting one in place cannot overwrite another.
    let copies = above_2(stdio)?;
    let mut exec = Exec::new(&argv, env, None, copies.each_ref().map(AsRawFd::as_raw_fd))?;
    let failure = failure.as_bytes();
    let mut args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    let signals = super::signals::not_default();
    let cloned = clone3(&mut args, || {
        let errno = exec.run_child(&|| {
            sys::setsid()?;
            sys::default_signals(signals);
            Ok(())
        });
        // The errno in decimal, on the child's own stack.
        let mut digits = [b'\n'; 12];
        let mut at = digits.len() - 1;
        let mut n = errno.unsigned_abs();
        loop {
            at -= 1;
            if let Some(d) = digits.get_mut(at) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || at == 0 {
                break;
            }
        }
        let _ = sys::write_once(2, failure);
        let _ = sys::write_once(2, digits.get(at..).unwrap_or_default());
    });
    match cloned {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL | libc::EPERM)
            ) =>
        {
            detached_by_fork(&argv, env, copies)
        }
        Err(e) => Err(e),
    }
}

/// [`detached`] without `clone3`: std's `fork`, then `setsid` in the child.
#[allow(unsafe_code)]
fn detached_by_fork(
    argv: &[OsString],
    env: &[(OsString, OsString)],
    [stdin, stdout, stderr]: [std::os::fd::OwnedFd; 3],
) -> std::io::Result<()> {
    let mut command = std::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: `setsid` is one raw system call, made in the child between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            sys::setsid().map_err(std::io::Error::from_raw_os_error)
        });
    }
    command.spawn().map(drop)
}

/// Starts `exec` as a new process inside the cgroup whose directory is `cgroup`, with
/// `establish` run in the child before `exec`. `Ok(None)` where the kernel or the cgroup refused the
/// clone (no child was made; the caller falls back to `fork` and a move); an error where the child
/// was made but could not start the program (it has been waited for).
pub(super) fn clone_into(
    cgroup: BorrowedFd,
    exec: &mut Exec,
    establish: &dyn Fn() -> Result<(), c_int>,
    share_memory: bool,
) -> std::io::Result<Option<StepChild>> {
    if UNSUPPORTED.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // Sharing phantom_ci's memory, the child leaves its errno in it: when the clone returns the child
    // has called `exec` (and the value is still 0) or ended.
    #[cfg(target_arch = "x86_64")]
    if share_memory && may_share_memory() {
        let failed = std::sync::atomic::AtomicI32::new(0);
        let cloned = clone3_shared(&mut args, || {
            failed.store(exec.run_child(establish), Ordering::Relaxed);
        });
        return started(cloned, || Ok(failed.load(Ordering::Relaxed)));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = share_memory;
    // A copy of phantom_ci writes its errno to a pipe made for it, which a successful `exec` closes.
    let (mut report, report_writer) = std::io::pipe()?;
    let report_fd = report_writer.as_raw_fd();
    let cloned = clone3(&mut args, || {
        let errno = exec.run_child(establish);
        let _ = sys::write_once(report_fd, &errno.to_ne_bytes());
    });
    drop(report_writer);
    started(cloned, || {
        let mut errno = [0u8; 4];
        let mut got = 0;
        while got < errno.len() {
            match report.read(&mut errno[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(if got == 0 {
            0
        } else {
            i32::from_ne_bytes(errno)
        })
    })
}

/// What [`clone_into`]'s clone came to: `None` where the kernel refused it (remembered when it cannot
/// do it at all), the child once `errno` (read after the clone) says its start did not fail, else
/// the error, the child waited for.
fn started(
    cloned: std::io::Result<libc::pid_t>,
    errno: impl FnOnce() -> std::io::Result<c_int>,
) -> std::io::Result<Option<StepChild>> {
    let pid = match cloned {
        Ok(pid) => pid,
        Err(clone_error) => {
            if matches!(
                clone_error.raw_os_error(),
                Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL)
            ) {
                UNSUPPORTED.store(true, Ordering::Relaxed);
            }
            return Ok(None);
        }
    };
    let mut child = StepChild::new(pid as u32);
    match errno() {
        Ok(0) => Ok(Some(child)),
        Ok(errno) => {
            let _ = child.wait();
            Err(std::io::Error::from_raw_os_error(errno))
        }
        Err(e) => {
            let _ = child.wait();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    /// Runs `detached` with stdout and stderr a pipe; what the child wrote, read until it closed
    /// (`Err`: the start failed at once, as std's spawn says where the kernel has no `clone3`).
    fn detached_output(program: &str, args: &[&str]) -> std::io::Result<String> {
        let (mut reader, writer) = std::io::pipe().unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let env = [(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))];
        let started = detached(
            Path::new(program),
            &args,
            &env,
            [null.as_fd(), writer.as_fd(), writer.as_fd()],
            "cannot start: errno ",
        );
        drop(writer);
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        started.map(|()| out)
    }

    #[test]
    fn memory_is_shared_only_from_linux_5_16() {
        assert!(kernel_at_least("6.18.44-fc-v1300\n", (5, 16)));
        assert!(kernel_at_least("5.16.0", (5, 16)));
        assert!(!kernel_at_least("5.15.167-generic", (5, 16)));
        assert!(!kernel_at_least("4.19.0", (5, 16)));
        assert!(!kernel_at_least("", (5, 16)));
        assert!(!kernel_at_least("garbage", (5, 16)));
    }

    #[test]
    fn a_detached_child_leads_its_own_session_with_the_descriptors_given() {
        let out = detached_output(
            "/bin/sh",
            &[
                "-c",
                "read pid comm state ppid pgrp session rest < /proc/$$/stat; \
                 test $pid = $session && echo own-session; readlink /proc/$$/fd/0",
            ],
        );
        assert_eq!(out.unwrap(), "own-session\n/dev/null\n");
    }

    #[test]
    fn a_detached_child_that_cannot_start_says_why_on_its_stderr() {
        match detached_output("/nonexistent/phantom_ci", &[]) {
            // Born by clone3, which does not wait for the exec: the child says it.
            Ok(out) => assert_eq!(out, format!("cannot start: errno {}\n", libc::ENOENT)),
            // Started by fork (no clone3 here), which does wait: the start fails.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT)),
        }
    }
}
