//! A step's line in run.json.

use std::time::SystemTime;

use crate::config::workflow;
use crate::state::records::{self, StepRecord, StepResult};

/// When a step ran: its start and end (none for a skipped step).
pub type Times = Option<(SystemTime, SystemTime)>;

/// A step's line in run.json.
pub fn step_record(
    step: &workflow::Step,
    result: StepResult,
    exit_code: Option<i32>,
    signal: Option<i32>,
    duration_ms: u64,
    times: Times,
) -> StepRecord {
    StepRecord {
        index: step.index,
        name: step.name.clone(),
        run: step.run.clone(),
        result,
        exit_code,
        signal,
        instance: step.instance,
        matrix: (!step.matrix.is_empty()).then(|| step.matrix.iter().cloned().collect()),
        needs: step.needs.clone(),
        allow_failure: step.allow_failure,
        started_at: times.map(|(start, _)| records::rfc3339(start)),
        finished_at: times.map(|(_, end)| records::rfc3339(end)),
        duration_ms,
    }
}

/// The record of a step that did not run.
pub fn skipped(step: &workflow::Step) -> StepRecord {
    step_record(step, StepResult::Skipped, None, None, 0, None)
}
