//! One module per subcommand; the only layer that prints to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod check;
pub mod run;
