//! Run records (issue 8 items 8 and 9): written in bytes linear in the steps, and damaged state said
//! out loud — never an older record shown in place of one that cannot be read, never a counter that
//! wraps.

use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::{TestEnv, process_running, wait_for};

/// `wchar` of `/proc/<pid>/io` — every byte phantom_ci (and the steps it reaped) passed to `write` —
/// read once it has exited but before it is reaped, so nothing it wrote is missed.
fn bytes_written_by(mut command: std::process::Command) -> (u64, std::process::ExitStatus) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).unwrap();
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let status = child.wait().unwrap();
    let wchar = io
        .lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .unwrap()
        .parse()
        .unwrap();
    (wchar, status)
}

fn a_record_costs_bytes_linear_in_its_steps() {
    const STEPS: u64 = 2_000;
    let env = TestEnv::new();
    let workflow: String = (0..STEPS)
        .map(|i| format!("[{i}]\nrun = \"true\"\n"))
        .collect();
    env.app(&workflow, "");
    let mut command = env.phantom_std();
    command.args(["run", "app"]);
    let (written, status) = bytes_written_by(command);
    assert!(status.success());
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "success");
    assert_eq!(record["steps"].as_array().unwrap().len() as u64, STEPS);
    assert!(
        !env.run_file("app", 1, "steps.jsonl").exists(),
        "the journal goes once run.json is final"
    );
    // Rewriting run.json after every step wrote about STEPS²/2 step records (some 340 MB here);
    // linear is a few hundred bytes per step: its header, its journal line, its share of run.json.
    let bound = (1 << 20) + STEPS * 1024;
    assert!(
        written < bound,
        "a {STEPS}-step run wrote {written} bytes, more than {bound}"
    );
}

fn status_shows_the_steps_of_a_run_in_progress_from_its_journal() {
    let env = TestEnv::new();
    let release = env.root().join("release");
    env.app(
        &format!(
            "[0]\nrun = \"true\"\n[1]\nrun = \"echo two\"\n[2]\nrun = '''sh -c 'while [ ! -e {} ]; do sleep 0.05; done' '''\n",
            release.display()
        ),
        "",
    );
    let mut run = env.spawn_run("app");
    let mut last_run = Value::Null;
    wait_for("two steps in `status --json`", || {
        let out = env.phantom().args(["status", "--json"]).output().unwrap();
        let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        last_run = status[0]["last_run"].clone();
        last_run["steps"].as_array().is_some_and(|s| s.len() == 2)
    });
    assert_eq!(last_run["result"], "running");
    assert_eq!(last_run["steps"][1]["run"], "echo two");
    assert_eq!(last_run["steps"][1]["result"], "success");
    // run.json itself was written once, at the start, and not after each step.
    assert_eq!(env.run_json("app", 1)["steps"], serde_json::json!([]));
    std::fs::write(&release, "").unwrap();
    assert!(run.wait().unwrap().success());
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "success");
    assert_eq!(record["steps"].as_array().unwrap().len(), 3);
}

/// `app` with two successful runs, the newest of which then loses the end of its `run.json`.
fn two_runs_the_newest_truncated(env: &TestEnv) -> std::path::PathBuf {
    env.app("[0]\nrun = \"echo hello\"\n", "");
    for _ in 0..2 {
        env.phantom().args(["run", "app"]).assert().success();
    }
    let path = env.run_file("app", 2, "run.json");
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    path
}

fn status_says_the_newest_record_is_unreadable_instead_of_showing_the_previous_run() {
    let env = TestEnv::new();
    let path = two_runs_the_newest_truncated(&env);
    let path = path.display().to_string();

    let out = env.phantom().arg("status").assert().code(1);
    let stdout = crate::support::stdout_of(&out);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("run #2 of `app`"), "{stderr}");
    assert!(stderr.contains(&path), "{stderr}");
    let row = stdout.lines().find(|l| l.starts_with("app")).unwrap();
    assert!(row.contains("#2") && row.contains("unreadable"), "{stdout}");
    assert!(!row.contains("#1") && !row.contains("success"), "{stdout}");

    let out = env.phantom().args(["status", "--json"]).assert().code(1);
    let status: Value = serde_json::from_str(&crate::support::stdout_of(&out)).unwrap();
    assert_eq!(status[0]["last_run"], Value::Null);
    let error = status[0]["last_run_error"].as_str().unwrap();
    assert!(
        error.contains("run #2 of `app`") && error.contains(&path),
        "{error}"
    );
}

fn logs_and_report_say_the_record_is_unreadable() {
    let env = TestEnv::new();
    let path = two_runs_the_newest_truncated(&env);
    let path = path.display().to_string();

    // `logs` prints the log all the same, and says what is wrong.
    let out = env.phantom().args(["logs", "app"]).assert().code(1);
    assert!(crate::support::stdout_of(&out).contains("==> app #2"));
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(
        stderr.contains("run #2 of `app`") && stderr.contains(&path),
        "{stderr}"
    );

    let out = env
        .phantom()
        .args(["logs", "app", "--follow"])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(
        stderr.contains("run #2 of `app`") && stderr.contains(&path),
        "{stderr}"
    );

    let site = env.root().join("site");
    let out = env.phantom().arg("report").arg(&site).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(
        stderr.contains("run #2 of `app`") && stderr.contains(&path),
        "{stderr}"
    );
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(
        index.contains("<td>#2</td>") && index.contains(">unreadable<"),
        "{index}"
    );
    assert!(
        index.contains("app/1.html"),
        "the readable run is still listed"
    );
    let badge = std::fs::read_to_string(site.join("badge/app.svg")).unwrap();
    assert!(
        badge.contains(">unreadable</text>"),
        "not the previous run's success"
    );
}

fn recovery_records_a_dead_run_with_an_unreadable_record_as_aborted() {
    let env = TestEnv::new();
    let release = env.root().join("never-released");
    let (repo, commit) = env.app(
        &format!(
            "[0]\nrun = \"echo first\"\n[1]\nrun = '''sh -c 'while [ ! -e {} ]; do sleep 0.05; done' '''\n",
            release.display()
        ),
        "",
    );
    let mut run = env.spawn_run("app");
    wait_for("step 0 in the journal", || {
        std::fs::read_to_string(env.run_file("app", 1, "steps.jsonl"))
            .is_ok_and(|j| j.lines().filter(|l| !l.starts_with("{\"started\"")).count() == 1)
    });
    // phantom_ci dies, and the machine with it: run.json loses its end.
    kill(Pid::from_raw(run.id() as i32), Signal::SIGKILL).unwrap();
    run.wait().unwrap();
    let json = env.run_file("app", 1, "run.json");
    let text = std::fs::read_to_string(&json).unwrap();
    let cut = text.find("\"trigger\"").unwrap() + 5;
    std::fs::write(&json, &text[..cut]).unwrap();

    env.phantom().arg("status").assert().code(1);
    // The next invocation finds it (and runs a new tip that does not wait).
    repo.workflow("master", "[0]\nrun = \"true\"\n");
    repo.commit_and_push("quick");
    env.phantom().arg("tick").assert().success();
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "aborted");
    let message = record["message"].as_str().unwrap();
    assert!(message.contains("unreadable"), "{message}");
    assert!(message.contains("run.json.unreadable"), "{message}");
    // What could be known: from the damaged file, the log's first line, the journal.
    assert_eq!(record["branch"], "master");
    assert_eq!(record["commit"], commit.as_str());
    assert_eq!(record["trigger"], "manual");
    assert!(record["finished_at"].is_string());
    assert_eq!(record["steps"].as_array().unwrap().len(), 1);
    assert_eq!(record["steps"][0]["run"], "echo first");
    assert_eq!(record["steps"][0]["result"], "success");
    assert_eq!(
        std::fs::read_to_string(env.run_file("app", 1, "run.json.unreadable")).unwrap(),
        &text[..cut]
    );
    assert!(!env.run_file("app", 1, "steps.jsonl").exists());
    // The step phantom_ci left behind is gone too, and `status` is clean again.
    assert!(!process_running(&[
        "sh",
        "-c",
        &format!("while [ ! -e {} ]; do sleep 0.05; done", release.display())
    ]));
    assert_eq!(env.run_json("app", 2)["result"], "success");
    env.phantom().arg("status").assert().code(0);
}

fn an_impossible_run_counter_is_an_error_naming_it_never_a_wrap() {
    let env = TestEnv::new();
    env.app("[0]\nrun = \"true\"\n", "");
    env.phantom().args(["run", "app"]).assert().success();
    let counter = env.data.join("runs/app/last");
    let counter_shown = counter.display().to_string();

    for (contents, expected) in [
        ("18446744073709551615\n", "cannot number another run"),
        ("9007199254740991\n", "cannot number another run"),
        ("seven\n", "not a run number"),
        ("", "not a run number"),
    ] {
        std::fs::write(&counter, contents).unwrap();
        let out = env.phantom().args(["run", "app"]).assert().code(1);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr);
        assert!(stderr.contains(expected), "{contents:?}: {stderr}");
        assert!(stderr.contains(&counter_shown), "{contents:?}: {stderr}");
        assert_eq!(env.runs("app"), [1], "{contents:?}: no run #0, no new run");
    }
    // A run directory numbered that high is just as impossible.
    std::fs::write(&counter, "1\n").unwrap();
    std::fs::create_dir(env.data.join("runs/app/18446744073709551615")).unwrap();
    let out = env.phantom().args(["run", "app"]).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(
        stderr.contains("runs/app/18446744073709551615`"),
        "{stderr}"
    );
    std::fs::remove_dir_all(env.data.join("runs/app/18446744073709551615")).unwrap();
    // Repaired, numbering goes on where it was.
    env.phantom().args(["run", "app"]).assert().success();
    assert_eq!(env.runs("app"), [1, 2]);
}

crate::tests! {
    a_record_costs_bytes_linear_in_its_steps,
    status_shows_the_steps_of_a_run_in_progress_from_its_journal,
    status_says_the_newest_record_is_unreadable_instead_of_showing_the_previous_run,
    logs_and_report_say_the_record_is_unreadable,
    recovery_records_a_dead_run_with_an_unreadable_record_as_aborted,
    an_impossible_run_counter_is_an_error_naming_it_never_a_wrap,
}
