//! The post-receive hook (issue #3): real `git push` through a real installed hook.

use crate::support::{TestEnv, wait_for};

/// A step that marks that it started, then waits for `release` to exist (a side effect the test controls).
fn waiting_workflow(env: &TestEnv, extra_step: &str) -> String {
    let started = env.root().join("started");
    let release = env.root().join("release");
    format!(
        "[0]\nrun = '''sh -c 'touch {}; while [ ! -e {} ]; do sleep 0.05; done; echo step-output' '''\ntimeout = \"5m\"\n{extra_step}",
        started.display(),
        release.display()
    )
}

fn a_push_queues_a_run_and_returns_while_the_step_still_runs() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&env.section("app", &repo, ""));
    env.install_hook(&repo, false);
    repo.workflow("master", &waiting_workflow(&env, ""));
    let commit = repo.commit("slow");
    let out = repo.push("master");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("remote: phantom_ci: queued `app`"),
        "{stderr}"
    );
    // The suggested command names the directories in force, so it can be pasted as it is.
    let follow = format!(
        "phantom_ci --config-dir {} --data-dir {} logs app --follow",
        env.config.display(),
        env.data.display()
    );
    assert!(stderr.contains(&follow), "{stderr}");
    // `git push` has returned; the step cannot end before `release` exists: it is still running.
    wait_for("the step to start", || env.root().join("started").exists());
    assert_eq!(env.run_json("app", 1)["result"], "running");
    std::fs::write(env.root().join("release"), "").unwrap();
    let record = env.wait_for_run("app", 1);
    assert_eq!(record["result"], "success");
    assert_eq!(record["trigger"], "hook");
    assert_eq!(record["commit"], commit.as_str());
    assert!(env.log("app", 1).contains("step-output"));
}

fn with_wait_the_pusher_sees_the_output() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&env.section("app", &repo, ""));
    env.install_hook(&repo, true);
    repo.workflow(
        "master",
        "[0]\nrun = \"echo hello-pusher\"\n[1]\nrun = 'sh -c \"exit 4\"'\n",
    );
    repo.commit("visible");
    let out = repo.push("master");
    assert!(out.status.success(), "a failing run never fails the push");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("remote: hello-pusher"), "{stderr}");
    assert!(stderr.contains("exited with status 4"), "{stderr}");
    assert_eq!(env.run_json("app", 1)["result"], "failure");
}

fn other_branches_tags_and_deletions_run_nothing() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&env.section("app", &repo, "target_branch = \"main\""));
    repo.workflow("main", "[0]\nrun = \"true\"\n");
    repo.workflow("master", "[0]\nrun = \"true\"\n");
    repo.commit("one");
    assert!(repo.push("main").status.success());
    env.install_hook(&repo, true);
    let pushes = [
        vec!["push", "-q", "origin", "HEAD:refs/heads/other"],
        vec!["tag", "v1"],
        vec!["push", "-q", "origin", "v1"],
        vec!["push", "-q", "origin", ":refs/heads/main"],
        vec!["push", "-q", "origin", ":refs/heads/other"],
    ];
    for args in pushes {
        env.git(&repo.work, &args);
    }
    assert!(env.runs("app").is_empty());
    let queued = std::fs::read_dir(env.data.join("queue")).map_or(0, |dir| {
        dir.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count()
    });
    assert_eq!(queued, 0);
}

fn a_configuration_error_is_one_line_and_never_fails_the_push() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml("[app]\npath = 5\n");
    env.install_hook(&repo, false);
    repo.workflow("master", "[0]\nrun = \"true\"\n");
    repo.commit("one");
    let out = repo.push("master");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Repo.toml` line 2"), "{stderr}");
    assert!(stderr.contains("the push itself succeeded"), "{stderr}");
}

fn pushes_during_a_run_queue_up_and_only_the_newest_runs() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&env.section("app", &repo, ""));
    env.install_hook(&repo, false);
    let journal = env.root().join("journal");
    let record_step = format!(
        "[1]\nrun = '''sh -c 'echo \"start $PHANTOM_CI_COMMIT\" >> {0}; sleep 0.2; echo \"end $PHANTOM_CI_COMMIT\" >> {0}' '''\n",
        journal.display()
    );
    repo.workflow("master", &waiting_workflow(&env, &record_step));
    let first = repo.commit_and_push("first");
    wait_for("the first run to start", || {
        env.root().join("started").exists()
    });
    let mut newest = String::new();
    for i in 0..5 {
        repo.write("counter", &i.to_string());
        newest = repo.commit_and_push(&format!("push {i}"));
    }
    // Following right after the pushes follows the queued run, not the one in progress.
    let follow = env
        .phantom_std()
        .args(["logs", "app", "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::write(env.root().join("release"), "").unwrap();
    let followed = follow.wait_with_output().unwrap();
    let followed_out = String::from_utf8_lossy(&followed.stdout);
    assert!(followed.status.success(), "{followed_out}");
    assert!(followed_out.starts_with("==> app #2"), "{followed_out}");
    assert!(String::from_utf8_lossy(&followed.stderr).contains("is queued; waiting for its run"));
    let second = env.wait_for_run("app", 2);
    assert_eq!(env.wait_for_run("app", 1)["commit"], first.as_str());
    assert_eq!(second["commit"], newest.as_str(), "the newest commit runs");
    assert_eq!(second["result"], "success");
    // Nothing else is queued or running, and only two runs exist.
    wait_for("the queue to empty", || {
        !env.data.join("queue/app~master.json").exists()
    });
    let output = env.phantom().arg("work").output().unwrap();
    assert!(output.status.success());
    assert_eq!(env.runs("app"), [1, 2]);
    let journal = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(
        journal,
        format!("start {first}\nend {first}\nstart {newest}\nend {newest}\n"),
        "runs never overlap"
    );
    let worker_log = std::fs::read_to_string(env.data.join("worker.log")).unwrap_or_default();
    assert!(!worker_log.contains("error"), "{worker_log}");
}

fn a_push_during_a_manual_run_runs_after_it() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&env.section("app", &repo, ""));
    repo.workflow("master", &waiting_workflow(&env, ""));
    repo.commit_and_push("before the hook");
    env.install_hook(&repo, false);
    let manual = env.spawn_run("app");
    wait_for("the manual run to start", || {
        env.root().join("started").exists()
    });
    repo.write("more", "1");
    let pushed = repo.commit_and_push("during the manual run");
    std::fs::write(env.root().join("release"), "").unwrap();
    assert!(manual.wait_with_output().unwrap().status.success());
    let second = env.wait_for_run("app", 2);
    assert_eq!(second["commit"], pushed.as_str());
    assert_eq!(second["trigger"], "hook");
    assert_eq!(env.run_json("app", 1)["trigger"], "manual");
}

fn a_repository_with_a_work_tree_matches_its_git_dir() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"echo from-a-work-tree\"\n");
    let commit = repo.commit("work tree");
    env.write_repo_toml(&format!(
        "[app]\npath = \"{}\"\nrun_as = \"{}\"\n",
        repo.work.display(),
        crate::support::current_user()
    ));
    // As git runs a hook in a repository with a work tree: in `.git`, with GIT_DIR=`.`.
    let zeros = "0".repeat(40);
    env.phantom()
        .args(["hook", "--wait"])
        .current_dir(repo.work.join(".git"))
        .env("GIT_DIR", ".")
        .write_stdin(format!("{zeros} {commit} refs/heads/master\n"))
        .assert()
        .success()
        .stdout(predicates::str::contains("from-a-work-tree"));
    assert_eq!(env.run_json("app", 1)["commit"], commit.as_str());
}

/// The repository is matched by what it is, not by how its path is spelled: a `path` through a
/// symlink is the same repository; another repository, with the same branch, is not.
fn a_path_through_a_symlink_matches_and_another_repository_does_not() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let other = env.repo("other");
    let link = env.root().join("link-to-app.git");
    std::os::unix::fs::symlink(&repo.bare, &link).unwrap();
    env.write_repo_toml(&format!(
        "{}[app]\npath = \"{}\"\nrun_as = \"{}\"\n",
        env.section("other", &other, ""),
        link.display(),
        crate::support::current_user()
    ));
    env.install_hook(&repo, true);
    repo.workflow("master", "[0]\nrun = \"echo through-the-link\"\n");
    repo.commit("linked");
    let out = repo.push("master");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("remote: through-the-link"), "{stderr}");
    assert_eq!(env.run_json("app", 1)["result"], "success");
    assert!(
        !env.data.join("runs/other").exists(),
        "the other repository ran nothing: {stderr}"
    );
}

fn a_hundred_thousand_ref_lines_queue_the_configured_branch_once() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"echo ran-once\"\n");
    let commit = repo.commit_and_push("many refs");
    // Two sections on the repository; only `app`'s branch is in the input.
    env.write_repo_toml(&format!(
        "{}{}",
        env.section("app", &repo, ""),
        env.section("rel", &repo, "target_branch = \"release\"")
    ));
    // 100,000 distinct branches (quadratic to deduplicate with a list), `master` among them three
    // times, tags, and a deletion of `release`.
    let zeros = "0".repeat(40);
    let other = "1".repeat(40);
    let mut input = String::new();
    for i in 0..100_000 {
        if i % 40_000 == 0 {
            input.push_str(&format!("{zeros} {commit} refs/heads/master\n"));
        }
        input.push_str(&format!("{zeros} {other} refs/heads/b{i}\n"));
        if i % 10_000 == 0 {
            input.push_str(&format!("{zeros} {other} refs/tags/t{i}\n"));
        }
    }
    input.push_str(&format!("{other} {zeros} refs/heads/release\n"));
    let out = env
        .phantom()
        .args(["hook", "--wait"])
        .current_dir(&repo.bare)
        .env("GIT_DIR", &repo.bare)
        .write_stdin(input)
        .assert()
        .success();
    let stdout = crate::support::stdout_of(&out);
    assert_eq!(stdout.matches("phantom_ci: queued").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("queued `app`").count(), 1, "{stdout}");
    assert_eq!(
        stdout.matches("ran-once").count(),
        2,
        "header and output: {stdout}"
    );
    assert_eq!(env.runs("app"), [1]);
    assert!(env.runs("rel").is_empty());
    assert_eq!(env.run_json("app", 1)["commit"], commit.as_str());
    assert!(!env.data.join("queue/app~master.json").exists());
}

fn a_pusher_who_cannot_read_the_config_leaves_a_few_spool_notes_for_many_refs() {
    if !crate::support::needs_root() {
        return;
    }
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::shared();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"true\"\n");
    repo.commit_and_push("one");
    env.write_repo_toml(&env.section_as("app", &repo, "nobody", ""));
    let repo_toml = env.config.join("Repo.toml");
    std::fs::set_permissions(&repo_toml, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The root tick makes the spool, a drop box; then the pusher `nobody` pushes 100,000 branches.
    env.phantom().arg("tick").assert().success();
    let spool = env.data.join("spool");
    let mut hook = env.spawn_hook_as_nobody(&repo.bare);
    let (zeros, other) = ("0".repeat(40), "1".repeat(40));
    let input: String = (0..100_000)
        .map(|i| format!("{zeros} {other} refs/heads/b{i}\n"))
        .collect();
    let mut stdin = hook.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = hook.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("and 99984 more branches"),
        "{}",
        &stdout[stdout.len().saturating_sub(500)..]
    );
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        16,
        "not 100,000 notes"
    );
}

/// Issue 10: two pushes with `hook --wait` at once. The second pusher saw only `queued …` while its
/// whole run printed in the first pusher's terminal. Now each pusher sees its own run, and the second
/// is told what it waits for.
fn each_waiting_pusher_sees_its_own_run_and_what_it_waits_for() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};

    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&env.section("app", &repo, ""));
    env.install_hook(&repo, true);
    let release = env.root().join("release");
    repo.workflow(
        "master",
        &format!(
            "[0]\nrun = '''sh -c 'echo \"run-of $PHANTOM_CI_COMMIT\"; touch {0}/started-$PHANTOM_CI_COMMIT; while [ ! -e {1} ]; do sleep 0.05; done' '''\ntimeout = \"5m\"\n",
            env.root().display(),
            release.display()
        ),
    );
    // A push by path updates no remote-tracking ref: the two pushes do not contend in the clone.
    let push = |env: &TestEnv| {
        let mut child = Command::new("git")
            .args([
                "push",
                "-q",
                repo.bare.to_str().unwrap(),
                "HEAD:refs/heads/master",
            ])
            .current_dir(&repo.work)
            .env_clear()
            .envs(crate::support::fixed_env(&env.home))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let seen = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn({
            let seen = seen.clone();
            move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    seen.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            }
        });
        (child, seen, reader)
    };
    let first = repo.commit("first");
    let (mut first_push, first_seen, first_reader) = push(&env);
    wait_for("the first run to start", || {
        env.root().join(format!("started-{first}")).exists()
    });
    repo.write("more", "1");
    let second = repo.commit("second");
    let (mut second_push, second_seen, second_reader) = push(&env);
    wait_for("the second pusher to be told what it waits for", || {
        second_seen
            .lock()
            .unwrap()
            .contains("waiting for run #1 of `app`")
    });
    std::fs::write(&release, "").unwrap();
    assert!(first_push.wait().unwrap().success());
    assert!(second_push.wait().unwrap().success());
    first_reader.join().unwrap();
    second_reader.join().unwrap();
    let first_seen = first_seen.lock().unwrap().clone();
    let second_seen = second_seen.lock().unwrap().clone();

    assert!(
        first_seen.contains(&format!("run-of {first}")),
        "{first_seen}"
    );
    assert!(first_seen.contains("==> app #1 success"), "{first_seen}");
    assert!(
        !first_seen.contains(&format!("run-of {second}")),
        "{first_seen}"
    );
    assert!(!first_seen.contains("app #2"), "{first_seen}");

    let waiting = second_seen
        .lines()
        .find(|l| l.contains("waiting for run #1 of `app`"))
        .unwrap();
    assert!(
        waiting.contains(&first[..7]) && waiting.contains(&second[..7]),
        "{waiting}"
    );
    assert!(
        second_seen.contains(&format!("run-of {second}")),
        "{second_seen}"
    );
    assert!(second_seen.contains("==> app #2 success"), "{second_seen}");
    assert!(
        !second_seen.contains(&format!("run-of {first}")),
        "{second_seen}"
    );
    assert!(
        second_seen.find("waiting for run #1").unwrap() < second_seen.find("==> app #2").unwrap(),
        "{second_seen}"
    );
    assert_eq!(env.run_json("app", 2)["commit"], second.as_str());
    assert_eq!(env.run_json("app", 2)["trigger"], "hook");
    assert!(!env.data.join("queue/app~master.json").exists());
    assert_eq!(env.runs("app"), [1, 2]);
}

/// A waiting pusher whose commit a newer push replaces before it starts is told so (only the newest
/// commit runs), and that newer commit still runs once.
fn a_waiting_pusher_whose_commit_is_replaced_is_told_and_the_newest_runs() {
    use std::io::Write;
    use std::process::Stdio;

    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&env.section("app", &repo, ""));
    repo.workflow("master", &waiting_workflow(&env, ""));
    let first = repo.commit_and_push("first");
    let hook = |commit: &str, wait: bool| {
        let mut command = env.phantom_std();
        command.arg("hook");
        if wait {
            command.arg("--wait");
        }
        let mut child = command
            .env("GIT_DIR", &repo.bare)
            .current_dir(&repo.bare)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{} {commit} refs/heads/master", "0".repeat(40)).unwrap();
        child
    };
    let running = hook(&first, true);
    wait_for("the first run to start", || {
        env.root().join("started").exists()
    });
    repo.write("more", "1");
    let second = repo.commit_and_push("second");
    let waiting = hook(&second, true);
    wait_for("the second hook to queue its commit", || {
        std::fs::read_to_string(env.data.join("queue/app~master.json"))
            .is_ok_and(|q| q.contains(&second))
    });
    repo.write("more", "2");
    let third = repo.commit_and_push("third");
    let quick = hook(&third, false).wait_with_output().unwrap();
    assert!(quick.status.success());
    std::fs::write(env.root().join("release"), "").unwrap();
    let running = running.wait_with_output().unwrap();
    let waiting = waiting.wait_with_output().unwrap();
    let running_out = String::from_utf8_lossy(&running.stdout);
    let waiting_out = String::from_utf8_lossy(&waiting.stdout);
    assert!(running_out.contains("==> app #1 success"), "{running_out}");
    assert!(!running_out.contains("app #2"), "{running_out}");
    // The newer commit is named unless a worker took it first (the two race for the lock).
    assert!(
        waiting_out.contains(&format!(
            "{} of `app` was replaced by a newer push ({}) before",
            &second[..7],
            &third[..7]
        )) || waiting_out.contains(&format!(
            "{} of `app` was replaced by a newer push before",
            &second[..7]
        )),
        "{waiting_out}"
    );
    assert!(!waiting_out.contains("==> app #"), "{waiting_out}");
    let record = env.wait_for_run("app", 2);
    assert_eq!(record["commit"], third.as_str());
    wait_for("the queue to empty", || {
        !env.data.join("queue/app~master.json").exists()
    });
    assert_eq!(env.runs("app"), [1, 2]);
}

/// A waiting pusher that goes away (its hook killed while it waits) does not take its commit with it:
/// the run in progress, when it ends, hands the commit to a worker.
fn a_waiting_hook_that_dies_leaves_its_commit_to_a_worker() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;

    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&env.section("app", &repo, ""));
    repo.workflow("master", &waiting_workflow(&env, ""));
    let first = repo.commit_and_push("first");
    let hook = |commit: &str| {
        let mut child = env.spawn_hook_wait(&repo.bare, Stdio::null());
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{} {commit} refs/heads/master", "0".repeat(40)).unwrap();
        child
    };
    let mut running = hook(&first);
    wait_for("the first run to start", || {
        env.root().join("started").exists()
    });
    repo.write("more", "1");
    let second = repo.commit_and_push("second");
    let mut waiting = hook(&second);
    let mut lines = BufReader::new(waiting.stdout.take().unwrap()).lines();
    let told = lines
        .find(|l| {
            l.as_ref()
                .is_ok_and(|l| l.contains("waiting for run #1 of `app`"))
        })
        .is_some();
    assert!(told, "the second hook says what it waits for");
    waiting.kill().unwrap();
    waiting.wait().unwrap();
    std::fs::write(env.root().join("release"), "").unwrap();
    assert!(running.wait().unwrap().success());
    let record = env.wait_for_run("app", 2);
    assert_eq!(record["commit"], second.as_str());
    assert_eq!(record["result"], "success");
}

/// The pusher waits for the hook, so the hook does not wait for the disk (issue 23): its queue entry
/// is written whole but not synced — the worker's record is durable, and `tick` queues a tip no run
/// saw — and the detached worker still runs the push.
#[allow(clippy::print_stderr)]
fn the_hook_itself_never_waits_for_the_disk() {
    let Some(strace) = crate::support::find_on_path("strace") else {
        crate::skip!("needs strace to see the hook's system calls (apt-get install strace)");
    };
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&env.section("app", &repo, ""));
    repo.workflow("master", "[0]\nrun = \"echo ran-after-the-hook\"\n");
    let commit = repo.commit_and_push("no hook installed yet");
    let trace = env.root().join("hook.trace");
    let hook = env.phantom_std();
    let mut traced = std::process::Command::new(strace);
    // Without `-f`: the hook's own calls, not the worker's.
    traced
        .args([
            "-qq",
            "-e",
            "trace=fsync,fdatasync,syncfs,sync,sync_file_range",
            "-o",
        ])
        .arg(&trace)
        .arg(assert_cmd::cargo::cargo_bin!("phantom_ci"))
        .arg("hook")
        .env_clear()
        .envs(hook.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("GIT_DIR", &repo.bare)
        .current_dir(&repo.bare)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = traced.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{} {commit} refs/heads/master", "0".repeat(40)).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("phantom_ci: queued `app`"), "{stdout}");
    let calls = std::fs::read_to_string(&trace).unwrap();
    assert!(
        !calls.lines().any(|l| l.contains("sync")),
        "the hook synced:\n{calls}"
    );
    let record = env.wait_for_run("app", 1);
    assert_eq!(record["result"], "success");
    assert_eq!(record["commit"], commit.as_str());
    assert!(env.log("app", 1).contains("ran-after-the-hook"));
}

/// The hook starts its worker without waiting for the worker's `exec` (issue 23); the worker is still
/// cut off from the pusher: a session of its own, stdin `/dev/null`, output into `worker.log`, and
/// none of the variables git sets for hooks.
fn the_detached_worker_has_no_tie_to_the_pusher() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&env.section("app", &repo, ""));
    env.install_hook(&repo, false);
    // The step's parent is the worker.
    let script = r#"read pid comm state ppid pgrp session rest < /proc/$PPID/stat
test "$pid" = "$session" && echo worker-leads-its-session
echo "worker-stdin=$(readlink /proc/$PPID/fd/0) worker-stdout=$(readlink /proc/$PPID/fd/1)"
echo "git-dir-vars=$(tr '\000' '\n' < /proc/$PPID/environ | grep -c '^GIT_DIR=')"
"#;
    repo.write("probe.sh", script);
    repo.workflow("master", "[0]\nrun = \"sh probe.sh\"\n");
    repo.commit("where the worker stands");
    assert!(repo.push("master").status.success());
    let record = env.wait_for_run("app", 1);
    assert_eq!(record["result"], "success");
    let log = env.log("app", 1);
    assert!(log.contains("worker-leads-its-session"), "{log}");
    let stdout = env.data.join("worker.log");
    assert!(
        log.contains(&format!(
            "worker-stdin=/dev/null worker-stdout={}",
            stdout.display()
        )),
        "{log}"
    );
    assert!(log.contains("git-dir-vars=0"), "{log}");
}

crate::tests! {
    the_detached_worker_has_no_tie_to_the_pusher,
    the_hook_itself_never_waits_for_the_disk,
    each_waiting_pusher_sees_its_own_run_and_what_it_waits_for,
    a_waiting_pusher_whose_commit_is_replaced_is_told_and_the_newest_runs,
    a_waiting_hook_that_dies_leaves_its_commit_to_a_worker,
    a_push_queues_a_run_and_returns_while_the_step_still_runs,
    with_wait_the_pusher_sees_the_output,
    other_branches_tags_and_deletions_run_nothing,
    a_configuration_error_is_one_line_and_never_fails_the_push,
    pushes_during_a_run_queue_up_and_only_the_newest_runs,
    a_push_during_a_manual_run_runs_after_it,
    a_repository_with_a_work_tree_matches_its_git_dir,
    a_path_through_a_symlink_matches_and_another_repository_does_not,
    a_hundred_thousand_ref_lines_queue_the_configured_branch_once,
    a_pusher_who_cannot_read_the_config_leaves_a_few_spool_notes_for_many_refs,
}
