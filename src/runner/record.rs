//! A step's line in run.json.

use crate::config::workflow;
use crate::state::records::{StepRecord, StepResult};

/// A step's line in run.json.
pub fn step_record(
    step: &workflow::Step,
    result: StepResult,
    exit_code: Option<i32>,
    signal: Option<i32>,
    duration_ms: u64,
) -> StepRecord {
    StepRecord {
        index: step.index,
        name: step.name.clone(),
        run: step.run.clone(),
        result,
        exit_code,
        signal,
        instance: None,
        matrix: None,
        needs: Vec::new(),
        allow_failure: false,
        started_at: None,
        finished_at: None,
        duration_ms,
    }
}
