//! `phantom_ci check` (issue #2): validate workflows, print the plan, run nothing.

use predicates::prelude::*;

use crate::support::TestEnv;

fn check_prints_the_plan_of_every_workflow_in_head() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[1]\nrun = \"make build\"\nname = \"build\"\ntimeout = \"10m\"\n[0]\nrun = \"touch ran\"\n");
    repo.workflow("feature/x", "[0]\nrun = \"echo x\"\n");
    repo.commit("two workflows");
    env.phantom()
        .args(["check", repo.work.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "workflow/master.toml: 2 steps\n  [0] touch ran\n  [1] build: make build (timeout 10m)",
        ))
        .stdout(predicate::str::contains("workflow/feature/x.toml: 1 step"));
    assert!(!repo.work.join("ran").exists());
}

fn check_of_an_invalid_file_exits_1_with_the_line() {
    let env = TestEnv::new();
    let file = env.root().join("w.toml");
    std::fs::write(&file, "[0]\nrun = \"ok\"\n[1]\nrun = \"echo 'open\"\n").unwrap();
    env.phantom()
        .args(["check", file.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "line 4, step `1`: `run` has unbalanced quotes",
        ));
}

fn check_says_when_the_working_tree_differs_from_head() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.phantom()
        .args(["check", repo.work.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("has no commit yet"));
    repo.workflow("master", "[0]\nrun = \"true\"\n");
    repo.commit("ok");
    repo.workflow("master", "[0]\nrun = \"true\"\nshell = \"bash\"\n");
    env.phantom()
        .args(["check", repo.work.to_str().unwrap()])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "`workflow/master.toml` has uncommitted changes",
        ));
}

fn check_warns_about_shell_syntax_without_a_shell() {
    let env = TestEnv::new();
    let file = env.root().join("w.toml");
    std::fs::write(&file, "[0]\nrun = \"cd sub && make\"\n").unwrap();
    env.phantom()
        .args(["check", file.to_str().unwrap()])
        .assert()
        .success()
        .stderr(predicate::str::contains("`cd` is a shell builtin"))
        .stderr(predicate::str::contains(
            "`&&` is passed to `cd` as an argument",
        ));
}

crate::tests! {
    check_prints_the_plan_of_every_workflow_in_head,
    check_of_an_invalid_file_exits_1_with_the_line,
    check_says_when_the_working_tree_differs_from_head,
    check_warns_about_shell_syntax_without_a_shell,
}
