//! How runs and steps are put into words and numbers for records and summaries.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::records::{StepRecord, StepResult};
use crate::workflow;

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
        duration_ms,
    }
}

pub fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub fn human(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs().max(1))).to_string()
}

pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

pub fn signal_name(signal: i32) -> &'static str {
    Signal::try_from(signal).map_or("unknown signal", Signal::as_str)
}
