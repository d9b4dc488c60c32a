//! The graph of a workflow (SPEC §8): the step keys `needs`, `matrix`, `env` and the top-level `[env]`
//! read and checked, the `needs` of every step resolved and checked for unknown steps and cycles, and
//! each `matrix` step expanded into its copies `N.0`, `N.1`, ….

use std::collections::BTreeMap;

use toml::de::DeValue;

use crate::config::validate_env_name;
use crate::config::workflow::Step;

/// The most copies one `matrix` step may become.
pub const MAX_COMBINATIONS: usize = 64;

/// The most steps a workflow with matrices may have, copies included (a workflow without one has as
/// many as its file holds).
pub const MAX_STEPS: usize = 10_000;

/// The most links between steps a workflow may have once its matrices are expanded (a step that needs
/// a matrix step needs each of its copies).
pub const MAX_LINKS: usize = 100_000;

/// Whether `name` is one phantom_ci sets itself: `CI`, `PHANTOM_CI` and `PHANTOM_CI_*`.
pub fn reserved(name: &str) -> bool {
    name == "CI" || name == "PHANTOM_CI" || name.starts_with("PHANTOM_CI_")
}

/// A variable name a workflow may set, or what is wrong with it (`what` says where it stands).
fn check_name(name: &str, what: &str) -> Result<(), String> {
    validate_env_name(name).map_err(|e| {
        format!("{e} in {what}: a name is letters, digits and `_`, not starting with a digit")
    })?;
    if reserved(name) {
        return Err(format!(
            "`{name}` in {what} is set by phantom_ci itself (`CI`, `PHANTOM_CI` and `PHANTOM_CI_*` \
             are reserved): choose another name"
        ));
    }
    Ok(())
}

/// `needs = [0, 2]`: the step numbers, in the order written, without repeats.
pub fn needs(value: &DeValue) -> Result<Vec<u64>, String> {
    let wrong = || {
        format!(
            "`needs` must be a list of step numbers, like `needs = [0, 2]` (or `needs = []` to start \
             at once), not {}",
            value.type_str()
        )
    };
    let DeValue::Array(items) = value else {
        return Err(wrong());
    };
    let mut numbers = Vec::with_capacity(items.len());
    for item in items {
        let number = item
            .get_ref()
            .as_integer()
            .and_then(|n| u64::from_str_radix(n.as_str(), n.radix()).ok())
            .ok_or_else(|| {
                format!(
                    "`needs` lists step numbers (non-negative integers), like `needs = [0, 2]`; \
                     found {}",
                    item.get_ref().type_str()
                )
            })?;
        if !numbers.contains(&number) {
            numbers.push(number);
        }
    }
    Ok(numbers)
}

/// A table of string values: `env = { A = "1" }` or the top-level `[env]`. `what` names it.
pub fn env(value: &DeValue, what: &str) -> Result<Vec<(String, String)>, String> {
    let Some(table) = value.as_table() else {
        return Err(format!(
            "{what} must be a table of strings, like `env = {{ RUST_BACKTRACE = \"1\" }}`, not {}",
            value.type_str()
        ));
    };
    let mut vars = Vec::with_capacity(table.len());
    for (name, value) in table {
        let name: &str = name.get_ref();
        check_name(name, what)?;
        let Some(text) = value.get_ref().as_str() else {
            return Err(format!(
                "`{name}` in {what} must be a string (in quotes), not {}",
                value.get_ref().type_str()
            ));
        };
        if text.contains('\0') {
            return Err(format!("`{name}` in {what} contains a NUL"));
        }
        vars.push((name.to_string(), text.to_string()));
    }
    Ok(vars)
}

/// `matrix = { K = ["a", "b"], … }`: the keys in the order of the file, each with its values.
pub fn matrix(value: &DeValue) -> Result<Vec<(String, Vec<String>)>, String> {
    let Some(table) = value.as_table() else {
        return Err(format!(
            "`matrix` must be a table of lists of strings, like `matrix = {{ CC = [\"gcc\", \
             \"clang\"] }}`, not {}",
            value.type_str()
        ));
    };
    if table.is_empty() {
        return Err("`matrix` is empty: give it at least one list, or leave it out".into());
    }
    let mut keys: Vec<(String, Vec<String>)> = Vec::with_capacity(table.len());
    let mut combinations: usize = 1;
    for (name, list) in table {
        let name: &str = name.get_ref();
        check_name(name, "`matrix`")?;
        let DeValue::Array(items) = list.get_ref() else {
            return Err(format!(
                "`{name}` in `matrix` must be a list of strings, like `{name} = [\"a\", \"b\"]`"
            ));
        };
        if items.is_empty() {
            return Err(format!(
                "`{name}` in `matrix` is an empty list: give it at least one value"
            ));
        }
        let mut values: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            let Some(text) = item.get_ref().as_str() else {
                return Err(format!(
                    "`{name}` in `matrix` must list strings (in quotes), not {}",
                    item.get_ref().type_str()
                ));
            };
            if text.contains('\0') {
                return Err(format!("`{name}` in `matrix` has a value with a NUL"));
            }
            if !values.iter().any(|v| v == text) {
                values.push(text.to_string());
            }
        }
        combinations = combinations.saturating_mul(values.len());
        if combinations > MAX_COMBINATIONS {
            return Err(format!(
                "`matrix` makes more than {MAX_COMBINATIONS} combinations: a step may become at most \
                 {MAX_COMBINATIONS} steps"
            ));
        }
        keys.push((name.to_string(), values));
    }
    Ok(keys)
}

/// A problem of the graph: the step (its number) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphProblem {
    pub step: u64,
    pub message: String,
}

/// Resolves every step's `needs` (`explicit`, else the step numbered before it) and checks them: no
/// unknown step, no step needing itself, no cycle. `steps` are in numeric order; `explicit` maps a
/// step's number to what its `needs` says.
pub fn resolve(
    steps: &mut [Step],
    explicit: &BTreeMap<u64, Vec<u64>>,
) -> Result<(), Vec<GraphProblem>> {
    let numbers: Vec<u64> = steps.iter().map(|s| s.index).collect();
    let mut problems = Vec::new();
    for (i, step) in steps.iter_mut().enumerate() {
        step.needs = match explicit.get(&step.index) {
            Some(needs) => needs.clone(),
            None => i
                .checked_sub(1)
                .map(|p| vec![numbers[p]])
                .unwrap_or_default(),
        };
        for need in &step.needs {
            if *need == step.index {
                problems.push(GraphProblem {
                    step: step.index,
                    message: format!("step {need} needs itself; remove it from `needs`"),
                });
            } else if numbers.binary_search(need).is_err() {
                problems.push(GraphProblem {
                    step: step.index,
                    message: format!(
                        "`needs` names step {need}, which does not exist (the steps are {})",
                        list(&numbers)
                    ),
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if let Some(cycle) = find_cycle(steps) {
        let first = cycle[0];
        let path: Vec<String> = cycle
            .iter()
            .chain(std::iter::once(&first))
            .map(u64::to_string)
            .collect();
        // Reported on the step of the cycle with explicit `needs` (one has: implicit ones point back).
        let step = cycle
            .iter()
            .copied()
            .find(|n| explicit.contains_key(n))
            .unwrap_or(first);
        return Err(vec![GraphProblem {
            step,
            message: format!(
                "`needs` makes a cycle: {} (each needs the next); a step can only need steps that \
                 can finish without it",
                path.join(" → ")
            ),
        }]);
    }
    Ok(())
}

fn list(numbers: &[u64]) -> String {
    numbers
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A cycle among the steps' `needs`, as the step numbers along it, if there is one.
fn find_cycle(steps: &[Step]) -> Option<Vec<u64>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let position = |n: u64| steps.binary_search_by_key(&n, |s| s.index).ok();
    let mut marks = vec![Mark::New; steps.len()];
    for start in 0..steps.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Depth first, without recursion: (step, next need to look at).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::Open;
        while let Some(&mut (at, ref mut next)) = stack.last_mut() {
            let Some(&need) = steps[at].needs.get(*next) else {
                marks[at] = Mark::Done;
                stack.pop();
                continue;
            };
            *next += 1;
            let Some(to) = position(need) else { continue };
            match marks[to] {
                Mark::Done => {}
                Mark::New => {
                    marks[to] = Mark::Open;
                    stack.push((to, 0));
                }
                Mark::Open => {
                    let from = stack.iter().position(|(s, _)| *s == to).unwrap_or(0);
                    return Some(stack[from..].iter().map(|(s, _)| steps[*s].index).collect());
                }
            }
        }
    }
    None
}

/// The most bytes of names, commands and values that the copies of a workflow's matrix steps may
/// put into each run's records together (each copy repeats its step's `name` and `run`).
pub const MAX_RECORDED: usize = 1 << 20;

/// Checks that the matrices keep the workflow within [`MAX_STEPS`] steps and the `needs` within
/// [`MAX_LINKS`] links, so that what a pusher writes cannot make phantom_ci's plan huge. `steps` are
/// resolved ([`resolve`]), in numeric order.
pub fn check_size(
    steps: &[Step],
    matrices: &BTreeMap<u64, Vec<(String, Vec<String>)>>,
) -> Result<(), GraphProblem> {
    let copies = |n: u64| -> usize {
        matrices
            .get(&n)
            .map_or(1, |keys| keys.iter().map(|(_, v)| v.len()).product())
    };
    let (mut total, mut links, mut recorded) = (0usize, 0usize, 0usize);
    for step in steps {
        total += copies(step.index);
        // What each copy puts into the records (name, `run`, and its values twice: in the name and
        // as `matrix`), counted at its longest: a 1 MiB value times 64 copies must not become
        // 128 MiB of `run.json` a run.
        if let Some(keys) = matrices.get(&step.index) {
            let values: usize = keys
                .iter()
                .map(|(key, values)| {
                    key.len() + 4 + values.iter().map(String::len).max().unwrap_or(0)
                })
                .sum();
            let each = step.name.as_ref().map_or(0, String::len) + step.run.len() + 2 * values;
            recorded = recorded.saturating_add(copies(step.index).saturating_mul(each));
            if recorded > MAX_RECORDED {
                return Err(GraphProblem {
                    step: step.index,
                    message: format!(
                        "its matrix copies would record more than {} KiB of names, commands and \
                         values: make the values (or the step's `run` and `name`) shorter",
                        MAX_RECORDED >> 10
                    ),
                });
            }
        }
        if !matrices.is_empty() && total > MAX_STEPS {
            return Err(GraphProblem {
                step: step.index,
                message: format!(
                    "with its matrices the workflow has more than {MAX_STEPS} steps (copies \
                     included): make the matrices smaller"
                ),
            });
        }
        let needed: usize = step.needs.iter().map(|&n| copies(n)).sum();
        links = links.saturating_add(copies(step.index).saturating_mul(needed));
        if links > MAX_LINKS {
            return Err(GraphProblem {
                step: step.index,
                message: format!(
                    "`needs` make more than {MAX_LINKS} links between steps (a step that needs a \
                     matrix step needs each of its copies): need fewer steps"
                ),
            });
        }
    }
    Ok(())
}

/// The steps with every `matrix` step replaced by its copies: combinations in the order of the keys,
/// the first key changing slowest; copy `k` is step `N.k`, named `name (K=v, …)`.
pub fn expand(steps: Vec<Step>, matrices: &BTreeMap<u64, Vec<(String, Vec<String>)>>) -> Vec<Step> {
    let mut expanded = Vec::with_capacity(steps.len());
    for step in steps {
        let Some(keys) = matrices.get(&step.index) else {
            expanded.push(step);
            continue;
        };
        let total: usize = keys.iter().map(|(_, values)| values.len()).product();
        for k in 0..total {
            // Mixed radix, the last key fastest.
            let mut rest = k;
            let mut chosen: Vec<(String, String)> =
                vec![(String::new(), String::new()); keys.len()];
            for (slot, (name, values)) in keys.iter().enumerate().rev() {
                chosen[slot] = (name.clone(), values[rest % values.len()].clone());
                rest /= values.len();
            }
            let words: Vec<String> = chosen.iter().map(|(n, v)| format!("{n}={v}")).collect();
            let name = match &step.name {
                Some(name) => format!("{name} ({})", words.join(", ")),
                None => format!("({})", words.join(", ")),
            };
            let mut copy = step.clone();
            copy.instance = Some(u32::try_from(k).unwrap_or(u32::MAX));
            copy.name = Some(name);
            copy.matrix = chosen;
            expanded.push(copy);
        }
    }
    expanded
}

#[cfg(test)]
mod tests {
    use crate::config::workflow::{Workflow, WorkflowError};

    fn parse(text: &str) -> Result<Workflow, WorkflowError> {
        Workflow::parse("workflow/main.toml", text.as_bytes())
    }

    fn all_errors(text: &str) -> Vec<WorkflowError> {
        Workflow::parse_all("workflow/main.toml", text.as_bytes()).unwrap_err()
    }

    /// The review's attack: one long value times 64 copies made a 129 MB `run.json` a run.
    #[test]
    fn matrix_copies_cannot_multiply_long_values_into_the_records() {
        let long = "x".repeat(64 << 10);
        let eight: Vec<String> = (0..8).map(|i| format!("\"v{i}\"")).collect();
        let text = format!(
            "[0]\nrun = \"make\"\nmatrix = {{ A = [\"{long}\"], B = [{list}], C = [{list}] }}\n",
            list = eight.join(", ")
        );
        let errors = all_errors(&text);
        assert!(
            errors[0]
                .message
                .contains("would record more than 1024 KiB"),
            "{errors:?}"
        );
        // The same matrix with short values is fine.
        assert!(parse(&text.replace(&long, "short")).is_ok());
    }

    #[test]
    fn without_needs_a_step_needs_the_one_before_and_the_workflow_is_plain() {
        let w = parse("[0]\nrun = \"a\"\n[5]\nrun = \"b\"\n[7]\nrun = \"c\"\n").unwrap();
        let needs: Vec<Vec<u64>> = w.steps.iter().map(|s| s.needs.clone()).collect();
        assert_eq!(needs, [vec![], vec![0], vec![5]]);
        assert!(!w.graph);
        let w =
            parse("[0]\nrun = \"a\"\n[1]\nrun = \"b\"\nneeds = []\n[2]\nrun = \"c\"\n").unwrap();
        let needs: Vec<Vec<u64>> = w.steps.iter().map(|s| s.needs.clone()).collect();
        assert_eq!(needs, [vec![], vec![], vec![1]]);
        assert!(w.graph);
    }

    #[test]
    fn a_matrix_becomes_one_step_per_combination_first_key_slowest() {
        let w = parse(
            "[3]\nname = \"cross\"\nrun = \"sh x\"\nmatrix = { TARGET = [\"arm64\", \"riscv64\"], OPT = [\"-O0\", \"-O2\"] }\n[4]\nrun = \"pkg\"\nneeds = [3]\n",
        )
        .unwrap();
        let ids: Vec<String> = w.steps.iter().map(|s| s.id()).collect();
        assert_eq!(ids, ["3.0", "3.1", "3.2", "3.3", "4"]);
        assert_eq!(
            w.steps[1].name.as_deref(),
            Some("cross (TARGET=arm64, OPT=-O2)")
        );
        assert_eq!(
            w.steps[2].matrix,
            [
                ("TARGET".to_string(), "riscv64".to_string()),
                ("OPT".to_string(), "-O0".to_string())
            ]
        );
        assert_eq!(w.steps[4].needs, [3]);
        assert!(w.graph);
        assert_eq!(
            w.steps[3].label(),
            "[3.3] cross (TARGET=riscv64, OPT=-O2): sh x"
        );
    }

    #[test]
    fn env_tables_are_read_in_order() {
        let w = parse(
            "[env]\nB = \"2\"\nA = \"1\"\n\n[0]\nrun = \"a\"\nenv = { X = \"x\" }\nallow_failure = true\n",
        )
        .unwrap();
        assert_eq!(w.env, [("B".into(), "2".into()), ("A".into(), "1".into())]);
        assert_eq!(w.steps[0].env, [("X".into(), "x".into())]);
        assert!(w.steps[0].allow_failure);
        assert!(!w.graph);
    }

    #[test]
    fn graph_problems_are_workflow_errors_with_their_line() {
        let e =
            parse("[0]\nrun = \"a\"\nneeds = [1]\n\n[1]\nrun = \"b\"\nneeds = [0]\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("cycle: 0 → 1 → 0"), "{e}");

        let e = parse("[0]\nrun = \"a\"\n[1]\nrun = \"b\"\nneeds = [1]\n").unwrap_err();
        assert_eq!((e.step.as_deref(), e.line), (Some("1"), Some(5)));
        assert!(e.message.contains("needs itself"), "{e}");

        let e = parse("[0]\nrun = \"a\"\n[1]\nrun = \"b\"\nneeds = [9]\n").unwrap_err();
        assert_eq!(e.line, Some(5));
        assert!(e.message.contains("step 9, which does not exist"), "{e}");

        // A cycle through a step without `needs`: 1 needs 0 (implicitly), 0 needs 1.
        let e = parse("[0]\nrun = \"a\"\nneeds = [1]\n[1]\nrun = \"b\"\n").unwrap_err();
        assert_eq!((e.step.as_deref(), e.line), (Some("0"), Some(3)));

        let e = parse("[0]\nrun = \"a\"\nneeds = \"1\"\n").unwrap_err();
        assert!(e.message.contains("list of step numbers"), "{e}");
        let e = parse("[0]\nrun = \"a\"\nneeds = [-1]\n").unwrap_err();
        assert!(e.message.contains("non-negative"), "{e}");
    }

    #[test]
    fn matrix_and_env_problems_are_workflow_errors_with_their_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("[0]\nrun = \"a\"\nmatrix = { A = [] }\n", 3, "empty list"),
            ("[0]\nrun = \"a\"\nmatrix = { A = [1] }\n", 3, "strings"),
            (
                "[0]\nrun = \"a\"\nmatrix = { 9A = [\"x\"] }\n",
                3,
                "invalid environment",
            ),
            (
                "[0]\nrun = \"a\"\nmatrix = { CI = [\"x\"] }\n",
                3,
                "reserved",
            ),
            ("[0]\nrun = \"a\"\nmatrix = {}\n", 3, "empty"),
            (
                "[0]\nrun = \"a\"\nenv = { PHANTOM_CI_COMMIT = \"x\" }\n",
                3,
                "reserved",
            ),
            ("[0]\nrun = \"a\"\nenv = { A = 1 }\n", 3, "string"),
            ("[env]\nCI = \"false\"\n[0]\nrun = \"a\"\n", 1, "reserved"),
            (
                "[env]\n\"A-B\" = \"1\"\n[0]\nrun = \"a\"\n",
                1,
                "invalid environment",
            ),
            (
                "[0]\nrun = \"a\"\nallow_failure = 1\n",
                3,
                "`allow_failure` must be",
            ),
        ];
        for (text, line, words) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, Some(*line), "{text}: {e}");
            assert!(e.message.contains(words), "{text}: {e}");
        }
        let sixty_four: Vec<String> = (0..64).map(|i| format!("\"{i}\"")).collect();
        let mut many = String::new();
        for n in 0..157 {
            many.push_str(&format!(
                "[{n}]\nrun = \"a\"\nneeds = []\nmatrix = {{ A = [{}] }}\n",
                sixty_four.join(", ")
            ));
        }
        let e = parse(&many).unwrap_err();
        assert_eq!(e.step.as_deref(), Some("156"));
        assert!(e.message.contains("more than 10000 steps"), "{e}");
        let mut linked = format!(
            "[0]\nrun = \"a\"\nmatrix = {{ A = [{}] }}\n",
            sixty_four.join(", ")
        );
        for n in 1..30 {
            linked.push_str(&format!(
                "[{n}]\nrun = \"a\"\nneeds = [0]\nmatrix = {{ A = [{}] }}\n",
                sixty_four.join(", ")
            ));
        }
        let e = parse(&linked).unwrap_err();
        assert!(e.message.contains("links"), "{e}");
        let values: Vec<String> = (0..9).map(|i| format!("\"{i}\"")).collect();
        let big = format!(
            "[0]\nrun = \"a\"\nmatrix = {{ A = [{0}], B = [{0}] }}\n",
            values.join(", ")
        );
        assert!(parse(&big).unwrap_err().message.contains("more than 64"));
        let errors = all_errors(
            "[0]\nrun = \"a\"\nmatrix = { A = [] }\n[1]\nrun = \"b\"\nenv = { CI = \"x\" }\n",
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
    }
}
