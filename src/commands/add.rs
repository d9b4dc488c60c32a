//! `phantom_ci add <PATH|URL> [BRANCH]`: append a repo to Repo.toml, leaving every other byte as it was.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use clap::Args;

use crate::commands::Context;
use crate::config::edit;
use crate::config::{self, Config, DEFAULT_BRANCH, Location};
use crate::describe::terminal;
use crate::error::{Error, ExitStatus};

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
    let name = args.name.unwrap_or_else(|| location.default_name());
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
             `phantom_ci remove {name}` first",
            file.display()
        )));
    }
    let location_text = location.to_string();
    let section = edit::render_section(&name, &location_text, &branch, args.run_as.as_deref());
    let new_text = edit::append(&text, &section);
    let parsed = Config::parse(&file, &new_text).map_err(|e| {
        Error::Usage(format!(
            "the new section would make Repo.toml invalid, so nothing was written: {e}"
        ))
    })?;
    if parsed
        .get(&name)
        .is_none_or(|r| r.location != location || r.branch != branch)
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
            terminal(&other.branch)
        );
    }
    if args.run_as.is_none() && nix::unistd::geteuid().is_root() {
        eprintln!(
            "phantom_ci: note: started as root, phantom_ci runs no step of `{name}` until it has a \
             `run_as` user (`phantom_ci remove {name}`, then add it again with `--run-as USER`)"
        );
    }
    if let Location::Local(path) = &location {
        hint_for_local(path, &branch, ctx);
    }
    Ok(ExitStatus::Success)
}

/// A URL as written; a local path resolved, canonicalised and checked to be a git repository.
fn resolve_location(text: &str) -> Result<Location, Error> {
    if let Ok(url @ Location::Url(_)) = Location::parse(text) {
        return Ok(url);
    }
    let canonical = Path::new(text).canonicalize().map_err(|e| {
        Error::Usage(format!(
            "`{}` is neither an existing directory ({e}) nor a URL (file://, https://, ssh://, \
             git@host:path)",
            terminal(text)
        ))
    })?;
    git2::Repository::open_ext(
        &canonical,
        git2::RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(|e| {
        Error::Usage(format!(
            "`{}` is not a git repository ({}); give the repository's own directory",
            canonical.display(),
            e.message()
        ))
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

/// For a bare repository: how to make pushes run it, and a word if the branch does not exist yet.
fn hint_for_local(path: &Path, branch: &str, ctx: &Context) {
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
                "phantom_ci: note: the repository has no branch `{}` yet; its HEAD is `{}` \
                 (to run that one instead: `phantom_ci remove` it and add it again with that branch)",
                terminal(branch),
                terminal(&head)
            ),
            None => eprintln!(
                "phantom_ci: note: the repository has no branch `{}` yet; it runs once one is pushed",
                terminal(branch)
            ),
        }
    }
    if repo.is_bare() {
        println!(
            "to run on every push: {} configure hook {}",
            ctx.invocation,
            shell_words::quote(&path.to_string_lossy())
        );
    }
}
