//! phantom_ci: a secure, headless, self-hosted CI runner.
//!
//! It is a one-shot executor: a git hook, a systemd timer or a person starts it, it runs the workflow
//! of every branch that moved, records the result and exits. The modules read like the architecture:
//!
//! - [`config`]: `Repo.toml`, the operator's trusted configuration;
//! - [`workflow`]: `workflow/<branch>.toml`, the pusher's untrusted list of steps;
//! - [`git`]: everything phantom_ci asks of a repository;
//! - [`workspace`]: the scratch working tree a run builds in, and its artifacts;
//! - [`runner`]: one run of one commit — steps, output, timeouts;
//! - [`records`]: what a run leaves behind under the data dir;
//! - [`secrets`]: `.env`, read into memory only; [`notify`]: the webhooks posted after a run;
//! - [`report`]: the static HTML report of the runs;
//! - [`commands`]: one module per subcommand, the only place that prints.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod atomic_file;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dirfd;
pub mod dirs;
pub mod error;
pub mod git;
pub mod hook_template;
pub mod lock;
pub mod log_follow;
pub mod mirror;
pub mod notify;
pub mod output;
pub mod privilege;
pub mod queue;
pub mod reaper;
pub mod records;
pub mod recovery;
pub mod repo_toml;
pub mod report;
pub mod runner;
pub mod sandbox;
pub mod sanitize;
pub mod secrets;
pub mod seen;
pub mod signals;
pub mod signature;
pub mod spool;
pub mod systemd;
pub mod units;
pub mod worker;
pub mod workflow;
pub mod workspace;

pub use error::{Error, ExitStatus};
