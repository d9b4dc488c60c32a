//! One run of one commit: record it, read the workflow, prepare the workspace, run the steps, clean up.
//!
//! Everything that can go wrong once the run has a number becomes part of its record (result `error`,
//! `failure`, `timeout`, …); only a failure to create the record itself is an [`Error`].

pub mod env;
mod line;
mod parallel;
pub mod plan;
mod record;
mod source;
pub mod step;

pub mod lanes;
pub mod output;
pub use source::{commit_words, load_workflow, open_source};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use git2::{Oid, Repository};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::config::dirs::Dirs;
use crate::config::quantities::ByteSize;
use crate::config::workflow::{Step, Workflow};
use crate::config::{Config, KeepWorkspace, Repo, Sandbox};
use crate::describe;
use crate::describe::{human_bytes, human_ms, millis, short};
use crate::error::Error;
use crate::git::workspace::{Filled, Layering, Workspace};
use crate::isolation::boundary::Boundary;
use crate::isolation::cgroup::RunCgroup;
use crate::isolation::privilege::{self, StepUser};
use crate::isolation::sandbox::{self, Sandbox as BwrapSandbox};
use crate::isolation::signature::{self, Refusal};
use crate::isolation::{reaper, signals};
use crate::runner::output::Output;
use crate::state::cache;
use crate::state::kept;
use crate::state::lock::RepoLock;
use crate::state::records::{self, RunDir, RunRecord, RunResult, StepJournal, StepRecord, Trigger};

/// How many characters of a commit's subject (and author) the log's header shows.
const SUBJECT_SHOWN: usize = 120;

/// What to run: a repo, a branch and the exact commit, fixed before the run starts.
#[derive(Debug, Clone)]
pub struct Request {
    pub repo: Repo,
    pub branch: String,
    pub commit: Oid,
    pub trigger: Trigger,
    /// Keep the workspace whatever `keep_workspace` says (`run --keep`).
    pub keep_workspace: bool,
}

impl Request {
    /// Whether the workspace is kept after the run, whatever its result (`run --keep`,
    /// `keep_workspace = "always"`; `"on_failure"` is read as `keep_failed` at its default).
    fn keeps_workspace(&self) -> bool {
        self.keep_workspace || self.repo.keep_workspace == KeepWorkspace::Always
    }
}

/// Where a person watches a run (phantom_ci's stdout), and whether phantom_ci's own summary lines may
/// be in colour there. The steps' output is passed through as it is either way; the log and the
/// record never have colour.
pub struct Console {
    pub out: Box<dyn output::ConsoleWrite>,
    pub colour: bool,
}

impl Console {
    /// phantom_ci's stdout, in colour when it is a terminal that takes it ([`describe::stdout_in_colour`]).
    ///
    /// The console writes through a descriptor of its own (a duplicate of stdout), not through std's
    /// `Stdout`: a console that stopped reading then blocks only the console's writer, never a
    /// `println!` of phantom_ci's that waits for std's lock on stdout.
    pub fn stdout() -> Console {
        use std::os::fd::AsFd;
        let out: Box<dyn output::ConsoleWrite> =
            match std::io::stdout().as_fd().try_clone_to_owned() {
                Ok(fd) => Box::new(std::fs::File::from(fd)),
                Err(_) => Box::new(std::io::stdout()),
            };
        Console {
            out,
            colour: describe::stdout_in_colour(),
        }
    }
}

/// A run that ended, and where to find what it left.
#[derive(Debug)]
pub struct Finished {
    pub record: RunRecord,
    /// The repo's run before this one, if any (for `notify = "change"`).
    pub previous: Option<RunRecord>,
    pub log: PathBuf,
    pub kept_workspace: Option<PathBuf>,
    /// Problems after the run that do not change its result (a webhook that failed, …), for stderr.
    pub notes: Vec<String>,
}

/// How a run ended, before it is written down.
struct Conclusion {
    result: RunResult,
    message: Option<String>,
}

impl Conclusion {
    fn error(message: impl Into<String>) -> Conclusion {
        Conclusion {
            result: RunResult::Error,
            message: Some(message.into()),
        }
    }
}

/// What a run tells its caller while it goes on, with the run's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The run's record says `running`.
    Started(u64),
    /// A step ended and its record is in the run's journal.
    StepEnded(u64),
    /// A run of this repo whose phantom_ci had died was recorded `aborted`, before this run began.
    Recovered(u64),
    /// The run's result is decided; its final record is written right after this returns.
    Ending(u64),
}

/// Runs `request` to its end. `console` receives the live output (phantom_ci's stdout), if anyone watches.
///
/// The caller holds the repo's lock (`lock`): runs of one repo never overlap. A run of this repo that
/// died without finishing its record is recorded as `aborted` first. `progress` is told when the run's
/// record says `running`, and after each step.
pub fn execute(
    dirs: &Dirs,
    request: &Request,
    console: Option<Console>,
    lock: &RepoLock,
    progress: &mut dyn FnMut(Progress),
) -> Result<Finished, Error> {
    let repo = &request.repo;
    // Before the record names this process as the run's owner: from then on `phantom_ci cancel` may
    // send SIGUSR1, which must not kill it.
    signals::install().map_err(Error::Other)?;
    let recovered = crate::state::recovery::recover(dirs, repo, lock)?;
    if let Some(run) = recovered {
        progress(Progress::Recovered(run));
    }
    let previous = records::last(dirs, &repo.name, None);
    // Opened once: for the commit's words now, and for the run.
    let source = open_source(dirs, repo);
    let (subject, author) = source
        .as_ref()
        .map(|source| commit_words(source, request.commit))
        .unwrap_or_default();
    let run_dir = records::reserve(dirs, &repo.name)?;
    let started_at = SystemTime::now();
    let start = Instant::now();
    let mut record = RunRecord {
        repo: repo.name.clone(),
        run: run_dir.number,
        branch: request.branch.clone(),
        commit: request.commit.to_string(),
        subject,
        author,
        trigger: request.trigger,
        started_at: records::rfc3339(started_at),
        finished_at: None,
        duration_ms: 0,
        result: RunResult::Running,
        message: None,
        steps: Vec::new(),
        log_lost: None,
        kept_until: None,
        workspace: None,
    };
    let log = File::create(run_dir.log());
    let opened = log
        .map_err(|e| Error::io("cannot create", run_dir.log(), e))
        .and_then(|log| run_dir.open_journal().map(|journal| (log, journal)));
    let (log, journal) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&run_dir.path);
            return Err(Error::Other(format!("the run does not start: {e}")));
        }
    };
    // The run's start is made durable (its number, its owner, run.json `running`: three files, six
    // fsyncs) on a thread of its own while the run opens the repository and checks the workspace
    // out; no step starts before it is done ([`Run::started`]), so a run whose steps ran keeps its
    // number, and recovery after a power loss finds it.
    let durable_start = {
        let (run_dir, record) = (run_dir.clone(), record.clone());
        std::thread::Builder::new()
            .name("run start".into())
            .spawn(move || {
                run_dir.record_number()?;
                run_dir.write_owner()?;
                run_dir.write(&record)
            })
    };
    let durable_start = match durable_start {
        Ok(thread) => thread,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&run_dir.path);
            return Err(Error::Other(format!("the run does not start: {e}")));
        }
    };
    let colour = console.as_ref().is_some_and(|c| c.colour);
    let mut out = Output::new(console.map(|c| c.out), log, repo.log_limit);
    out.line(&format!(
        "==> {} #{} · {} · {} · {}",
        repo.name,
        run_dir.number,
        describe::terminal(&request.branch),
        short(&record.commit),
        request.trigger.as_str(),
    ));
    // The commit in words, on a line of its own (the line above is what recovery reads back).
    if !record.subject.is_empty() {
        out.line(&format!(
            "==> {} ({})",
            describe::one_line(&record.subject, SUBJECT_SHOWN),
            describe::one_line(&record.author, SUBJECT_SHOWN)
        ));
    }

    let mut run = Run {
        dirs,
        request,
        run_dir: &run_dir,
        record: &mut record,
        journal: Some(journal),
        out: &mut out,
        previous_commit: previous.as_ref().map(|p| p.commit.clone()),
        deadline: start + repo.timeout,
        kept_workspace: None,
        kept_until: None,
        progress: &mut *progress,
        start: Some(durable_start),
        source: Some(source),
    };
    let mut conclusion = run.conduct();
    // A run that ended before its first step: its start is durable (and told) before its end.
    if let Err(message) = run.started() {
        conclusion = Conclusion::error(message);
    }
    let kept_workspace = run.kept_workspace.take();
    let kept_until = run.kept_until.take();
    out.note_not_shown();

    record.result = conclusion.result;
    record.message = conclusion.message;
    record.finished_at = Some(records::rfc3339(SystemTime::now()));
    record.duration_ms = millis(start.elapsed());
    // The result in colour on a terminal that takes it, never in the log.
    let result = record.result.as_str();
    let painted = if colour {
        describe::paint(result, describe::result_style(result))
    } else {
        result.to_string()
    };
    if let Some(message) = &record.message {
        let message = describe::terminal(message);
        out.line_styled(
            &format!("==> {result}: {message}"),
            &format!("==> {painted}: {message}"),
        );
    }
    match (&kept_workspace, kept_until) {
        (Some(_), Some(until)) => {
            // As builds.sr.ht prints its ssh line: the one command that opens the failure.
            out.line(&format!(
                "==> debug it where it failed: phantom_ci debug {} {} (workspace kept until {}, \
                 `keep_failed`)",
                repo.name,
                record.run,
                humantime::format_rfc3339_seconds(until)
            ));
            record.kept_until = Some(records::rfc3339(until));
        }
        (Some(path), None) => out.line(&format!("==> workspace kept at {}", path.display())),
        (None, _) => {}
    }
    let summary = |result: &str| {
        format!(
            "==> {} #{} {result} in {}",
            repo.name,
            record.run,
            human_ms(record.duration_ms)
        )
    };
    out.line_styled(&summary(result), &summary(&painted));
    record.log_lost = out.log_lost();
    progress(Progress::Ending(record.run));
    run_dir.write(&record)?;
    // Now that this run's record says why its workspace is kept: the repo keeps its newest ones.
    for note in kept::sweep(dirs, &repo.name, SystemTime::now(), true) {
        out.line(&format!("==> note: {note}"));
    }
    // The record is final: the repo's runs are settled again (`tick` passes over it while it does
    // not move). Best effort: without the note, `tick` looks at the records.
    let _ = records::mark_settled(dirs, &repo.name);
    // Now the console may have its last lines, if it takes them.
    out.close();
    records::prune(dirs, &repo.name, repo.keep_runs)?;
    Ok(Finished {
        record,
        previous,
        log: run_dir.log(),
        kept_workspace,
        notes: recovered
            .map(|run| crate::state::recovery::recovered_note(&repo.name, run))
            .into_iter()
            .collect(),
    })
}

/// What the steps of a run run with.
struct Steps<'a> {
    workflow: &'a Workflow,
    workspace: &'a Workspace,
    user: &'a StepUser,
    sandbox: Option<&'a BwrapSandbox>,
    /// The repo's build cache, with `cache = true`.
    cache: Option<&'a Path>,
}

/// What every step of a run starts with; each step adds its own environment and cgroup.
struct EachStep<'a> {
    workflow: &'a Workflow,
    cwd: &'a Path,
    vars: &'a env::RunVars<'a>,
    user: &'a StepUser,
    limits: &'a [(nix::sys::resource::Resource, u64)],
    sandbox: Option<&'a BwrapSandbox>,
    /// The run's cgroup, if it has one.
    cgroup: Option<&'a RunCgroup>,
    /// The run's mount namespace, where its workspace is a layer.
    mount_ns: Option<std::os::fd::BorrowedFd<'a>>,
    /// The run's cancel request ([`RunDir::cancel_request`]).
    cancel: &'a Path,
    logs: lanes::StepLogs,
    /// `max_parallel_steps`, from Repo.toml as it is when the steps start (an ad-hoc run's too).
    machine_steps: usize,
}

impl EachStep<'_> {
    fn env(&self, repo: &Repo, step: &Step) -> Vec<(String, String)> {
        env::for_step(repo, self.user, self.vars, &self.workflow.env, step)
    }

    /// The step's own cgroup, below the run's, where the run has one and the child can be made.
    fn step_cgroup(&self, step: &Step) -> Option<RunCgroup> {
        self.cgroup?.child(&format!("step-{}", step.id()))
    }

    /// The boundary the step crosses, with its own cgroup (else the run's).
    fn boundary<'b>(&'b self, own: Option<&'b RunCgroup>) -> Boundary<'b> {
        Boundary {
            user: self.user,
            limits: self.limits,
            sandbox: self.sandbox,
            cgroup: own.or(self.cgroup),
            read_only: None,
            mount_ns: self.mount_ns,
        }
    }
}

/// What the steps leave for the end of the run: process groups to kill, and output still in pipes.
/// (The steps' cgroups go with the run's.)
#[derive(Default)]
struct Leftovers {
    process_groups: Vec<Pid>,
    pipe: Option<step::RunPipe>,
    lanes: Option<parallel::Lanes>,
}

impl Leftovers {
    /// Passes on what is still in the steps' pipes (a bounded amount).
    fn drain(&mut self, out: &mut Output) {
        if let Some(pipe) = &mut self.pipe {
            pipe.drain(out);
        }
        if let Some(lanes) = &mut self.lanes {
            lanes.drain(out);
        }
    }
}

struct Run<'a> {
    dirs: &'a Dirs,
    request: &'a Request,
    run_dir: &'a RunDir,
    record: &'a mut RunRecord,
    /// Where each step's record goes as it ends (run.json itself is written at the start and the end).
    journal: Option<StepJournal>,
    out: &'a mut Output,
    previous_commit: Option<String>,
    deadline: Instant,
    kept_workspace: Option<PathBuf>,
    /// With `keep_failed`: until when the workspace is kept.
    kept_until: Option<SystemTime>,
    progress: &'a mut dyn FnMut(Progress),
    /// The thread making the run's start durable, until [`Run::started`] waited for it.
    start: Option<std::thread::JoinHandle<Result<(), Error>>>,
    /// The repository, opened when the run began, until [`Run::conduct`] takes it.
    source: Option<Result<Repository, String>>,
}

impl<'a> Run<'a> {
    /// Waits until the run's start is durable (its owner and its `running` record), then tells
    /// `progress` (the commit is seen, the report shows the run): before the first step, and at the
    /// latest before the final record. Once; the error is the run's.
    fn started(&mut self) -> Result<(), String> {
        let Some(start) = self.start.take() else {
            return Ok(());
        };
        match start.join() {
            Ok(Ok(())) => {
                (self.progress)(Progress::Started(self.run_dir.number));
                Ok(())
            }
            Ok(Err(e)) => Err(format!("the run's start could not be recorded: {e}")),
            Err(_) => Err("the run's start could not be recorded (its thread panicked)".into()),
        }
    }

    fn conduct(&mut self) -> Conclusion {
        let repo = &self.request.repo;
        // From here on SIGTERM/SIGINT end the run cleanly, and no process of the run escapes it.
        if let Err(message) = signals::install().and_then(|()| reaper::become_subreaper()) {
            return Conclusion::error(message);
        }
        let user = match privilege::step_user(&repo.name, repo.run_as.as_deref()) {
            Ok(user) => user,
            // A path not in Repo.toml has no section to set `run_as` in (SPEC §4.3: the run is an
            // `error` that says how to allow it).
            Err(_)
                if repo.run_as.is_none()
                    && nix::unistd::geteuid().is_root()
                    && crate::state::ad_hoc::is_ad_hoc(&repo.name) =>
            {
                return Conclusion::error(format!(
                    "phantom_ci runs as root and `{}` is not in Repo.toml: steps never run as root \
                     unless you say so; run it with `--run-as <user>` (a user without \
                     privileges), or `--run-as root` to allow root",
                    repo.location
                ));
            }
            Err(message) => return Conclusion::error(message),
        };
        let opened = self
            .source
            .take()
            .unwrap_or_else(|| open_source(self.dirs, repo));
        let source = match opened {
            Ok(source) => source,
            Err(message) => return Conclusion::error(message),
        };
        if let Some(conclusion) = self.check_signature(&source) {
            return conclusion;
        }
        let workflow = match load_workflow(repo, &source, self.request.commit, &self.request.branch)
        {
            Ok(workflow) => workflow,
            Err(message) => return Conclusion::error(message),
        };
        let mut workspace =
            match Workspace::create(self.dirs, &repo.name, self.run_dir.number, &user) {
                Ok(workspace) => workspace,
                Err(message) => return Conclusion::error(message),
            };
        let objects = source.commondir().join("objects");
        if user.switch && !privilege::can_read_dir(&user, &objects) {
            self.out.line(&format!(
                "==> note: `{}` cannot read `{}`: the workspace borrows those objects, so `git` \
                 commands in steps will fail (give the user read access, e.g. through a group)",
                user.name,
                objects.display()
            ));
        }
        let cache = match repo
            .cache
            .then(|| cache::prepare(self.dirs, &repo.name, &user))
            .transpose()
        {
            Ok(cache) => cache,
            Err(message) => {
                self.finish_workspace(&mut workspace, &Conclusion::error(message.clone()), false);
                return Conclusion::error(message);
            }
        };
        let layering = self.layering(&user);
        let checkout = workspace.fill(
            &source,
            self.request.commit,
            repo,
            self.deadline,
            layering,
            &user,
        );
        let checked_out = checkout.is_ok();
        if let Ok(filled) = &checkout {
            // Said where a layer was made, or could have been and was not; every record says it.
            if matches!(filled, Filled::Layer(_) | Filled::Full { tried: true, .. }) {
                self.out.line(&format!("==> workspace: {filled}"));
            }
            self.record.workspace = Some(filled.to_string());
        }
        let conclusion = match checkout
            .map(drop)
            .and_then(|()| workspace.hand_over(&user))
            .and_then(|()| self.sandbox(&workspace, &source, &user, cache.as_deref()))
        {
            Ok(sandbox) => match self.started() {
                Err(message) => Conclusion::error(message),
                Ok(()) => {
                    let steps = Steps {
                        workflow: &workflow,
                        workspace: &workspace,
                        user: &user,
                        sandbox: sandbox.as_ref(),
                        cache: cache.as_deref(),
                    };
                    self.run_steps(&steps)
                }
            },
            Err(message) => Conclusion::error(message),
        };
        // Every process of the run is gone: the cache goes back within its limit.
        if let Some(dir) = &cache {
            self.trim_cache(dir);
        }
        self.finish_workspace(&mut workspace, &conclusion, checked_out);
        conclusion
    }

    /// With `require_signed`, the conclusion of a commit that must not run.
    fn check_signature(&mut self, source: &Repository) -> Option<Conclusion> {
        let repo = &self.request.repo;
        if !repo.require_signed {
            return None;
        }
        let Some(allowed) = &repo.allowed_signers else {
            return Some(Conclusion::error(format!(
                "repo `{}` has `require_signed = true` but no `allowed_signers`",
                repo.name
            )));
        };
        match signature::verify(source, self.request.commit, allowed) {
            Ok(signer) => {
                self.out.line(&format!("==> {signer}"));
                None
            }
            Err(Refusal::Rejected(message)) => Some(Conclusion {
                result: RunResult::Rejected,
                message: Some(message),
            }),
            Err(Refusal::Error(message)) => Some(Conclusion::error(message)),
        }
    }

    /// Whether this run's workspace may be a layer over the branch's base tree (issue 23): the base's
    /// key, or why not. Only where the steps run as another user than phantom_ci (root with
    /// `run_as`): a step with phantom_ci's own uid could reach the base tree itself.
    fn layering(&self, user: &StepUser) -> Layering<'a> {
        let request = self.request;
        let repo = &request.repo;
        if !repo.base_tree {
            Err("`base_tree = false`".into())
        } else if !nix::unistd::geteuid().is_root() {
            Err("phantom_ci is not root".into())
        } else if !user.switch {
            Err(format!(
                "the steps run as phantom_ci's own user, `{}`",
                user.name
            ))
        } else if request.keeps_workspace() {
            Err("the workspace is kept after the run (`--keep`, `keep_workspace`)".into())
        } else {
            let key = crate::state::queue::branch_key(&request.branch);
            Ok((self.dirs, format!("{}~{key}", repo.name)))
        }
    }

    /// With `sandbox = "bwrap"`, the sandbox every step of this run runs in.
    fn sandbox(
        &self,
        workspace: &Workspace,
        source: &Repository,
        user: &StepUser,
        cache: Option<&Path>,
    ) -> Result<Option<BwrapSandbox>, String> {
        step_sandbox(
            self.dirs,
            &self.request.repo,
            workspace,
            source,
            user,
            cache,
        )
    }

    /// With `cache = true`, removes the cache's oldest files until it fits `cache_limit`, and records
    /// its size for `status`.
    fn trim_cache(&mut self, dir: &Path) {
        let limit = self.request.repo.cache_limit;
        match cache::trim(self.dirs, &self.request.repo.name, dir, limit) {
            Ok(trimmed) => {
                if trimmed.removed > 0 {
                    self.out.line(&format!(
                        "==> cache trimmed from {} to {} (`cache_limit` {}): {} oldest file(s) \
                         and director(ies) removed",
                        human_bytes(trimmed.before),
                        human_bytes(trimmed.after),
                        ByteSize(limit),
                        trimmed.removed
                    ));
                }
            }
            Err(message) => self.out.line(&format!("==> note: {message}")),
        }
    }

    fn run_steps(&mut self, steps: &Steps) -> Conclusion {
        let Steps {
            workflow,
            workspace,
            user,
            sandbox,
            cache,
        } = *steps;
        let request = self.request;
        let repo = &request.repo;
        let commit = request.commit.to_string();
        let previous_commit = self.previous_commit.clone();
        let vars = env::RunVars {
            run: self.run_dir.number,
            branch: &request.branch,
            commit: &commit,
            previous_commit: previous_commit.as_deref(),
            workspace: &workspace.tree,
            artifacts: &workspace.artifacts,
            cache,
        };
        let limits = privilege::rlimits(&repo.limits);
        // The run's own cgroup where one can be made: its end kills every process of the run. Each
        // step gets a cgroup of its own below it.
        let cgroup = RunCgroup::create(&self.dirs.data, &repo.name, self.run_dir.number);
        let cancel_request = self.run_dir.cancel_request();
        let each = EachStep {
            workflow,
            cwd: &workspace.tree,
            vars: &vars,
            user,
            limits: &limits,
            sandbox,
            cgroup: cgroup.as_ref(),
            mount_ns: workspace.namespace(),
            cancel: &cancel_request,
            logs: lanes::StepLogs::new(self.run_dir, repo.log_limit),
            machine_steps: Config::load(&self.dirs.repo_toml())
                .map_or_else(|_| crate::config::cpus(), |c| c.parallel_steps()),
        };
        let ran = if workflow.graph {
            parallel::run(self, &each)
        } else {
            self.run_line(&each)
        };
        let (conclusion, mut leftovers) = match ran {
            Ok(ran) => ran,
            Err(message) => return Conclusion::error(message),
        };
        // No process of the run outlives it: background processes of every step go now, and so do
        // the ones that left their process group (`setsid`, double fork): the run's cgroup holds
        // them all, and phantom_ci adopted them besides.
        for pgid in std::mem::take(&mut leftovers.process_groups) {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        if let Some(cgroup) = &cgroup {
            cgroup.kill();
        }
        let survivors = reaper::kill_orphans();
        if let Some(Err(message)) = cgroup.map(RunCgroup::remove) {
            self.out.line(&format!("==> {message}"));
        }
        leftovers.drain(self.out);
        if !survivors.is_empty() {
            self.out.line(&format!(
                "==> {} process(es) of the run could not be killed: {survivors:?}",
                survivors.len()
            ));
        }
        // Every process of the run is gone; now only phantom_ci may enter the run directory.
        if let Err(message) = workspace.take_back() {
            self.out.line(&format!("==> artifacts not kept: {message}"));
            return conclusion;
        }
        let owner = user.switch.then(|| user.uid.as_raw());
        for note in
            workspace.collect_artifacts(&self.run_dir.artifacts(), owner, repo.artifact_files)
        {
            self.out.line(&format!("==> {}", note));
        }
        conclusion
    }

    /// A step's record: kept for the final run.json, and appended to the journal now, so that `status`
    /// and `logs` see it while the run goes on. One line per step: the record costs O(1) per step.
    /// A step starts: `status` and the report show it running until its record follows. Not being
    /// able to say so changes nothing about the run (the record says what happened).
    fn step_started(&mut self, step: &Step, started_at: SystemTime) {
        if let Some(journal) = &mut self.journal {
            let _ = journal.started(&records::StepStart {
                index: step.index,
                instance: step.instance,
                name: step.name.clone(),
                matrix: (!step.matrix.is_empty()).then(|| step.matrix.iter().cloned().collect()),
                started_at: records::rfc3339(started_at),
            });
        }
    }

    fn record_step(&mut self, step: StepRecord) {
        if let Some(journal) = &mut self.journal
            && let Err(e) = journal.append(&step)
        {
            self.journal = None;
            self.out.line(&format!(
                "==> note: cannot append to `{}` ({e}); the run's steps show in its record when \
                 it ends",
                self.run_dir.journal().display()
            ));
        }
        self.record.steps.push(step);
        (self.progress)(Progress::StepEnded(self.run_dir.number));
    }

    /// The conclusion of a run `phantom_ci cancel` ended ([`RunResult::Cancelled`]), or a runner pool
    /// did ([`RunResult::Aborted`]: another host took its commit over).
    fn cancelled(&self, when: &str) -> Conclusion {
        if let Some(why) = self.run_dir.abort_reason() {
            return Conclusion {
                result: RunResult::Aborted,
                message: Some(format!("{why} ({when}); the run's processes were killed")),
            };
        }
        let by = self
            .run_dir
            .cancelled_by()
            .filter(|by| !by.is_empty())
            .map_or(String::new(), |by| format!(" by {by}"));
        Conclusion {
            result: RunResult::Cancelled,
            message: Some(format!(
                "cancelled{by} with `phantom_ci cancel` {when}; the run's processes were killed"
            )),
        }
    }

    /// Keeps the workspace (`run --keep`, `keep_workspace = "always"`, or `keep_failed` after a
    /// failure past the checkout: [`kept`]) or removes it.
    fn finish_workspace(
        &mut self,
        workspace: &mut Workspace,
        conclusion: &Conclusion,
        checked_out: bool,
    ) {
        // Also when the steps never ran (no sandbox, say) after the workspace was handed over.
        if let Err(message) = workspace.take_back() {
            self.out.line(&format!("==> {message}"));
        }
        let keep = self.request.keeps_workspace();
        let keep_failed = self
            .request
            .repo
            .keep_failed
            .filter(|_| !keep && checked_out && kept::keeps(conclusion.result));
        // A layered workspace is kept as a plain copy: the layer and its base's lock go with the run.
        let keep_failed = keep_failed.filter(|_| self.unlayered(workspace));
        if let Some(keep_for) = keep_failed {
            // Every process of the run is gone; the files stay as the steps left them, the step
            // user's. Written atomically: a crash before the run's record is final is undone by
            // recovery ([`kept`]).
            match kept::write(&workspace.root, keep_for) {
                Ok(until) => {
                    self.kept_workspace = Some(workspace.tree.clone());
                    self.kept_until = Some(until);
                    return;
                }
                Err(e) => self.out.line(&format!(
                    "==> note: the workspace is not kept for `phantom_ci debug`: cannot write \
                     `{}`: {e}",
                    workspace.root.join("kept").display()
                )),
            }
        }
        if keep && self.unlayered(workspace) {
            self.kept_workspace = Some(workspace.tree.clone());
        } else if let Err(e) = workspace.remove() {
            self.out.line(&format!(
                "==> cannot remove the workspace `{}`: {e}",
                workspace.root.display()
            ));
        }
    }
}

impl Run<'_> {
    /// Makes a layered workspace a plain directory before it is kept; false (said in the log) where
    /// that failed: then it is not kept.
    fn unlayered(&mut self, workspace: &mut Workspace) -> bool {
        match workspace.unlayer() {
            Ok(()) => true,
            Err(message) => {
                self.out
                    .line(&format!("==> note: the workspace is not kept: {message}"));
                false
            }
        }
    }
}

/// With `sandbox = "bwrap"`, the sandbox of the steps of `repo` working in `workspace` (a run's,
/// or `phantom_ci debug`'s): phantom_ci's config, data and homes hidden, the workspace and artifacts
/// writable (and the repo's build cache, if any), the source's objects read-only.
pub fn step_sandbox(
    dirs: &Dirs,
    repo: &Repo,
    workspace: &Workspace,
    source: &Repository,
    user: &StepUser,
    cache: Option<&Path>,
) -> Result<Option<BwrapSandbox>, String> {
    sandbox_of(dirs, repo, workspace, source, user, cache, None)
}

/// The sandbox of a `phantom_ci debug` session (issue 20): a step's, with the repo's build cache
/// (if given) bound read-only — a run of the repo may be using it.
pub fn debug_sandbox(
    dirs: &Dirs,
    repo: &Repo,
    workspace: &Workspace,
    source: &Repository,
    user: &StepUser,
    read_only_cache: Option<&Path>,
) -> Result<Option<BwrapSandbox>, String> {
    sandbox_of(dirs, repo, workspace, source, user, None, read_only_cache)
}

fn sandbox_of(
    dirs: &Dirs,
    repo: &Repo,
    workspace: &Workspace,
    source: &Repository,
    user: &StepUser,
    cache: Option<&Path>,
    read_only_cache: Option<&Path>,
) -> Result<Option<BwrapSandbox>, String> {
    if repo.sandbox == Sandbox::None {
        return Ok(None);
    }
    let mut hidden = vec![dirs.config.clone(), dirs.data.clone()];
    hidden.extend(privilege::own_homes());
    let mut writable = vec![workspace.tree.clone(), workspace.artifacts.clone()];
    writable.extend(cache.map(Path::to_path_buf));
    let mut read_only = vec![source.commondir().join("objects")];
    read_only.extend(read_only_cache.map(Path::to_path_buf));
    let mounts = sandbox::Mounts {
        hidden,
        writable,
        read_only,
    };
    BwrapSandbox::new(repo, user, &mounts).map(Some)
}

/// Whether `always` steps still run after a run reached `result`: after a failure or a timeout, not
/// after an abort (nor a cancel, nor anything else).
fn after_failure(result: RunResult) -> bool {
    matches!(result, RunResult::Failure | RunResult::Timeout)
}

/// The conclusion of a run stopped by a signal to phantom_ci.
fn aborted(signal: Signal, when: &str) -> Conclusion {
    Conclusion {
        result: RunResult::Aborted,
        message: Some(format!(
            "phantom_ci received {} {when}; the run was aborted and its processes killed",
            signal.as_str()
        )),
    }
}
