//! `phantom_ci check [PATH]`: validate workflows and print the plan; nothing runs.

use std::path::PathBuf;

use clap::Args;

use crate::commands::Context;
use crate::config::workflow::Workflow;
use crate::config::{Config, ConfigError};
use crate::error::{Error, ExitStatus};
use crate::git::{self, MAX_WORKFLOW_SIZE, TreeFile};

/// A workflow's name, and its bytes or why they could not be read.
type Found = (String, Result<Vec<u8>, String>);

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A workflow file, or a git repository whose HEAD's workflows are all checked [default: .]
    pub path: Option<PathBuf>,
}

pub fn run(args: CheckArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let configured = check_repo_toml(ctx);
    let path = args.path.unwrap_or_else(|| PathBuf::from("."));
    let workflows: Vec<Found> = if path.is_file() {
        let bytes = std::fs::read(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        vec![(path.display().to_string(), Ok(bytes))]
    } else {
        from_repository(&path)?
    };
    if workflows.is_empty() {
        return Err(Error::Usage(format!(
            "`{}` has no workflow at HEAD: add `workflow/<branch>.toml` or `workflow.toml`",
            path.display()
        )));
    }
    let mut status = configured;
    for (file, bytes) in workflows {
        match bytes.and_then(|b| Workflow::parse(&file, &b).map_err(|e| e.to_string())) {
            Ok(workflow) => print_plan(&workflow),
            Err(message) => {
                eprintln!("{message}");
                status = status.max(ExitStatus::RunFailed);
            }
        }
    }
    Ok(status)
}

/// Reports what is wrong with `Repo.toml` (a repo whose `path` or `run_as` user does not exist, or the
/// file itself) on stderr; the workflows are checked either way.
fn check_repo_toml(ctx: &Context) -> ExitStatus {
    match Config::load(&ctx.dirs.repo_toml()) {
        Ok(config) => {
            let mut status = ExitStatus::Success;
            for problem in config.broken().flat_map(|r| &r.problems) {
                eprintln!("phantom_ci: {problem}");
                status = ExitStatus::RunFailed;
            }
            status
        }
        // Someone checking a workflow may not be allowed to read the service's configuration.
        Err(e @ ConfigError::Read { .. }) => {
            eprintln!("phantom_ci: note: {e}; only the workflows are checked");
            ExitStatus::Success
        }
        Err(e) => {
            eprintln!("phantom_ci: {e}");
            ExitStatus::Usage
        }
    }
}

fn from_repository(path: &std::path::Path) -> Result<Vec<Found>, Error> {
    let repo = git2::Repository::discover(path).map_err(|e| {
        Error::Usage(format!(
            "`{}` is neither a workflow file nor inside a git repository: {}",
            path.display(),
            e.message()
        ))
    })?;
    let head = git::resolve_commit(&repo, "HEAD").map_err(|_| {
        Error::Usage(format!(
            "`{}` has no commit yet: phantom_ci runs workflows from commits; check a file itself \
             with `phantom_ci check workflow/<branch>.toml`",
            path.display()
        ))
    })?;
    let mut workflows = Vec::new();
    for file in git::workflow_paths(&repo, head)? {
        let bytes = match git::read_tree_file(&repo, head, &file, MAX_WORKFLOW_SIZE)? {
            TreeFile::File(bytes) => Ok(bytes),
            TreeFile::Invalid(why) => Err(format!("invalid workflow: {why}")),
            TreeFile::Missing => continue,
        };
        // What runs is what is committed; say so when the working tree has something else.
        if let (Some(workdir), Ok(committed)) = (repo.workdir(), &bytes)
            && std::fs::read(workdir.join(&file)).is_ok_and(|on_disk| &on_disk != committed)
        {
            eprintln!(
                "note: `{}` has uncommitted changes; this checks the committed version (check the \
                 file itself with `phantom_ci check {}`)",
                crate::describe::terminal(&file),
                crate::describe::terminal(&workdir.join(&file).display().to_string())
            );
        }
        workflows.push((file, bytes));
    }
    Ok(workflows)
}

fn print_plan(workflow: &Workflow) {
    let count = workflow.steps.len();
    println!(
        "{}: {count} step{}",
        crate::describe::terminal(&workflow.file),
        if count == 1 { "" } else { "s" }
    );
    for step in &workflow.steps {
        for warning in step.shell_warnings() {
            eprintln!(
                "warning: {}: step `{}`: {warning}",
                crate::describe::terminal(&workflow.file),
                step.index
            );
        }
        match step.timeout {
            Some(timeout) => println!(
                "  {} (timeout {})",
                step.label(),
                humantime::format_duration(timeout)
            ),
            None => println!("  {}", step.label()),
        }
    }
}
