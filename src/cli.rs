//! The command line (SPEC §3): one clap enum, one `match`, one module per subcommand.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::commands::{self, Context};
use crate::config::dirs::Dirs;
use crate::error::{Error, ExitStatus};
use crate::install::hook_template::HookFile;

pub const SPOOL_DIR_ENV: &str = "PHANTOM_CI_SPOOL_DIR";

#[derive(Debug, Parser)]
#[command(
    name = "phantom_ci",
    version,
    about = "A secure, headless, self-hosted CI runner: started by a git hook, a timer or you; runs, records, exits",
    after_help = "Without a subcommand, phantom_ci runs `tick`."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// What a hook of the `#!` form runs (`HookFile::args` parsed), made without clap: building the
    /// parser of every subcommand is most of what phantom_ci does before a hook's work, and the
    /// pusher waits for the hook.
    pub fn of_hook_file(file: HookFile) -> Cli {
        Cli {
            global: Global {
                config_dir: Some(file.config_dir),
                data_dir: Some(file.data_dir),
                // As clap fills it: both options are `--spool-dir`.
                spool_dir: file.spool_dir.clone(),
            },
            command: Some(Command::Hook(WithSpool {
                args: commands::hook::HookArgs { wait: file.wait },
                spool: commands::SpoolArg {
                    spool_dir: file.spool_dir,
                },
            })),
        }
    }
}

/// The heading of the options every subcommand takes.
const GLOBAL_OPTIONS: &str = "Global options";

#[derive(Debug, Args)]
pub struct Global {
    /// Directory of Repo.toml and .env [env: PHANTOM_CI_CONFIG_DIR]
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL_OPTIONS)]
    pub config_dir: Option<PathBuf>,
    /// Directory of run records, workspaces and state [env: PHANTOM_CI_DATA_DIR]
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL_OPTIONS)]
    pub data_dir: Option<PathBuf>,
    /// `--spool-dir` before the subcommand, as hooks and units written by earlier versions have it;
    /// shown on the subcommands that use it (`hook`, `tick`, `configure`).
    #[arg(long, value_name = "DIR", hide = true)]
    pub spool_dir: Option<PathBuf>,
}

/// A subcommand's own arguments and `--spool-dir`, for the subcommands that use the spool.
#[derive(Debug, Args)]
pub struct WithSpool<T: Args> {
    #[command(flatten)]
    pub args: T,
    #[command(flatten)]
    pub spool: commands::SpoolArg,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every configured repo once, run what moved, exit (the default)
    Tick(WithSpool<commands::tick::TickArgs>),
    /// The post-receive hook: queue the branches that moved and start a worker
    Hook(WithSpool<commands::hook::HookArgs>),
    /// Run a repo's workflow now, in the foreground (to debug a workflow)
    Run(commands::run::RunArgs),
    /// A shell (or `-- COMMAND`) where a run failed, exactly as its step ran: user, sandbox, limits, env
    Debug(commands::debug::DebugArgs),
    /// Validate a workflow file, or every workflow of the repository at PATH, and print the plan
    Check(commands::check::CheckArgs),
    /// The detached worker a hook starts: run the queued work, exit
    #[command(hide = true)]
    Work(WithSpool<commands::work::WorkArgs>),
    /// Add a repository to Repo.toml (keeping the file's comments and layout)
    Add(commands::add::AddArgs),
    /// Remove a repo's section from Repo.toml (and only its own lines)
    Remove(commands::remove::RemoveArgs),
    /// List the configured repos
    List(commands::list::ListArgs),
    /// Show every configured repo and its last run
    Status(commands::status::StatusArgs),
    /// End the repo's running run (result `cancelled`); `--queued` also drops the waiting commit
    Cancel(commands::cancel::CancelArgs),
    /// Print a run's log, or follow it while the run goes on
    Logs(commands::logs::LogsArgs),
    /// Manage repos' build caches (`cache = true`)
    Cache(commands::cache::CacheArgs),
    /// Write the static HTML report (index, a page per run, badges) into DIR
    Report(commands::report::ReportArgs),
    /// Install the post-receive hook into a bare repository, or the systemd units
    Configure(commands::configure::ConfigureArgs),
    /// The runner side of a poke: the forced command of a runner's authorized_keys; ticks the repo
    /// named by SSH_ORIGINAL_COMMAND (`poke <repo>`)
    Poke(commands::poke::PokeArgs),
    /// The central side of a runner pool: the forced command of a pool runner's claim key; claims,
    /// renews or ends a run as SSH_ORIGINAL_COMMAND asks (`claim|renew|done <repo> <branch> <commit>`)
    Claim(commands::claim::ClaimArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell)
    Completions(commands::completions::CompletionsArgs),
    /// Print a manual page (roff): `phantom_ci man tick | man -l -`; `--dir DIR` writes them all
    Man(commands::man::ManArgs),
}

pub fn run(cli: Cli) -> Result<ExitStatus, Error> {
    // Output-only commands end as git does when their reader goes away (`| head`): by SIGPIPE, status
    // 141. The others (a run above all) go on without the console and end by their own result.
    if matches!(
        cli.command,
        Some(
            Command::List(_)
                | Command::Status(_)
                | Command::Logs(_)
                | Command::Check(_)
                | Command::Completions(_)
                | Command::Man(_)
        )
    ) {
        crate::isolation::signals::end_on_closed_pipe();
    }
    // These describe the command line itself: no directories, no configuration.
    match cli.command {
        Some(Command::Completions(args)) => {
            return commands::completions::run(args, Cli::command());
        }
        Some(Command::Man(args)) => return commands::man::run(args, Cli::command()),
        _ => {}
    }
    crate::isolation::libgit2::configure().map_err(Error::Other)?;
    let given =
        |option: bool, var: &str| option || std::env::var_os(var).is_some_and(|v| !v.is_empty());
    let config_given = given(
        cli.global.config_dir.is_some(),
        crate::config::dirs::CONFIG_DIR_ENV,
    );
    let data_given = given(
        cli.global.data_dir.is_some(),
        crate::config::dirs::DATA_DIR_ENV,
    );
    let dirs = Dirs::resolve(cli.global.config_dir, cli.global.data_dir).map_err(Error::Usage)?;
    let spool = match &cli.command {
        Some(Command::Tick(w)) => w.spool.spool_dir.clone(),
        Some(Command::Hook(w)) => w.spool.spool_dir.clone(),
        Some(Command::Work(w)) => w.spool.spool_dir.clone(),
        Some(Command::Configure(args)) => args.spool.spool_dir.clone(),
        _ => None,
    };
    let spool = spool
        .or(cli.global.spool_dir)
        .or_else(|| {
            std::env::var_os(SPOOL_DIR_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| dirs.spool());
    let ctx = Context::new(dirs, spool, (config_given, data_given));
    if matches!(
        cli.command,
        None | Some(
            Command::Tick(_)
                | Command::Run(_)
                | Command::Cancel(_)
                | Command::Debug(_)
                | Command::Cache(_)
        )
    ) {
        refuse_foreign_state(&ctx)?;
    }
    match cli.command {
        Some(Command::Tick(w)) => commands::tick::run(w.args, &ctx),
        None => commands::tick::run(commands::tick::TickArgs::default(), &ctx),
        Some(Command::Hook(w)) => commands::hook::run(w.args, &ctx),
        Some(Command::Run(args)) => commands::run::run(args, &ctx),
        Some(Command::Check(args)) => commands::check::run(args, &ctx),
        Some(Command::Debug(args)) => commands::debug::run(args, &ctx),
        Some(Command::Work(w)) => commands::work::run(w.args, &ctx),
        Some(Command::Add(args)) => commands::add::run(args, &ctx),
        Some(Command::Remove(args)) => commands::remove::run(args, &ctx),
        Some(Command::List(args)) => commands::list::run(args, &ctx),
        Some(Command::Status(args)) => commands::status::run(args, &ctx),
        Some(Command::Logs(args)) => commands::logs::run(args, &ctx),
        Some(Command::Cache(args)) => commands::cache::run(args, &ctx),
        Some(Command::Cancel(args)) => commands::cancel::run(args, &ctx),
        Some(Command::Report(args)) => commands::report::run(args, &ctx),
        Some(Command::Configure(args)) => commands::configure::run(args, &ctx),
        Some(Command::Poke(args)) => commands::poke::run(args, &ctx),
        Some(Command::Claim(args)) => commands::claim::run(args, &ctx),
        Some(Command::Completions(_) | Command::Man(_)) => Ok(ExitStatus::Success),
    }
}

/// As root, refuses to work in a data dir that belongs to another user — the system installation's
/// service user (`phantom-ci`), say: what root wrote there (locks, records, workspaces) the service
/// could no longer open. The message has the command to run instead, as that user.
fn refuse_foreign_state(ctx: &Context) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let Ok(meta) = std::fs::metadata(&ctx.dirs.data) else {
        return Ok(());
    };
    if meta.uid() == 0 {
        return Ok(());
    }
    let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .map_or_else(|| format!("#{}", meta.uid()), |user| user.name);
    let again: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|arg| shell_words::quote(&arg.to_string_lossy()).into_owned())
        .collect();
    Err(Error::Usage(format!(
        "the data directory `{}` belongs to `{owner}`: what root wrote there, that user could no \
         longer open; run this as `{owner}`: `sudo -u {} {} {}`",
        ctx.dirs.data.display(),
        shell_words::quote(&owner),
        ctx.program(),
        again.join(" ")
    )))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn a_hook_file_stands_for_the_command_line_its_settings_make() {
        use clap::Parser;
        let settings = |wait, spool_dir: Option<&str>| super::HookFile {
            config_dir: "/etc/phantom ci".into(),
            data_dir: "/var/lib/phantom_ci".into(),
            wait,
            spool_dir: spool_dir.map(Into::into),
        };
        for file in [
            settings(false, None),
            settings(true, None),
            settings(false, Some("/srv/spool")),
            settings(true, Some("/srv/spool")),
        ] {
            let parsed = super::Cli::parse_from(
                std::iter::once(std::ffi::OsString::from("phantom_ci")).chain(file.clone().args()),
            );
            assert_eq!(
                format!("{:?}", super::Cli::of_hook_file(file)),
                format!("{parsed:?}")
            );
        }
    }
}
