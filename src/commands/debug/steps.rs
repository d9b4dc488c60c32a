//! Which step's conditions a `debug` session takes, and which steps `--replay` runs again first
//! (issue 20): pure, over the workflow and the run's record.

use std::collections::BTreeSet;

use crate::config::workflow::{Step, Workflow};
use crate::state::records::{RunRecord, StepResult};

/// The step `wanted` names (`N` or `N.k`), else the first step of the workflow, in its order, that
/// failed or timed out in `record` — one that failed the run before one allowed to fail.
pub fn choose<'w>(
    workflow: &'w Workflow,
    record: &RunRecord,
    wanted: Option<&str>,
) -> Result<Option<&'w Step>, String> {
    if let Some(wanted) = wanted {
        if let Some(step) = workflow.steps.iter().find(|s| s.id() == wanted) {
            return Ok(Some(step));
        }
        let copies: Vec<String> = workflow
            .steps
            .iter()
            .filter(|s| s.instance.is_some() && s.index.to_string() == wanted)
            .map(Step::id)
            .collect();
        let known: Vec<String> = workflow.steps.iter().map(Step::id).collect();
        return Err(if copies.is_empty() {
            format!(
                "`--step {}`: the workflow `{}` of this run has no such step (its steps: {})",
                crate::describe::terminal(wanted),
                workflow.file,
                known.join(", ")
            )
        } else {
            format!(
                "`--step {wanted}` is a matrix step: name one of its copies ({})",
                copies.join(", ")
            )
        });
    }
    let failed = |allowed: bool| {
        workflow.steps.iter().find(|step| {
            record.steps.iter().any(|r| {
                r.index == step.index
                    && r.instance == step.instance
                    && r.allow_failure == allowed
                    && matches!(r.result, StepResult::Failure | StepResult::Timeout)
            })
        })
    };
    Ok(failed(false).or_else(|| failed(true)))
}

/// What `--replay` runs before `target`'s conditions: every step it needs, directly or not, in the
/// workflow's order, one at a time, without `always` steps.
pub fn replayed<'w>(workflow: &'w Workflow, target: &Step) -> Vec<&'w Step> {
    let mut needed: BTreeSet<u64> = BTreeSet::new();
    let mut todo: Vec<u64> = target.needs.clone();
    while let Some(index) = todo.pop() {
        if !needed.insert(index) {
            continue;
        }
        for step in workflow.steps.iter().filter(|s| s.index == index) {
            todo.extend(step.needs.iter().copied());
        }
    }
    workflow
        .steps
        .iter()
        .filter(|s| needed.contains(&s.index) && !s.always)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::records::StepRecord;

    const GRAPH: &str = "[0]\nrun = \"./configure\"\n\
        [1]\nrun = \"make\"\n\
        [2]\nrun = \"make lint\"\nneeds = [0]\n\
        [3]\nrun = \"sh cross.sh\"\nneeds = [0]\nmatrix = { T = [\"a\", \"b\"] }\n\
        [4]\nrun = \"make dist\"\nneeds = [1, 3]\n\
        [5]\nrun = \"tidy\"\nalways = true\nneeds = [0]\n\
        [6]\nrun = \"pack\"\nneeds = [5]\n";

    fn record(failed: &[(u64, Option<u32>, bool)]) -> RunRecord {
        let mut record =
            crate::notify::text::sample_record(crate::state::records::RunResult::Failure, "master");
        record.steps = failed
            .iter()
            .map(|&(index, instance, allow_failure)| StepRecord {
                index,
                instance,
                allow_failure,
                result: StepResult::Failure,
                ..record.steps[0].clone()
            })
            .collect();
        record
    }

    fn ids(steps: &[&Step]) -> Vec<String> {
        steps.iter().map(|s| s.id()).collect()
    }

    #[test]
    fn the_first_failed_step_in_the_workflows_order_or_the_one_named() {
        let workflow = Workflow::parse("workflow/master.toml", GRAPH.as_bytes()).unwrap();
        let both = record(&[(4, None, false), (3, Some(1), false), (2, None, true)]);
        let chosen = choose(&workflow, &both, None).unwrap().unwrap();
        assert_eq!(chosen.id(), "3.1");
        let allowed = record(&[(2, None, true)]);
        assert_eq!(
            choose(&workflow, &allowed, None).unwrap().unwrap().id(),
            "2"
        );
        assert!(choose(&workflow, &record(&[]), None).unwrap().is_none());
        let named = choose(&workflow, &both, Some("3.0")).unwrap().unwrap();
        assert_eq!(named.matrix, [("T".to_string(), "a".to_string())]);
        let e = choose(&workflow, &both, Some("3")).unwrap_err();
        assert!(e.contains("3.0, 3.1"), "{e}");
        let e = choose(&workflow, &both, Some("9")).unwrap_err();
        assert!(
            e.contains("no such step") && e.contains("0, 1, 2, 3.0"),
            "{e}"
        );
    }

    #[test]
    fn a_replay_runs_what_the_step_needs_in_order_without_always_steps() {
        let workflow = Workflow::parse("workflow/master.toml", GRAPH.as_bytes()).unwrap();
        let step = |id: &str| workflow.steps.iter().find(|s| s.id() == id).unwrap();
        assert_eq!(
            ids(&replayed(&workflow, step("4"))),
            ["0", "1", "3.0", "3.1"]
        );
        assert_eq!(ids(&replayed(&workflow, step("3.1"))), ["0"]);
        assert!(replayed(&workflow, step("0")).is_empty());
        assert_eq!(ids(&replayed(&workflow, step("6"))), ["0"]);
    }
}
