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
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The installed hook (`#!<phantom_ci> hook-file`): its settings are in the file, and the command
    // line they stand for is built without parsing one (the pusher waits). Arguments git might pass
    // after the hook's path (hooks other than `post-receive` get some) are not its.
    let cli = match args.as_slice() {
        [_, word, hook, ..] if word == phantom_ci::install::hook_template::HOOK_FILE => {
            match phantom_ci::install::hook_template::HookFile::read(std::path::Path::new(hook)) {
                Ok(file) => phantom_ci::cli::Cli::of_hook_file(file),
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
        _ => phantom_ci::cli::Cli::parse_from(args),
    };
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
