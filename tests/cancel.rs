//! `phantom_ci cancel` (issue 12, SPEC §6): a run started by a push is ended from another process,
//! with result `cancelled`, nothing of it left running, its workspace gone; `--queued` drops the
//! waiting commit.

use crate::support::{TestEnv, TestRepo, process_running, stdout_of, wait_for};

/// A workflow whose first step writes its pid to `pid` (under the test's root), leaves a `setsid`
/// grandchild behind (`sleep <n+1>`) and sleeps for ten minutes (`sleep <n>`); the second step marks
/// that it ran.
fn sleeping_workflow(env: &TestEnv, n: u32) -> String {
    format!(
        "[0]\nrun = \"sh -c 'setsid sleep {} & echo $$ > {}; exec sleep {n}'\"\n[1]\nrun = \"touch {}\"\n",
        n + 1,
        env.root().join("pid").display(),
        env.root().join("second-step-ran").display()
    )
}

/// Repo `app` with the hook installed and `workflow`, pushed: its run 1 starts in a detached worker.
fn pushed<'a>(env: &'a TestEnv, workflow: &str) -> TestRepo<'a> {
    let repo = env.repo("app");
    env.write_repo_toml(&env.section("app", &repo, ""));
    env.install_hook(&repo, false);
    repo.workflow("master", workflow);
    repo.commit("long");
    assert!(repo.push("master").status.success());
    repo
}

/// The step's pid, once the step wrote it.
fn step_pid(env: &TestEnv) -> i32 {
    let file = env.root().join("pid");
    let mut pid = None;
    wait_for("the step to start", || {
        pid = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap()
}

/// Whether process `pid` still exists (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'))
    })
}

/// The pid in a run's `owner` file: the worker running it.
fn owner(env: &TestEnv, run: u64) -> i32 {
    let text = std::fs::read_to_string(env.run_file("app", run, "owner")).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

fn cancel_ends_a_running_run_and_leaves_nothing_of_it() {
    let env = TestEnv::new();
    pushed(&env, &sleeping_workflow(&env, 1040));
    let pid = step_pid(&env);
    wait_for("the setsid grandchild", || {
        process_running(&["sleep", "1041"])
    });
    assert!(env.data.join("work/app/1").exists());
    // From another process, as the operator would.
    let out = env.phantom().args(["cancel", "app"]).assert().success();
    let stdout = stdout_of(&out);
    assert!(stdout.contains("run #1 of `app`: cancelled"), "{stdout}");
    // `cancel` returns once the run is over: its record is final already.
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "cancelled", "{record}");
    let message = record["message"].as_str().unwrap();
    assert!(message.contains("phantom_ci cancel"), "{message}");
    assert!(message.contains("in step [0]"), "{message}");
    assert_eq!(record["steps"][0]["signal"], 15, "{record}");
    assert_eq!(record["steps"][1]["result"], "skipped", "{record}");
    assert!(record["finished_at"].is_string());
    assert!(!alive(pid), "the step's process {pid} outlived the cancel");
    assert!(
        !process_running(&["sleep", "1041"]),
        "the step's `setsid` grandchild outlived the cancel"
    );
    assert!(!env.data.join("work/app/1").exists(), "workspace removed");
    assert!(!env.root().join("second-step-ran").exists());
    // The log says so, and `status` shows it like any other result.
    assert!(env.log("app", 1).contains("==> cancelled: "));
    let status = env.phantom().args(["status", "--json"]).assert();
    let status: serde_json::Value = serde_json::from_str(&stdout_of(&status)).unwrap();
    assert_eq!(status[0]["last_run"]["result"], "cancelled");
    // The worker goes on with its life: a later push runs as usual.
    let again = env.phantom().args(["cancel", "app"]).assert().code(1);
    let stderr = String::from_utf8_lossy(&again.get_output().stderr).into_owned();
    assert!(stderr.contains("has no run in progress"), "{stderr}");
}

fn cancel_queued_also_drops_the_waiting_commit() {
    let env = TestEnv::new();
    let repo = pushed(&env, &sleeping_workflow(&env, 1042));
    step_pid(&env);
    let worker = owner(&env, 1);
    // Pushed while run 1 goes on: it waits for the repo's lock. (Quick, should it ever run.)
    repo.workflow("master", "[0]\nrun = \"true\"\n");
    let waiting = repo.commit("waiting");
    assert!(repo.push("master").status.success());
    wait_for("the commit to be queued", || {
        env.data.join("queue/app~master.json").exists()
    });
    let out = env
        .phantom()
        .args(["cancel", "app", "--queued"])
        .assert()
        .success();
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains(&format!("dropped the queued commit {}", &waiting[..7])),
        "{stdout}"
    );
    assert_eq!(env.run_json("app", 1)["result"], "cancelled");
    // The worker that ran run 1 looks at the queue once more, finds nothing and exits.
    wait_for("the worker to exit", || !alive(worker));
    assert_eq!(env.runs("app"), [1], "the dropped commit never ran");
    assert!(!env.data.join("queue/app~master.json").exists());
    // Nor does the next `tick`, which finds it the branch's tip: dropped is handled, not forgotten.
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.runs("app"), [1], "tick ran the dropped commit");
    // The branch's next commit runs (through the hook).
    repo.write("more", "x");
    let next = repo.commit_and_push("next");
    assert_eq!(env.wait_for_run("app", 2)["commit"], next.as_str());
}

fn cancel_with_nothing_running_says_so_and_exits_1() {
    let env = TestEnv::new();
    env.app("[0]\nrun = \"true\"\n", "");
    let out = env.phantom().args(["cancel", "app"]).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("repo `app` has no run in progress; nothing was cancelled"),
        "{stderr}"
    );
    let out = env.phantom().args(["cancel", "nope"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("no repo `nope`"), "{stderr}");
}

crate::tests! {
    cancel_ends_a_running_run_and_leaves_nothing_of_it,
    cancel_queued_also_drops_the_waiting_commit,
    cancel_with_nothing_running_says_so_and_exits_1,
}
