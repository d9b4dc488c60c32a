//! The workflow: numbered steps from `workflow/<branch>.toml`, written by whoever can push — untrusted
//! (SPEC §2.2). Parsing never runs anything; every problem names the file, the step and the line.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::de::DeTable;

use crate::config::Lines;
use crate::config::quantities::HumanDuration;

pub mod graph;
pub mod lint;

pub use lint::Warning;

/// A workflow problem: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct WorkflowError {
    pub file: String,
    pub step: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}

impl WorkflowError {
    fn render(&self) -> String {
        let mut text = format!(
            "invalid workflow `{}`",
            crate::describe::terminal(&self.file)
        );
        if let Some(line) = self.line {
            text.push_str(&format!(" line {line}"));
        }
        if let Some(step) = &self.step {
            text.push_str(&format!(", step `{}`", crate::describe::terminal(step)));
        }
        text.push_str(": ");
        text.push_str(&crate::describe::terminal(&self.message));
        text
    }
}

/// One step, ready to run: a step of the file, or one copy of a `matrix` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The TOML key.
    pub index: u64,
    /// For a copy of a `matrix` step: which one (`N.k`).
    pub instance: Option<u32>,
    /// `name`; a matrix copy's is `name (K=v, …)`.
    pub name: Option<String>,
    /// `run` as written.
    pub run: String,
    /// `run` split into argv with POSIX shell-word rules.
    pub argv: Vec<String>,
    pub timeout: Option<Duration>,
    /// `always = true`: runs even after an earlier step failed or timed out (never after the run
    /// was cancelled or aborted by a signal).
    pub always: bool,
    /// The step numbers it waits for: `needs` as written, else the step numbered before it.
    pub needs: Vec<u64>,
    /// The step's `env`, in the order of the file.
    pub env: Vec<(String, String)>,
    /// A matrix copy's variables, in the order of the matrix's keys; empty otherwise.
    pub matrix: Vec<(String, String)>,
    /// `allow_failure = true`: its failure is recorded but fails neither the run nor other steps.
    pub allow_failure: bool,
}

/// A step's id: its number, and for a matrix copy `.k` (`3`, `3.1`).
pub fn step_id(index: u64, instance: Option<u32>) -> String {
    match instance {
        Some(k) => format!("{index}.{k}"),
        None => index.to_string(),
    }
}

impl Step {
    /// `3`, or `3.1` for a matrix copy (SPEC §8).
    pub fn id(&self) -> String {
        step_id(self.index, self.instance)
    }

    /// `[1] build: make build`, for headers and plans; untrusted text made terminal-safe.
    pub fn label(&self) -> String {
        let run = crate::describe::terminal(&self.run);
        match &self.name {
            Some(name) => format!("[{}] {}: {run}", self.id(), crate::describe::terminal(name)),
            None => format!("[{}] {run}", self.id()),
        }
    }
}

impl Step {
    /// What in `run` looks written for a shell, which phantom_ci does not use: a hint per problem.
    pub fn shell_warnings(&self) -> Vec<String> {
        lint::shell_warnings(&self.argv)
    }
}

/// A parsed workflow: its steps in numeric order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    /// Where it was read from, for messages (`workflow/main.toml`, or a trusted file's path).
    pub file: String,
    /// Every step to run, matrix copies included, in step order.
    pub steps: Vec<Step>,
    /// The top-level `[env]`, in the order of the file.
    pub env: Vec<(String, String)>,
    /// Whether any step has an explicit `needs` or a `matrix`: the run log then prefixes every step
    /// line with its step (SPEC §8).
    pub graph: bool,
}

/// The keys a step may have.
const STEP_KEYS: &str = "`run`, and optionally `name`, `timeout`, `always`, `needs`, `matrix`, \
                         `env` and `allow_failure`";

impl Workflow {
    /// Parses a workflow's bytes. `file` names it in error messages. The error is the first problem;
    /// [`Workflow::parse_all`] gives every one.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Workflow, WorkflowError> {
        Workflow::parse_all(file, bytes).map_err(|errors| {
            errors.into_iter().next().unwrap_or_else(|| WorkflowError {
                file: file.to_string(),
                step: None,
                line: None,
                message: "invalid".into(),
            })
        })
    }

    /// Parses a workflow's bytes; on failure, every problem found, in the order of the file (at least
    /// one). A TOML syntax error stops the reading there: it is the only error then.
    pub fn parse_all(file: &str, bytes: &[u8]) -> Result<Workflow, Vec<WorkflowError>> {
        // A run reads its workflow this way: no linting, whose warnings only `check` shows.
        Workflow::read(file, bytes, None)
    }

    /// What `check` says of a workflow in one pass: the workflow or every error (as
    /// [`Workflow::parse_all`]), and the warnings of every step whose `run` could be read, valid or
    /// not — so that fixing the errors brings no new surprise.
    pub fn check(file: &str, bytes: &[u8]) -> (Result<Workflow, Vec<WorkflowError>>, Vec<Warning>) {
        let mut warnings = Vec::new();
        let parsed = Workflow::read(file, bytes, Some(&mut warnings));
        warnings.sort_by_key(|w: &Warning| w.line);
        (parsed, warnings)
    }

    /// Parses; with `warnings`, also lints every step's `run` into it.
    fn read(
        file: &str,
        bytes: &[u8],
        mut warnings: Option<&mut Vec<Warning>>,
    ) -> Result<Workflow, Vec<WorkflowError>> {
        let error = |step: Option<&str>, line: Option<usize>, message: String| WorkflowError {
            file: file.to_string(),
            step: step.map(str::to_string),
            line,
            message,
        };
        let text = std::str::from_utf8(bytes)
            .map_err(|e| vec![error(None, None, format!("not valid UTF-8 ({e})"))])?;
        let lines = Lines::new(text);
        let line_of = |offset: usize| lines.line(offset);
        let document = DeTable::parse(text).map_err(|e| match lint::other_format(text) {
            Some(message) => vec![error(None, None, message)],
            None => vec![error(
                None,
                e.span().map(|s| line_of(s.start)),
                e.message().trim().into(),
            )],
        })?;

        let mut errors = Vec::new();
        let mut steps: BTreeMap<u64, Step> = BTreeMap::new();
        let mut workflow_env = Vec::new();
        // Per step number: its explicit `needs`, the line to blame for its graph, its matrix.
        let mut explicit: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        let mut graph_lines: BTreeMap<u64, usize> = BTreeMap::new();
        let mut matrices: BTreeMap<u64, Vec<(String, Vec<String>)>> = BTreeMap::new();
        // The line of each step number's first table: `[01]` and `[1]` are one number.
        let mut numbers: BTreeMap<u64, usize> = BTreeMap::new();
        for (key, value) in document.get_ref() {
            let name: &str = key.get_ref();
            let line = line_of(key.span().start);
            if name == "env" {
                match graph::env(value.get_ref(), "`[env]`") {
                    Ok(vars) => workflow_env = vars,
                    Err(message) => errors.push(error(None, Some(line), message)),
                }
                continue;
            }
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                errors.push(error(
                    Some(name),
                    Some(line),
                    "step keys must be non-negative integers, like `[0]`, `[1]`, `[10]`".into(),
                ));
                continue;
            }
            let Some(table) = value.get_ref().as_table() else {
                errors.push(error(
                    Some(name),
                    Some(line),
                    "a step must be a table with a `run` key: `[0]` then `run = \"...\"`".into(),
                ));
                continue;
            };
            let step_errors = errors.len();
            let index: Option<u64> = name.parse().ok();
            match index {
                None => errors.push(error(
                    Some(name),
                    Some(line),
                    "step number is too large".into(),
                )),
                Some(index) => {
                    let first = *numbers.entry(index).or_insert(line);
                    if first != line {
                        errors.push(error(
                            Some(name),
                            Some(line),
                            format!(
                                "step number {index} is given twice (first on line {first}); \
                                 number the steps apart"
                            ),
                        ));
                    }
                }
            }
            let (mut run, mut step_name, mut timeout, mut always) = (None, None, None, false);
            let (mut needs, mut matrix, mut env, mut allow_failure) =
                (None, None, Vec::new(), false);
            let has_run = table.keys().any(|k| &**k.get_ref() == "run");
            for (field, value) in table {
                let field_line = line_of(field.span().start);
                let value_line = line_of(value.span().start);
                let as_str = value.get_ref().as_str();
                match (&**field.get_ref(), as_str) {
                    ("run", Some(text)) => run = Some((text.to_string(), value_line)),
                    ("name", Some(text)) => step_name = Some(text.to_string()),
                    ("timeout", Some(text)) => match HumanDuration::parse(text) {
                        Ok(duration) => timeout = Some(duration.0),
                        Err(message) => errors.push(error(Some(name), Some(value_line), message)),
                    },
                    (flag @ ("always" | "allow_failure"), _) => match value.get_ref().as_bool() {
                        Some(set) if flag == "always" => always = set,
                        Some(set) => allow_failure = set,
                        None => errors.push(error(
                            Some(name),
                            Some(value_line),
                            format!(
                                "`{flag}` must be `true` or `false`, not {}",
                                value.get_ref().type_str()
                            ),
                        )),
                    },
                    ("needs", _) => match graph::needs(value.get_ref()) {
                        Ok(list) => needs = Some((list, value_line)),
                        Err(message) => errors.push(error(Some(name), Some(value_line), message)),
                    },
                    ("matrix", _) => match graph::matrix(value.get_ref()) {
                        Ok(keys) => matrix = Some((keys, value_line)),
                        Err(message) => errors.push(error(Some(name), Some(value_line), message)),
                    },
                    ("env", _) => match graph::env(value.get_ref(), "the step's `env`") {
                        Ok(vars) => env = vars,
                        Err(message) => errors.push(error(Some(name), Some(value_line), message)),
                    },
                    ("run", None) => errors.push(error(
                        Some(name),
                        Some(value_line),
                        format!(
                            "`run` must be a string, like `run = \"make test\"`, not {}",
                            value.get_ref().type_str()
                        ),
                    )),
                    ("name", None) => errors.push(error(
                        Some(name),
                        Some(value_line),
                        format!(
                            "`name` must be a string, like `name = \"build\"`, not {}",
                            value.get_ref().type_str()
                        ),
                    )),
                    ("timeout", None) => errors.push(error(
                        Some(name),
                        Some(value_line),
                        format!(
                            "`timeout` must be a duration in quotes, like `timeout = \"10m\"`, not {}",
                            value.get_ref().type_str()
                        ),
                    )),
                    (other, _) => errors.push(error(
                        Some(name),
                        Some(field_line),
                        format!(
                            "unknown field `{}`; a step has {STEP_KEYS}",
                            crate::describe::terminal(other)
                        ),
                    )),
                }
            }
            let argv = match &run {
                None if has_run => None,
                None => {
                    errors.push(error(
                        Some(name),
                        Some(line),
                        format!("missing `run`: a step has {STEP_KEYS}"),
                    ));
                    None
                }
                Some((run, run_line)) => match split_run(run) {
                    Ok(argv) => {
                        if let Some(warnings) = warnings.as_deref_mut() {
                            warnings.extend(lint::shell_warnings(&argv).into_iter().map(
                                |message| Warning {
                                    file: file.to_string(),
                                    step: name.to_string(),
                                    line: *run_line,
                                    message,
                                },
                            ));
                        }
                        Some(argv)
                    }
                    Err(message) => {
                        errors.push(error(Some(name), Some(*run_line), message.into()));
                        None
                    }
                },
            };
            let (Some(index), Some((run, _)), Some(argv)) = (index, run, argv) else {
                continue;
            };
            if errors.len() > step_errors {
                continue;
            }
            if steps.contains_key(&index) {
                continue; // said above
            }
            graph_lines.insert(index, needs.as_ref().map_or(line, |(_, l)| *l));
            if let Some((list, _)) = needs {
                explicit.insert(index, list);
            }
            if let Some((keys, _)) = matrix {
                matrices.insert(index, keys);
            }
            steps.insert(
                index,
                Step {
                    index,
                    instance: None,
                    name: step_name,
                    run,
                    argv,
                    timeout,
                    always,
                    needs: Vec::new(),
                    env,
                    matrix: Vec::new(),
                    allow_failure,
                },
            );
        }
        let mut steps: Vec<Step> = steps.into_values().collect();
        if errors.is_empty()
            && let Err(problems) = graph::resolve(&mut steps, &explicit)
                .and_then(|()| graph::check_size(&steps, &matrices).map_err(|p| vec![p]))
        {
            for problem in problems {
                errors.push(error(
                    Some(&problem.step.to_string()),
                    graph_lines.get(&problem.step).copied(),
                    problem.message,
                ));
            }
        }
        if errors.is_empty() && steps.is_empty() {
            errors.push(error(
                None,
                None,
                "no steps; add `[0]` with `run = \"...\"`".into(),
            ));
        }
        if !errors.is_empty() {
            // In the order of the file; a problem without a line (none so far) goes last.
            errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
            return Err(errors);
        }
        Ok(Workflow {
            file: file.to_string(),
            graph: !explicit.is_empty() || !matrices.is_empty(),
            steps: graph::expand(steps, &matrices),
            env: workflow_env,
        })
    }
}

/// `run` split into argv with POSIX shell-word rules, or what is wrong with it.
fn split_run(run: &str) -> Result<Vec<String>, &'static str> {
    let argv = shell_words::split(run)
        .map_err(|_| "`run` has unbalanced quotes or a trailing backslash")?;
    if argv.is_empty() {
        return Err("`run` is empty");
    }
    if argv.iter().any(|arg| arg.contains('\0')) {
        return Err("`run` contains a NUL");
    }
    Ok(argv)
}

/// The path of the workflow for `branch` inside a commit, and the fallback at the root.
pub fn candidate_paths(branch: &str) -> [String; 2] {
    [
        format!("workflow/{branch}.toml"),
        "workflow.toml".to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Workflow, WorkflowError> {
        Workflow::parse("workflow/main.toml", text.as_bytes())
    }

    #[test]
    fn shell_syntax_is_pointed_out() {
        let w = parse("[0]\nrun = \"cd sub && make\"\n[1]\nrun = \"echo $HOME\"\n[2]\nrun = \"sh -c 'cd x && echo $HOME'\"\n[3]\nrun = \"echo 5$\"\n").unwrap();
        let warnings: Vec<usize> = w.steps.iter().map(|s| s.shell_warnings().len()).collect();
        assert_eq!(warnings, [2, 1, 0, 0]);
        assert!(w.steps[0].shell_warnings()[0].contains("builtin"));
    }

    #[test]
    fn steps_run_in_numeric_order() {
        let w = parse("[10]\nrun = \"c\"\n[2]\nrun = \"b\"\n[0]\nrun = \"a\"\n").unwrap();
        let order: Vec<u64> = w.steps.iter().map(|s| s.index).collect();
        assert_eq!(order, [0, 2, 10]);
    }

    #[test]
    fn run_is_split_like_a_shell_but_nothing_is_expanded() {
        let w = parse(
            r#"[0]
run = "echo $HOME 'a  b' \"c d\" e\\ f *"
name = "greet"
timeout = "2s"
"#,
        )
        .unwrap();
        let step = &w.steps[0];
        assert_eq!(step.argv, ["echo", "$HOME", "a  b", "c d", "e f", "*"]);
        assert_eq!(step.timeout, Some(Duration::from_secs(2)));
        assert_eq!(step.label(), "[0] greet: echo $HOME 'a  b' \"c d\" e\\ f *");
    }

    #[test]
    fn always_is_a_boolean_and_off_by_default() {
        let w = parse("[0]\nrun = \"a\"\n[1]\nrun = \"b\"\nalways = true\n").unwrap();
        let always: Vec<bool> = w.steps.iter().map(|s| s.always).collect();
        assert_eq!(always, [false, true]);

        let e = parse("[0]\nrun = \"a\"\nalways = \"yes\"\n").unwrap_err();
        assert_eq!((e.step.as_deref(), e.line), (Some("0"), Some(3)));
        assert!(
            e.message.contains("`always` must be `true` or `false`"),
            "{e}"
        );
    }

    #[test]
    fn every_invalid_case_names_step_and_line() {
        let e = parse("[0]\nrun = \"ok\"\n[x]\nrun = \"pwd\"\n").unwrap_err();
        assert_eq!((e.step.as_deref(), e.line), (Some("x"), Some(3)));
        assert!(e.message.contains("non-negative integers"));

        let e = parse("[0]\nrun = \"ok\"\n\n[1]\nrun = \"echo 'oops\"\n").unwrap_err();
        assert_eq!((e.step.as_deref(), e.line), (Some("1"), Some(5)));
        assert!(e.message.contains("unbalanced"));

        let e = parse("[0]\nrun = \"ok\"\n[1]\nrun = \"x\"\nshell = \"bash\"\n").unwrap_err();
        assert_eq!((e.step.as_deref(), e.line), (Some("1"), Some(5)));
        assert!(e.message.contains("unknown field `shell`"), "{e}");

        let e = parse("[0]\nrun = \"   \"\n").unwrap_err();
        assert_eq!((e.step.as_deref(), e.line), (Some("0"), Some(2)));
        assert!(e.message.contains("empty"));

        let e = parse("[0]\nname = \"x\"\n").unwrap_err();
        assert_eq!(e.step.as_deref(), Some("0"));
        assert!(e.message.contains("missing `run`"), "{e}");

        let e = parse("[0]\nrun = \"ok\"\n[1]\nrun = \"x\"\ntimeout = \"forever\"\n").unwrap_err();
        assert_eq!((e.step.as_deref(), e.line), (Some("1"), Some(5)));

        let e = parse("[0]\nrun = [\"make\"]\n").unwrap_err();
        assert_eq!((e.step.as_deref(), e.line), (Some("0"), Some(2)));
        assert!(e.message.contains("must be a string"), "{e}");

        let e = parse("[0]\nrun = \"ok\"\ntimeout = 10\n").unwrap_err();
        assert_eq!((e.step.as_deref(), e.line), (Some("0"), Some(3)));
        assert!(e.message.contains("in quotes"), "{e}");

        let e = parse("[99999999999999999999999]\nrun = \"ok\"\n").unwrap_err();
        assert!(e.message.contains("too large"), "{e}");

        let e = parse("[0\nrun = 1").unwrap_err();
        assert_eq!(e.line, Some(1));

        let e = parse("run = \"pwd\"\n").unwrap_err();
        assert_eq!(e.step.as_deref(), Some("run"));

        let e = parse("[1]\nrun = \"a\"\n[01]\nrun = \"b\"\n").unwrap_err();
        assert!(e.message.contains("twice"));

        let e = parse("").unwrap_err();
        assert!(e.message.contains("no steps"));

        assert!(Workflow::parse("w.toml", b"\xff\xfe").is_err());
        assert!(
            e.to_string()
                .starts_with("invalid workflow `workflow/main.toml`")
        );
    }

    #[test]
    fn every_problem_is_listed_in_the_order_of_the_file() {
        let text = "[0]\nrun = \"ok\"\n\n[1]\nrun = \"echo 'open\"\n\n[2]\nrun = \"make\"\nshell = \"bash\"\n\n[3]\nrun = \"  \"\ntimeout = \"soon\"\n\n[x]\nrun = \"pwd\"\n";
        let errors = Workflow::parse_all("workflow/main.toml", text.as_bytes()).unwrap_err();
        let found: Vec<(Option<&str>, Option<usize>)> =
            errors.iter().map(|e| (e.step.as_deref(), e.line)).collect();
        assert_eq!(
            found,
            [
                (Some("1"), Some(5)),
                (Some("2"), Some(9)),
                (Some("3"), Some(12)),
                (Some("3"), Some(13)),
                (Some("x"), Some(15)),
            ],
            "{errors:#?}"
        );
        assert!(errors[0].message.contains("unbalanced"));
        assert!(errors[1].message.contains("unknown field `shell`"));
        assert!(errors[2].message.contains("empty"));
        assert!(
            errors[3].message.contains("`soon` is not a duration"),
            "{}",
            errors[3]
        );
        assert!(errors[4].message.contains("non-negative integers"));
        // `parse` gives the first.
        assert_eq!(parse(text).unwrap_err(), errors[0],);
    }
}
