//! Messages (issue 10): the real cause, once, in the user's words, naming the repo.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use predicates::prelude::*;

use crate::support::{TestEnv, needs_root, on_path};

/// `phantom_ci --config-dir … --data-dir … <args>` as the user `nobody` (the tests run as root).
/// Without `setpriv` on `PATH` the test ends as ignored, saying so.
fn as_nobody(env: &TestEnv, args: &[&str]) -> Command {
    if !on_path("setpriv") {
        crate::skip!("needs setpriv to act as `nobody` (apt-get install util-linux)");
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(assert_cmd::cargo::cargo_bin!("phantom_ci"))
        .arg("--config-dir")
        .arg(&env.config)
        .arg("--data-dir")
        .arg(&env.data)
        .args(args)
        .env_clear()
        .envs(crate::support::fixed_env(&env.home))
        .current_dir("/");
    cmd
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn a_duration_error_says_what_to_write_without_parser_internals() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&format!(
        "[app]\npath = \"{}\"\ntimeout = \"soon\"\n",
        repo.bare.display()
    ));
    env.phantom().arg("list").assert().code(2).stderr(format!(
        "phantom_ci: `{}` line 3, column 11: `soon` is not a duration: write it like \"90s\", \
         \"10m\" or \"2h\"\n",
        env.config.join("Repo.toml").display()
    ));
}

fn paths_that_are_not_repositories_are_said_so() {
    let env = TestEnv::new();
    let missing = env.root().join("x/y");
    let empty = env.root().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let libgit2 = || {
        predicate::str::contains("failed to resolve")
            .or(predicate::str::contains("could not find"))
            .not()
    };
    env.phantom()
        .args(["add", missing.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "`{}` does not exist",
            missing.display()
        )))
        .stderr(libgit2());
    env.phantom()
        .args(["add", empty.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "`{}` is not a git repository",
            empty.display()
        )))
        .stderr(libgit2());
    env.phantom()
        .args(["run", empty.to_str().unwrap()])
        .assert()
        .failure()
        .stderr(predicate::str::contains(format!(
            "`{}` is not a git repository",
            empty.display()
        )))
        .stderr(libgit2());
}

fn tick_names_the_repo_of_an_error_about_a_path() {
    let env = TestEnv::new();
    let empty = env.root().join("not-a-repo");
    std::fs::create_dir(&empty).unwrap();
    env.write_repo_toml(&format!(
        "[app]\npath = \"{}\"\nrun_as = \"{}\"\n",
        empty.display(),
        crate::support::current_user()
    ));
    env.phantom().arg("tick").assert().code(1).stderr(format!(
        "phantom_ci: repo `app`: `{}` is not a git repository\n",
        empty.display()
    ));
}

fn logs_says_permission_denied_and_which_file_not_no_such_repo() {
    if !needs_root() {
        return;
    }
    let env = TestEnv::shared();
    let (_repo, _) = env.app("[0]\nrun = \"true\"\n", "");
    // A fresh data dir: no records at all, and a Repo.toml only root may read.
    std::fs::set_permissions(
        env.config.join("Repo.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let out = as_nobody(&env, &["logs", "app"]).output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "`{}` cannot be read to tell whether it is configured: permission denied",
            env.config.join("Repo.toml").display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("no such repo"), "{stderr}");

    // With records that only phantom_ci's user may read.
    env.phantom().args(["run", "app"]).assert().success();
    let out = as_nobody(&env, &["logs", "app"]).output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot read the run records of `app` in `{}`: permission denied",
            env.data.join("runs/app").display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("no such repo"), "{stderr}");

    // `status` of a configuration the user may read, with those records: unreadable, not "never ran".
    std::fs::set_permissions(
        env.config.join("Repo.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = as_nobody(&env, &["status"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), stderr_of(&out));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("cannot read the run records of `app`"),
        "{stderr}"
    );
    assert!(stdout.contains("unreadable"), "{stdout}");
    assert!(!stdout.contains("never ran"), "{stdout}");
    let out = as_nobody(&env, &["status", "--json"]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["last_run"], serde_json::Value::Null);
    assert!(
        json[0]["last_run_error"]
            .as_str()
            .is_some_and(|e| e.contains("permission denied")),
        "{json}"
    );
}

fn the_pusher_is_told_of_webhooks_only_when_there_are_some() {
    if !needs_root() {
        return;
    }
    use std::io::Write;
    let env = TestEnv::shared();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"true\"\n");
    let commit = repo.commit_and_push("one");
    env.write_repo_toml(&env.section_as("app", &repo, "nobody", ""));
    std::fs::set_permissions(
        env.config.join("Repo.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // The root tick makes the spool the pusher drops its note into.
    env.phantom().arg("tick").assert().success();
    let push = || {
        let mut hook = as_nobody(&env, &["hook"])
            .env("GIT_DIR", &repo.bare)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(
            hook.stdin.take().unwrap(),
            "{} {commit} refs/heads/master",
            "0".repeat(40)
        )
        .unwrap();
        let out = hook.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dotenv = env.config.join(".env");

    // No `.env`: no webhook; and the run records are root's (the tick made them private), so
    // `status` would show the pusher nothing: the pusher is not sent there.
    let said = push();
    assert!(said.contains("handed to the phantom_ci service"), "{said}");
    assert!(
        said.contains("ask its operator where the result goes"),
        "{said}"
    );
    assert!(!said.contains("see the result with"), "{said}");
    // Records the pusher may read: `status` shows them the result.
    let dirs = [env.data.clone(), env.data.join("runs")];
    let modes: Vec<std::fs::Permissions> = dirs
        .iter()
        .map(|dir| std::fs::metadata(dir).unwrap().permissions())
        .collect();
    for dir in &dirs {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let said = push();
    for (dir, mode) in dirs.iter().zip(modes) {
        std::fs::set_permissions(dir, mode).unwrap();
    }
    assert!(said.contains("no webhook is configured"), "{said}");
    assert!(said.contains("see the result with"), "{said}");
    assert!(!said.contains("posts the result"), "{said}");

    // A webhook the pusher can see.
    std::fs::write(&dotenv, "WEBHOOK_URL=https://hooks.example.org/ci\n").unwrap();
    std::fs::set_permissions(&dotenv, std::fs::Permissions::from_mode(0o644)).unwrap();
    let said = push();
    assert!(said.contains("posts the result to its webhooks"), "{said}");

    // The root deployment: `.env` is root's secret, so the pusher cannot tell.
    std::fs::set_permissions(&dotenv, std::fs::Permissions::from_mode(0o600)).unwrap();
    let said = push();
    assert!(
        said.contains("ask its operator where the result goes"),
        "{said}"
    );
    assert!(!said.contains("posts the result"), "{said}");
}

crate::tests! {
    a_duration_error_says_what_to_write_without_parser_internals,
    paths_that_are_not_repositories_are_said_so,
    tick_names_the_repo_of_an_error_about_a_path,
    logs_says_permission_denied_and_which_file_not_no_such_repo,
    the_pusher_is_told_of_webhooks_only_when_there_are_some,
}
