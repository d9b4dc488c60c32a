//! Integration tests: the built `phantom_ci` binary against real git repositories in temp dirs.
//! One test binary for all of them (see `[[test]]` in Cargo.toml), one module per feature.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod boundary;
mod check;
mod config;
mod configure_hook;
mod containment;
mod docs;
mod examples;
mod hook;
mod hygiene;
mod layout;
mod manage;
mod notify;
mod packaging;
mod report;
mod run;
mod sandbox;
mod service;
mod signed;
mod state;
mod status;
mod tick;
mod walkthrough;
