//! SIGTERM, SIGINT and SIGHUP to phantom_ci end the run in progress cleanly (SPEC §4.4): the handler
//! only notes the signal; the step loop sees it, stops the step's processes, and the run is recorded as
//! `aborted`. Nothing is done inside the handler but two atomic stores.
//!
//! SIGUSR1 is `phantom_ci cancel`'s nudge (SPEC §6): it does not stop phantom_ci, it only tells the step
//! loop to look at the run's cancel request now rather than at its next regular look
//! ([`cancel_nudges`]). The request itself is a file in the run's directory, so a process running
//! several things only cancels the run it was asked to.

use std::sync::Once;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static LAST: AtomicI32 = AtomicI32::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);
static NUDGES: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();
static WINCHES: AtomicUsize = AtomicUsize::new(0);
static INSTALL_WINCH: Once = Once::new();

/// The signals that end a run.
const TERMINATING: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

extern "C" fn note(signal: nix::libc::c_int) {
    LAST.store(signal, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn winch(_signal: nix::libc::c_int) {
    WINCHES.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn nudge(_signal: nix::libc::c_int) {
    NUDGES.fetch_add(1, Ordering::SeqCst);
}

/// Gives SIGPIPE back its default disposition, which Rust's runtime sets to "ignore": a command
/// whose only work is its output then ends as `cat` and `git` do when the reader goes away (`… | head`):
/// killed by SIGPIPE, status 141 in a shell, with nothing on stderr. Only for output-only commands: a
/// run must outlive a console that went away.
#[allow(unsafe_code)]
pub fn end_on_closed_pipe() {
    // SAFETY: SIG_DFL installs no handler, so nothing runs in signal context; the previous
    // disposition (ignore) is not needed back.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Installs the handlers (once per process). From then on these signals no longer kill phantom_ci at
/// once: whoever runs work must look at [`requested`] and stop.
#[allow(unsafe_code)]
pub fn install() -> Result<(), String> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        // SA_RESTART: file and pipe I/O (libgit2's included) is restarted, not failed with EINTR; the
        // step loop polls with a short timeout and sees the flag within it.
        let action = SigAction::new(
            SigHandler::Handler(note),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for signal in TERMINATING {
            // SAFETY: `note` is async-signal-safe: it only stores to atomics.
            if let Err(e) = unsafe { sigaction(signal, &action) } {
                result = Err(format!("cannot install a handler for {signal}: {e}"));
            }
        }
        let action = SigAction::new(
            SigHandler::Handler(nudge),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: `nudge` is async-signal-safe: it only adds to an atomic.
        if let Err(e) = unsafe { sigaction(Signal::SIGUSR1, &action) } {
            result = Err(format!("cannot install a handler for SIGUSR1: {e}"));
        }
    });
    result
}

/// The signals whose disposition in this process may not be the default, as a mask (bit `n - 1` for
/// signal `n`): those ignored or handled when first asked (what phantom_ci inherited — `nohup`'s
/// SIGHUP — and what Rust's runtime set before `main`: SIGPIPE ignored), and every signal this module
/// ever changes. A child between its clone and `exec` resets just these
/// ([`crate::isolation::sys::default_signals`]): 62 system calls per step were 20–30 µs, which a
/// child sharing phantom_ci's memory makes phantom_ci wait for.
#[allow(unsafe_code)]
pub fn not_default() -> u64 {
    static INHERITED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let inherited = *INHERITED.get_or_init(|| {
        let mut mask = 0u64;
        for signal in 1..=64 {
            // SAFETY: libc's sigaction is plain data, for which all zeroes is a valid value.
            let mut old: nix::libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: a query only (no new action): libc writes the current one into `old`, a
            // live local of its own sigaction type.
            let asked = unsafe { nix::libc::sigaction(signal, std::ptr::null(), &mut old) };
            if asked != 0 || old.sa_sigaction != nix::libc::SIG_DFL {
                mask |= 1 << (signal - 1);
            }
        }
        mask
    });
    let own = TERMINATING
        .iter()
        .chain(&[Signal::SIGUSR1, Signal::SIGWINCH, Signal::SIGPIPE])
        .fold(0u64, |mask, signal| mask | 1 << (*signal as i32 - 1));
    inherited | own
}

/// The last terminating signal received, if any.
pub fn requested() -> Option<Signal> {
    match LAST.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// Whether a terminating signal came more than once (a second Ctrl-C): stop without a grace period.
pub fn insisted() -> bool {
    COUNT.load(Ordering::SeqCst) > 1
}

/// How many SIGUSR1 (`phantom_ci cancel`'s nudge) this process received: when it changes, the step loop
/// looks for the run's cancel request at once.
pub fn cancel_nudges() -> usize {
    NUDGES.load(Ordering::SeqCst)
}

/// Notes SIGWINCH (the operator's terminal changed its size) from now on: `phantom_ci debug` copies
/// the new size to its shell's pty ([`window_changes`]). A relay waiting in `poll` wakes at once
/// (Linux never restarts `poll`); other calls are restarted.
#[allow(unsafe_code)]
pub fn install_winch() -> Result<(), String> {
    let mut result = Ok(());
    INSTALL_WINCH.call_once(|| {
        let action = SigAction::new(
            SigHandler::Handler(winch),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: `winch` is async-signal-safe: it only adds to an atomic.
        if let Err(e) = unsafe { sigaction(Signal::SIGWINCH, &action) } {
            result = Err(format!("cannot install a handler for SIGWINCH: {e}"));
        }
    });
    result
}

/// How many SIGWINCH this process received since [`install_winch`].
pub fn window_changes() -> usize {
    WINCHES.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signals_to_reset_are_the_ignored_and_handled_ones() {
        let bit = |signal: Signal| 1u64 << (signal as i32 - 1);
        let mask = not_default();
        // Rust's runtime ignores SIGPIPE; phantom_ci handles these.
        for signal in [
            Signal::SIGPIPE,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGUSR1,
            Signal::SIGWINCH,
        ] {
            assert_ne!(mask & bit(signal), 0, "{signal}");
        }
        // SIGKILL cannot be changed; SIGCHLD is left at its default by phantom_ci.
        assert_eq!(mask & bit(Signal::SIGKILL), 0);
        assert_eq!(mask & bit(Signal::SIGCHLD), 0);
    }
}
