//! The raw system calls a step's child makes between `clone3`/`fork` and `exec`
//! ([`crate::isolation::boundary`]). Raw, not libc's wrappers: a child `clone3` made skipped libc's
//! fork handling, so wrappers that take libc's locks or act on every thread (`setuid` and the other
//! `set*id` broadcast to all threads) must not run there. The child has a single thread, so a raw
//! `setuid` changes the whole process.
//!
//! Every function here only passes integers and pointers to memory the caller owns for the duration
//! of the call; none allocates, takes a lock or panics. Failures are the raw `errno`.

use std::ffi::CStr;
use std::os::fd::RawFd;

use nix::libc::{self, c_int, c_long};

/// The result of a raw system call: its value, or the `errno` it left.
fn check(value: c_long) -> Result<c_long, c_int> {
    if value < 0 {
        Err(nix::errno::Errno::last_raw())
    } else {
        Ok(value)
    }
}

/// `setsid()`: a new session and process group, no controlling terminal.
#[allow(unsafe_code)]
pub fn setsid() -> Result<(), c_int> {
    // SAFETY: no arguments; only changes this process's session.
    check(unsafe { libc::syscall(libc::SYS_setsid) }).map(drop)
}

/// Makes the terminal open on `fd` the session's controlling terminal (`TIOCSCTTY`).
#[allow(unsafe_code)]
pub fn take_terminal(fd: RawFd) -> Result<(), c_int> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal), no memory.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd, libc::TIOCSCTTY, 0 as c_long) }).map(drop)
}

/// The kernel's `struct sigaction` (not libc's, which is larger): enough to install `SIG_DFL`.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// The disposition of every signal in `mask` (bit `n - 1` for signal `n`,
/// [`crate::isolation::signals::not_default`]) back to the default (handlers go at `exec` anyway; this
/// undoes "ignore", which `exec` keeps). SIGKILL and SIGSTOP cannot be changed and are skipped.
#[allow(unsafe_code)]
pub fn default_signals(mask: u64) {
    let action = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signal in 1..=64 {
        if mask & (1 << (signal - 1)) != 0 && signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // SAFETY: `action` is a live kernel sigaction of the size passed (8 bytes of mask); the
            // old action is not asked for (null).
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal as c_long,
                    &action as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8 as c_long,
                );
            }
        }
    }
}

/// Unblocks every signal (the mask survives `exec`; the parent blocked them around `clone3`).
#[allow(unsafe_code)]
pub fn unblock_signals() -> Result<(), c_int> {
    let empty: u64 = 0;
    // SAFETY: `empty` is a live 8-byte signal set; the old mask is not asked for.
    check(unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as c_long,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8 as c_long,
        )
    })
    .map(drop)
}

/// Writes all of `bytes` to `fd` in one call, or fails (`EIO` for a short write).
#[allow(unsafe_code)]
pub fn write_once(fd: RawFd, bytes: &[u8]) -> Result<(), c_int> {
    // SAFETY: `bytes` is live for the call and its length is passed with it.
    let written = check(unsafe {
        libc::syscall(libc::SYS_write, fd, bytes.as_ptr(), bytes.len() as c_long)
    })?;
    if written as usize == bytes.len() {
        Ok(())
    } else {
        Err(libc::EIO)
    }
}

/// `dup3(from, to, 0)`: `to` becomes a copy of `from`, not close-on-exec.
#[allow(unsafe_code)]
pub fn dup_to(from: RawFd, to: RawFd) -> Result<(), c_int> {
    // SAFETY: integers only.
    check(unsafe { libc::syscall(libc::SYS_dup3, from, to, 0 as c_long) }).map(drop)
}

/// `chdir(dir)`.
#[allow(unsafe_code)]
pub fn chdir(dir: &CStr) -> Result<(), c_int> {
    // SAFETY: `dir` is a live NUL-terminated string.
    check(unsafe { libc::syscall(libc::SYS_chdir, dir.as_ptr()) }).map(drop)
}

/// Marks every descriptor from 3 up close-on-exec: `close_range(3, ~0, CLOSE_RANGE_CLOEXEC)`, or
/// before Linux 5.11 one `fcntl` at a time below `bound`.
#[allow(unsafe_code)]
pub fn close_on_exec_from_3(bound: c_int) -> Result<(), c_int> {
    // SAFETY: close_range only changes flags of this process's descriptors; plain integers.
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
    for fd in 3..bound {
        // SAFETY: fcntl on a descriptor number with integer arguments; EBADF for the ones not
        // open is expected.
        let flags = unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFD) };
        if flags >= 0 {
            // SAFETY: as above.
            check(unsafe {
                libc::syscall(
                    libc::SYS_fcntl,
                    fd,
                    libc::F_SETFD,
                    flags | c_long::from(libc::FD_CLOEXEC),
                )
            })?;
        }
    }
    Ok(())
}

/// A mount namespace of this process's own, every mount in it private: nothing done in it reaches
/// the machine's mounts.
#[allow(unsafe_code)]
fn private_mount_namespace() -> Result<(), c_int> {
    let none = std::ptr::null::<libc::c_char>();
    // SAFETY: an integer flag only; it changes only this process's mount namespace.
    check(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS as c_long) })?;
    // SAFETY: a NUL-terminated string live for the call, null pointers where mount takes none; it
    // changes only the new namespace.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount,
            none,
            c"/".as_ptr(),
            none,
            (libc::MS_REC | libc::MS_PRIVATE) as c_long,
            none,
        )
    })
    .map(drop)
}

/// A mount namespace of this process's own (private propagation, so nothing reaches the machine's
/// mounts), in which `dir` is bound onto itself read-only.
#[allow(unsafe_code)]
pub fn read_only_view(dir: &CStr) -> Result<(), c_int> {
    let none = std::ptr::null::<libc::c_char>();
    private_mount_namespace()?;
    // SAFETY (each mount): NUL-terminated strings live for the call, null pointers where mount
    // takes none; they change only the new namespace.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount,
            dir.as_ptr(),
            dir.as_ptr(),
            none,
            (libc::MS_BIND | libc::MS_REC) as c_long,
            none,
        )
    })?;
    check(unsafe {
        libc::syscall(
            libc::SYS_mount,
            none,
            dir.as_ptr(),
            none,
            (libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY) as c_long,
            none,
        )
    })?;
    Ok(())
}

/// The overlay does its writes (the steps' files in the upper layer) with the credentials of the
/// process that mounted it: that process must not be all of root. Its file system uid and gid become
/// the step user's (so root's reserved blocks, granted to uid 0, are not the steps'), keeping its
/// capabilities (`SECBIT_NO_SETUID_FIXUP`: the overlay still needs to read the base and set its own
/// attributes), and `CAP_SYS_RESOURCE` goes (quotas and reserved blocks apply).
#[allow(unsafe_code)]
fn as_mounter_for(uid: libc::uid_t, gid: libc::gid_t) -> Result<(), c_int> {
    const PR_SET_SECUREBITS: c_long = 28;
    const SECBIT_NO_SETUID_FIXUP: c_long = 1 << 2;
    const CAP_SYS_RESOURCE: u32 = 24;
    const VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // SAFETY: integers only; it changes only this process's security bits.
    check(unsafe { libc::syscall(libc::SYS_prctl, PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP) })?;
    // SAFETY: integers only (these calls return the old id, never an error).
    unsafe {
        libc::syscall(libc::SYS_setfsgid, gid as c_long);
        libc::syscall(libc::SYS_setfsuid, uid as c_long);
    }
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: a live header and two data structs, as version 3 of the call takes them.
    check(unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    })?;
    data[0].effective &= !(1 << CAP_SYS_RESOURCE);
    data[0].permitted &= !(1 << CAP_SYS_RESOURCE);
    // SAFETY: as above; only this process's capabilities change (fewer of them).
    check(unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) })
        .map(drop)
}

/// A mount namespace of this process's own (private propagation, so nothing reaches the machine's
/// mounts) with an overlay file system mounted on `target`, its writes done as `uid`/`gid`
/// ([`as_mounter_for`]): `options` first (with `volatile`), then
/// `fallback` (without it) where the kernel does not know that option (before Linux 5.10).
#[allow(unsafe_code)]
pub fn overlay_namespace(
    target: &CStr,
    options: &CStr,
    fallback: &CStr,
    (uid, gid): (libc::uid_t, libc::gid_t),
) -> Result<(), c_int> {
    let overlay = c"overlay";
    private_mount_namespace()?;
    as_mounter_for(uid, gid)?;
    let mount = |data: &CStr| {
        // SAFETY: NUL-terminated strings live for the call; `data` is the option string. It
        // changes only this process's new namespace.
        check(unsafe {
            libc::syscall(
                libc::SYS_mount,
                overlay.as_ptr(),
                target.as_ptr(),
                overlay.as_ptr(),
                (libc::MS_NOSUID | libc::MS_NODEV) as c_long,
                data.as_ptr(),
            )
        })
    };
    match mount(options) {
        Err(libc::EINVAL) => mount(fallback).map(drop),
        other => other.map(drop),
    }
}

/// Joins the mount namespace `ns` (a descriptor of `/proc/<pid>/ns/mnt`), then goes to `cwd` in it:
/// joining moves the working directory to the namespace's root.
#[allow(unsafe_code)]
pub fn enter_mount_namespace(ns: RawFd, cwd: &CStr) -> Result<(), c_int> {
    // SAFETY: integers only; it changes only this (single-threaded) process's mount namespace.
    check(unsafe { libc::syscall(libc::SYS_setns, ns, libc::CLONE_NEWNS as c_long) })?;
    chdir(cwd)
}

/// Sets both the soft and the hard limit of `resource` to `value` (`prlimit64` on this process).
#[allow(unsafe_code)]
pub fn set_rlimit(resource: c_int, value: u64) -> Result<(), c_int> {
    let limit = libc::rlimit64 {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `limit` is a live rlimit64; the old limit is not asked for (null); pid 0 is this
    // process.
    check(unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0 as c_long,
            resource as c_long,
            &limit as *const libc::rlimit64,
            std::ptr::null_mut::<libc::rlimit64>(),
        )
    })
    .map(drop)
}

/// The supplementary groups, then the gid, then the uid (last, while the others may still be set),
/// for this (single-threaded) process.
#[allow(unsafe_code)]
pub fn switch_user(
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: &[libc::gid_t],
) -> Result<(), c_int> {
    // SAFETY: `groups` is live for the call and its length is passed with it.
    check(unsafe { libc::syscall(libc::SYS_setgroups, groups.len() as c_long, groups.as_ptr()) })?;
    // SAFETY: integers only.
    check(unsafe { libc::syscall(libc::SYS_setgid, gid as c_long) })?;
    // SAFETY: integers only.
    check(unsafe { libc::syscall(libc::SYS_setuid, uid as c_long) })?;
    Ok(())
}

/// `execve(path, argv, envp)`; returns only on failure.
///
/// # Safety
/// `argv` and `envp` must point to live arrays of pointers to NUL-terminated strings, each ending
/// with a null pointer.
#[allow(unsafe_code)]
pub unsafe fn execve(
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> c_int {
    // SAFETY: the caller's contract; execve reads these and replaces the process, or fails.
    unsafe { libc::syscall(libc::SYS_execve, path, argv, envp) };
    nix::errno::Errno::last_raw()
}

/// Ends this process at once with `code` (`exit_group`): no destructor, no atexit handler, no
/// flush of buffers the parent shares.
#[allow(unsafe_code)]
pub fn exit(code: c_int) -> ! {
    loop {
        // SAFETY: integers only; the call does not return.
        unsafe { libc::syscall(libc::SYS_exit_group, code as c_long) };
    }
}
