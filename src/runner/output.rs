//! The one writer a run's output goes through: step output byte for byte, to the console as it arrives
//! and to the run's `log` up to its cap; phantom_ci's own lines always on lines of their own.
//!
//! The console never holds the run up (SPEC §4.8). A person's terminal, a `git push` whose pusher
//! pressed Ctrl-Z, or a pipe into a program that stopped reading can all block a write for ever; the
//! run's supervision (timeouts, signals, the log) must not wait for them. So such a console gets its
//! bytes from a thread of its own through a bounded buffer ([`CONSOLE_BUFFER`]): what does not fit is
//! dropped for the console only — the log has everything — and counted. A console that cannot stop
//! taking output — a regular file, `/dev/null` ([`ConsoleWrite::never_blocks`]) — is written by the
//! run itself, without the thread and its copy of every chunk, and past the log's cap the step's
//! output goes into it by `splice`, without passing through phantom_ci. The log gets one note at the
//! end of the run saying how much the console missed; the console gets a note of its own whenever it
//! catches up after a gap. When the run ends, phantom_ci waits for the buffer to reach a console that
//! reads, but gives up on one that makes no progress for [`CONSOLE_STALL`].
//!
//! A console a person reads on a terminal ([`ConsoleWrite::reaches_a_terminal`]) gets step output
//! through the terminal filter ([`TerminalFilter`]: colours pass, every other escape sequence is
//! dropped), in the console's thread; the log, and a console that is a pipe or a file, get every byte.
//!
//! A log write that fails (a full disk, a file size limit) never stops the run: the bytes it lost are
//! counted with the steps they came from and the first error ([`Output::log_lost`], the record's
//! `log_lost`), the log says so where it takes writes again, and the console at the end.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::describe::escapes::TerminalFilter;
use crate::isolation::signals;
use crate::state::records::LogLost;

/// The most bytes waiting for the console; past it, output for the console is dropped.
pub const CONSOLE_BUFFER: usize = 4 << 20;

/// How long the end of a run waits for a console that takes nothing.
pub const CONSOLE_STALL: Duration = Duration::from_secs(5);

/// Where a person (or a log collector) watches a run: phantom_ci's stdout, or a test's buffer.
pub trait ConsoleWrite: Write + Send {
    /// Whether writing to this console never waits for a reader — a regular file, `/dev/null` — so
    /// that the run may write to it itself; its descriptor then. `None` (the default) for a terminal,
    /// a pipe or a socket, which can stop taking output: those get it through a thread.
    fn never_blocks(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Whether a person reads this console on a terminal: step output then reaches it through the
    /// terminal filter ([`TerminalFilter`]: colours pass, every other escape sequence and control
    /// character but `\n \r \t \b` is dropped). A terminal says so itself; a pipe that ends on
    /// someone's terminal (`hook --wait`'s, to the pusher) is wrapped in [`ToTerminal`]. `false` (the
    /// default): the console gets the bytes as they are, like the log.
    fn reaches_a_terminal(&self) -> bool {
        false
    }
}

/// A console that ends on a person's terminal although it is not one itself: `hook --wait`'s pipe,
/// which `git push` copies to the pusher's terminal. Its step output is filtered.
pub struct ToTerminal(pub Box<dyn ConsoleWrite>);

impl Write for ToTerminal {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl ConsoleWrite for ToTerminal {
    fn never_blocks(&self) -> Option<BorrowedFd<'_>> {
        self.0.never_blocks()
    }

    fn reaches_a_terminal(&self) -> bool {
        true
    }
}

impl ConsoleWrite for File {
    fn never_blocks(&self) -> Option<BorrowedFd<'_>> {
        use nix::sys::stat::{SFlag, fstat, stat};
        let of = fstat(self.as_fd()).ok()?;
        let kind = SFlag::from_bits_truncate(of.st_mode & SFlag::S_IFMT.bits());
        let null = || {
            stat("/dev/null").is_ok_and(|null| {
                SFlag::from_bits_truncate(null.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFCHR
                    && null.st_rdev == of.st_rdev
            })
        };
        let never = kind == SFlag::S_IFREG || (kind == SFlag::S_IFCHR && null());
        never.then(|| self.as_fd())
    }

    fn reaches_a_terminal(&self) -> bool {
        self.is_terminal()
    }
}

impl ConsoleWrite for std::io::Stdout {
    fn reaches_a_terminal(&self) -> bool {
        self.is_terminal()
    }
}

/// How the console gets its bytes.
enum Sink {
    None,
    /// Written by the run itself (a console that never blocks, through a duplicate of its
    /// descriptor); the bytes it refused.
    Direct(File, u64),
    /// Written by a thread of its own.
    Relay(Console),
}

pub struct Output {
    console: Sink,
    /// Splicing into the console failed once (a file opened for appending refuses it).
    no_splice: bool,
    log: File,
    log_written: u64,
    log_limit: u64,
    capped: bool,
    at_line_start: bool,
    /// The step whose output `step_bytes` gets ([`Output::set_step`]).
    step: Option<String>,
    /// What could not be written to the log, and the bytes lost since the log last took a write
    /// (said in the log where it takes one again).
    lost: Option<LogLost>,
    unnoted: u64,
}

impl Output {
    /// `console` is where a person watches (phantom_ci's stdout), or `None` for a detached worker.
    pub fn new(console: Option<Box<dyn ConsoleWrite>>, log: File, log_limit: u64) -> Output {
        let mut output = Output {
            console: Sink::None,
            no_splice: false,
            log,
            log_written: 0,
            log_limit,
            capped: false,
            at_line_start: true,
            step: None,
            lost: None,
            unnoted: 0,
        };
        if let Some(console) = console {
            let direct = console.never_blocks().map(|fd| fd.try_clone_to_owned());
            if let Some(Ok(fd)) = direct {
                // What the writer may hold goes first; from now on the run writes unbuffered.
                let mut console = console;
                let _ = console.flush();
                output.console = Sink::Direct(File::from(fd), 0);
                return output;
            }
            match Console::start(console) {
                Ok(console) => output.console = Sink::Relay(console),
                Err(e) => output.line(&format!(
                    "==> note: no live output for this run (cannot start the console writer: {e}); \
                     the log has everything"
                )),
            }
        }
        output
    }

    /// Bytes a step wrote, passed through unchanged.
    pub fn step_bytes(&mut self, bytes: &[u8]) {
        let Some(&last) = bytes.last() else { return };
        self.at_line_start = last == b'\n';
        self.write_console(bytes);
        if self.capped {
            return;
        }
        let room = self.log_limit.saturating_sub(self.log_written);
        let fits = usize::try_from(room).unwrap_or(usize::MAX).min(bytes.len());
        self.write_log(&bytes[..fits], true);
        if fits < bytes.len() {
            self.capped = true;
            let note = format!(
                "\n[phantom_ci: the log reached its cap of {} bytes; later output is not recorded]\n",
                self.log_limit
            );
            self.write_log(note.as_bytes(), false);
        }
    }

    /// Whose output the next [`Output::step_bytes`] are: a step's id (`3`, `3.1`), or `None` for
    /// output after the steps. Only used to say which steps lost bytes when the log cannot be written.
    pub fn set_step(&mut self, step: Option<&str>) {
        if self.step.as_deref() != step {
            self.step = step.map(str::to_string);
        }
    }

    /// What the log is missing, if a write to it failed: for the run's record.
    pub fn log_lost(&self) -> Option<LogLost> {
        self.lost.clone()
    }

    /// One of phantom_ci's own lines (a step header, a summary), on a line of its own. These are
    /// recorded even past the cap: there are few of them.
    pub fn line(&mut self, text: &str) {
        let mut bytes = Vec::with_capacity(text.len() + 2);
        if !self.at_line_start {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(b'\n');
        self.at_line_start = true;
        self.write_console(&bytes);
        self.write_log(&bytes, false);
    }

    /// [`Output::line`] with `console_text` — the same line in colour — for the console; the log
    /// gets `text`.
    pub fn line_styled(&mut self, text: &str, console_text: &str) {
        let start = if self.at_line_start { "" } else { "\n" };
        self.at_line_start = true;
        self.write_console(format!("{start}{console_text}\n").as_bytes());
        self.write_log(format!("{start}{text}\n").as_bytes(), false);
    }

    pub fn capped(&self) -> bool {
        self.capped
    }

    /// Where step output may go straight from the run's pipe by `splice`, without passing through
    /// phantom_ci: the console, once the log has reached its cap (nothing more is recorded), when the
    /// console never blocks. The caller still hands the last byte of the output to
    /// [`Output::step_bytes`], which notes whether the output ended a line.
    pub fn splice_target(&self) -> Option<BorrowedFd<'_>> {
        match &self.console {
            Sink::Direct(console, _) if self.capped && !self.no_splice => Some(console.as_fd()),
            _ => None,
        }
    }

    /// Splicing into the console failed: from now on, bytes are written.
    pub fn splice_failed(&mut self) {
        self.no_splice = true;
    }

    /// How many bytes the console did not get because it did not keep up (or refused them).
    pub fn not_shown(&self) -> u64 {
        match &self.console {
            Sink::None => 0,
            Sink::Direct(_, refused) => *refused,
            Sink::Relay(console) => console.dropped(),
        }
    }

    /// The one note for the log (and the console) when the console missed output, and the one
    /// for the console (and the log, if it takes it) when the log did; call it once, when the steps
    /// are over.
    pub fn note_not_shown(&mut self) {
        let missed = self.not_shown();
        if missed > 0 {
            self.line(&format!(
                "==> note: the console did not keep up: {missed} bytes of output were not shown \
                 on it (this log has them all)"
            ));
        }
        if let Some(lost) = &self.lost {
            let note = format!("==> note: {}", lost.describe());
            self.line(&note);
        }
    }

    /// Hands what is buffered to the console and lets it go: waits while the console takes it, gives
    /// up once it takes nothing for [`CONSOLE_STALL`]. Also done when the output is dropped.
    pub fn close(&mut self) {
        match std::mem::replace(&mut self.console, Sink::None) {
            Sink::Relay(mut console) => console.close(),
            Sink::Direct(mut console, _) => {
                let _ = console.flush();
            }
            Sink::None => {}
        }
    }

    fn write_console(&mut self, bytes: &[u8]) {
        match &mut self.console {
            Sink::None => {}
            Sink::Direct(console, refused) => {
                // A full disk under a file console loses the console's copy, never the run.
                if console.write_all(bytes).is_err() {
                    *refused += bytes.len() as u64;
                }
            }
            Sink::Relay(console) => console.send(bytes),
        }
    }

    /// Writes to the log what it takes. A full disk (or a file size limit) must not stop the run:
    /// what is not written is counted — for the record, with the step it came from (`of_step`) and
    /// the first error — and where the log takes writes again, a note marks the gap.
    fn write_log(&mut self, bytes: &[u8], of_step: bool) {
        if bytes.is_empty() {
            return;
        }
        if self.unnoted > 0
            && let Some(lost) = &self.lost
        {
            let note = format!(
                "\n[phantom_ci: {} bytes of output are missing here: the log could not be written \
                 ({})]\n",
                self.unnoted, lost.error
            );
            let (written, _) = write_some(&mut self.log, note.as_bytes());
            self.log_written += written as u64;
            if written == note.len() {
                self.unnoted = 0;
            }
        }
        let (written, error) = write_some(&mut self.log, bytes);
        self.log_written += written as u64;
        let Some(error) = error else { return };
        let missing = (bytes.len() - written) as u64;
        self.unnoted += missing;
        let lost = self.lost.get_or_insert_with(|| LogLost {
            error: io_words(&error),
            ..LogLost::default()
        });
        lost.bytes += missing;
        if of_step
            && let Some(step) = &self.step
            && !lost.steps.contains(step)
        {
            lost.steps.push(step.clone());
        }
    }
}

/// Writes what `file` takes of `bytes`: how much, and the error that stopped it, if one did.
fn write_some(file: &mut File, bytes: &[u8]) -> (usize, Option<std::io::Error>) {
    let mut written = 0;
    while written < bytes.len() {
        match file.write(&bytes[written..]) {
            Ok(0) => return (written, Some(ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (written, Some(e)),
        }
    }
    (written, None)
}

/// An I/O error in words, without its `(os error N)`.
fn io_words(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.close();
    }
}

/// The console's side of the output: a bounded buffer and the thread that writes it out.
struct Console {
    shared: Arc<Channel>,
    thread: Option<JoinHandle<()>>,
}

struct Channel {
    state: Mutex<State>,
    /// Wakes the writer (more to write, closing) and the closer (progress, done).
    changed: Condvar,
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes queued or being written: what the buffer holds.
    pending: usize,
    /// Bytes dropped in all.
    dropped: u64,
    /// Bytes dropped since the console was last told.
    unseen: u64,
    /// Bytes the console has taken; it moves while the console makes progress.
    taken: u64,
    /// No more will come: the writer ends once the buffer is empty.
    closing: bool,
    /// The console failed (its reader went away) or was given up: nothing more is written.
    gone: bool,
    /// The writer thread has ended.
    done: bool,
}

impl Channel {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it: every change is one step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>, timeout: Duration) -> MutexGuard<'a, State> {
        match self.changed.wait_timeout(state, timeout) {
            Ok((state, _)) => state,
            Err(e) => e.into_inner().0,
        }
    }
}

impl Console {
    fn start(console: Box<dyn ConsoleWrite>) -> std::io::Result<Console> {
        let shared = Arc::new(Channel {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let filter = console.reaches_a_terminal().then(TerminalFilter::new);
        let thread = std::thread::Builder::new().name("console".into()).spawn({
            let shared = shared.clone();
            move || {
                deliver(&shared, console, filter);
                shared.lock().done = true;
                shared.changed.notify_all();
            }
        })?;
        Ok(Console {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `bytes` for the console, or drops them (counted) when the buffer is full. Never waits
    /// for the console.
    fn send(&self, bytes: &[u8]) {
        let mut state = self.shared.lock();
        if state.gone {
            return;
        }
        if state.pending.saturating_add(bytes.len()) > CONSOLE_BUFFER {
            state.dropped += bytes.len() as u64;
            state.unseen += bytes.len() as u64;
            return;
        }
        state.pending += bytes.len();
        state.chunks.push_back(bytes.to_vec());
        drop(state);
        self.shared.changed.notify_all();
    }

    fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }

    fn close(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // A signal that arrives while the run's last output is delivered means: stop now. (One that
        // ended the run itself still lets its summary reach the console.)
        let signalled_before = signals::requested().is_some();
        let mut state = self.shared.lock();
        state.closing = true;
        self.shared.changed.notify_all();
        let mut taken = state.taken;
        let mut progress = Instant::now();
        while !state.done {
            state = self.shared.wait(state, Duration::from_millis(50));
            if state.taken != taken {
                taken = state.taken;
                progress = Instant::now();
            }
            let signalled =
                signals::insisted() || (!signalled_before && signals::requested().is_some());
            if !state.done && (progress.elapsed() >= CONSOLE_STALL || signalled) {
                // The writer may be stuck in a write for ever: leave it there, with nothing more to
                // write; it ends by itself if the console ever takes that write, or with the process.
                state.gone = true;
                state.chunks.clear();
                state.pending = 0;
                return;
            }
        }
        drop(state);
        let _ = thread.join();
    }
}

/// The writer thread: writes what is queued, in order — through `filter` for a terminal — and tells
/// the console when it missed output.
fn deliver(
    shared: &Channel,
    mut console: Box<dyn ConsoleWrite>,
    mut filter: Option<TerminalFilter>,
) {
    let mut at_line_start = true;
    let mut filtered = Vec::new();
    loop {
        let chunk = {
            let mut state = shared.lock();
            loop {
                if state.gone {
                    return;
                }
                if let Some(chunk) = state.chunks.pop_front() {
                    break chunk;
                }
                if state.unseen > 0 {
                    // Caught up after a gap: say so, on a line of its own.
                    let note = format!(
                        "{}[phantom_ci: the console did not keep up; {} bytes of output were not \
                         shown here (the run's log has them)]\n",
                        if at_line_start { "" } else { "\n" },
                        state.unseen
                    );
                    state.unseen = 0;
                    state.pending += note.len();
                    break note.into_bytes();
                }
                if state.closing {
                    return;
                }
                state = shared.wait(state, Duration::from_secs(1));
            }
        };
        // A chunk ending a line leaves the filter with no sequence in progress, and every line of
        // phantom_ci's own starts on a new line: its lines pass the filter unchanged.
        let shown = match &mut filter {
            Some(filter) => {
                filtered.clear();
                filter.push(&chunk, &mut filtered);
                &filtered
            }
            None => &chunk,
        };
        let mut rest = shown.as_slice();
        while !rest.is_empty() {
            match console.write(rest) {
                Ok(n) if n > 0 => {
                    rest = &rest[n..];
                    shared.lock().taken += n as u64;
                    shared.changed.notify_all();
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The reader went away (`phantom_ci run … | head`): the run goes on, recorded in the log.
                _ => return give_up(shared),
            }
        }
        // The chunk has left the buffer (the filter may have shortened what was written of it).
        {
            let mut state = shared.lock();
            state.pending = state.pending.saturating_sub(chunk.len());
        }
        if console.flush().is_err() {
            return give_up(shared);
        }
        at_line_start = chunk.last() == Some(&b'\n');
    }
}

fn give_up(shared: &Channel) {
    let mut state = shared.lock();
    state.gone = true;
    state.chunks.clear();
    state.pending = 0;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A writer whose bytes the test can still read after handing it over.
    #[derive(Clone, Default)]
    pub(crate) struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl ConsoleWrite for Shared {}
    impl Shared {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// A console that takes nothing until the test opens its gate, like a stopped `git push`.
    #[derive(Clone, Default)]
    struct Gate {
        open: Arc<AtomicBool>,
        seen: Shared,
    }
    impl ConsoleWrite for Gate {}
    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            while !self.open.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.seen.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn own_lines_start_on_a_new_line_and_the_log_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log");
        let console = Shared::default();
        let mut out = Output::new(
            Some(Box::new(console.clone())),
            File::create(&log_path).unwrap(),
            2048,
        );
        out.line("==> step 0");
        out.step_bytes(b"no newline");
        out.line("==> step 1");
        out.step_bytes(&[b'x'; 4096]);
        assert!(out.capped());
        out.line("==> done");
        out.close();
        let console = console.0.lock().unwrap().clone();
        assert!(console.starts_with(b"==> step 0\nno newline\n==> step 1\nxxx"));
        assert_eq!(console.len(), 11 + 10 + 1 + 11 + 4096 + 1 + 9);
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(log.contains("reached its cap of 2048 bytes"));
        assert!(log.ends_with("==> done\n"));
        assert!(log.len() < 2048 + 200);
    }

    #[test]
    fn a_console_that_takes_nothing_never_blocks_and_misses_what_overflows() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log");
        let gate = Gate::default();
        let mut out = Output::new(
            Some(Box::new(gate.clone())),
            File::create(&log_path).unwrap(),
            u64::MAX,
        );
        // Twice the buffer: every call returns although the console takes nothing.
        let chunk = vec![b'y'; 64 * 1024];
        let total = 2 * CONSOLE_BUFFER;
        for _ in 0..total / chunk.len() {
            out.step_bytes(&chunk);
        }
        let missed = out.not_shown();
        assert!(missed >= (total - CONSOLE_BUFFER) as u64, "missed {missed}");
        assert!(missed <= total as u64);
        out.note_not_shown();
        assert!(std::fs::metadata(&log_path).unwrap().len() as usize > total);
        // The console comes back: it gets what was buffered, then a note about the gap.
        gate.open.store(true, Ordering::SeqCst);
        out.close();
        let seen = gate.seen.text();
        assert!(seen.starts_with(&"y".repeat(CONSOLE_BUFFER)));
        // The gap: the step's bytes that did not fit, and the log's note itself (it found the
        // buffer full too).
        let told: u64 = seen
            .rsplit_once("the console did not keep up; ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no note: {}", &seen[seen.len().saturating_sub(300)..]));
        assert!(told >= missed && told < missed + 200, "{told} vs {missed}");
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(
            log.starts_with(&"y".repeat(total)),
            "the log has every byte"
        );
        assert_eq!(log.matches("did not keep up").count(), 1, "one note");
        assert!(log.contains(&format!("{missed} bytes of output were not shown on it")));
    }

    #[test]
    fn a_terminal_gets_colours_and_no_other_escape_and_the_log_gets_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log");
        let step = b"\x1b]52;c;cGF5bG9hZA==\x07\x1b]0;owned\x07\x1b[32mgreen\x1b[0m\x1b[2J";
        let terminal = Shared::default();
        let pipe = Shared::default();
        for (console, filtered) in [
            (
                Box::new(ToTerminal(Box::new(terminal.clone()))) as Box<dyn ConsoleWrite>,
                true,
            ),
            (Box::new(pipe.clone()), false),
        ] {
            let mut out = Output::new(Some(console), File::create(&log_path).unwrap(), u64::MAX);
            // A sequence split between two reads of the pipe.
            out.step_bytes(&step[..5]);
            out.step_bytes(&step[5..]);
            out.line("==> done");
            out.close();
            let log = std::fs::read(&log_path).unwrap();
            assert!(log.starts_with(step), "{filtered}");
        }
        assert_eq!(terminal.text(), "\x1b[32mgreen\x1b[0m\n==> done\n");
        assert!(pipe.text().starts_with(std::str::from_utf8(step).unwrap()));
    }

    #[test]
    fn bytes_the_log_cannot_take_are_counted_with_their_steps_and_the_error() {
        let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            return;
        };
        let console = Shared::default();
        let mut out = Output::new(Some(Box::new(console.clone())), full, u64::MAX);
        assert_eq!(out.log_lost(), None);
        out.line("==> step 0");
        out.set_step(Some("0"));
        out.step_bytes(&[b'a'; 1000]);
        out.set_step(Some("1"));
        out.step_bytes(b"b\n");
        out.step_bytes(b"c\n");
        out.set_step(None);
        out.step_bytes(b"after\n");
        let lost = out.log_lost().unwrap();
        assert_eq!(lost.bytes, 11 + 1000 + 2 + 2 + 6);
        assert_eq!(lost.steps, ["0", "1"]);
        assert_eq!(lost.error, "No space left on device");
        // The console has it all, and is told.
        out.note_not_shown();
        out.close();
        let shown = console.text();
        assert!(shown.contains("b\nc\nafter\n"), "{shown}");
        assert!(
            shown.contains(
                "==> note: 1021B of output could not be written to the log (steps 0, 1): \
                 No space left on device"
            ),
            "{shown}"
        );
    }

    #[test]
    fn closing_gives_up_on_a_console_that_never_reads() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Gate::default();
        let mut out = Output::new(
            Some(Box::new(gate.clone())),
            File::create(dir.path().join("log")).unwrap(),
            u64::MAX,
        );
        out.step_bytes(b"never shown\n");
        // Returns (after CONSOLE_STALL without progress) although the console takes nothing.
        out.close();
        assert_eq!(gate.seen.text(), "");
        gate.open.store(true, Ordering::SeqCst);
    }
}
