//! `tick` (issue #3): what moved runs once; remotes through a mirror; crash recovery.

use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{TestEnv, process_running, wait_for};

fn tick_runs_what_moved_once() {
    let env = TestEnv::new();
    let (repo, first) = env.app("[0]\nrun = \"git rev-parse HEAD\"\n", "");

    env.phantom().arg("tick").assert().success();
    let record = env.run_json("app", 1);
    assert_eq!(record["commit"], first.as_str());
    assert_eq!(record["trigger"], "tick");

    env.phantom().assert().success(); // no subcommand = tick
    assert_eq!(env.runs("app"), [1], "nothing moved, nothing ran");

    let second = repo.commit_and_push("two");
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.run_json("app", 2)["commit"], second.as_str());
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.runs("app"), [1, 2]);
}

fn a_manual_run_does_not_count_as_seen() {
    let env = TestEnv::new();
    env.app("[0]\nrun = \"true\"\n", "");
    env.phantom().args(["run", "app"]).assert().success();
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.run_json("app", 2)["trigger"], "tick");
}

fn tick_fetches_a_file_url_into_a_mirror() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"git log --oneline\"\n");
    let first = repo.commit_and_push("one");
    env.write_repo_toml(&format!(
        "[remote]\npath = \"file://{}\"\nrun_as = \"{}\"\n",
        repo.bare.display(),
        crate::support::current_user()
    ));
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.run_json("remote", 1)["commit"], first.as_str());
    assert!(env.data.join("mirrors/remote.git").is_dir());
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.runs("remote"), [1]);

    let second = repo.commit_and_push("two");
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.run_json("remote", 2)["commit"], second.as_str());
    assert!(
        env.log("remote", 2).contains("one"),
        "history is reachable in the workspace"
    );
}

fn a_killed_worker_leaves_an_aborted_run_and_queued_work_still_runs() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let started = env.root().join("started");
    repo.workflow(
        "master",
        &format!(
            "[0]\nrun = '''sh -c 'touch {}; sleep 1031' '''\n",
            started.display()
        ),
    );
    repo.commit_and_push("hangs");
    env.write_repo_toml(&env.section("app", &repo, ""));
    let mut tick = env
        .phantom_std()
        .arg("tick")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the step to start", || started.exists());
    kill(Pid::from_raw(tick.id() as i32), Signal::SIGKILL).unwrap();
    tick.wait().unwrap();
    assert_eq!(env.run_json("app", 1)["result"], "running");
    // `status` does not show it as going on.
    env.phantom()
        .arg("status")
        .assert()
        .stdout(predicates::str::contains(
            "app #1: the phantom_ci running it is gone",
        ));
    // The kill may land before the worker dropped its claim of the queue entry (it does so on a
    // thread once the run started): `logs --follow` must not wait for that run to start again.
    let claimed = env.data.join("queue/app.claimed");
    if !claimed.exists() {
        let commit = env.run_json("app", 1)["commit"]
            .as_str()
            .unwrap()
            .to_string();
        std::fs::write(
            &claimed,
            format!(
                r#"{{"branch":"master","commit":"{commit}","trigger":"tick","queued_at":"2026-01-01T00:00:00Z"}}"#
            ),
        )
        .unwrap();
    }
    env.phantom()
        .args(["logs", "app", "--follow"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicates::str::contains("its process is gone"));

    repo.workflow("master", "[0]\nrun = \"echo fixed\"\n");
    let fixed = repo.commit_and_push("fixed");
    // The next invocation finds it, records it, and says so.
    env.phantom()
        .arg("tick")
        .assert()
        .success()
        .stderr(predicates::str::contains(
            "phantom_ci: note: run #1 of `app` is recorded `aborted`: the phantom_ci running it \
             had died",
        ));
    let aborted = env.run_json("app", 1);
    assert_eq!(aborted["result"], "aborted");
    // The command that runs it again, whole: no `<repo>` or `<commit>` to fill in.
    assert!(
        aborted["message"].as_str().unwrap().contains(&format!(
            "`phantom_ci run app --branch master --commit {}`",
            aborted["commit"].as_str().unwrap()
        )),
        "{aborted}"
    );
    assert!(aborted["finished_at"].is_string());
    assert!(
        !process_running(&["sleep", "1031"]),
        "the dead run's processes were killed"
    );
    assert!(
        !env.data.join("work/app/1").exists(),
        "its workspace was removed"
    );
    let next = env.run_json("app", 2);
    assert_eq!(
        (next["result"].as_str(), next["commit"].as_str()),
        (Some("success"), Some(fixed.as_str()))
    );
}

fn a_spool_note_from_a_non_root_pusher_is_drained_by_a_root_tick() {
    if !crate::support::needs_root() {
        return;
    }
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::shared();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"id -u\"\n");
    let first = repo.commit_and_push("one");
    env.write_repo_toml(&env.section_as("app", &repo, "nobody", ""));
    let repo_toml = env.config.join("Repo.toml");
    std::fs::set_permissions(&repo_toml, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The first root tick makes the spool, a drop box.
    env.phantom().arg("tick").assert().success();
    let spool = env.data.join("spool");
    assert_eq!(
        std::fs::metadata(&spool).unwrap().permissions().mode() & 0o7777,
        0o1733
    );
    assert_eq!(env.runs("app"), [1]);
    let second = repo.commit_and_push("two");

    // The hook, as the pusher `nobody`: it cannot read Repo.toml, so it leaves a note.
    let mut hook = env.spawn_hook_as_nobody(&repo.bare);
    writeln!(
        hook.stdin.take().unwrap(),
        "{first} {second} refs/heads/master"
    )
    .unwrap();
    let out = hook.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("handed to the phantom_ci service"));
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 1);
    assert!(
        !env.data.join("queue/app~master.json").exists(),
        "the pusher queued nothing itself"
    );

    // The root tick drains the spool and runs the new commit's steps as `nobody`.
    env.phantom().arg("tick").assert().success();
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    assert_eq!(env.runs("app"), [1, 2]);
    let record = env.run_json("app", 2);
    assert_eq!(record["commit"], second.as_str());
    assert_eq!(record["result"], "success");
    assert!(
        env.log("app", 2).contains("\n65534\n"),
        "{}",
        env.log("app", 2)
    );
}

/// A loopback HTTPS git server over `env`'s repositories (with basic authentication when `auth`,
/// `user:password`, is given): the server, its port and its certificate. Skips the test when python3
/// or openssl is missing.
fn https_server(env: &TestEnv, auth: Option<&str>) -> (std::process::Child, String, PathBuf) {
    use std::io::{BufRead, BufReader};
    let missing: Vec<&str> = ["python3", "openssl"]
        .into_iter()
        .filter(|tool| {
            std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_err()
        })
        .collect();
    if !missing.is_empty() {
        crate::skip!(
            "needs {missing:?} for a loopback HTTPS git server (apt-get install python3 openssl)"
        );
    }
    let (cert, key) = (env.root().join("cert.pem"), env.root().join("key.pem"));
    let openssl = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        openssl.status.success(),
        "{}",
        String::from_utf8_lossy(&openssl.stderr)
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/git_https_server.py");
    let mut server = std::process::Command::new("python3")
        .arg(script)
        .args([&cert, &key, &env.root().join("git")])
        .args(auth)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    (server, port.trim().to_string(), cert)
}

fn tick_fetches_an_https_remote() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"git log --format=%s\"\n");
    let commit = repo.commit_and_push("over https");
    let (mut server, port, cert) = https_server(&env, None);
    env.write_repo_toml(&format!(
        "[web]\npath = \"https://127.0.0.1:{port}/cgi-bin/git/app.git\"\nrun_as = \"{}\"\n",
        crate::support::current_user()
    ));
    let assert = env
        .phantom()
        .arg("tick")
        .env("GIT_SSL_CAINFO", &cert)
        .assert();
    let _ = server.kill();
    let _ = server.wait();
    assert.success();
    let record = env.run_json("web", 1);
    assert_eq!(record["commit"], commit.as_str());
    assert_eq!(record["result"], "success");
    assert!(env.log("web", 1).contains("over https"));
}

/// A password in a repo's URL: git gets it from phantom_ci through `GIT_ASKPASS` and its environment,
/// never on a command line (which every local user can read in `/proc`), and no message shows it.
fn a_password_in_a_url_stays_off_command_lines_and_out_of_messages() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"git log --format=%s\"\n");
    repo.commit_and_push("behind a password");
    let (mut server, port, cert) = https_server(&env, Some("ci:s3cret"));
    // Every `git` phantom_ci starts is logged with its arguments before it runs.
    let real_git = crate::support::find_on_path("git").unwrap();
    let shims = env.root().join("shims");
    std::fs::create_dir_all(&shims).unwrap();
    let argv_log = env.root().join("git-argv.log");
    let shim = shims.join("git");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            argv_log.display(),
            real_git.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", shims.display(), std::env::var("PATH").unwrap());
    let section = |password: &str| {
        format!(
            "[web]\npath = \"https://ci:{password}@127.0.0.1:{port}/cgi-bin/git/app.git\"\nrun_as = \"{}\"\n",
            crate::support::current_user()
        )
    };
    let tick = |password: &str| {
        env.write_repo_toml(&section(password));
        env.phantom()
            .arg("tick")
            .env("GIT_SSL_CAINFO", &cert)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let ticked = tick("s3cret");
    // A wrong password fails the fetch; the message names the URL without it.
    repo.commit_and_push("second");
    let refused = tick("wr0ng");
    let _ = server.kill();
    let _ = server.wait();
    assert!(ticked.status.success(), "{ticked:?}");
    assert_eq!(env.run_json("web", 1)["result"], "success");
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(argv.contains("fetch"), "{argv}");
    assert!(
        !argv.contains("s3cret") && !argv.contains("wr0ng"),
        "{argv}"
    );
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("https://ci:***@127.0.0.1"), "{stderr}");
    assert!(!stderr.contains("wr0ng"), "{stderr}");
    assert_eq!(env.runs("web"), [1]);
    for command in [["status", "--json"], ["list", "--json"]] {
        let out = env.phantom().args(command).assert().success();
        let stdout = crate::support::stdout_of(&out);
        assert!(
            stdout.contains("ci:***@") && !stdout.contains("wr0ng"),
            "{stdout}"
        );
    }
}

fn a_repository_owned_by_another_user_is_trusted() {
    if !crate::support::needs_root() {
        return;
    }
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"git rev-parse HEAD\"\n");
    let commit = repo.commit_and_push("one");
    let chown = std::process::Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&repo.bare)
        .status()
        .unwrap();
    assert!(chown.success());
    env.write_repo_toml(&env.section("app", &repo, ""));
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.run_json("app", 1)["result"], "success");
    assert!(env.log("app", 1).contains(&commit));
}

/// Issue 10: `tick` on a freshly created repository (no commits, or no such branch yet) exited 1, so
/// every timer run failed until the first push.
fn a_branch_not_pushed_yet_is_a_note_and_exit_0() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let user = crate::support::current_user();
    // `app`: no commit at all; `remote`: the same, by URL; `other`: a branch nobody pushed.
    env.write_repo_toml(&format!(
        "{}[remote]\npath = \"file://{}\"\nrun_as = \"{user}\"\n\n[other]\npath = \"{}\"\ntarget_branch = \"main\"\nrun_as = \"{user}\"\n",
        env.section("app", &repo, ""),
        repo.bare.display(),
        repo.bare.display()
    ));
    let out = env.phantom().arg("tick").assert().code(0);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    for name in ["app", "remote", "other"] {
        let notes: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(&format!("repo `{name}` has no branch")))
            .collect();
        assert_eq!(notes.len(), 1, "one note for `{name}`: {stderr}");
        assert!(notes[0].starts_with("phantom_ci: note: "), "{stderr}");
        assert!(notes[0].contains("once a commit is pushed"), "{stderr}");
    }
    assert_eq!(stderr.lines().count(), 3, "nothing else: {stderr}");
    assert!(env.runs("app").is_empty() && env.runs("remote").is_empty());
    // Asked for explicitly, it is an error, which says what is missing and what to do.
    for name in ["app", "remote"] {
        let out = env.phantom().args(["run", name]).assert().code(1);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains(&format!("repo `{name}` has no branch `master` yet"))
                && stderr.contains("push a commit"),
            "{stderr}"
        );
    }
    // The first push is run by the next tick; `other`'s branch is still a note.
    repo.workflow("master", "[0]\nrun = \"true\"\n");
    repo.commit_and_push("first");
    let out = env.phantom().arg("tick").assert().code(0);
    assert_eq!(env.run_json("app", 1)["result"], "success");
    assert_eq!(env.run_json("remote", 1)["result"], "success");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("repo `other` has no branch `main` yet"),
        "{stderr}"
    );
}

crate::tests! {
    a_branch_not_pushed_yet_is_a_note_and_exit_0,
    tick_runs_what_moved_once,
    a_manual_run_does_not_count_as_seen,
    tick_fetches_a_file_url_into_a_mirror,
    a_killed_worker_leaves_an_aborted_run_and_queued_work_still_runs,
    a_spool_note_from_a_non_root_pusher_is_drained_by_a_root_tick,
    tick_fetches_an_https_remote,
    a_password_in_a_url_stays_off_command_lines_and_out_of_messages,
    a_repository_owned_by_another_user_is_trusted,
}
