//! `always = true` steps (issue 12, SPEC §6): they run after a failure or a timeout, never after an
//! abort, and never turn a failed run into a success.

use predicates::prelude::*;

use crate::support::TestEnv;

/// A failing step, a normal step (skipped), then an `always` step: it runs, the run stays `failure`.
fn an_always_step_runs_after_a_failing_one() {
    let env = TestEnv::new();
    let marker = env.root().join("cleaned-up");
    env.app(
        &format!(
            "[0]\nrun = 'sh -c \"exit 3\"'\n[1]\nrun = \"touch never-ran\"\n\
             [2]\nname = \"cleanup\"\nrun = \"touch {}\"\nalways = true\n",
            marker.display()
        ),
        "keep_workspace = \"always\"",
    );

    env.phantom()
        .args(["run", "app"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("[2] cleanup:").and(predicate::str::contains("(always)")));
    assert!(marker.exists(), "the `always` step ran after the failure");
    assert!(!env.data.join("work/app/1/workspace/never-ran").exists());
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "failure");
    let results = step_results(&record);
    assert_eq!(results, ["failure", "skipped", "success"]);
    // The message is the first failure's, not the cleanup's.
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("step [0] sh -c \"exit 3\" exited with status 3"),
        "{record}"
    );
}

/// An `always` step after a step that timed out runs too; the run stays `timeout`.
fn an_always_step_runs_after_a_timeout() {
    let env = TestEnv::new();
    let marker = env.root().join("after-timeout");
    env.app(
        &format!(
            "[0]\nrun = \"sleep 30\"\ntimeout = \"1s\"\n[1]\nrun = \"touch {}\"\nalways = true\n",
            marker.display()
        ),
        "",
    );
    env.phantom().args(["run", "app"]).assert().code(1);
    assert!(marker.exists(), "the `always` step ran after the timeout");
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "timeout");
    assert_eq!(record["steps"][0]["result"], "timeout");
    assert_eq!(record["steps"][1]["result"], "success");
}

/// The attack: a failing run whose `always` step succeeds must not become a success; and a failing
/// `always` step after successful steps fails the run like any step.
fn an_always_step_never_turns_a_failure_into_a_success() {
    let env = TestEnv::new();
    env.app(
        "[0]\nrun = \"false\"\n[1]\nrun = \"true\"\nalways = true\n",
        "",
    );
    env.phantom().args(["run", "app"]).assert().code(1);
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "failure");
    assert_eq!(record["steps"][1]["result"], "success");

    let env = TestEnv::new();
    env.app(
        "[0]\nrun = \"true\"\n[1]\nrun = \"false\"\nalways = true\n[2]\nrun = \"true\"\n",
        "",
    );
    env.phantom().args(["run", "app"]).assert().code(1);
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "failure");
    let results = step_results(&record);
    assert_eq!(results, ["success", "failure", "skipped"]);
}

/// After phantom_ci is told to stop (SIGTERM), no `always` step runs: the run is `aborted`.
fn no_always_step_runs_after_an_abort() {
    let env = TestEnv::new();
    let started = env.root().join("started");
    let marker = env.root().join("cleanup-ran");
    env.app(
        &format!(
            "[0]\nrun = 'sh -c \"touch {}; exec sleep 600\"'\n[1]\nrun = \"touch {}\"\nalways = true\n",
            started.display(),
            marker.display()
        ),
        "",
    );
    let child = env.spawn_run("app");
    crate::support::wait_for("step 0 to start", || started.exists());
    env.end_run_by(child, nix::sys::signal::Signal::SIGTERM);
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "aborted");
    assert_eq!(record["steps"][1]["result"], "skipped");
    assert!(!marker.exists(), "an `always` step ran after an abort");
}

/// `check` shows which steps are `always`, and refuses a non-boolean.
fn check_shows_always_in_the_plan() {
    let env = TestEnv::new();
    let file = env.root().join("w.toml");
    std::fs::write(
        &file,
        "[0]\nrun = \"make\"\n[1]\nrun = \"make clean\"\nalways = true\ntimeout = \"1m\"\n",
    )
    .unwrap();
    env.phantom()
        .arg("check")
        .arg(&file)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("  [0] make\n").and(predicate::str::contains(
                "  [1] make clean (timeout 1m, always)\n",
            )),
        );
    std::fs::write(&file, "[0]\nrun = \"make\"\nalways = 1\n").unwrap();
    env.phantom()
        .arg("check")
        .arg(&file)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "`always` must be `true` or `false`",
        ));
}

/// The result of each step of a run record, in order.
fn step_results(record: &serde_json::Value) -> Vec<&str> {
    record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["result"].as_str().unwrap())
        .collect()
}

crate::tests! {
    an_always_step_runs_after_a_failing_one,
    an_always_step_runs_after_a_timeout,
    an_always_step_never_turns_a_failure_into_a_success,
    no_always_step_runs_after_an_abort,
    check_shows_always_in_the_plan,
}
