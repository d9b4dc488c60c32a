//! One module per subcommand; the only layer that prints to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod add;
pub mod check;
pub mod configure;
pub mod hook;
pub mod list;
pub mod logs;
pub mod remove;
pub mod report;
pub mod run;
pub mod status;
mod table;
pub mod tick;
pub mod work;
