//! The steps of a graph workflow (SPEC §8), side by side: the [`Plan`] says which start; this runs
//! them, each through the step boundary with a pipe, a log and a cgroup of its own, at most
//! `parallel_steps` of the run at once and `max_parallel_steps` of all runs (every running run always
//! has one), and one loop waits on all of them (`ppoll` over their pipes and pidfds): their output,
//! their ends, their timeouts, the run's deadline, SIGTERM/SIGINT and `cancel`, which end every
//! running step.

use crate::isolation::spawn::StepChild;
use std::io::{PipeReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::config::cpus;
use crate::config::workflow::Step;
use crate::describe::{human_ms, millis, terminal};
use crate::isolation::cgroup::RunCgroup;
use crate::isolation::{pidfd, reaper, signals};
use crate::runner::lanes::{Prefixer, StepLog};
use crate::runner::output::Output;
use crate::runner::plan::{Ended, Plan};
use crate::runner::step::{CancelWatch, KILL_GRACE, StepOutcome, Stop, TICK, cannot_start};
use crate::runner::{Conclusion, EachStep, Leftovers, Run, aborted, record};
use crate::state::records::{RunResult, StepResult};
use crate::state::slots::{self, Slot};

/// The most bytes read from one step's pipe in one go.
const CHUNK: usize = 64 * 1024;

/// How many chunks a drain reads from one pipe at most (a process that never stops writing does not
/// hold the run).
const DRAIN_CHUNKS: usize = 64;

/// One step's output on its way: its pipe, its own log, its prefixer. It lives until every process
/// holding the pipe is gone (a step's background processes may go on writing) or the run ends; then
/// its descriptors are closed (a run of many steps holds those of the steps that run, not of all).
struct Lane {
    reader: PipeReader,
    log: StepLog,
    prefix: Prefixer,
}

/// The lanes of a run's steps, by the order they started; `None` once closed.
pub(super) struct Lanes {
    lanes: Vec<Option<Lane>>,
    buf: Vec<u8>,
}

impl Lanes {
    fn new() -> Lanes {
        Lanes {
            lanes: Vec::new(),
            buf: vec![0; CHUNK],
        }
    }

    /// Reads one chunk of lane `i` and passes it on; whether there was any. At the pipe's end the
    /// lane is closed.
    fn read(&mut self, i: usize, out: &mut Output) -> bool {
        let Some(lane) = &mut self.lanes[i] else {
            return false;
        };
        match lane.reader.read(&mut self.buf) {
            Ok(n) if n > 0 => {
                lane.log.write(&self.buf[..n]);
                lane.prefix.feed(&self.buf[..n], Instant::now(), out);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
            _ => {
                lane.prefix.flush(out);
                self.lanes[i] = None;
                false
            }
        }
    }

    /// Passes on what is in lane `i` now (a bounded amount), and the part of a line held back.
    fn drain_one(&mut self, i: usize, out: &mut Output) {
        for _ in 0..DRAIN_CHUNKS {
            let ready = self.lanes[i]
                .as_ref()
                .is_some_and(|lane| readable_now(&lane.reader));
            if !ready || !self.read(i, out) {
                break;
            }
        }
        if let Some(lane) = &mut self.lanes[i] {
            lane.prefix.flush(out);
        }
    }

    /// Passes on what is in every lane now (bounded), at the end of the run.
    pub(super) fn drain(&mut self, out: &mut Output) {
        for i in 0..self.lanes.len() {
            self.drain_one(i, out);
        }
    }

    /// When the next part of a line held back must go.
    fn due(&self) -> Option<Instant> {
        self.open().filter_map(|(_, l)| l.prefix.due()).min()
    }

    /// The lanes still open, with their number.
    fn open(&self) -> impl Iterator<Item = (usize, &Lane)> {
        self.lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.as_ref().map(|l| (i, l)))
    }
}

fn readable_now(reader: &PipeReader) -> bool {
    let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
    let zero = nix::sys::time::TimeSpec::from_duration(Duration::ZERO);
    matches!(ppoll(&mut fds, Some(zero), None), Ok(n) if n > 0)
}

/// A step that runs.
struct Running {
    unit: usize,
    lane: usize,
    child: StepChild,
    pgid: Pid,
    exit: Option<OwnedFd>,
    started: Instant,
    started_at: SystemTime,
    deadline: Instant,
    step_limit: Duration,
    run_left: Duration,
    stop: Option<Stop>,
    term_sent: Option<Instant>,
    kill_sent: bool,
    cgroup: Option<RunCgroup>,
    /// Its `max_parallel_steps` slot, unless it is the run's one step that needs none.
    slot: Option<Slot>,
}

/// Runs the steps of `each.workflow` as its graph says. The conclusion, and what is left for the end
/// of the run.
pub(super) fn run(run: &mut Run, each: &EachStep) -> Result<(Conclusion, Leftovers), String> {
    let steps = &each.workflow.steps;
    let per_run = run.request.repo.parallel_steps.unwrap_or_else(cpus).max(1);
    let machine = each.machine_steps;
    let mut graph = Graph {
        plan: Plan::new(steps),
        look_again: Some(Instant::now()),
        lanes: Lanes::new(),
        running: Vec::new(),
        leftovers: Leftovers::default(),
        conclusion: Conclusion {
            result: RunResult::Success,
            message: None,
        },
    };
    let mut cancel = CancelWatch::new(Some(each.cancel));
    let mut stopped = false;
    loop {
        let now = Instant::now();
        if !stopped {
            let why = match signals::requested() {
                Some(signal) => Some(Stop::Signal(signal)),
                None if cancel.requested(now) => Some(Stop::Cancelled),
                None => None,
            };
            if let Some(why) = why {
                stopped = true;
                graph.stop_all(run, steps, why);
            } else if now >= run.deadline {
                // After the run's timeout nothing starts, `always` steps included.
                graph.plan.stop();
            }
        }
        for unit in graph.plan.take_skipped() {
            run.record_step(record::skipped(&steps[unit]));
        }
        if graph.running.is_empty() {
            // Nothing runs, so nothing else would make the plan be looked at.
            graph.look_again.get_or_insert(now);
        }
        if !stopped && now < run.deadline && graph.look_again.is_some_and(|at| now >= at) {
            graph.start_ready(run, each, per_run, machine);
        }
        if graph.running.is_empty() && graph.plan.done() {
            for unit in graph.plan.take_skipped() {
                run.record_step(record::skipped(&steps[unit]));
            }
            break;
        }
        graph.escalate(now);
        let wait = graph.wait_for(now);
        let (ready_lanes, exited) = graph.poll(wait);
        for lane in ready_lanes {
            graph.lanes.read(lane, run.out);
        }
        let now = Instant::now();
        for lane in graph.lanes.lanes.iter_mut().flatten() {
            lane.prefix.flush_due(now, run.out);
        }
        graph.reap(run, steps, &exited);
    }
    let Graph {
        lanes,
        mut leftovers,
        conclusion,
        ..
    } = graph;
    leftovers.lanes = Some(lanes);
    // The run's record lists its steps in step order, whatever order they ended in.
    run.record.steps.sort_by_key(|s| (s.index, s.instance));
    Ok((conclusion, leftovers))
}

struct Graph {
    plan: Plan,
    /// When to look for steps to start: at once after a step ended, `None` while nothing changed.
    look_again: Option<Instant>,
    lanes: Lanes,
    running: Vec<Running>,
    leftovers: Leftovers,
    conclusion: Conclusion,
}

impl Graph {
    /// The run was told to stop (a signal, `cancel`): nothing more starts, every running step is
    /// stopped.
    fn stop_all(&mut self, run: &mut Run, steps: &[Step], why: Stop) {
        self.plan.stop();
        let when = match self.running.first() {
            Some(r) => format!("in step {}", steps[r.unit].label()),
            None => "between steps".to_string(),
        };
        self.conclusion = match why {
            Stop::Signal(signal) => aborted(signal, &when),
            _ => run.cancelled(&when),
        };
        for r in &mut self.running {
            r.stop.get_or_insert(why);
        }
    }

    /// Starts the steps that are ready, as far as the run's and the machine's slots allow.
    /// Looked at again once a step ends, or after [`TICK`] while steps wait for another run's slot.
    fn start_ready(&mut self, run: &mut Run, each: &EachStep, per_run: usize, machine: usize) {
        self.look_again = None;
        let free = per_run
            .saturating_sub(self.running.len())
            .min(self.plan.ready_count());
        if free == 0 {
            return;
        }
        let mut slots = Vec::new();
        while slots.len() < free {
            match slots::try_step_slot(run.dirs, machine) {
                Ok(Some(slot)) => slots.push(slot),
                _ => break,
            }
        }
        // Every running run always has one step going, slot or not.
        let granted = match slots.len() {
            0 if self.running.is_empty() => 1,
            n => n,
        };
        if granted < free {
            // The machine's slots are taken by other runs: one may free up without a step of this
            // run ending.
            self.look_again = Some(Instant::now() + TICK);
        }
        for unit in self.plan.next(granted) {
            self.start(run, each, unit, slots.pop());
        }
    }

    fn start(&mut self, run: &mut Run, each: &EachStep, unit: usize, slot: Option<Slot>) {
        let step = &each.workflow.steps[unit];
        let repo = &run.request.repo;
        let now = Instant::now();
        let run_left = run.deadline.saturating_duration_since(now);
        if self.plan.failed() {
            run.out.line(&format!("==> {} (always)", step.label()));
        } else {
            run.out.line(&format!("==> {}", step.label()));
        }
        let started_at = SystemTime::now();
        let env = each.env(repo, step);
        let cgroup = each.step_cgroup(step);
        let boundary = each.boundary(cgroup.as_ref());
        let spawned = std::io::pipe().and_then(|(reader, writer)| {
            boundary
                .spawn(&step.argv, each.cwd, &env, &writer)
                .map(|child| (reader, child))
        });
        let (reader, child) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                let outcome = StepOutcome::not_started(cannot_start(step, &e), now);
                if let Some(cgroup) = cgroup {
                    cgroup.leave();
                }
                let limit = step.timeout.unwrap_or(Duration::MAX);
                self.ended(
                    run,
                    step,
                    unit,
                    &outcome,
                    (limit, run_left),
                    started_at,
                    None,
                );
                return;
            }
        };
        self.lanes.lanes.push(Some(Lane {
            reader,
            log: each.logs.open(&step.id()),
            prefix: Prefixer::new(&step.id()),
        }));
        // `status` and the report show the step running from now on.
        run.step_started(step, started_at);
        let step_limit = step.timeout.unwrap_or(Duration::MAX);
        let pgid = Pid::from_raw(child.id() as i32);
        self.running.push(Running {
            unit,
            lane: self.lanes.lanes.len() - 1,
            exit: pidfd::open_pid(child.id()),
            child,
            pgid,
            started: now,
            started_at,
            deadline: now + step_limit.min(run_left),
            step_limit,
            run_left,
            stop: None,
            term_sent: None,
            kill_sent: false,
            cgroup,
            slot,
        });
    }

    /// Stops the steps whose time is up; SIGKILL for those that outlived SIGTERM by [`KILL_GRACE`].
    fn escalate(&mut self, now: Instant) {
        for r in &mut self.running {
            if r.stop.is_none() && now >= r.deadline {
                r.stop = Some(Stop::Deadline);
            }
            if r.stop.is_some() && r.term_sent.is_none() {
                let _ = killpg(r.pgid, Signal::SIGTERM);
                r.term_sent = Some(now);
            }
            if let Some(sent) = r.term_sent
                && !r.kill_sent
                && (now >= sent + KILL_GRACE || signals::insisted())
            {
                let _ = killpg(r.pgid, Signal::SIGKILL);
                if let Some(cgroup) = &r.cgroup {
                    cgroup.kill();
                }
                r.kill_sent = true;
            }
        }
    }

    /// How long the loop may wait before something is due.
    fn wait_for(&self, now: Instant) -> Duration {
        let mut next = now + TICK;
        for r in &self.running {
            let due = match r.term_sent {
                None => r.deadline,
                Some(sent) if !r.kill_sent => sent + KILL_GRACE,
                Some(_) => next,
            };
            next = next.min(due);
        }
        if let Some(due) = self.lanes.due() {
            next = next.min(due);
        }
        next.saturating_duration_since(now)
    }

    /// Waits up to `wait` for output or a step's end: the lanes with output, and for each running
    /// step whether its pidfd says it ended.
    fn poll(&self, wait: Duration) -> (Vec<usize>, Vec<bool>) {
        let open: Vec<usize> = self.lanes.open().map(|(i, _)| i).collect();
        let mut fds: Vec<PollFd> = self
            .lanes
            .open()
            .map(|(_, lane)| PollFd::new(lane.reader.as_fd(), PollFlags::POLLIN))
            .collect();
        let with_pidfd: Vec<usize> = (0..self.running.len())
            .filter(|&r| self.running[r].exit.is_some())
            .collect();
        fds.extend(with_pidfd.iter().filter_map(|&r| {
            let exit = self.running[r].exit.as_ref()?;
            Some(PollFd::new(exit.as_fd(), PollFlags::POLLIN))
        }));
        let timeout = nix::sys::time::TimeSpec::from_duration(wait);
        let polled = matches!(ppoll(&mut fds, Some(timeout), None), Ok(n) if n > 0);
        let fired = |fd: &PollFd| polled && fd.revents().is_some_and(|r| !r.is_empty());
        let lanes = open
            .iter()
            .zip(&fds)
            .filter(|(_, fd)| fired(fd))
            .map(|(&i, _)| i)
            .collect();
        let mut exited = vec![false; self.running.len()];
        for (&r, fd) in with_pidfd.iter().zip(&fds[open.len()..]) {
            exited[r] = fired(fd);
        }
        (lanes, exited)
    }

    /// Collects the steps that ended (`exited` from [`Graph::poll`]; a step without a pidfd, or one
    /// being stopped, is looked at every time round).
    fn reap(&mut self, run: &mut Run, steps: &[Step], exited: &[bool]) {
        let mut i = 0;
        let mut look = exited.iter().copied();
        while i < self.running.len() {
            let r = &mut self.running[i];
            let pidfd_says = look.next().unwrap_or(true);
            if r.exit.is_some() && !pidfd_says && r.stop.is_none() {
                i += 1;
                continue;
            }
            let status = match r.child.try_wait() {
                Ok(None) => {
                    i += 1;
                    continue;
                }
                Ok(Some(status)) => Ok(status),
                Err(e) => Err(e),
            };
            let r = self.running.remove(i);
            self.finish(run, steps, r, status);
        }
    }

    fn finish(
        &mut self,
        run: &mut Run,
        steps: &[Step],
        r: Running,
        status: std::io::Result<std::process::ExitStatus>,
    ) {
        let step = &steps[r.unit];
        reaper::finished(r.child.id());
        if r.stop.is_some() {
            // Whatever of the step survived SIGTERM goes now, `setsid` children included.
            let _ = killpg(r.pgid, Signal::SIGKILL);
            if let Some(cgroup) = &r.cgroup {
                cgroup.kill();
            }
        }
        self.lanes.drain_one(r.lane, run.out);
        let outcome = StepOutcome::ended(status, r.stop, r.started, r.pgid);
        self.leftovers.process_groups.push(r.pgid);
        // Its cgroup stays (background processes live until the run ends), but not open.
        if let Some(cgroup) = r.cgroup {
            cgroup.leave();
        }
        let limits = (r.step_limit, r.run_left);
        self.ended(run, step, r.unit, &outcome, limits, r.started_at, r.slot);
    }

    /// Records a step that ended and tells the plan.
    #[allow(clippy::too_many_arguments)]
    fn ended(
        &mut self,
        run: &mut Run,
        step: &Step,
        unit: usize,
        outcome: &StepOutcome,
        (step_limit, run_left): (Duration, Duration),
        started_at: SystemTime,
        slot: Option<Slot>,
    ) {
        drop(slot);
        self.look_again = Some(Instant::now());
        run.record_step(record::step_record(
            step,
            outcome.result,
            outcome.exit_code,
            outcome.signal,
            millis(outcome.duration),
            Some((started_at, SystemTime::now())),
        ));
        let name = step
            .name
            .as_deref()
            .map_or(String::new(), |n| format!(" {}", terminal(n)));
        run.out.line(&format!(
            "==> [{}]{name} ended: {} in {}",
            step.id(),
            outcome.result.as_str(),
            human_ms(millis(outcome.duration))
        ));
        // A step stopped by a signal or `cancel` leaves the run's conclusion as the stop made it.
        if outcome.aborted_by.is_none() && !outcome.cancelled {
            run.judge(step, outcome, step_limit, run_left, &mut self.conclusion);
        }
        let ended = match outcome.result {
            StepResult::Success => Ended::Success,
            _ => Ended::Failure,
        };
        self.plan.finished(unit, ended);
    }
}
