//! `phantom_ci work` (hidden): the detached worker a hook starts. Drains the queue and exits; its own
//! messages go to `<data>/worker.log`, the runs' output to their logs.

use clap::Args;

use crate::commands::Context;
use crate::config::Config;
use crate::error::{Error, ExitStatus};
use crate::worker;

#[derive(Debug, Args)]
pub struct WorkArgs {}

pub fn run(_args: WorkArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let config = Config::load(&ctx.dirs.repo_toml())?;
    let drained = worker::drain(&ctx.dirs, &config, &|| None);
    let stamp = crate::state::records::rfc3339(std::time::SystemTime::now());
    for finished in &drained.finished {
        let record = &finished.record;
        eprintln!(
            "{stamp} {} #{} {}",
            record.repo,
            record.run,
            record.result.as_str()
        );
        for note in &finished.notes {
            eprintln!("{stamp} {}: {note}", record.repo);
        }
    }
    for note in &drained.notes {
        eprintln!("{stamp} note: {note}");
    }
    for error in &drained.errors {
        eprintln!("{stamp} {error}");
    }
    Ok(if drained.all_succeeded() {
        ExitStatus::Success
    } else {
        ExitStatus::RunFailed
    })
}
