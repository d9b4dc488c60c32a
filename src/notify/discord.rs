//! The Discord webhook message: a summary and the log's tail in `content` (at most 2000 characters),
//! an embed coloured by the result, and no mentions at all.

use serde_json::{Value, json};

use super::text::{self, Markup, Summary, code_span, defuse_fences};
use crate::state::records::{RunRecord, RunResult};

/// Discord's limit on a message's `content`.
pub const CONTENT_LIMIT: usize = 2000;
/// Discord's limit on an embed's title.
const TITLE_LIMIT: usize = 256;

const FENCE_OPEN: &str = "```text\n";
const FENCE_CLOSE: &str = "\n```";

/// The JSON body for a Discord webhook. `log` is the end of the run's log.
pub fn payload(record: &RunRecord, log: &str, url: Option<&str>) -> Value {
    let mut summary = Summary::of(record);
    summary.url = url.map(str::to_string);
    let mut title = format!(
        "{} #{}: {}",
        summary.repo,
        summary.run,
        summary.result.as_str()
    );
    title = text::one_line(&title, TITLE_LIMIT);
    let mut embed = json!({
        "title": title,
        "color": color(record.result),
        "footer": { "text": "phantom_ci" },
    });
    if let Some(finished_at) = &record.finished_at {
        embed["timestamp"] = json!(finished_at);
    }
    if let Some(url) = url {
        embed["url"] = json!(url);
    }
    json!({
        "content": content(&summary, log),
        // Nothing a branch name, a commit or a log says can ping anyone.
        "allowed_mentions": { "parse": [] },
        "embeds": [embed],
    })
}

/// The summary lines, then as much of the log's end as fits in a code block.
pub fn content(summary: &Summary, log: &str) -> String {
    text::chat_message(
        summary,
        log,
        &Markup {
            bold: |text| format!("**{}**", text.replace('_', "\\_")),
            span: code_span,
            line: defuse_fences,
            // In `<…>`: a link without a preview.
            link: |url| format!("<{url}>"),
            fence_open: FENCE_OPEN,
            fence_close: FENCE_CLOSE,
            limit: CONTENT_LIMIT,
        },
    )
}

fn color(result: RunResult) -> u32 {
    match result {
        RunResult::Success => 0x2e_b6_7d,
        RunResult::Failure | RunResult::Timeout => 0xe0_1e_5a,
        RunResult::Running => 0x36_c5_f0,
        RunResult::Error | RunResult::Aborted | RunResult::Cancelled | RunResult::Rejected => {
            0xec_b2_2e
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::text::sample_record as record;
    use crate::notify::text::width;

    #[test]
    fn the_run_page_is_linked() {
        let url = "https://ci.example.org/app/7.html";
        let body = payload(&record(RunResult::Success, "master"), "", Some(url));
        let content = body["content"].as_str().unwrap();
        assert!(
            content.contains("\n<https://ci.example.org/app/7.html>"),
            "{content}"
        );
        assert_eq!(body["embeds"][0]["url"], url);
    }

    #[test]
    fn the_summary_names_everything_and_the_log_ends_the_message() {
        let body = payload(
            &record(RunResult::Failure, "master"),
            "building\nFAILED\n",
            None,
        );
        let content = body["content"].as_str().unwrap();
        for part in ["**app** #7", "**failure**", "`master`", "`0123456`", "1.5s"] {
            assert!(content.contains(part), "{part} in {content}");
        }
        assert!(
            content.contains("failing step `[1] test`: `make test`"),
            "{content}"
        );
        assert!(
            content.ends_with("```text\nbuilding\nFAILED\n```"),
            "{content}"
        );
        assert_eq!(body["allowed_mentions"], json!({ "parse": [] }));
        assert_eq!(body["embeds"][0]["title"], "app #7: failure");
        assert_eq!(body["embeds"][0]["color"], 0xe0_1e_5a);
        assert_eq!(body["embeds"][0]["timestamp"], "2026-11-05T10:00:01.500Z");
    }

    #[test]
    fn a_huge_log_is_cut_to_the_limit_on_character_boundaries() {
        let line = "é😀 log line with `backticks` and ``` fences\n";
        let log = format!("{}last line\n", line.repeat(5000));
        let content = payload(&record(RunResult::Failure, "master"), &log, None)["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(width(&content) <= CONTENT_LIMIT, "{}", width(&content));
        assert!(content.chars().count() <= CONTENT_LIMIT);
        assert!(width(&content) > CONTENT_LIMIT - 100, "the room is used");
        assert!(content.ends_with("\nlast line\n```"));
        assert_eq!(content.matches("```").count(), 2, "{content}");
    }

    #[test]
    fn one_enormous_line_keeps_its_end() {
        let log = format!("{}THE END", "x".repeat(10_000));
        let content = payload(&record(RunResult::Failure, "master"), &log, None)["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(width(&content) <= CONTENT_LIMIT);
        assert!(content.ends_with("xxTHE END\n```"));
        assert!(content.contains("```text\n…xxx"));
    }

    #[test]
    fn untrusted_text_cannot_ping_or_break_out() {
        let mut run = record(RunResult::Failure, "@everyone`**x**\n<@&123>");
        run.steps[0].run = "sh -c '```'".into();
        let body = payload(&run, "@here <@123> ```\n```evil", None);
        let content = body["content"].as_str().unwrap();
        assert!(
            content.contains("branch `@everyoneˋ**x** <@&123>`"),
            "{content}"
        );
        assert_eq!(content.matches("```").count(), 2, "{content}");
        assert_eq!(body["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn an_empty_log_gives_the_summary_only() {
        let mut run = record(RunResult::Success, "master");
        run.message = None;
        run.steps.clear();
        let content = payload(&run, "", None)["content"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            content,
            format!(
                "**app** #7 · **success** · branch `master` · commit `0123456` · 1.5s · on `{}`",
                crate::notify::text::host_name()
            )
        );
    }
}
