//! `phantom_ci check [PATH]`: validate workflows and print the plan; nothing runs.
//!
//! In a work tree, the workflows checked are the files being edited — the working tree's — and each one
//! that differs from `HEAD` is named (a push runs what is committed). A bare repository has only
//! `HEAD`'s. Every problem of a workflow is listed, not only the first.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::commands::Context;
use crate::config::workflow::Workflow;
use crate::config::{Config, ConfigError};
use crate::describe::terminal;
use crate::error::{Error, ExitStatus};
use crate::git::{self, MAX_WORKFLOW_SIZE, TreeFile};

/// A workflow's name, and its bytes or why they could not be read.
type Found = (String, Result<Vec<u8>, String>);

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A workflow file, or a git repository: its working tree's workflows are all checked (a bare
    /// repository's: HEAD's) [default: .]
    pub path: Option<PathBuf>,
}

pub fn run(args: CheckArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let configured = check_repo_toml(ctx);
    let path = args.path.unwrap_or_else(|| PathBuf::from("."));
    let (workflows, place) = if path.is_file() {
        let bytes = std::fs::read(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        (vec![(path.display().to_string(), Ok(bytes))], "")
    } else {
        from_repository(&path)?
    };
    if workflows.is_empty() {
        return Err(Error::Usage(format!(
            "`{}` has no workflow{place}: add `workflow/<branch>.toml` or `workflow.toml`",
            terminal(&path.display().to_string())
        )));
    }
    let mut status = configured;
    for (file, bytes) in workflows {
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(why) => {
                eprintln!("{why}");
                status = status.max(ExitStatus::RunFailed);
                continue;
            }
        };
        // Every problem in one pass: errors and warnings together, in the order of the file.
        let (parsed, warnings) = Workflow::check(&file, &bytes);
        match parsed {
            Ok(workflow) => {
                print_plan(&workflow);
                for warning in &warnings {
                    eprintln!("{warning}");
                }
            }
            Err(errors) => {
                let mut lines: Vec<(usize, String)> = errors
                    .iter()
                    .map(|e| (e.line.unwrap_or(usize::MAX), e.to_string()))
                    .chain(warnings.iter().map(|w| (w.line, w.to_string())))
                    .collect();
                lines.sort_by_key(|(line, _)| *line);
                for (_, message) in lines {
                    eprintln!("{message}");
                }
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

/// The workflows of the repository at or above `path`, and where they were looked for (for "has no
/// workflow …").
fn from_repository(path: &Path) -> Result<(Vec<Found>, &'static str), Error> {
    let shown = || terminal(&path.display().to_string());
    if std::fs::symlink_metadata(path).is_err() {
        return Err(Error::Usage(format!("`{}` does not exist", shown())));
    }
    let repo = git2::Repository::discover(path).map_err(|_| {
        Error::Usage(format!(
            "`{}` is neither a workflow file nor inside a git repository",
            shown()
        ))
    })?;
    let head = git::resolve_commit(&repo, "HEAD").ok();
    let Some(workdir) = repo.workdir().map(Path::to_path_buf) else {
        let head = head.ok_or_else(|| {
            Error::Usage(format!(
                "`{}` has no commit yet: nothing to check until something is pushed",
                shown()
            ))
        })?;
        return Ok((committed(&repo, head)?, " at HEAD"));
    };
    let mut found = Vec::new();
    let in_tree = working_tree_paths(&repo, &workdir);
    for file in &in_tree {
        let bytes = read_working_file(&workdir, file);
        let at_head = match head {
            Some(head) => git::read_tree_file(&repo, head, file, MAX_WORKFLOW_SIZE)?,
            None => TreeFile::Missing,
        };
        match (&at_head, &bytes) {
            (TreeFile::File(committed), Ok(on_disk)) if committed == on_disk => {}
            (TreeFile::Missing, _) => eprintln!(
                "note: `{}` is not in HEAD: checked the working tree's version",
                terminal(file)
            ),
            _ => eprintln!(
                "note: `{}` differs from HEAD: checked the working tree's version",
                terminal(file)
            ),
        }
        found.push((file.clone(), bytes));
    }
    if let Some(head) = head {
        for file in git::workflow_paths(&repo, head)? {
            if !in_tree.contains(&file) {
                eprintln!(
                    "note: `{}` is in HEAD but not in the working tree: not checked",
                    terminal(&file)
                );
            }
        }
    }
    Ok((found, " in its working tree"))
}

/// The workflows of a commit, read from the object database.
fn committed(repo: &git2::Repository, head: git2::Oid) -> Result<Vec<Found>, Error> {
    let mut found = Vec::new();
    for file in git::workflow_paths(repo, head)? {
        let bytes = match git::read_tree_file(repo, head, &file, MAX_WORKFLOW_SIZE)? {
            TreeFile::File(bytes) => Ok(bytes),
            TreeFile::Invalid(why) => Err(format!("invalid workflow: {why}")),
            TreeFile::Missing => continue,
        };
        found.push((file, bytes));
    }
    Ok(found)
}

/// `workflow.toml` and the `.toml` files below `workflow/` in the working tree (symbolic links
/// included, to be refused; ignored files left out), `workflow.toml` first, then in name order.
fn working_tree_paths(repo: &git2::Repository, workdir: &Path) -> Vec<String> {
    let mut paths = Vec::new();
    if std::fs::symlink_metadata(workdir.join("workflow.toml")).is_ok() {
        paths.push("workflow.toml".to_string());
    }
    let mut below = Vec::new();
    let mut pending = vec!["workflow".to_string()];
    while let Some(dir) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(workdir.join(&dir)) else {
            continue;
        };
        if !meta.is_dir() {
            // `workflow` itself a symbolic link (or a file): what a push would refuse.
            if dir == "workflow" && meta.file_type().is_symlink() {
                below.push(dir);
            }
            continue;
        }
        let Ok(entries) = std::fs::read_dir(workdir.join(&dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let relative = format!("{dir}/{name}");
            if repo.is_path_ignored(Path::new(&relative)).unwrap_or(false) {
                continue;
            }
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(relative),
                Ok(_) if name.ends_with(".toml") => below.push(relative),
                _ => {}
            }
        }
    }
    below.sort();
    paths.extend(below);
    paths
}

/// A working tree's workflow file, refused as a push would refuse it: a symbolic link anywhere on the
/// path, something other than a regular file, more than [`MAX_WORKFLOW_SIZE`] bytes.
fn read_working_file(workdir: &Path, file: &str) -> Result<Vec<u8>, String> {
    let invalid = |why: String| format!("invalid workflow `{}`: {why}", terminal(file));
    let mut prefix = workdir.to_path_buf();
    for part in file.split('/') {
        prefix.push(part);
        let meta = std::fs::symlink_metadata(&prefix)
            .map_err(|e| invalid(format!("cannot read it: {e}")))?;
        if meta.file_type().is_symlink() {
            let shown = prefix.strip_prefix(workdir).unwrap_or(&prefix).display();
            return Err(invalid(format!(
                "`{}` is a symbolic link; a workflow must be a regular file",
                terminal(&shown.to_string())
            )));
        }
    }
    let file_path = workdir.join(file);
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&file_path)
        .map_err(|e| invalid(format!("cannot read it: {e}")))?;
    let meta = opened
        .metadata()
        .map_err(|e| invalid(format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(invalid("it is not a regular file".into()));
    }
    let mut bytes = Vec::new();
    opened
        .take(MAX_WORKFLOW_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| invalid(format!("cannot read it: {e}")))?;
    if bytes.len() > MAX_WORKFLOW_SIZE {
        return Err(invalid(format!(
            "it is more than {MAX_WORKFLOW_SIZE} bytes, the most a workflow may have"
        )));
    }
    Ok(bytes)
}

fn print_plan(workflow: &Workflow) {
    let count = workflow.steps.len();
    println!(
        "{}: {count} step{}",
        terminal(&workflow.file),
        if count == 1 { "" } else { "s" }
    );
    for step in &workflow.steps {
        let mut notes = Vec::new();
        if let Some(timeout) = step.timeout {
            notes.push(format!("timeout {}", humantime::format_duration(timeout)));
        }
        if step.always {
            notes.push("always".to_string());
        }
        if step.allow_failure {
            notes.push("allow_failure".to_string());
        }
        if workflow.graph {
            let needs: Vec<String> = step.needs.iter().map(u64::to_string).collect();
            notes.push(match needs.is_empty() {
                true => "needs nothing".to_string(),
                false => format!("needs {}", needs.join(", ")),
            });
        }
        if notes.is_empty() {
            println!("  {}", step.label());
        } else {
            println!("  {} ({})", step.label(), notes.join(", "));
        }
    }
}
