//! No process of a run outlives it (SPEC §4.4). phantom_ci is a child subreaper: a step's descendants
//! that double-fork or call `setsid` are adopted by phantom_ci instead of init, so when a run ends they
//! are still phantom_ci's descendants, and [`kill_orphans`] finds, kills and reaps them.
//!
//! Steps that are running are registered (their main process), so that the end of one run never touches
//! the processes of another run going on in the same phantom_ci process. Where the run has a cgroup
//! ([`crate::isolation::cgroup`]) that is exact, and this stays as a second line; elsewhere this is
//! the line.

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid, waitpid};
use nix::unistd::{Pid, getpid};

use crate::isolation::spawn::StepChild;

/// Main processes of the steps running now, in this process.
static RUNNING: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// How many rounds [`kill_orphans`] tries before it gives up on processes that do not die.
const ROUNDS: usize = 500;

/// Makes phantom_ci the reaper of its descendants' orphans.
pub fn become_subreaper() -> Result<(), String> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("cannot become a child subreaper (prctl): {e}"))
}

/// Makes the child of `command` die (SIGKILL) with the phantom_ci thread that starts it: a `git
/// checkout` or a `cp` phantom_ci started for itself never goes on writing after phantom_ci was
/// killed (the next invocation would find a half-written tree changing under it). Call it last
/// before the spawn: a change of user in the child clears the death signal.
pub fn dies_with_phantom_ci(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = getpid();
    // SAFETY: between fork and exec the closure makes two system calls (prctl, getppid) on a value
    // computed before the fork; it allocates nothing and takes no lock.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // phantom_ci died before the signal was set: the child must not go on alone.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Spawns a process of a run (a step's main process, or a helper such as `git`) and registers it
/// until [`finished`] is called with it.
pub fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    let child = command.spawn()?;
    running.insert(child.id() as i32);
    Ok(child)
}

/// Starts a step's process with `start` (which gives `None` where it made none) and registers it,
/// as [`spawn`] does.
pub fn register(
    start: impl FnOnce() -> std::io::Result<Option<StepChild>>,
) -> std::io::Result<Option<StepChild>> {
    let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    let child = start()?;
    if let Some(child) = &child {
        running.insert(child.id() as i32);
    }
    Ok(child)
}

/// The process `pid` (from [`spawn`] or [`register`]) was waited for.
pub fn finished(pid: u32) {
    let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    running.remove(&(pid as i32));
}

/// Kills every descendant of phantom_ci that is not (below) a running step, and reaps the ones that
/// became its children. Repeats until none is left, so that a process forking while it is killed is
/// caught in the next round. Returns the processes still there after many rounds (stuck in the kernel).
pub fn kill_orphans() -> Vec<Pid> {
    let me = getpid();
    let mut left = Vec::new();
    for _ in 0..ROUNDS {
        if !has_children() {
            return Vec::new();
        }
        let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        let table = process_table();
        left = descendants(me, &table, &running);
        for &pid in &left {
            let _ = kill(pid, Signal::SIGKILL);
        }
        drop(running);
        if left.is_empty() {
            return left;
        }
        // Our own children that died are reaped here; their children are ours now (subreaper) and
        // come up in the next round.
        for &(pid, ppid) in &table {
            if ppid == me && left.contains(&pid) {
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    left
}

/// Whether phantom_ci has a child, alive or not reaped (one `waitid`). Without one it has no
/// descendant at all, and the scan of `/proc` (one file per process of the machine) is not needed:
/// a descendant has a living parent that descends from phantom_ci, or else it was adopted by
/// phantom_ci, the subreaper, and is its child.
fn has_children() -> bool {
    // `__WALL`: children of every kind, whatever signal they report their end with.
    let flags =
        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT | WaitPidFlag::__WALL;
    !matches!(waitid(Id::All, flags), Err(Errno::ECHILD))
}

/// `(pid, parent pid)` of every process, from `/proc`.
fn process_table() -> Vec<(Pid, Pid)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            Some((Pid::from_raw(pid), parent_of(&stat)?))
        })
        .collect()
}

/// The parent pid from a `/proc/<pid>/stat` line: `pid (comm) state ppid …`, where `comm` may hold
/// spaces and parentheses.
fn parent_of(stat: &str) -> Option<Pid> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let ppid = after_comm.split_whitespace().nth(1)?.parse().ok()?;
    Some(Pid::from_raw(ppid))
}

/// The descendants of `root`, not entering the subtrees of `running` steps.
fn descendants(root: Pid, table: &[(Pid, Pid)], running: &BTreeSet<i32>) -> Vec<Pid> {
    let mut found = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for &(pid, ppid) in table {
            if ppid == parent && !running.contains(&pid.as_raw()) && !found.contains(&pid) {
                found.push(pid);
                parents.push(pid);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_alive_or_not_reaped_is_seen() {
        let mut child = Command::new("sleep").arg("1033").spawn().unwrap();
        assert!(has_children(), "a live child");
        child.kill().unwrap();
        // Killed, not reaped yet: still a child (a zombie) until `wait`.
        let pid = Pid::from_raw(child.id() as i32);
        while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap()
            .contains(") Z ")
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(has_children(), "a zombie child");
        child.wait().unwrap();
    }

    /// The other side, in a process that surely has no child: a fork of this test (the harness's
    /// other tests start children of their own in this process).
    #[test]
    #[allow(unsafe_code)]
    fn a_process_without_children_is_told_so() {
        // SAFETY: the child makes system calls only (waitid through nix, which allocates nothing,
        // and `_exit`) before it ends: nothing that could deadlock on a lock another thread of this
        // multi-threaded test held at the fork.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = if has_children() { 1 } else { 0 };
                // SAFETY: `_exit` ends the child at once, running no atexit handler or destructor.
                unsafe { nix::libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = waitpid(child, None).unwrap();
                assert_eq!(
                    status,
                    nix::sys::wait::WaitStatus::Exited(child, 0),
                    "a process without children was said to have one"
                );
            }
        }
    }

    #[test]
    fn parent_pid_is_read_past_a_tricky_command_name() {
        assert_eq!(
            parent_of("42 (a) b (c)) S 7 42 42 0 -1"),
            Some(Pid::from_raw(7))
        );
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn descendants_skip_running_steps() {
        let p = Pid::from_raw;
        let table = [
            (p(2), p(1)),
            (p(3), p(2)),
            (p(4), p(1)),
            (p(5), p(4)),
            (p(6), p(9)),
        ];
        let running: BTreeSet<i32> = [4].into_iter().collect();
        let mut found = descendants(p(1), &table, &running);
        found.sort();
        assert_eq!(found, [p(2), p(3)]);
    }

    #[test]
    fn a_child_that_dies_with_phantom_ci_goes_when_its_starter_goes() {
        // The death signal follows the thread that started the child: a thread stands in for a
        // phantom_ci that is killed.
        // Reaped below by its pid, from this thread.
        #[allow(clippy::zombie_processes)]
        let child = std::thread::spawn(|| {
            let mut command = Command::new("sleep");
            command.arg("1000");
            dies_with_phantom_ci(&mut command);
            command.spawn().unwrap()
        })
        .join()
        .unwrap();
        let status = waitpid(Pid::from_raw(child.id() as i32), None).unwrap();
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Signaled(
                Pid::from_raw(child.id() as i32),
                Signal::SIGKILL,
                false
            )
        );
    }
}
