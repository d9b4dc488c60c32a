//! A process descriptor (`pidfd_open(2)`, Linux 5.3) for a child phantom_ci started: it becomes
//! readable when the child exits, so a loop that waits for output can wait for the child's end in the
//! same `poll` instead of looking at it again and again.
//!
//! Opening it for a child of this process is race-free: a child that exited stays a zombie, its pid
//! taken, until phantom_ci waits for it, so the pid cannot name another process in between. Where the
//! kernel has no `pidfd_open` (before 5.3, or a seccomp filter refusing it) there is no descriptor and
//! the caller looks at the child from time to time, as before.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Child;

use nix::libc;

/// A descriptor that becomes readable when `child` exits, or `None` where the kernel gives none.
pub fn open(child: &Child) -> Option<OwnedFd> {
    open_pid(child.id())
}

/// The same for the child process `pid` (a step's, [`crate::isolation::spawn::StepChild::id`]),
/// not yet waited for.
#[allow(unsafe_code)]
pub fn open_pid(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1; it touches no memory
    // of this process.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    let fd = libc::c_int::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // The kernel opens it close-on-exec (pidfds always are), so no step inherits it.
    // SAFETY: `fd` was just returned by the kernel, is open, and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;

    #[test]
    fn the_descriptor_becomes_readable_when_the_child_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let Some(fd) = open(&child) else {
            eprintln!("skipped: no pidfd_open on this kernel");
            let _ = child.wait();
            return;
        };
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::ZERO).unwrap(), 0, "not yet");
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::NONE).unwrap(), 1);
        assert!(child.try_wait().unwrap().is_some(), "it ended");
    }
}
