//! phantom_ci: a secure, headless, self-hosted CI runner.
//!
//! It is a one-shot executor: a git hook, a systemd timer or a person starts it, it runs the workflow
//! of every branch that moved, records the result and exits. The folders are the layers, top to bottom;
//! a module imports only from its own layer or the ones below it:
//!
//! - [`cli`], [`commands`]: the faces — argument parsing and one module per subcommand, the only place
//!   that prints;
//! - [`worker`]: drains the queue; after each run, posts notifications and refreshes the report;
//! - [`notify`], [`report`]: what happens after a run — webhooks and the static HTML report;
//!   [`pool`]: a pooled run's claim on the central host (claim, renew, done over ssh);
//! - [`runner`]: one run of one commit — workspace, steps, output, timeouts, its record;
//! - [`state`]: everything durable under the data dir — records, queue, seen, locks, spool, recovery;
//!   [`git`]: everything asked of a repository — reading, mirrors, workspaces;
//!   [`isolation`]: everything between a pusher and the machine — user, limits, sandbox, reaping;
//! - [`config`]: `Repo.toml`, `.env`, the directories, workflows, durations and sizes;
//! - [`install`]: the hook and systemd units phantom_ci writes onto the machine;
//! - [`describe`]: how runs are put into words, used by every layer that shows them;
//!   [`error`]: the errors commands return and the one place they become exit statuses.
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod cli;
pub mod commands;
pub mod config;
pub mod describe;
pub mod error;
pub mod git;
pub mod install;
pub mod isolation;
pub mod notify;
pub mod pool;
pub mod report;
pub mod runner;
pub mod state;
pub mod worker;

pub use error::{Error, ExitStatus};
