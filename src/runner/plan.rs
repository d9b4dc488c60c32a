//! Which steps start next (SPEC §8), decided apart from how they run (ninja's `Plan`): given the
//! steps, their `needs`, how many slots are free and what finished, the steps to start now. Pure: no
//! process, no clock; the runner tells it what happened.
//!
//! - A step starts when every step it needs succeeded (a failure of an `allow_failure` step counts as
//!   success here: it stops nothing). Ready steps start in step order.
//! - Once a step fails or times out, no other step starts; steps already running finish; the steps
//!   waiting are skipped, but `always` steps, which start once every step they need has ended,
//!   whatever its result (skipped counts as ended).
//! - Once the run is stopped (cancelled, its timeout, a signal), nothing starts any more.

use crate::config::workflow::Step;

/// How a step ended, as far as what comes after it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Success,
    /// Failed or timed out.
    Failure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    /// Ended; whether what needs it may start (success, or an allowed failure).
    Ended {
        good: bool,
    },
    Skipped,
}

#[derive(Debug)]
pub struct Plan {
    /// Per step (by position in the workflow): the positions of the steps it needs.
    needs: Vec<Vec<usize>>,
    always: Vec<bool>,
    allow_failure: Vec<bool>,
    state: Vec<State>,
    /// A step failed (not an allowed failure): only `always` steps start from now on.
    failed: bool,
    /// Skipped steps not yet handed out by [`Plan::take_skipped`], in step order.
    skipped: Vec<usize>,
}

impl Plan {
    /// The plan of `steps` (a workflow's, matrix copies included), nothing started.
    pub fn new(steps: &[Step]) -> Plan {
        // Step number → the positions of its steps (several for a matrix).
        let mut positions: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
        for (i, step) in steps.iter().enumerate() {
            positions.entry(step.index).or_default().push(i);
        }
        let needs = steps
            .iter()
            .map(|step| {
                let mut needs: Vec<usize> = step
                    .needs
                    .iter()
                    .filter_map(|n| positions.get(n))
                    .flatten()
                    .copied()
                    .collect();
                needs.sort_unstable();
                needs
            })
            .collect();
        Plan {
            needs,
            always: steps.iter().map(|s| s.always).collect(),
            allow_failure: steps.iter().map(|s| s.allow_failure).collect(),
            state: vec![State::Waiting; steps.len()],
            failed: false,
            skipped: Vec::new(),
        }
    }

    /// Whether a step failed (allowed failures aside).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Up to `free` steps to start now, in step order; they count as running from now on.
    pub fn next(&mut self, free: usize) -> Vec<usize> {
        let mut started = Vec::new();
        for step in 0..self.state.len() {
            if started.len() >= free {
                break;
            }
            if self.state[step] == State::Waiting && self.ready(step) {
                self.state[step] = State::Running;
                started.push(step);
            }
        }
        started
    }

    /// How many steps could start now, were there slots.
    pub fn ready_count(&self) -> usize {
        (0..self.state.len())
            .filter(|&s| self.state[s] == State::Waiting && self.ready(s))
            .count()
    }

    fn ready(&self, step: usize) -> bool {
        let mut ended = self.needs[step]
            .iter()
            .map(|&n| self.state[n])
            .filter(|s| !matches!(s, State::Waiting | State::Running));
        if self.failed {
            self.always[step] && ended.count() == self.needs[step].len()
        } else {
            let all = self.needs[step].len();
            let good = ended
                .by_ref()
                .filter(|s| *s == State::Ended { good: true })
                .count();
            good == all
        }
    }

    /// `step` (one [`Plan::next`] gave) ended.
    pub fn finished(&mut self, step: usize, ended: Ended) {
        let good = ended == Ended::Success || self.allow_failure[step];
        self.state[step] = State::Ended { good };
        if !good && !self.failed {
            self.failed = true;
            self.skip_waiting(|plan, s| !plan.always[s]);
        }
    }

    /// Nothing more starts (the run was cancelled, timed out or told to stop): every waiting step is
    /// skipped.
    pub fn stop(&mut self) {
        self.skip_waiting(|_, _| true);
    }

    fn skip_waiting(&mut self, which: impl Fn(&Plan, usize) -> bool) {
        for step in 0..self.state.len() {
            if self.state[step] == State::Waiting && which(self, step) {
                self.state[step] = State::Skipped;
                self.skipped.push(step);
            }
        }
    }

    /// The steps skipped since the last call, in step order.
    pub fn take_skipped(&mut self) -> Vec<usize> {
        let mut skipped = std::mem::take(&mut self.skipped);
        skipped.sort_unstable();
        skipped
    }

    /// How many steps run now.
    pub fn running(&self) -> usize {
        self.state.iter().filter(|s| **s == State::Running).count()
    }

    /// Whether the plan is over: nothing runs and nothing waits that could still start. Steps that
    /// wait then (none should: the graph has no cycle) are skipped.
    pub fn done(&mut self) -> bool {
        if self.running() > 0 {
            return false;
        }
        let startable =
            (0..self.state.len()).any(|s| self.state[s] == State::Waiting && self.ready(s));
        if startable {
            return false;
        }
        self.stop();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::workflow::Workflow;

    fn plan(text: &str) -> Plan {
        let w = Workflow::parse("w.toml", text.as_bytes()).unwrap();
        Plan::new(&w.steps)
    }

    const DIAMOND: &str = "[0]\nrun = \"a\"\n[1]\nrun = \"b\"\nneeds = [0]\n[2]\nrun = \"c\"\nneeds = [0]\n[3]\nrun = \"d\"\nneeds = [1, 2]\n";

    #[test]
    fn a_diamond_runs_its_middle_side_by_side() {
        let mut p = plan(DIAMOND);
        assert_eq!(p.next(4), [0]);
        assert_eq!(p.next(4), Vec::<usize>::new());
        p.finished(0, Ended::Success);
        assert_eq!(p.next(4), [1, 2]);
        p.finished(2, Ended::Success);
        assert_eq!(p.next(4), Vec::<usize>::new(), "3 waits for 1 too");
        p.finished(1, Ended::Success);
        assert_eq!(p.next(4), [3]);
        assert!(!p.done());
        p.finished(3, Ended::Success);
        assert!(p.done());
        assert!(p.take_skipped().is_empty());
    }

    #[test]
    fn slots_bound_what_starts_in_step_order() {
        let text = "[0]\nrun = \"a\"\nneeds = []\n[1]\nrun = \"b\"\nneeds = []\n[2]\nrun = \"c\"\nneeds = []\n[3]\nrun = \"d\"\nneeds = []\n";
        let mut p = plan(text);
        assert_eq!(p.next(1), [0]);
        assert_eq!(p.next(0), Vec::<usize>::new());
        assert_eq!(p.next(2), [1, 2]);
        assert_eq!(p.running(), 3);
        p.finished(1, Ended::Success);
        assert_eq!(p.next(5), [3]);
    }

    #[test]
    fn after_a_failure_nothing_new_starts_but_always_steps_once_their_needs_ended() {
        // 0 and 1 at once; 2 needs 1; 3 (always) needs 2; 4 (always) needs 0.
        let text = "[0]\nrun = \"a\"\nneeds = []\n[1]\nrun = \"b\"\nneeds = []\n[2]\nrun = \"c\"\n[3]\nrun = \"d\"\nalways = true\n[4]\nrun = \"e\"\nneeds = [0]\nalways = true\n";
        let mut p = plan(text);
        assert_eq!(p.next(9), [0, 1]);
        p.finished(1, Ended::Failure);
        assert!(p.failed());
        // 2 is skipped; 3 needs 2, which ended (skipped): it starts. 4 needs 0, still running.
        assert_eq!(p.take_skipped(), [2]);
        assert_eq!(p.next(9), [3]);
        p.finished(0, Ended::Success);
        assert_eq!(p.next(9), [4]);
        p.finished(3, Ended::Success);
        p.finished(4, Ended::Success);
        assert!(p.done());
    }

    #[test]
    fn an_allowed_failure_stops_nothing() {
        let text = "[0]\nrun = \"a\"\nallow_failure = true\n[1]\nrun = \"b\"\n";
        let mut p = plan(text);
        assert_eq!(p.next(1), [0]);
        p.finished(0, Ended::Failure);
        assert!(!p.failed());
        assert_eq!(p.next(1), [1]);
    }

    #[test]
    fn stopping_skips_everything_waiting_always_steps_too() {
        let text = "[0]\nrun = \"a\"\n[1]\nrun = \"b\"\n[2]\nrun = \"c\"\nalways = true\n";
        let mut p = plan(text);
        assert_eq!(p.next(1), [0]);
        p.stop();
        assert_eq!(p.take_skipped(), [1, 2]);
        p.finished(0, Ended::Failure);
        assert_eq!(p.next(3), Vec::<usize>::new());
        assert!(p.done());
    }

    #[test]
    fn a_step_needing_a_matrix_waits_for_every_copy() {
        let text = "[0]\nrun = \"a\"\nmatrix = { X = [\"1\", \"2\"] }\n[1]\nrun = \"b\"\n";
        let mut p = plan(text);
        assert_eq!(p.next(9), [0, 1], "the copies need nothing");
        p.finished(0, Ended::Success);
        assert_eq!(p.next(9), Vec::<usize>::new());
        p.finished(1, Ended::Success);
        assert_eq!(p.next(9), [2]);
    }
}
