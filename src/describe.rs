//! How runs are put into words: short commit ids, durations, signal names, and untrusted text (branch
//! names, step names, commands, commit subjects) made safe for a terminal. The terminal output, the chat
//! posts and the report all use these, so this module sits below all of them.

use std::time::Duration;

use nix::sys::signal::Signal;

/// The short form of a commit id (7 characters).
pub fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

/// A duration in whole milliseconds, saturating.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A duration for people, in whole seconds (at least one): `1m 30s`.
pub fn human(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs().max(1))).to_string()
}

/// Milliseconds for people: `850ms`, `12.3s`.
pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// The name of signal number `signal` (`SIGKILL`).
pub fn signal_name(signal: i32) -> &'static str {
    Signal::try_from(signal).map_or("unknown signal", Signal::as_str)
}

/// Replaces control characters (escape sequences, carriage returns, bells, …) with `?`, so that a branch
/// or step name cannot move the cursor, rewrite earlier lines or change the terminal's title.
pub fn terminal(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_newlines_are_neutralised() {
        assert_eq!(terminal("ok\x1b[2J\r\nx\u{9b}y"), "ok?[2J??x?y");
        assert_eq!(terminal("feature/π"), "feature/π");
    }
}
