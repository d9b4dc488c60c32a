//! The static HTML report (SPEC §5, §9): a folder any web server can serve, holding
//!
//! - `index.html`: every configured repo, the most recently run first: its badge, a line per branch
//!   that ran (its badge, its newest run with the commit's subject, bars of its last 50 runs — height:
//!   duration, colour: result), a table of its newest runs;
//! - `<repo>/<run>.html`: one page per run: the commit, the record, a timeline of the steps, the
//!   artifacts, the end of the log in its colours; a run going on reloads itself;
//! - `<repo>/<run>/artifacts/`: copies of the run's artifacts (regular files, within a cap);
//! - `badge/<repo>.svg`: "phantom_ci | <result>" of the repo's main line (the first `target_branch`
//!   entry that is a name), and `badge/<repo>/<branch>.svg` of each branch ([`branch_badge`]).
//!
//! The pages need no script and load nothing from elsewhere: one inline stylesheet ([`stylesheet`],
//! light and dark, phone and desktop), inline SVG pictures, and a Content-Security-Policy that forbids
//! the rest. Every file is replaced atomically (written beside its place, then renamed), readable by
//! others (0644 less the umask) so that a web server can serve it. The folder may hold other files:
//! phantom_ci removes only the pages, artifact folders and branch badges its own manifest lists, once
//! their records are gone ([`manifest`]).

mod ansi;
pub mod artifacts;
mod badge;
mod history;
mod html;
mod manifest;
pub mod merge;
mod steps;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use ansi::to_html as ansi_to_html;
pub use html::{CSP, escape, page};

/// `badge/<repo>.svg`: the repo's badge, relative to the report's root.
pub fn repo_badge(repo: &str) -> String {
    format!("badge/{repo}.svg")
}

/// `badge/<repo>/<file>.svg`: the badge of one branch, relative to the report's root, usable in a
/// URL as it is ([`badge::file_name`]).
pub fn branch_badge(repo: &str, branch: &str) -> String {
    format!("badge/{repo}/{}.svg", badge::file_name(branch))
}

/// The report's stylesheet, for pages that look like the report's (`report --merge`).
pub fn stylesheet() -> &'static str {
    html::STYLESHEET
}

use crate::config::dirs::Dirs;
use crate::config::{Config, Repo};
use crate::error::Error;
use crate::state::lock::ReportLock;
use crate::state::records::{self, RunRecord, RunResult, Unreadable};

/// How many runs of each repo the index lists in its table, newest first.
pub const RECENT_RUNS: usize = 20;
/// How many runs of each repo the index draws as bars.
pub use history::HISTORY_RUNS;
/// How many records of each repo the index reads.
const INDEX_RUNS: usize = if HISTORY_RUNS > RECENT_RUNS {
    HISTORY_RUNS
} else {
    RECENT_RUNS
};
/// How many records of each repo the index reads to find every branch's newest runs.
const INDEX_READ: usize = 500;
/// How much of the end of a log a run's page shows at most.
pub const LOG_TAIL: u64 = 1 << 20;

/// The part of a run's log a page shows.
pub struct LogTail {
    /// `None` when the run has no log.
    pub text: Option<String>,
    /// Whether the beginning of the log was left out.
    pub cut: bool,
    /// The whole log's size in bytes.
    pub size: u64,
}

/// What [`write`] wrote.
#[derive(Debug)]
pub struct Written {
    /// The path of `index.html`.
    pub index: PathBuf,
    /// The run records that could not be read: listed as such in the report, with no page.
    pub unreadable: Vec<Unreadable>,
}

/// Writes the whole report into `dir` (created if missing): the index, a page for every recorded run of
/// every configured repo, and their badges.
pub fn write(dirs: &Dirs, config: &Config, dir: &Path) -> Result<Written, Error> {
    // The lock only keeps concurrent writers in order; a data dir where it cannot be taken (read-only,
    // say) does not stop the report.
    let _lock = ReportLock::acquire(dirs).ok();
    let site = Site::create(dir)?;
    let written = site.everything(dirs, config)?;
    site.prune(dirs)?;
    Ok(written)
}

/// The report after run `run` of `repo` ended: the index, that run's page (and the previous run's,
/// which this run may just have recorded as aborted) and the repo's badge; other pages do not change.
/// A report directory without an index yet gets everything. Nothing happens for a repo that is not
/// configured (a run by path): the report shows configured repos only.
pub fn refresh(dirs: &Dirs, dir: &Path, repo: &str, run: u64) -> Result<(), Error> {
    let config = Config::load(&dirs.repo_toml())?;
    if config.get(repo).is_none() {
        return Ok(());
    }
    let _lock = ReportLock::acquire(dirs).ok();
    let site = Site::create(dir)?;
    if !site.dir.join("index.html").exists() {
        site.everything(dirs, &config)?;
        return site.prune(dirs);
    }
    // An unreadable record shows as such in the index and the badge.
    let numbers = records::list(dirs, repo);
    for number in numbers.iter().rev().filter(|n| **n <= run).take(2) {
        if let Ok(record) = records::load(dirs, repo, *number) {
            site.run_page(dirs, &record)?;
        }
    }
    site.index(dirs, &config)?;
    site.prune(dirs)
}

/// What writing one repo's pages yields: what the index shows of it, and the records that could not
/// be read.
type RepoPages = (html::RepoRuns, Vec<Unreadable>);

/// The report directory being written.
struct Site {
    dir: PathBuf,
    /// What phantom_ci wrote there for each run ([`manifest`]).
    manifest: std::sync::Mutex<manifest::Manifest>,
}

impl Site {
    fn create(dir: &Path) -> Result<Site, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io("cannot create the report directory", dir, e))?;
        // `a/../site` is printed as `site`.
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let manifest = std::sync::Mutex::new(manifest::Manifest::load(&dir));
        Ok(Site { dir, manifest })
    }

    fn wrote(&self, entry: manifest::Entry) {
        if let Ok(mut manifest) = self.manifest.lock() {
            manifest.entries.insert(entry);
        }
    }

    /// The pages and artifact copies of runs whose records are gone (pruned by `keep_runs`, removed)
    /// are removed too, then the manifest is saved. What cannot be removed stays listed, to be tried
    /// again by the next refresh.
    fn prune(&self, dirs: &Dirs) -> Result<(), Error> {
        let text = {
            let Ok(mut manifest) = self.manifest.lock() else {
                return Ok(());
            };
            let gone = |repo: &str, run: u64| {
                std::fs::symlink_metadata(records::run_dir(dirs, repo, run).path)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            };
            let _ = manifest.prune(&self.dir, gone);
            manifest.text()
        };
        self.put(manifest::NAME, &text).map(drop)
    }

    /// Writes `relative` (a path of phantom_ci's making: repo names are validated), unless it holds
    /// `contents` already, atomically: a
    /// reader (a web server) sees the old file or the new one, never a part. Not synced to disk: the
    /// report is made from the records again by the next run or `phantom_ci report`, and ten thousand
    /// syncs would make it slow.
    fn put(&self, relative: &str, contents: &str) -> Result<PathBuf, Error> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(relative);
        // What did not change is not written again: a page of a run that ended, most badges.
        if std::fs::read(&path).is_ok_and(|old| old == contents.as_bytes()) {
            return Ok(path);
        }
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io("cannot create the report directory", parent, e))?;
        let written = tempfile::Builder::new()
            .prefix(".tmp-")
            .permissions(std::fs::Permissions::from_mode(0o644))
            .tempfile_in(parent)
            .and_then(|mut tmp| {
                tmp.write_all(contents.as_bytes())?;
                tmp.persist(&path).map_err(|e| e.error)
            });
        written.map_err(|e| Error::io("cannot write the report file", &path, e))?;
        Ok(path)
    }

    /// Every page, badge and the index. Repos are shared out among threads (one per CPU): pages of
    /// different repos are different files.
    fn everything(&self, dirs: &Dirs, config: &Config) -> Result<Written, Error> {
        let done = per_repo(&config.repos, |repo| self.repo_pages(dirs, repo))?;
        let mut repos = Vec::with_capacity(config.repos.len());
        let mut unreadable = Vec::new();
        for (repo, bad) in done {
            repos.push(repo);
            unreadable.extend(bad);
        }
        merge::write_summary(&self.dir, dirs, config)?;
        let index = self.put(
            "index.html",
            &html::index(&repos, RECENT_RUNS, SystemTime::now()),
        )?;
        Ok(Written { index, unreadable })
    }

    /// The pages and the badges of one repo; what the index shows of it, and the records that could
    /// not be read. Each record is read once.
    fn repo_pages(&self, dirs: &Dirs, repo: &Repo) -> Result<RepoPages, Error> {
        let name = &repo.name;
        let numbers = records::list(dirs, name);
        let mut unreadable = Vec::new();
        let mut newest_first = Vec::new();
        for number in numbers.iter().rev() {
            match records::read_settled(&records::run_dir(dirs, name, *number)) {
                Ok(Some(record)) => {
                    self.run_page(dirs, &record)?;
                    newest_first.push(Ok(record));
                }
                // A run that is starting: its page comes with the refresh after it.
                Ok(None) => {}
                Err(e) => {
                    newest_first.push(Err(e.clone()));
                    unreadable.push(e);
                }
            }
        }
        let shown = html::RepoRuns::gather(
            name,
            &repo.branches,
            newest_first,
            numbers.len(),
            INDEX_RUNS,
        );
        self.badges(&shown)?;
        Ok((shown, unreadable))
    }

    /// `badge/<repo>.svg` and `badge/<repo>/<branch>.svg` for each branch that ran.
    fn badges(&self, repo: &html::RepoRuns) -> Result<(), Error> {
        self.put(&repo_badge(&repo.name), &repo.badge.svg())?;
        for line in &repo.lines {
            let value = line
                .runs
                .first()
                .map_or(badge::Value::None, |run| badge::Value::Result(run.result));
            self.put(&branch_badge(&repo.name, &line.branch), &value.svg())?;
        }
        // The badges of branches no run is left of go (the repo's own badge stays).
        let files = repo
            .lines
            .iter()
            .map(|line| badge::file_name(&line.branch))
            .collect();
        if let Ok(mut manifest) = self.manifest.lock() {
            manifest.badges_now(&self.dir, &repo.name, &files);
        }
        Ok(())
    }

    fn run_page(&self, dirs: &Dirs, record: &RunRecord) -> Result<PathBuf, Error> {
        // The `debug` line only while the workspace is kept: `debug --done`, a sweep or its time
        // ends that, and the record keeps what it was.
        let shown;
        let record = match &record.kept_until {
            Some(_)
                if crate::state::kept::find(dirs, &record.repo, record.run)
                    .is_none_or(|kept| kept.until <= SystemTime::now()) =>
            {
                shown = RunRecord {
                    kept_until: None,
                    ..record.clone()
                };
                &shown
            }
            _ => record,
        };
        let run_dir = records::run_dir(dirs, &record.repo, record.run);
        let log = log_tail(&run_dir.log(), LOG_TAIL);
        let live = if record.result == RunResult::Running {
            html::Live {
                running: records::running_steps(&run_dir),
                now: SystemTime::now(),
            }
        } else {
            html::Live::default()
        };
        // Artifacts are collected when a run ends: a run going on has none yet.
        let listing = if record.result == RunResult::Running {
            artifacts::Listing::default()
        } else {
            artifacts::copy(
                &run_dir.artifacts(),
                &artifacts_dir(&self.dir, record),
                &format!("{}/artifacts", record.run),
            )
        };
        if std::fs::symlink_metadata(artifacts_dir(&self.dir, record)).is_ok_and(|m| m.is_dir()) {
            self.wrote(manifest::Entry::artifacts(&record.repo, record.run));
        }
        self.wrote(manifest::Entry::page(&record.repo, record.run));
        self.put(
            &format!("{}/{}.html", record.repo, record.run),
            &html::run_page(
                record,
                &log,
                &live,
                &steps::read(&run_dir, record, &live.running),
                &listing,
            ),
        )
    }

    /// The index and every repo's badges, from the newest [`INDEX_READ`] records of each repo.
    fn index(&self, dirs: &Dirs, config: &Config) -> Result<PathBuf, Error> {
        let repos = per_repo(&config.repos, |repo| {
            let numbers = records::list(dirs, &repo.name);
            let newest_first = numbers.iter().rev().take(INDEX_READ).filter_map(|n| {
                records::read_settled(&records::run_dir(dirs, &repo.name, *n)).transpose()
            });
            let shown = html::RepoRuns::gather(
                &repo.name,
                &repo.branches,
                newest_first,
                numbers.len(),
                INDEX_RUNS,
            );
            self.badges(&shown)?;
            Ok(shown)
        })?;
        merge::write_summary(&self.dir, dirs, config)?;
        self.put(
            "index.html",
            &html::index(&repos, RECENT_RUNS, SystemTime::now()),
        )
    }
}

/// `work` for every repo, the repos shared out among threads (one per CPU; each repo's files are its
/// own), the results in the repos' order.
fn per_repo<T: Send>(
    repos: &[Repo],
    work: impl Fn(&Repo) -> Result<T, Error> + Sync,
) -> Result<Vec<T>, Error> {
    let threads = crate::config::cpus().min(repos.len()).max(1);
    let chunk = repos.len().div_ceil(threads).max(1);
    let work = &work;
    let done: Vec<Result<Vec<T>, Error>> = std::thread::scope(|scope| {
        let workers: Vec<_> = repos
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(work).collect()))
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker.join().unwrap_or_else(|_| {
                    Err(Error::Other("a thread writing the report failed".into()))
                })
            })
            .collect()
    });
    let mut all = Vec::with_capacity(repos.len());
    for part in done {
        all.extend(part?);
    }
    Ok(all)
}

/// `<site>/<repo>/<run>/artifacts`: the copies of a run's artifacts.
fn artifacts_dir(site: &Path, record: &RunRecord) -> PathBuf {
    site.join(&record.repo)
        .join(record.run.to_string())
        .join("artifacts")
}

/// The last `max` bytes of the log at `path`, read from the end (a log may be far bigger than a page
/// should be). When the beginning is left out, so is the partial line it starts with.
fn log_tail(path: &Path, max: u64) -> LogTail {
    let missing = LogTail {
        text: None,
        cut: false,
        size: 0,
    };
    let Ok(mut file) = File::open(path) else {
        return missing;
    };
    let size = file.metadata().map_or(0, |m| m.len());
    let cut = size > max;
    if cut && file.seek(SeekFrom::Start(size - max)).is_err() {
        return missing;
    }
    let mut bytes = Vec::new();
    // A running step may still write: read no more than `max` all the same.
    if file.take(max).read_to_end(&mut bytes).is_err() {
        return missing;
    }
    if cut && let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
        bytes.drain(..=newline);
    }
    LogTail {
        text: Some(String::from_utf8_lossy(&bytes).into_owned()),
        cut,
        size,
    }
}

/// `512 bytes`, `3.5 KiB`, `1 MiB`, `64.2 MiB`.
fn human_size(bytes: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    let scaled = |unit: u64, name: &str| {
        if bytes.is_multiple_of(unit) {
            format!("{} {name}", bytes / unit)
        } else {
            format!("{:.1} {name}", bytes as f64 / unit as f64)
        }
    };
    match bytes {
        MIB.. => scaled(MIB, "MiB"),
        KIB.. => scaled(KIB, "KiB"),
        _ => format!("{bytes} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_log_is_read_from_its_end_without_its_partial_first_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log");
        std::fs::write(&path, "first line\nsecond line\nthird\n").unwrap();
        let tail = log_tail(&path, 10);
        assert!(tail.cut);
        assert_eq!(tail.size, 29);
        assert_eq!(tail.text.as_deref(), Some("third\n"));

        let whole = log_tail(&path, 1000);
        assert!(!whole.cut);
        assert_eq!(
            whole.text.as_deref(),
            Some("first line\nsecond line\nthird\n")
        );

        assert!(log_tail(&tmp.path().join("none"), 10).text.is_none());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(512), "512 bytes");
        assert_eq!(human_size(3584), "3.5 KiB");
        assert_eq!(human_size(LOG_TAIL), "1 MiB");
        assert_eq!(human_size(5 << 20), "5 MiB");
    }
}
