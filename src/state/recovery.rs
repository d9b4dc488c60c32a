//! Runs whose process died (SIGKILL, power loss) are found by the next invocation and recorded as
//! `aborted` (SPEC §4.5); what is left of their processes is killed (SPEC §4.4).
//!
//! A run holds its repo's lock for as long as it lives, and the kernel drops the lock when the holder
//! dies. So whoever holds the lock and finds the newest record still `running` — or unreadable, or
//! missing — knows its owner is gone. An unreadable record is rebuilt from what is left: the fields
//! that still read in the damaged file, the run's step journal, the first line of its log; the damaged
//! file is kept beside it as `run.json.unreadable`.
//!
//! Left-over processes are killed with the run's cgroup, if it had one (found by its name, which the
//! data dir, the repo and the run number give: [`crate::isolation::cgroup`]); that is exact. Then by
//! their environment: every step gets `PHANTOM_CI_WORKSPACE=<data>/work/<repo>/<run>/workspace`,
//! unique to one run of one data dir. Without a cgroup this is best effort: a process that cleared its
//! environment escapes it.
//!
//! Kept workspaces of failed runs ([`crate::state::kept`]) that expired go too, except those a live
//! `debug` session uses; also without the lock ([`sweep_kept`]), by time only.
//!
//! `phantom_ci debug` sessions hold no lock; their owner records ([`crate::state::sessions`]) tell
//! which died. What is left of those is ended the same way, and their workspaces removed, by whoever
//! recovers the repo's runs.

use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Map, Value};

use crate::config::dirs::Dirs;
use crate::config::{KeepWorkspace, Repo};
use crate::error::Error;
use crate::isolation::cgroup;
use crate::state::lock::RepoLock;
use crate::state::records::{self, RunDir, RunRecord, RunResult, Trigger};
use crate::state::{kept, sessions};

/// Records the newest run of `repo` as `aborted` if it is still `running`, or if its record cannot be
/// read. The caller holds the lock. Returns the number of the run it recorded, if any.
pub fn recover(dirs: &Dirs, repo: &Repo, _lock: &RepoLock) -> Result<Option<u64>, Error> {
    // Under the lock: also a workspace kept by a run that died before its record was final.
    let _ = tidy(dirs, &repo.name, true);
    let Some(&number) = records::list(dirs, &repo.name).last() else {
        return Ok(None);
    };
    let run_dir = records::run_dir(dirs, &repo.name, number);
    let (mut record, unreadable) = match records::read(&run_dir) {
        Ok(Some(record)) if record.result == RunResult::Running => (record, None),
        Ok(Some(_)) => {
            // Nothing to recover: say so for the next `tick` (best effort).
            let _ = records::mark_settled(dirs, &repo.name);
            return Ok(None);
        }
        Ok(None) => (rebuild(repo, &run_dir), Some("it was missing".to_string())),
        Err(e) => (rebuild(repo, &run_dir), Some(e.reason)),
    };
    let workspace = dirs.work().join(&repo.name).join(number.to_string());
    cgroup::kill_dead_run(&dirs.data, &repo.name, number);
    kill_leftovers(&workspace.join("workspace"));

    // The log's last change is the best estimate of when the run died.
    let died = std::fs::metadata(run_dir.log())
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now());
    let started = humantime::parse_rfc3339(&record.started_at).unwrap_or(died);
    record.result = RunResult::Aborted;
    record.message = Some(match &unreadable {
        None => format!(
            "phantom_ci stopped during this run (it was killed or the machine went down); \
             recorded by the next invocation. Re-run it with `phantom_ci run {} --branch {} \
             --commit {}`",
            record.repo,
            crate::describe::terminal(&shell_words::quote(&record.branch)),
            record.commit
        ),
        Some(reason) => format!(
            "the record of this run was unreadable ({reason}) and no phantom_ci was running it; \
             recorded as aborted by the next invocation from what was left{}{}",
            match unknown_fields(&record) {
                list if list.is_empty() => String::new(),
                list => format!(" ({list} unknown)"),
            },
            if run_dir.json().exists() {
                "; the unreadable file is kept as `run.json.unreadable`"
            } else {
                ""
            }
        ),
    });
    record.finished_at = Some(records::rfc3339(died));
    record.duration_ms = died
        .duration_since(started)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if unreadable.is_some() && run_dir.json().exists() {
        let kept = run_dir.path.join("run.json.unreadable");
        std::fs::rename(run_dir.json(), &kept).map_err(|e| Error::io("cannot keep", kept, e))?;
    }
    run_dir.write(&record)?;
    let _ = records::mark_settled(dirs, &repo.name);
    // An aborted run keeps no workspace for `debug` (`keep_failed`), unless a live session uses
    // the one it had begun to keep.
    let pinned = kept::find(dirs, &repo.name, number).is_some_and(|k| kept::pinned(&k));
    if repo.keep_workspace != KeepWorkspace::Always && !pinned {
        let _ = crate::isolation::dirfd::remove_tree(&workspace);
    }
    Ok(Some(number))
}

/// What the operator is told when [`recover`] recorded `run` of `repo` as aborted.
pub fn recovered_note(repo: &str, run: u64) -> String {
    format!(
        "note: run #{run} of `{repo}` is recorded `aborted`: the phantom_ci running it had died \
         (killed, or the machine went down); its processes and workspace are gone"
    )
}

/// Ends what is left of the `phantom_ci debug` sessions of `repo` whose process died (SIGKILL, power
/// loss), as for a dead run: their processes (by the session's cgroup, then by its
/// `PHANTOM_CI_WORKSPACE`), and their workspaces, unless the session was started with `--keep`.
/// Live sessions are not touched: their owner record names a living process. Needs no lock.
fn end_dead_sessions(dirs: &Dirs, repo: &str) {
    for session in sessions::dead(dirs, repo) {
        cgroup::kill_dead_debug(&dirs.data, repo, session.pid);
        if let Some(run) = session.in_run {
            // The workspace is a kept run's, which may have other sessions: its processes by the
            // environment only when none is alive. The workspace stays (it expires as kept ones do).
            let kept = kept::find(dirs, repo, run);
            if let Some(kept) = kept.filter(|k| !kept::pinned(k)) {
                kill_leftovers(&kept.tree());
            }
            let _ = crate::isolation::dirfd::remove_tree(&session.root);
            continue;
        }
        kill_leftovers(&session.workspace());
        if session.keep {
            // As at the end of a session: closed to the step user again, and no longer a session.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&session.root, std::fs::Permissions::from_mode(0o700));
            session.forget();
        } else if crate::isolation::dirfd::remove_tree(&session.root).is_ok() {
            // The per-repo directory too once it is empty; another run's directory keeps it.
            let _ = std::fs::remove_dir(dirs.work().join(repo));
        }
    }
}

/// Ends the `debug` sessions of `repo` that died, and removes its kept workspaces that expired or
/// are past the newest three, except those a live session uses. Needs no lock (a run that is keeping its workspace right now keeps a newer
/// one than any it could remove).
pub fn tidy_sessions_and_kept(dirs: &Dirs, repo: &str) -> Vec<String> {
    tidy(dirs, repo, false)
}

/// Ends the `debug` sessions of `repo` that died and removes its kept workspaces that expired (with
/// `under_lock`, also one a run that died left before its record was final); the notes for the
/// operator. One `stat` when the repo has no work directory, as on most `tick`s.
fn tidy(dirs: &Dirs, repo: &str, under_lock: bool) -> Vec<String> {
    if !dirs.work().join(repo).is_dir() {
        return Vec::new();
    }
    end_dead_sessions(dirs, repo);
    kept::sweep(dirs, repo, SystemTime::now(), under_lock)
}

/// The record of a run whose `run.json` cannot be read, rebuilt from what is left.
fn rebuild(repo: &Repo, run: &RunDir) -> RunRecord {
    let damaged = std::fs::read(run.json())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let fields = salvage(&damaged);
    let text = |key: &str| fields.get(key).and_then(Value::as_str).map(str::to_string);
    let header = log_header(&run.log());
    let trigger = text("trigger")
        .or_else(|| header.as_ref().map(|h| h.trigger.clone()))
        .and_then(|t| serde_json::from_value::<Trigger>(Value::String(t)).ok());
    // The run started when it noted its owner, just before its record.
    let started_at = text("started_at").unwrap_or_else(|| {
        let started = ["owner", "log"]
            .iter()
            .find_map(|name| {
                std::fs::metadata(run.path.join(name))
                    .and_then(|m| m.modified())
                    .ok()
            })
            .unwrap_or_else(SystemTime::now);
        records::rfc3339(started)
    });
    RunRecord {
        repo: repo.name.clone(),
        run: run.number,
        branch: text("branch")
            .or_else(|| header.as_ref().map(|h| h.branch.clone()))
            .unwrap_or_default(),
        commit: text("commit")
            .or_else(|| header.as_ref().map(|h| h.commit.clone()))
            .unwrap_or_default(),
        subject: text("subject").unwrap_or_default(),
        author: text("author").unwrap_or_default(),
        trigger: trigger.unwrap_or(Trigger::Manual),
        started_at,
        finished_at: None,
        duration_ms: 0,
        result: RunResult::Aborted,
        message: None,
        steps: records::journal_steps(run),
        log_lost: None,
        kept_until: None,
        workspace: None,
    }
}

fn unknown_fields(record: &RunRecord) -> String {
    let mut unknown = Vec::new();
    if record.branch.is_empty() {
        unknown.push("branch");
    }
    if record.commit.is_empty() {
        unknown.push("commit");
    }
    unknown.join(" and ")
}

/// The top-level fields that still read in a damaged `run.json` as phantom_ci writes it (pretty, one
/// field per line, indented by two spaces): `"branch": "master",` and the like.
fn salvage(damaged: &str) -> Map<String, Value> {
    let mut fields = Map::new();
    for line in damaged.lines() {
        let Some(field) = line.strip_prefix("  \"") else {
            continue;
        };
        let field = field.trim_end().trim_end_matches(',');
        if let Ok(Value::Object(one)) = serde_json::from_str(&format!("{{\"{field}}}")) {
            fields.extend(one.into_iter().filter(|(_, v)| !v.is_array()));
        }
    }
    fields
}

/// What the first line of a run's log says: `==> app #7 · master · 1a2b3c4 · hook`.
struct Header {
    branch: String,
    commit: String,
    trigger: String,
}

fn log_header(log: &Path) -> Option<Header> {
    let mut start = Vec::new();
    std::fs::File::open(log)
        .ok()?
        .take(4096)
        .read_to_end(&mut start)
        .ok()?;
    let start = String::from_utf8_lossy(&start);
    let line = start.lines().next()?.strip_prefix("==> ")?;
    let parts: Vec<&str> = line.split(" · ").collect();
    let [_, branch @ .., commit, trigger] = parts.as_slice() else {
        return None;
    };
    if branch.is_empty() {
        return None;
    }
    Some(Header {
        branch: branch.join(" · "),
        commit: commit.to_string(),
        trigger: trigger.to_string(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_of_a_cut_record_still_read() {
        let damaged = "{\n  \"repo\": \"app\",\n  \"run\": 3,\n  \"branch\": \"feature/x\",\n  \
                       \"commit\": \"0123456789012345678901234567890123456789\",\n  \"trigger\": \
                       \"hook\",\n  \"started_at\": \"2026-11-01T00:00:00.000Z\",\n  \"steps\": [\n    {\n      \
                       \"index\": 0,\n      \"run\": \"x\"\n    }\n  ],\n  \"resu";
        let fields = salvage(damaged);
        assert_eq!(fields["branch"], "feature/x");
        assert_eq!(fields["run"], 3);
        assert_eq!(fields["trigger"], "hook");
        assert!(!fields.contains_key("index"), "only top-level fields");
        assert!(!fields.contains_key("resu"));
    }

    #[test]
    fn the_log_header_names_branch_commit_and_trigger() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("log");
        std::fs::write(&log, "==> app #7 · a · b · 1a2b3c4 · tick\nrest\n").unwrap();
        let header = log_header(&log).unwrap();
        assert_eq!(
            (
                header.branch.as_str(),
                header.commit.as_str(),
                header.trigger.as_str()
            ),
            ("a · b", "1a2b3c4", "tick")
        );
        std::fs::write(&log, "\0\0\0").unwrap();
        assert!(log_header(&log).is_none());
    }
}
