//! Following a run's log as it grows (`phantom_ci logs --follow`).
//!
//! No daemon tells anyone that a run moved on, so the follower polls: it reads `run.json`, then copies
//! whatever the log has gained, and stops once the record is no longer `running`. Reading the record
//! *before* copying makes the last copy complete: the runner writes its final log lines before it
//! replaces `run.json`. Memory stays bounded whatever the run prints: the log is copied in chunks.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::error::Error;
use crate::state::records::{self, RunDir, RunRecord, RunResult};

/// How often the follower looks for more output.
pub const POLL: Duration = Duration::from_millis(200);

/// Whether the process that owns a `running` record is still alive. A record whose owner died
/// (SIGKILL, power loss) says `running` until the next `hook` or `tick` records it as `aborted`; a test
/// that knows better lets the follower stop at once instead of waiting for that.
pub type Alive<'a> = &'a dyn Fn(&RunRecord) -> bool;

/// The liveness test that believes the record: follow until `run.json` says the run ended.
pub fn believe_the_record(_record: &RunRecord) -> bool {
    true
}

/// How following ended.
#[derive(Debug)]
pub enum Ended {
    /// The run ended; its final record.
    Finished(RunRecord),
    /// The record still says `running` but its owner is gone (see [`Alive`]).
    Abandoned(RunRecord),
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Record(#[from] Error),
    /// Writing to `out` failed (for example the reader of a pipe went away).
    #[error("cannot write the log: {0}")]
    Write(#[source] std::io::Error),
}

/// Copies the log of `run` to `out` as it grows until the run ends (or `alive` says its owner is gone),
/// checking every `poll`. A run that has already ended is copied whole at once.
pub fn follow(
    run: &RunDir,
    out: &mut dyn Write,
    alive: Alive<'_>,
    poll: Duration,
) -> Result<Ended, FollowError> {
    follow_file(run, &run.log(), out, alive, poll)
}

/// [`follow`] for one of the run's logs, `path`: the run's, or a step's (`logs --step`), which
/// appears once the step starts.
pub fn follow_file(
    run: &RunDir,
    path: &Path,
    out: &mut dyn Write,
    alive: Alive<'_>,
    poll: Duration,
) -> Result<Ended, FollowError> {
    let mut log: Option<File> = None;
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let state = read_record(run)?;
        catch_up(path, &mut log, out, &mut buffer)?;
        match state {
            Some(record) if record.result != RunResult::Running => {
                return Ok(Ended::Finished(record));
            }
            Some(record) if !alive(&record) => {
                // It may have ended between the two reads.
                let last = read_record(run)?;
                catch_up(path, &mut log, out, &mut buffer)?;
                return Ok(match last {
                    Some(last) if last.result != RunResult::Running => Ended::Finished(last),
                    _ => Ended::Abandoned(record),
                });
            }
            _ => {}
        }
        if !run.path.is_dir() {
            return Err(Error::Other(format!(
                "run #{} disappeared while it was followed (pruned by `keep_runs`?)",
                run.number
            ))
            .into());
        }
        std::thread::sleep(poll);
    }
}

/// The record, or `None` while the run is starting and has not written it yet. One that cannot be read
/// ends the following with an error naming the run and the file.
fn read_record(run: &RunDir) -> Result<Option<RunRecord>, Error> {
    records::peek(run).map_err(Error::from)
}

fn open_log(path: &Path) -> Result<Option<File>, Error> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot read", path, e)),
    }
}

/// Opens the log once it exists, then copies what it holds past the current position.
fn catch_up(
    path: &Path,
    log: &mut Option<File>,
    out: &mut dyn Write,
    buffer: &mut [u8],
) -> Result<(), FollowError> {
    if log.is_none() {
        *log = open_log(path)?;
    }
    match log {
        Some(file) => copy_available(path, file, out, buffer),
        None => Ok(()),
    }
}

/// Copies what the log holds past the current position, chunk by chunk.
fn copy_available(
    path: &Path,
    file: &mut File,
    out: &mut dyn Write,
    buffer: &mut [u8],
) -> Result<(), FollowError> {
    loop {
        match file.read(buffer) {
            Ok(0) => break,
            Ok(n) => out.write_all(&buffer[..n]).map_err(FollowError::Write)?,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("cannot read", path, e).into()),
        }
    }
    out.flush().map_err(FollowError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::dirs::Dirs;
    use crate::runner::output::tests::Shared;

    fn record(result: RunResult) -> RunRecord {
        crate::state::records::sample(1, result)
    }

    fn running_run(root: &std::path::Path) -> RunDir {
        let dirs = Dirs {
            config: root.join("config"),
            data: root.join("data"),
        };
        let run = records::allocate(&dirs, "app").unwrap();
        run.write(&record(RunResult::Running)).unwrap();
        std::fs::write(run.log(), "first\n").unwrap();
        run
    }

    #[test]
    fn streams_while_running_and_stops_when_the_record_ends() {
        let tmp = tempfile::tempdir().unwrap();
        let run = running_run(tmp.path());
        let out = Shared::default();
        let follower = {
            let (run, mut out) = (run.clone(), out.clone());
            std::thread::spawn(move || {
                follow(
                    &run,
                    &mut out,
                    &believe_the_record,
                    Duration::from_millis(10),
                )
            })
        };
        // The first line arrives while the run is still running…
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while out.text() != "first\n" {
            assert!(std::time::Instant::now() < deadline, "nothing streamed");
            std::thread::sleep(Duration::from_millis(10));
        }
        // …and the last lines, written just before the record ends, are not lost.
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(run.log())
            .unwrap();
        log.write_all(b"second\n==> app #1 failure\n").unwrap();
        run.write(&record(RunResult::Failure)).unwrap();
        let ended = follower.join().unwrap().unwrap();
        assert!(matches!(ended, Ended::Finished(r) if r.result == RunResult::Failure));
        assert_eq!(out.text(), "first\nsecond\n==> app #1 failure\n");
    }

    #[test]
    fn stops_when_the_owner_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let run = running_run(tmp.path());
        let mut out = Vec::new();
        let ended = follow(&run, &mut out, &|_| false, Duration::from_millis(10)).unwrap();
        assert!(matches!(ended, Ended::Abandoned(r) if r.result == RunResult::Running));
        assert_eq!(out, b"first\n");
    }
}
