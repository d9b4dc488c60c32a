//! `phantom_ci run`: steps, output, failures, timeouts, the environment, the workspace (issue #2).

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use predicates::prelude::*;

use crate::support::{TestEnv, current_user, needs_root, process_running, stdout_of};

fn steps_run_in_numeric_order_without_a_shell() {
    let env = TestEnv::new();
    let (_repo, commit) = env.app("[10]\nrun = \"echo ten\"\n[2]\nrun = 'echo \"a  b\"'\n[0]\nrun = \"echo $HOME\"\nname = \"home\"\n", "");

    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let home = stdout
        .find("\n$HOME\n")
        .expect("`echo $HOME` prints `$HOME`");
    let ab = stdout.find("\na  b\n").expect("quotes keep both spaces");
    let ten = stdout.find("\nten\n").expect("step 10 ran");
    assert!(home < ab && ab < ten, "order 0, 2, 10:\n{stdout}");

    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "success");
    assert_eq!(record["commit"], commit.as_str());
    assert_eq!(record["trigger"], "manual");
    assert_eq!(record["message"], serde_json::Value::Null);
    let indexes: Vec<u64> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 2, 10]);
    assert_eq!(record["steps"][0]["name"], "home");
    assert!(env.log("app", 1).contains("\n$HOME\n"));
}

fn a_failing_step_ends_the_run_and_skips_the_rest() {
    let env = TestEnv::new();
    env.app(
        "[0]\nrun = \"true\"\n[1]\nrun = 'sh -c \"exit 3\"'\n[2]\nrun = \"touch never-ran\"\n",
        "keep_workspace = \"always\"",
    );

    env.phantom()
        .args(["run", "app"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("exited with status 3"));
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "failure");
    assert_eq!(record["steps"][1]["result"], "failure");
    assert_eq!(record["steps"][1]["exit_code"], 3);
    assert_eq!(record["steps"][2]["result"], "skipped");
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("exited with status 3")
    );
    assert!(!env.data.join("work/app/1/workspace/never-ran").exists());
    assert!(
        env.data.join("work/app/1/workspace/workflow").exists(),
        "workspace kept"
    );
}

fn invalid_workflows_are_error_runs_and_start_no_step() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[0]\nrun = \"touch ran\"\n[x]\nrun = \"pwd\"\n",
            "step `x`",
            "line 3",
        ),
        (
            "[0]\nrun = \"touch ran\"\n[1]\nrun = \"echo 'oops\"\n",
            "unbalanced quotes",
            "line 4",
        ),
        (
            "[0]\nrun = \"touch ran\"\nshell = \"bash\"\n",
            "unknown field `shell`",
            "line 3",
        ),
        (
            "[0]\nrun = \"touch ran\"\n[1]\nrun = \"\"\n",
            "`run` is empty",
            "step `1`",
        ),
    ];
    for (workflow, expected, position) in cases {
        let env = TestEnv::new();
        let repo = env.repo("app");
        repo.workflow("master", workflow);
        repo.commit_and_push("bad workflow");
        env.write_repo_toml(&env.section("app", &repo, "keep_workspace = \"always\""));
        env.phantom().args(["run", "app"]).assert().code(1);
        let record = env.run_json("app", 1);
        assert_eq!(record["result"], "error", "{workflow}");
        let message = record["message"].as_str().unwrap();
        assert!(message.contains("workflow/master.toml"), "{message}");
        assert!(
            message.contains(expected) && message.contains(position),
            "{message}"
        );
        assert_eq!(record["steps"].as_array().unwrap().len(), 0);
        assert!(
            !env.data.join("work/app/1/workspace/ran").exists(),
            "no step started"
        );
    }
}

fn a_symlinked_workflow_is_refused() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.write("real.toml", "[0]\nrun = \"touch ran\"\n");
    std::fs::create_dir_all(repo.work.join("workflow")).unwrap();
    std::os::unix::fs::symlink("../real.toml", repo.work.join("workflow/master.toml")).unwrap();
    repo.write("workflow.toml", "[0]\nrun = \"touch fallback-ran\"\n");
    repo.commit_and_push("symlink");
    env.write_repo_toml(&env.section("app", &repo, "keep_workspace = \"always\""));
    env.phantom()
        .args(["run", "app"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("symbolic link"));
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "error");
    assert!(!env.data.join("work/app/1/workspace/ran").exists());
    assert!(
        !env.data.join("work/app/1/workspace/fallback-ran").exists(),
        "no fallback past a symlink"
    );
}

fn a_commit_without_a_workflow_is_an_error_run() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.write("README", "no workflow here\n");
    repo.commit_and_push("nothing to run");
    env.write_repo_toml(&env.section("app", &repo, ""));
    env.phantom().args(["run", "app"]).assert().code(1);
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "error");
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("workflow/master.toml")
    );
}

fn the_workspace_is_the_requested_commit_even_after_the_branch_moved() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow(
        "master",
        "[0]\nrun = \"git rev-parse HEAD\"\n[1]\nrun = \"cat version.txt\"\n[2]\nrun = \"git describe --tags\"\n[3]\nrun = \"git status --porcelain\"\n",
    );
    repo.write("version.txt", "one\n");
    let first = repo.commit_and_push("one");
    env.git(&repo.work, &["tag", "v1"]);
    env.git(&repo.work, &["push", "-q", "origin", "v1"]);
    repo.write("version.txt", "two\n");
    repo.commit_and_push("two");
    env.write_repo_toml(&env.section("app", &repo, ""));

    let out = env
        .phantom()
        .args(["run", "app", "--commit", &first])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains(&format!("\n{first}\n")), "{stdout}");
    assert!(
        stdout.contains("\none\n") && !stdout.contains("\ntwo\n"),
        "{stdout}"
    );
    assert!(stdout.contains("\nv1\n"), "git describe works: {stdout}");
    assert_eq!(env.run_json("app", 1)["commit"], first.as_str());
}

fn output_arrives_while_the_step_is_still_running() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let marker = env.root().join("release");
    repo.workflow(
        "master",
        &format!(
            "[0]\nrun = '''sh -c 'echo first-line; while [ ! -e {} ]; do sleep 0.05; done; echo second-line' '''\ntimeout = \"5m\"\n",
            marker.display()
        ),
    );
    repo.commit_and_push("slow");
    env.write_repo_toml(&env.section("app", &repo, ""));

    let mut child = env
        .phantom_std()
        .args(["run", "app"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let seen = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l == "first-line");
    assert!(seen.is_some(), "the first line came out");
    // The step cannot end before the marker exists: the line above came out while it ran.
    std::fs::write(&marker, "").unwrap();
    assert!(lines.map(|l| l.unwrap()).any(|l| l == "second-line"));
    assert!(child.wait().unwrap().success());
}

fn only_documented_variables_reach_a_step() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"env\"\n");
    let commit = repo.commit_and_push("env");
    env.write_repo_toml(&env.section(
        "app",
        &repo,
        "env = { FROM_REPO = \"yes\" }\npass_env = [\"PASSED_THROUGH\"]",
    ));
    let out = env
        .phantom()
        .args(["run", "app"])
        .env("SECRET_TOKEN", "hunter2")
        .env("PASSED_THROUGH", "ok")
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        !stdout.contains("SECRET_TOKEN") && !stdout.contains("hunter2"),
        "{stdout}"
    );
    for expected in [
        "CI=true".to_string(),
        "PHANTOM_CI=true".into(),
        "PHANTOM_CI_REPO=app".into(),
        "PHANTOM_CI_BRANCH=master".into(),
        format!("PHANTOM_CI_COMMIT={commit}"),
        "PHANTOM_CI_RUN=1".into(),
        format!("USER={}", current_user()),
        "FROM_REPO=yes".into(),
        "PASSED_THROUGH=ok".into(),
        format!(
            "PHANTOM_CI_WORKSPACE={}",
            env.data.join("work/app/1/workspace").display()
        ),
    ] {
        assert!(
            stdout.lines().any(|l| l == expected),
            "missing {expected}:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("PHANTOM_CI_PREVIOUS_COMMIT"),
        "no previous run yet"
    );

    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        stdout.contains(&format!("PHANTOM_CI_PREVIOUS_COMMIT={commit}")),
        "{stdout}"
    );
    assert!(stdout.contains("PHANTOM_CI_RUN=2"));
}

fn a_step_that_times_out_is_killed_with_its_process_group() {
    let env = TestEnv::new();
    env.app("[0]\nrun = \"sh -c 'sleep 1013 & sleep 1013'\"\ntimeout = \"2s\"\n[1]\nrun = \"echo never\"\n", "");
    env.phantom()
        .args(["run", "app"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("timed out after 2s"));
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "timeout");
    assert_eq!(record["steps"][0]["result"], "timeout");
    assert_eq!(record["steps"][1]["result"], "skipped");
    assert!(
        !process_running(&["sleep", "1013"]),
        "the step's process group is gone"
    );
}

fn the_repo_timeout_caps_the_whole_run() {
    let env = TestEnv::new();
    env.app(
        "[0]\nrun = \"sleep 1014\"\ntimeout = \"1h\"\n",
        "timeout = \"1s\"",
    );
    env.phantom().args(["run", "app"]).assert().code(1);
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "timeout");
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("the repo's `timeout`")
    );
    assert!(!process_running(&["sleep", "1014"]));
}

fn root_without_run_as_runs_nothing_and_says_how_to_allow_it() {
    if !needs_root() {
        return;
    }
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"touch ran\"\n");
    repo.commit_and_push("as root");
    env.write_repo_toml(&format!(
        "[app]\npath = \"{}\"\nkeep_workspace = \"always\"\n",
        repo.bare.display()
    ));
    env.phantom()
        .args(["run", "app"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("run_as = \"root\""));
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "error");
    assert_eq!(record["steps"].as_array().unwrap().len(), 0);
    assert!(
        !env.data.join("work/app/1").exists(),
        "no workspace, no step"
    );
    // And the documented way to allow it works.
    env.phantom()
        .args(["run", "app", "--run-as", "root"])
        .assert()
        .success();
    // A path not in Repo.toml has no section to set `run_as` in: its run is an `error` that says
    // `--run-as`, and no step runs.
    let out = env
        .phantom()
        .args(["run", repo.work.to_str().unwrap()])
        .assert()
        .code(1);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let record = env.run_json("@app", 1);
    assert_eq!(record["result"], "error", "{stdout}");
    let message = record["message"].as_str().unwrap();
    assert!(message.contains("`--run-as <user>`"), "{message}");
    assert!(!message.contains("Set `run_as"), "{message}");
    assert_eq!(record["steps"].as_array().unwrap().len(), 0);
}

fn a_path_that_is_not_configured_runs_its_head_branch_under_its_name() {
    let env = TestEnv::new();
    let repo = env.repo("tool");
    env.git(&repo.work, &["checkout", "-q", "-b", "develop"]);
    repo.workflow("develop", "[0]\nrun = \"echo on-develop\"\n");
    repo.commit("develop");
    let user = current_user();
    env.phantom()
        .args(["run", repo.work.to_str().unwrap(), "--run-as", &user])
        .assert()
        .success()
        .stdout(predicate::str::contains("\non-develop\n"));
    assert_eq!(env.run_json("@tool", 1)["branch"], "develop");
}

/// Issue 10: `run <path>` of a work tree named like a configured repo was recorded as that repo's run.
fn an_ad_hoc_run_never_shares_records_with_a_configured_repo() {
    let env = TestEnv::new();
    let (_, configured_commit) = env.app("[0]\nrun = \"echo configured\"\n", "");
    env.phantom().args(["run", "app"]).assert().success();
    // A work tree that is not in Repo.toml, in a directory that is also called `app`.
    let stray = env.root().join("elsewhere/app");
    std::fs::create_dir_all(&stray).unwrap();
    env.git(&stray, &["init", "-q", "-b", "master"]);
    std::fs::create_dir_all(stray.join("workflow")).unwrap();
    std::fs::write(
        stray.join("workflow/master.toml"),
        "[0]\nrun = \"echo ad-hoc\"\n",
    )
    .unwrap();
    env.git(&stray, &["add", "-A"]);
    env.git(&stray, &["commit", "-q", "-m", "stray"]);
    let user = current_user();
    let out = env
        .phantom()
        .args(["run", stray.to_str().unwrap(), "--run-as", &user])
        .assert()
        .success()
        .stdout(predicate::str::contains("==> @app #1"));
    // The pusher is told where the record is and how to read it again.
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let record_dir = env.data.join("runs/@app/1");
    assert!(
        stderr.contains(&format!("`{}`", record_dir.display())),
        "{stderr}"
    );
    assert!(stderr.contains("logs @app 1"), "{stderr}");
    // The configured repo still has its one run, and it is what `status` shows.
    assert_eq!(env.runs("app"), [1]);
    assert_eq!(env.run_json("@app", 1)["repo"], "@app");
    let status = env.phantom().args(["status", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status[0]["last_run"]["run"], 1);
    assert_eq!(status[0]["last_run"]["commit"], configured_commit.as_str());
    env.phantom()
        .args(["logs", "@app"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\nad-hoc\n"));
    env.phantom()
        .args(["logs", "app"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("\nconfigured\n")
                .and(predicate::str::contains("ad-hoc").not()),
        );
    // Another repository whose directory is called `app` does not share the ad-hoc records either.
    let other = env.root().join("third/app");
    std::fs::create_dir_all(&other).unwrap();
    env.git(&other, &["clone", "-q", stray.to_str().unwrap(), "."]);
    env.phantom()
        .args(["run", other.to_str().unwrap(), "--run-as", &user])
        .assert()
        .success();
    assert_eq!(env.runs("@app"), [1], "{stderr}");
    let names: Vec<String> = std::fs::read_dir(env.data.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("@app-"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(env.runs(&names[0]), [1]);
    assert_eq!(env.runs("app"), [1]);
}

fn artifacts_are_kept_with_the_record() {
    let env = TestEnv::new();
    env.app("[0]\nrun = '''sh -c 'echo built > \"$PHANTOM_CI_ARTIFACTS/out.txt\" && ln -s /etc/passwd \"$PHANTOM_CI_ARTIFACTS/passwd\"' '''\n", "");
    env.phantom().args(["run", "app"]).assert().success();
    let kept = env.data.join("runs/app/1/artifacts");
    assert_eq!(
        std::fs::read_to_string(kept.join("out.txt")).unwrap(),
        "built\n"
    );
    assert!(
        std::fs::symlink_metadata(kept.join("passwd")).is_err(),
        "links are not kept"
    );
    assert!(!env.data.join("work/app/1").exists(), "workspace removed");
}

/// `artifact_files` caps how many files a run keeps (issue 18): a step that makes more keeps exactly
/// the cap, the first names in order, and the log says so once.
fn artifacts_past_artifact_files_are_dropped_with_one_note() {
    let env = TestEnv::new();
    let step = "[0]\nrun = '''sh -c 'i=0; while [ $i -lt 300 ]; do printf x > \"$PHANTOM_CI_ARTIFACTS/f$((1000 + i))\"; i=$((i + 1)); done' '''\n";
    env.app(step, "artifact_files = 40");
    env.phantom().args(["run", "app"]).assert().success();
    let kept = env.data.join("runs/app/1/artifacts");
    let mut names: Vec<String> = std::fs::read_dir(&kept)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let expected: Vec<String> = (1000..1040).map(|n| format!("f{n}")).collect();
    assert_eq!(names, expected);
    let log = env.log("app", 1);
    assert_eq!(
        log.matches("not kept").count(),
        1,
        "one note for everything dropped: {log}"
    );
    assert!(
        log.contains(
            "==> artifacts past the first 40 files and directories not kept (the repo's \
             `artifact_files`; raise it in Repo.toml to keep more)"
        ),
        "{log}"
    );
    let listed = env.phantom().args(["list", "--json"]).assert().success();
    assert!(stdout_of(&listed).contains("\"artifact_files\": 40"));
}

fn a_background_process_keeps_its_output_until_the_run_ends() {
    let env = TestEnv::new();
    env.app("[0]\nrun = '''sh -c '(while [ ! -e go ]; do sleep 0.05; done; echo from-background; touch done) &' '''\n\
         [1]\nrun = '''sh -c 'touch go; while [ ! -e done ]; do sleep 0.05; done; echo step-one-done' '''\ntimeout = \"2m\"\n", "");
    env.phantom().args(["run", "app"]).assert().success();
    let log = env.log("app", 1);
    let background = log
        .find("from-background\n")
        .expect("the background output is in the log");
    let done = log.find("step-one-done\n").unwrap();
    let header = log.find("==> [1]").unwrap();
    assert!(header < background && background < done, "{log}");
}

fn a_configured_path_keeps_its_settings_on_another_branch() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("feature", "[0]\nrun = \"env\"\n");
    repo.commit("feature");
    assert!(repo.push("feature").status.success());
    env.write_repo_toml(&env.section("app", &repo, "env = { FROM_REPO = \"yes\" }"));
    env.phantom()
        .args(["run", repo.bare.to_str().unwrap(), "--branch", "feature"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\nFROM_REPO=yes\n"));
    assert_eq!(env.run_json("app", 1)["branch"], "feature");
}

/// A console that stops reading (issue 8 item 6): phantom_ci's stdout is a pipe whose read end the
/// test keeps open and never reads, so a write to it blocks once the pipe is full.
mod a_console_that_never_reads {
    use std::io::Write;
    use std::process::{Child, Stdio};

    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    use crate::support::{TestEnv, process_running, wait_for};

    /// Far more than the pipe and phantom_ci's console buffer hold together.
    const FLOOD: usize = 8_000_000;

    fn flooding_step(sleep: &str, timeout: &str) -> String {
        format!(
            "[0]\nrun = \"sh -c 'head -c {FLOOD} /dev/zero; echo printed-all; exec sleep {sleep}'\"\n\
             timeout = \"{timeout}\"\n[1]\nrun = \"echo never\"\n"
        )
    }

    /// The log holds the step's output byte for byte and one note saying how much the console missed.
    fn assert_log_complete(env: &TestEnv) {
        let log = std::fs::read(env.run_file("app", 1, "log")).unwrap();
        // (The step's header line names `printed-all` too, not after a NUL.)
        let end = 1 + log
            .windows(b"\0printed-all".len())
            .position(|w| w == b"\0printed-all")
            .expect("the log has the end of the output");
        assert!(end > FLOOD, "the log has all {FLOOD} bytes");
        assert!(log[end - FLOOD..end].iter().all(|b| *b == 0));
        assert_eq!(log[end - FLOOD - 1], b'\n', "nothing mixed into the output");
        let text = String::from_utf8_lossy(&log[end..]);
        assert_eq!(
            text.matches("the console did not keep up").count(),
            1,
            "{text}"
        );
        let missed: usize = text
            .split("the console did not keep up: ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("the note says how much was not shown: {text}"));
        assert!(missed > 0 && missed <= FLOOD + 4096, "{missed}");
    }

    /// phantom_ci ends by itself: it does not wait for ever for a console that takes nothing.
    fn wait_for_exit(child: &mut Child) -> std::process::ExitStatus {
        let mut status = None;
        wait_for("phantom_ci to exit", || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }

    pub(super) fn the_timeout_still_fires_and_the_log_has_everything() {
        let env = TestEnv::new();
        env.app(&flooding_step("1031", "2s"), "");
        let mut child = env
            .phantom_std()
            .args(["run", "app"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _never_read = child.stdout.take().unwrap();
        let record = env.wait_for_run("app", 1);
        assert_eq!(record["result"], "timeout", "{record}");
        assert_eq!(record["steps"][0]["result"], "timeout");
        assert_eq!(record["steps"][1]["result"], "skipped");
        assert_log_complete(&env);
        assert_eq!(wait_for_exit(&mut child).code(), Some(1));
        assert!(!process_running(&["sleep", "1031"]), "the step was killed");
    }

    pub(super) fn sigterm_to_a_waiting_hook_still_aborts_the_run() {
        let env = TestEnv::new();
        let (repo, commit) = env.app(&flooding_step("1032", "10m"), "");
        let mut child = env.spawn_hook_wait(&repo.bare, Stdio::null());
        let zeros = "0".repeat(40);
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{zeros} {commit} refs/heads/master").unwrap();
        drop(stdin);
        let _never_read = child.stdout.take().unwrap();
        // The whole output reached the log although the console took at most a pipe's worth of it.
        wait_for("the step's output in the log", || {
            std::fs::read(env.run_file("app", 1, "log"))
                .is_ok_and(|log| log.windows(12).any(|w| w == b"\0printed-all"))
        });
        wait_for("the step's sleep", || process_running(&["sleep", "1032"]));
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        let record = env.wait_for_run("app", 1);
        assert_eq!(record["result"], "aborted", "{record}");
        assert!(record["message"].as_str().unwrap().contains("SIGTERM"));
        assert_log_complete(&env);
        // A hook never fails the push.
        assert_eq!(wait_for_exit(&mut child).code(), Some(0));
        assert!(!process_running(&["sleep", "1032"]), "the step was killed");
    }
}

/// Issue 22 (SPEC §10): a step that runs as another user than phantom_ci's gets the system's PATH,
/// nothing of root's own (`/root/.cargo/bin`, …); the repo's `env` or `pass_env` may still set one.
fn a_run_as_step_gets_the_system_path_not_phantom_cis() {
    if !crate::support::needs_root() {
        return;
    }
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"env\"\n");
    repo.commit_and_push("env");
    let own_path = format!(
        "/root/.cargo/bin:/root/private/bin:{}",
        std::env::var("PATH").unwrap()
    );
    let path_of = |extra: &str| {
        env.write_repo_toml(&env.section_as("app", &repo, "nobody", extra));
        let out = env
            .phantom()
            .args(["run", "app"])
            .env("PATH", &own_path)
            .assert()
            .success();
        let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("PATH=").map(str::to_string))
            .unwrap_or_else(|| panic!("no PATH:\n{stdout}"))
    };
    let path = path_of("");
    assert_eq!(
        path,
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert!(!path.contains("/root"), "{path}");
    assert_eq!(
        path_of("env = { PATH = \"/opt/tools/bin:/usr/bin:/bin\" }"),
        "/opt/tools/bin:/usr/bin:/bin"
    );
    assert_eq!(path_of("pass_env = [\"PATH\"]"), own_path);
}

crate::tests! {
    a_run_as_step_gets_the_system_path_not_phantom_cis,
    an_ad_hoc_run_never_shares_records_with_a_configured_repo,
    steps_run_in_numeric_order_without_a_shell,
    a_failing_step_ends_the_run_and_skips_the_rest,
    invalid_workflows_are_error_runs_and_start_no_step,
    a_symlinked_workflow_is_refused,
    a_commit_without_a_workflow_is_an_error_run,
    the_workspace_is_the_requested_commit_even_after_the_branch_moved,
    output_arrives_while_the_step_is_still_running,
    only_documented_variables_reach_a_step,
    a_step_that_times_out_is_killed_with_its_process_group,
    the_repo_timeout_caps_the_whole_run,
    root_without_run_as_runs_nothing_and_says_how_to_allow_it,
    a_path_that_is_not_configured_runs_its_head_branch_under_its_name,
    artifacts_are_kept_with_the_record,
    artifacts_past_artifact_files_are_dropped_with_one_note,
    a_background_process_keeps_its_output_until_the_run_ends,
    a_configured_path_keeps_its_settings_on_another_branch,
    a_console_that_never_reads::the_timeout_still_fires_and_the_log_has_everything,
    a_console_that_never_reads::sigterm_to_a_waiting_hook_still_aborts_the_run,
}
