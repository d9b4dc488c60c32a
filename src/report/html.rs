//! The report's HTML: the index and one page per run. Every untrusted text (branch, step names,
//! commands, messages, log lines) goes through [`escape`]; pages carry no script and load nothing from
//! elsewhere, and their Content-Security-Policy forbids both should anything slip through.

use std::fmt::Write;

use crate::describe;
use crate::describe::{human_ms, short, signal_name};
use crate::state::records::{RunRecord, RunResult, StepResult, Unreadable};

use super::LogTail;

/// `text` made safe in HTML text and in quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An untrusted one-line text: control characters shown as `?`, then escaped.
fn field(text: &str) -> String {
    escape(&describe::terminal(text))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f4f4f4}code,pre{font-family:ui-monospace,monospace}\
pre.log{background:#111;color:#ddd;padding:1em;overflow-x:auto;white-space:pre-wrap;word-break:break-all}\
.note{color:#666}.result{font-weight:bold}\
.success{color:#2a7d12}.failure,.rejected{color:#c0392b}.error{color:#d35400}\
.timeout{color:#9a7d0a}.aborted,.skipped{color:#777}.running{color:#1f6fb2}.unreadable{color:#c0392b}";

/// A whole page; `root` is the way back to the report's root (`""` or `"../"`).
fn page(title: &str, root: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src 'self'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <p><a href=\"{root}index.html\">phantom_ci</a></p>\n{body}</body>\n</html>\n"
    )
}

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

fn result_cell(result: &str) -> String {
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
    /// Its newest runs, newest first; a record that cannot be read is listed as such.
    pub runs: Vec<Result<RunRecord, Unreadable>>,
    /// How many runs are recorded in all.
    pub recorded: usize,
}

/// `index.html`: every configured repo, its badge and its newest runs.
pub fn index(repos: &[RepoRuns], generated_at: &str) -> String {
    let mut body = String::from("<h1>phantom_ci</h1>\n");
    let _ = writeln!(
        body,
        "<p class=\"note\">Written at {}.</p>",
        escape(generated_at)
    );
    if repos.is_empty() {
        body.push_str("<p>No repos are configured.</p>\n");
    }
    for repo in repos {
        // Repo names are validated: letters, digits, `_` and `-`, safe in a path and a URL.
        let name = escape(&repo.name);
        let _ = writeln!(
            body,
            "<h2 id=\"{name}\">{name} <img src=\"badge/{name}.svg\" alt=\"\"></h2>\n\
             <p>Branch <code>{}</code>.</p>",
            field(&repo.branch)
        );
        if repo.runs.is_empty() {
            body.push_str("<p>No runs yet.</p>\n");
            continue;
        }
        if repo.recorded > repo.runs.len() {
            let _ = writeln!(
                body,
                "<p class=\"note\">The newest {} of {} recorded runs.</p>",
                repo.runs.len(),
                repo.recorded
            );
        }
        body.push_str(
            "<table>\n<tr><th>Run</th><th>Result</th><th>Branch</th><th>Commit</th>\
             <th>Subject</th><th>Trigger</th><th>Started</th><th>Duration</th></tr>\n",
        );
        for run in &repo.runs {
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
                "<tr><td><a href=\"{name}/{n}.html\">#{n}</a></td><td>{}</td><td><code>{}</code></td>\
                 <td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                result_cell(run.result.as_str()),
                field(&run.branch),
                field(short(&run.commit)),
                escape(&describe::one_line(&run.subject, SUBJECT_CHARS)),
                run.trigger.as_str(),
                field(&run.started_at),
                duration(run),
                n = run.run,
            );
        }
        body.push_str("</table>\n");
    }
    page("phantom_ci", "", &body)
}

fn step_result(result: StepResult) -> &'static str {
    match result {
        StepResult::Success => "success",
        StepResult::Failure => "failure",
        StepResult::Timeout => "timeout",
        StepResult::Skipped => "skipped",
    }
}

/// `<repo>/<run>.html`: the run's record, its steps and (the end of) its log.
pub fn run_page(record: &RunRecord, log: &LogTail) -> String {
    let title = format!(
        "{} #{} {}",
        escape(&record.repo),
        record.run,
        record.result.as_str()
    );
    let mut body = format!("<h1>{title}</h1>\n<table>\n");
    let mut row = |key: &str, value: String| {
        let _ = writeln!(body, "<tr><th>{key}</th><td>{value}</td></tr>");
    };
    row("repo", escape(&record.repo));
    row("run", record.run.to_string());
    row("result", result_cell(record.result.as_str()));
    row("branch", format!("<code>{}</code>", field(&record.branch)));
    row("commit", format!("<code>{}</code>", field(&record.commit)));
    row("subject", or_dash(&record.subject));
    row("author", or_dash(&record.author));
    row("trigger", record.trigger.as_str().into());
    row("started_at", field(&record.started_at));
    row(
        "finished_at",
        record.finished_at.as_deref().map_or("-".into(), field),
    );
    row("duration", duration(record));
    row(
        "message",
        record.message.as_deref().map_or("-".into(), field),
    );
    body.push_str("</table>\n<h2>Steps</h2>\n");
    if record.steps.is_empty() {
        body.push_str("<p>No step ran.</p>\n");
    } else {
        body.push_str(
            "<table>\n<tr><th>Step</th><th>Name</th><th>Command</th><th>Result</th>\
             <th>Exit code</th><th>Signal</th><th>Duration</th></tr>\n",
        );
        for step in &record.steps {
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
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
                 <td>{signal}</td><td>{duration}</td></tr>",
                step.index,
                step.name.as_deref().map_or(String::new(), field),
                field(&step.run),
                result_cell(step_result(step.result)),
                step.exit_code.map_or("-".into(), |c| c.to_string()),
            );
        }
        body.push_str("</table>\n");
    }
    body.push_str("<h2>Log</h2>\n");
    match &log.text {
        None => body.push_str("<p class=\"note\">No log was recorded.</p>\n"),
        Some(text) => {
            if log.cut {
                let _ = writeln!(
                    body,
                    "<p class=\"note\">The log is {} long; only its last {} is shown. \
                     <code>phantom_ci logs {} {}</code> prints all of it.</p>",
                    super::human_size(log.size),
                    super::human_size(super::LOG_TAIL),
                    escape(&record.repo),
                    record.run
                );
            }
            body.push_str("<pre class=\"log\">");
            for line in crate::notify::text::clean_log(text) {
                body.push_str(&escape(&line));
                body.push('\n');
            }
            body.push_str("</pre>\n");
        }
    }
    page(&title, "../", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::text::sample_record;

    #[test]
    fn the_five_special_characters_are_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x" + 'y') && 1</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; + &#39;y&#39;) &amp;&amp; 1&lt;/script&gt;"
        );
        assert_eq!(escape("feature/π"), "feature/π");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn untrusted_fields_and_log_lines_never_appear_raw() {
        let mut record = sample_record(RunResult::Failure, "<script>b</script>");
        record.steps[0].name = Some("<img src=x onerror=alert(1)>".into());
        record.steps[0].run = "echo '\"</td>".into();
        let log = LogTail {
            text: Some("\x1b[31m<b>red</b>\x1b[0m\nok &\n".into()),
            cut: false,
            size: 40,
        };
        let html = run_page(&record, &log);
        assert!(!html.contains("<script>b"), "{html}");
        assert!(html.contains("&lt;script&gt;b&lt;/script&gt;"));
        assert!(!html.contains("<img src=x"));
        assert!(html.contains("echo &#39;&quot;&lt;/td&gt;"));
        assert!(
            html.contains("&lt;b&gt;red&lt;/b&gt;\nok &amp;\n</pre>"),
            "{html}"
        );
        assert!(!html.contains('\x1b'));
        assert!(html.contains("<td>2</td>"), "the exit code: {html}");

        let index = index(
            &[RepoRuns {
                name: "app".into(),
                branch: "master".into(),
                runs: vec![
                    Err(Unreadable {
                        repo: "app".into(),
                        run: 8,
                        path: "/data/runs/app/8/run.json".into(),
                        reason: "not a valid run record: <EOF>".into(),
                    }),
                    Ok(record),
                ],
                recorded: 2,
            }],
            "now",
        );
        assert!(!index.contains("<script>b"));
        assert!(index.contains("<a href=\"app/7.html\">#7</a>"));
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
        let html = run_page(&record, &log);
        assert!(
            html.contains("The log is 5 MiB long; only its last 1 MiB is shown"),
            "{html}"
        );
        assert!(html.contains("phantom_ci logs app 7"));
    }
}
