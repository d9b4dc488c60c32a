//! Runs whose process died (SIGKILL, power loss) are found by the next invocation and recorded as
//! `aborted` (SPEC §4.5); what is left of their processes is killed (SPEC §4.4).
//!
//! A run holds its repo's lock for as long as it lives, and the kernel drops the lock when the holder
//! dies. So whoever holds the lock and finds the newest record still `running` knows its owner is gone.
//! Left-over processes are killed with the run's cgroup, if it had one (found by its name, which the
//! data dir, the repo and the run number give: [`crate::isolation::cgroup`]); that is exact. Then by
//! their environment: every step gets `PHANTOM_CI_WORKSPACE=<data>/work/<repo>/<run>/workspace`,
//! unique to one run of one data dir. Without a cgroup this is best effort: a process that cleared its
//! environment escapes it.

use std::path::Path;
use std::time::SystemTime;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::config::dirs::Dirs;
use crate::config::{KeepWorkspace, Repo};
use crate::error::Error;
use crate::isolation::cgroup;
use crate::state::lock::RepoLock;
use crate::state::records::{self, RunResult};

/// Records the newest run of `repo` as `aborted` if it is still `running`. The caller holds the lock.
/// Returns the number of the run it recorded, if any.
pub fn recover(dirs: &Dirs, repo: &Repo, _lock: &RepoLock) -> Result<Option<u64>, Error> {
    let Some(&number) = records::list(dirs, &repo.name).last() else {
        return Ok(None);
    };
    let Ok(mut record) = records::load(dirs, &repo.name, number) else {
        return Ok(None);
    };
    if record.result != RunResult::Running {
        return Ok(None);
    }
    let workspace = dirs.work().join(&repo.name).join(number.to_string());
    cgroup::kill_dead_run(&dirs.data, &repo.name, number);
    kill_leftovers(&workspace.join("workspace"));

    let run_dir = records::run_dir(dirs, &repo.name, number);
    // The log's last change is the best estimate of when the run died.
    let died = std::fs::metadata(run_dir.log())
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now());
    let started = humantime::parse_rfc3339(&record.started_at).unwrap_or(died);
    record.result = RunResult::Aborted;
    record.message = Some(
        "phantom_ci stopped during this run (it was killed or the machine went down); recorded \
         by the next invocation. Re-run it with `phantom_ci run <repo> --commit <commit>`"
            .to_string(),
    );
    record.finished_at = Some(records::rfc3339(died));
    record.duration_ms = died
        .duration_since(started)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    run_dir.write(&record)?;
    if repo.keep_workspace == KeepWorkspace::Never {
        let _ = std::fs::remove_dir_all(&workspace);
    }
    Ok(Some(number))
}

/// SIGKILLs every process whose environment names `workspace` as its `PHANTOM_CI_WORKSPACE`.
fn kill_leftovers(workspace: &Path) {
    let mut needle = b"\0PHANTOM_CI_WORKSPACE=".to_vec();
    needle.extend_from_slice(workspace.as_os_str().as_encoded_bytes());
    needle.push(0);
    let me = std::process::id();
    // Killing a process can reparent its children, so look until nothing matches (bounded).
    for _ in 0..10 {
        let mut found = false;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if pid as u32 == me {
                continue;
            }
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            let mut haystack = Vec::with_capacity(environ.len() + 1);
            haystack.push(0);
            haystack.extend_from_slice(&environ);
            if haystack
                .windows(needle.len())
                .any(|w| w == needle.as_slice())
            {
                found |= kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok();
            }
        }
        if !found {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
