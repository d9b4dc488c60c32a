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

fn check_reads_the_working_tree_and_says_what_differs_from_head() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let work = repo.work.to_str().unwrap();
    env.phantom()
        .args(["check", work])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "has no workflow in its working tree",
        ));
    // Before the first commit, the file being written is checked.
    repo.workflow("master", "[0]\nrun = \"true\"\n");
    env.phantom()
        .args(["check", work])
        .assert()
        .success()
        .stdout(predicate::str::contains("workflow/master.toml: 1 step"))
        .stderr(predicate::str::contains(
            "`workflow/master.toml` is not in HEAD: checked the working tree's version",
        ));
    repo.commit("ok");
    env.phantom()
        .args(["check", work])
        .assert()
        .success()
        .stderr(predicate::str::contains("HEAD").not());

    // The attack of the issue: a broken workflow, not committed yet, passed as HEAD's good one.
    repo.workflow("master", "[0]\nrun = \"true\"\nshell = \"bash\"\n");
    env.phantom()
        .args(["check", work])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "`workflow/master.toml` differs from HEAD: checked the working tree's version",
        ))
        .stderr(predicate::str::contains(
            "invalid workflow `workflow/master.toml` line 3, step `0`: unknown field `shell`",
        ));
    // With no argument, from a subdirectory of the work tree.
    std::fs::create_dir_all(repo.work.join("src")).unwrap();
    env.phantom()
        .current_dir(repo.work.join("src"))
        .arg("check")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown field `shell`"));

    // A new file and a deleted one are said too; a symbolic link is refused as a push would refuse it.
    std::fs::remove_file(repo.work.join("workflow/master.toml")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", repo.work.join("workflow/feature.toml")).unwrap();
    env.phantom()
        .args(["check", work])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "`workflow/master.toml` is in HEAD but not in the working tree: not checked",
        ))
        .stderr(predicate::str::contains(
            "invalid workflow `workflow/feature.toml`: `workflow/feature.toml` is a symbolic link",
        ));
}

fn check_of_a_bare_repository_reads_head() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let bare = repo.bare.to_str().unwrap();
    env.phantom()
        .args(["check", bare])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("has no commit yet"));
    repo.workflow("master", "[0]\nrun = \"true\"\n");
    repo.commit_and_push("ok");
    // What is being edited in a clone does not matter to the bare repository.
    repo.workflow("master", "[0]\nrun = \"true\"\nshell = \"bash\"\n");
    env.phantom()
        .args(["check", bare])
        .assert()
        .success()
        .stdout(predicate::str::contains("workflow/master.toml: 1 step"));
}

fn check_lists_every_error_of_a_workflow_with_step_and_line() {
    let env = TestEnv::new();
    let file = env.root().join("w.toml");
    std::fs::write(
        &file,
        "[0]\nrun = \"ok\"\n[1]\nrun = \"echo 'open\"\n[2]\nrun = \"\"\n[3]\nrun = \"make\"\nshell = \"bash\"\n",
    )
    .unwrap();
    let out = env
        .phantom()
        .args(["check", file.to_str().unwrap()])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("invalid workflow"))
        .collect();
    assert_eq!(errors.len(), 3, "{stderr}");
    assert!(errors[0].contains("line 4, step `1`: `run` has unbalanced quotes"));
    assert!(errors[1].contains("line 6, step `2`: `run` is empty"));
    assert!(errors[2].contains("line 9, step `3`: unknown field `shell`"));
}

fn check_of_a_path_that_does_not_exist_says_so() {
    let env = TestEnv::new();
    let missing = env.root().join("x/y");
    env.phantom()
        .args(["check", missing.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(format!(
            "phantom_ci: `{}` does not exist\n",
            missing.display()
        ));
    std::fs::create_dir_all(&missing).unwrap();
    env.phantom()
        .args(["check", missing.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "is neither a workflow file nor inside a git repository",
        ))
        .stderr(predicate::str::contains("could not find").not());
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

/// Issue 22: one `check` lists every problem of a file — five errors, a duplicate step number and the
/// four shell-syntax warnings, each with its line: nothing waits for the others to be fixed.
fn check_lists_errors_duplicates_and_warnings_in_one_pass() {
    let env = TestEnv::new();
    let file = env.root().join("w.toml");
    std::fs::write(
        &file,
        "[0]\n\
         run = \"cd src\"\n\
         [1]\n\
         run = \"make && make test\"\n\
         timeout = \"soon\"\n\
         [01]\n\
         run = \"echo $HOME | tee out\"\n\
         [2]\n\
         name = 3\n\
         run = \"true\"\n\
         [3]\n\
         colour = \"red\"\n\
         run = \"echo 'open\"\n\
         [4]\n\
         always = \"yes\"\n\
         run = \"true\"\n",
    )
    .unwrap();
    let out = env
        .phantom()
        .args(["check", file.to_str().unwrap()])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = [
        ("warning", "line 2, step `0`: `cd` is a shell builtin"),
        ("warning", "line 4, step `1`: `&&` is passed to `make`"),
        ("invalid workflow", "line 5, step `1`:"),
        (
            "invalid workflow",
            "line 6, step `01`: step number 1 is given twice (first on line 3)",
        ),
        ("warning", "line 7, step `01`: `|` is passed to `echo`"),
        ("warning", "line 7, step `01`: `$HOME` is passed as written"),
        (
            "invalid workflow",
            "line 9, step `2`: `name` must be a string",
        ),
        (
            "invalid workflow",
            "line 12, step `3`: unknown field `colour`",
        ),
        (
            "invalid workflow",
            "line 13, step `3`: `run` has unbalanced quotes",
        ),
        (
            "invalid workflow",
            "line 15, step `4`: `always` must be `true` or `false`",
        ),
    ];
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, (kind, what)) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(kind) && line.contains(what),
            "{line} ≠ {what}:\n{stderr}"
        );
    }
}

/// Issue 22: a workflow written as YAML (or JSON) for another CI gets one line: workflows are TOML,
/// with the smallest valid one — not a TOML parser's "key with no value".
fn check_of_a_yaml_or_json_file_says_workflows_are_toml() {
    let env = TestEnv::new();
    for (name, text, kind) in [
        ("ci.yml", "steps:\n  - run: make test\n", "YAML"),
        ("ci.json", "{\"steps\": [{\"run\": \"make\"}]}\n", "JSON"),
    ] {
        let file = env.root().join(name);
        std::fs::write(&file, text).unwrap();
        let out = env
            .phantom()
            .args(["check", file.to_str().unwrap()])
            .assert()
            .code(1);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("this looks like {kind}, but a workflow is TOML"))
                && stderr.contains("`[0]` then `run = \"make test\"`"),
            "{stderr}"
        );
    }
}

crate::tests! {
    check_lists_errors_duplicates_and_warnings_in_one_pass,
    check_of_a_yaml_or_json_file_says_workflows_are_toml,
    check_reads_the_working_tree_and_says_what_differs_from_head,
    check_of_a_bare_repository_reads_head,
    check_lists_every_error_of_a_workflow_with_step_and_line,
    check_of_a_path_that_does_not_exist_says_so,
    check_prints_the_plan_of_every_workflow_in_head,
    check_of_an_invalid_file_exits_1_with_the_line,
    check_warns_about_shell_syntax_without_a_shell,
}
