//! `phantom_ci cache clear <REPO>`: empty a repo's build cache (`cache = true`, SPEC §6).

use clap::{Args, Subcommand};

use crate::commands::Context;
use crate::config::{self, Config};
use crate::error::{Error, ExitStatus};
use crate::state::cache;
use crate::state::lock::RepoLock;

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: CacheAction,
}

#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Empty the repo's build cache (waits for a run of the repo in progress to end)
    Clear {
        /// The repo's name in Repo.toml (see `phantom_ci status`)
        repo: String,
    },
}

pub fn run(args: CacheArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let CacheAction::Clear { repo } = args.action;
    config::validate_repo_name(&repo).map_err(Error::Usage)?;
    let dir = cache::path(&ctx.dirs, &repo);
    let file = ctx.dirs.repo_toml();
    let configured = Config::load(&file)?.get(&repo).is_some();
    if !configured && !dir.exists() {
        return Err(Error::Usage(format!(
            "no repo `{repo}` in `{}` and no cache of that name; see `{}`",
            file.display(),
            ctx.suggest(&["status"])
        )));
    }
    // A run of the repo uses its cache until it ends: wait for it, as `run` does.
    let lock = match RepoLock::acquire(&ctx.dirs, &repo, false)? {
        Some(lock) => lock,
        None => {
            eprintln!("phantom_ci: a run of `{repo}` is in progress; waiting for it to end");
            RepoLock::acquire(&ctx.dirs, &repo, true)?
                .ok_or_else(|| Error::Other("cannot lock the repo".into()))?
        }
    };
    let cleared = cache::clear(&ctx.dirs, &repo).map_err(Error::Other)?;
    drop(lock);
    if cleared {
        println!("cache of `{repo}` cleared ({})", dir.display());
    } else {
        println!("`{repo}` has no cache yet; nothing to clear");
    }
    Ok(ExitStatus::Success)
}
