//! `phantom_ci add <PATH|URL> [BRANCH]`: append a repo to Repo.toml, leaving every other byte as it was.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::commands::Context;
use crate::config::edit;
use crate::config::{self, Config, DEFAULT_BRANCH, Location};
use crate::describe::terminal;
use crate::error::{Error, ExitStatus};
use crate::install::hook_template::{self, Existing};

#[derive(Debug, Args)]
pub struct AddArgs {
    /// A local git repository (bare or not; relative paths are resolved), or a URL: file://, https://,
    /// ssh:// or git@host:path
    #[arg(value_name = "PATH|URL")]
    pub location: String,
    /// The branch that runs [default: master]
    #[arg(value_name = "BRANCH")]
    pub branch_arg: Option<String>,
    /// The branch that runs (the same as BRANCH)
    #[arg(long, value_name = "B")]
    pub branch: Option<String>,
    /// The repo's name [default: the last component of PATH|URL without `.git`]
    #[arg(long, value_name = "N")]
    pub name: Option<String>,
    /// The user the steps run as (when phantom_ci runs as root)
    #[arg(long, value_name = "USER")]
    pub run_as: Option<String>,
}

pub fn run(args: AddArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let branch = match (args.branch_arg, args.branch) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::Usage(format!(
                "the branch is given twice, as `{}` and as `--branch {}`; give it once",
                terminal(&a),
                terminal(&b)
            )));
        }
        (a, b) => a.or(b).unwrap_or_else(|| DEFAULT_BRANCH.to_string()),
    };
    config::validate_branch(&branch).map_err(Error::Usage)?;
    let location = resolve_location(&args.location)?;
    let name = args.name.clone().unwrap_or_else(|| location.default_name());
    config::validate_repo_name(&name)
        .map_err(|e| Error::Usage(format!("{e}; choose one with `--name`")))?;
    if let Some(user) = &args.run_as {
        check_user(user)?;
    }

    let file = ctx.dirs.repo_toml();
    let text = config::read_repo_toml(&file)?.unwrap_or_default();
    let current = Config::parse(&file, &text)?;
    if current.get(&name).is_some() {
        let line = edit::header_line(&text, &name)
            .map(|l| format!(" line {l}"))
            .unwrap_or_default();
        return Err(Error::Usage(format!(
            "repo `{name}` already exists (`{}`{line}); choose another name with `--name`, or \
             `{}` first",
            file.display(),
            ctx.suggest(&["remove", &name])
        )));
    }
    let section = edit::render_section(
        &name,
        &location.as_written(),
        &branch,
        args.run_as.as_deref(),
    );
    let location_text = location.to_string();
    let new_text = edit::append(&text, &section);
    let parsed = Config::parse(&file, &new_text).map_err(|e| {
        Error::Usage(format!(
            "the new section would make Repo.toml invalid, so nothing was written: {e}"
        ))
    })?;
    if parsed
        .get(&name)
        .is_none_or(|r| r.location != location || r.branches.single() != Some(branch.as_str()))
    {
        return Err(Error::Other(format!(
            "the new section of `{name}` does not read back as written; nothing was written"
        )));
    }
    if let Some(dir) = file.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| Error::io("cannot create", dir, e))?;
    }
    edit::save(&file, &new_text).map_err(|e| Error::io("cannot write", &file, e))?;

    println!(
        "added `{name}`: {} (branch {}) to `{}`",
        terminal(&location_text),
        terminal(&branch),
        file.display()
    );
    for other in current.repos.iter().filter(|r| r.location == location) {
        eprintln!(
            "phantom_ci: note: `{}` uses the same repository (branch {})",
            other.name,
            terminal(&other.branches.to_string())
        );
    }
    // `add` again as given, for the notes that suggest it with one thing changed.
    let again = |branch: &str, run_as: Option<&str>| {
        ctx.suggest(&["add"])
            .arg(&location_text)
            .arg(branch)
            .option("--name", args.name.as_deref())
            .option("--run-as", run_as)
    };
    let remove = ctx.suggest(&["remove", &name]);
    if args.run_as.is_none() && nix::unistd::geteuid().is_root() {
        eprintln!(
            "phantom_ci: note: started as root, phantom_ci runs no step of `{name}` until it has a \
             `run_as` user: `{remove}`, then `{}`",
            again(&branch, None).placeholder("--run-as USER")
        );
    }
    if let Location::Local(path) = &location {
        let branch_note = |head: &str| {
            format!(
                "to run that one instead: `{remove}`, then `{}`",
                again(head, args.run_as.as_deref())
            )
        };
        hint_for_local(path, &name, &branch, ctx, &branch_note);
    }
    Ok(ExitStatus::Success)
}

/// A URL as written; a local path resolved, canonicalised and checked to be a git repository.
fn resolve_location(text: &str) -> Result<Location, Error> {
    match Location::parse(text) {
        Ok(url @ Location::Url(_)) => return Ok(url),
        Err(e) if text.contains("://") => return Err(Error::Usage(e)),
        _ => {}
    }
    let shown = terminal(text);
    let canonical = Path::new(text).canonicalize().map_err(|e| {
        Error::Usage(match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "`{shown}` does not exist (give the path of a git repository, or a URL: file://, \
                 https://, ssh://, git@host:path)"
            ),
            _ => format!("cannot resolve `{shown}`: {e}"),
        })
    })?;
    crate::git::open(&canonical).map_err(|e| match e {
        crate::git::GitError::NotARepository { .. } => Error::Usage(format!(
            "{e}; give the repository's own directory (the one with `.git`, or a bare repository)"
        )),
        e => Error::Git(e),
    })?;
    let text = canonical.to_str().ok_or_else(|| {
        Error::Usage(format!(
            "`{}` is not valid UTF-8 and cannot be written into Repo.toml",
            canonical.display()
        ))
    })?;
    Location::parse(text).map_err(Error::Usage)
}

fn check_user(user: &str) -> Result<(), Error> {
    match nix::unistd::User::from_name(user) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Error::Usage(format!(
            "there is no user `{}` on this system; create it first, or fix `--run-as`",
            terminal(user)
        ))),
        Err(e) => Err(Error::Usage(format!(
            "cannot look up the user `{}`: {e}",
            terminal(user)
        ))),
    }
}

/// For a bare repository: how to make pushes run it (or that its hook already does), and a word if
/// the branch does not exist yet.
fn hint_for_local(
    path: &Path,
    name: &str,
    branch: &str,
    ctx: &Context,
    branch_note: &dyn Fn(&str) -> String,
) {
    let Ok(repo) = git2::Repository::open(path) else {
        return;
    };
    if repo
        .find_reference(&format!("refs/heads/{branch}"))
        .is_err()
    {
        let head = crate::git::head_branch(&repo)
            .filter(|h| h != branch && repo.find_reference(&format!("refs/heads/{h}")).is_ok());
        match head {
            Some(head) => eprintln!(
                "phantom_ci: note: the repository has no branch `{}` yet; its HEAD is `{}` ({})",
                terminal(branch),
                terminal(&head),
                branch_note(&head)
            ),
            None => eprintln!(
                "phantom_ci: note: the repository has no branch `{}` yet; it runs once one is pushed",
                terminal(branch)
            ),
        }
    }
    if !repo.is_bare() {
        return;
    }
    let configure = ctx.suggest(&["configure", "hook"]).arg(path);
    match hook_template::existing(path) {
        Existing::Ours {
            config_dir,
            data_dir,
            wait,
        } => {
            let same = |given: Option<PathBuf>, ours: &Path| {
                given.is_some_and(|g| g == ours || g.canonicalize().is_ok_and(|g| g == ours))
            };
            if same(config_dir, &ctx.dirs.config) && same(data_dir, &ctx.dirs.data) {
                println!(
                    "the post-receive hook of `{}` covers it: it serves every repo of this path in \
                     `{}`, so pushes to `{}` run `{name}`",
                    path.display(),
                    ctx.dirs.repo_toml().display(),
                    terminal(branch)
                );
            } else {
                println!(
                    "the post-receive hook of `{}` runs phantom_ci with another configuration; to \
                     run `{name}` on every push, replace it: {}",
                    path.display(),
                    configure.flag("--wait", wait).arg("--force")
                );
            }
        }
        Existing::Foreign => println!(
            "`{}` has a post-receive hook that is not phantom_ci's; to run on every push, look at \
             it, then: {}",
            path.join("hooks/post-receive").display(),
            configure.arg("--force")
        ),
        Existing::None => println!("to run on every push: {configure}"),
    }
}
