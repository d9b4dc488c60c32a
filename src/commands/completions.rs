//! `phantom_ci completions <SHELL>`: the shell's completion script for phantom_ci, on stdout
//! (clap_complete). Install it where the shell looks, e.g. for bash
//! `phantom_ci completions bash > /usr/share/bash-completion/completions/phantom_ci`.

use clap::Args;
use clap_complete::Shell;

use crate::error::{Error, ExitStatus};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `command` is phantom_ci's whole command line, as the faces define it.
pub fn run(args: CompletionsArgs, mut command: clap::Command) -> Result<ExitStatus, Error> {
    clap_complete::generate(
        args.shell,
        &mut command,
        "phantom_ci",
        &mut std::io::stdout(),
    );
    Ok(ExitStatus::Success)
}
