//! What the fast paths of issue 11 keep: every guarantee the slower code gave, shown on the real
//! binary. (The costs themselves are measured by `cargo bench --bench costs`, never here.)

use std::process::Stdio;

use crate::support::{TestEnv, has_line, process_running, wait_for};

/// A console that is a regular file is written directly, and past the log's cap the step's output
/// goes into it by `splice`, without passing through phantom_ci: it still gets every byte in order,
/// and phantom_ci's own lines still start lines of their own.
fn a_file_console_gets_every_byte_in_order_past_the_log_cap() {
    let env = TestEnv::new();
    env.app(
        "[0]\nrun = \"seq 1 100000\"\n[1]\nrun = \"sh -c 'seq 1 100000; printf tail'\"\n\
         [2]\nrun = \"echo third\"\n",
        "log_limit = \"1KiB\"\n",
    );
    let console = env.root().join("console.txt");
    let status = env
        .phantom_std()
        .args(["run", "app"])
        .stdout(std::fs::File::create(&console).unwrap())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&console).unwrap();
    let lines: String = (1..=100_000).map(|n| format!("{n}\n")).collect();
    let expected = format!(
        "==> [0] seq 1 100000\n{lines}==> [1] sh -c 'seq 1 100000; printf tail'\n{lines}tail\n\
         ==> [2] echo third\nthird\n"
    );
    assert!(
        text.contains(&expected),
        "{}",
        &text[text.len().saturating_sub(2000)..]
    );
    assert!(
        text.lines()
            .any(|line| line.starts_with("==> app #1 success in ")),
        "the summary is a line of its own"
    );
    assert!(has_line(&text, "third"));
    let log = env.log("app", 1);
    assert!(log.len() < 8192, "the log is capped: {} bytes", log.len());
    assert!(log.contains("reached its cap of 1024 bytes"), "{log}");

    // A file opened for appending refuses `splice`: the bytes are written instead, all of them.
    let appended = env.root().join("appended.txt");
    std::fs::write(&appended, "before\n").unwrap();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&appended)
        .unwrap();
    let status = env
        .phantom_std()
        .args(["run", "app"])
        .stdout(file)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&appended).unwrap();
    assert!(
        text.starts_with("before\n==> app #2 "),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(text.contains(&expected));
}

/// `tick` passes over a repo whose branch did not move and whose runs all ended, reading only its
/// ref, its `seen` state and one marker. A branch that moved still runs — also when git packed the
/// new tip into `packed-refs`, and when a newer loose ref hides a packed one.
fn tick_still_runs_a_branch_that_moved_whichever_file_holds_its_tip() {
    let env = TestEnv::new();
    let (repo, first) = env.app("[0]\nrun = \"true\"\n", "");
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.run_json("app", 1)["commit"], first.as_str());
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.runs("app"), [1], "nothing moved, nothing ran");

    // The new tip only in packed-refs.
    let second = repo.commit_and_push("two");
    env.git(&repo.bare, &["pack-refs", "--all"]);
    assert!(!repo.bare.join("refs/heads/master").exists());
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.run_json("app", 2)["commit"], second.as_str());

    // A loose ref newer than the packed one.
    let third = repo.commit_and_push("three");
    assert!(repo.bare.join("refs/heads/master").exists());
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.run_json("app", 3)["commit"], third.as_str());
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.runs("app"), [1, 2, 3]);
}

/// A run that died is recorded as `aborted` by the next `tick`, also when the repo's branch did not
/// move since (the fast path must not pass over it): a manual run of the tip that `tick` ran
/// already, SIGKILLed in its step.
fn tick_records_a_dead_run_of_a_branch_that_did_not_move() {
    let env = TestEnv::new();
    let started = env.root().join("started");
    let hang = env.root().join("hang");
    env.app(
        &format!(
            "[0]\nrun = '''sh -c 'if [ -e {} ]; then touch {}; sleep 1037; fi' '''\n",
            hang.display(),
            started.display()
        ),
        "",
    );
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.run_json("app", 1)["result"], "success");

    std::fs::write(&hang, "").unwrap();
    let run = env.spawn_run("app");
    wait_for("the step to start", || started.exists());
    env.end_run_by(run, nix::sys::signal::Signal::SIGKILL);
    assert_eq!(env.run_json("app", 2)["result"], "running");

    env.phantom().arg("tick").assert().success();
    let aborted = env.run_json("app", 2);
    assert_eq!(aborted["result"], "aborted", "{aborted}");
    assert_eq!(
        env.runs("app"),
        [1, 2],
        "the unmoved branch did not run again"
    );
    assert!(
        !process_running(&["sleep", "1037"]),
        "the dead run's processes were killed"
    );
}

/// A small commit is written by libgit2 inside phantom_ci instead of by `git`: the attacks on the
/// checkout still fail there. The commit's `.gitattributes` asks to grow every file (`ident`,
/// `eol=crlf`, UTF-32), and phantom_ci's user's own git configuration asks for CRLF line endings and
/// no symbolic links: the workspace still holds the blobs byte for byte, the link as a link, and an
/// index that `git status` finds clean.
fn a_small_checkout_written_in_process_holds_the_blobs_byte_for_byte() {
    let env = TestEnv::new();
    let (repo, _) = env.app(
        "[0]\nrun = \"wc -c small\"\n[1]\nrun = \"test -L link\"\n\
         [2]\nrun = \"git status --porcelain --untracked-files=no\"\n",
        "",
    );
    let line = "$Id$\n";
    repo.write("small", &line.repeat(400));
    std::os::unix::fs::symlink("small", repo.work.join("link")).unwrap();
    env.git(&repo.work, &["add", "small", "link"]);
    env.git(&repo.work, &["commit", "-q", "-m", "a file of $Id$ lines"]);
    repo.commit_growing_attributes();
    // phantom_ci's user's global configuration, as libgit2 would read it.
    let global = env.root().join("gitconfig");
    let elsewhere = env.root().join("elsewhere");
    std::fs::write(
        &global,
        format!(
            "[core]\n\tautocrlf = true\n\tsymlinks = false\n\tworktree = {}\n",
            elsewhere.display()
        ),
    )
    .unwrap();
    let home = env.root().join("home-with-config");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::copy(&global, home.join(".gitconfig")).unwrap();
    let out = env
        .phantom_std()
        .env("HOME", &home)
        .env("GIT_CONFIG_GLOBAL", &global)
        .args(["run", "app"])
        .output()
        .unwrap();
    let log = env.log("app", 1);
    assert!(out.status.success(), "{log}");
    assert!(
        !elsewhere.exists(),
        "a global core.worktree sends no file elsewhere"
    );
    let blob = line.len() * 400;
    assert!(
        has_line(&log, &format!("{blob} small")),
        "the file is the blob ({blob} bytes), not a converted copy: {log}"
    );
}

/// The workspace is made without a git template: a hook in the template directory of phantom_ci's
/// user (`init.templatedir`) would otherwise land in every workspace and run when a step commits.
fn no_template_hook_reaches_the_workspace() {
    let env = TestEnv::new();
    env.app(
        "[0]\nrun = \"test ! -e .git/hooks/pre-commit\"\n[1]\nrun = \"test ! -e .git/hooks/pre-push.sample\"\n",
        "",
    );
    let template = env.root().join("template");
    std::fs::create_dir_all(template.join("hooks")).unwrap();
    std::fs::write(
        template.join("hooks/pre-commit"),
        "#!/bin/sh\ntouch /tmp/owned\n",
    )
    .unwrap();
    std::fs::write(template.join("hooks/pre-push.sample"), "#!/bin/sh\n").unwrap();
    let home = env.root().join("home-with-template");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join(".gitconfig"),
        format!("[init]\n\ttemplatedir = {}\n", template.display()),
    )
    .unwrap();
    let out = env
        .phantom_std()
        .env("HOME", &home)
        .args(["run", "app"])
        .output()
        .unwrap();
    let log = env.log("app", 1);
    assert!(
        out.status.success(),
        "the template's hook reached the workspace: {log}"
    );
}

crate::tests! {
    no_template_hook_reaches_the_workspace,
    a_small_checkout_written_in_process_holds_the_blobs_byte_for_byte,
    a_file_console_gets_every_byte_in_order_past_the_log_cap,
    tick_still_runs_a_branch_that_moved_whichever_file_holds_its_tip,
    tick_records_a_dead_run_of_a_branch_that_did_not_move,
}
