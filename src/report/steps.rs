//! Each step's own log on its run's page (SPEC §8): one `<details>` per step that has a log
//! (`steps/<id>.log`, written by the runner), rendered like the run's log (colours kept, every other
//! escape dropped, HTML escaped) and capped like it: at most [`STEP_TAIL`] of each step's end, and
//! [`super::LOG_TAIL`] for all of a page's step logs together, given first to the steps that failed.

use std::fmt::Write;

use crate::state::records::{RunDir, RunRecord, StepResult, StepStart};

use super::LogTail;
use super::history::{allowed_failure, step_label};
use super::html::{escape, result_cell};

/// How much of the end of one step's log a page shows at most.
pub const STEP_TAIL: u64 = super::LOG_TAIL / 4;

/// The least of a step's log worth showing when the page's room is nearly used up.
const MIN_TAIL: u64 = 4 << 10;

/// One step's log as a run's page shows it.
pub struct StepLog {
    /// `3`, `3.1`.
    pub id: String,
    /// `[3.1] cross (TARGET=arm64)`: made terminal-safe, not escaped.
    pub label: String,
    /// `success`, `failure`, `timeout`, or `running` for a step of a run going on.
    pub result: &'static str,
    /// A failure allowed by `allow_failure`.
    pub allowed: bool,
    /// The end of its log; `text: None` when the page had no room left for it.
    pub tail: LogTail,
}

impl StepLog {
    /// Whether it failed the run: shown open.
    fn failed_the_run(&self) -> bool {
        matches!(self.result, "failure" | "timeout") && !self.allowed
    }
}

/// The logs of `record`'s steps that have one (and of the steps running now, for a run going on), in
/// step order; the room ([`super::LOG_TAIL`] in all) goes first to the steps that failed the run, then
/// to allowed failures, then to the rest.
/// `running`: the steps of `record` going on now (read once by the caller, for the page too).
pub fn read(run: &RunDir, record: &RunRecord, running: &[StepStart]) -> Vec<StepLog> {
    // Runs from before step logs have no `steps/`: one look, not one per step.
    if !run.path.join("steps").is_dir() {
        return Vec::new();
    }
    let mut logs: Vec<(u64, Option<u32>, StepLog)> = Vec::new();
    for step in record
        .steps
        .iter()
        .filter(|s| s.result != StepResult::Skipped)
    {
        let result = step.result.as_str();
        logs.push((
            step.index,
            step.instance,
            StepLog {
                id: step.id(),
                label: step_label(step),
                result,
                allowed: allowed_failure(step),
                tail: missing(),
            },
        ));
    }
    if record.result == crate::state::records::RunResult::Running {
        for step in running {
            let label = match step.title() {
                Some(title) => format!("[{}] {}", step.id(), crate::describe::terminal(&title)),
                None => format!("[{}]", step.id()),
            };
            logs.push((
                step.index,
                step.instance,
                StepLog {
                    id: step.id(),
                    label,
                    result: "running",
                    allowed: false,
                    tail: missing(),
                },
            ));
        }
    }
    logs.sort_by_key(|(index, instance, _)| (*index, *instance));
    // The room, first to what failed the run, then to allowed failures, then to the rest.
    let mut order: Vec<usize> = (0..logs.len()).collect();
    order.sort_by_key(|&i| {
        let log = &logs[i].2;
        match (log.failed_the_run(), log.allowed) {
            (true, _) => 0,
            (false, true) => 1,
            _ => 2,
        }
    });
    let mut room = super::LOG_TAIL;
    for i in order {
        let log = &mut logs[i].2;
        let path = run.step_log(&log.id);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        // Less than a screenful is not worth showing: the command that prints it all is.
        if room < MIN_TAIL {
            log.tail.size = meta.len();
            log.tail.cut = true;
            continue;
        }
        log.tail = super::log_tail(&path, STEP_TAIL.min(room));
        room = room.saturating_sub(log.tail.text.as_ref().map_or(0, |t| t.len() as u64));
    }
    logs.into_iter()
        .map(|(_, _, log)| log)
        .filter(|log| log.tail.text.is_some() || log.tail.cut)
        .collect()
}

fn missing() -> LogTail {
    LogTail {
        text: None,
        cut: false,
        size: 0,
    }
}

/// The "Step logs" section of run `run` of `repo`: a `<details>` per step, open for a step that failed
/// the run; nothing when no step has a log.
pub fn section(repo: &str, run: u64, logs: &[StepLog]) -> String {
    if logs.is_empty() {
        return String::new();
    }
    let repo = escape(repo);
    let mut out = String::from("<h2>Step logs</h2>\n");
    for log in logs {
        let _ = writeln!(
            out,
            "<details class=\"step-log\" id=\"step-{id}\"{open}><summary><code>{label}</code> {result}{allowed} \
             <span class=\"note\">{size}</span></summary>",
            id = escape(&log.id),
            open = if log.failed_the_run() { " open" } else { "" },
            label = escape(&log.label),
            result = result_cell(log.result),
            allowed = if log.allowed {
                " <span class=\"note\">allowed to fail</span>"
            } else {
                ""
            },
            size = super::human_size(log.tail.size),
        );
        let all_of_it = format!(
            "<code>phantom_ci logs {repo} {run} --step {}</code> prints all of it.",
            escape(&log.id)
        );
        match &log.tail.text {
            None => {
                let _ = writeln!(
                    out,
                    "<p class=\"note\">Not shown: the page has no room left for it. {all_of_it}</p>"
                );
            }
            Some(text) => {
                if log.tail.cut {
                    let _ = writeln!(
                        out,
                        "<p class=\"note\">Only its end is shown. {all_of_it}</p>"
                    );
                }
                if text.is_empty() && !log.tail.cut {
                    out.push_str("<p class=\"note\">It printed nothing.</p>\n");
                } else {
                    out.push_str("<pre class=\"log\">");
                    super::ansi::Renderer::new().push(text, &mut out);
                    out.push_str("</pre>\n");
                }
            }
        }
        out.push_str("</details>\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::text::sample_record;
    use crate::state::records::RunResult;

    fn run_dir(root: &std::path::Path) -> RunDir {
        RunDir {
            repo: "app".into(),
            number: 7,
            path: root.to_path_buf(),
        }
    }

    #[test]
    fn each_step_shows_its_own_log_escaped_and_capped() {
        let tmp = tempfile::tempdir().unwrap();
        let run = run_dir(tmp.path());
        let mut record = sample_record(RunResult::Failure, "master");
        let failing = record.steps[0].clone();
        let mut first = failing.clone();
        (first.index, first.result, first.name) = (0, StepResult::Success, None);
        let mut copy = failing.clone();
        (copy.index, copy.instance, copy.result) = (2, Some(1), StepResult::Failure);
        copy.allow_failure = true;
        copy.matrix = Some([("T".to_string(), "<x>".to_string())].into());
        let mut skipped = failing.clone();
        (skipped.index, skipped.result) = (3, StepResult::Skipped);
        record.steps = vec![copy, failing, first, skipped];
        std::fs::create_dir(tmp.path().join("steps")).unwrap();
        std::fs::write(run.step_log("0"), "").unwrap();
        std::fs::write(run.step_log("1"), "\x1b[31m<b>bad</b>\x1b[0m\x1b]0;t\x07\n").unwrap();
        std::fs::write(run.step_log("2.1"), "x\n".repeat(200_000)).unwrap();
        let logs = read(&run, &record, &[]);
        let ids: Vec<&str> = logs.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(
            ids,
            ["0", "1", "2.1"],
            "in step order, the skipped one has none"
        );
        let html = section("app", 7, &logs);
        assert!(
            html.contains(
                "<details class=\"step-log\" id=\"step-1\" open><summary><code>[1] test</code> \
                 <span class=\"result failure\">failure</span>"
            ),
            "{html}"
        );
        assert!(
            html.contains(
                "<pre class=\"log\"><span class=\"fg1\">&lt;b&gt;bad&lt;/b&gt;</span>\n</pre>"
            ),
            "{html}"
        );
        assert!(!html.contains('\x1b') && !html.contains("<b>"), "{html}");
        assert!(
            html.contains(
                "<details class=\"step-log\" id=\"step-2.1\"><summary><code>[2.1] test (T=&lt;x&gt;)</code> \
                 <span class=\"result failure\">failure</span> <span class=\"note\">allowed to fail</span>"
            ),
            "{html}"
        );
        assert!(
            html.contains("Only its end is shown. <code>phantom_ci logs app 7 --step 2.1</code>"),
            "{html}"
        );
        assert!(html.contains("It printed nothing."), "{html}");
        assert!(html.len() < 300_000);
        assert!(section("app", 7, &[]).is_empty());
    }

    #[test]
    fn the_page_has_room_for_the_failed_steps_first() {
        let tmp = tempfile::tempdir().unwrap();
        let run = run_dir(tmp.path());
        let mut record = sample_record(RunResult::Failure, "master");
        let failing = record.steps[0].clone();
        record.steps = (0..8)
            .map(|index| {
                let mut step = failing.clone();
                step.index = index;
                step.result = StepResult::Success;
                step
            })
            .collect();
        record.steps[7].result = StepResult::Failure;
        std::fs::create_dir(tmp.path().join("steps")).unwrap();
        for step in &record.steps {
            std::fs::write(run.step_log(&step.id()), "y\n".repeat(150_000)).unwrap();
        }
        let logs = read(&run, &record, &[]);
        assert_eq!(logs.len(), 8);
        assert!(logs[7].tail.text.is_some(), "the failed step has its share");
        let shown: u64 = logs
            .iter()
            .filter_map(|l| l.tail.text.as_ref())
            .map(|t| t.len() as u64)
            .sum();
        assert!(shown <= super::super::LOG_TAIL, "{shown}");
        assert!(logs.iter().any(|l| l.tail.text.is_none()));
        let html = section("app", 7, &logs);
        assert!(html.contains("the page has no room left for it"), "{html}");
    }
}
