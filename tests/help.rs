//! `--help` (issue 10): the global options under their own heading, `--spool-dir` only on the
//! commands that use the spool, and `PHANTOM_CI_SPOOL_DIR` still in force.

use crate::support::{TestEnv, stdout_of};

/// The lines of `phantom_ci <args> --help` under `heading` (up to the next blank line).
fn section(env: &TestEnv, args: &[&str], heading: &str) -> Vec<String> {
    let out = env.phantom().args(args).arg("--help").assert().success();
    let help = stdout_of(&out);
    let lines: Vec<String> = help
        .lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert!(
        !lines.is_empty(),
        "no `{heading}` in `{args:?} --help`:\n{help}"
    );
    lines
}

fn mentions(lines: &[String], option: &str) -> bool {
    lines.iter().any(|l| l.trim_start().starts_with(option))
}

fn global_options_have_their_own_heading_on_every_command() {
    let env = TestEnv::new();
    for args in [
        &[][..],
        &["check"],
        &["hook"],
        &["status"],
        &["configure", "hook"],
        &["logs"],
    ] {
        let global = section(&env, args, "Global options:");
        assert!(mentions(&global, "--config-dir"), "{args:?}: {global:?}");
        assert!(mentions(&global, "--data-dir"), "{args:?}: {global:?}");
        assert!(!mentions(&global, "--spool-dir"), "{args:?}: {global:?}");
        let own = section(&env, args, "Options:");
        assert!(
            !mentions(&own, "--config-dir") && !mentions(&own, "--data-dir"),
            "{args:?} mixes the global options in with its own: {own:?}"
        );
    }
}

fn spool_dir_is_only_on_the_commands_that_use_the_spool() {
    let env = TestEnv::new();
    for args in [
        &["check"][..],
        &["status"],
        &["logs"],
        &["list"],
        &["add"],
        &["remove"],
        &["report"],
        &["run"],
        &["completions"],
        &[],
    ] {
        let out = env.phantom().args(args).arg("--help").assert().success();
        assert!(
            !stdout_of(&out).contains("--spool-dir"),
            "`{args:?} --help` shows --spool-dir"
        );
    }
    for args in [
        &["hook"][..],
        &["tick"],
        &["configure", "hook"],
        &["configure", "service"],
    ] {
        let own = section(&env, args, "Options:");
        assert!(mentions(&own, "--spool-dir"), "{args:?}: {own:?}");
    }
    // Not accepted where it means nothing.
    env.phantom()
        .args(["check", "--spool-dir", "/srv/spool"])
        .assert()
        .code(2);
}

fn the_spool_given_by_option_environment_or_the_old_position_reaches_the_hook() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let hook = repo.bare.join("hooks/post-receive");
    let exec_line = || crate::support::hook_command(&hook);
    let bare = repo.bare.to_str().unwrap();
    let tail = |spool: &str| ["hook".to_string(), "--spool-dir".into(), spool.into()];

    env.phantom()
        .args(["configure", "hook", bare, "--spool-dir", "/srv/a"])
        .assert()
        .success();
    assert!(exec_line().ends_with(&tail("/srv/a")), "{:?}", exec_line());

    env.phantom()
        .env("PHANTOM_CI_SPOOL_DIR", "/srv/b")
        .args(["configure", "hook", bare, "--force"])
        .assert()
        .success();
    assert!(exec_line().ends_with(&tail("/srv/b")), "{:?}", exec_line());

    // Hooks and units written by earlier versions put it before the subcommand.
    env.phantom()
        .args([
            "--spool-dir",
            "/srv/c",
            "configure",
            "hook",
            bare,
            "--force",
        ])
        .assert()
        .success();
    assert!(exec_line().ends_with(&tail("/srv/c")), "{:?}", exec_line());
}

crate::tests! {
    global_options_have_their_own_heading_on_every_command,
    spool_dir_is_only_on_the_commands_that_use_the_spool,
    the_spool_given_by_option_environment_or_the_old_position_reaches_the_hook,
}
