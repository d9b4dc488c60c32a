//! After a run: post its result to the webhooks `.env` names, as the repo's `notify` asks (SPEC §5).
//!
//! Nothing here changes a run: posting happens after `run.json` is final, failures come back as notes
//! for stderr, and every post is bounded by a timeout. The message builders are pure functions
//! ([`discord::payload`], [`slack::payload`], [`generic::payload`]); [`http`] does the sending.

pub mod discord;
pub mod generic;
mod http;
pub mod slack;
pub mod text;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::config::Notify;
use crate::config::secrets::Secrets;
use crate::state::records::{RunRecord, RunResult};

/// How much of the end of a run's log is read for a message: far more than a message can hold, and
/// bounded whatever the log's size.
pub const LOG_TAIL_BYTES: u64 = 16 * 1024;

/// Whether a run with `result` is posted, given the repo's `notify` and the previous run's result.
/// `change` counts a first run (no previous result) as a change.
pub fn wanted(mode: Notify, result: RunResult, previous: Option<RunResult>) -> bool {
    match mode {
        Notify::Always => true,
        Notify::Never => false,
        Notify::Failure => result != RunResult::Success,
        Notify::Change => previous != Some(result),
    }
}

/// Posts `record` to every webhook in `secrets`, if `mode` wants it; `log` is the run's log file,
/// `page` its page in the report (`report_url`), linked from every post.
/// Returns a note per failed post. The posts go out in parallel, so the whole takes about as long as
/// the slowest one.
pub fn notify(
    mode: Notify,
    record: &RunRecord,
    previous: Option<&RunRecord>,
    log: &Path,
    page: Option<&str>,
    secrets: &Secrets,
) -> Vec<String> {
    if !wanted(mode, record.result, previous.map(|p| p.result)) {
        return Vec::new();
    }
    let chat = secrets.discord_webhook_url.is_some() || secrets.slack_webhook_url.is_some();
    let tail = if chat {
        read_tail(log, LOG_TAIL_BYTES)
    } else {
        String::new()
    };
    let mut notes = Vec::new();
    let mut posts = Vec::new();
    let mut add = |name, url, body: Result<Vec<u8>, String>| match body {
        Ok(body) => posts.push(http::Post { name, url, body }),
        Err(why) => notes.push(format!("webhook `{name}` not posted: {why}")),
    };
    if let Some(url) = &secrets.discord_webhook_url {
        add("discord", url, json(&discord::payload(record, &tail, page)));
    }
    if let Some(url) = &secrets.slack_webhook_url {
        add("slack", url, json(&slack::payload(record, &tail, page)));
    }
    if let Some(url) = &secrets.webhook_url {
        add("generic", url, generic::payload(record, page));
    }
    let timeout = secrets.webhook_timeout;
    std::thread::scope(|scope| {
        let sending: Vec<_> = posts
            .iter()
            .map(|post| (post.name, scope.spawn(move || http::send(post, timeout))))
            .collect();
        for (name, handle) in sending {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(note)) => notes.push(note),
                Err(_) => notes.push(format!("webhook `{name}`: posting it failed unexpectedly")),
            }
        }
    });
    notes
}

fn json(value: &serde_json::Value) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("cannot serialise the message: {e}"))
}

/// The last `max` bytes of the file at `path` (fewer if it is shorter), as text; when the file is
/// longer, the first, partial line is dropped. Reading seeks from the end, so memory stays bounded
/// whatever the log's size. A log that cannot be read gives an empty text.
pub fn read_tail(path: &Path, max: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let start = len.saturating_sub(max);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.take(max).read_to_end(&mut bytes)?;
        if start > 0
            && let Some(newline) = bytes.iter().position(|&b| b == b'\n')
            && newline + 1 < bytes.len()
        {
            bytes.drain(..=newline);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_modes() {
        use RunResult::{Error, Failure, Success};
        assert!(wanted(Notify::Always, Success, Some(Success)));
        assert!(!wanted(Notify::Never, Failure, None));
        assert!(!wanted(Notify::Failure, Success, Some(Failure)));
        assert!(wanted(Notify::Failure, Error, Some(Error)));
        assert!(wanted(Notify::Change, Success, None));
        assert!(!wanted(Notify::Change, Failure, Some(Failure)));
        assert!(wanted(Notify::Change, Error, Some(Failure)));
    }

    #[test]
    fn the_tail_of_a_big_log_is_read_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut text = "a line of the log é\n".repeat(100_000);
        text.push_str("the last line\n");
        std::fs::write(&path, &text).unwrap();
        let tail = read_tail(&path, 1024);
        assert!(tail.len() <= 1024);
        assert!(
            tail.starts_with("a line"),
            "the partial first line is dropped"
        );
        assert!(tail.ends_with("the last line\n"));
        assert_eq!(read_tail(&path.with_file_name("missing"), 1024), "");
        std::fs::write(&path, "short\n").unwrap();
        assert_eq!(read_tail(&path, 1024), "short\n");
    }
}
