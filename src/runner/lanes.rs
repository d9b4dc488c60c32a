//! Where one step's output goes besides the run's [`Output`] (SPEC §8): its own log,
//! `<run>/steps/<id>.log`, exactly its bytes ([`StepLog`]); and, in a graph workflow, the run's log
//! and console as whole lines prefixed with the step's id ([`Prefixer`]), so that the lines of steps
//! running side by side stay apart. Layered on `Output`'s public methods.

use std::cell::Cell;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::runner::output::Output;
use crate::state::records::RunDir;

/// The longest part of a line held back waiting for its end; then it is written with its prefix.
pub const PARTIAL_MAX: usize = 4096;

/// How long a partial line is held back at most.
pub const PARTIAL_WAIT: Duration = Duration::from_millis(100);

/// The step logs of one run; together they hold at most the run's `log_limit` bytes (the cap counts
/// the run).
pub struct StepLogs {
    /// Whether `steps/` was made: once per run.
    made: Cell<bool>,
    run: RunDir,
    room: Rc<Cell<u64>>,
    limit: u64,
}

impl StepLogs {
    pub fn new(run: &RunDir, limit: u64) -> StepLogs {
        StepLogs {
            made: Cell::new(false),
            run: run.clone(),
            room: Rc::new(Cell::new(limit)),
            limit,
        }
    }

    /// The log of step `id`: its file is created with the step's first byte — a step that prints
    /// nothing has none (`logs --step` then prints nothing), which spares a run of quiet steps a file
    /// each. `steps/` itself is made with the run's first step, so a run that has it keeps step logs.
    /// A log that cannot be created is a log that drops what it gets; the run's log still has it.
    pub fn open(&self, id: &str) -> StepLog {
        let path = self.run.step_log(id);
        if !self.made.get()
            && let Some(dir) = path.parent()
        {
            self.made.set(std::fs::create_dir_all(dir).is_ok());
        }
        StepLog {
            file: Sink::NotYet(path),
            room: self.room.clone(),
            limit: self.limit,
        }
    }
}

/// One step's own log.
pub struct StepLog {
    file: Sink,
    room: Rc<Cell<u64>>,
    limit: u64,
}

/// Where a step's log stands.
enum Sink {
    /// Nothing written yet: the file is made with the first byte.
    NotYet(PathBuf),
    Open(File),
    /// Full, or the file failed.
    Closed,
}

impl StepLog {
    /// Appends what the step wrote, up to what the run's cap leaves.
    pub fn write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Sink::NotYet(path) = &self.file {
            self.file = match File::create(path) {
                Ok(file) => Sink::Open(file),
                Err(_) => Sink::Closed,
            };
        }
        let Sink::Open(file) = &mut self.file else {
            return;
        };
        let room = self.room.get();
        let fits = usize::try_from(room).unwrap_or(usize::MAX).min(bytes.len());
        if file.write_all(&bytes[..fits]).is_err() {
            self.file = Sink::Closed;
            return;
        }
        self.room.set(room - fits as u64);
        if fits < bytes.len() {
            let _ = write!(
                file,
                "\n[phantom_ci: the run's logs reached their cap of {} bytes; later output is not \
                 recorded]\n",
                self.limit
            );
            self.file = Sink::Closed;
        }
    }

    /// Whether nothing more is written (the cap was reached, or the file failed).
    pub fn full(&self) -> bool {
        matches!(self.file, Sink::Closed) || self.room.get() == 0
    }
}

/// Makes a step's bytes whole lines starting with `[id] ` for the run's output. A line is passed on
/// when it ends; a part of one waits at most [`PARTIAL_MAX`] bytes or [`PARTIAL_WAIT`], then goes
/// with its prefix and a newline (its rest follows on a line of its own, prefixed again).
pub struct Prefixer {
    /// `3` or `3.1`.
    id: String,
    prefix: Vec<u8>,
    partial: Vec<u8>,
    since: Option<Instant>,
}

/// How much prefixed output is gathered before it goes to the output in one write.
const BATCH: usize = 64 * 1024;

impl Prefixer {
    pub fn new(id: &str) -> Prefixer {
        Prefixer {
            id: id.to_string(),
            prefix: format!("[{id}] ").into_bytes(),
            partial: Vec::new(),
            since: None,
        }
    }

    /// Passes on the whole lines in `bytes` (with what was held back before them), holds back the rest.
    pub fn feed(&mut self, bytes: &[u8], now: Instant, out: &mut Output) {
        // Bytes the log loses are counted against this step.
        out.set_step(Some(&self.id));
        let mut batch: Vec<u8> = Vec::new();
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            batch.extend_from_slice(&self.prefix);
            batch.append(&mut self.partial);
            batch.extend_from_slice(&rest[..=end]);
            self.since = None;
            rest = &rest[end + 1..];
            if batch.len() >= BATCH {
                out.step_bytes(&batch);
                batch.clear();
            }
        }
        while !rest.is_empty() {
            let take = (PARTIAL_MAX - self.partial.len()).min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            self.since.get_or_insert(now);
            rest = &rest[take..];
            if self.partial.len() >= PARTIAL_MAX {
                self.partial_line(&mut batch);
                if batch.len() >= BATCH {
                    out.step_bytes(&batch);
                    batch.clear();
                }
            }
        }
        if !batch.is_empty() {
            out.step_bytes(&batch);
        }
    }

    /// When the part of a line held back must go, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.since.map(|since| since + PARTIAL_WAIT)
    }

    /// Passes on the part of a line held back if it waited long enough (or `now` is the end).
    pub fn flush_due(&mut self, now: Instant, out: &mut Output) {
        if self.due().is_some_and(|due| due <= now) {
            self.flush(out);
        }
    }

    /// Passes on the part of a line held back, whatever its age.
    pub fn flush(&mut self, out: &mut Output) {
        if self.partial.is_empty() {
            return;
        }
        out.set_step(Some(&self.id));
        let mut batch = Vec::with_capacity(self.prefix.len() + self.partial.len() + 1);
        self.partial_line(&mut batch);
        out.step_bytes(&batch);
    }

    fn partial_line(&mut self, batch: &mut Vec<u8>) {
        batch.extend_from_slice(&self.prefix);
        batch.append(&mut self.partial);
        batch.push(b'\n');
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::output::tests::Shared;

    fn output(dir: &std::path::Path) -> (Output, Shared) {
        let console = Shared::default();
        let out = Output::new(
            Some(Box::new(console.clone())),
            File::create(dir.join("log")).unwrap(),
            u64::MAX,
        );
        (out, console)
    }

    #[test]
    fn lines_get_their_prefix_and_parts_wait_for_their_end() {
        let dir = tempfile::tempdir().unwrap();
        let (mut out, _console) = output(dir.path());
        let mut a = Prefixer::new("1");
        let mut b = Prefixer::new("2.3");
        let now = Instant::now();
        a.feed(b"one\ntw", now, &mut out);
        b.feed(b"x\n\ny", now, &mut out);
        a.feed(b"o\n", now, &mut out);
        assert_eq!(b.due(), Some(now + PARTIAL_WAIT));
        b.flush_due(now, &mut out);
        b.flush_due(now + PARTIAL_WAIT, &mut out);
        b.feed(b"z\n", now, &mut out);
        out.close();
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert_eq!(log, "[1] one\n[2.3] x\n[2.3] \n[1] two\n[2.3] y\n[2.3] z\n");
    }

    #[test]
    fn a_line_without_end_goes_in_bounded_parts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut out, _console) = output(dir.path());
        let mut p = Prefixer::new("0");
        let now = Instant::now();
        for _ in 0..100 {
            p.feed(&[b'x'; 1000], now, &mut out);
            assert!(p.partial.len() < PARTIAL_MAX);
        }
        p.flush(&mut out);
        out.close();
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 100_000usize.div_ceil(PARTIAL_MAX));
        assert!(lines.iter().all(|l| l.starts_with("[0] x")));
        assert_eq!(log.matches('x').count(), 100_000);
    }

    #[test]
    fn step_logs_share_the_runs_cap() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir {
            repo: "app".into(),
            number: 1,
            path: dir.path().to_path_buf(),
        };
        let logs = StepLogs::new(&run, 10);
        let mut a = logs.open("0");
        let mut b = logs.open("1.0");
        a.write(b"123456");
        b.write(b"abcdef");
        assert!(a.full() && b.full());
        a.write(b"more");
        let a_log = std::fs::read_to_string(run.step_log("0")).unwrap();
        assert!(
            a_log.starts_with("123456\n[phantom_ci: the run's logs"),
            "{a_log}"
        );
        let b_log = std::fs::read_to_string(run.step_log("1.0")).unwrap();
        assert!(
            b_log.starts_with("abcd\n[phantom_ci: the run's logs reached"),
            "{b_log}"
        );
    }
}
