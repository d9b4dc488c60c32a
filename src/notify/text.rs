//! The text Discord and Slack messages share: a run's summary and the tail of its log, made safe and
//! fitted to a size.
//!
//! Sizes are counted in UTF-16 code units, the stricter of the ways services count "characters": a text
//! that fits by this count also fits by a count of Unicode scalar values.

use crate::describe::{human_ms, short};
use crate::state::records::{RunRecord, RunResult, StepRecord, StepResult};

/// How many characters of the untrusted texts a summary shows at most.
const BRANCH_CHARS: usize = 100;
const COMMAND_CHARS: usize = 200;
const MESSAGE_CHARS: usize = 300;
const SUBJECT_CHARS: usize = 100;

/// The size of `text` as services count it (UTF-16 code units).
pub fn width(text: &str) -> usize {
    text.encode_utf16().count()
}

/// The facts of a run a chat message shows, untrusted ones cleaned and shortened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub repo: String,
    pub run: u64,
    pub result: RunResult,
    pub branch: String,
    pub commit: String,
    /// The commit's subject, empty when the record has none.
    pub subject: String,
    pub duration: String,
    /// Every step that failed or timed out (SPEC §8): first those that failed the run, then those
    /// allowed to fail, each in the record's order; at most [`FAILED_STEPS`].
    pub failed_steps: Vec<FailedStep>,
    /// How many more failed than `failed_steps` holds.
    pub more_failed: usize,
    pub message: Option<String>,
    /// What the run's log is missing, when it could not be written whole (the record's `log_lost`).
    pub log_lost: Option<String>,
    /// The host that ran it (its hostname): with several runner hosts, a post says which (SPEC §7).
    pub host: String,
    /// With a workspace kept for `debug` (`keep_failed`): the command that opens it, and until when.
    pub debug: Option<String>,
    /// The run's page, with `report_url` (SPEC §9): a URL with no space, quote, `<`, `>` or `|`.
    pub url: Option<String>,
}

/// How many failed steps a summary holds at most (a 64-copy matrix may fail whole); a message shows
/// as many as fit in half its room and counts the rest.
pub const FAILED_STEPS: usize = 20;

/// A step that failed or timed out, as a chat message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedStep {
    /// `[1] build`, `[3.1] cross (TARGET=arm64, OPT=-O0)`: its id, name and matrix values.
    pub label: String,
    pub command: String,
    /// `allow_failure = true`: it did not fail the run.
    pub allowed: bool,
}

impl FailedStep {
    fn of(step: &StepRecord) -> FailedStep {
        let name = step
            .title()
            .or_else(|| step.matrix_values().map(|values| format!("({values})")));
        let label = match name {
            Some(name) => format!("[{}] {}", step.id(), one_line(&name, BRANCH_CHARS)),
            None => format!("[{}]", step.id()),
        };
        FailedStep {
            label,
            command: one_line(&step.run, COMMAND_CHARS),
            allowed: step.allow_failure,
        }
    }
}

/// The steps that failed or timed out, those that failed the run first; at most [`FAILED_STEPS`],
/// and how many more.
fn failed_steps(record: &RunRecord) -> (Vec<FailedStep>, usize) {
    let failed =
        |step: &&StepRecord| matches!(step.result, StepResult::Failure | StepResult::Timeout);
    let (allowed, fatal): (Vec<&StepRecord>, Vec<&StepRecord>) = record
        .steps
        .iter()
        .filter(failed)
        .partition(|step| step.allow_failure);
    let total = fatal.len() + allowed.len();
    let shown: Vec<FailedStep> = fatal
        .into_iter()
        .chain(allowed)
        .take(FAILED_STEPS)
        .map(FailedStep::of)
        .collect();
    let more = total - shown.len();
    (shown, more)
}

impl Summary {
    pub fn of(record: &RunRecord) -> Summary {
        let (failed_steps, more_failed) = failed_steps(record);
        Summary {
            repo: one_line(&record.repo, BRANCH_CHARS),
            run: record.run,
            result: record.result,
            branch: one_line(&record.branch, BRANCH_CHARS),
            commit: one_line(short(&record.commit), 40),
            subject: one_line(&record.subject, SUBJECT_CHARS),
            duration: human_ms(record.duration_ms),
            failed_steps,
            more_failed,
            message: record
                .message
                .as_deref()
                .map(|message| one_line(message, MESSAGE_CHARS)),
            log_lost: record
                .log_lost
                .as_ref()
                .map(|lost| one_line(&lost.describe(), MESSAGE_CHARS)),
            host: host_name(),
            debug: record.kept_until.as_ref().map(|until| {
                let command = format!("phantom_ci debug {} {}", record.repo, record.run);
                format!(
                    "{} (workspace kept until {until})",
                    one_line(&command, MESSAGE_CHARS)
                )
            }),
            url: None,
        }
    }
}

/// This machine's hostname on one line (`unknown host` when it cannot be read).
pub fn host_name() -> String {
    let name = nix::unistd::gethostname()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.is_empty() {
        return "unknown host".into();
    }
    one_line(&name, BRANCH_CHARS)
}

/// `text` on one line: control characters (newlines, escapes) become spaces, and at most `max`
/// characters are kept (the cut is marked with `…`).
pub fn one_line(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= max {
        return clean;
    }
    let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Text for an inline code span: a backtick cannot end the span early, so it becomes `ˋ`.
pub fn code_span(text: &str) -> String {
    format!("`{}`", text.replace('`', "ˋ"))
}

/// Breaks every run of backticks with zero-width spaces, so that no log line can close (or open) a
/// code block.
pub fn defuse_fences(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut previous = '\0';
    for c in line.chars() {
        if c == '`' && previous == '`' {
            out.push('\u{200b}');
        }
        out.push(c);
        previous = c;
    }
    out
}

/// The log's text as a reader would see it on a terminal: escape sequences removed, a line redrawn
/// with carriage returns shows its last state, other control characters (but tabs) dropped.
pub fn clean_log(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .split('\n')
        .map(|line| {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let line = line
                .rsplit('\r')
                .find(|part| !part.is_empty())
                .unwrap_or("");
            strip_escapes(line)
        })
        .collect();
    if lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// The line's text without escape sequences and control characters but tabs (the scanner the report
/// and the terminal filter use, [`crate::describe::escapes`]).
fn strip_escapes(line: &str) -> String {
    use crate::describe::escapes::{Scanner, Token};
    let mut scanner = Scanner::new();
    line.chars()
        .filter_map(|c| match scanner.feed(c) {
            Some(Token::Text(c)) => Some(c),
            Some(Token::Control('\t')) => Some('\t'),
            _ => None,
        })
        .collect()
}

/// How a chat service marks a message up.
pub struct Markup {
    /// Bold text (the repo, the result).
    pub bold: fn(&str) -> String,
    /// An inline code span (branch, commit, step, command, message).
    pub span: fn(&str) -> String,
    /// A log line, made safe to put in a code block.
    pub line: fn(&str) -> String,
    /// A link to the run's page.
    pub link: fn(&str) -> String,
    pub fence_open: &'static str,
    pub fence_close: &'static str,
    /// The most characters the whole message may have.
    pub limit: usize,
}

/// The summary lines, then as much of the log's end as fits in a code block within `markup.limit`.
pub fn chat_message(summary: &Summary, log: &str, markup: &Markup) -> String {
    let mut head = format!(
        "{} #{} · {} · branch {} · commit {} · {} · on {}",
        (markup.bold)(&summary.repo),
        summary.run,
        (markup.bold)(summary.result.as_str()),
        (markup.span)(&summary.branch),
        (markup.span)(&summary.commit),
        summary.duration,
        (markup.span)(&summary.host),
    );
    if !summary.subject.is_empty() {
        head.push_str(&format!("\n{}", (markup.span)(&summary.subject)));
    }
    if let Some(url) = &summary.url {
        head.push_str(&format!("\n{}", (markup.link)(url)));
    }
    // Every failed step, as many as fit in half the room (the first always); the rest counted.
    let mut left_out = summary.more_failed;
    for (i, step) in summary.failed_steps.iter().enumerate() {
        let line = format!(
            "\nfailing step {}{}: {}",
            (markup.span)(&step.label),
            if step.allowed {
                " (allowed to fail)"
            } else {
                ""
            },
            (markup.span)(&step.command)
        );
        if i > 0 && width(&head) + width(&line) > markup.limit / 2 {
            left_out += summary.failed_steps.len() - i;
            break;
        }
        head.push_str(&line);
    }
    if left_out > 0 {
        head.push_str(&format!(
            "\nand {left_out} more failed step{}",
            if left_out == 1 { "" } else { "s" }
        ));
    }
    if let Some(message) = &summary.message {
        head.push_str(&format!("\n> {}", (markup.span)(message)));
    }
    if let Some(debug) = &summary.debug {
        head.push_str(&format!("\ndebug: {}", (markup.span)(debug)));
    }
    if let Some(lost) = &summary.log_lost {
        head.push_str(&format!("\nlog incomplete: {}", (markup.span)(lost)));
    }
    let lines: Vec<String> = clean_log(log).iter().map(|l| (markup.line)(l)).collect();
    let frame = width(&head) + 1 + width(markup.fence_open) + width(markup.fence_close);
    let tail = fit_tail(&lines, markup.limit.saturating_sub(frame), width);
    if tail.is_empty() {
        return head;
    }
    format!("{head}\n{}{tail}{}", markup.fence_open, markup.fence_close)
}

/// The last lines of `lines` whose total `measure` (one `\n` between lines) is at most `budget`. When
/// even the last line alone does not fit, its end is kept after a `…`, so the result always ends with
/// the end of the last line.
pub fn fit_tail(lines: &[String], budget: usize, measure: impl Fn(&str) -> usize) -> String {
    let mut used = 0;
    let mut first = lines.len();
    for (i, line) in lines.iter().enumerate().rev() {
        let cost = measure(line) + usize::from(i + 1 < lines.len());
        if used + cost > budget {
            break;
        }
        used += cost;
        first = i;
    }
    if first < lines.len() || budget == 0 {
        return lines[first..].join("\n");
    }
    let Some(last) = lines.last() else {
        return String::new();
    };
    // The last line alone is too long: keep its end, measured character by character.
    let room = budget.saturating_sub(measure("…"));
    let mut kept = Vec::new();
    let mut used = 0;
    for c in last.chars().rev() {
        let cost = measure(c.encode_utf8(&mut [0; 4]));
        if used + cost > room {
            break;
        }
        used += cost;
        kept.push(c);
    }
    std::iter::once('…').chain(kept.into_iter().rev()).collect()
}

/// A failed run for the tests of the message builders.
#[cfg(test)]
pub fn sample_record(result: RunResult, branch: &str) -> RunRecord {
    use crate::state::records::{StepRecord, StepResult, Trigger};
    RunRecord {
        repo: "app".into(),
        run: 7,
        branch: branch.into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        subject: String::new(),
        author: "Test Author <author@example.org>".into(),
        trigger: Trigger::Hook,
        started_at: "2026-11-05T10:00:00.000Z".into(),
        finished_at: Some("2026-11-05T10:00:01.500Z".into()),
        duration_ms: 1500,
        result,
        message: Some("step [1] test: make test exited with status 2".into()),
        steps: vec![StepRecord {
            name: Some("test".into()),
            exit_code: Some(2),
            duration_ms: 1000,
            ..StepRecord::new(1, "make test", StepResult::Failure)
        }],
        log_lost: None,
        kept_until: None,
        workspace: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn untrusted_text_stays_on_one_line_and_in_its_span() {
        assert_eq!(one_line("a\nb\x1b[2J", 100), "a b [2J");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(one_line("ππππ", 4), "ππππ");
        assert_eq!(code_span("x`y"), "`xˋy`");
        assert_eq!(defuse_fences("```rm"), "`\u{200b}`\u{200b}`rm");
        assert_eq!(defuse_fences("a ` b"), "a ` b");
    }

    #[test]
    fn logs_lose_escapes_and_redrawn_lines_show_their_last_state() {
        assert_eq!(
            clean_log("\x1b[31mred\x1b[0m\r\n10%\r50%\r100%\n\x1b]0;title\x07ok\tz\x07\n"),
            ["red", "100%", "ok\tz"]
        );
        assert_eq!(clean_log(""), Vec::<String>::new());
        assert_eq!(clean_log("no newline"), ["no newline"]);
    }

    #[test]
    fn the_tail_fits_and_ends_with_the_last_line() {
        let log = lines("one\ntwo\nthree");
        assert_eq!(fit_tail(&log, 100, width), "one\ntwo\nthree");
        assert_eq!(fit_tail(&log, 9, width), "two\nthree");
        assert_eq!(fit_tail(&log, 8, width), "three");
        assert_eq!(fit_tail(&log, 4, width), "…ree");
        assert_eq!(fit_tail(&[], 4, width), "");
        let wide = vec!["x😀😀".to_string()];
        let tail = fit_tail(&wide, 4, width);
        assert_eq!(tail, "…😀");
        assert!(width(&tail) <= 4);
    }

    /// A step of `sample_record` failed as step `index` (copy `instance` with `TARGET`).
    fn failed(index: u64, instance: Option<u32>, allowed: bool) -> StepRecord {
        let mut step = sample_record(RunResult::Failure, "master").steps.remove(0);
        step.index = index;
        step.name = Some(format!("step{index}"));
        step.instance = instance;
        step.matrix = instance.map(|k| [("TARGET".to_string(), format!("t{k}"))].into());
        step.allow_failure = allowed;
        step
    }

    #[test]
    fn a_kept_workspace_gives_the_debug_command_and_when_it_goes() {
        let mut record = sample_record(RunResult::Failure, "master");
        let plain = crate::notify::discord::content(&Summary::of(&record), "log\n");
        assert!(!plain.contains("phantom_ci debug"), "{plain}");
        record.kept_until = Some("2026-11-05T10:30:01.000Z".into());
        let post = crate::notify::discord::content(&Summary::of(&record), "log\n");
        assert!(
            post.lines().any(|l| l
                == "debug: `phantom_ci debug app 7 (workspace kept until 2026-11-05T10:30:01.000Z)`"),
            "{post}"
        );
    }

    #[test]
    fn every_failed_step_is_named_allowed_ones_marked_and_last() {
        use crate::notify::{discord, slack};
        let mut record = sample_record(RunResult::Failure, "master");
        let mut ok = failed(0, None, false);
        ok.result = StepResult::Success;
        let mut timed_out = failed(3, Some(1), false);
        timed_out.result = StepResult::Timeout;
        record.steps = vec![
            ok,
            failed(1, None, true),
            failed(3, Some(0), false),
            timed_out,
        ];
        record.steps[2].name = None;
        let discord = discord::content(&Summary::of(&record), "log\n");
        let lines: Vec<&str> = discord
            .lines()
            .filter(|l| l.starts_with("failing step"))
            .collect();
        assert_eq!(
            lines,
            [
                "failing step `[3.0] (TARGET=t0)`: `make test`",
                "failing step `[3.1] step3 (TARGET=t1)`: `make test`",
                "failing step `[1] step1` (allowed to fail): `make test`",
            ],
            "{discord}"
        );
        assert!(!discord.contains("more failed"), "{discord}");
        let slack = slack::message(&Summary::of(&record), "");
        assert!(
            slack.contains("failing step `[1] step1` (allowed to fail)"),
            "{slack}"
        );
    }

    #[test]
    fn a_whole_failed_matrix_fits_and_the_rest_is_counted() {
        use crate::notify::{discord, slack};
        let mut record = sample_record(RunResult::Failure, "master");
        record.steps = (0..64).map(|k| failed(3, Some(k), false)).collect();
        for step in &mut record.steps {
            step.run = "x".repeat(1000);
            step.name = Some("&".repeat(1000));
        }
        let log = "a log line\n".repeat(1000);
        let summary = Summary::of(&record);
        assert_eq!(
            (summary.failed_steps.len(), summary.more_failed),
            (FAILED_STEPS, 64 - FAILED_STEPS)
        );
        let discord = discord::content(&summary, &log);
        assert!(width(&discord) <= discord::CONTENT_LIMIT);
        assert!(discord.contains("failing step `[3.0] &&&"), "{discord}");
        let shown = discord.matches("\nfailing step ").count();
        assert!(shown >= 2, "{discord}");
        assert!(
            discord.contains(&format!("\nand {} more failed steps\n", 64 - shown)),
            "{discord}"
        );
        assert!(discord.ends_with("a log line\n```"), "the log still shows");
        let slack = slack::message(&summary, &log);
        assert!(width(&slack) <= slack::TEXT_LIMIT);
        assert!(slack.contains("more failed steps"));
        assert!(slack.ends_with("a log line\n```"), "{slack}");
    }

    #[test]
    fn a_log_that_lost_bytes_is_said_in_each_service() {
        use crate::notify::{discord, slack};
        use crate::state::records::LogLost;
        let mut record = sample_record(RunResult::Success, "master");
        assert!(!discord::content(&Summary::of(&record), "").contains("log incomplete"));
        record.log_lost = Some(LogLost {
            bytes: 4096,
            steps: vec!["1".into()],
            error: "No space left on device".into(),
        });
        let said = "log incomplete: `4.0KiB of output could not be written to the log (step 1): \
                    No space left on device`";
        let summary = Summary::of(&record);
        assert!(discord::content(&summary, "").contains(said));
        assert!(slack::message(&summary, "").contains(said));
    }

    #[test]
    fn the_subject_is_shown_escaped_for_each_service_and_shortened() {
        use crate::notify::{discord, slack};
        let mut record = sample_record(RunResult::Failure, "master");
        record.subject = "Fix <b>x</b> `y` @everyone <!channel> &\x1b[31m".into();
        let summary = Summary::of(&record);
        assert_eq!(
            summary.subject,
            "Fix <b>x</b> `y` @everyone <!channel> & [31m"
        );

        let slack = slack::message(&summary, "");
        assert!(
            slack.contains(
                "\n`Fix &lt;b&gt;x&lt;/b&gt; ˋyˋ @everyone &lt;!channel&gt; &amp; [31m`\n"
            ),
            "{slack}"
        );
        assert!(!slack.contains("<!") && !slack.contains('\x1b'), "{slack}");

        let discord = discord::content(&summary, "");
        assert!(
            discord.contains("\n`Fix <b>x</b> ˋyˋ @everyone <!channel> & [31m`\n"),
            "{discord}"
        );

        record.subject = "s".repeat(500);
        assert_eq!(Summary::of(&record).subject.chars().count(), SUBJECT_CHARS);
        record.subject.clear();
        assert!(!slack::message(&Summary::of(&record), "").contains("\n``"));
    }
}
