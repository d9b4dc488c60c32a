//! Graph workflows (issue 19, SPEC §8): `needs`, `matrix`, `[env]`/`env`, `allow_failure`,
//! `parallel_steps` and `max_parallel_steps`, each step's own log. Overlap is shown by markers the
//! steps write and wait for (with a generous limit), never by durations.

use predicates::prelude::*;

use crate::support::{TestEnv, stdout_of};

/// `meet.sh DIR COUNT`: writes the step's start marker `DIR/<step>` and waits (at most two minutes)
/// until COUNT markers exist: it succeeds only if that many steps run at once.
const MEET: &str = "touch \"$1/$PHANTOM_CI_STEP\"\ni=0\nwhile [ \"$(ls \"$1\" | wc -l)\" -lt \"$2\" ]; do\n  i=$((i+1)); [ $i -gt 2400 ] && exit 9\n  sleep 0.05\ndone\n";

fn results(record: &serde_json::Value) -> Vec<String> {
    record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["result"].as_str().unwrap().to_string())
        .collect()
}

/// Repo `app` with `workflow` and `meet.sh` (and `files`), configured with `extra` and the
/// machine-wide `top` lines; the commit.
fn app(env: &TestEnv, workflow: &str, files: &[(&str, &str)], top: &str, extra: &str) -> String {
    let repo = env.repo("app");
    repo.write("meet.sh", MEET);
    for (path, text) in files {
        repo.write(path, text);
    }
    repo.workflow("master", workflow);
    let commit = repo.commit_and_push("app");
    env.write_repo_toml(&format!("{top}\n{}", env.section("app", &repo, extra)));
    commit
}

fn four_independent_steps_run_at_once_with_parallel_steps_4() {
    let env = TestEnv::new();
    let markers = env.root().join("markers");
    std::fs::create_dir(&markers).unwrap();
    let workflow: String = (0..4)
        .map(|n| {
            format!(
                "[{n}]\nrun = \"sh meet.sh {} 4\"\nneeds = []\n",
                markers.display()
            )
        })
        .collect();
    app(
        &env,
        &workflow,
        &[],
        "max_parallel_steps = 4",
        "parallel_steps = 4",
    );
    env.phantom().args(["run", "app"]).assert().success();
    let record = env.run_json("app", 1);
    assert_eq!(results(&record), ["success"; 4], "{record}");
    for n in 0..4 {
        assert!(markers.join(n.to_string()).exists());
    }
}

fn with_parallel_steps_1_they_run_one_at_a_time() {
    one_at_a_time("max_parallel_steps = 4", "parallel_steps = 1");
}

/// The machine's bound holds too: with `max_parallel_steps = 1` the run's steps take turns.
fn with_max_parallel_steps_1_they_run_one_at_a_time() {
    one_at_a_time("max_parallel_steps = 1", "parallel_steps = 4");
}

/// Four `needs = []` steps under the bounds `top` (machine) and `extra` (repo) run one at a time.
fn one_at_a_time(top: &str, extra: &str) {
    let env = TestEnv::new();
    let lock = env.root().join("lock");
    let seen = env.root().join("seen");
    // Each step takes a lock directory it gives back at its end: a step that finds it taken fails.
    let once = format!(
        "mkdir {0} || exit 7\necho $PHANTOM_CI_STEP >> {1}\nsleep 0.3\nrmdir {0}\n",
        lock.display(),
        seen.display()
    );
    let workflow: String = (0..4)
        .map(|n| format!("[{n}]\nrun = \"sh once.sh\"\nneeds = []\n"))
        .collect();
    app(&env, &workflow, &[("once.sh", &once)], top, extra);
    env.phantom().args(["run", "app"]).assert().success();
    assert_eq!(results(&env.run_json("app", 1)), ["success"; 4]);
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        "0\n1\n2\n3\n",
        "in step order"
    );
}

fn a_diamond_runs_its_middle_side_by_side_and_its_end_after_both() {
    let env = TestEnv::new();
    let root = env.root().display().to_string();
    let middle = env.root().join("middle");
    std::fs::create_dir(&middle).unwrap();
    // b and c each start after a, and end only once both of them run.
    let side = format!(
        "test -e {root}/a || exit 5\nsh meet.sh {} 2 || exit 6\ntouch {root}/$1\n",
        middle.display()
    );
    let workflow = format!(
        "[0]\nname = \"a\"\nrun = \"touch {root}/a\"\n\
         [1]\nname = \"b\"\nrun = \"sh side.sh b\"\nneeds = [0]\n\
         [2]\nname = \"c\"\nrun = \"sh side.sh c\"\nneeds = [0]\n\
         [3]\nname = \"d\"\nrun = \"sh -c 'test -e {root}/b && test -e {root}/c'\"\nneeds = [1, 2]\n"
    );
    app(
        &env,
        &workflow,
        &[("side.sh", &side)],
        "max_parallel_steps = 2",
        "parallel_steps = 2",
    );
    let out = env.phantom().args(["run", "app"]).assert().success();
    let record = env.run_json("app", 1);
    assert_eq!(results(&record), ["success"; 4], "{record}");
    assert_eq!(record["steps"][3]["needs"], serde_json::json!([1, 2]));
    assert_eq!(record["steps"][1]["needs"], serde_json::json!([0]));
    let stdout = stdout_of(&out);
    assert!(stdout.contains("==> [3] d: sh -c"), "{stdout}");
    // Every line of the steps is prefixed with its step.
    for line in env.log("app", 1).lines() {
        assert!(
            line.starts_with("==> ") || line.starts_with('['),
            "unprefixed line {line:?}"
        );
    }
}

fn a_matrix_runs_one_step_per_combination_each_with_its_values() {
    let env = TestEnv::new();
    let out_dir = env.root().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let workflow = format!(
        "[0]\nname = \"build\"\nrun = '''sh -c \"echo $CC $OPT $PHANTOM_CI_STEP $PHANTOM_CI_STEP_NAME > {}/$PHANTOM_CI_STEP\"'''\n\
         matrix = {{ CC = [\"gcc\", \"clang\"], OPT = [\"-O0\", \"-O2\"] }}\n\
         [1]\nrun = \"sh -c 'ls {} | wc -l | grep -qx 4'\"\n",
        out_dir.display(),
        out_dir.display()
    );
    app(&env, &workflow, &[], "", "");
    env.phantom().args(["run", "app"]).assert().success();
    let expected = [
        ("0.0", "gcc -O0"),
        ("0.1", "gcc -O2"),
        ("0.2", "clang -O0"),
        ("0.3", "clang -O2"),
    ];
    for (id, values) in expected {
        let (cc, opt) = values.split_once(' ').unwrap();
        assert_eq!(
            std::fs::read_to_string(out_dir.join(id)).unwrap(),
            format!("{values} {id} build (CC={cc}, OPT={opt})\n")
        );
    }
    let record = env.run_json("app", 1);
    assert_eq!(
        results(&record),
        ["success"; 5],
        "the last step waited for all four"
    );
    assert_eq!(record["steps"][2]["instance"], 2);
    assert_eq!(
        record["steps"][2]["matrix"],
        serde_json::json!({"CC": "clang", "OPT": "-O0"})
    );
    assert_eq!(record["steps"][4]["needs"], serde_json::json!([0]));
}

fn a_failure_stops_new_steps_lets_a_running_one_finish_and_runs_always_steps() {
    let env = TestEnv::new();
    let root = env.root().display().to_string();
    let journal = env.run_file("app", 1, "steps.jsonl");
    // Step 0 runs on until the run's journal records step 1's failure, then ends well.
    let slow = format!(
        "i=0\nuntil grep -q failure {}; do\n  i=$((i+1)); [ $i -gt 2400 ] && exit 9\n  sleep 0.05\ndone\ntouch {root}/finished-0\n",
        journal.display()
    );
    let workflow = format!(
        "[0]\nrun = \"sh slow.sh\"\nneeds = []\n\
         [1]\nrun = \"sh -c 'exit 3'\"\nneeds = []\n\
         [2]\nrun = \"touch {root}/never\"\nneeds = [0]\n\
         [3]\nname = \"cleanup\"\nrun = \"touch {root}/cleaned\"\nneeds = [0, 2]\nalways = true\n"
    );
    app(
        &env,
        &workflow,
        &[("slow.sh", &slow)],
        "max_parallel_steps = 2",
        "parallel_steps = 2",
    );
    env.phantom().args(["run", "app"]).assert().code(1).stdout(
        predicate::str::contains("==> [3] cleanup: touch")
            .and(predicate::str::contains("(always)")),
    );
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "failure");
    assert_eq!(
        results(&record),
        ["success", "failure", "skipped", "success"],
        "{record}"
    );
    assert!(
        env.root().join("finished-0").exists(),
        "the running step finished"
    );
    assert!(!env.root().join("never").exists());
    assert!(env.root().join("cleaned").exists());
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("step [1] sh -c 'exit 3' exited with status 3"),
        "{record}"
    );
    assert!(record["steps"][2]["started_at"].is_null());
    assert!(record["steps"][0]["finished_at"].is_string());
}

fn overlapping_steps_each_have_their_own_log_exactly() {
    let env = TestEnv::new();
    let markers = env.root().join("markers");
    std::fs::create_dir(&markers).unwrap();
    let print = format!(
        "sh meet.sh {} 2 || exit 6\ni=0\nwhile [ $i -lt 10000 ]; do\n  echo \"step $PHANTOM_CI_STEP line $i\"\n  i=$((i+1))\ndone\n",
        markers.display()
    );
    let workflow =
        "[0]\nrun = \"sh print.sh\"\nneeds = []\n[1]\nrun = \"sh print.sh\"\nneeds = []\n";
    app(
        &env,
        workflow,
        &[("print.sh", &print)],
        "max_parallel_steps = 2",
        "parallel_steps = 2",
    );
    env.phantom().args(["run", "app"]).assert().success();
    let log = env.log("app", 1);
    for n in 0..2 {
        let expected: String = (0..10_000)
            .map(|i| format!("step {n} line {i}\n"))
            .collect();
        let out = env
            .phantom()
            .args(["logs", "app", "1", "--step", &n.to_string()])
            .assert()
            .success();
        assert!(
            stdout_of(&out) == expected,
            "the log of step {n} is exactly its output"
        );
        let followed = env
            .phantom()
            .args(["logs", "app", "1", "--follow", "--step", &n.to_string()])
            .assert()
            .success();
        assert!(stdout_of(&followed) == expected);
        // The run's log has the same lines, whole, in order, behind the step's prefix.
        let prefix = format!("[{n}] ");
        let mine: String = log
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            mine == expected,
            "the run log keeps step {n}'s lines whole and in order"
        );
    }
    env.phantom()
        .args(["logs", "app", "1", "--step", "7"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no log of step 7: it has no such step (its steps: 0, 1)",
        ));
}

fn a_cycle_is_rejected_by_check_with_its_line() {
    let env = TestEnv::new();
    let file = env.root().join("w.toml");
    std::fs::write(
        &file,
        "[0]\nrun = \"a\"\n\n[1]\nrun = \"b\"\nneeds = [2]\n\n[2]\nrun = \"c\"\n",
    )
    .unwrap();
    env.phantom()
        .args(["check", file.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "line 6, step `1`: `needs` makes a cycle: 1 → 2 → 1",
        ));
}

fn workflow_variables_never_override_phantom_ci_ci_or_the_operator() {
    let env = TestEnv::new();
    let seen = env.root().join("seen");
    let workflow = format!(
        "[env]\nOPERATOR = \"workflow\"\nMINE = \"low\"\nSTEPWISE = \"low\"\n\n\
         [0]\nrun = '''sh -c \"echo $OPERATOR $MINE $STEPWISE $CI $PHANTOM_CI_COMMIT > {}\"'''\n\
         env = {{ STEPWISE = \"high\", OPERATOR = \"step\" }}\n",
        seen.display()
    );
    let commit = app(
        &env,
        &workflow,
        &[],
        "",
        "env = { OPERATOR = \"operator\" }",
    );
    env.phantom().args(["run", "app"]).assert().success();
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        format!("operator low high true {commit}\n")
    );
    // Reserved names are workflow errors: the run does not start a step.
    let repo = env.repo("evil");
    repo.workflow(
        "master",
        &format!(
            "[env]\nPHANTOM_CI_COMMIT = \"0000\"\n[0]\nrun = \"touch {}\"\n",
            env.root().join("evil-ran").display()
        ),
    );
    repo.commit_and_push("evil");
    env.write_repo_toml(&env.section("evil", &repo, ""));
    env.phantom().args(["run", "evil"]).assert().code(1);
    assert_eq!(env.run_json("evil", 1)["result"], "error");
    assert!(!env.root().join("evil-ran").exists());
    env.phantom()
        .args(["check", repo.work.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "`PHANTOM_CI_COMMIT` in `[env]` is set by phantom_ci",
        ));
    std::fs::write(
        repo.work.join("workflow/master.toml"),
        "[0]\nrun = \"true\"\nenv = { CI = \"false\" }\n",
    )
    .unwrap();
    env.phantom()
        .args(["check", repo.work.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "line 3, step `0`: `CI` in the step's `env`",
        ));
}

fn an_allowed_failure_fails_the_step_but_not_the_run() {
    let env = TestEnv::new();
    let after = env.root().join("after");
    let workflow = format!(
        "[0]\nname = \"flaky\"\nrun = \"sh -c 'exit 4'\"\nallow_failure = true\n[1]\nrun = \"touch {}\"\n",
        after.display()
    );
    app(&env, &workflow, &[], "", "");
    env.phantom()
        .args(["run", "app"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "`allow_failure = true`: the run goes on",
        ));
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "success");
    assert_eq!(results(&record), ["failure", "success"]);
    assert_eq!(record["steps"][0]["allow_failure"], true);
    assert_eq!(record["steps"][0]["exit_code"], 4);
    assert!(after.exists(), "the next step ran");
}

fn a_plain_workflow_keeps_its_log_unprefixed_and_has_step_logs() {
    let env = TestEnv::new();
    app(
        &env,
        "[0]\nrun = \"echo one\"\n[1]\nrun = \"sh -c 'printf two'\"\n",
        &[],
        "",
        "",
    );
    env.phantom().args(["run", "app"]).assert().success();
    let log = env.log("app", 1);
    assert!(
        log.contains("==> [0] echo one\none\n==> [1] sh -c 'printf two'\ntwo\n"),
        "{log}"
    );
    let out = env
        .phantom()
        .args(["logs", "app", "1", "--step", "1"])
        .assert()
        .success();
    assert_eq!(stdout_of(&out), "two");
    let record = env.run_json("app", 1);
    assert_eq!(record["steps"][1]["needs"], serde_json::json!([0]));
}

/// A step that times out ends with every process it started, even one in a session of its own:
/// each step has its own cgroup. Another step, still running, sees it gone.
fn a_timed_out_steps_setsid_children_end_with_it_while_the_run_goes_on() {
    if crate::boundary::writable_cgroup2().is_none() {
        return;
    }
    let env = TestEnv::new();
    let root = env.root().display().to_string();
    let journal = env.run_file("app", 1, "steps.jsonl");
    let watch = format!(
        "i=0\nuntil grep -q timeout {}; do\n  i=$((i+1)); [ $i -gt 2400 ] && exit 9\n  sleep 0.05\ndone\n\
         state=$(grep State /proc/$(cat {root}/pid)/status 2>/dev/null)\n\
         case \"$state\" in *zombie*|'') echo gone ;; *) echo alive ;; esac > {root}/seen\n",
        journal.display()
    );
    let workflow = format!(
        "[0]\nrun = '''sh -c \"setsid sleep 1052 & echo $! > {root}/pid; exec sleep 1053\"'''\n\
         timeout = \"1s\"\nneeds = []\n[1]\nrun = \"sh watch.sh\"\nneeds = []\n"
    );
    app(
        &env,
        &workflow,
        &[("watch.sh", &watch)],
        "max_parallel_steps = 2",
        "parallel_steps = 2",
    );
    env.phantom().args(["run", "app"]).assert().code(1);
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "timeout");
    assert_eq!(results(&record), ["timeout", "success"]);
    assert_eq!(
        std::fs::read_to_string(env.root().join("seen")).unwrap(),
        "gone\n"
    );
}

/// In the sandbox too, steps run side by side and see the workflow's variables: they are the
/// step's environment, not `bwrap`'s.
fn sandboxed_matrix_steps_see_their_variables() {
    if !crate::support::has_bwrap() {
        return;
    }
    let env = TestEnv::new_in(std::path::Path::new("/var/tmp"));
    let workflow = "[env]\nWHERE = \"inside\"\n[0]\nrun = '''sh -c \"echo $WHERE $X $PHANTOM_CI_STEP > $PHANTOM_CI_ARTIFACTS/$PHANTOM_CI_STEP\"'''\nmatrix = { X = [\"a\", \"b\"] }\n";
    app(&env, workflow, &[], "", "sandbox = \"bwrap\"");
    env.phantom().args(["run", "app"]).assert().success();
    for (id, x) in [("0.0", "a"), ("0.1", "b")] {
        let kept = env.data.join("runs/app/1/artifacts").join(id);
        assert_eq!(
            std::fs::read_to_string(kept).unwrap(),
            format!("inside {x} {id}\n")
        );
    }
}

crate::tests! {
    sandboxed_matrix_steps_see_their_variables,
    a_timed_out_steps_setsid_children_end_with_it_while_the_run_goes_on,
    four_independent_steps_run_at_once_with_parallel_steps_4,
    with_parallel_steps_1_they_run_one_at_a_time,
    with_max_parallel_steps_1_they_run_one_at_a_time,
    a_diamond_runs_its_middle_side_by_side_and_its_end_after_both,
    a_matrix_runs_one_step_per_combination_each_with_its_values,
    a_failure_stops_new_steps_lets_a_running_one_finish_and_runs_always_steps,
    overlapping_steps_each_have_their_own_log_exactly,
    a_cycle_is_rejected_by_check_with_its_line,
    workflow_variables_never_override_phantom_ci_ci_or_the_operator,
    an_allowed_failure_fails_the_step_but_not_the_run,
    a_plain_workflow_keeps_its_log_unprefixed_and_has_step_logs,
}
