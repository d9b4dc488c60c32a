//! The `phantom_ci` binary: parse the command line, run, map the outcome to an exit status.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = phantom_ci::cli::Cli::parse();
    match phantom_ci::cli::run(cli) {
        Ok(status) => status.into(),
        Err(error) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("phantom_ci: {error}");
            }
            error.exit_status().into()
        }
    }
}
