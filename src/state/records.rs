//! What a run leaves behind: `<data>/runs/<repo>/<run>/{run.json,log,artifacts/}` (SPEC §4.1).

use std::os::unix::fs::DirBuilderExt;
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub index: u64,
    pub name: Option<String>,
    pub run: String,
    pub result: StepResult,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: u64,
}

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub repo: String,
    pub run: u64,
    pub branch: String,
    pub commit: String,
    pub trigger: Trigger,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: u64,
    pub result: RunResult,
    pub message: Option<String>,
    pub steps: Vec<StepRecord>,
}

impl RunRecord {
    /// The step that ended the run, if one did.
    pub fn failed_step(&self) -> Option<&StepRecord> {
        self.steps
            .iter()
            .find(|s| matches!(s.result, StepResult::Failure | StepResult::Timeout))
    }
}

pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// The directory of one run, numbered and created.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub number: u64,
    pub path: PathBuf,
}

impl RunDir {
    pub fn log(&self) -> PathBuf {
        self.path.join("log")
    }

    pub fn artifacts(&self) -> PathBuf {
        self.path.join("artifacts")
    }

    pub fn json(&self) -> PathBuf {
        self.path.join("run.json")
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
        let text = std::fs::read_to_string(self.path.join("owner")).ok()?;
        let mut fields = text.split_whitespace();
        let pid: u32 = fields.next()?.parse().ok()?;
        let start: u64 = fields.next()?.parse().ok()?;
        Some(process_start_time(pid) == Some(start))
    }

    /// Writes `run.json` atomically.
    pub fn write(&self, record: &RunRecord) -> Result<(), Error> {
        let mut bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| Error::Other(format!("cannot serialise run.json: {e}")))?;
        bytes.push(b'\n');
        atomic_file::write(&self.json(), &bytes)
            .map_err(|e| Error::io("cannot write", self.json(), e))
    }
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22): with the pid, it
/// names one process, even after the pid is reused.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain anything.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Creates the next run directory of `repo`. Numbers are never reused: the last one handed out is kept
/// in `<data>/runs/<repo>/last`, so pruning old runs does not bring their numbers back. The caller holds
/// the repo's lock.
pub fn allocate(dirs: &Dirs, repo: &str) -> Result<RunDir, Error> {
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
    let counter = runs.join("last");
    let last_recorded = std::fs::read_to_string(&counter)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let last_present = numbers(&runs).last().copied().unwrap_or(0);
    let mut number = last_recorded.max(last_present) + 1;
    loop {
        let path = runs.join(number.to_string());
        match std::fs::create_dir(&path) {
            Ok(()) => {
                atomic_file::write(&counter, format!("{number}\n").as_bytes())
                    .map_err(|e| Error::io("cannot write", &counter, e))?;
                return Ok(RunDir { number, path });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => number += 1,
            Err(e) => return Err(Error::io("cannot create", path, e)),
        }
    }
}

/// The run numbers present for a repo, ascending.
fn numbers(runs: &Path) -> Vec<u64> {
    let mut numbers: Vec<u64> = std::fs::read_dir(runs)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    numbers.sort_unstable();
    numbers
}

pub fn run_dir(dirs: &Dirs, repo: &str, number: u64) -> RunDir {
    RunDir {
        number,
        path: dirs.runs(repo).join(number.to_string()),
    }
}

/// The run numbers recorded for `repo`, ascending.
pub fn list(dirs: &Dirs, repo: &str) -> Vec<u64> {
    numbers(&dirs.runs(repo))
}

pub fn load(dirs: &Dirs, repo: &str, number: u64) -> Result<RunRecord, Error> {
    let path = run_dir(dirs, repo, number).json();
    let bytes = std::fs::read(&path).map_err(|e| Error::io("cannot read", &path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Other(format!(
            "`{}` is not a valid run record: {e}",
            path.display()
        ))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(root: &Path) -> Dirs {
        Dirs {
            config: root.join("config"),
            data: root.join("data"),
        }
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
