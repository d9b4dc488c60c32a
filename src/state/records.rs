//! What a run leaves behind: `<data>/runs/<repo>/<run>/{run.json,log,artifacts/}` (SPEC §4.1).
//!
//! `run.json` is written twice, durably: when the run starts (`running`) and, replaced atomically, when
//! it ends. In between, each step's record is appended as one JSON line to `steps.jsonl` beside it (not
//! synced: a crash loses at most the last lines, and recovery records the run as `aborted` anyway), so
//! the bytes written for a record grow linearly with its steps. Readers of a `running` record get the
//! steps from there ([`read`]); the file is removed once `run.json` holds the final record.
//!
//! A record that cannot be read is never skipped in silence: [`newest`] and [`load`] say which run and
//! which file ([`Unreadable`]).

use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::dirs::Dirs;
use crate::error::Error;
use crate::state::atomic_file;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Hook,
    Tick,
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Hook => "hook",
            Trigger::Tick => "tick",
            Trigger::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    Success,
    Failure,
    Error,
    Timeout,
    Aborted,
    /// Ended by `phantom_ci cancel` (SPEC §6): final, like `aborted`.
    Cancelled,
    Rejected,
    Running,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "success",
            RunResult::Failure => "failure",
            RunResult::Error => "error",
            RunResult::Timeout => "timeout",
            RunResult::Aborted => "aborted",
            RunResult::Cancelled => "cancelled",
            RunResult::Rejected => "rejected",
            RunResult::Running => "running",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepResult {
    Success,
    Failure,
    Timeout,
    Skipped,
}

impl StepResult {
    /// The result in words, as `run.json` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            StepResult::Success => "success",
            StepResult::Failure => "failure",
            StepResult::Timeout => "timeout",
            StepResult::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's TOML key.
    pub index: u64,
    /// For a copy of a `matrix` step (SPEC §8): its number `k` among the copies (`N.k`); else null.
    #[serde(default)]
    pub instance: Option<u32>,
    /// For a copy of a `matrix` step: its variables, in the order of the matrix's keys; else null.
    #[serde(default)]
    pub matrix: Option<indexmap::IndexMap<String, String>>,
    pub name: Option<String>,
    pub run: String,
    /// The step numbers it waited for (`needs`, or the step numbered before it); empty in records
    /// written before graph workflows.
    #[serde(default)]
    pub needs: Vec<u64>,
    /// `allow_failure = true`: its failure did not fail the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_failure: bool,
    pub result: StepResult,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// When it started and ended (RFC 3339, milliseconds); null for a skipped step and in records
    /// written before graph workflows.
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    pub duration_ms: u64,
}

impl StepRecord {
    /// The record of step `index` that ran `run` and ended with `result` (exit status 0), with
    /// nothing else known: no name, matrix, needs, times or duration. Fill in the rest with `..`.
    pub fn new(index: u64, run: &str, result: StepResult) -> StepRecord {
        StepRecord {
            index,
            instance: None,
            matrix: None,
            name: None,
            run: run.to_string(),
            needs: Vec::new(),
            allow_failure: false,
            result,
            exit_code: Some(0),
            signal: None,
            started_at: None,
            finished_at: None,
            duration_ms: 0,
        }
    }

    /// `3` for a step, `3.1` for the second copy of a matrix step: how logs, `--step` and the console
    /// prefix name it.
    pub fn id(&self) -> String {
        step_id(self.index, self.instance)
    }
}

impl StepRecord {
    /// A matrix copy's values as its name shows them: `TARGET=arm64, OPT=-O0`; `None` for a step
    /// that is not one.
    pub fn matrix_values(&self) -> Option<String> {
        matrix_values(self.matrix.as_ref())
    }

    /// Its name with its matrix values, `cross (TARGET=arm64, OPT=-O0)` (SPEC §8), `None` when it
    /// has no name. Untrusted text: the caller makes it safe where it shows it.
    pub fn title(&self) -> Option<String> {
        title(self.name.as_deref(), self.matrix.as_ref())
    }
}

fn matrix_values(matrix: Option<&indexmap::IndexMap<String, String>>) -> Option<String> {
    let matrix = matrix.filter(|m| !m.is_empty())?;
    let pairs: Vec<String> = matrix.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Some(pairs.join(", "))
}

/// `name (K=v, …)`; a name that already has its values (as the runner names a copy) is not given
/// them twice.
fn title(
    name: Option<&str>,
    matrix: Option<&indexmap::IndexMap<String, String>>,
) -> Option<String> {
    let name = name?;
    let Some(values) = matrix_values(matrix) else {
        return Some(name.to_string());
    };
    let suffix = format!(" ({values})");
    // The runner names a copy `cross (K=v)`, or `(K=v)` when the step has no name.
    if name.ends_with(&suffix) || name.strip_prefix('(') == Some(&suffix[2..]) {
        Some(name.to_string())
    } else {
        Some(format!("{name}{suffix}"))
    }
}

/// A step that started and has not ended yet, as the run's journal tells it (SPEC §8: `status` shows
/// the steps running now). The runner appends one with [`StepJournal::started`] when it starts a step;
/// the step's [`StepRecord`] line, appended when it ends, closes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStart {
    pub index: u64,
    #[serde(default)]
    pub instance: Option<u32>,
    pub name: Option<String>,
    #[serde(default)]
    pub matrix: Option<indexmap::IndexMap<String, String>>,
    /// RFC 3339, milliseconds ([`rfc3339`]).
    pub started_at: String,
}

impl StepStart {
    /// `3` or `3.1`, as [`StepRecord::id`].
    pub fn id(&self) -> String {
        step_id(self.index, self.instance)
    }

    /// As [`StepRecord::title`].
    pub fn title(&self) -> Option<String> {
        title(self.name.as_deref(), self.matrix.as_ref())
    }
}

/// A line of `steps.jsonl` that says a step started: `{"started": {…}}`, told apart from a step's
/// record by its one key.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartedLine {
    started: StepStart,
}

pub use crate::config::workflow::step_id;

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub repo: String,
    pub run: u64,
    pub branch: String,
    pub commit: String,
    /// The commit's subject (the first paragraph of its message, on one line) and author
    /// (`Name <email>`): untrusted text, cut at a bound; empty when the commit could not be read,
    /// and in records written before they existed.
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub author: String,
    pub trigger: Trigger,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: u64,
    pub result: RunResult,
    pub message: Option<String>,
    pub steps: Vec<StepRecord>,
    /// Output that could not be written to the run's log (a full disk, a file size limit); absent
    /// when the log has everything (and in records written before it existed). The run's result is
    /// still what its steps decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_lost: Option<LogLost>,
    /// Until when the run's workspace is kept for `phantom_ci debug` (`keep_failed`, RFC 3339);
    /// absent when it is not kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_until: Option<String>,
    /// How the workspace got its files (issue 23): `layer over the base tree (…)` or `full
    /// checkout (why)`; absent when the run ended before its checkout (and in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

/// What the run's log is missing: bytes that could not be written to it, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLost {
    /// Bytes of output, the steps' and phantom_ci's own lines, that are not in the log.
    pub bytes: u64,
    /// The steps whose output lost bytes (`3`, `3.1`), in the order they first lost some; empty when
    /// only phantom_ci's own lines were lost.
    pub steps: Vec<String>,
    /// Why, in words: the first write error (`No space left on device`).
    pub error: String,
}

impl LogLost {
    /// One line for people: `12.0KiB of output lost (steps 1, 2): No space left on device`.
    pub fn describe(&self) -> String {
        let steps = match self.steps.as_slice() {
            [] => String::new(),
            [one] => format!(" (step {one})"),
            many => format!(" (steps {})", many.join(", ")),
        };
        format!(
            "{} of output could not be written to the log{steps}: {}",
            crate::describe::human_bytes(self.bytes),
            self.error
        )
    }
}

impl RunRecord {
    /// The step that ended the run, if one did (a failure `allow_failure` allowed did not).
    pub fn failed_step(&self) -> Option<&StepRecord> {
        self.steps.iter().find(|s| {
            !s.allow_failure && matches!(s.result, StepResult::Failure | StepResult::Timeout)
        })
    }
}

pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// How a cancel request that asks for `aborted` starts ([`RunDir::request_abort`]); `phantom_ci cancel`
/// writes a user's name, which cannot start so.
pub const ABORT_MARK: &str = "abort: ";

/// The largest run number: 2^53 − 1, the largest integer every JSON reader keeps exact. A counter
/// beyond it is not one a repo reached by running; it is damaged.
pub const MAX_RUN: u64 = (1 << 53) - 1;

/// The directory of one run, numbered and created.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub repo: String,
    pub number: u64,
    pub path: PathBuf,
}

/// A run record that exists (or should) but cannot be read: which run, which file, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the record of run #{run} of `{repo}` is unreadable: `{}`: {reason} (the repo's next run, or \
     `phantom_ci tick`, records a damaged newest run as `aborted` from what is left; an older run's \
     directory `{}` can be moved away)",
    path.display(),
    path.parent().unwrap_or(path).display()
)]
pub struct Unreadable {
    pub repo: String,
    pub run: u64,
    pub path: PathBuf,
    pub reason: String,
}

impl From<Unreadable> for Error {
    fn from(unreadable: Unreadable) -> Error {
        Error::Other(unreadable.to_string())
    }
}

impl RunDir {
    pub fn log(&self) -> PathBuf {
        self.path.join("log")
    }

    pub fn artifacts(&self) -> PathBuf {
        self.path.join("artifacts")
    }

    /// The log of one step alone (`id` from [`step_id`]): `steps/<id>.log` (SPEC §8).
    pub fn step_log(&self, id: &str) -> PathBuf {
        self.path.join("steps").join(format!("{id}.log"))
    }

    pub fn json(&self) -> PathBuf {
        self.path.join("run.json")
    }

    /// `steps.jsonl`: the step records of a run in progress, one JSON line each.
    pub fn journal(&self) -> PathBuf {
        self.path.join("steps.jsonl")
    }

    /// Opens the step journal for appending (created empty, readable by phantom_ci's user only).
    pub fn open_journal(&self) -> Result<StepJournal, Error> {
        let path = self.journal();
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map(|file| StepJournal { file })
            .map_err(|e| Error::io("cannot create", path, e))
    }

    /// Writes the run's number as the repo's last (`<runs>/last`), durably: from then on it is never
    /// given again (SPEC §4.1), and the repo's runs are durably no longer settled.
    pub fn record_number(&self) -> Result<(), Error> {
        let counter = self.path.with_file_name("last");
        atomic_file::write(&counter, format!("{}\n", self.number).as_bytes())
            .map_err(|e| Error::io("cannot write", counter, e))
    }

    /// Notes which process runs this run (pid and start time), so that others can tell whether it is
    /// still alive without touching the repo's lock.
    pub fn write_owner(&self) -> Result<(), Error> {
        let path = self.path.join("owner");
        let me = std::process::id();
        let start = process_start_time(me).unwrap_or_default();
        atomic_file::write(&path, format!("{me} {start}\n").as_bytes())
            .map_err(|e| Error::io("cannot write", path, e))
    }

    /// Whether the process that wrote [`RunDir::write_owner`] still lives; `None` if unknown.
    pub fn owner_alive(&self) -> Option<bool> {
        let (pid, start) = self.owner()?;
        Some(process_start_time(pid) == Some(start))
    }

    /// The pid of the process running this run, while it lives (checked by its start time, so a
    /// reused pid is never taken for it).
    pub fn live_owner(&self) -> Option<u32> {
        let (pid, start) = self.owner()?;
        (process_start_time(pid) == Some(start)).then_some(pid)
    }

    fn owner(&self) -> Option<(u32, u64)> {
        let text = std::fs::read_to_string(self.path.join("owner")).ok()?;
        let mut fields = text.split_whitespace();
        let pid: u32 = fields.next()?.parse().ok()?;
        let start: u64 = fields.next()?.parse().ok()?;
        Some((pid, start))
    }

    /// `cancel`: the request of `phantom_ci cancel` to end this run (SPEC §6). Its presence is the
    /// request; its text says who made it.
    pub fn cancel_request(&self) -> PathBuf {
        self.path.join("cancel")
    }

    /// Asks the run to end as `cancelled`: writes [`RunDir::cancel_request`] (0600, never through a
    /// link), saying `by`.
    pub fn request_cancel(&self, by: &str) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(self.cancel_request())?;
        file.write_all(format!("{by}\n").as_bytes())
    }

    /// Asks the run to end as `aborted` rather than `cancelled`, for `why` (a runner pool's claim that
    /// another host took over): the same request file, its text marked with [`ABORT_MARK`].
    pub fn request_abort(&self, why: &str) -> std::io::Result<()> {
        self.request_cancel(&format!("{ABORT_MARK}{why}"))
    }

    /// Why the run was asked to end as `aborted` ([`RunDir::request_abort`]), if it was.
    pub fn abort_reason(&self) -> Option<String> {
        self.cancelled_by()
            .and_then(|text| text.strip_prefix(ABORT_MARK).map(str::to_string))
    }

    /// Who asked to cancel this run, if someone did.
    pub fn cancelled_by(&self) -> Option<String> {
        std::fs::read_to_string(self.cancel_request())
            .ok()
            .map(|text| crate::describe::terminal(text.trim()))
    }

    /// Writes `run.json` atomically and durably. Once it holds a final record, the step journal has
    /// served and goes.
    pub fn write(&self, record: &RunRecord) -> Result<(), Error> {
        let mut bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::Other(format!("cannot serialise run.json: {e}")))?;
        bytes.push(b'\n');
        atomic_file::write(&self.json(), &bytes)
            .map_err(|e| Error::io("cannot write", self.json(), e))?;
        if record.result != RunResult::Running {
            let _ = std::fs::remove_file(self.journal());
        }
        Ok(())
    }

    fn unreadable(&self, reason: impl Into<String>) -> Unreadable {
        Unreadable {
            repo: self.repo.clone(),
            run: self.number,
            path: self.json(),
            reason: reason.into(),
        }
    }
}

/// Appends step records to a run's `steps.jsonl`: one `write` of one line per step, not synced.
pub struct StepJournal {
    file: std::fs::File,
}

impl StepJournal {
    /// A step ended: its record.
    pub fn append(&mut self, step: &StepRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(step).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }

    /// A step started (`{"started": {…}}`): until its record follows, `status` shows it running.
    pub fn started(&mut self, step: &StepStart) -> std::io::Result<()> {
        let started = StartedLine {
            started: step.clone(),
        };
        let mut line = serde_json::to_vec(&started).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }
}

/// What a run's journal holds: the records of the steps that ended, in the order they ended, and the
/// steps that started and have not ended, in the order they started.
#[derive(Debug, Default)]
pub struct Journal {
    pub ended: Vec<StepRecord>,
    pub running: Vec<StepStart>,
}

/// The journal of `run`, up to the first line that does not read (the one a crash cut).
pub fn read_journal(run: &RunDir) -> Journal {
    let Ok(bytes) = std::fs::read(run.journal()) else {
        return Journal::default();
    };
    let mut journal = Journal::default();
    for line in bytes.split(|b| *b == b'\n') {
        if let Ok(step) = serde_json::from_slice::<StepRecord>(line) {
            journal.ended.push(step);
        } else if let Ok(StartedLine { started }) = serde_json::from_slice(line) {
            journal.running.push(started);
        } else {
            break;
        }
    }
    let ended: std::collections::HashSet<(u64, Option<u32>)> = journal
        .ended
        .iter()
        .map(|s| (s.index, s.instance))
        .collect();
    journal
        .running
        .retain(|s| !ended.contains(&(s.index, s.instance)));
    journal
}

/// The steps recorded in the journal of `run`, up to the first line that does not read (the one a
/// crash cut).
pub fn journal_steps(run: &RunDir) -> Vec<StepRecord> {
    read_journal(run).ended
}

/// The steps of `run` running now: started in its journal, not ended. Empty for a run that ended (its
/// journal is gone) and for runs by a runner that does not note starts.
pub fn running_steps(run: &RunDir) -> Vec<StepStart> {
    read_journal(run).running
}

/// The record of `run`: `None` when it has no `run.json` (yet). A `running` record comes with the
/// steps its journal holds.
pub fn read(run: &RunDir) -> Result<Option<RunRecord>, Unreadable> {
    let mut record = read_json(run)?;
    if let Some(record) = record.as_mut()
        && record.result == RunResult::Running
    {
        record.steps.extend(journal_steps(run));
    }
    Ok(record)
}

/// `run.json` as it is: while the run goes on, without its steps so far.
fn read_json(run: &RunDir) -> Result<Option<RunRecord>, Unreadable> {
    let bytes = match std::fs::read(run.json()) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(run.unreadable(format!("cannot read it: {e}"))),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| run.unreadable(format!("not a valid run record: {e}")))
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22): with the pid, it
/// names one process, even after the pid is reused.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain anything.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Creates the next run directory of `repo`. Numbers are never reused: the last one handed out is kept
/// in `<data>/runs/<repo>/last`, so pruning old runs does not bring their numbers back. The caller holds
/// the repo's lock.
pub fn allocate(dirs: &Dirs, repo: &str) -> Result<RunDir, Error> {
    let run_dir = reserve(dirs, repo)?;
    run_dir.record_number()?;
    Ok(run_dir)
}

/// [`allocate`] but for the counter: the run's directory is made (its number taken: the next
/// allocation sees it), and [`RunDir::record_number`] makes the number durable later — before
/// anything of the run is (the runner does both on its start thread, before the first step).
pub fn reserve(dirs: &Dirs, repo: &str) -> Result<RunDir, Error> {
    let runs = dirs.runs(repo);
    // Logs hold whatever steps print: only phantom_ci's user reads them (and `phantom_ci logs` run as it).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&runs)
        .map_err(|e| Error::io("cannot create", &runs, e))?;
    // Directories made by an earlier version were 0755: close them too.
    for dir in [dirs.data.join("runs"), runs.clone()] {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if let Ok(meta) = std::fs::symlink_metadata(&dir)
            && meta.is_dir()
            && meta.uid() == nix::unistd::geteuid().as_raw()
            && meta.mode() & 0o077 != 0
        {
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    // The repo's runs are no longer all settled; `RunDir::record_number` makes that durable (it
    // syncs this directory).
    match std::fs::remove_file(runs.join(SETTLED)) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("cannot remove", runs.join(SETTLED), e)),
    }
    let counter = runs.join("last");
    let last_recorded = read_counter(&counter, repo)?;
    let last_present = numbers(&runs).last().copied().unwrap_or(0);
    let (mut last, source) = if last_present > last_recorded {
        (last_present, runs.join(last_present.to_string()))
    } else {
        (last_recorded, counter.clone())
    };
    loop {
        if last >= MAX_RUN {
            return Err(Error::Other(format!(
                "repo `{repo}` cannot number another run: `{}` says its last run was #{last}, and \
                 run numbers end at {MAX_RUN}; no repo gets there by running, so the state is \
                 damaged: write the number of the repo's real last run into `{}` (and move any run \
                 directory numbered above it out of `{}`)",
                source.display(),
                counter.display(),
                runs.display()
            )));
        }
        let number = last + 1;
        let path = runs.join(number.to_string());
        match std::fs::create_dir(&path) {
            Ok(()) => {
                return Ok(RunDir {
                    repo: repo.to_string(),
                    number,
                    path,
                });
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = number,
            Err(e) => return Err(Error::io("cannot create", path, e)),
        }
    }
}

/// `<data>/runs/<repo>/settled`: present while every run of the repo has its final record — none
/// is going on, none died unrecorded. Removed (durably) when a run is numbered, made again when its
/// final record is written or recovery has recorded a dead run. `tick` passes over a repo whose
/// branch did not move and whose runs are settled without touching its lock or records.
const SETTLED: &str = "settled";

/// Whether every run of `repo` has its final record (see [`SETTLED`]). `false` when unknown (never
/// noted, or by a version before it): the caller looks at the records.
pub fn all_settled(dirs: &Dirs, repo: &str) -> bool {
    std::fs::symlink_metadata(dirs.runs(repo).join(SETTLED)).is_ok_and(|m| m.is_file())
}

/// Notes that every run of `repo` has its final record. The caller holds the repo's lock and has
/// written that record. Not synced: if a crash loses it, the next `tick` looks at the records once.
pub fn mark_settled(dirs: &Dirs, repo: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dirs.runs(repo).join(SETTLED))
        .map(drop)
}

/// The last run number handed out, from the counter file; 0 when there is none yet.
fn read_counter(counter: &Path, repo: &str) -> Result<u64, Error> {
    let text = match std::fs::read(counter) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("cannot read the run counter", counter, e)),
    };
    let text = String::from_utf8_lossy(&text);
    text.trim().parse::<u64>().map_err(|_| {
        let shown: String = text.trim().chars().take(40).collect();
        Error::Other(format!(
            "the run counter `{}` of repo `{repo}` holds `{}`, not a run number; write the number of \
             the repo's last run into it (or remove it to count on from the newest run directory)",
            counter.display(),
            crate::describe::terminal(&shown)
        ))
    })
}

/// The run numbers present for a repo, ascending.
fn numbers(runs: &Path) -> Vec<u64> {
    let mut numbers: Vec<u64> = std::fs::read_dir(runs)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let name = name.to_str()?;
            // Only the names phantom_ci gives: `7`, not `07` or `+7`.
            let number: u64 = name.parse().ok()?;
            (number.to_string() == name).then_some(number)
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

pub fn run_dir(dirs: &Dirs, repo: &str, number: u64) -> RunDir {
    RunDir {
        repo: repo.to_string(),
        number,
        path: dirs.runs(repo).join(number.to_string()),
    }
}

/// The run numbers recorded for `repo`, ascending.
pub fn list(dirs: &Dirs, repo: &str) -> Vec<u64> {
    numbers(&dirs.runs(repo))
}

/// Like [`read`], but a missing `run.json` of a run whose process is gone is unreadable too; `None`
/// only while a run may still be starting.
pub fn read_settled(run: &RunDir) -> Result<Option<RunRecord>, Unreadable> {
    settled(run, read(run)?)
}

/// Like [`read_settled`], without the steps of a run in progress: cheap enough to poll whatever the
/// number of steps (`logs --follow` asks only whether the run ended).
pub fn peek(run: &RunDir) -> Result<Option<RunRecord>, Unreadable> {
    settled(run, read_json(run)?)
}

fn settled(run: &RunDir, record: Option<RunRecord>) -> Result<Option<RunRecord>, Unreadable> {
    match record {
        None if run.owner_alive() == Some(false) => {
            Err(run.unreadable("it is missing, and the run's process is gone"))
        }
        record => Ok(record),
    }
}

/// The record of run `number` of `repo`; a missing `run.json` is unreadable too.
pub fn load(dirs: &Dirs, repo: &str, number: u64) -> Result<RunRecord, Unreadable> {
    let run = run_dir(dirs, repo, number);
    read(&run)?.ok_or_else(|| run.unreadable("it is missing"))
}

/// The record of the newest run of `repo`, `None` if it never ran. A run directory without `run.json`
/// whose owner may still be starting it is passed over; any other newest record that cannot be read is
/// an error, never an older record shown in its place.
pub fn newest(dirs: &Dirs, repo: &str) -> Result<Option<RunRecord>, Unreadable> {
    for number in list(dirs, repo).into_iter().rev() {
        // Passed over: a run between being numbered and writing its record.
        if let Some(record) = read_settled(&run_dir(dirs, repo, number))? {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

/// The newest readable record of `repo` other than run `except`.
pub fn last(dirs: &Dirs, repo: &str, except: Option<u64>) -> Option<RunRecord> {
    list(dirs, repo)
        .into_iter()
        .rev()
        .filter(|n| Some(*n) != except)
        .find_map(|n| load(dirs, repo, n).ok())
}

/// Deletes the oldest runs so that at most `keep` remain.
pub fn prune(dirs: &Dirs, repo: &str, keep: u32) -> Result<(), Error> {
    let numbers = list(dirs, repo);
    let excess = numbers.len().saturating_sub(keep as usize);
    for number in &numbers[..excess] {
        let path = run_dir(dirs, repo, *number).path;
        std::fs::remove_dir_all(&path).map_err(|e| Error::io("cannot prune", path, e))?;
    }
    Ok(())
}

/// A record of run `run` of `app` with `result`, for the tests of the modules that read records.
#[cfg(test)]
pub(crate) fn sample(run: u64, result: RunResult) -> RunRecord {
    RunRecord {
        repo: "app".into(),
        run,
        branch: "master".into(),
        commit: "0".repeat(40),
        subject: String::new(),
        author: String::new(),
        trigger: Trigger::Manual,
        started_at: "2026-11-01T00:00:00.000Z".into(),
        finished_at: None,
        duration_ms: 0,
        result,
        message: None,
        steps: Vec::new(),
        log_lost: None,
        kept_until: None,
        workspace: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(root: &std::path::Path) -> Dirs {
        Dirs::under(root)
    }

    #[test]
    fn the_owner_of_a_run_is_known_alive() {
        let tmp = tempfile::tempdir().unwrap();
        let run = allocate(&dirs(tmp.path()), "app").unwrap();
        assert_eq!(run.owner_alive(), None);
        run.write_owner().unwrap();
        assert_eq!(run.owner_alive(), Some(true));
        std::fs::write(run.path.join("owner"), "1 1\n").unwrap();
        assert_eq!(
            run.owner_alive(),
            Some(false),
            "pid 1 started at another time"
        );
    }

    fn record(run: u64, result: RunResult) -> RunRecord {
        sample(run, result)
    }

    fn step(index: u64) -> StepRecord {
        StepRecord {
            duration_ms: 1,
            ..StepRecord::new(index, "true", StepResult::Success)
        }
    }

    #[test]
    fn a_running_record_has_the_steps_of_its_journal_up_to_a_torn_line() {
        let tmp = tempfile::tempdir().unwrap();
        let run = allocate(&dirs(tmp.path()), "app").unwrap();
        run.write(&record(1, RunResult::Running)).unwrap();
        let mut journal = run.open_journal().unwrap();
        journal.append(&step(0)).unwrap();
        journal.append(&step(5)).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(run.journal())
            .unwrap()
            .write_all(b"{\"index\": 9, \"na")
            .unwrap();
        let read_back = read(&run).unwrap().unwrap();
        let indexes: Vec<u64> = read_back.steps.iter().map(|s| s.index).collect();
        assert_eq!(indexes, [0, 5]);
        // The final record stands alone, and the journal goes.
        let mut done = record(1, RunResult::Success);
        done.steps = vec![step(0)];
        run.write(&done).unwrap();
        assert!(!run.journal().exists());
        assert_eq!(read(&run).unwrap().unwrap(), done);
    }

    #[test]
    fn steps_started_and_not_ended_are_running() {
        let tmp = tempfile::tempdir().unwrap();
        let run = allocate(&dirs(tmp.path()), "app").unwrap();
        run.write(&record(1, RunResult::Running)).unwrap();
        assert!(running_steps(&run).is_empty(), "no journal yet");
        let mut journal = run.open_journal().unwrap();
        let start = |index, instance| StepStart {
            index,
            instance,
            name: Some("cross".into()),
            matrix: instance.map(|k| [("TARGET".to_string(), format!("t{k}"))].into()),
            started_at: "2026-12-07T10:00:00.000Z".into(),
        };
        journal.started(&start(0, None)).unwrap();
        journal.started(&start(3, Some(0))).unwrap();
        journal.started(&start(3, Some(1))).unwrap();
        let mut ended = step(3);
        ended.instance = Some(0);
        journal.append(&ended).unwrap();
        let running: Vec<String> = running_steps(&run).iter().map(StepStart::id).collect();
        assert_eq!(running, ["0", "3.1"]);
        assert_eq!(
            running_steps(&run)[1].title().as_deref(),
            Some("cross (TARGET=t1)")
        );
        // Start lines are not steps: the record reads as before.
        let read_back = read(&run).unwrap().unwrap();
        assert_eq!(read_back.steps, [ended]);
        // A final record: the journal is gone, and nothing runs.
        run.write(&record(1, RunResult::Success)).unwrap();
        assert!(running_steps(&run).is_empty());
    }

    #[test]
    fn a_matrix_copy_is_titled_with_its_values_once() {
        let mut copy = step(3);
        assert_eq!(copy.title(), None);
        copy.name = Some("cross".into());
        assert_eq!(copy.title().as_deref(), Some("cross"));
        copy.instance = Some(1);
        copy.matrix = Some(
            [("TARGET", "arm64"), ("OPT", "-O0")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into_iter()
                .collect(),
        );
        assert_eq!(
            copy.matrix_values().as_deref(),
            Some("TARGET=arm64, OPT=-O0")
        );
        assert_eq!(
            copy.title().as_deref(),
            Some("cross (TARGET=arm64, OPT=-O0)")
        );
        copy.name = Some("cross (TARGET=arm64, OPT=-O0)".into());
        assert_eq!(
            copy.title().as_deref(),
            Some("cross (TARGET=arm64, OPT=-O0)"),
            "a name the runner gave with its values"
        );
        copy.name = Some("(TARGET=arm64, OPT=-O0)".into());
        assert_eq!(
            copy.title().as_deref(),
            Some("(TARGET=arm64, OPT=-O0)"),
            "the runner's name of a copy of a step without one"
        );
    }

    #[test]
    fn the_newest_record_is_never_replaced_by_an_older_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = dirs(tmp.path());
        let first = allocate(&dirs, "app").unwrap();
        first.write(&record(1, RunResult::Success)).unwrap();
        let second = allocate(&dirs, "app").unwrap();
        // Being numbered, no record yet: the run is starting, the older record stands.
        assert_eq!(newest(&dirs, "app").unwrap().unwrap().run, 1);
        second.write_owner().unwrap();
        assert_eq!(newest(&dirs, "app").unwrap().unwrap().run, 1);
        // Its process is gone without a record: that is said.
        std::fs::write(second.path.join("owner"), "1 1\n").unwrap();
        let missing = newest(&dirs, "app").unwrap_err();
        assert_eq!((missing.run, missing.reason.contains("missing")), (2, true));
        std::fs::write(second.json(), b"{\"repo\": \"app\", \"ru").unwrap();
        let damaged = newest(&dirs, "app").unwrap_err();
        assert_eq!(damaged.path, second.json());
        assert!(damaged.to_string().contains("run #2 of `app`"), "{damaged}");
        assert!(last(&dirs, "app", None).is_some_and(|r| r.run == 1));
    }

    #[test]
    fn an_impossible_counter_is_an_error_never_a_wrap() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = dirs(tmp.path());
        allocate(&dirs, "app").unwrap();
        let counter = dirs.runs("app").join("last");
        for (text, expected) in [
            (u64::MAX.to_string(), "cannot number another run"),
            (MAX_RUN.to_string(), "cannot number another run"),
            ("-1".to_string(), "not a run number"),
            ("\x1b[2J".to_string(), "holds `?[2J`"),
        ] {
            std::fs::write(&counter, &text).unwrap();
            let error = allocate(&dirs, "app").unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(error.contains(&counter.display().to_string()), "{error}");
        }
        std::fs::write(&counter, (MAX_RUN - 1).to_string()).unwrap();
        assert_eq!(allocate(&dirs, "app").unwrap().number, MAX_RUN);
        assert_eq!(list(&dirs, "app"), [1, MAX_RUN]);
        // `07` is not a name phantom_ci gives.
        std::fs::create_dir(dirs.runs("app").join("07")).unwrap();
        assert_eq!(list(&dirs, "app"), [1, MAX_RUN]);
    }

    #[test]
    fn numbers_are_never_reused_after_pruning() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = dirs(tmp.path());
        for expected in 1..=3 {
            assert_eq!(allocate(&dirs, "app").unwrap().number, expected);
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dirs.data.join("runs"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "records are phantom_ci's alone");
        prune(&dirs, "app", 1).unwrap();
        assert_eq!(list(&dirs, "app"), [3]);
        std::fs::remove_dir_all(dirs.runs("app").join("3")).unwrap();
        assert_eq!(allocate(&dirs, "app").unwrap().number, 4);
    }
}
