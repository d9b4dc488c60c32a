//! Repos configured by URL (`file://`, `https://`, ssh) are fetched into a bare mirror under
//! `<data>/mirrors/<repo>.git`, only their target branch (and the tags that point into it).
//!
//! The fetch runs the `git` command rather than libgit2: it honours the operator's `~/.ssh/config`,
//! known_hosts, ssh agent and credential helpers exactly as their own `git fetch` does, and libgit2 is
//! built here without network transports, so phantom_ci itself contains no TLS or SSH client for git.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::dirs::Dirs;
use crate::config::{Location, Repo};

/// The most of git's error output kept for a message.
const STDERR_KEPT: usize = 4096;

pub fn path(dirs: &Dirs, repo: &Repo) -> PathBuf {
    dirs.mirrors().join(format!("{}.git", repo.name))
}

/// Variables a git hook sets that would redirect a `git` command phantom_ci starts.
pub const GIT_HOOK_VARIABLES: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
];

/// Fetches the target branch of a URL repo into its mirror; a local repo needs nothing.
pub fn update(dirs: &Dirs, repo: &Repo) -> Result<(), String> {
    let Location::Url(url) = &repo.location else {
        return Ok(());
    };
    let mirror = path(dirs, repo);
    if !mirror.join("HEAD").exists() {
        std::fs::create_dir_all(&mirror)
            .map_err(|e| format!("cannot create the mirror `{}`: {e}", mirror.display()))?;
        git2::Repository::init_bare(&mirror).map_err(|e| {
            format!(
                "cannot create the mirror `{}`: {}",
                mirror.display(),
                e.message()
            )
        })?;
    }
    let refspec = format!("+refs/heads/{0}:refs/heads/{0}", repo.branch);
    let mut command = Command::new("git");
    command
        .arg("--git-dir")
        .arg(&mirror)
        .args([
            "fetch",
            "--quiet",
            "--no-write-fetch-head",
            "--",
            url,
            &refspec,
        ])
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for variable in GIT_HOOK_VARIABLES {
        command.env_remove(variable);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run `git fetch` for repo `{}`: {e}", repo.name))?;
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.take(STDERR_KEPT as u64).read_to_end(&mut kept);
            let _ = std::io::copy(stderr, &mut std::io::sink());
        }
        kept
    });
    let deadline = Instant::now() + repo.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "`git fetch` of repo `{}` did not finish within its timeout",
                    repo.name
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => break Err(format!("cannot wait for `git fetch`: {e}")),
        }
    };
    let kept = reader.join().unwrap_or_default();
    let status = status?;
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&kept);
    Err(format!(
        "`git fetch` of branch `{}` from `{url}` for repo `{}` failed: {}",
        repo.branch,
        repo.name,
        crate::describe::terminal(text.trim()).replace('?', " ")
    ))
}
