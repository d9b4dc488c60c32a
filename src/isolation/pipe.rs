//! What a pipe holds: how many bytes wait in it, so that a reader takes them in one go.

use std::io::PipeReader;
use std::os::fd::AsRawFd;

/// How many bytes wait in `pipe` (`FIONREAD`), if that can be told.
#[allow(unsafe_code)]
pub fn pending_bytes(pipe: &PipeReader) -> Option<usize> {
    let mut pending: nix::libc::c_int = 0;
    // SAFETY: FIONREAD on a pipe stores the number of bytes in it into the `c_int` it is given,
    // which lives on this stack for the whole call.
    let asked = unsafe { nix::libc::ioctl(pipe.as_raw_fd(), nix::libc::FIONREAD, &mut pending) };
    if asked == 0 {
        usize::try_from(pending).ok()
    } else {
        None
    }
}
