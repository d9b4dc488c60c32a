//! Suggested commands (issue 10): every command phantom_ci suggests carries the options in force —
//! directories, spool, `--wait`, … — so that pasted as it is into a shell it does what was meant, with
//! the same configuration, even where the environment that gave the directories is gone.

use predicates::prelude::*;

use crate::support::{TestEnv, fixed_env, stdout_of};

/// The first command in `text` that starts with `phantom_ci ` and contains `containing`: up to the
/// closing backtick when it is quoted so, else to the end of the line.
fn suggested(text: &str, containing: &str) -> String {
    text.match_indices("phantom_ci ")
        .map(|(at, _)| {
            let rest = &text[at..];
            let end = rest.find(['`', '\n']).unwrap_or(rest.len());
            rest[..end].to_string()
        })
        .find(|command| command.contains(containing))
        .unwrap_or_else(|| panic!("no suggested `{containing}` command in:\n{text}"))
}

/// Runs a suggested command as a user would paste it: split by shell rules, `phantom_ci` being the
/// built binary, and none of the test's PHANTOM_CI_* variables.
fn paste(env: &TestEnv, command: &str) -> assert_cmd::assert::Assert {
    let words = shell_words::split(command).unwrap();
    assert_eq!(words[0], "phantom_ci");
    let mut cmd = assert_cmd::Command::new(assert_cmd::cargo::cargo_bin!("phantom_ci"));
    cmd.env_clear()
        .envs(fixed_env(&env.home))
        .current_dir(env.root())
        .args(&words[1..]);
    cmd.assert()
}

fn exec_words(env: &TestEnv, bare: &std::path::Path) -> Vec<String> {
    let _ = env;
    crate::support::hook_command(&bare.join("hooks/post-receive"))
}

fn the_force_hint_of_a_refused_hook_keeps_wait_and_the_directories() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let bare = repo.bare.to_str().unwrap();
    env.phantom()
        .args(["configure", "hook", bare])
        .assert()
        .success();
    let refused = env
        .phantom()
        .args(["configure", "hook", bare, "--wait"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "is a phantom_ci hook with other settings",
        ));
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    let force = suggested(&stderr, "--force");
    let words = shell_words::split(&force).unwrap();
    for word in ["--wait", "--force", "--config-dir", "--data-dir"] {
        assert!(words.iter().any(|w| w == word), "{word} missing: {force}");
    }
    // Pasted without the environment that named the directories, it installs the hook that was asked
    // for: with `--wait`, reading the same configuration.
    paste(&env, &force)
        .success()
        .stdout(predicate::str::contains("replaced"));
    let exec = exec_words(&env, &repo.bare);
    assert!(
        exec.ends_with(&["hook".to_string(), "--wait".into()]),
        "{exec:?}"
    );
    let config = exec.iter().position(|w| w == "--config-dir").unwrap();
    assert_eq!(exec[config + 1], env.config.to_str().unwrap());
}

fn the_hook_suggested_by_add_keeps_the_spool_and_the_directories() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let spool = env.root().join("spool dir");
    let added = env
        .phantom()
        .env("PHANTOM_CI_SPOOL_DIR", &spool)
        .args(["add", repo.bare.to_str().unwrap()])
        .assert()
        .success();
    let stdout = stdout_of(&added);
    let configure = suggested(&stdout, "configure hook");
    paste(&env, &configure)
        .success()
        .stdout(predicate::str::contains("installed"));
    let exec = exec_words(&env, &repo.bare);
    assert!(
        exec.ends_with(&[
            "hook".to_string(),
            "--spool-dir".into(),
            spool.to_str().unwrap().into()
        ]),
        "{exec:?}"
    );
    let data = exec.iter().position(|w| w == "--data-dir").unwrap();
    assert_eq!(exec[data + 1], env.data.to_str().unwrap());
}

fn a_second_branch_of_a_hooked_repo_is_covered_by_its_hook() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let bare = repo.bare.to_str().unwrap();
    env.phantom().args(["add", bare]).assert().success();
    env.phantom()
        .args(["configure", "hook", bare, "--wait"])
        .assert()
        .success();
    env.phantom()
        .args(["add", bare, "feature", "--name", "app-feature"])
        .assert()
        .success()
        .stdout(predicate::str::contains("covers it"))
        .stdout(predicate::str::contains(
            "pushes to `feature` run `app-feature`",
        ))
        .stdout(predicate::str::contains("configure hook").not());

    // A hook of phantom_ci with another configuration does not run this one: replace it, keeping its
    // `--wait`.
    let other = TestEnv::new();
    let added = other
        .phantom()
        .args(["add", bare, "--name", "elsewhere"])
        .assert()
        .success()
        .stdout(predicate::str::contains("another configuration"));
    let force = suggested(&stdout_of(&added), "--force");
    paste(&other, &force).success();
    let exec = exec_words(&other, &repo.bare);
    assert!(
        exec.ends_with(&["hook".to_string(), "--wait".into()]),
        "{exec:?}"
    );
    let config = exec.iter().position(|w| w == "--config-dir").unwrap();
    assert_eq!(exec[config + 1], other.config.to_str().unwrap());
}

fn remove_and_add_again_are_suggested_with_the_options_given() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("develop", "[0]\nrun = \"true\"\n");
    repo.commit("one");
    assert!(repo.push("develop").status.success());
    env.git(&repo.bare, &["symbolic-ref", "HEAD", "refs/heads/develop"]);
    let added = env
        .phantom()
        .args(["add", repo.bare.to_str().unwrap(), "--name", "tool"])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&added.get_output().stderr).into_owned();
    assert!(stderr.contains("its HEAD is `develop`"), "{stderr}");
    paste(&env, &suggested(&stderr, " remove ")).success();
    paste(&env, &suggested(&stderr, " develop --name tool")).success();
    let list = stdout_of(&env.phantom().args(["list", "--json"]).assert().success());
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["repo"], "tool");
    assert_eq!(list[0]["branch"], "develop");
}

/// Issue 22: a suggestion names phantom_ci as the shell would find it — the binary's own path when
/// `phantom_ci` on PATH is missing or another program, plain `phantom_ci` when PATH leads to it.
fn suggestions_name_the_binary_that_was_started_when_path_would_not_find_it() {
    let env = TestEnv::new();
    let binary = assert_cmd::cargo::cargo_bin!("phantom_ci");
    let no_repos = |path: &str| {
        let out = env
            .phantom()
            .env("PATH", path)
            .arg("list")
            .assert()
            .success();
        String::from_utf8_lossy(&out.get_output().stderr).into_owned()
    };
    let plain = "/usr/local/bin:/usr/bin:/bin";
    // Not on PATH: the absolute path it was started by.
    let stderr = no_repos(plain);
    let add = stderr.split('`').nth(3).unwrap();
    assert_eq!(
        shell_words::split(add).unwrap()[0],
        binary.canonicalize().unwrap().to_str().unwrap(),
        "{stderr}"
    );
    // Another `phantom_ci` first on PATH: still the path of the one that ran.
    let other = env.root().join("other-bin");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("phantom_ci"), "#!/bin/sh\n").unwrap();
    let stderr = no_repos(&format!("{}:{plain}", other.display()));
    assert!(
        stderr.contains(&format!(
            "`{} --config-dir",
            binary.canonicalize().unwrap().display()
        )),
        "{stderr}"
    );
    // On PATH (through a link, as `cargo install` or a package puts it): plain `phantom_ci`.
    let bin = env.root().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(binary, bin.join("phantom_ci")).unwrap();
    let stderr = no_repos(&format!("{}:{plain}", bin.display()));
    assert!(
        stderr.contains("add one with `phantom_ci --config-dir"),
        "{stderr}"
    );
}

crate::tests! {
    suggestions_name_the_binary_that_was_started_when_path_would_not_find_it,
    the_force_hint_of_a_refused_hook_keeps_wait_and_the_directories,
    the_hook_suggested_by_add_keeps_the_spool_and_the_directories,
    a_second_branch_of_a_hooked_repo_is_covered_by_its_hook,
    remove_and_add_again_are_suggested_with_the_options_given,
}
