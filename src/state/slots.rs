//! `max_parallel_runs` (SPEC §6): at most N runs of all repos at once, the others waiting their turn
//! in push order.
//!
//! A run holds one of N slot locks, `<data>/slots/<i>.lock` (`flock`: the kernel lets go when the holder
//! dies, however it dies). A run that finds none free waits with a ticket, `<data>/slots/waiting/
//! <queued_at>~<pid>-<start>`: only the oldest live ticket may take a slot, so waiters go in the order
//! their commits were queued (the push order), and a ticket whose process died is passed over and
//! removed. Everything is 0700/0600: only phantom_ci's user can take a slot or a turn.

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use nix::fcntl::Flock;

use crate::config::dirs::Dirs;
use crate::error::Error;
use crate::isolation::signals;
use crate::state::records::process_start_time;

/// How often a waiter looks whether its turn came.
const POLL: Duration = Duration::from_millis(50);

/// One of the `max_parallel_runs` slots, held until dropped.
pub struct Slot {
    _lock: Flock<File>,
    pub index: usize,
}

/// A waiter's place in line; its file goes when it is dropped.
struct Ticket(PathBuf);

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Takes a free slot of `limit`, waiting behind the runs queued earlier (`queued_at`, RFC 3339, is the
/// place in line). `None` when phantom_ci was told to stop (SIGTERM/SIGINT) while it waited: the work
/// stays queued. `waits` is called once if it has to wait.
pub fn acquire(
    dirs: &Dirs,
    limit: usize,
    queued_at: &str,
    waits: &mut dyn FnMut(),
) -> Result<Option<Slot>, Error> {
    let limit = limit.max(1);
    let waiting = dirs.slots().join("waiting");
    dirs.make(&waiting)
        .map_err(|e| Error::io("cannot create", &waiting, e))?;
    // Nobody waits: a free slot is taken at once, without a ticket.
    if first_waiter(&waiting).is_none()
        && let Some(slot) = try_any(dirs, limit)?
    {
        return Ok(Some(slot));
    }
    let me = std::process::id();
    let name = format!(
        "{queued_at}~{me}-{}",
        process_start_time(me).unwrap_or_default()
    );
    let ticket = Ticket(waiting.join(&name));
    crate::state::lock::open_private(&ticket.0)
        .map_err(|e| Error::io("cannot create", &ticket.0, e))?;
    waits();
    loop {
        if signals::requested().is_some() {
            return Ok(None);
        }
        if first_waiter(&waiting).as_deref() == Some(name.as_str())
            && let Some(slot) = try_any(dirs, limit)?
        {
            drop(ticket);
            return Ok(Some(slot));
        }
        std::thread::sleep(POLL);
    }
}

/// How many runs wait for a slot now (for `status`).
pub fn waiting(dirs: &Dirs) -> usize {
    live_tickets(&dirs.slots().join("waiting")).len()
}

/// The name of the oldest live ticket; dead ones are removed on the way.
fn first_waiter(waiting: &std::path::Path) -> Option<String> {
    live_tickets(waiting).into_iter().next()
}

fn live_tickets(waiting: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(waiting)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| {
            let alive = owner_alive(name);
            if !alive {
                let _ = std::fs::remove_file(waiting.join(name));
            }
            alive
        })
        .collect();
    names.sort();
    names
}

/// Whether the process a ticket `<queued_at>~<pid>-<start>` names still lives.
fn owner_alive(name: &str) -> bool {
    let Some((_, owner)) = name.rsplit_once('~') else {
        return false;
    };
    let Some((pid, start)) = owner.split_once('-') else {
        return false;
    };
    match (pid.parse::<u32>(), start.parse::<u64>()) {
        (Ok(pid), Ok(start)) => process_start_time(pid) == Some(start),
        _ => false,
    }
}

/// One of the `max_parallel_steps` slots (SPEC §8), `<data>/slots/steps/<i>.lock`, if one is free
/// now: a step of a run beyond its first takes one, or waits for one. Never waits itself.
pub fn try_step_slot(dirs: &Dirs, limit: usize) -> Result<Option<Slot>, Error> {
    let dir = dirs.slots().join("steps");
    // Made the first time only: every step of every run comes here.
    if !dir.is_dir() {
        dirs.make(&dir)
            .map_err(|e| Error::io("cannot create", &dir, e))?;
    }
    try_in(&dir, limit.max(1))
}

/// The first free slot among `0..limit`, if any.
fn try_any(dirs: &Dirs, limit: usize) -> Result<Option<Slot>, Error> {
    try_in(&dirs.slots(), limit)
}

fn try_in(dir: &std::path::Path, limit: usize) -> Result<Option<Slot>, Error> {
    for index in 0..limit {
        let path = dir.join(format!("{index}.lock"));
        let locked = crate::config::dirs::lock_private(&path, false)
            .map_err(|e| Error::io("cannot lock", &path, e))?;
        if let Some(lock) = locked {
            return Ok(Some(Slot { _lock: lock, index }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(root: &std::path::Path) -> Dirs {
        Dirs::under(root)
    }

    #[test]
    fn a_free_slot_is_taken_and_a_full_machine_has_none() {
        let root = tempfile::tempdir().unwrap();
        let dirs = dirs(root.path());
        let first = acquire(&dirs, 2, "2026-01-01T00:00:00.000Z", &mut || {})
            .unwrap()
            .unwrap();
        let second = acquire(&dirs, 2, "2026-01-01T00:00:00.000Z", &mut || {})
            .unwrap()
            .unwrap();
        assert_ne!(first.index, second.index);
        assert!(try_any(&dirs, 2).unwrap().is_none());
        drop(first);
        assert!(try_any(&dirs, 2).unwrap().is_some());
    }

    #[test]
    fn step_slots_are_apart_from_run_slots() {
        let root = tempfile::tempdir().unwrap();
        let dirs = dirs(root.path());
        let _run = acquire(&dirs, 1, "2026-01-01T00:00:00.000Z", &mut || {})
            .unwrap()
            .unwrap();
        let step = try_step_slot(&dirs, 1).unwrap().unwrap();
        assert!(try_step_slot(&dirs, 1).unwrap().is_none());
        drop(step);
        assert!(try_step_slot(&dirs, 1).unwrap().is_some());
    }

    #[test]
    fn dead_waiters_lose_their_turn_and_the_oldest_live_one_is_first() {
        let root = tempfile::tempdir().unwrap();
        let waiting = root.path();
        let me = std::process::id();
        let start = process_start_time(me).unwrap();
        std::fs::write(waiting.join("2026-01-01T00:00:00.000Z~0-1"), "").unwrap();
        std::fs::write(
            waiting.join(format!("2026-01-03T00:00:00.000Z~{me}-{start}")),
            "",
        )
        .unwrap();
        std::fs::write(
            waiting.join(format!("2026-01-02T00:00:00.000Z~{me}-{start}")),
            "",
        )
        .unwrap();
        assert_eq!(
            first_waiter(waiting).unwrap(),
            format!("2026-01-02T00:00:00.000Z~{me}-{start}")
        );
        assert!(!waiting.join("2026-01-01T00:00:00.000Z~0-1").exists());
    }
}
