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
    #[arg(required_unless_present = "merge", conflicts_with = "merge")]
    pub dir: Option<PathBuf>,
    /// Write ROOT/index.html over the host reports in ROOT's subfolders (each written by a runner
    /// host's `report ROOT/HOST`)
    #[arg(long, value_name = "ROOT")]
    pub merge: Option<PathBuf>,
}

pub fn run(args: ReportArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let Some(dir) = args.dir else {
        return match args.merge {
            Some(root) => merge(&root),
            None => Err(Error::Usage(
                "give the report's folder, or `--merge <ROOT>`".into(),
            )),
        };
    };
    let config = Config::load(&ctx.dirs.repo_toml())?;
    let dir = std::path::absolute(&dir)
        .map_err(|e| Error::io("cannot resolve the report directory", &dir, e))?;
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

/// `report --merge <ROOT>`: the index over every host's report; a host whose summary cannot be read
/// is listed as such, and said here.
fn merge(root: &std::path::Path) -> Result<ExitStatus, Error> {
    let merged = report::merge::merge(root)?;
    println!("{}", merged.index.display());
    let mut status = ExitStatus::Success;
    for host in &merged.hosts {
        if let Err(why) = &host.summary {
            eprintln!(
                "phantom_ci: host folder `{}`: {why}; write it with `phantom_ci report {}`",
                crate::describe::terminal(&host.folder),
                root.join(&host.folder).display()
            );
            status = ExitStatus::RunFailed;
        }
    }
    if merged.hosts.is_empty() {
        eprintln!(
            "phantom_ci: note: no host report in `{}` yet; each runner writes one with `phantom_ci \
             report {}/<host>`",
            root.display(),
            root.display()
        );
    }
    Ok(status)
}
