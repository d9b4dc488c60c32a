//! `phantom_ci remove <NAME>`: delete one repo's section from Repo.toml, and only its own lines.

use clap::Args;

use crate::commands::Context;
use crate::config::edit::{self, EditError};
use crate::config::{self, Config};
use crate::describe::terminal;
use crate::error::{Error, ExitStatus};

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The repo's name in Repo.toml (see `phantom_ci list`)
    pub name: String,
}

pub fn run(args: RemoveArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let name = args.name;
    config::validate_repo_name(&name).map_err(Error::Usage)?;
    let file = ctx.dirs.repo_toml();
    let text = config::read_repo_toml(&file)?.unwrap_or_default();
    Config::parse(&file, &text)?;
    let new_text = edit::remove(&text, &name).map_err(|e| match e {
        EditError::NoSuchRepo(_) => Error::Usage(format!(
            "no repo `{}` in `{}`; see `{}`",
            terminal(&name),
            file.display(),
            ctx.suggest(&["list"])
        )),
        EditError::NotASection { line, .. } => Error::Usage(format!(
            "`{}` line {line}: repo `{name}` is written as keys of the top level, not as a \
             `[{name}]` section; remove its lines by hand",
            file.display()
        )),
        EditError::Unparsable(message) => {
            Error::Usage(format!("cannot edit `{}`: {message}", file.display()))
        }
    })?;
    let parsed = Config::parse(&file, &new_text).map_err(|e| {
        Error::Other(format!(
            "removing `{name}` would leave Repo.toml invalid, so nothing was written: {e}"
        ))
    })?;
    if parsed.get(&name).is_some() {
        return Err(Error::Other(format!(
            "`{name}` is still there after removing its section; nothing was written"
        )));
    }
    edit::save(&file, &new_text).map_err(|e| Error::io("cannot write", &file, e))?;
    println!("removed `{name}` from `{}`", file.display());
    // Its base trees (whole checkouts of its branches) go: nothing else uses them.
    crate::git::base::remove_repo(&ctx.dirs, &name);
    if ctx.dirs.runs(&name).is_dir() {
        eprintln!(
            "phantom_ci: note: its run records stay in `{}`",
            ctx.dirs.runs(&name).display()
        );
    }
    Ok(ExitStatus::Success)
}
