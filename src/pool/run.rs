//! The claim step of a pooled run (SPEC §7), which every queued run of a pooled repo goes through
//! (poke, tick, hook): [`claim`] before the run, [`conclude`] after it. The worker calls them; a manual
//! `run` never does.

use std::time::Duration;

use crate::config::Repo;
use crate::config::dirs::Dirs;
use crate::error::Error;
use crate::runner::Finished;
use crate::state::lock::RepoLock;
use crate::state::queue;
use crate::state::records::RunResult;
use crate::state::seen;

use super::{Answer, Ask, Renewal, ask};

/// What the central host said to a pooled repo's claim.
pub enum Claimed {
    /// The repo is in no pool: it runs.
    NotPooled,
    /// This host's: it runs, and the claim is renewed while it does.
    Granted(Renewal),
    /// Not this host's (held by another, or done): the note says which; the entry went back to the
    /// queue, or was dropped when the commit is done.
    NotHere(String),
}

/// The claim step every queued run of a pooled repo goes through (poke, tick, hook): before the run,
/// this host claims its commit on the central host (SPEC §7). Refused, the entry goes back to the
/// queue (unless a newer push replaced it: coalescing, §4.5), to be claimed again at the next poke or
/// tick; done elsewhere, the commit counts as seen here. A central host that cannot be asked leaves
/// the entry queued too, and is an error. The caller holds the repo's run lock and took `entry`.
pub fn claim(
    dirs: &Dirs,
    repo: &Repo,
    entry: &queue::Entry,
    lock: &RepoLock,
) -> Result<Claimed, Error> {
    let Some(pool) = &repo.pool else {
        return Ok(Claimed::NotPooled);
    };
    let what = format!(
        "commit {} of `{}` (branch `{}`, pool `{}`)",
        crate::describe::short(&entry.commit),
        repo.name,
        crate::describe::terminal(&entry.branch),
        pool.name
    );
    match ask(repo, &entry.branch, &entry.commit, Ask::Claim) {
        Answer::Granted(_) => Ok(Claimed::Granted(Renewal::start(
            repo,
            &entry.branch,
            &entry.commit,
        ))),
        Answer::Refused(line) => {
            queue::restore(dirs, &repo.name, lock);
            Ok(Claimed::NotHere(format!(
                "{what} is not run here now: the central host answered `{line}`; it is claimed \
                 again at the next poke or tick until it is done"
            )))
        }
        Answer::Done(line) => {
            let _ = seen::set(dirs, &repo.name, &entry.branch, &entry.commit);
            queue::release(dirs, &repo.name);
            Ok(Claimed::NotHere(format!(
                "{what} is not run here: the central host answered `{line}`"
            )))
        }
        Answer::Failed(why) => {
            queue::restore(dirs, &repo.name, lock);
            Err(Error::Other(format!(
                "cannot claim {what} on the central host: {why}; it stays queued and is claimed \
                 again at the next poke or tick (check the repo's `claim` and `claim_key`)"
            )))
        }
    }
}

/// How many times a pooled run's `done` is tried before giving up (the central host may be briefly
/// unreachable; a `done` said twice is harmless).
const DONE_TRIES: u32 = 3;

/// After a pooled run: stops renewing; a claim another host took over makes the run `aborted`, naming
/// that host; otherwise the result goes to the central host (`done`). Before notifications are
/// posted, so that they tell what counts.
pub fn conclude(dirs: &Dirs, repo: &Repo, renewal: Renewal, finished: &mut Finished) {
    let (lost, renewal_notes) = renewal.finish();
    finished.notes.extend(renewal_notes);
    let record = &mut finished.record;
    let pool_name = repo.pool.as_ref().map_or("", |p| p.name.as_str());
    if let Some(line) = lost {
        // The runner ended it `aborted` itself when the stop reached it in time (`request_abort`).
        if record.result == RunResult::Aborted {
            return;
        }
        // The stop did not reach it: the run ended by itself (its log says how) before this host
        // learnt its claim was gone.
        let ended = record.result.as_str();
        record.result = RunResult::Aborted;
        record.message = Some(format!(
            "another host of pool `{pool_name}` took this commit over on the central host \
             (`{line}`): this host's claim had not been renewed within `claim_ttl`; this run had \
             ended `{ended}` before the stop reached it, and the other host's run is the one that \
             counts"
        ));
        let run = crate::state::records::run_dir(dirs, &repo.name, record.run);
        if let Err(e) = run.write(record) {
            finished.notes.push(e.to_string());
        }
        return;
    }
    let result = record.result.as_str();
    for attempt in 1..=DONE_TRIES {
        match ask(repo, &record.branch, &record.commit, Ask::Done(result)) {
            Answer::Granted(_) => return,
            Answer::Refused(line) | Answer::Done(line) => {
                finished.notes.push(format!(
                    "the central host did not take this run's result: `{line}`"
                ));
                return;
            }
            Answer::Failed(why) if attempt == DONE_TRIES => {
                finished.notes.push(format!(
                    "the central host did not get this run's result: {why}; the claim expires \
                     after `claim_ttl`"
                ));
            }
            Answer::Failed(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}
