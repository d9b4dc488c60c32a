//! One module per subcommand; the only layer that prints to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod check;
pub mod hook;
pub mod run;
pub mod tick;
pub mod work;
