//! The workflow: numbered steps from `workflow/<branch>.toml`, written by whoever can push — untrusted
//! (SPEC §2.2). Parsing never runs anything; every problem names the file, the step and the line.

use std::collections::BTreeMap;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use crate::config::line_column;
use crate::config::quantities::HumanDuration;

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

/// One step, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The TOML key.
    pub index: u64,
    pub name: Option<String>,
    /// `run` as written.
    pub run: String,
    /// `run` split into argv with POSIX shell-word rules.
    pub argv: Vec<String>,
    pub timeout: Option<Duration>,
}

impl Step {
    /// `[1] build: make build`, for headers and plans; untrusted text made terminal-safe.
    pub fn label(&self) -> String {
        let run = crate::describe::terminal(&self.run);
        match &self.name {
            Some(name) => format!(
                "[{}] {}: {run}",
                self.index,
                crate::describe::terminal(name)
            ),
            None => format!("[{}] {run}", self.index),
        }
    }
}

/// Shell builtins: programs that do not exist outside a shell.
const SHELL_BUILTINS: &[&str] = &[
    "cd", "export", "source", ".", "set", "alias", "exit", "unset", "ulimit",
];

/// Words a shell would treat as operators.
const SHELL_OPERATORS: &[&str] = &[
    "&&", "||", "|", ";", "&", ">", ">>", "<", "2>", "2>&1", ">&2",
];

impl Step {
    /// What in `run` looks written for a shell, which phantom_ci does not use: a hint per problem.
    pub fn shell_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let program = self.argv[0].as_str();
        let name = program.rsplit('/').next().unwrap_or(program);
        if ["sh", "bash", "dash", "zsh", "ksh", "busybox"].contains(&name) {
            return warnings; // a shell was asked for: its script is its business
        }
        if SHELL_BUILTINS.contains(&program) {
            warnings.push(format!(
                "`{program}` is a shell builtin, not a program: no shell is used, write `sh -c '…'`"
            ));
        }
        if let Some(operator) = self
            .argv
            .iter()
            .find(|w| SHELL_OPERATORS.contains(&w.as_str()))
        {
            warnings.push(format!(
                "`{operator}` is passed to `{}` as an argument, not run as a shell operator; for a \
                 shell, write `sh -c '…'`",
                crate::describe::terminal(program)
            ));
        }
        let variable = self.argv.iter().find(|w| {
            let mut chars = w.chars().skip_while(|c| *c != '$').skip(1);
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '{' || c == '(')
        });
        if let Some(word) = variable {
            warnings.push(format!(
                "`{}` is passed as written: no shell expands variables; for a shell, write \
                 `sh -c '…'`",
                crate::describe::terminal(word)
            ));
        }
        warnings
    }
}

/// A parsed workflow: its steps in numeric order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    /// Where it was read from, for messages (`workflow/main.toml`, or a trusted file's path).
    pub file: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a step: `[0]` on a line of its own, then `run = \"…\"` below it"
)]
struct RawStep {
    run: Spanned<String>,
    name: Option<String>,
    timeout: Option<HumanDuration>,
}

impl Workflow {
    /// Parses a workflow's bytes. `file` names it in error messages.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Workflow, WorkflowError> {
        let error = |step: Option<String>, line: Option<usize>, message: String| WorkflowError {
            file: file.to_string(),
            step,
            line,
            message,
        };
        let text = std::str::from_utf8(bytes)
            .map_err(|e| error(None, None, format!("not valid UTF-8 ({e})")))?;
        let line_of = |offset: usize| line_column(text, offset).0;

        // First pass: the TOML syntax, and where each top-level table starts.
        let tables: IndexMap<String, Spanned<toml::Value>> = toml::from_str(text).map_err(|e| {
            error(
                None,
                e.span().map(|s| line_of(s.start)),
                e.message().trim().into(),
            )
        })?;
        let step_at = |offset: usize| {
            tables
                .iter()
                .rev()
                .find(|(_, v)| v.span().start <= offset)
                .map(|(k, _)| k.clone())
        };
        for (key, value) in &tables {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
                return Err(error(
                    Some(key.clone()),
                    Some(line_of(value.span().start)),
                    "step keys must be non-negative integers, like `[0]`, `[1]`, `[10]`".into(),
                ));
            }
            if !value.get_ref().is_table() {
                return Err(error(
                    Some(key.clone()),
                    Some(line_of(value.span().start)),
                    "a step must be a table with a `run` key: `[0]` then `run = \"...\"`".into(),
                ));
            }
        }

        // Second pass: each step's keys, with the position of the offending one.
        let raw: IndexMap<String, Spanned<RawStep>> = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            error(
                offset.and_then(step_at),
                offset.map(line_of),
                e.message().trim().into(),
            )
        })?;

        let mut steps = BTreeMap::new();
        for (key, step) in raw {
            let line = line_of(step.span().start);
            let index: u64 = key.parse().map_err(|_| {
                error(
                    Some(key.clone()),
                    Some(line),
                    "step number is too large".into(),
                )
            })?;
            let step = step.into_inner();
            let run_line = line_of(step.run.span().start);
            let run = step.run.into_inner();
            let argv = shell_words::split(&run).map_err(|_| {
                error(
                    Some(key.clone()),
                    Some(run_line),
                    "`run` has unbalanced quotes or a trailing backslash".into(),
                )
            })?;
            if argv.is_empty() {
                return Err(error(
                    Some(key.clone()),
                    Some(run_line),
                    "`run` is empty".into(),
                ));
            }
            if argv.iter().any(|arg| arg.contains('\0')) {
                return Err(error(
                    Some(key.clone()),
                    Some(run_line),
                    "`run` contains a NUL".into(),
                ));
            }
            let parsed = Step {
                index,
                name: step.name,
                run,
                argv,
                timeout: step.timeout.map(|t| t.0),
            };
            if steps.insert(index, parsed).is_some() {
                return Err(error(
                    Some(key.clone()),
                    Some(line),
                    format!("step number {index} is given twice"),
                ));
            }
        }
        if steps.is_empty() {
            return Err(error(
                None,
                None,
                "no steps; add `[0]` with `run = \"...\"`".into(),
            ));
        }
        Ok(Workflow {
            file: file.to_string(),
            steps: steps.into_values().collect(),
        })
    }
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
        assert!(e.message.contains("missing field `run`"), "{e}");

        let e = parse("[0]\nrun = \"ok\"\n[1]\nrun = \"x\"\ntimeout = \"forever\"\n").unwrap_err();
        assert_eq!((e.step.as_deref(), e.line), (Some("1"), Some(5)));

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
}
