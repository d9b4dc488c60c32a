//! Pictures of time, drawn without a script: a repo's recent runs as bars (height: duration, colour:
//! result, each a link to its page), a run's steps as a timeline (width: duration; steps that
//! overlapped on lanes of their own), and times as "5 min ago" with the exact time on hover.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::describe::{self, human_ms};
use crate::state::records::{RunRecord, RunResult, StepRecord, StepResult, StepStart};

use super::html::escape;

/// How many runs a repo's history shows.
pub const HISTORY_RUNS: usize = 50;

const BAR: u32 = 8;
const GAP: u32 = 2;
const HEIGHT: u32 = 40;
/// The lowest bar, so that a run of a few milliseconds can still be seen and clicked.
const MIN_BAR: u32 = 3;

/// How long `record` took, or has taken so far if it is running.
fn elapsed_ms(record: &RunRecord, now: SystemTime) -> u64 {
    if record.result != RunResult::Running {
        return record.duration_ms;
    }
    parse(&record.started_at)
        .and_then(|start| now.duration_since(start).ok())
        .map_or(0, describe::millis)
}

fn parse(time: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(time).ok()
}

/// `runs` (newest first, at most [`HISTORY_RUNS`] drawn) as an inline SVG: one bar per run, oldest on
/// the left, linking to `<href_prefix><run>.html`.
pub fn bars(runs: &[&RunRecord], href_prefix: &str, now: SystemTime) -> String {
    let runs = &runs[..runs.len().min(HISTORY_RUNS)];
    if runs.is_empty() {
        return String::new();
    }
    let longest = runs
        .iter()
        .map(|r| elapsed_ms(r, now))
        .max()
        .unwrap_or(0)
        .max(1);
    let width = runs.len() as u32 * (BAR + GAP) - GAP;
    let mut svg = format!(
        "<svg class=\"history\" width=\"{width}\" height=\"{HEIGHT}\" viewBox=\"0 0 {width} {HEIGHT}\" \
         role=\"img\" aria-label=\"the last {} runs: bar height is the duration, colour the result\">",
        runs.len()
    );
    for (slot, run) in runs.iter().rev().enumerate() {
        let ms = elapsed_ms(run, now);
        // Heights are relative to the longest run shown.
        let height = ((u128::from(ms) * u128::from(HEIGHT)) / u128::from(longest)) as u32;
        let height = height.clamp(MIN_BAR, HEIGHT);
        let x = slot as u32 * (BAR + GAP);
        let result = run.result.as_str();
        let _ = write!(
            svg,
            "<a href=\"{href_prefix}{n}.html\"><rect class=\"hit\" x=\"{x}\" y=\"0\" width=\"{BAR}\" \
             height=\"{HEIGHT}\" fill-opacity=\"0\"/><rect class=\"{result}\" x=\"{x}\" y=\"{y}\" \
             width=\"{BAR}\" height=\"{height}\" rx=\"1\"><title>#{n} {result} · {} · {}</title></rect></a>",
            human_ms(ms),
            escape(&describe::one_line(&run.subject, 60)),
            n = run.run,
            y = HEIGHT - height,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// What a step is called on the page: `[1] build`, `[3.1] cross (TARGET=arm64, OPT=-O0)`; a step
/// without a name by its command (and matrix values). Not escaped.
pub fn step_label(step: &StepRecord) -> String {
    match (step.title(), step.matrix_values()) {
        (Some(title), _) => format!("[{}] {}", step.id(), describe::terminal(&title)),
        (None, None) => format!("[{}] {}", step.id(), describe::one_line(&step.run, 40)),
        (None, Some(values)) => format!(
            "[{}] {} ({})",
            step.id(),
            describe::one_line(&step.run, 40),
            describe::terminal(&values)
        ),
    }
}

/// A step's result as the page shows it: its class and its word (`failure`), and whether it was a
/// failure allowed by `allow_failure` (drawn apart).
pub fn allowed_failure(step: &StepRecord) -> bool {
    step.allow_failure && matches!(step.result, StepResult::Failure | StepResult::Timeout)
}

/// A run's steps on a timeline. With the times each step started and ended (graph workflows, SPEC §8)
/// they sit on a time axis, steps that overlapped on lanes of their own ([`lanes`]), and the steps of
/// a run going on that are `running` now (as of `now`) with them; a record without those times
/// (written before graph workflows) shows its steps side by side, each as wide as its share of the
/// time (a skipped step a sliver).
pub fn timeline(steps: &[StepRecord], running: &[StepStart], now: SystemTime) -> String {
    if steps.is_empty() && running.is_empty() {
        return String::new();
    }
    if let Some(timed) = timed(steps, running, now) {
        return lanes(&timed);
    }
    let mut out = String::from(
        "<div class=\"timeline\" role=\"img\" aria-label=\"the steps, as wide as the time they took\">",
    );
    for step in steps {
        let result = step.result.as_str();
        let grow = if step.result == StepResult::Skipped {
            0
        } else {
            step.duration_ms.max(1)
        };
        let _ = write!(
            out,
            "<span class=\"{result}\" style=\"flex:{grow} 1 0\" title=\"{} · {result} · {}\"></span>",
            escape(&step_label(step)),
            if step.result == StepResult::Skipped {
                "-".to_string()
            } else {
                human_ms(step.duration_ms)
            }
        );
    }
    out.push_str("</div>\n");
    out
}

/// A bar of the time axis: a step with the times it started and ended (or `now`, for a step
/// running), in milliseconds since the first start.
struct Timed {
    id: String,
    /// As [`step_label`]: not escaped.
    label: String,
    /// `success`, `failure`, `timeout` or `running`: the bar's class.
    result: &'static str,
    allowed: bool,
    start: u64,
    end: u64,
}

/// The steps that ran or run, with their times, when every step that ran has both (skipped steps
/// have none and are left out); `None` when one that ran lacks them, or none ran.
fn timed(steps: &[StepRecord], running: &[StepStart], now: SystemTime) -> Option<Vec<Timed>> {
    let mut times = Vec::new();
    for step in steps.iter().filter(|s| s.result != StepResult::Skipped) {
        let start = parse(step.started_at.as_deref()?)?;
        let end = parse(step.finished_at.as_deref()?)?;
        let bar = (
            step.id(),
            step_label(step),
            step.result.as_str(),
            allowed_failure(step),
        );
        times.push((bar, start, end.max(start)));
    }
    for step in running {
        let Some(start) = parse(&step.started_at) else {
            continue;
        };
        let label = match step.title() {
            Some(title) => format!("[{}] {}", step.id(), describe::terminal(&title)),
            None => format!("[{}]", step.id()),
        };
        times.push(((step.id(), label, "running", false), start, now.max(start)));
    }
    let first = times.iter().map(|(_, start, _)| *start).min()?;
    let since = |t: SystemTime| t.duration_since(first).map_or(0, describe::millis);
    Some(
        times
            .into_iter()
            .map(|((id, label, result, allowed), start, end)| Timed {
                id,
                label,
                result,
                allowed,
                start: since(start),
                end: since(end),
            })
            .collect(),
    )
}

/// Which lane each step goes on: steps in the order they started, each on the first lane whose last
/// step ended by then, so that steps whose times overlap are never on one lane.
fn assign_lanes(steps: &[Timed]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by_key(|&i| (steps[i].start, steps[i].end));
    let mut lanes: Vec<(u64, Vec<usize>)> = Vec::new();
    for i in order {
        match lanes.iter_mut().find(|(end, _)| *end <= steps[i].start) {
            Some((end, members)) => {
                *end = steps[i].end;
                members.push(i);
            }
            None => lanes.push((steps[i].end, vec![i])),
        }
    }
    lanes.into_iter().map(|(_, members)| members).collect()
}

/// The steps on a time axis, one lane per row: each bar starts and ends where its step did, shows its
/// id, and names it on hover; an allowed failure is hatched.
fn lanes(steps: &[Timed]) -> String {
    let total = steps.iter().map(|s| s.end).max().unwrap_or(0).max(1);
    let percent = |ms: u64| ms as f64 * 100.0 / total as f64;
    let mut out = String::from(
        "<div class=\"lanes\" role=\"img\" aria-label=\"the steps on a time axis, steps that ran at \
         the same time on lanes of their own\">\n",
    );
    for lane in assign_lanes(steps) {
        out.push_str("<div class=\"lane\">");
        for i in lane {
            let bar = &steps[i];
            let result = bar.result;
            let (allowed, allowed_words) = if bar.allowed {
                (" allowed", " (allowed to fail)")
            } else {
                ("", "")
            };
            let _ = write!(
                out,
                "<span class=\"{result}{allowed}\" style=\"left:{:.3}%;width:{:.3}%\" \
                 title=\"{} · {result}{allowed_words} · {}\"><i>{}</i></span>",
                percent(bar.start),
                percent(bar.end - bar.start),
                escape(&bar.label),
                human_ms(bar.end - bar.start),
                escape(&bar.id),
            );
        }
        out.push_str("</div>\n");
    }
    let _ = writeln!(
        out,
        "<div class=\"axis\"><span>0s</span><span>{}</span></div></div>",
        human_ms(total)
    );
    out
}

/// `time` (RFC 3339, UTC) for people: `2026-11-05 10:00:01 UTC`, as written when it does not read as
/// a time.
pub fn exact(time: &str) -> String {
    let attribute = escape(&describe::terminal(time));
    if parse(time).is_none() {
        return attribute;
    }
    let shown = time.get(..19).map_or_else(
        || attribute.clone(),
        |t| format!("{} UTC", t.replace('T', " ")),
    );
    format!("<time datetime=\"{attribute}\">{shown}</time>")
}

/// `time` (RFC 3339) as "5 min ago" (at `now`), the exact time on hover; as written when it does not
/// read as a time.
pub fn relative(time: &str, now: SystemTime) -> String {
    let exact = escape(&describe::terminal(time));
    let Some(at) = parse(time) else {
        return exact;
    };
    let ago = now.duration_since(at).unwrap_or(Duration::ZERO).as_secs();
    let words = match ago {
        0..60 => "just now".to_string(),
        60..3600 => format!("{} min ago", ago / 60),
        3600..172_800 => format!("{} h ago", ago / 3600),
        _ => format!("{} days ago", ago / 86_400),
    };
    format!("<time datetime=\"{exact}\" title=\"{exact}\">{words}</time>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::records::sample;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn bars_are_as_tall_as_their_runs_are_long_oldest_first() {
        let mut quick = sample(1, RunResult::Success);
        quick.duration_ms = 1;
        let mut slow = sample(2, RunResult::Failure);
        slow.duration_ms = 10_000;
        slow.subject = "<b>fix</b>".into();
        let mut half = sample(3, RunResult::Timeout);
        half.duration_ms = 5_000;
        let svg = bars(&[&half, &slow, &quick], "app/", SystemTime::now());
        assert!(
            svg.starts_with("<svg class=\"history\" width=\"28\""),
            "{svg}"
        );
        let one = svg.find("app/1.html").unwrap();
        let two = svg.find("app/2.html").unwrap();
        let three = svg.find("app/3.html").unwrap();
        assert!(one < two && two < three, "oldest on the left: {svg}");
        assert!(
            svg.contains("class=\"success\" x=\"0\" y=\"37\" width=\"8\" height=\"3\""),
            "{svg}"
        );
        assert!(
            svg.contains("class=\"failure\" x=\"10\" y=\"0\" width=\"8\" height=\"40\""),
            "{svg}"
        );
        assert!(
            svg.contains("class=\"timeout\" x=\"20\" y=\"20\" width=\"8\" height=\"20\""),
            "{svg}"
        );
        assert!(
            svg.contains("#2 failure · 10.0s · &lt;b&gt;fix&lt;/b&gt;"),
            "{svg}"
        );
        assert!(bars(&[], "app/", SystemTime::now()).is_empty());
    }

    #[test]
    fn a_running_run_is_as_tall_as_it_has_lasted_and_only_fifty_are_drawn() {
        let mut running = sample(2, RunResult::Running);
        running.started_at = "2026-11-01T00:00:00.000Z".into();
        let mut done = sample(1, RunResult::Success);
        done.duration_ms = 20_000;
        let svg = bars(&[&running, &done], "", at("2026-11-01T00:00:10Z"));
        assert!(
            svg.contains("class=\"running\" x=\"10\" y=\"20\" width=\"8\" height=\"20\""),
            "{svg}"
        );
        let many: Vec<RunRecord> = (1..=80).map(|n| sample(n, RunResult::Success)).collect();
        let refs: Vec<&RunRecord> = many.iter().collect();
        assert_eq!(
            bars(&refs, "", SystemTime::now()).matches("<a ").count(),
            HISTORY_RUNS
        );
    }

    #[test]
    fn the_timeline_gives_each_step_its_share() {
        let step = |index, result, duration_ms, name: Option<&str>| StepRecord {
            name: name.map(Into::into),
            duration_ms,
            ..StepRecord::new(index, "make <all>", result)
        };
        let html = timeline(
            &[
                step(0, StepResult::Success, 3000, Some("<build>")),
                step(1, StepResult::Failure, 1000, None),
                step(2, StepResult::Skipped, 0, None),
            ],
            &[],
            SystemTime::now(),
        );
        assert!(html.contains("<span class=\"success\" style=\"flex:3000 1 0\" title=\"[0] &lt;build&gt; · success · 3.0s\">"), "{html}");
        assert!(html.contains("<span class=\"failure\" style=\"flex:1000 1 0\" title=\"[1] make &lt;all&gt; · failure · 1.0s\">"), "{html}");
        assert!(
            html.contains("<span class=\"skipped\" style=\"flex:0 1 0\""),
            "{html}"
        );
        assert!(timeline(&[], &[], SystemTime::now()).is_empty());
    }

    /// Step `index` (copy `instance`) from `start` to `end` seconds after 10:00.
    fn timed_step(index: u64, instance: Option<u32>, start: u64, end: u64) -> StepRecord {
        let time = |s: u64| format!("2026-12-07T10:{:02}:{:02}.000Z", s / 60, s % 60);
        StepRecord {
            instance,
            matrix: instance.map(|k| [("T".to_string(), format!("<{k}>"))].into()),
            name: Some("build".into()),
            started_at: Some(time(start)),
            finished_at: Some(time(end)),
            duration_ms: (end - start) * 1000,
            ..StepRecord::new(index, "make", StepResult::Success)
        }
    }

    /// The bars of each lane of `html`, by step id.
    fn lanes_of(html: &str) -> Vec<Vec<String>> {
        html.split("<div class=\"lane\">")
            .skip(1)
            .map(|lane| {
                let lane = &lane[..lane.find("</div>").unwrap()];
                lane.split("<i>")
                    .skip(1)
                    .map(|bar| bar[..bar.find("</i>").unwrap()].to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn overlapping_steps_go_on_lanes_of_their_own() {
        // 0 → {1, 2.0, 2.1} → 3, with 2.1 ending late; a skipped step has no times.
        let mut failed = timed_step(2, Some(1), 10, 40);
        failed.result = StepResult::Failure;
        failed.allow_failure = true;
        let mut skipped = timed_step(4, None, 0, 0);
        (skipped.result, skipped.started_at, skipped.finished_at) =
            (StepResult::Skipped, None, None);
        let steps = [
            timed_step(0, None, 0, 10),
            timed_step(1, None, 10, 20),
            timed_step(2, Some(0), 10, 30),
            failed,
            timed_step(3, None, 40, 50),
            skipped,
        ];
        let html = timeline(&steps, &[], SystemTime::now());
        assert_eq!(
            lanes_of(&html),
            [vec!["0", "1", "3"], vec!["2.0"], vec!["2.1"]],
            "{html}"
        );
        assert!(
            html.contains("<span class=\"success\" style=\"left:80.000%;width:20.000%\""),
            "{html}"
        );
        assert!(
            html.contains(
                "<span class=\"failure allowed\" style=\"left:20.000%;width:60.000%\" \
                 title=\"[2.1] build (T=&lt;1&gt;) · failure (allowed to fail) · 30.0s\">"
            ),
            "{html}"
        );
        assert!(html.contains("<span>50.0s</span>"), "{html}");
        assert!(!html.contains("[4]"), "a skipped step is not on the axis");

        // One lane when nothing overlaps, touching ends included.
        let one = timeline(
            &[timed_step(0, None, 0, 10), timed_step(1, None, 10, 20)],
            &[],
            SystemTime::now(),
        );
        assert_eq!(lanes_of(&one), [vec!["0", "1"]]);

        // A run going on: the steps running now end at `now`, on lanes of their own.
        let running = [StepStart {
            index: 5,
            instance: None,
            name: Some("<deploy>".into()),
            matrix: None,
            started_at: "2026-12-07T10:00:20.000Z".into(),
        }];
        let live = timeline(
            &[timed_step(0, None, 0, 10), timed_step(1, None, 10, 30)],
            &running,
            at("2026-12-07T10:00:40Z"),
        );
        assert_eq!(lanes_of(&live), [vec!["0", "1"], vec!["5"]], "{live}");
        assert!(
            live.contains(
                "<span class=\"running\" style=\"left:50.000%;width:50.000%\" \
                 title=\"[5] &lt;deploy&gt; · running · 20.0s\"><i>5</i></span>"
            ),
            "{live}"
        );
        let only_running = timeline(&[], &running, at("2026-12-07T10:00:40Z"));
        assert_eq!(lanes_of(&only_running), [vec!["5"]]);

        // A record from before graph workflows (no times): side by side, as before.
        let mut old = timed_step(0, None, 0, 10);
        old.finished_at = None;
        let html = timeline(&[old, timed_step(1, None, 10, 20)], &[], SystemTime::now());
        assert!(html.starts_with("<div class=\"timeline\""), "{html}");
        assert!(!html.contains("lane"));
    }

    #[test]
    fn times_read_as_ago_with_the_exact_time_on_hover() {
        let now = at("2026-11-03T12:00:00Z");
        let t = |s| relative(s, now);
        assert_eq!(
            t("2026-11-03T11:59:30.000Z"),
            "<time datetime=\"2026-11-03T11:59:30.000Z\" title=\"2026-11-03T11:59:30.000Z\">just now</time>"
        );
        assert!(t("2026-11-03T11:55:00.000Z").contains(">5 min ago<"));
        assert!(t("2026-11-03T09:00:00.000Z").contains(">3 h ago<"));
        assert!(t("2026-11-01T00:00:00.000Z").contains(">2 days ago<"));
        assert!(
            t("2026-11-04T00:00:00.000Z").contains(">just now<"),
            "a clock ahead"
        );
        assert_eq!(t("<not a time>"), "&lt;not a time&gt;");
        assert_eq!(
            exact("2026-11-03T11:59:30.000Z"),
            "<time datetime=\"2026-11-03T11:59:30.000Z\">2026-11-03 11:59:30 UTC</time>"
        );
        assert_eq!(exact("<x>"), "&lt;x&gt;");
    }
}
