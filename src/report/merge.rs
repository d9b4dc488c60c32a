//! One view over several runner hosts (SPEC §7): each host writes its report into its own folder of one
//! web root (`report <root>/<host>`, published by rsync/ssh or a shared mount), with a small
//! machine-readable `summary.json` beside its index; `report --merge <root>` reads every folder's
//! summary and writes `<root>/index.html`: host, repo, branch, last result, links to the host's report
//! and to the run's page.
//!
//! A host's folder is written by that host, so the merge trusts none of it: a summary is read up to a
//! size cap, every text is escaped, links are made of the folder's name (percent-encoded) and a page
//! path that must be plain (`<repo>/<run>.html`), and the page carries no script and loads nothing from
//! elsewhere (its Content-Security-Policy forbids both).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::escape;
use crate::config::Config;
use crate::config::dirs::Dirs;
use crate::describe::short;
use crate::error::Error;
use crate::state::atomic_file;
use crate::state::records::{self, RunResult};

/// The summary file each host's report holds.
pub const SUMMARY: &str = "summary.json";
/// What `format` says in a summary this version writes.
const FORMAT: u32 = 1;
/// The most bytes of a host's summary the merge reads.
const MAX_SUMMARY: u64 = 4 << 20;
/// The most repos of one host the merged index lists.
const MAX_REPOS: usize = 1000;

/// `summary.json`: every configured repo of this host and its last finished run.
#[derive(Debug, Serialize, Deserialize)]
pub struct Summary {
    pub format: u32,
    /// This host's name (its hostname), as the host says.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub generated_at: String,
    pub repos: Vec<RepoSummary>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RepoSummary {
    pub repo: String,
    #[serde(default)]
    pub branch: String,
    pub last: Option<LastRun>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LastRun {
    pub run: u64,
    pub result: String,
    #[serde(default)]
    pub commit: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The run's page, relative to the host's report folder.
    #[serde(default)]
    pub page: Option<String>,
}

/// Writes `<dir>/summary.json` for the report in `dir`: the configured repos and their last runs.
pub fn write_summary(dir: &Path, dirs: &Dirs, config: &Config) -> Result<PathBuf, Error> {
    let repos = config
        .repos
        .iter()
        .map(|repo| RepoSummary {
            repo: repo.name.clone(),
            branch: repo.branches.to_string(),
            last: records::newest(dirs, &repo.name)
                .ok()
                .flatten()
                .map(|record| LastRun {
                    run: record.run,
                    result: record.result.as_str().to_string(),
                    commit: record.commit.clone(),
                    finished_at: record.finished_at.clone(),
                    page: Some(format!("{}/{}.html", record.repo, record.run)),
                }),
        })
        .collect();
    let summary = Summary {
        format: FORMAT,
        host: crate::notify::text::host_name(),
        generated_at: records::rfc3339(SystemTime::now()),
        repos,
    };
    let path = dir.join(SUMMARY);
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| Error::Other(format!("cannot write `{}`: {e}", path.display())))?;
    // Served from the same folder as the pages: no markup in it even if a server calls it HTML.
    // These characters occur in JSON only inside strings, where `\u` escapes mean the same.
    let text = text
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    atomic_file::write_public(&path, text.as_bytes())
        .map_err(|e| Error::io("cannot write the report file", &path, e))?;
    Ok(path)
}

/// One host's folder as the merge found it.
#[derive(Debug)]
pub struct Host {
    /// The folder's name under the root.
    pub folder: String,
    /// Its summary, or why there is none.
    pub summary: Result<Summary, String>,
}

/// What [`merge`] wrote.
#[derive(Debug)]
pub struct Merged {
    pub index: PathBuf,
    pub hosts: Vec<Host>,
}

/// Reads the summary of every folder of `root` (sorted by name; hidden ones and files left out) and
/// writes `<root>/index.html` atomically.
pub fn merge(root: &Path) -> Result<Merged, Error> {
    let entries =
        std::fs::read_dir(root).map_err(|e| Error::io("cannot read the report root", root, e))?;
    let mut hosts = Vec::new();
    for entry in entries.flatten() {
        let folder = entry.file_name().to_string_lossy().into_owned();
        // A symlink to a mounted host report is fine: `is_dir` follows it.
        if folder.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let summary = read_summary(&entry.path().join(SUMMARY));
        let has_index = entry.path().join("index.html").is_file();
        if summary.is_err() && !has_index {
            continue; // not a host's report
        }
        hosts.push(Host { folder, summary });
    }
    hosts.sort_by(|a, b| a.folder.cmp(&b.folder));
    let now = records::rfc3339(SystemTime::now());
    let index = root.join("index.html");
    atomic_file::write_public(&index, page(&hosts, &now).as_bytes())
        .map_err(|e| Error::io("cannot write the report file", &index, e))?;
    Ok(Merged { index, hosts })
}

/// A host's summary, read as untrusted: a regular file only (never through a link, never a FIFO that
/// would hang the merge), at most [`MAX_SUMMARY`] bytes; what is wrong with it is said in phantom_ci's
/// words, never with what the file holds.
fn read_summary(path: &Path) -> Result<Summary, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("no readable `{SUMMARY}` ({})", e.kind()))?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(format!("`{SUMMARY}` is not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SUMMARY + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read `{SUMMARY}` ({e})"))?;
    if bytes.len() as u64 > MAX_SUMMARY {
        return Err(format!(
            "`{SUMMARY}` is larger than {} MiB",
            MAX_SUMMARY >> 20
        ));
    }
    let summary: Summary = serde_json::from_slice(&bytes)
        .map_err(|_| format!("`{SUMMARY}` is not a phantom_ci summary"))?;
    if summary.format != FORMAT {
        return Err(format!(
            "`{SUMMARY}` has format {}, this phantom_ci reads {FORMAT}",
            summary.format
        ));
    }
    Ok(summary)
}

/// `text` for a URL path segment: everything but unreserved characters percent-encoded.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A page path of a summary, if it is a plain relative path: segments of `[A-Za-z0-9._-]`, none `.`
/// or `..`, ending in `.html`.
fn plain_page(page: &str) -> Option<&str> {
    let plain = page.ends_with(".html")
        && page.len() <= 300
        && page.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    plain.then_some(page)
}

/// A result word of a summary if it is one of phantom_ci's, else `unknown` (it is used as a class).
fn known_result(result: &str) -> &'static str {
    [
        RunResult::Success,
        RunResult::Failure,
        RunResult::Error,
        RunResult::Timeout,
        RunResult::Aborted,
        RunResult::Cancelled,
        RunResult::Rejected,
        RunResult::Running,
    ]
    .iter()
    .map(|r| r.as_str())
    .find(|r| *r == result)
    .unwrap_or("unknown")
}

/// An untrusted one-line text: control characters shown as `?`, cut, escaped.
fn field(text: &str, max: usize) -> String {
    let clean = crate::describe::terminal(text);
    let cut: String = clean.chars().take(max).collect();
    escape(&cut)
}

fn page(hosts: &[Host], generated_at: &str) -> String {
    let mut rows = String::new();
    for host in hosts {
        let folder = encode(&host.folder);
        let host_cell = format!(
            "<a href=\"{folder}/index.html\">{}</a>",
            field(&host.folder, 200)
        );
        match &host.summary {
            Err(why) => rows.push_str(&format!(
                "<tr><td>{host_cell}</td><td colspan=\"5\" class=\"note\">{}</td></tr>\n",
                field(why, 300)
            )),
            Ok(summary) if summary.repos.is_empty() => rows.push_str(&format!(
                "<tr><td>{host_cell}</td><td colspan=\"5\" class=\"note\">no repos</td></tr>\n"
            )),
            Ok(summary) => {
                for repo in summary.repos.iter().take(MAX_REPOS) {
                    let (run, result, commit, finished) = match &repo.last {
                        None => (
                            "-".to_string(),
                            "<span class=\"note\">no runs yet</span>".to_string(),
                            "-".to_string(),
                            "-".to_string(),
                        ),
                        Some(last) => {
                            let label = format!("#{}", last.run);
                            let run = match last.page.as_deref().and_then(plain_page) {
                                Some(page) => format!("<a href=\"{folder}/{page}\">{label}</a>"),
                                None => label,
                            };
                            let result = known_result(&last.result);
                            (
                                run,
                                format!("<span class=\"result {result}\">{result}</span>"),
                                format!("<code>{}</code>", field(short(&last.commit), 40)),
                                last.finished_at
                                    .as_deref()
                                    .map_or("-".into(), |t| field(t, 40)),
                            )
                        }
                    };
                    rows.push_str(&format!(
                        "<tr><td>{host_cell}</td><td>{}</td><td><code>{}</code></td><td>{run}</td>\
                         <td>{result}</td><td>{commit}</td><td>{finished}</td></tr>\n",
                        field(&repo.repo, 100),
                        field(&repo.branch, 100),
                    ));
                }
            }
        }
    }
    if hosts.is_empty() {
        rows.push_str(
            "<tr><td colspan=\"7\" class=\"note\">no host reports here yet: each runner writes \
             <code>phantom_ci report ROOT/HOST</code></td></tr>\n",
        );
    }
    // The report's own page: its stylesheet, its Content-Security-Policy.
    let body = format!(
        "<h1>phantom_ci: all hosts</h1>\n\
         <div class=\"scroll\"><table>\n<tr><th>host</th><th>repo</th><th>branch</th><th>last run</th>\
         <th>result</th><th>commit</th><th>finished</th></tr>\n{rows}</table></div>\n\
         <p class=\"note\">merged {} from the host reports in this folder</p>\n",
        field(generated_at, 40)
    );
    super::html::page("phantom_ci: all hosts", "", None, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_that_is_a_link_or_a_fifo_is_refused_and_its_text_never_shown() {
        let tmp = tempfile::tempdir().unwrap();
        let secret = tmp.path().join("secret.json");
        std::fs::write(&secret, r#"{"format":"SECRET-TOKEN-123"}"#).unwrap();
        let link = tmp.path().join("link.json");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert!(read_summary(&link).is_err(), "not through a link");
        let fifo = tmp.path().join("fifo.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(
            read_summary(&fifo).unwrap_err(),
            "`summary.json` is not a regular file",
            "a FIFO neither hangs nor counts"
        );
        let e = read_summary(&secret).unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
    }

    fn host(folder: &str, json: &str) -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SUMMARY), json).unwrap();
        let path = root.path().to_path_buf();
        (root, path)
    }

    #[test]
    fn a_hostile_summary_cannot_inject_markup_scripts_or_links() {
        let json = r#"{"format":1,"host":"<script>x</script>","repos":[
            {"repo":"<img src=x onerror=alert(1)>","branch":"\"><script>","last":
              {"run":3,"result":"success\" onclick=\"x","commit":"<b>","page":"javascript:alert(1)"}},
            {"repo":"b","branch":"m","last":{"run":4,"result":"failure","commit":"c","page":"../../etc/passwd.html"}},
            {"repo":"c","branch":"m","last":{"run":5,"result":"success","commit":"d","page":"c/5.html"}}]}"#;
        let (_keep, root) = host("run ner\"1", json);
        let merged = merge(&root).unwrap();
        let html = std::fs::read_to_string(&merged.index).unwrap();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains(".."), "{html}");
        assert!(!html.contains("onclick=\""), "{html}");
        assert!(html.contains("<span class=\"result unknown\">unknown</span>"));
        assert!(
            html.contains("<a href=\"run%20ner%221/c/5.html\">#5</a>"),
            "{html}"
        );
        assert!(html.contains("<a href=\"run%20ner%221/index.html\">run ner&quot;1</a>"));
        assert!(
            !html.contains("://"),
            "nothing is loaded from elsewhere: {html}"
        );
    }

    #[test]
    fn folders_without_a_report_are_left_out_and_a_broken_summary_is_shown_as_such() {
        let (_keep, root) = host("a", "not json");
        std::fs::write(root.join("a/index.html"), "x").unwrap();
        std::fs::create_dir(root.join("cgi-bin")).unwrap();
        std::fs::create_dir(root.join(".git")).unwrap();
        std::fs::write(root.join("loose.html"), "x").unwrap();
        let merged = merge(&root).unwrap();
        assert_eq!(merged.hosts.len(), 1);
        let html = std::fs::read_to_string(&merged.index).unwrap();
        assert!(html.contains("is not a phantom_ci summary"), "{html}");
        assert!(!html.contains("cgi-bin"));
        let big = "x".repeat(MAX_SUMMARY as usize + 1);
        std::fs::write(root.join("a").join(SUMMARY), big).unwrap();
        assert!(
            read_summary(&root.join("a").join(SUMMARY))
                .unwrap_err()
                .contains("larger")
        );
    }

    #[test]
    fn a_summary_holds_no_markup_and_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: tmp.path().join("config"),
            data: tmp.path().join("data"),
        };
        let config = Config::parse(
            &tmp.path().join("Repo.toml"),
            "[app]\npath = \"/srv/git/app.git\"\ntarget_branch = \"x<script>&</script>\"\n",
        )
        .unwrap();
        let path = write_summary(tmp.path(), &dirs, &config).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains('<') && !text.contains('&'), "{text}");
        let summary = read_summary(&path).unwrap();
        assert_eq!(summary.repos[0].branch, "x<script>&</script>");
        assert!(summary.repos[0].last.is_none());
    }

    #[test]
    fn only_plain_relative_pages_are_links() {
        assert_eq!(plain_page("app/7.html"), Some("app/7.html"));
        for bad in [
            "/etc/x.html",
            "../x.html",
            "a//b.html",
            "a/./b.html",
            "http://x/y.html",
            "a/b",
            "a b.html",
        ] {
            assert_eq!(plain_page(bad), None, "{bad}");
        }
        assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
