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
    let written = report::write(&ctx.dirs, &config, &dir)?;
    println!("{}", written.index.display());
    // The report lists them as unreadable; the operator hears of it here.
    for unreadable in &written.unreadable {
        eprintln!("phantom_ci: {unreadable}");
    }
    Ok(if written.unreadable.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::RunFailed
    })
}
