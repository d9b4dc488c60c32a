//! The one writer a run's output goes through: step output byte for byte, to the console as it arrives
//! and to the run's `log` up to its cap; phantom_ci's own lines always on lines of their own.

use std::fs::File;
use std::io::Write;

pub struct Output {
    console: Option<Box<dyn Write + Send>>,
    log: File,
    log_written: u64,
    log_limit: u64,
    capped: bool,
    at_line_start: bool,
}

impl Output {
    /// `console` is where a person watches (phantom_ci's stdout), or `None` for a detached worker.
    pub fn new(console: Option<Box<dyn Write + Send>>, log: File, log_limit: u64) -> Output {
        Output {
            console,
            log,
            log_written: 0,
            log_limit,
            capped: false,
            at_line_start: true,
        }
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
        self.write_log(&bytes[..fits]);
        if fits < bytes.len() {
            self.capped = true;
            let note = format!(
                "\n[phantom_ci: the log reached its cap of {} bytes; later output is not recorded]\n",
                self.log_limit
            );
            self.write_log(note.as_bytes());
        }
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
        self.write_log(&bytes);
    }

    pub fn capped(&self) -> bool {
        self.capped
    }

    fn write_console(&mut self, bytes: &[u8]) {
        if let Some(console) = &mut self.console
            && (console.write_all(bytes).is_err() || console.flush().is_err())
        {
            // The reader went away (`phantom_ci run … | head`): the run goes on, recorded in the log.
            self.console = None;
        }
    }

    fn write_log(&mut self, bytes: &[u8]) {
        // A full disk must not stop the run; the record's result still tells what happened.
        if self.log.write_all(bytes).is_ok() {
            self.log_written += bytes.len() as u64;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

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
    impl Shared {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
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
        let console = console.0.lock().unwrap().clone();
        assert!(console.starts_with(b"==> step 0\nno newline\n==> step 1\nxxx"));
        assert_eq!(console.len(), 11 + 10 + 1 + 11 + 4096 + 1 + 9);
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(log.contains("reached its cap of 2048 bytes"));
        assert!(log.ends_with("==> done\n"));
        assert!(log.len() < 2048 + 200);
    }
}
