//! `phantom_ci hook`: the post-receive hook. Reads `<old> <new> <ref>` lines, and for each configured
//! repo of this repository and each of its branches (`target_branch`) that moved, queues the branch's
//! current tip and starts a detached worker (or, with `--wait`, runs it in the foreground for the
//! pusher to watch). It never makes the push fail: every problem is one line on stderr and exit 0.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use crate::commands::Context;
use crate::config::{Config, ConfigError, Location, Repo};
use crate::describe::short;
use crate::error::{Error, ExitStatus, GitError};
use crate::git::{self, mirror};
use crate::runner::Console;
use crate::runner::output::ToTerminal;
use crate::state::lock::RepoLock;
use crate::state::records::{self, RunResult, Trigger};
use crate::state::{queue, spool};
use crate::worker::{self, Own};

#[derive(Debug, Args)]
pub struct HookArgs {
    /// Run in the foreground and stream the output to the pusher
    #[arg(long)]
    pub wait: bool,
}

/// How much of stdin the hook reads: 16 MiB of ref lines, some 150,000 refs of a SHA-1 repository.
/// Reading is one pass, linear in what is read; refs past the cap are ignored (and the pusher is told),
/// and the timer's `tick` still checks every configured branch.
pub const MAX_REF_INPUT: u64 = 16 << 20;

/// At most this many branches of one repo are queued by one push (a `*` pattern and a push of
/// thousands of branches would otherwise hold the push for a lock, a read and a durable write each);
/// the rest are queued by the next `tick`, and the pusher is told.
const MAX_BRANCHES_PER_PUSH: usize = 64;

/// At most this many spool notes per push: a note only makes the root `tick` look at every configured
/// repo again, so one would do; a few keep the branch names for whoever reads the spool.
const MAX_SPOOL_NOTES: usize = 16;

pub fn run(args: HookArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    if let Err(message) = hook(&args, ctx) {
        eprintln!("phantom_ci: {message}");
    }
    Ok(ExitStatus::Success)
}

fn hook(args: &HookArgs, ctx: &Context) -> Result<(), String> {
    let Moved {
        branches: moved,
        not_utf8,
        cut,
    } = moved_branches(std::io::stdin().lock());
    if cut {
        eprintln!(
            "phantom_ci: the push updated more refs than the hook reads (its first {} MiB of ref \
             lines); the rest were ignored here, and `phantom_ci tick` checks every configured branch",
            MAX_REF_INPUT >> 20
        );
    }
    if moved.is_empty() && not_utf8.is_empty() {
        return Ok(());
    }
    let git_dir = std::env::var_os("GIT_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    let git_dir = git_dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve the repository `{}`: {e}", git_dir.display()))?;
    let config = match Config::load(&ctx.dirs.repo_toml()) {
        Ok(config) => config,
        // Root's configuration is not for pushers to read: leave a note for the root `tick`.
        Err(ConfigError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            let mut branches: Vec<&String> = moved.iter().collect();
            branches.sort_unstable();
            for branch in branches.iter().take(MAX_SPOOL_NOTES) {
                spool_note(ctx, &git_dir, branch)?;
            }
            if branches.len() > MAX_SPOOL_NOTES {
                println!(
                    "phantom_ci: and {} more branches; the phantom_ci service checks them all",
                    branches.len() - MAX_SPOOL_NOTES
                );
            }
            return Ok(());
        }
        Err(e) => return Err(format!("{e} (the push itself succeeded)")),
    };
    // With `--wait`, this hook runs what it queues itself, for its pusher to watch.
    let waiter = args.wait.then(queue::Waiter::me);
    let mut queued = Vec::new();
    let here = std::fs::metadata(&git_dir)
        .map_err(|e| format!("cannot read the repository `{}`: {e}", git_dir.display()))?;
    for repo in config
        .repos
        .iter()
        .filter(|r| same_repository(r, &git_dir, &here))
    {
        let unusable: Vec<Vec<u8>> = not_utf8
            .iter()
            .filter(|name| repo.branches.matches(&String::from_utf8_lossy(name)))
            .cloned()
            .collect();
        for note in super::tick::not_utf8(repo, &unusable) {
            eprintln!("phantom_ci: note: {note}");
        }
        let mut branches: Vec<&String> = moved
            .iter()
            .filter(|branch| repo.branches.matches(branch))
            .collect();
        if branches.is_empty() {
            continue;
        }
        branches.sort_unstable();
        if branches.len() > MAX_BRANCHES_PER_PUSH {
            say(&format!(
                "phantom_ci: {} branches of `{}` moved; the first {MAX_BRANCHES_PER_PUSH} are queued \
                 here, the others by the next `phantom_ci tick`",
                branches.len(),
                repo.name
            ));
            branches.truncate(MAX_BRANCHES_PER_PUSH);
        }
        if let Some(problem) = repo.problem() {
            eprintln!("phantom_ci: {problem} (the push itself succeeded)");
            continue;
        }
        if !can_run_itself(repo) {
            for branch in branches {
                spool_note(ctx, &git_dir, branch)?;
            }
            continue;
        }
        // One fetch of a URL repo's mirror and one open of the repository for all its branches.
        let names: Vec<&str> = branches.iter().map(|b| b.as_str()).collect();
        let source = mirror::update(&ctx.dirs, repo, &names)
            .map_err(Error::Other)
            .and_then(|()| git::open(&git_dir).map_err(Error::Git));
        let source = match source {
            Ok(source) => source,
            Err(e) => {
                eprintln!("phantom_ci: repo `{}`: {e}", repo.name);
                continue;
            }
        };
        for branch in branches {
            match queue_tip(ctx, repo, branch, &source, waiter.as_ref()) {
                Ok(commit) => {
                    let queued_line = format!(
                        "phantom_ci: queued `{}` ({} {})",
                        repo.name,
                        crate::describe::terminal(branch),
                        crate::describe::short(&commit),
                    );
                    say(&if waiter.is_some() {
                        format!("{queued_line}; its run follows here")
                    } else {
                        format!(
                            "{queued_line}; follow it with `{} logs {} --follow`",
                            ctx.invocation(),
                            repo.name
                        )
                    });
                    queued.push((repo, branch, commit));
                }
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    spool_note(ctx, &git_dir, branch)?;
                }
                // Deleted again since the push (or a URL repo's remote lags behind): nothing to run.
                Err(Error::Git(GitError::NoBranch { .. })) => {
                    eprintln!(
                        "phantom_ci: note: {}",
                        super::tick::not_pushed_yet(repo, branch)
                    );
                }
                Err(e) => eprintln!("phantom_ci: repo `{}`: {e}", repo.name),
            }
        }
    }
    if queued.is_empty() {
        return Ok(());
    }
    match &waiter {
        Some(waiter) => {
            for (repo, branch, commit) in &queued {
                wait_and_run(ctx, repo, branch, commit, waiter, config.parallel_runs());
            }
            Ok(())
        }
        None => worker::start_detached(&ctx.dirs),
    }
}

/// `--wait`: waits for the repo's run in progress, if any (saying which), then runs the commit this
/// hook queued with its output to the pusher — unless a newer push replaced it meanwhile.
fn wait_and_run(
    ctx: &Context,
    repo: &Repo,
    branch: &str,
    commit: &str,
    waiter: &queue::Waiter,
    parallel_runs: usize,
) {
    let name = &repo.name;
    // A repo with several branches says which one (SPEC §9).
    let what = if repo.branches.single().is_some() {
        format!("`{name}`")
    } else {
        format!("`{name}` ({})", crate::describe::terminal(branch))
    };
    let lock = match RepoLock::acquire(&ctx.dirs, name, false) {
        Ok(None) => {
            say(&format!(
                "phantom_ci: waiting for {} to end; then {what} runs {} here",
                busy_with(ctx, name),
                short(commit)
            ));
            RepoLock::acquire(&ctx.dirs, name, true)
        }
        taken => taken,
    };
    let own = match lock {
        Ok(Some(lock)) => {
            // The pipe ends on the pusher's terminal: step output reaches it filtered.
            let mut console = Console::stdout();
            console.out = Box::new(ToTerminal(console.out));
            worker::run_own(
                &ctx.dirs,
                repo,
                waiter,
                &lock,
                Some(console),
                &worker::Pushed { branch, commit },
                parallel_runs,
            )
        }
        Ok(None) => Err(Error::Other(format!("cannot lock repo `{name}`"))),
        Err(e) => Err(e),
    };
    // Whatever is still queued and not run here (an entry of this hook left by an error, a push
    // without `--wait` that came meanwhile) goes to a worker.
    // Done before anything more is printed: a pusher who stopped reading (a suspended `git push`)
    // can block those writes, but never this hand-off.
    let mut later = Vec::new();
    if let Err(e) = queue::forget_waiter(&ctx.dirs, name, branch, waiter) {
        later.push(format!("phantom_ci: {e}"));
    }
    if let Err(e) = worker::hand_on(&ctx.dirs, name) {
        later.push(format!(
            "phantom_ci: {e}; queued work waits for the next push or `tick`"
        ));
    }
    match own {
        Ok(Own::Ran(finished)) => {
            for note in &finished.notes {
                eprintln!("phantom_ci: {note}");
            }
        }
        Ok(Own::Replaced(newer)) => say(&format!(
            "phantom_ci: {} of {what} was replaced by a newer push{} before its run started; \
             only the newest commit runs{}",
            short(commit),
            newer
                .as_ref()
                .map_or_else(String::new, |e| format!(" ({})", short(&e.commit))),
            if newer.as_ref().is_some_and(queue::Entry::waited_for) {
                ", for the pusher who pushed it".to_string()
            } else {
                format!(
                    ": follow it with `{} logs {name} --follow`",
                    ctx.invocation()
                )
            }
        )),
        Ok(Own::RanElsewhere(record)) => say(&format!(
            "phantom_ci: {} of {what} ran as run #{} ({}); see it with `{} logs {name} {}`",
            short(commit),
            record.run,
            record.result.as_str(),
            ctx.invocation(),
            record.run
        )),
        Ok(Own::Left) => say(&format!(
            "phantom_ci: told to stop; the run of {} of {what} is left to the phantom_ci worker",
            short(commit)
        )),
        Err(e) => eprintln!("phantom_ci: repo `{name}`: {e}"),
    }
    for line in later {
        eprintln!("{line}");
    }
}

/// What holds the lock of `repo`: its run in progress, if its record says so.
fn busy_with(ctx: &Context, repo: &str) -> String {
    let newest = records::list(&ctx.dirs, repo).last().copied();
    let running = newest
        .and_then(|n| records::peek(&records::run_dir(&ctx.dirs, repo, n)).ok())
        .flatten()
        .filter(|record| record.result == RunResult::Running);
    match running {
        Some(run) => format!(
            "run #{} of `{repo}` ({} {}, {})",
            run.run,
            crate::describe::terminal(&run.branch),
            short(&run.commit),
            run.trigger.as_str()
        ),
        None => format!("the phantom_ci working on `{repo}`"),
    }
}

/// One line to the pusher; a pusher who went away is no reason to stop.
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

/// What the ref lines on stdin say.
#[derive(Debug)]
struct Moved {
    /// The branches that moved to a new commit (not deletions, not tags or other refs), each once.
    branches: HashSet<String>,
    /// The branches that moved whose names are not UTF-8 (phantom_ci cannot run them), sorted.
    not_utf8: Vec<Vec<u8>>,
    /// Whether the input went on past [`MAX_REF_INPUT`].
    cut: bool,
}

/// Reads the `<old> <new> <ref>` lines in one pass, at most [`MAX_REF_INPUT`] bytes of them.
fn moved_branches(input: impl Read) -> Moved {
    let mut reader = BufReader::new(input.take(MAX_REF_INPUT));
    let mut branches = HashSet::new();
    let mut not_utf8: HashSet<Vec<u8>> = HashSet::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // A line the cap cut short could name another branch (`master` of `master-old`).
        if line.last() != Some(&b'\n') && reader.get_ref().limit() == 0 {
            break;
        }
        let mut fields = line
            .split(u8::is_ascii_whitespace)
            .filter(|field| !field.is_empty());
        let (Some(_old), Some(new), Some(refname)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let deleted = new.iter().all(|b| *b == b'0');
        let Some(branch) = refname.strip_prefix(b"refs/heads/").filter(|_| !deleted) else {
            continue;
        };
        // A name that is not UTF-8 cannot run; it is kept to be told about (the next ones still count).
        match std::str::from_utf8(branch) {
            Ok(branch) if !branches.contains(branch) => {
                branches.insert(branch.to_string());
            }
            Ok(_) => {}
            Err(_) if !not_utf8.contains(branch) => {
                not_utf8.insert(branch.to_vec());
            }
            Err(_) => {}
        }
    }
    let mut not_utf8: Vec<Vec<u8>> = not_utf8.into_iter().collect();
    not_utf8.sort_unstable();
    let capped = reader.into_inner();
    let at_cap = capped.limit() == 0;
    let cut = at_cap && capped.into_inner().read(&mut [0u8]).is_ok_and(|n| n > 0);
    Moved {
        branches,
        not_utf8,
        cut,
    }
}

/// Whether `repo` is configured at the repository the hook runs in (`git_dir`, canonical; `here`,
/// its metadata). A hook reads every repo of Repo.toml: one `stat` per configured path rules out all
/// but the same device and inode, and only those are resolved (a `readlink` per component) and
/// compared as paths — some file systems (FUSE unions, 9p spanning several devices) repeat inode
/// numbers, and a push must never queue a run of another repository.
fn same_repository(repo: &Repo, git_dir: &Path, here: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    let configured = match &repo.location {
        Location::Local(path) => path.as_path(),
        Location::Url(url) => match url.strip_prefix("file://") {
            Some(path) => Path::new(path),
            None => return false,
        },
    };
    // A bare repository is its own GIT_DIR; a repository with a work tree has it in `.git`.
    [configured.to_path_buf(), configured.join(".git")]
        .iter()
        .any(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_dir() && (m.dev(), m.ino()) == (here.dev(), here.ino()))
                && candidate.canonicalize().is_ok_and(|p| p == git_dir)
        })
}

/// The pusher's user may run the work itself when it is root, or when the steps run as that user.
fn can_run_itself(repo: &Repo) -> bool {
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        return true;
    }
    let me = nix::unistd::User::from_uid(euid)
        .ok()
        .flatten()
        .map(|u| u.name);
    repo.run_as.is_none() || repo.run_as == me
}

/// Queues the branch tip as the repository says it is now — stdin is not trusted for the commit. With
/// a `waiter`, the entry is that hook's to run.
fn queue_tip(
    ctx: &Context,
    repo: &Repo,
    branch: &str,
    source: &git2::Repository,
    waiter: Option<&queue::Waiter>,
) -> Result<String, Error> {
    // Reading the tip and queueing it is one step under the queue lock: a slower hook of an older push
    // cannot replace a newer entry with the older tip.
    queue::with_lock(&ctx.dirs, &repo.name, || {
        let commit = git::branch_tip(source, branch)?.to_string();
        let entry = queue::Entry {
            branch: branch.to_string(),
            commit: commit.clone(),
            trigger: Trigger::Hook,
            queued_at: records::rfc3339(std::time::SystemTime::now()),
            waiter: waiter.map(|w| w.as_str().to_string()),
        };
        // Not synced: the pusher does not wait for the disk (see `queue::put_quick`), but a
        // waiting pusher's entry is, as `--wait` runs it from there.
        if waiter.is_some() {
            queue::put(&ctx.dirs, &repo.name, &entry)?;
        } else {
            queue::put_quick(&ctx.dirs, &repo.name, &entry)?;
        }
        Ok(commit)
    })?
}

fn spool_note(ctx: &Context, git_dir: &Path, branch: &str) -> Result<(), String> {
    spool::write(&ctx.spool, git_dir, branch).map_err(|e| {
        format!("{e}; the phantom_ci service was not told about this push (`phantom_ci tick` will see it)")
    })?;
    println!(
        "phantom_ci: `{}` moved; handed to the phantom_ci service, {}",
        crate::describe::terminal(branch),
        super::where_results_go(ctx)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_branch_updates_count() {
        let zeros = "0".repeat(40);
        let zeros64 = "0".repeat(64);
        let input = format!(
            "{zeros} aaaa refs/heads/master\n\
             aaaa {zeros} refs/heads/gone\n\
             aaaa {zeros64} refs/heads/gone256\n\
             aaaa bbbb refs/tags/v1\n\
             aaaa bbbb refs/heads/feature/x\n\
             garbage\n\
             aaaa cccc refs/heads/master\n"
        );
        let moved = moved_branches(input.as_bytes());
        let mut branches: Vec<&str> = moved.branches.iter().map(String::as_str).collect();
        branches.sort_unstable();
        assert_eq!(branches, ["feature/x", "master"]);
        assert!(!moved.cut);
    }

    #[test]
    fn input_past_the_cap_is_not_read_and_a_cut_line_does_not_count() {
        let line = format!("{} {} refs/heads/other\n", "a".repeat(40), "b".repeat(40));
        // The cap falls inside a `master-old` line, right after `refs/heads/master`.
        let cut = format!("{} {} refs/heads/master", "a".repeat(40), "b".repeat(40));
        let rest = MAX_REF_INPUT as usize - cut.len();
        let full = (rest - 15) / line.len();
        let pad = rest - full * line.len();
        let mut input = line.repeat(full);
        input.push_str(&format!("a b refs/tags/{}\n", "p".repeat(pad - 15)));
        assert_eq!(input.len() + cut.len(), MAX_REF_INPUT as usize);
        input.push_str(&cut);
        input.push_str("-old\n");
        input.push_str(&line.replace("other", "late"));
        let moved = moved_branches(input.as_bytes());
        assert!(moved.cut);
        let branches: Vec<&String> = moved.branches.iter().collect();
        assert_eq!(branches, ["other"], "not `master`, not past the cap");
    }

    #[test]
    fn a_line_that_is_not_utf8_does_not_hide_the_next() {
        let mut input = b"aaaa bbbb refs/heads/\xff\n".to_vec();
        input.extend_from_slice(b"aaaa bbbb refs/heads/master\n");
        let moved = moved_branches(input.as_slice());
        assert!(moved.branches.contains("master"));
    }

    #[test]
    fn branches_that_are_not_utf8_are_kept_to_be_told_once_each() {
        let mut input = b"aaaa bbbb refs/heads/b\xffad\n".to_vec();
        input.extend_from_slice(b"aaaa cccc refs/heads/b\xffad\n");
        input.extend_from_slice(b"aaaa 0000 refs/heads/gone\xff\n");
        input.extend_from_slice(b"aaaa bbbb refs/tags/\xfe\n");
        input.extend_from_slice(b"aaaa bbbb refs/heads/\xc3\xa9t\xc3\xa9\n");
        let moved = moved_branches(input.as_slice());
        assert_eq!(moved.not_utf8, [b"b\xffad".to_vec()]);
        assert!(
            moved.branches.contains("\u{e9}t\u{e9}"),
            "UTF-8 beyond ASCII runs"
        );
    }
}
