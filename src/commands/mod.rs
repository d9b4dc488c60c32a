//! One module per subcommand; the only layer that prints to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod add;
pub mod check;
pub mod completions;
pub mod configure;
pub mod hook;
pub mod list;
pub mod log_follow;
pub mod logs;
pub mod man;
pub mod remove;
pub mod report;
pub mod run;
pub mod status;
mod table;
pub mod tick;
pub mod work;

use std::path::PathBuf;

use clap::Args;

use crate::config::dirs::Dirs;

/// `--spool-dir`, on the subcommands that use the spool (`hook`, `tick`, `configure`, `work`).
#[derive(Debug, Args, Default)]
pub struct SpoolArg {
    /// Drop box where pushers who may not run work leave notes for a root `tick` [default: DATA/spool]
    /// [env: PHANTOM_CI_SPOOL_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
}

/// What every command gets: the directories in force.
pub struct Context {
    pub dirs: Dirs,
    /// The spool directory (SPEC §4.7).
    pub spool: PathBuf,
    /// `phantom_ci` with the directory options this invocation was given (by option or environment),
    /// for the commands phantom_ci suggests: pasted as they are, they use the same configuration.
    pub invocation: String,
}

impl Context {
    /// The spool, when it is not the default `<data>/spool` (what the hook and the units must be told).
    pub fn custom_spool(&self) -> Option<&std::path::Path> {
        (self.spool != self.dirs.spool()).then_some(self.spool.as_path())
    }
}
