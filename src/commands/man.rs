//! `phantom_ci man`: the manual page (roff, from the same clap definitions as `--help`), on stdout.
//! Read it with `phantom_ci man | man -l -`; packages install it as `phantom_ci.1`.

use std::io::Write;

use clap::Args;

use crate::error::{Error, ExitStatus};

#[derive(Debug, Args)]
pub struct ManArgs {}

/// `command` is phantom_ci's whole command line, as the faces define it.
pub fn run(_args: ManArgs, command: clap::Command) -> Result<ExitStatus, Error> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .map_err(|e| Error::Other(format!("cannot render the manual page: {e}")))?;
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`phantom_ci man | head`) is not an error worth reporting.
    let _ = stdout.write_all(&page).and_then(|()| stdout.flush());
    Ok(ExitStatus::Success)
}
