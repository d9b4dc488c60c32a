//! The pseudo-terminal of `phantom_ci debug`'s interactive shell: a new one per session, never the
//! operator's own terminal (see [`crate::isolation::boundary`] for why). phantom_ci holds the master
//! and relays; the shell gets the slave as its controlling terminal. While it runs, the operator's
//! terminal is in raw mode ([`RawMode`]), so that Ctrl-C, Ctrl-Z and line editing reach the shell's
//! own terminal instead of phantom_ci.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use nix::libc;

use crate::isolation::privilege::StepUser;

/// A pseudo-terminal's master, which phantom_ci keeps (non-blocking).
pub struct Pty {
    pub master: File,
}

impl Pty {
    /// A new pty and its slave, which belongs to the step user (as `login` gives a user its
    /// terminal), with the window size of `like` if that is a terminal.
    #[allow(unsafe_code)]
    pub fn open(user: &StepUser, like: BorrowedFd) -> Result<(Pty, OwnedFd), String> {
        let master = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open("/dev/ptmx")
            .map_err(|e| format!("cannot open a pseudo-terminal (`/dev/ptmx`): {e}"))?;
        let mut number: libc::c_uint = 0;
        // SAFETY: ioctls on a descriptor we own; TIOCGPTN writes one integer through the pointer.
        let unlocked = unsafe {
            libc::unlockpt(master.as_raw_fd()) == 0
                && libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &raw mut number) == 0
        };
        if !unlocked {
            return Err(format!(
                "cannot set up a pseudo-terminal: {}",
                std::io::Error::last_os_error()
            ));
        }
        let path = PathBuf::from(format!("/dev/pts/{number}"));
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
        if user.switch {
            std::os::unix::fs::fchown(&slave, Some(user.uid.as_raw()), None)
                .map_err(|e| format!("cannot give `{}` to `{}`: {e}", path.display(), user.name))?;
        }
        let pty = Pty { master };
        pty.copy_size(like);
        Ok((pty, slave.into()))
    }

    /// Gives the pty the window size of the terminal `from`, if it is one and the size changed.
    /// Returns whether it did.
    #[allow(unsafe_code)]
    pub fn copy_size(&self, from: BorrowedFd) -> bool {
        let mut wanted: libc::winsize = unsafe { std::mem::zeroed() };
        let mut current: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ/TIOCSWINSZ read or write one `winsize` through the pointer.
        unsafe {
            if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &raw mut wanted) != 0
                || libc::ioctl(self.master.as_raw_fd(), libc::TIOCGWINSZ, &raw mut current) != 0
            {
                return false;
            }
            if (wanted.ws_row, wanted.ws_col) == (current.ws_row, current.ws_col) {
                return false;
            }
            libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &raw const wanted) == 0
        }
    }
}

/// The operator's terminal in raw mode until dropped, then as it was.
pub struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: libc::termios,
}

impl<'a> RawMode<'a> {
    /// Raw mode on `fd`, or `None` if it is not a terminal.
    #[allow(unsafe_code)]
    pub fn enter(fd: BorrowedFd<'a>) -> Option<RawMode<'a>> {
        // SAFETY: tcgetattr/tcsetattr read and write one `termios` through the pointer;
        // cfmakeraw only changes the struct.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd.as_raw_fd(), &raw mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&raw mut raw);
            if libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &raw const raw) != 0 {
                return None;
            }
            Some(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode<'_> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        unsafe {
            libc::tcsetattr(self.fd.as_raw_fd(), libc::TCSAFLUSH, &raw const self.saved);
        }
    }
}
