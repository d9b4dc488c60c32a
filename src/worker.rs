//! Draining the queue: take each repo's pending commit under the repo's lock and run it.
//!
//! Whoever holds a repo's lock runs its queue until it is empty, then lets go and looks once more: a
//! push that queued work while the lock was held either is seen by that last look or finds the lock
//! free. So no push is lost, runs of one repo never overlap, and the newest queued commit runs.
//!
//! One exception: an entry queued by a pusher's `hook --wait` ([`queue::Entry::waited_for`]) is run
//! by that hook, so that the pusher sees its own run — and no one else's — in its terminal. The hook
//! waits for the repo's lock; whoever holds it leaves that entry alone and lets go. A hook that dies
//! while waiting leaves an ordinary entry, which the next holder runs ([`hand_on`], [`drain`]).

use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use crate::config::dirs::Dirs;
use crate::config::secrets::{Secrets, SecretsError};
use crate::config::{Config, Location, Repo};
use crate::error::Error;
use crate::pool;
use crate::runner::{self, Console, Finished, Progress, Request};
use crate::state::lock::RepoLock;
use crate::state::records::{RunRecord, RunResult};
use crate::state::{queue, seen, slots};

/// What draining did.
#[derive(Debug, Default)]
pub struct Drained {
    pub finished: Vec<Finished>,
    /// Problems that stopped some work (for stderr).
    pub errors: Vec<String>,
    /// Work not run here, and why (a pooled commit another host holds or ran), for stderr.
    pub notes: Vec<String>,
}

impl Drained {
    pub fn all_succeeded(&self) -> bool {
        self.errors.is_empty()
            && self
                .finished
                .iter()
                .all(|f| f.record.result == RunResult::Success)
    }
}

/// Runs the pending work of every repo that has some, but the entries a waiting pusher runs itself. A
/// repo whose run is in progress is left to the process running it. `console` gives each run
/// somewhere to stream its output, or `None` when nobody watches.
pub fn drain(dirs: &Dirs, config: &Config, console: &dyn Fn() -> Option<Console>) -> Drained {
    let mut drained = Drained::default();
    for name in queue::pending(dirs) {
        // Branches whose pooled commit another host holds: they wait for the next poke or tick.
        let mut held: Vec<String> = Vec::new();
        let Some(repo) = config.get(&name) else {
            drained.errors.push(format!(
                "work is queued for repo `{name}`, which is not in Repo.toml; it waits until the repo \
                 is configured again (or remove `{}`)",
                dirs.queue().join(format!("{name}~*.json")).display()
            ));
            continue;
        };
        if let Some(problem) = repo.problem() {
            drained.errors.push(format!(
                "work is queued for repo `{name}`, which cannot run: {problem}; the work waits \
                 until the configuration is fixed"
            ));
            continue;
        }
        while queue::is_pending(dirs, &name) {
            // Told to stop (SIGTERM/SIGINT): the queued work stays for the next invocation.
            if crate::isolation::signals::requested().is_some() {
                return drained;
            }
            let lock = match RepoLock::acquire(dirs, &name, false) {
                Ok(Some(lock)) => lock,
                // A run of this repo is in progress; its owner looks at the queue when it ends.
                Ok(None) => break,
                Err(e) => {
                    drained.errors.push(e.to_string());
                    break;
                }
            };
            queue::restore(dirs, &name, &lock);
            // The oldest entry; one a pusher's hook waits to run itself is left to that hook.
            let Some(next) = queue::next_but(dirs, &name, &held) else {
                break;
            };
            // Its turn among the runs of every repo (`max_parallel_runs`); the entry stays queued
            // (and replaceable by a newer push) while it waits.
            let _slot =
                match slots::acquire(dirs, config.parallel_runs(), &next.queued_at, &mut || {}) {
                    Ok(Some(slot)) => slot,
                    Ok(None) => return drained,
                    Err(e) => {
                        drained.errors.push(e.to_string());
                        break;
                    }
                };
            let entry = match queue::take(dirs, &name, &next.branch, &lock) {
                Ok(Some(entry)) if entry.waited_for() => {
                    // Queued by a waiting pusher between the look and the take: put it back.
                    queue::restore(dirs, &name, &lock);
                    break;
                }
                Ok(Some(entry)) => entry,
                // Gone between the look and the take (`cancel --queued`): look again.
                Ok(None) => continue,
                Err(e) => {
                    drained.errors.push(e.to_string());
                    break;
                }
            };
            let branch = entry.branch.clone();
            match run_entry(dirs, repo, entry, &lock, console(), &mut drained.notes) {
                Ok(Some(finished)) => drained.finished.push(finished),
                Ok(None) => held.push(branch),
                // Whatever stopped this run would stop the next attempt too: leave it for the next
                // invocation rather than trying again and again.
                Err(e) => {
                    drained.errors.push(e.to_string());
                    break;
                }
            }
        }
    }
    drained
}

/// What became of the entry a waiting pusher queued ([`run_own`]).
#[derive(Debug)]
pub enum Own {
    /// It ran, here.
    Ran(Box<Finished>),
    /// A newer push replaced it before it started (only the newest commit runs): the newer entry,
    /// unless another process has taken it already.
    Replaced(Option<queue::Entry>),
    /// It ran elsewhere (a push of the same commit without `--wait` replaced it): its record.
    RanElsewhere(Box<RunRecord>),
    /// phantom_ci was told to stop before it started: it is left for a worker.
    Left,
}

/// The commit of a branch a waiting pusher queued.
#[derive(Debug, Clone, Copy)]
pub struct Pushed<'a> {
    pub branch: &'a str,
    pub commit: &'a str,
}

/// Runs the entry `waiter` queued for `repo`, if it is still the pending one, with its output on
/// `console`. The caller holds the repo's lock; once it lets go, it calls [`hand_on`].
pub fn run_own(
    dirs: &Dirs,
    repo: &Repo,
    waiter: &queue::Waiter,
    lock: &RepoLock,
    console: Option<Console>,
    pushed: &Pushed,
    parallel_runs: usize,
) -> Result<Own, Error> {
    let branch = pushed.branch;
    let name = &repo.name;
    queue::restore(dirs, name, lock);
    if crate::isolation::signals::requested().is_some() {
        queue::forget_waiter(dirs, name, branch, waiter)?;
        return Ok(Own::Left);
    }
    let mine = |entry: &queue::Entry| entry.waiter.as_deref() == Some(waiter.as_str());
    // No one else takes an entry whose waiter lives: when it is not pending, a newer push replaced it.
    let gone = || match ran_elsewhere(dirs, name, pushed) {
        Some(record) => Own::RanElsewhere(Box::new(record)),
        None => Own::Replaced(None),
    };
    let queued_at = match queue::peek(dirs, name, branch) {
        Some(entry) if mine(&entry) => entry.queued_at,
        Some(newer) => return Ok(Own::Replaced(Some(newer))),
        None => return Ok(gone()),
    };
    // Its turn among the runs of every repo (`max_parallel_runs`).
    let Some(_slot) = slots::acquire(dirs, parallel_runs, &queued_at, &mut || {})? else {
        queue::forget_waiter(dirs, name, branch, waiter)?;
        return Ok(Own::Left);
    };
    match queue::take(dirs, name, branch, lock)? {
        Some(entry) if mine(&entry) => {
            let finished = run_entry(dirs, repo, entry, lock, console, &mut Vec::new())?;
            Ok(finished.map_or_else(gone, |finished| Own::Ran(Box::new(finished))))
        }
        // Replaced between the look and the take: the newer entry goes back for its own runner.
        Some(newer) => {
            queue::restore(dirs, name, lock);
            Ok(Own::Replaced(Some(newer)))
        }
        None => Ok(gone()),
    }
}

/// The newest record of `repo` that ran the pushed commit of its branch, among its last few.
fn ran_elsewhere(dirs: &Dirs, repo: &str, pushed: &Pushed) -> Option<RunRecord> {
    crate::state::records::list(dirs, repo)
        .into_iter()
        .rev()
        .take(10)
        .filter_map(|n| crate::state::records::load(dirs, repo, n).ok())
        .find(|record| record.commit == pushed.commit && record.branch == pushed.branch)
}

/// Called after letting the lock of `repo` go: work queued meanwhile that no waiting pusher runs
/// itself (a push without `--wait`, or one whose waiting hook died) gets a detached worker.
pub fn hand_on(dirs: &Dirs, repo: &str) -> Result<(), String> {
    if queue::peek_claimed(dirs, repo).is_some() || queue::next(dirs, repo).is_some() {
        start_detached(dirs)
    } else {
        Ok(())
    }
}

/// Runs a queued entry: for a pooled repo, once the central host granted this host the commit
/// ([`pool::claim`]). `Ok(None)`: it does not run here (another host holds or ran it; `notes` says which).
fn run_entry(
    dirs: &Dirs,
    repo: &crate::config::Repo,
    entry: queue::Entry,
    lock: &RepoLock,
    console: Option<Console>,
    notes: &mut Vec<String>,
) -> Result<Option<Finished>, Error> {
    if !repo.branches.matches(&entry.branch) {
        queue::release(dirs, &repo.name);
        return Err(Error::Other(format!(
            "dropped queued work for branch `{}` of repo `{}`: the repo now runs `{}`",
            crate::describe::terminal(&entry.branch),
            repo.name,
            repo.branches
        )));
    }
    let commit = git2::Oid::from_str(&entry.commit).map_err(|_| {
        queue::release(dirs, &repo.name);
        Error::Other(format!(
            "dropped a queue entry of repo `{}` with an invalid commit id",
            repo.name
        ))
    })?;
    let renewal = std::cell::RefCell::new(match pool::claim(dirs, repo, &entry, lock)? {
        pool::Claimed::NotPooled => None,
        pool::Claimed::Granted(renewal) => Some(renewal),
        pool::Claimed::NotHere(note) => {
            notes.push(note);
            return Ok(None);
        }
    });
    let request = Request {
        repo: repo.clone(),
        branch: entry.branch.clone(),
        commit,
        trigger: entry.trigger,
        keep_workspace: false,
    };
    // Once the run's record says `running`, the commit is seen (durably), then the claim is done
    // with — on a thread of its own that the first step does not wait for; the run's end does.
    let mut seen_write: Option<std::thread::JoinHandle<Result<(), Error>>> = None;
    let mut seen_now: Option<Error> = None;
    let mut on_run = |progress: Progress| {
        let run = match progress {
            Progress::Started(run) => run,
            // The run's end waits for the commit to be seen: a crash between its final record and
            // the mark must not run the commit again.
            Progress::Ending(_) => {
                if let Some(thread) = seen_write.take() {
                    seen_now = joined(thread, &entry.commit);
                }
                return;
            }
            _ => return,
        };
        let (data, name) = (dirs.clone(), repo.name.clone());
        let (branch, commit) = (entry.branch.clone(), entry.commit.clone());
        let mark = move || {
            let marked = seen::set(&data, &name, &branch, &commit);
            queue::release(&data, &name);
            marked
        };
        match std::thread::Builder::new()
            .name("seen".into())
            .spawn(mark.clone())
        {
            Ok(thread) => seen_write = Some(thread),
            // No thread to be had: marked here, before the first step.
            Err(_) => seen_now = mark().err(),
        }
        if let Some(renewal) = renewal.borrow().as_ref() {
            renewal.started(crate::state::records::run_dir(dirs, &repo.name, run));
        }
    };
    let mut conclude = |finished: &mut Finished| {
        if let Some(renewal) = renewal.borrow_mut().take() {
            pool::conclude(dirs, repo, renewal, finished);
        }
    };
    let executed = execute_with(dirs, &request, console, lock, &mut on_run, &mut conclude);
    let seen_error = match seen_write {
        Some(thread) => joined(thread, &entry.commit),
        None => seen_now,
    }
    .map(|e| e.to_string());
    let mut finished = executed?;
    if let Some(e) = seen_error {
        finished.notes.push(e);
    }
    Ok(Some(finished))
}

/// What the thread that marks `commit` seen ended with: the error, if it failed.
fn joined(thread: std::thread::JoinHandle<Result<(), Error>>, commit: &str) -> Option<Error> {
    match thread.join() {
        Ok(marked) => marked.err(),
        Err(_) => Some(Error::Other(format!("cannot note commit {commit} as seen"))),
    }
}

/// Runs `request` (see [`runner::execute`]), then posts its notifications and refreshes the report:
/// a run itself knows nothing of webhooks or HTML.
pub fn execute(
    dirs: &Dirs,
    request: &Request,
    console: Option<Console>,
    lock: &RepoLock,
    started: &mut dyn FnMut(),
) -> Result<Finished, Error> {
    execute_with(
        dirs,
        request,
        console,
        lock,
        &mut |progress| {
            if let Progress::Started(_) = progress {
                started();
            }
        },
        &mut |_| {},
    )
}

/// [`execute`]; `on_run` is told when the run's record says `running` ([`Progress::Started`]) and
/// right before its final record ([`Progress::Ending`]), and `conclude` may change the record of the
/// finished run before the notifications and the report see it.
fn execute_with(
    dirs: &Dirs,
    request: &Request,
    console: Option<Console>,
    lock: &RepoLock,
    on_run: &mut dyn FnMut(Progress),
    conclude: &mut dyn FnMut(&mut Finished),
) -> Result<Finished, Error> {
    // What an earlier version left open is closed before any step runs.
    let mut early_notes = Vec::new();
    if let Err(e) = dirs.tighten() {
        early_notes.push(format!(
            "cannot make phantom_ci's state in `{}` private: {e}",
            dirs.data.display()
        ));
    }
    // `.env`, read once for the run: where the report is, and the webhooks to post to at its end.
    let secrets = Secrets::load(&dirs.dotenv());
    let report_dir = secrets.as_ref().ok().and_then(|s| s.report_dir.as_deref());
    // The report shows the run as going on as soon as its record says so, and its steps as they end
    // (at most once a second: a refresh of a large report takes a tenth of one). A report that cannot
    // be written is said after the run.
    let mut shown = Instant::now();
    let mut recovery_notes = Vec::new();
    let mut progress = |progress: Progress| {
        let run = match progress {
            Progress::Started(run) => {
                on_run(progress);
                run
            }
            Progress::StepEnded(run) if shown.elapsed() >= REPORT_EVERY => run,
            Progress::StepEnded(_) => return,
            Progress::Ending(_) => {
                on_run(progress);
                return;
            }
            Progress::Recovered(run) => {
                recovery_notes.extend(after_recovery_with(dirs, &request.repo, run, &secrets));
                return;
            }
        };
        if let Some(dir) = report_dir {
            let _ = crate::report::refresh(dirs, dir, &request.repo.name, run);
        }
        shown = Instant::now();
    };
    let mut finished = match runner::execute(dirs, request, console, lock, &mut progress) {
        Ok(finished) => finished,
        // The run recovered before got its note, report and webhooks; what went wrong with them is
        // said with the error, as there is no finished run to carry it (the status stays the error's).
        Err(e @ (Error::Config(_) | Error::Usage(_))) => return Err(e),
        Err(e) if early_notes.is_empty() && recovery_notes.is_empty() => return Err(e),
        Err(e) => {
            let mut message = e.to_string();
            for note in early_notes.iter().chain(&recovery_notes) {
                message.push_str("; also: ");
                message.push_str(note);
            }
            return Err(Error::Other(message));
        }
    };
    conclude(&mut finished);
    finished.notes.extend(early_notes);
    finished.notes.extend(recovery_notes);
    let notes = after_run(
        dirs,
        &request.repo,
        &finished.record,
        finished.previous.as_ref(),
        &secrets,
    );
    finished.notes.extend(notes);
    Ok(finished)
}

/// The least time between two refreshes of the report while a run goes on.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What a run recorded `aborted` by recovery ([`crate::state::recovery::recover`]) gets, as the end of
/// every run does (SPEC §9: each final result): its note in git, the report, the webhooks. Returns
/// what went wrong, for stderr.
pub fn after_recovery(dirs: &Dirs, repo: &Repo, run: u64) -> Vec<String> {
    after_recovery_with(dirs, repo, run, &Secrets::load(&dirs.dotenv()))
}

/// [`after_recovery`] with the `.env` already read (a run that recovers the one before it).
fn after_recovery_with(
    dirs: &Dirs,
    repo: &Repo,
    run: u64,
    secrets: &Result<Secrets, SecretsError>,
) -> Vec<String> {
    let record = match crate::state::records::load(dirs, &repo.name, run) {
        Ok(record) => record,
        Err(e) => return vec![e.to_string()],
    };
    // The run recovered is the repo's newest: the one before it is the newest of the others.
    let previous = crate::state::records::last(dirs, &repo.name, Some(run));
    after_run(dirs, repo, &record, previous.as_ref(), secrets)
}

/// What happens once a run is recorded (the note in git, the report, notifications). Never changes the
/// run's result.
fn after_run(
    dirs: &Dirs,
    repo: &Repo,
    record: &RunRecord,
    previous: Option<&RunRecord>,
    secrets: &Result<Secrets, SecretsError>,
) -> Vec<String> {
    let mut notes = Vec::new();
    // `report_url`, for a repo the report shows (a configured one).
    let config = Config::load(&dirs.repo_toml()).ok();
    let page = config
        .as_ref()
        .filter(|config| config.get(&repo.name).is_some())
        .and_then(|config| config.run_url(&repo.name, record.run));
    let log = crate::state::records::run_dir(dirs, &repo.name, record.run).log();
    // The result in git itself (needs nothing of `.env`).
    if repo.notes
        && let Location::Local(path) = &repo.location
        && let Err(e) = write_note(path, record, page.as_deref())
    {
        let line = format!(
            "no note in `{}` of `{}`: {e}",
            crate::git::notes::NOTES_REF,
            path.display()
        );
        append_line(&log, &format!("==> {line}"));
        notes.push(line);
    }
    let secrets = match secrets {
        Ok(secrets) => secrets,
        Err(e) => {
            notes.push(format!(
                "{e}; no webhook was posted and no report refreshed for this run"
            ));
            return notes;
        }
    };
    // The report first: it is local and quick, webhooks may take their timeout.
    if let Some(dir) = &secrets.report_dir
        && let Err(e) = crate::report::refresh(dirs, dir, &repo.name, record.run)
    {
        notes.push(format!(
            "the report in `{}` was not refreshed: {e}",
            dir.display()
        ));
    }
    notes.extend(crate::notify::notify(
        repo.notify,
        record,
        previous,
        &log,
        page.as_deref(),
        secrets,
    ));
    notes
}

/// `notes = true` (SPEC §9): `phantom_ci #12 master success 5.8s <host>` (and the run's page) appended to
/// the note of the run's commit in the repository at `path`.
fn write_note(
    path: &std::path::Path,
    record: &RunRecord,
    page: Option<&str>,
) -> Result<(), String> {
    let line = note_line(
        &format!("#{}", record.run),
        &record.branch,
        record.result,
        record.duration_ms,
        &crate::notify::text::host_name(),
        page,
    );
    crate::git::notes::append(path, &record.commit, &line)
}

/// A line of a commit's note: `phantom_ci #12 master success 5.8s <host> [<page>]`; `run` is how the
/// run is named (`#12`). Untrusted words (branch, host) lose control characters and spaces. Public
/// for the central host of a runner pool, which writes the note of a run that ended on a runner
/// (with [`crate::git::notes::append`]).
pub fn note_line(
    run: &str,
    branch: &str,
    result: RunResult,
    duration_ms: u64,
    host: &str,
    page: Option<&str>,
) -> String {
    let word = |text: &str| crate::notify::text::one_line(text, 200).replace(' ', "_");
    let mut line = format!(
        "phantom_ci {} {} {} {} {}",
        word(run),
        word(branch),
        result.as_str(),
        crate::describe::human_ms(duration_ms),
        word(host),
    );
    if let Some(page) = page {
        line.push(' ');
        line.push_str(page);
    }
    line
}

/// Appends `line` to the run's log (after the run: a problem of what came after it). Best effort.
fn append_line(log: &std::path::Path, line: &str) {
    use std::io::Write;
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(log)
    {
        let _ = writeln!(file, "{line}");
    }
}

/// Starts `phantom_ci work` in a new session, with no tie to the pusher: stdin from /dev/null, output to
/// `<data>/worker.log` (mode 0600), so `git push` returns at once and a disconnecting pusher changes
/// nothing.
pub fn start_detached(dirs: &Dirs) -> Result<(), String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find phantom_ci's own binary: {e}"))?;
    let log_path = dirs.worker_log();
    dirs.make(&dirs.data)
        .map_err(|e| format!("cannot create `{}`: {e}", dirs.data.display()))?;
    // Kept small: past 1 MiB the log starts again, the previous one kept as `worker.log.1`.
    if std::fs::metadata(&log_path).is_ok_and(|m| m.len() > 1 << 20) {
        let _ = std::fs::rename(&log_path, dirs.previous_worker_log());
    }
    // Both logs are phantom_ci's alone (0600): what the worker reports is not for steps to read. The
    // log is made private here; the other state (and `worker.log.1`) by the worker, before its
    // first run (`dirs.tighten()` in `execute_with`): the pusher does not wait for it.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&log_path)
        .map_err(|e| format!("cannot open `{}`: {e}", log_path.display()))?;
    crate::config::dirs::make_private(&log)
        .map_err(|e| format!("cannot make `{}` private: {e}", log_path.display()))?;
    // At once, without waiting for the worker's `exec` (it took up to 4 ms of the pusher's time):
    // a worker that cannot start says so in its log, and the queue keeps the work for the next one.
    let null =
        std::fs::File::open("/dev/null").map_err(|e| format!("cannot open `/dev/null`: {e}"))?;
    let env: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os()
        .filter(|(key, _)| {
            !crate::git::mirror::GIT_HOOK_VARIABLES
                .iter()
                .any(|variable| key == variable)
        })
        .collect();
    let args = [
        "--config-dir".as_ref(),
        dirs.config.as_os_str(),
        "--data-dir".as_ref(),
        dirs.data.as_os_str(),
        "work".as_ref(),
    ];
    crate::isolation::spawn::detached(
        &exe,
        &args,
        &env,
        [null.as_fd(), log.as_fd(), log.as_fd()],
        "phantom_ci: cannot start the phantom_ci worker: errno ",
    )
    .map_err(|e| format!("cannot start the phantom_ci worker: {e}"))
}
