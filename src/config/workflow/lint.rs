//! What `check` says besides errors: words of a `run` that look written for a shell (which
//! phantom_ci never uses), and a file that looks like YAML or JSON rather than TOML.

use std::fmt;

/// Shell builtins: programs that do not exist outside a shell.
const SHELL_BUILTINS: &[&str] = &[
    "cd", "export", "source", ".", "set", "alias", "exit", "unset", "ulimit",
];

/// Words a shell would treat as operators.
const SHELL_OPERATORS: &[&str] = &[
    "&&", "||", "|", ";", "&", ">", ">>", "<", "2>", "2>&1", ">&2",
];

/// A hint about a workflow that is valid (or not) either way: shown by `check`, never an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: String,
    pub step: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warning: `{}` line {}, step `{}`: {}",
            crate::describe::terminal(&self.file),
            self.line,
            crate::describe::terminal(&self.step),
            crate::describe::terminal(&self.message)
        )
    }
}

/// What in `argv` (a step's `run`, split) looks written for a shell: a hint per problem.
pub fn shell_warnings(argv: &[String]) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(program) = argv.first().map(String::as_str) else {
        return Vec::new();
    };
    let name = program.rsplit('/').next().unwrap_or(program);
    if ["sh", "bash", "dash", "zsh", "ksh", "busybox"].contains(&name) {
        return warnings; // a shell was asked for: its script is its business
    }
    if SHELL_BUILTINS.contains(&program) {
        warnings.push(format!(
            "`{program}` is a shell builtin, not a program: no shell is used, write `sh -c '…'`"
        ));
    }
    if let Some(operator) = argv.iter().find(|w| SHELL_OPERATORS.contains(&w.as_str())) {
        warnings.push(format!(
            "`{operator}` is passed to `{}` as an argument, not run as a shell operator; for a \
                 shell, write `sh -c '…'`",
            crate::describe::terminal(program)
        ));
    }
    let variable = argv.iter().find(|w| {
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

/// The smallest valid workflow, for messages.
pub const EXAMPLE: &str = "[0]\nrun = \"make test\"";

/// For a file TOML cannot read: `Some` with one line when it looks like YAML or JSON — what other CI
/// systems take — saying that workflows are TOML, with the smallest valid one.
pub fn other_format(text: &str) -> Option<String> {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    let kind = if first.starts_with('{') {
        "JSON"
    } else if first == "---"
        || first.starts_with("- ")
        || first.split_once(':').is_some_and(|(key, rest)| {
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-. \"'".contains(c))
                && (rest.is_empty() || rest.starts_with(' '))
        })
    {
        "YAML"
    } else {
        return None;
    };
    Some(format!(
        "this looks like {kind}, but a workflow is TOML: a table per step, like `{}`",
        EXAMPLE.replace('\n', "` then `")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_are_told_apart_from_broken_toml() {
        for yaml in [
            "steps:\n  - run: make",
            "---\njobs:",
            "# ci\n- make test",
            "build: make",
        ] {
            assert!(
                other_format(yaml).is_some_and(|m| m.contains("YAML")),
                "{yaml}"
            );
        }
        assert!(other_format("{\"steps\": []}").is_some_and(|m| m.contains("JSON")));
        for toml_ish in ["[0\nrun = \"x\"", "run = \"unterminated", "[0]\nrun = 'a"] {
            assert_eq!(other_format(toml_ish), None, "{toml_ish}");
        }
    }
}
