//! How runs are put into words: short commit ids, durations, signal names, the colours of results on a
//! terminal, and untrusted text (branch names, step names, commands, commit subjects) made safe for a
//! terminal. The terminal output, the chat posts and the report all use these, so this module sits
//! below all of them.

pub mod escapes;

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

/// Bytes that should be text but need not be (a git ref name may hold any byte but a few), made
/// terminal-safe: the UTF-8 parts as [`terminal`] makes them, every other byte as `\xNN`.
pub fn escaped_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&terminal(chunk.valid()));
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// A size for people: `812B`, `3.4KiB`, `1.2GiB` (one decimal from KiB up).
pub fn human_bytes(bytes: u64) -> String {
    let units = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in units {
        if bytes >= 1 << shift {
            #[allow(clippy::cast_precision_loss)] // one decimal shown
            let value = bytes as f64 / (1u64 << shift) as f64;
            return format!("{value:.1}{unit}");
        }
    }
    format!("{bytes}B")
}

/// `text` made terminal-safe ([`terminal`]) and cut to at most `max` characters, the cut marked with
/// `…`: a commit's subject in a header or a table.
pub fn one_line(text: &str, max: usize) -> String {
    let clean = terminal(text);
    if clean.chars().count() <= max {
        return clean;
    }
    let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The colour of a run's or step's result on a terminal: green for `success`, red for `failure`,
/// `error` and `rejected` (and a record that cannot be read), yellow for `timeout`, `aborted` and
/// `cancelled`, cyan for `running`; anything else plain.
pub fn result_style(result: &str) -> anstyle::Style {
    use anstyle::AnsiColor;
    let colour = match result {
        "success" => AnsiColor::Green,
        "failure" | "error" | "rejected" | "unreadable" | "config error" => AnsiColor::Red,
        "timeout" | "aborted" | "cancelled" => AnsiColor::Yellow,
        "running" => AnsiColor::Cyan,
        _ => return anstyle::Style::new(),
    };
    anstyle::Style::new().fg_color(Some(colour.into()))
}

/// `text` in `style`, with the escape sequences that start and end it (none for a plain style).
pub fn paint(text: &str, style: anstyle::Style) -> String {
    if style == anstyle::Style::new() {
        return text.to_string();
    }
    format!("{}{text}{}", style.render(), style.render_reset())
}

/// Whether what phantom_ci writes to its standard output may be in colour: it is a terminal, and
/// neither `NO_COLOR` (any non-empty value), `CLICOLOR=0` nor `TERM=dumb` says otherwise (the rules of
/// `anstream`, which clap follows too). Never for a pipe, a file or a pusher's `git push`.
pub fn stdout_in_colour() -> bool {
    anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_are_shown_escaped_and_controls_made_safe() {
        assert_eq!(escaped_bytes(b"main"), "main");
        assert_eq!(
            escaped_bytes(b"r\xffel/\xc3\xa9\xc3"),
            "r\\xffel/\u{e9}\\xc3"
        );
        assert_eq!(escaped_bytes(b"\x1b]52;c;x\x07\xfe"), "?]52;c;x?\\xfe");
    }

    #[test]
    fn results_have_colours_and_plain_styles_add_nothing() {
        assert_eq!(
            paint("success", result_style("success")),
            "\x1b[32msuccess\x1b[0m"
        );
        assert_eq!(
            paint("failure", result_style("failure")),
            "\x1b[31mfailure\x1b[0m"
        );
        assert_eq!(
            paint("timeout", result_style("timeout")),
            "\x1b[33mtimeout\x1b[0m"
        );
        assert_eq!(
            paint("running", result_style("running")),
            "\x1b[36mrunning\x1b[0m"
        );
        assert_eq!(paint("never ran", result_style("never ran")), "never ran");
    }

    #[test]
    fn escapes_and_newlines_are_neutralised() {
        assert_eq!(terminal("ok\x1b[2J\r\nx\u{9b}y"), "ok?[2J??x?y");
        assert_eq!(terminal("feature/π"), "feature/π");
        assert_eq!(one_line("fix \x1b[31mred\x1b[0m", 100), "fix ?[31mred?[0m");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(human_bytes(812), "812B");
        assert_eq!(human_bytes(3 << 19), "1.5MiB");
        assert_eq!(human_bytes(10 << 30), "10.0GiB");
        assert_eq!(one_line("ππππ", 4), "ππππ");
    }
}
