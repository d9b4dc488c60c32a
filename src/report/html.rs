//! The report's HTML: the index and one page per run. Every untrusted text (branch, subject, author,
//! step names, commands, messages, log lines, artifact names) goes through [`escape`]; pages carry no
//! script and load nothing from elsewhere (the stylesheet is inline, pictures are inline SVG, the badge
//! is a file beside the index), and their Content-Security-Policy forbids both should anything slip
//! through.

use std::fmt::Write;
use std::time::SystemTime;

use crate::config::Branches;
use crate::describe;
use crate::describe::{human_ms, short, signal_name};
use crate::state::records::{RunRecord, RunResult, StepRecord, StepResult, StepStart, Unreadable};

use super::LogTail;
use super::artifacts::Listing;
use super::badge::{self, Value};
use super::history;
use super::steps::{self, StepLog};

/// `text` made safe in HTML text and in quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

/// [`escape`], appended to `out`.
pub fn escape_into(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// An untrusted one-line text: control characters shown as `?`, then escaped.
fn field(text: &str) -> String {
    escape(&describe::terminal(text))
}

/// The report's stylesheet (light and dark, narrow and wide screens), inlined in every page.
pub const STYLESHEET: &str = include_str!("style.css");

/// The Content-Security-Policy of every page: no script, nothing from elsewhere; styles inline, images
/// from the report itself (the badges).
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
                       base-uri 'none'; form-action 'none'";

/// A whole page; `root` is the way back to the report's root (`""` or `"../"`); `reload`: seconds
/// after which the browser loads the page again (a run going on).
pub fn page(title: &str, root: &str, reload: Option<u32>, body: &str) -> String {
    let reload = reload.map_or(String::new(), |s| {
        format!("<meta http-equiv=\"refresh\" content=\"{s}\">\n")
    });
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n{reload}\
         <title>{title}</title>\n<style>{STYLESHEET}</style>\n</head>\n<body>\n\
         <p class=\"top\"><a href=\"{root}index.html\">phantom_ci</a></p>\n{body}</body>\n</html>\n"
    )
}

/// How often a page of a run going on reloads itself, in seconds.
pub const RUN_RELOAD: u32 = 5;
/// How often the index reloads itself while a run goes on.
pub const INDEX_RELOAD: u32 = 10;

/// How many characters of a commit's subject the index shows (the run's page shows all of it).
const SUBJECT_CHARS: usize = 80;

/// An untrusted text that may be empty (a record written before it existed): `-` then.
fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        field(text)
    }
}

pub(super) fn result_cell(result: &str) -> String {
    // Results are phantom_ci's own words, safe as class names.
    format!("<span class=\"result {result}\">{result}</span>")
}

fn duration(record: &RunRecord) -> String {
    if record.result == RunResult::Running {
        "-".into()
    } else {
        human_ms(record.duration_ms)
    }
}

/// One configured repo as the index shows it.
pub struct RepoRuns {
    pub name: String,
    pub branch: String,
    /// Its newest runs, newest first (up to [`history::HISTORY_RUNS`]); a record that cannot be read
    /// is listed as such.
    pub runs: Vec<Result<RunRecord, Unreadable>>,
    /// How many runs are recorded in all.
    pub recorded: usize,
    /// One line per branch that has runs: the repo's main line first, then the most recently run.
    pub lines: Vec<BranchLine>,
    /// What the repo's own badge says (its main line's newest run, SPEC §9).
    pub badge: Value,
}

/// One branch of a repo as the index shows it: its newest run, its history, its badge.
pub struct BranchLine {
    pub branch: String,
    /// Its newest runs, newest first (up to [`history::HISTORY_RUNS`]); never empty.
    pub runs: Vec<RunRecord>,
}

impl RepoRuns {
    /// What the index shows of repo `name`, which runs `branches`, from its records newest first
    /// (`recorded` in all): the newest [`INDEX_RUNS`](super) for its table, a line per branch, and its
    /// badge — the newest run of the first `target_branch` entry that is a name, or, when every entry
    /// is a pattern, the newest run of any branch.
    pub fn gather(
        name: &str,
        branches: &Branches,
        newest_first: impl IntoIterator<Item = Result<RunRecord, Unreadable>>,
        recorded: usize,
        table: usize,
    ) -> RepoRuns {
        let main = branches.default_branch();
        let mut runs = Vec::new();
        let mut lines: Vec<BranchLine> = Vec::new();
        let mut badge = None;
        for record in newest_first {
            match &record {
                Ok(run) => {
                    if badge.is_none() && main.is_none_or(|main| main == run.branch) {
                        badge = Some(Value::Result(run.result));
                    }
                    match lines.iter_mut().find(|l| l.branch == run.branch) {
                        Some(line) if line.runs.len() < history::HISTORY_RUNS => {
                            line.runs.push(run.clone());
                        }
                        Some(_) => {}
                        None => lines.push(BranchLine {
                            branch: run.branch.clone(),
                            runs: vec![run.clone()],
                        }),
                    }
                }
                // Whose run it was cannot be told: it may be the main line's newest.
                Err(_) if badge.is_none() => badge = Some(Value::Unreadable),
                Err(_) => {}
            }
            if runs.len() < table {
                runs.push(record);
            }
        }
        // The main line first; the others as they come, the most recently run first.
        if let Some(main) = main
            && let Some(at) = lines.iter().position(|l| l.branch == main)
        {
            let line = lines.remove(at);
            lines.insert(0, line);
        }
        RepoRuns {
            name: name.to_string(),
            branch: branches.to_string(),
            runs,
            recorded,
            lines,
            badge: badge.unwrap_or(Value::None),
        }
    }

    /// When its newest readable run started (RFC 3339 in UTC: ordered as text), if it ran.
    fn last_started(&self) -> Option<&str> {
        self.runs
            .iter()
            .find_map(|r| r.as_ref().ok())
            .map(|r| r.started_at.as_str())
    }
}

/// `index.html`: every configured repo — the most recently run first — with its badge, its last run
/// and the commit's subject, the bars of its last runs and a table of the newest ones.
pub fn index(repos: &[RepoRuns], recent: usize, now: SystemTime) -> String {
    let mut order: Vec<&RepoRuns> = repos.iter().collect();
    // Stable: repos that never ran keep the configuration's order, after the others.
    order.sort_by(|a, b| b.last_started().cmp(&a.last_started()));
    let running = repos.iter().any(|repo| {
        repo.runs
            .iter()
            .any(|r| r.as_ref().is_ok_and(|r| r.result == RunResult::Running))
    });
    let mut body = String::from("<h1>phantom_ci</h1>\n");
    let generated = describe::terminal(&crate::state::records::rfc3339(now));
    let _ = writeln!(
        body,
        "<p class=\"note\">Written at <time datetime=\"{generated}\">{generated}</time>; times \
         below are as of then{}.</p>",
        if running {
            format!("; runs are going on, so this page reloads every {INDEX_RELOAD} seconds")
        } else {
            String::new()
        }
    );
    if repos.is_empty() {
        body.push_str("<p>No repos are configured.</p>\n");
    }
    for repo in order {
        repo_section(&mut body, repo, recent, now);
    }
    page("phantom_ci", "", running.then_some(INDEX_RELOAD), &body)
}

fn repo_section(body: &mut String, repo: &RepoRuns, recent: usize, now: SystemTime) {
    // Repo names are validated: letters, digits, `_` and `-`, safe in a path, a URL and an id.
    let name = escape(&repo.name);
    let _ = writeln!(
        body,
        "<section class=\"repo\" id=\"{name}\">\n<h2><a href=\"#{name}\">{name}</a> \
         <img src=\"badge/{name}.svg\" alt=\"{}\" width=\"{}\" height=\"20\"></h2>\n\
         <p class=\"note\">{} <code>{}</code> · {} recorded</p>",
        repo.badge.word(),
        badge::width(Some(repo.badge.word())),
        if repo.branch.contains(", ") {
            "Branches"
        } else {
            "Branch"
        },
        field(&repo.branch),
        match repo.recorded {
            1 => "1 run".to_string(),
            n => format!("{n} runs"),
        }
    );
    match repo.runs.first() {
        None => {
            body.push_str("<p>No runs yet.</p>\n</section>\n");
            return;
        }
        Some(Err(unreadable)) => {
            let _ = writeln!(
                body,
                "<p class=\"last\">{} run #{}: its record cannot be read: {}</p>",
                result_cell("unreadable"),
                unreadable.run,
                field(&unreadable.reason)
            );
        }
        Some(Ok(_)) => {}
    }
    for line in &repo.lines {
        branch_line(body, &repo.name, line, now);
    }
    let shown = repo.runs.len().min(recent);
    let _ = writeln!(
        body,
        "<details><summary>The newest {shown} of {} runs</summary>\n<div class=\"scroll\"><table>\n\
         <tr><th>Run</th><th>Result</th><th>Subject</th><th class=\"hide-narrow\">Branch</th>\
         <th class=\"hide-narrow\">Commit</th><th class=\"hide-narrow\">Trigger</th><th>Started</th>\
         <th>Duration</th></tr>",
        repo.recorded
    );
    for run in &repo.runs[..shown] {
        let run = match run {
            Ok(run) => run,
            Err(unreadable) => {
                let _ = writeln!(
                    body,
                    "<tr><td>#{}</td><td>{}</td><td colspan=\"6\">its record cannot be read: \
                     {}</td></tr>",
                    unreadable.run,
                    result_cell("unreadable"),
                    field(&unreadable.reason)
                );
                continue;
            }
        };
        let _ = writeln!(
            body,
            "<tr><td><a href=\"{name}/{n}.html\">#{n}</a></td><td>{}</td><td class=\"subject\">{}</td>\
             <td class=\"hide-narrow\"><code>{}</code></td><td class=\"hide-narrow\"><code>{}</code></td>\
             <td class=\"hide-narrow\">{}</td><td>{}</td><td>{}</td></tr>",
            result_cell(run.result.as_str()),
            escape(&describe::one_line(&run.subject, SUBJECT_CHARS)),
            field(&run.branch),
            field(short(&run.commit)),
            run.trigger.as_str(),
            history::relative(&run.started_at, now),
            duration(run),
            n = run.run,
        );
    }
    body.push_str("</table></div></details>\n</section>\n");
}

/// A branch's line: its badge and name, its newest run with the commit's subject, its history bars.
fn branch_line(body: &mut String, repo: &str, line: &BranchLine, now: SystemTime) {
    let Some(last) = line.runs.first() else {
        return;
    };
    let subject = if last.subject.is_empty() {
        String::new()
    } else {
        format!(
            "<span class=\"subject\">{}</span>",
            escape(&describe::one_line(&last.subject, SUBJECT_CHARS))
        )
    };
    let result = last.result.as_str();
    let _ = writeln!(
        body,
        "<div class=\"branch\"><p class=\"last\"><img src=\"badge/{repo}/{}.svg\" alt=\"{result}\" \
         width=\"{}\" height=\"20\"> <code class=\"branch-name\">{}</code> {} \
         <a href=\"{repo}/{n}.html\">#{n}</a> {subject} <span class=\"note\">{} · {}</span></p>",
        badge::file_name(&line.branch),
        badge::width(Some(result)),
        field(&line.branch),
        result_cell(result),
        history::relative(&last.started_at, now),
        if last.result == RunResult::Running {
            "going on".to_string()
        } else {
            human_ms(last.duration_ms)
        },
        n = last.run,
    );
    let runs: Vec<&RunRecord> = line.runs.iter().collect();
    body.push_str(&history::bars(&runs, &format!("{repo}/"), now));
    body.push_str("</div>\n");
}

/// What a page of a run going on shows besides its record: the steps running now (SPEC §8), drawn up
/// to `now`. Empty (`Live::default()`) for a run that ended.
pub struct Live {
    pub running: Vec<StepStart>,
    pub now: SystemTime,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            running: Vec::new(),
            now: SystemTime::UNIX_EPOCH,
        }
    }
}

/// `<repo>/<run>.html`: the commit, the run's record, its steps as a timeline and a table, each step's
/// own log, its artifacts and (the end of) its log in colour. A run going on reloads itself. Times are
/// exact (not "5 min ago"): the page of a run that ended does not change, and is not written again.
pub fn run_page(
    record: &RunRecord,
    log: &LogTail,
    live: &Live,
    step_logs: &[StepLog],
    artifacts: &Listing,
) -> String {
    let repo = escape(&record.repo);
    let title = format!("{repo} #{} {}", record.run, record.result.as_str());
    let running = record.result == RunResult::Running;
    let heading = if record.subject.is_empty() {
        format!("{repo} #{}", record.run)
    } else {
        field(&record.subject)
    };
    let mut body = format!(
        "<h1>{heading}</h1>\n<p class=\"last\">{} <a href=\"../index.html#{repo}\">{repo}</a> \
         #{} <span class=\"note\">{} · {}</span></p>\n",
        result_cell(record.result.as_str()),
        record.run,
        history::exact(&record.started_at),
        duration(record),
    );
    // A log that could not be written whole is said next to the result, whatever the result.
    if let Some(lost) = &record.log_lost {
        let _ = writeln!(
            body,
            "<p class=\"note\"><strong>The log is incomplete:</strong> {}</p>",
            field(&lost.describe())
        );
    }
    if running {
        let _ = writeln!(
            body,
            "<p class=\"note\">This run is going on: the page reloads every {RUN_RELOAD} seconds \
             and shows what the report last recorded.</p>"
        );
    }
    body.push_str("<div class=\"scroll\"><table class=\"facts\">\n");
    let mut row = |key: &str, value: String| {
        let _ = writeln!(body, "<tr><th>{key}</th><td>{value}</td></tr>");
    };
    row("repo", repo.clone());
    row("run", record.run.to_string());
    row("result", result_cell(record.result.as_str()));
    row("subject", or_dash(&record.subject));
    row("author", or_dash(&record.author));
    row("branch", format!("<code>{}</code>", field(&record.branch)));
    row("commit", format!("<code>{}</code>", field(&record.commit)));
    row("trigger", record.trigger.as_str().into());
    row("started_at", history::exact(&record.started_at));
    row(
        "finished_at",
        record
            .finished_at
            .as_deref()
            .map_or("-".into(), history::exact),
    );
    row("duration", duration(record));
    row(
        "message",
        record.message.as_deref().map_or("-".into(), field),
    );
    if let Some(lost) = &record.log_lost {
        row("log_lost", field(&lost.describe()));
    }
    // A failed run's workspace kept for `debug` (`keep_failed`): the command that opens it there.
    if let Some(until) = &record.kept_until {
        row(
            "debug",
            format!(
                "<code>phantom_ci debug {} {}</code> (workspace kept until {})",
                field(&record.repo),
                record.run,
                history::exact(until)
            ),
        );
    }
    body.push_str("</table></div>\n<h2>Steps</h2>\n");
    body.push_str(&history::timeline(&record.steps, &live.running, live.now));
    if record.steps.is_empty() {
        body.push_str(if running {
            "<p>No step has ended yet.</p>\n"
        } else {
            "<p>No step ran.</p>\n"
        });
    } else {
        body.push_str(
            "<div class=\"scroll\"><table>\n<tr><th>Step</th><th>Name</th><th>Command</th><th>Result</th>\
             <th>Exit code</th><th>Signal</th><th>Duration</th></tr>\n",
        );
        // In step order (a graph run records its steps as they end).
        let mut in_order: Vec<&StepRecord> = record.steps.iter().collect();
        in_order.sort_by_key(|s| (s.index, s.instance));
        for step in in_order {
            let signal = step.signal.map_or("-".into(), |signal| {
                format!("{signal} ({})", signal_name(signal))
            });
            let duration = if step.result == StepResult::Skipped {
                "-".into()
            } else {
                human_ms(step.duration_ms)
            };
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}{}</td><td>{}</td>\
                 <td>{signal}</td><td>{duration}</td></tr>",
                step.id(),
                step.title()
                    .or_else(|| step.matrix_values().map(|v| format!("({v})")))
                    .as_deref()
                    .map_or(String::new(), field),
                field(&step.run),
                result_cell(step.result.as_str()),
                if history::allowed_failure(step) {
                    " <span class=\"note\">allowed to fail</span>"
                } else {
                    ""
                },
                step.exit_code.map_or("-".into(), |c| c.to_string()),
            );
        }
        body.push_str("</table></div>\n");
    }
    body.push_str(&steps::section(&record.repo, record.run, step_logs));
    artifacts_section(&mut body, artifacts);
    body.push_str("<h2>Log</h2>\n");
    match &log.text {
        None => body.push_str("<p class=\"note\">No log was recorded.</p>\n"),
        Some(text) => {
            if log.cut {
                let _ = writeln!(
                    body,
                    "<p class=\"note\">The log is {} long; only its last {} is shown. \
                     <code>phantom_ci logs {repo} {}</code> prints all of it.</p>",
                    super::human_size(log.size),
                    super::human_size(super::LOG_TAIL),
                    record.run
                );
            }
            body.push_str("<pre class=\"log\">");
            body.reserve(text.len() + text.len() / 4);
            super::ansi::Renderer::new().push(text, &mut body);
            body.push_str("</pre>\n");
        }
    }
    page(&title, "../", running.then_some(RUN_RELOAD), &body)
}

fn artifacts_section(body: &mut String, listing: &Listing) {
    if listing.artifacts.is_empty() && listing.notes.is_empty() {
        return;
    }
    body.push_str("<h2>Artifacts</h2>\n<ul class=\"artifacts\">\n");
    for artifact in &listing.artifacts {
        let name = escape(&artifact.shown);
        let size = super::human_size(artifact.size);
        match (&artifact.href, &artifact.left_out) {
            (Some(href), _) => {
                // `href` is percent-encoded: nothing in it needs escaping, escaped all the same.
                // A file stored under another name is saved under its own.
                let download = artifact
                    .download
                    .as_deref()
                    .map_or(String::new(), |d| format!("=\"{}\"", escape(d)));
                let _ = writeln!(
                    body,
                    "<li><a href=\"{}\" download{download}>{name}</a> <span class=\"note\">{size}</span></li>",
                    escape(href)
                );
            }
            (None, why) => {
                let _ = writeln!(
                    body,
                    "<li>{name} <span class=\"note\">{size}, not in the report: {}</span></li>",
                    field(why.as_deref().unwrap_or("left out"))
                );
            }
        }
    }
    for note in &listing.notes {
        let _ = writeln!(body, "<li class=\"note\">{}</li>", field(note));
    }
    body.push_str("</ul>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::text::sample_record;
    use crate::report::artifacts::Artifact;

    fn master() -> Branches {
        Branches::new(vec!["master".into()])
    }

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn the_five_special_characters_are_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x" + 'y') && 1</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; + &#39;y&#39;) &amp;&amp; 1&lt;/script&gt;"
        );
        assert_eq!(escape("feature/π"), "feature/π");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    fn no_artifacts() -> Listing {
        Listing::default()
    }

    #[test]
    fn untrusted_fields_and_log_lines_never_appear_raw() {
        let mut record = sample_record(RunResult::Failure, "<script>b</script>");
        record.subject = "<script>s</script> fix".into();
        record.author = "<img src=x> <a@b>".into();
        record.steps[0].name = Some("<img src=x onerror=alert(1)>".into());
        record.steps[0].run = "echo '\"</td>".into();
        let log = LogTail {
            text: Some("\x1b[31m<b>red</b>\x1b[0m\nok &\n".into()),
            cut: false,
            size: 40,
        };
        let listing = Listing {
            artifacts: vec![Artifact {
                shown: "<script>x</script>".into(),
                href: Some("7/artifacts/%3Cscript%3E".into()),
                size: 3,
                left_out: None,
                download: Some("<b>.html".into()),
            }],
            notes: vec![],
        };
        let now = at("2026-11-05T10:05:00Z");
        let html = run_page(&record, &log, &Live::default(), &[], &listing);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;b&lt;/script&gt;"));
        assert!(
            html.contains("<h1>&lt;script&gt;s&lt;/script&gt; fix</h1>"),
            "{html}"
        );
        assert!(html.contains("&lt;img src=x&gt; &lt;a@b&gt;"));
        assert!(!html.contains("<img src=x"));
        assert!(html.contains("echo &#39;&quot;&lt;/td&gt;"));
        assert!(
            html.contains("<pre class=\"log\"><span class=\"fg1\">&lt;b&gt;red&lt;/b&gt;</span>\nok &amp;\n</pre>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<a href=\"7/artifacts/%3Cscript%3E\" download=\"&lt;b&gt;.html\">&lt;script&gt;x&lt;/script&gt;</a>"
            ),
            "{html}"
        );
        assert!(!html.contains('\x1b'));
        assert!(html.contains("<td>2</td>"), "the exit code: {html}");
        assert!(
            html.contains(
                "<time datetime=\"2026-11-05T10:00:00.000Z\">2026-11-05 10:00:00 UTC</time>"
            ),
            "{html}"
        );
        assert!(
            !html.contains("http-equiv=\"refresh\""),
            "a run that ended stays"
        );

        let index = index(
            &[RepoRuns::gather(
                "app",
                &master(),
                vec![
                    Err(Unreadable {
                        repo: "app".into(),
                        run: 8,
                        path: "/data/runs/app/8/run.json".into(),
                        reason: "not a valid run record: <EOF>".into(),
                    }),
                    Ok(record),
                ],
                2,
                20,
            )],
            20,
            now,
        );
        assert!(!index.contains("<script>"));
        assert!(index.contains("<a href=\"app/7.html\">#7</a>"));
        assert!(index.contains("&lt;script&gt;s&lt;/script&gt; fix"));
        assert!(index.contains("failure"));
        assert!(
            index.contains("<td>#8</td><td><span class=\"result unreadable\">unreadable</span>"),
            "{index}"
        );
        assert!(index.contains("cannot be read: not a valid run record: &lt;EOF&gt;"));
        assert!(
            !index.contains("/data/runs"),
            "no path of the runner's in the report"
        );
    }

    #[test]
    fn a_cut_log_says_so() {
        let record = sample_record(RunResult::Success, "master");
        let log = LogTail {
            text: Some("end\n".into()),
            cut: true,
            size: 5 << 20,
        };
        let html = run_page(&record, &log, &Live::default(), &[], &no_artifacts());
        assert!(
            html.contains("The log is 5 MiB long; only its last 1 MiB is shown"),
            "{html}"
        );
        assert!(html.contains("phantom_ci logs app 7"));
    }

    #[test]
    fn a_failed_runs_page_gives_the_debug_command_while_its_workspace_is_kept() {
        let mut record = sample_record(RunResult::Failure, "master");
        let log = LogTail {
            text: Some("end\n".into()),
            cut: false,
            size: 4,
        };
        let html = run_page(&record, &log, &Live::default(), &[], &no_artifacts());
        assert!(!html.contains("phantom_ci debug"), "{html}");
        record.kept_until = Some("2026-11-05T10:30:01.000Z".into());
        let html = run_page(&record, &log, &Live::default(), &[], &no_artifacts());
        assert!(
            html.contains(
                "<th>debug</th><td><code>phantom_ci debug app 7</code> (workspace kept until"
            ),
            "{html}"
        );
    }

    #[test]
    fn a_run_going_on_reloads_and_the_index_marks_it() {
        let mut record = sample_record(RunResult::Running, "master");
        record.steps.clear();
        let log = LogTail {
            text: None,
            cut: false,
            size: 0,
        };
        let html = run_page(&record, &log, &Live::default(), &[], &no_artifacts());
        assert!(
            html.contains("<meta http-equiv=\"refresh\" content=\"5\">"),
            "{html}"
        );
        assert!(html.contains("No step has ended yet"));
        let mut done = sample_record(RunResult::Success, "master");
        done.run = 6;
        let repos = [RepoRuns::gather(
            "app",
            &master(),
            vec![Ok(record), Ok(done.clone())],
            2,
            20,
        )];
        let index = index(&repos, 20, SystemTime::now());
        assert!(
            index.contains("<meta http-equiv=\"refresh\" content=\"10\">"),
            "{index}"
        );
        assert!(
            index.contains(
                "<span class=\"result running\">running</span> <a href=\"app/7.html\">#7</a>"
            ),
            "{index}"
        );
        assert!(index.contains("going on"));
        let calm = super::index(
            &[RepoRuns::gather("app", &master(), vec![Ok(done)], 1, 20)],
            20,
            SystemTime::now(),
        );
        assert!(!calm.contains("http-equiv=\"refresh\""));
    }

    #[test]
    fn repos_come_most_recently_run_first() {
        let mut older = sample_record(RunResult::Success, "master");
        older.repo = "old".into();
        older.started_at = "2026-11-01T00:00:00.000Z".into();
        let mut newer = older.clone();
        newer.repo = "new".into();
        newer.started_at = "2026-11-02T00:00:00.000Z".into();
        let repo = |name: &str, runs: Vec<RunRecord>| {
            let recorded = runs.len();
            RepoRuns::gather(name, &master(), runs.into_iter().map(Ok), recorded, 20)
        };
        let html = index(
            &[
                repo("idle", vec![]),
                repo("old", vec![older]),
                repo("new", vec![newer]),
            ],
            20,
            SystemTime::now(),
        );
        let place = |name: &str| html.find(&format!("id=\"{name}\"")).unwrap();
        assert!(
            place("new") < place("old") && place("old") < place("idle"),
            "{html}"
        );
    }

    #[test]
    fn each_branch_has_its_line_and_the_badge_follows_the_main_line() {
        let run = |n: u64, branch: &str, result| {
            let mut record = sample_record(result, branch);
            record.run = n;
            Ok(record)
        };
        // Newest first: develop cancelled #7 after master failed #6.
        let runs = || {
            vec![
                run(7, "develop", RunResult::Cancelled),
                run(6, "master", RunResult::Failure),
                run(5, "develop", RunResult::Success),
            ]
        };
        let named = Branches::new(vec!["master".into(), "develop".into()]);
        let repo = RepoRuns::gather("app", &named, runs(), 3, 20);
        assert_eq!(repo.badge, Value::Result(RunResult::Failure));
        let lines: Vec<(&str, usize)> = repo
            .lines
            .iter()
            .map(|l| (l.branch.as_str(), l.runs.len()))
            .collect();
        assert_eq!(lines, [("master", 1), ("develop", 2)]);
        let html = index(&[repo], 20, SystemTime::now());
        assert!(
            html.contains("<img src=\"badge/app.svg\" alt=\"failure\""),
            "{html}"
        );
        assert!(
            html.contains("src=\"badge/app/master.svg\" alt=\"failure\""),
            "{html}"
        );
        assert!(
            html.contains("src=\"badge/app/develop.svg\" alt=\"cancelled\""),
            "{html}"
        );
        assert!(html.find(">master</code>").unwrap() < html.find(">develop</code>").unwrap());

        // Every entry a pattern: the newest run of any branch.
        let patterns = Branches::new(vec!["*".into()]);
        let repo = RepoRuns::gather("app", &patterns, runs(), 3, 20);
        assert_eq!(repo.badge, Value::Result(RunResult::Cancelled));
        assert_eq!(repo.lines[0].branch, "develop");
        // A main line that never ran: no result, whatever the others did.
        let idle = Branches::new(vec!["release/*".into(), "main".into()]);
        assert_eq!(
            RepoRuns::gather("app", &idle, runs(), 3, 20).badge,
            Value::None
        );
        assert_eq!(
            RepoRuns::gather("app", &patterns, vec![], 0, 20).badge,
            Value::None
        );
    }

    #[test]
    fn every_page_forbids_scripts_and_other_origins() {
        let html = page("t", "", None, "");
        assert!(html.contains("default-src 'none'") && !html.contains("script-src"));
        assert!(!STYLESHEET.contains("url(") && !STYLESHEET.contains("@import"));
        assert!(STYLESHEET.contains("prefers-color-scheme:dark"));
    }
}
