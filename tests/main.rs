//! Integration tests: the built `phantom_ci` binary against real git repositories in temp dirs.
//! One test binary for all of them (see `[[test]]` in Cargo.toml), one module per feature, run by
//! libtest-mimic (`support/harness.rs`): a test that cannot run here is reported as ignored, with why.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod support;

mod always;
mod boundary;
mod branches;
mod browser;
mod cache;
mod cancel;
mod check;
mod config;
mod configure_hook;
mod containment;
mod costs;
mod debug;
mod debug_keep;
mod docs;
mod examples;
mod graph;
mod help;
mod hook;
mod hygiene;
mod layer;
mod layout;
mod lost_log;
mod manage;
mod messages;
mod notify;
mod packaging;
mod parallel;
mod pipes;
mod pool;
mod report;
mod results;
mod run;
mod sandbox;
mod scale_out;
mod service;
mod signed;
mod spawn;
mod state;
mod status;
mod subject;
mod suggest;
mod system;
mod terminal;
mod tick;
mod walkthrough;

fn main() -> std::process::ExitCode {
    support::harness::quiet_skips();
    let args = libtest_mimic::Arguments::from_args();
    let trials = [
        always::tests(),
        boundary::tests(),
        branches::tests(),
        browser::tests(),
        cache::tests(),
        cancel::tests(),
        check::tests(),
        config::tests(),
        configure_hook::tests(),
        containment::tests(),
        costs::tests(),
        debug::tests(),
        debug_keep::tests(),
        docs::tests(),
        examples::tests(),
        help::tests(),
        hook::tests(),
        hygiene::tests(),
        layer::tests(),
        layout::tests(),
        lost_log::tests(),
        manage::tests(),
        messages::tests(),
        notify::tests(),
        packaging::tests(),
        graph::tests(),
        parallel::tests(),
        pipes::tests(),
        pool::tests(),
        report::tests(),
        results::tests(),
        run::tests(),
        sandbox::tests(),
        scale_out::tests(),
        service::tests(),
        signed::tests(),
        spawn::tests(),
        state::tests(),
        status::tests(),
        subject::tests(),
        suggest::tests(),
        terminal::tests(),
        system::tests(),
        tick::tests(),
        walkthrough::tests(),
    ]
    .into_iter()
    .flatten()
    .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
