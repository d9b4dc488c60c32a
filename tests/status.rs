//! `status` (issue 10): queued work is shown; results in colour on a terminal only.

use serde_json::Value;

use crate::support::{TestEnv, wait_for};

/// A step that marks that it started, then waits for `release` to exist.
fn waiting_workflow(env: &TestEnv) -> String {
    format!(
        "[0]\nrun = '''sh -c 'touch {0}/started; while [ ! -e {0}/release ]; do sleep 0.05; done' '''\ntimeout = \"5m\"\n",
        env.root().display()
    )
}

fn status_json(env: &TestEnv) -> Value {
    let out = env.phantom().args(["status", "--json"]).output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn status_line(env: &TestEnv, repo: &str) -> String {
    let out = env.phantom().arg("status").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find(|l| l.starts_with(&format!("{repo} ")))
        .unwrap_or_else(|| panic!("no line for {repo} in {text}"))
        .to_string()
}

/// Issue 10: a commit waiting behind a run in progress did not show in `status`.
fn status_shows_the_commit_queued_behind_a_run() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&format!(
        "{}\n[idle]\npath = \"https://example.org/idle.git\"\n",
        env.section("app", &repo, "")
    ));
    env.install_hook(&repo, false);
    repo.workflow("master", &waiting_workflow(&env));
    repo.commit_and_push("first");
    wait_for("the first run to start", || {
        env.root().join("started").exists()
    });
    assert_eq!(status_json(&env)[0]["queued"], Value::Null);
    // Nothing queued anywhere: no QUEUED column.
    assert!(status_line(&env, "app").ends_with("so far"));

    repo.write("more", "1");
    let second = repo.commit_and_push("second");
    let status = status_json(&env);
    assert_eq!(status[0]["last_run"]["result"], "running");
    let queued = &status[0]["queued"];
    assert_eq!(queued["commit"], second.as_str(), "{status}");
    assert_eq!(queued["branch"], "master");
    assert_eq!(queued["trigger"], "hook");
    assert!(queued["queued_at"].is_string());
    let line = status_line(&env, "app");
    assert!(line.contains("running"), "{line}");
    assert!(
        line.ends_with(&format!("queued {}", &second[..7])),
        "{line}"
    );
    let idle = status_line(&env, "idle");
    // `idle master - never ran - - -` and `-` under QUEUED.
    assert_eq!(idle.split_whitespace().count(), 9, "{idle}");
    assert!(idle.ends_with("  -") && !idle.contains("queued"), "{idle}");
    assert_eq!(status_json(&env)[1]["queued"], Value::Null);

    std::fs::write(env.root().join("release"), "").unwrap();
    assert_eq!(env.wait_for_run("app", 2)["commit"], second.as_str());
    assert_eq!(status_json(&env)[0]["queued"], Value::Null);
    assert!(!status_line(&env, "app").contains("queued"));
}

/// Runs `phantom_ci ARGS` on a pseudo-terminal (python3's `pty`), with `TERM=xterm` and `extra`
/// variables; returns all it wrote there. `None` (and a skip note) without python3.
#[allow(clippy::print_stderr)]
fn on_a_terminal(env: &TestEnv, args: &[&str], extra: &[(&str, &str)]) -> Option<String> {
    let has_python = std::process::Command::new("python3")
        .args(["-c", "import pty"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_python {
        eprintln!(
            "skipped: needs python3, whose `pty` module gives the test a terminal (apt-get install python3)"
        );
        return None;
    }
    const SCRIPT: &str = "import os, pty, sys\n\
        pid, fd = pty.fork()\n\
        if pid == 0:\n    os.execv(sys.argv[1], sys.argv[1:])\n\
        out = b''\n\
        while True:\n    try:\n        data = os.read(fd, 65536)\n    except OSError:\n        break\n    if not data:\n        break\n    out += data\n\
        os.waitpid(pid, 0)\n\
        sys.stdout.buffer.write(out)\n";
    let binary = assert_cmd::cargo::cargo_bin!("phantom_ci");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(binary)
        .args(args)
        .env_clear()
        .envs(crate::support::fixed_env(&env.home))
        .env("PHANTOM_CI_CONFIG_DIR", &env.config)
        .env("PHANTOM_CI_DATA_DIR", &env.data)
        .env("TERM", "xterm")
        .envs(extra.iter().copied())
        .current_dir(env.root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Issue 10: results in colour on a terminal — `status` and a run's summary lines — and never in a
/// pipe, with `NO_COLOR`, in the run's log or in JSON. A step's own output passes through as it is.
fn results_are_in_colour_on_a_terminal_only() {
    let env = TestEnv::new();
    let (repo, _) = env.app(
        "[0]\nrun = '''printf '\\033[35mstep-colour\\033[0m\\n' '''\n",
        "",
    );
    // Piped: no escape sequence of phantom_ci's own; the step's bytes as they were.
    let out = env.phantom().args(["run", "app"]).assert().success();
    let piped = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(piped.contains("\x1b[35mstep-colour\x1b[0m"), "{piped:?}");
    assert!(piped.contains("==> app #1 success in "), "{piped:?}");
    let status = env.phantom().arg("status").output().unwrap();
    let status_piped = String::from_utf8(status.stdout).unwrap();
    assert!(
        status_piped.contains("success") && !status_piped.contains('\x1b'),
        "{status_piped:?}"
    );

    let Some(status_tty) = on_a_terminal(&env, &["status"], &[]) else {
        return;
    };
    assert!(
        status_tty.contains("\x1b[32msuccess\x1b[0m"),
        "{status_tty:?}"
    );
    // Padded by the text, not the escape sequences: COMMIT starts where it does in a pipe.
    let column = |text: &str, word: &str| {
        text.lines()
            .find(|l| l.starts_with("app "))
            .map(|l| l.replace("\x1b[32m", "").replace("\x1b[0m", "").find(word))
    };
    let commit = env.run_json("app", 1)["commit"].as_str().unwrap()[..7].to_string();
    assert_eq!(column(&status_tty, &commit), column(&status_piped, &commit));
    let no_color = on_a_terminal(&env, &["status"], &[("NO_COLOR", "1")]).unwrap();
    assert!(
        no_color.contains("success") && !no_color.contains('\x1b'),
        "{no_color:?}"
    );
    let json = on_a_terminal(&env, &["status", "--json"], &[]).unwrap();
    assert!(
        json.contains("\"success\"") && !json.contains('\x1b'),
        "{json:?}"
    );

    // A run on a terminal: its summary in colour there, and a plain log.
    let run = on_a_terminal(&env, &["run", "app"], &[]).unwrap();
    assert!(
        run.contains("==> app #2 \x1b[32msuccess\x1b[0m in "),
        "{run:?}"
    );
    let log = env.log("app", 2);
    assert!(log.contains("==> app #2 success in "), "{log:?}");
    assert!(
        !log.replace("\x1b[35mstep-colour\x1b[0m", "")
            .contains('\x1b'),
        "{log:?}"
    );
    let run = on_a_terminal(&env, &["run", "app"], &[("NO_COLOR", "1")]).unwrap();
    assert!(run.contains("==> app #3 success in "), "{run:?}");

    // A failure is red, and so is its reason's result word; the record says `failure` plainly.
    repo.workflow("master", "[0]\nrun = 'sh -c \"exit 3\"'\n");
    repo.commit_and_push("fails");
    let run = on_a_terminal(&env, &["run", "app"], &[]).unwrap();
    assert!(
        run.contains("==> \x1b[31mfailure\x1b[0m: step [0]"),
        "{run:?}"
    );
    assert!(run.contains(" \x1b[31mfailure\x1b[0m in "), "{run:?}");
    let record = std::fs::read_to_string(env.run_file("app", 4, "run.json")).unwrap();
    assert!(!record.contains('\x1b'), "{record}");
    let status_tty = on_a_terminal(&env, &["status"], &[]).unwrap();
    assert!(
        status_tty.contains("\x1b[31mfailure\x1b[0m"),
        "{status_tty:?}"
    );
}

/// SPEC §8: the steps a run runs now, from the `{"started": …}` lines of its journal, in the table's
/// lines and in `--json`: the step of a plain workflow the runner runs, then (written by hand) a
/// matrix copy with a hostile name, as a graph workflow's would be.
fn status_shows_the_steps_running_now() {
    let env = TestEnv::new();
    env.app(&waiting_workflow(&env), "");
    let mut run = env.spawn_run("app");
    wait_for("the step to start", || env.root().join("started").exists());
    let status = status_json(&env);
    let running = status[0]["running_steps"].as_array().unwrap();
    assert_eq!(running.len(), 1, "{status}");
    assert_eq!(running[0]["id"], "0");
    assert_eq!(running[0]["instance"], Value::Null);
    let out = env.phantom().arg("status").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("app #1 step [0]: running for "), "{text}");
    let journal = env.run_file("app", 1, "steps.jsonl");
    // Written as text: the matrix keeps the order of the file.
    let started = r#"{"started": {"index": 3, "instance": 1, "name": "cross\u001b[2J",
        "matrix": {"TARGET": "arm64", "OPT": "-O0"}, "started_at": "2026-12-07T01:00:00.000Z"}}"#
        .replace('\n', "");
    let first = r#"{"started": {"index": 0, "instance": null, "name": null, "matrix": null,
        "started_at": "2026-12-07T01:00:00.000Z"}}"#
        .replace('\n', "");
    std::fs::write(&journal, format!("{started}\n{first}\n")).unwrap();
    let status = status_json(&env);
    let running = status[0]["running_steps"].as_array().unwrap();
    assert_eq!(running.len(), 2, "{status}");
    assert_eq!(running[0]["id"], "3.1");
    assert_eq!(running[0]["matrix"]["OPT"], "-O0");
    assert_eq!(running[0]["started_at"], "2026-12-07T01:00:00.000Z");
    assert_eq!(running[1]["id"], "0");
    let out = env.phantom().arg("status").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("app #1 step [3.1] cross?[2J (TARGET=arm64, OPT=-O0): running for "),
        "{text}"
    );
    assert!(text.contains("app #1 step [0]: running for "), "{text}");
    assert!(!text.contains('\x1b'), "{text:?}");
    std::fs::write(env.root().join("release"), "").unwrap();
    assert!(run.wait().unwrap().success());
    assert_eq!(status_json(&env)[0]["running_steps"], serde_json::json!([]));
    let out = env.phantom().arg("status").output().unwrap();
    assert!(
        !String::from_utf8(out.stdout)
            .unwrap()
            .contains("running for")
    );
}

/// A branch name is the pusher's to choose: the table shows at most 60 characters of it (`--json`
/// all of it), so one long name does not widen every row.
fn a_long_branch_name_is_cut_in_the_table_not_in_json() {
    let env = TestEnv::new();
    let (repo, _) = env.app("[0]\nrun = \"true\"\n", "target_branch = \"*\"");
    let long = format!("feature/{}", "x".repeat(200));
    repo.workflow(&long, "[0]\nrun = \"true\"\n");
    repo.commit("long");
    assert!(repo.push(&long).status.success());
    env.phantom()
        .args(["run", "app", "--branch", &long])
        .assert()
        .success();
    let out = env.phantom().arg("status").assert().success();
    let text = crate::support::stdout_of(&out);
    assert!(text.contains("feature/xxx"), "{text}");
    assert!(text.contains('…'), "{text}");
    assert!(text.lines().all(|l| l.chars().count() < 160), "{text}");
    let json = status_json(&env);
    let branches: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|line| line["branch"].as_str())
        .collect();
    assert!(branches.contains(&long.as_str()), "{json}");
}

crate::tests! {
    a_long_branch_name_is_cut_in_the_table_not_in_json,
    status_shows_the_steps_running_now,
    status_shows_the_commit_queued_behind_a_run,
    results_are_in_colour_on_a_terminal_only,
}
