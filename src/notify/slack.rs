//! The Slack incoming-webhook message: the same summary and log tail as Discord's, in `text` (mrkdwn),
//! with `&`, `<` and `>` escaped so that nothing untrusted becomes a mention (`<!channel>`) or a link.

use serde_json::{Value, json};

use super::text::{self, Markup, Summary, code_span, defuse_fences};
use crate::state::records::RunRecord;

/// How long a `text` phantom_ci sends at most (Slack advises 4000 characters; it cuts at 40000).
pub const TEXT_LIMIT: usize = 4000;

const FENCE_OPEN: &str = "```\n";
const FENCE_CLOSE: &str = "\n```";

/// The JSON body for a Slack incoming webhook. `log` is the end of the run's log.
pub fn payload(record: &RunRecord, log: &str, url: Option<&str>) -> Value {
    let mut summary = Summary::of(record);
    summary.url = url.map(str::to_string);
    json!({
        "text": message(&summary, log),
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

/// Slack's escaping of the three control characters of its message format.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn span(text: &str) -> String {
    escape(&code_span(text))
}

pub fn message(summary: &Summary, log: &str) -> String {
    text::chat_message(
        summary,
        log,
        &Markup {
            bold: |text| format!("*{}*", escape(text)),
            span,
            // Lines are measured escaped. Cutting inside an overlong last line may leave half an
            // entity (`…t;`), never a bare `<`.
            line: |line| escape(&defuse_fences(line)),
            link: |url| format!("<{}|the run's page>", escape(url)),
            fence_open: FENCE_OPEN,
            fence_close: FENCE_CLOSE,
            limit: TEXT_LIMIT,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::text::sample_record;
    use crate::state::records::RunResult;

    #[test]
    fn the_summary_and_the_log_tail_are_in_text() {
        let body = payload(
            &sample_record(RunResult::Failure, "master"),
            "a\nb & c\n",
            None,
        );
        let text = body["text"].as_str().unwrap();
        let host = crate::notify::text::host_name();
        assert!(
            text.starts_with(&format!(
                "*app* #7 · *failure* · branch `master` · commit `0123456` · 1.5s · on `{}`\n",
                escape(&host)
            )),
            "{text}"
        );
        assert!(
            text.contains("failing step `[1] test`: `make test`"),
            "{text}"
        );
        assert!(text.ends_with("```\na\nb &amp; c\n```"), "{text}");
        assert_eq!(body["unfurl_links"], false);
    }

    #[test]
    fn the_run_page_is_linked() {
        let url = "https://ci.example.org/app/7.html?a&b";
        let body = payload(&sample_record(RunResult::Success, "master"), "", Some(url));
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains("\n<https://ci.example.org/app/7.html?a&amp;b|the run's page>"),
            "{text}"
        );
    }

    #[test]
    fn nothing_untrusted_can_mention_or_link() {
        let body = payload(
            &sample_record(RunResult::Failure, "<!channel>"),
            "<!here> <@U123|x> <https://evil|click>\n```\nescaped",
            None,
        );
        let text = body["text"].as_str().unwrap();
        assert!(!text.contains("<!"), "{text}");
        assert!(!text.contains("<@") && !text.contains("<http"), "{text}");
        assert!(text.contains("`&lt;!channel&gt;`"), "{text}");
        assert!(text.contains("&lt;!here&gt;"), "{text}");
        assert_eq!(text.matches("```").count(), 2, "{text}");
        assert!(text.ends_with("\nescaped\n```"));
    }

    #[test]
    fn a_huge_log_fits_the_limit_even_escaped() {
        let log = format!("{}last <line>\n", "<&>\n".repeat(100_000));
        let text = message(
            &Summary::of(&sample_record(RunResult::Failure, "master")),
            &log,
        );
        assert!(text::width(&text) <= TEXT_LIMIT, "{}", text::width(&text));
        assert!(text::width(&text) > TEXT_LIMIT - 100);
        assert!(text.ends_with("\nlast &lt;line&gt;\n```"));
    }
}
