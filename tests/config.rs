//! Repo.toml errors (issue #2): exit 2, file, line and column, nothing written.

use predicates::prelude::*;

use crate::support::TestEnv;

fn a_malformed_repo_toml_exits_2_and_creates_nothing() {
    let env = TestEnv::new();
    env.write_repo_toml("[app]\npath = \"/srv/git/app.git\"\ntimeout = 5\n");
    env.phantom()
        .args(["run", "app"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Repo.toml` line 3, column 11"));
    assert!(!env.data.exists(), "nothing under the data dir");

    env.write_repo_toml("[app]\npath = \"/srv/git/app.git\"\nsandbox = \"docker\"\n");
    env.phantom()
        .args(["run", "app"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("line 3").and(predicate::str::contains("bwrap")));
    assert!(!env.data.exists());
}

fn an_unknown_repo_is_a_usage_error() {
    let env = TestEnv::new();
    env.phantom()
        .args(["run", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no repo `nope`"));
}

fn config_and_data_dir_options_win_over_the_environment() {
    let env = TestEnv::new();
    let other = env.root().join("other-config");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("Repo.toml"), "[app]\npath = 1\n").unwrap();
    env.phantom()
        .args(["--config-dir", other.to_str().unwrap(), "run", "app"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("other-config/Repo.toml"));
}

fn a_repo_toml_that_is_not_utf8_names_the_line_and_column() {
    let env = TestEnv::new();
    std::fs::write(
        env.config.join("Repo.toml"),
        b"[app]\npath = \"/srv/git/app.git\"\n# r\xe9sum\xe9\n",
    )
    .unwrap();
    for command in [&["run", "app"][..], &["tick"], &["list"], &["status"]] {
        env.phantom()
            .args(command)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!(
                "`{}` line 3, column 4: the file is not valid UTF-8 (byte 0xe9); save it as UTF-8",
                env.config.join("Repo.toml").display()
            )));
    }
    assert!(!env.data.exists(), "nothing ran");
}

fn a_top_level_key_is_explained_without_internal_names() {
    let env = TestEnv::new();
    env.write_repo_toml("max_runs = 1\n[app]\npath = \"/srv/git/app.git\"\n");
    let out = env.phantom().arg("tick").assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("Repo.toml` line 1, column 1: `max_runs = …` is not a repo section"),
        "{stderr}"
    );
    assert!(stderr.contains("`[name]` on a line of its own"), "{stderr}");
    for internal in ["RawRepo", "struct", "Spanned"] {
        assert!(!stderr.contains(internal), "{stderr}");
    }
    env.write_repo_toml("[app]\npath = \"/srv/git/app.git\"\nkeep_runs = \"all\"\nsandbox = 1\n");
    env.phantom().arg("list").assert().code(2).stderr(
        predicate::str::contains("line 3, column 13")
            .and(predicate::str::contains("a whole number")),
    );
}

/// `Repo.toml` with a healthy repo `app` and two broken ones: `gone` (its path does not exist) and
/// `stranger` (its `run_as` user does not exist).
fn healthy_and_broken(env: &TestEnv) -> crate::support::TestRepo<'_> {
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"echo healthy\"\n");
    repo.commit_and_push("one");
    let gone = env.root().join("git/gone.git");
    let text = format!(
        "{}\n[gone]\npath = \"{}\"\n\n[stranger]\npath = \"{}\"\nrun_as = \"no-such-user-here\"\n",
        env.section("app", &repo, ""),
        gone.display(),
        repo.bare.display()
    );
    env.write_repo_toml(&text);
    repo
}

fn tick_runs_the_healthy_repos_and_names_each_broken_one() {
    let env = TestEnv::new();
    healthy_and_broken(&env);
    let file = env.config.join("Repo.toml");
    let out = env.phantom().arg("tick").assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert_eq!(env.run_json("app", 1)["result"], "success", "{stderr}");
    assert!(env.runs("gone").is_empty() && env.runs("stranger").is_empty());
    // `[gone]` starts on line 6 and `[stranger]` on line 9 of the file.
    assert!(
        stderr.contains(&format!(
            "phantom_ci: `{}` line 7, column 1: `path` `{}` does not exist: create the repository \
             there or correct `path`; repo `gone` does not run until then",
            file.display(),
            env.root().join("git/gone.git").display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "phantom_ci: `{}` line 11, column 1: the `run_as` user `no-such-user-here` does not exist \
             on this machine: create it",
            file.display()
        )),
        "{stderr}"
    );

    // Running one of them by name is a configuration error: exit 2, no run.
    for (name, line) in [("gone", 7), ("stranger", 11)] {
        env.phantom()
            .args(["run", name])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!(
                "Repo.toml` line {line}, column 1: "
            )));
        assert!(env.runs(name).is_empty());
    }
    // With another user given on the command line, the missing `run_as` user does not matter.
    let me = crate::support::current_user();
    env.phantom()
        .args(["run", "stranger", "--run-as", &me])
        .assert()
        .success();
}

fn check_list_and_status_show_the_broken_repos() {
    let env = TestEnv::new();
    healthy_and_broken(&env);
    let line_of = |stderr: &[u8], line: usize| {
        String::from_utf8_lossy(stderr).contains(&format!("Repo.toml` line {line}, column 1: "))
    };

    let out = env.phantom().arg("list").output().unwrap();
    assert!(out.status.success());
    assert!(line_of(&out.stderr, 7) && line_of(&out.stderr, 11));
    assert!(String::from_utf8_lossy(&out.stdout).contains("stranger"));
    let out = env.phantom().args(["list", "--json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["problems"], serde_json::json!([]));
    assert!(
        list[1]["problems"][0]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    assert!(
        list[2]["problems"][0]
            .as_str()
            .unwrap()
            .contains("`run_as` user")
    );

    let out = env.phantom().arg("status").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("gone ") && l.contains("config error")),
        "{stdout}"
    );
    assert!(line_of(&out.stderr, 7) && line_of(&out.stderr, 11));
    let out = env.phantom().args(["status", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        status[2]["problems"][0]
            .as_str()
            .unwrap()
            .contains("no-such-user-here")
    );

    let workflow = env.root().join("workflow.toml");
    std::fs::write(&workflow, "[0]\nrun = \"true\"\n").unwrap();
    let out = env.phantom().arg("check").arg(&workflow).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a broken repo fails the check");
    assert!(line_of(&out.stderr, 7) && line_of(&out.stderr, 11));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 step"));
}

fn the_hook_names_a_broken_repo_and_never_fails_the_push() {
    let env = TestEnv::new();
    let repo = healthy_and_broken(&env);
    let tip = env.git(&repo.work, &["rev-parse", "HEAD"]);
    let mut hook = env.spawn_hook_wait(&repo.bare, std::process::Stdio::piped());
    use std::io::Write;
    writeln!(
        hook.stdin.take().unwrap(),
        "{} {tip} refs/heads/master",
        "0".repeat(40)
    )
    .unwrap();
    let out = hook.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "Repo.toml` line 11, column 1: the `run_as` user `no-such-user-here` does not exist"
        ) && stderr.contains("(the push itself succeeded)"),
        "{stderr}"
    );
    assert_eq!(
        env.run_json("app", 1)["result"],
        "success",
        "the healthy repo ran"
    );
    assert!(env.runs("stranger").is_empty());
}

fn add_and_remove_name_the_line_of_a_repo_toml_that_is_not_utf8() {
    let env = TestEnv::new();
    std::fs::write(env.config.join("Repo.toml"), b"# \xff\n").unwrap();
    for args in [&["add", "https://example.org/x.git"][..], &["remove", "x"]] {
        env.phantom()
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "Repo.toml` line 1, column 3: the file is not valid UTF-8",
            ));
    }
}

crate::tests! {
    a_malformed_repo_toml_exits_2_and_creates_nothing,
    an_unknown_repo_is_a_usage_error,
    config_and_data_dir_options_win_over_the_environment,
    a_repo_toml_that_is_not_utf8_names_the_line_and_column,
    a_top_level_key_is_explained_without_internal_names,
    tick_runs_the_healthy_repos_and_names_each_broken_one,
    check_list_and_status_show_the_broken_repos,
    the_hook_names_a_broken_repo_and_never_fails_the_push,
    add_and_remove_name_the_line_of_a_repo_toml_that_is_not_utf8,
}
