//! `phantom_ci report <DIR>`: write the static HTML report (SPEC §5) and say where its index is.

use std::path::PathBuf;

use clap::Args;

use crate::commands::Context;
use crate::config::Config;
use crate::error::{Error, ExitStatus};
use crate::report;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The folder to write into (created if missing); files phantom_ci did not write are left alone
    pub dir: PathBuf,
}

pub fn run(args: ReportArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let config = Config::load(&ctx.dirs.repo_toml())?;
    let dir = std::path::absolute(&args.dir)
        .map_err(|e| Error::io("cannot resolve the report directory", &args.dir, e))?;
    let index = report::write(&ctx.dirs, &config, &dir)?;
    println!("{}", index.display());
    Ok(ExitStatus::Success)
}
