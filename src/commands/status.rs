//! `phantom_ci status [--json] [--long]`: every configured repo, its last run and the commit queued to
//! run next.

use std::collections::BTreeMap;
use std::time::SystemTime;

use clap::Args;
use serde::Serialize;

use crate::commands::Context;
use crate::config::quantities::ByteSize;
use crate::config::{Config, Repo};
use crate::describe::terminal;
use crate::describe::{human_bytes, human_ms, one_line, short};
use crate::error::{Error, ExitStatus};
use crate::report;
use crate::state::records::{self, RunRecord, RunResult, StepStart, Trigger};
use crate::state::{cache, kept, queue};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON array: `{"repo", "branch", "path", "last_run": <run.json or null>, "queued":
    /// <{"branch", "commit", "trigger", "queued_at"} or null>, "running_steps": [{"id", "index",
    /// "instance", "name", "matrix", "started_at"}], "kept_workspaces": [{"run", "until", "path",
    /// "in_use"}]}` per repo (per branch of a repo that runs several)
    #[arg(long)]
    pub json: bool,
    /// Show each last run's commit subject after its short id (shortened, escapes removed), and
    /// under the table the workspaces kept for `debug` and what the last runs' logs are missing
    #[arg(long, short)]
    pub long: bool,
}

#[derive(Serialize)]
struct StatusJson {
    repo: String,
    branch: String,
    path: String,
    last_run: Option<RunRecord>,
    /// Why the newest run's record cannot be shown (then `last_run` is null), if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_run_error: Option<String>,
    /// The number of that run.
    #[serde(skip)]
    unreadable_run: Option<u64>,
    /// Why the repo does not run (its `path` or `run_as` user does not exist); empty when it runs.
    problems: Vec<String>,
    /// The commit waiting to run (behind the run in progress, or for a worker), if one is.
    queued: Option<Queued>,
    /// With `cache = true`, what its build cache counted against `cache_limit` when the last run
    /// trimmed it (null: no run has measured it yet, or this user may not read the record).
    cache_bytes: Option<u64>,
    /// When that was measured (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_measured_at: Option<String>,
    /// With `cache = true`, its `cache_limit`.
    #[serde(skip)]
    cache_limit: Option<u64>,
    /// The steps of `last_run` running now (SPEC §8), in the order they started; empty when it is
    /// not running.
    running_steps: Vec<RunningStep>,
    /// `last_run` says `running`, but the phantom_ci running it is gone (killed, or the machine
    /// went down): the next `tick` or `run` of the repo records it `aborted`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    owner_gone: bool,
    /// On a runner pool's central host: the claims of this repository, newest first (SPEC §7).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    claims: Vec<ClaimJson>,
    /// The repo's workspaces kept for `phantom_ci debug` (`keep_failed`), oldest run first.
    kept_workspaces: Vec<KeptJson>,
}

/// A workspace kept for `phantom_ci debug`, as `status` shows it.
#[derive(Clone, Serialize)]
struct KeptJson {
    run: u64,
    /// When it goes (RFC 3339).
    until: String,
    path: String,
    /// A live `debug` session uses it: it stays while that lives, even past `until`.
    in_use: bool,
}

/// A step running now, as `status` shows it.
#[derive(Serialize)]
struct RunningStep {
    /// `3` or `3.1`.
    id: String,
    #[serde(flatten)]
    step: StepStart,
}

/// A claim of a runner pool, as `status` shows it.
#[derive(Serialize)]
struct ClaimJson {
    branch: String,
    commit: String,
    host: String,
    claimed_at: String,
    renewed_at: String,
    /// Seconds since it was claimed.
    age_secs: u64,
    /// The run's result once the host said `done`, else null (the run goes on, or its host went
    /// away: then `expired`).
    result: Option<String>,
    expired: bool,
    taken_from: Option<String>,
}

/// How many claims of a repo `status` shows (the newest).
const CLAIMS_SHOWN: usize = 5;

fn claims_of(ctx: &Context, name: &str, now: u64) -> Vec<ClaimJson> {
    crate::state::claims::list(&ctx.dirs, name)
        .into_iter()
        .take(CLAIMS_SHOWN)
        .map(|c| ClaimJson {
            expired: c.result.is_none() && c.expired(now),
            age_secs: now.saturating_sub(c.claimed_at),
            claimed_at: crate::state::claims::time(c.claimed_at),
            renewed_at: crate::state::claims::time(c.renewed_at),
            branch: c.branch,
            commit: c.commit,
            host: c.host,
            result: c.result,
            taken_from: c.taken_from,
        })
        .collect()
}

/// The lines of the repos that have claims here (this is a pool's central host): each configured
/// repo whose path names them gets them; the others get a line of their own, with an empty `branch`
/// and `path`.
fn add_claims(ctx: &Context, config: &Config, lines: &mut Vec<StatusJson>) {
    let now = crate::state::claims::now();
    for name in crate::state::claims::repos(&ctx.dirs) {
        let claims = claims_of(ctx, &name, now);
        if claims.is_empty() {
            continue;
        }
        let named = |r: &StatusJson| {
            config.get(&r.repo).is_some_and(|repo| {
                crate::pool::central_name(&repo.location).as_deref() == Some(name.as_str())
            })
        };
        if let Some(line) = lines.iter_mut().find(|l| named(l)) {
            line.claims = claims;
            continue;
        }
        lines.push(StatusJson {
            repo: name,
            branch: String::new(),
            path: String::new(),
            last_run: None,
            last_run_error: None,
            unreadable_run: None,
            problems: Vec::new(),
            queued: None,
            cache_bytes: None,
            cache_measured_at: None,
            cache_limit: None,
            running_steps: Vec::new(),
            owner_gone: false,
            claims,
            kept_workspaces: Vec::new(),
        });
    }
}

/// The claims under the table: `claims of app (runner pool): …` and a row per claim.
fn print_claims(repos: &[StatusJson]) {
    for r in repos.iter().filter(|r| !r.claims.is_empty()) {
        println!(
            "claims of {} (runner pool, newest first):",
            terminal(&r.repo)
        );
        let rows: Vec<[String; 5]> = r
            .claims
            .iter()
            .map(|c| {
                let mut result = match (&c.result, c.expired) {
                    (Some(result), _) => result.clone(),
                    (None, true) => "expired".into(),
                    (None, false) => "running".into(),
                };
                if let Some(from) = &c.taken_from {
                    result.push_str(&format!(" (taken over from {})", terminal(from)));
                }
                [
                    one_line(&c.branch, BRANCH_WIDTH),
                    terminal(short(&c.commit)),
                    terminal(&c.host),
                    format!("{} ago", human_secs(c.age_secs)),
                    result,
                ]
            })
            .collect();
        print!(
            "{}",
            super::table::render(&["  BRANCH", "COMMIT", "HOST", "CLAIMED", "RESULT"], &{
                let mut rows = rows;
                for row in &mut rows {
                    row[0].insert_str(0, "  ");
                }
                rows
            })
        );
    }
}

/// The most characters of a branch name a table shows (the name is a pusher's to choose, and a
/// 3,000-character one widened every row); `--json` has it whole.
const BRANCH_WIDTH: usize = 60;

/// A commit in the queue, as `status` shows it.
#[derive(Serialize)]
struct Queued {
    branch: String,
    commit: String,
    trigger: Trigger,
    queued_at: String,
}

impl From<queue::Entry> for Queued {
    fn from(entry: queue::Entry) -> Queued {
        Queued {
            branch: entry.branch,
            commit: entry.commit,
            trigger: entry.trigger,
            queued_at: entry.queued_at,
        }
    }
}

/// The lines of `repo`: one, or with several branches (`target_branch` list or pattern) one per branch
/// that ran or waits to run, each with its own last run.
fn lines_of(ctx: &Context, repo: &Repo) -> Vec<StatusJson> {
    // The newest record, never an older one in place of one that cannot be read.
    let newest = records::newest(&ctx.dirs, &repo.name);
    // What waits: the entry a worker has taken but not started yet, and the pending ones, oldest first.
    let claimed = queue::peek_claimed(&ctx.dirs, &repo.name);
    let pending = queue::pending_entries(&ctx.dirs, &repo.name);
    // What the last trim recorded: `status` never walks a cache.
    let cache = repo
        .cache
        .then(|| cache::recorded(&ctx.dirs, &repo.name))
        .flatten();
    // The repo's, shown on each of its lines: listed once.
    let kept: Vec<KeptJson> = kept::list(&ctx.dirs, &repo.name)
        .into_iter()
        .map(|k| KeptJson {
            run: k.run,
            until: records::rfc3339(k.until),
            path: k.tree().display().to_string(),
            in_use: kept::pinned(&k),
        })
        .collect();
    let line = |branch: String, last_run: Option<RunRecord>, queued: Option<Queued>| StatusJson {
        repo: repo.name.clone(),
        branch,
        path: repo.location.to_string(),
        unreadable_run: None,
        last_run_error: None,
        last_run,
        problems: repo.problems.iter().map(ToString::to_string).collect(),
        queued,
        cache_bytes: cache.as_ref().map(|c| c.bytes),
        cache_measured_at: cache.as_ref().map(|c| c.measured_at.clone()),
        cache_limit: repo.cache.then_some(repo.cache_limit),
        running_steps: Vec::new(),
        owner_gone: false,
        claims: Vec::new(),
        kept_workspaces: kept.clone(),
    };
    let one_line = |newest: Result<Option<RunRecord>, records::Unreadable>,
                    queued: Option<Queued>| StatusJson {
        unreadable_run: newest.as_ref().err().map(|e| e.run),
        last_run_error: newest.as_ref().err().map(ToString::to_string),
        ..line(repo.branches.to_string(), newest.ok().flatten(), queued)
    };
    // Records this user may not read show as unreadable, not as "never ran" (read as none: the
    // directory is looked at again only then).
    if matches!(newest, Ok(None))
        && let Some(message) = super::records_unreadable(ctx, &repo.name)
    {
        return vec![StatusJson {
            last_run_error: Some(message),
            ..line(repo.branches.to_string(), None, None)
        }];
    }
    if repo.branches.single().is_some() || newest.is_err() {
        // The next to run: the claimed entry, else the oldest pending one.
        let next = claimed
            .or_else(|| pending.into_iter().next())
            .map(Queued::from);
        return vec![one_line(newest, next)];
    }
    // By branch: each branch's pending entry, else the one a worker has taken.
    let mut queued: BTreeMap<String, Queued> = claimed
        .into_iter()
        .chain(pending)
        .map(|entry| (entry.branch.clone(), entry.into()))
        .collect();
    let mut last: BTreeMap<String, RunRecord> = BTreeMap::new();
    for number in records::list(&ctx.dirs, &repo.name).into_iter().rev() {
        if let Ok(record) = records::load(&ctx.dirs, &repo.name, number)
            && repo.branches.matches(&record.branch)
        {
            last.entry(record.branch.clone()).or_insert(record);
        }
    }
    let mut branches: Vec<String> = last.keys().chain(queued.keys()).cloned().collect();
    branches.sort();
    branches.dedup();
    if branches.is_empty() {
        return vec![one_line(Ok(None), None)];
    }
    branches
        .into_iter()
        .map(|branch| {
            let run = last.remove(&branch);
            let waiting = queued.remove(&branch);
            line(branch, run, waiting)
        })
        .collect()
}

pub fn run(args: StatusArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let file = ctx.dirs.repo_toml();
    let config = Config::load(&file)?;
    let mut repos: Vec<StatusJson> = config
        .repos
        .iter()
        .flat_map(|repo| lines_of(ctx, repo))
        .collect();
    for line in &mut repos {
        line.owner_gone = line.last_run.as_ref().is_some_and(|run| {
            run.result == RunResult::Running
                && records::run_dir(&ctx.dirs, &run.repo, run.run).owner_alive() == Some(false)
        });
        if !line.owner_gone {
            line.running_steps = running_steps(ctx, line.last_run.as_ref());
        }
    }
    add_claims(ctx, &config, &mut repos);
    // Damaged state is said on stderr and in the exit status (1), whatever the format.
    let mut status = ExitStatus::Success;
    for error in repos.iter().filter_map(|r| r.last_run_error.as_ref()) {
        eprintln!("phantom_ci: {error}");
        status = ExitStatus::RunFailed;
    }
    if args.json {
        let json = serde_json::to_string_pretty(&repos)
            .map_err(|e| Error::Other(format!("cannot serialise the status: {e}")))?;
        println!("{json}");
        return Ok(status);
    }
    // A pool's central host may run nothing itself: then only its claims are shown.
    if repos.iter().all(|r| r.path.is_empty()) && !repos.is_empty() {
        print_claims(&repos);
        return Ok(status);
    }
    if repos.is_empty() {
        eprintln!(
            "{}",
            ctx.no_repos(
                ctx.suggest(&["add"]).placeholder("<PATH|URL> [BRANCH]"),
                &["status"]
            )
        );
        return Ok(ExitStatus::Success);
    }
    let now = SystemTime::now();
    let claims_only: Vec<StatusJson>;
    (repos, claims_only) = repos.into_iter().partition(|r| !r.path.is_empty());
    let rows: Vec<[String; 8]> = repos.iter().map(|r| row(r, now, args.long)).collect();
    const HEADERS: [&str; 8] = [
        "REPO", "BRANCH", "RUN", "RESULT", "COMMIT", "STARTED", "DURATION", "QUEUED",
    ];
    // Results in colour on a terminal (column 3); never in a pipe or with NO_COLOR.
    let colour = crate::describe::stdout_in_colour();
    let style = |r: usize, c: usize| {
        (colour && c == 3).then(|| {
            let result = &rows[r][3];
            crate::describe::result_style(result.strip_suffix(LOG_INCOMPLETE).unwrap_or(result))
        })
    };
    // The QUEUED column only when a commit waits to run somewhere.
    let table = if repos.iter().any(|r| r.queued.is_some()) {
        super::table::render_styled(&HEADERS, &rows, style)
    } else {
        let short: Vec<[String; 7]> = rows.iter().cloned().map(without_queued).collect();
        super::table::render_styled(&without_queued(HEADERS), &short, style)
    };
    print!("{table}");
    let now_running: Vec<String> = repos.iter().flat_map(|r| running_lines(r, now)).collect();
    for line in now_running {
        println!("{line}");
    }
    for r in repos.iter().filter(|r| r.owner_gone) {
        if let Some(run) = &r.last_run {
            println!(
                "{} #{}: the phantom_ci running it is gone (killed, or the machine went down); the \
                 next `tick` or `run` of the repo records it `aborted`",
                r.repo, run.run
            );
        }
    }
    // Queued commits whose worker waits for a free slot (`max_parallel_runs`).
    let waiting = crate::state::slots::waiting(&ctx.dirs);
    if waiting > 0 {
        println!(
            "{waiting} queued run(s) waiting for a free slot: at most {} run at once \
             (`max_parallel_runs`)",
            config.parallel_runs()
        );
    }
    // Build caches, under the table: `cache of app: 1.2GiB of 10GiB`.
    // A repo with several branches has several lines: said once.
    let mut once: Vec<&StatusJson> = repos.iter().collect();
    once.dedup_by(|a, b| a.repo == b.repo);
    for r in &once {
        if let Some(limit) = r.cache_limit {
            match r.cache_bytes {
                Some(used) => println!(
                    "cache of {}: {} of {} (after the last run)",
                    r.repo,
                    human_bytes(used),
                    ByteSize(limit)
                ),
                None => println!(
                    "cache of {}: ? of {} (not measured yet: each run measures it)",
                    r.repo,
                    ByteSize(limit)
                ),
            }
        }
    }
    // Kept workspaces of failed runs, and the command that opens each (`--long`).
    if args.long {
        for r in &once {
            for k in &r.kept_workspaces {
                let until = humantime::parse_rfc3339_weak(&k.until).unwrap_or(now);
                let left = match until.duration_since(now) {
                    Ok(left) if !left.is_zero() => format!("in {}", human_secs(left.as_secs())),
                    _ => "expired: the next `tick` removes it".to_string(),
                };
                println!(
                    "kept workspace of {} #{}: `{}`, until {} ({left}){}",
                    r.repo,
                    k.run,
                    ctx.suggest(&["debug", &r.repo, &k.run.to_string()]),
                    humantime::format_rfc3339_seconds(until),
                    if k.in_use {
                        "; in use by a `debug` session"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    // What a last run's log is missing, under the table (`--long`; the RESULT cell says it always).
    if args.long {
        // How each last run's workspace got its files: a layer over the base tree, or why not.
        for r in &repos {
            if let Some(run) = &r.last_run
                && let Some(workspace) = &run.workspace
            {
                println!(
                    "workspace of {} #{}: {}",
                    r.repo,
                    run.run,
                    terminal(workspace)
                );
            }
        }
        for r in &repos {
            if let Some(run) = &r.last_run
                && let Some(lost) = &run.log_lost
            {
                println!(
                    "log of {} #{}: {}",
                    r.repo,
                    run.run,
                    terminal(&lost.describe())
                );
            }
        }
        // With `report_url`: where each last run's page and each badge is served.
        if let Some(base) = &config.report_url {
            for r in &once {
                println!(
                    "badge of {}: {base}/{}",
                    r.repo,
                    report::repo_badge(&r.repo)
                );
            }
            for r in &repos {
                if let Some(run) = &r.last_run {
                    println!(
                        "badge of {} {}: {base}/{}",
                        r.repo,
                        one_line(&run.branch, BRANCH_WIDTH),
                        report::branch_badge(&r.repo, &run.branch)
                    );
                    println!(
                        "page of {} #{}: {base}/{}/{}.html",
                        r.repo, run.run, r.repo, run.run
                    );
                }
            }
        }
    }
    print_claims(&repos);
    print_claims(&claims_only);
    for problem in once.iter().flat_map(|r| &r.problems) {
        eprintln!("phantom_ci: {problem}");
    }
    Ok(status)
}

fn row(status: &StatusJson, now: SystemTime, long: bool) -> [String; 8] {
    let [repo, branch, run, mut result, commit, started, duration] =
        last_run_row(status, now, long);
    if !status.problems.is_empty() {
        result = "config error".into();
    }
    // The commit waiting to run; its branch only when it is not the repo's.
    let queued = status.queued.as_ref().map_or_else(
        || "-".to_string(),
        |q| {
            let commit = terminal(short(&q.commit));
            if q.branch == status.branch {
                format!("queued {commit}")
            } else {
                format!("queued {} {commit}", one_line(&q.branch, BRANCH_WIDTH))
            }
        },
    );
    [repo, branch, run, result, commit, started, duration, queued]
}

/// A row without its last cell (QUEUED).
fn without_queued<T>([a, b, c, d, e, f, g, _]: [T; 8]) -> [T; 7] {
    [a, b, c, d, e, f, g]
}

fn last_run_row(status: &StatusJson, now: SystemTime, long: bool) -> [String; 7] {
    if let Some(number) = status.unreadable_run {
        return [
            status.repo.clone(),
            one_line(&status.branch, BRANCH_WIDTH),
            format!("#{number}"),
            "unreadable".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ];
    }
    let Some(run) = &status.last_run else {
        return [
            status.repo.clone(),
            one_line(&status.branch, BRANCH_WIDTH),
            "-".into(),
            if status.last_run_error.is_some() {
                "unreadable".into()
            } else {
                "never ran".into()
            },
            "-".into(),
            "-".into(),
            "-".into(),
        ];
    };
    let started = humantime::parse_rfc3339_weak(&run.started_at).ok();
    let when = started.map_or_else(|| terminal(&run.started_at), |t| ago(now, t));
    let duration = if run.result == RunResult::Running {
        started
            .and_then(|t| now.duration_since(t).ok())
            .map_or_else(
                || "-".into(),
                |d| format!("{} so far", human_secs(d.as_secs())),
            )
    } else {
        human_ms(run.duration_ms)
    };
    let mut result = run.result.as_str().to_string();
    if run.log_lost.is_some() {
        result.push_str(LOG_INCOMPLETE);
    }
    [
        status.repo.clone(),
        one_line(&status.branch, BRANCH_WIDTH),
        format!("#{}", run.run),
        result,
        commit_cell(run, long),
        when,
        duration,
    ]
}

/// After a result whose run's log could not be written whole (`status --long` says more).
const LOG_INCOMPLETE: &str = " (log incomplete)";

/// How many characters of a commit's subject the COMMIT column shows.
const SUBJECT_CHARS: usize = 40;

/// `1a2b3c4`, or with `--long` `1a2b3c4 Fix the build…`: the short commit, then its subject made
/// terminal-safe and shortened.
fn commit_cell(run: &RunRecord, long: bool) -> String {
    let commit = terminal(short(&run.commit));
    if !long || run.subject.is_empty() {
        return commit;
    }
    format!(
        "{commit} {}",
        crate::describe::one_line(&run.subject, SUBJECT_CHARS)
    )
}

/// `"3m ago"`: the largest whole unit only.
fn ago(now: SystemTime, then: SystemTime) -> String {
    match now.duration_since(then) {
        Ok(elapsed) => format!("{} ago", human_secs(elapsed.as_secs())),
        Err(_) => "just now".into(),
    }
}

fn human_secs(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// The steps `run` runs now, if it is running.
fn running_steps(ctx: &Context, run: Option<&RunRecord>) -> Vec<RunningStep> {
    let Some(run) = run.filter(|r| r.result == RunResult::Running) else {
        return Vec::new();
    };
    records::running_steps(&records::run_dir(&ctx.dirs, &run.repo, run.run))
        .into_iter()
        .map(|step| RunningStep {
            id: step.id(),
            step,
        })
        .collect()
}

/// How many characters of a step's name (with its matrix values) a line shows.
const STEP_NAME_CHARS: usize = 60;

/// `app #12 step [3.1] cross (TARGET=arm64): running for 12s`, one line per step running now.
fn running_lines(status: &StatusJson, now: SystemTime) -> Vec<String> {
    let Some(run) = &status.last_run else {
        return Vec::new();
    };
    status
        .running_steps
        .iter()
        .map(|running| {
            let name = running.step.title().map_or(String::new(), |title| {
                format!(" {}", crate::describe::one_line(&title, STEP_NAME_CHARS))
            });
            let since = humantime::parse_rfc3339_weak(&running.step.started_at)
                .ok()
                .map_or_else(|| "-".into(), |t| ago_secs(now, t));
            format!(
                "{} #{} step [{}]{name}: running for {since}",
                status.repo, run.run, running.id
            )
        })
        .collect()
}

/// `"12s"`: how long ago `then` was, the largest whole unit only.
fn ago_secs(now: SystemTime, then: SystemTime) -> String {
    human_secs(now.duration_since(then).map_or(0, |d| d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_use_the_largest_unit() {
        assert_eq!(human_secs(59), "59s");
        assert_eq!(human_secs(61), "1m");
        assert_eq!(human_secs(7300), "2h");
        assert_eq!(human_secs(200_000), "2d");
    }
}
