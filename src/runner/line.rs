//! The steps of a plain workflow (no `needs`, no `matrix`), one after the other through one pipe:
//! the run's log as it always was; and how a step that ended decides the run's conclusion, for every
//! workflow.

use std::time::{Duration, Instant, SystemTime};

use crate::config::workflow::Step;
use crate::describe::{human, millis, signal_name};
use crate::isolation::cgroup::RunCgroup;
use crate::isolation::signals;
use crate::runner::{Conclusion, EachStep, Leftovers, Run, aborted, after_failure, record, step};
use crate::state::records::{RunResult, StepResult};

impl Run<'_> {
    /// The steps of a workflow without `needs` or `matrix`, one after the other: the run's log as it
    /// always was.
    pub(super) fn run_line(&mut self, each: &EachStep) -> Result<(Conclusion, Leftovers), String> {
        let repo = &self.request.repo;
        let mut pipe =
            step::RunPipe::new().map_err(|e| format!("cannot create the output pipe: {e}"))?;
        let mut leftovers = Leftovers::default();
        let mut conclusion = Conclusion {
            result: RunResult::Success,
            message: None,
        };
        // The run's one step needs no `max_parallel_steps` slot, but holds one while it runs if one
        // is free, so that steps of other runs count it; taken once for all the steps that find one.
        let mut slot = None;
        // Each step runs in a cgroup that holds its processes only: the one the step before ran in
        // when that step ended by itself and left nothing running there, else a new one (a process
        // born into a new cgroup costs the kernel more than starting `true` does).
        let mut reusable: Option<RunCgroup> = None;
        for step in &each.workflow.steps {
            // After a failure or a timeout only `always` steps run; after an abort (or any other
            // end) none does.
            let failed = conclusion.result != RunResult::Success;
            if failed && !(step.always && after_failure(conclusion.result)) {
                self.record_step(record::skipped(step));
                continue;
            }
            if let Some(signal) = signals::requested() {
                conclusion = aborted(signal, &format!("before step {}", step.label()));
                self.record_step(record::skipped(step));
                continue;
            }
            if each.cancel.exists() {
                conclusion = self.cancelled(&format!("before step {}", step.label()));
                self.record_step(record::skipped(step));
                continue;
            }
            let now = Instant::now();
            let run_left = self.deadline.saturating_duration_since(now);
            if failed && run_left.is_zero() {
                // The repo's `timeout` bounds every step, `always` ones too: nothing is left.
                self.out.line(&format!(
                    "==> {} skipped: the run's `timeout` has passed",
                    step.label()
                ));
                self.record_step(record::skipped(step));
                continue;
            }
            if failed {
                self.out.line(&format!("==> {} (always)", step.label()));
            } else {
                self.out.line(&format!("==> {}", step.label()));
            }
            let step_limit = step.timeout.unwrap_or(Duration::MAX);
            let env = each.env(repo, step);
            let step_cgroup = match reusable.take() {
                Some(cgroup) if cgroup.is_empty() => Some(cgroup),
                // What is left in it lives until the run ends.
                Some(cgroup) => {
                    cgroup.leave();
                    each.step_cgroup(step)
                }
                None => each.step_cgroup(step),
            };
            let boundary = each.boundary(step_cgroup.as_ref());
            let ctx = step::StepContext {
                cwd: each.cwd,
                env: &env,
                boundary: &boundary,
                cancel: Some(each.cancel),
            };
            pipe.tee(Some(each.logs.open(&step.id())));
            if slot.is_none() {
                slot = crate::state::slots::try_step_slot(self.dirs, each.machine_steps)
                    .ok()
                    .flatten();
            }
            let started_at = SystemTime::now();
            self.step_started(step, started_at);
            let outcome = step::run(step, &ctx, &mut pipe, step_limit.min(run_left), self.out);
            if outcome.result == StepResult::Timeout
                && let Some(cgroup) = &step_cgroup
            {
                // A timed-out step's processes end with it, `setsid` ones included.
                cgroup.kill();
            }
            leftovers.process_groups.extend(outcome.process_group);
            // Its cgroup stays (background processes live until the run ends), and serves the next
            // step if nothing is left in it — never after a timeout, whose kill may still be going on.
            match step_cgroup {
                Some(cgroup) if outcome.result == StepResult::Timeout => cgroup.leave(),
                cgroup => reusable = cgroup,
            }
            self.record_step(record::step_record(
                step,
                outcome.result,
                outcome.exit_code,
                outcome.signal,
                millis(outcome.duration),
                Some((started_at, SystemTime::now())),
            ));
            let label = step.label();
            if let Some(signal) = outcome.aborted_by {
                conclusion = aborted(signal, &format!("in step {label}"));
                continue;
            }
            // Cancelled is not a failure: what runs after a failure (`always` steps) does not run.
            if outcome.cancelled {
                conclusion = self.cancelled(&format!("in step {label}"));
                continue;
            }
            self.judge(step, &outcome, step_limit, run_left, &mut conclusion);
        }
        drop(slot);
        if let Some(cgroup) = reusable {
            cgroup.leave();
        }
        pipe.tee(None);
        leftovers.pipe = Some(pipe);
        Ok((conclusion, leftovers))
    }

    /// What a step that ended (not stopped by a signal or `cancel`) does to the run's conclusion: the
    /// first failure or timeout decides it; later ones, and failures `allow_failure` allows, are told.
    pub(super) fn judge(
        &mut self,
        step: &Step,
        outcome: &step::StepOutcome,
        step_limit: Duration,
        run_left: Duration,
        conclusion: &mut Conclusion,
    ) {
        let label = step.label();
        let failed = matches!(outcome.result, StepResult::Failure | StepResult::Timeout);
        if failed && step.allow_failure {
            let what = if outcome.result == StepResult::Timeout {
                "timed out"
            } else {
                "failed"
            };
            self.out.line(&format!(
                "==> {label} {what}; `allow_failure = true`: the run goes on"
            ));
            return;
        }
        if conclusion.result != RunResult::Success {
            // The run already failed: its result and message stay those of the first failure.
            match outcome.result {
                StepResult::Success | StepResult::Skipped => {}
                StepResult::Failure => self.out.line(&format!("==> {label} failed too")),
                StepResult::Timeout => self.out.line(&format!("==> {label} timed out too")),
            }
            return;
        }
        let repo = &self.request.repo;
        match outcome.result {
            StepResult::Success => {}
            StepResult::Timeout => {
                let message = if step_limit < run_left {
                    format!("step {label} timed out after {}", human(step_limit))
                } else {
                    format!(
                        "the run timed out after {} (the repo's `timeout`) in step {label}",
                        human(repo.timeout)
                    )
                };
                *conclusion = Conclusion {
                    result: RunResult::Timeout,
                    message: Some(message),
                };
            }
            StepResult::Failure | StepResult::Skipped => {
                let why = match (&outcome.message, outcome.exit_code, outcome.signal) {
                    // "step [1] make test: cannot start `make`: …": the command, then what befell it.
                    (Some(message), _, _) => format!(": {message}"),
                    (None, Some(code), _) => format!(" exited with status {code}"),
                    (None, None, Some(signal)) => format!(
                        " was killed by signal {signal} ({}; exit status {})",
                        signal_name(signal),
                        128 + signal
                    ),
                    (None, None, None) => " failed".to_string(),
                };
                *conclusion = Conclusion {
                    result: RunResult::Failure,
                    message: Some(format!("step {label}{why}")),
                };
            }
        }
    }
}
