//! The `phantom_ci` binary: parse the command line, run, map the outcome to an exit status.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Started by git to ask for a repository's password (see `git::cli::remote`).
    if let Some(password) = phantom_ci::git::cli::askpass_answer() {
        use std::io::Write;
        let mut out = std::io::stdout();
        return match writeln!(out, "{password}").and_then(|()| out.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The installed hook (`#!<phantom_ci> hook-file`): its settings are in the file. Arguments git
    // might pass after the hook's path (hooks other than `post-receive` get some) are not its.
    if let [program, word, hook, ..] = args.as_slice()
        && word == phantom_ci::install::hook_template::HOOK_FILE
    {
        match phantom_ci::install::hook_template::hook_args(std::path::Path::new(hook)) {
            Ok(hook_args) => args = std::iter::once(program.clone()).chain(hook_args).collect(),
            Err(message) => {
                // A hook never makes the push fail.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "phantom_ci: {message} (the push itself succeeded)"
                );
                return ExitCode::SUCCESS;
            }
        }
    }
    let cli = phantom_ci::cli::Cli::parse_from(args);
    match phantom_ci::cli::run(cli) {
        Ok(status) => status.into(),
        Err(error) => {
            use std::io::Write;
            // A closed stderr does not turn the error into a panic: the exit status still tells it.
            let _ = writeln!(std::io::stderr(), "phantom_ci: {error}");
            error.exit_status().into()
        }
    }
}
