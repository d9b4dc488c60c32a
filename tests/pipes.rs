//! Issue 18, item 7: a reader that went away (`phantom_ci … | head`) or a closed stderr ends nothing
//! with a panic. Output-only commands end as git does, by SIGPIPE (141 in a shell); a run goes on
//! without its console and ends by its result. The pipes here are real, their reading end closed
//! before the command starts, so that every write the command makes fails.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};

use crate::support::{TestEnv, current_user};

/// `command` with stdout (and, with `stderr_too`, stderr) a pipe nobody reads any more.
fn closed(mut command: Command, stderr_too: bool) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    command
        .stdin(Stdio::null())
        .stdout(writer.try_clone().unwrap());
    if stderr_too {
        command.stderr(writer);
    } else {
        drop(writer);
        command.stderr(Stdio::piped());
    }
    command.output().unwrap()
}

/// Ended by SIGPIPE (or with 141, as a shell reports it), with no panic on stderr.
fn ended_as_git_does(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.signal() == Some(13) || out.status.code() == Some(141),
        "{what}: {:?}, {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(stderr.is_empty(), "{what}: {stderr}");
}

fn output_only_commands_end_by_sigpipe_when_the_reader_went_away() {
    let env = TestEnv::new();
    // Enough repos for `list --json` to say more than `head -c 600` reads.
    let mut toml = String::new();
    for name in ["app", "web", "api", "docs", "site", "tools"] {
        let repo = env.repo(name);
        repo.workflow("master", "[0]\nrun = \"echo hello\"\n");
        repo.commit_and_push("one");
        toml.push_str(&env.section(name, &repo, ""));
    }
    env.write_repo_toml(&toml);
    env.phantom().args(["run", "app"]).assert().success();
    let workflow = env.root().join("src/app/workflow/master.toml");
    let workflow = workflow.to_str().unwrap();
    for args in [
        &["completions", "bash"][..],
        &["list", "--json"],
        &["list"],
        &["status"],
        &["status", "--json"],
        &["logs", "app"],
        &["man"],
        &["check", workflow],
    ] {
        let mut command = env.phantom_std();
        command.args(args);
        ended_as_git_does(&closed(command, false), &args.join(" "));
    }
    // An error on a closed stderr ends the same way, not with a panic.
    let mut command = env.phantom_std();
    command.args(["logs", "nope"]);
    let out = closed(command, true);
    assert!(
        out.status.signal() == Some(13) || out.status.code() == Some(141),
        "{:?}",
        out.status
    );
}

/// `run` whose stdout and stderr nobody reads: the run goes on, is recorded `success`, and the
/// command ends with the run's result — also when it has something to say on stderr at the end (an
/// ad-hoc run says where its record is).
fn a_run_whose_console_went_away_still_runs_and_records_its_result() {
    let env = TestEnv::new();
    let (repo, _) = env.app(
        "[0]\nrun = \"seq 1 100000\"\n[1]\nrun = \"echo done\"\n",
        "",
    );
    let mut command = env.phantom_std();
    command.args(["run", "app"]);
    let out = closed(command, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let record = env.wait_for_run("app", 1);
    assert_eq!(record["result"], "success");
    assert!(env.log("app", 1).contains("\ndone\n"));

    let stray = env.root().join("stray");
    std::fs::create_dir_all(stray.join("workflow")).unwrap();
    env.git(&stray, &["init", "-q", "-b", "master"]);
    std::fs::write(
        stray.join("workflow/master.toml"),
        "[0]\nrun = \"seq 1 1000\"\n",
    )
    .unwrap();
    env.git(&stray, &["add", "-A"]);
    env.git(&stray, &["commit", "-q", "-m", "stray"]);
    let mut command = env.phantom_std();
    command.args(["run", stray.to_str().unwrap(), "--run-as", &current_user()]);
    let out = closed(command, true);
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
    assert_eq!(env.wait_for_run("@stray", 1)["result"], "success");

    // A failing run ends with the failure's status, not a panic's 101.
    repo.workflow("master", "[0]\nrun = \"seq 1 1000; exit 3\"\n");
    repo.commit_and_push("fails");
    let mut command = env.phantom_std();
    command.args(["run", "app"]);
    let out = closed(command, true);
    assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
}

/// `tick` and `hook --wait` (whose pipes end on a pusher who may have gone) with stdout and stderr
/// nobody reads: what they have to say first (a repo of the same repository that cannot run) does
/// not stop them; the runs go on, are recorded, and the commands end by their result.
fn tick_and_the_hook_go_on_without_their_console() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"seq 1 100000\"\n");
    repo.commit_and_push("one");
    // `broken` comes first, and its problem is said on stderr before anything runs.
    env.write_repo_toml(&format!(
        "{}{}",
        env.section_as("broken", &repo, "phantom-no-such-user", ""),
        env.section("app", &repo, "")
    ));
    let mut command = env.phantom_std();
    command.arg("tick");
    let out = closed(command, true);
    assert_eq!(out.status.code(), Some(1), "broken: {:?}", out.status);
    assert_eq!(env.wait_for_run("app", 1)["result"], "success");

    repo.workflow(
        "master",
        "[0]\nrun = \"seq 1 100000\"\n[1]\nrun = \"exit 4\"\n",
    );
    let commit = repo.commit_and_push("fails");
    let mut command = env.phantom_std();
    command
        .args(["hook", "--wait"])
        .env("GIT_DIR", &repo.bare)
        .current_dir(&repo.bare);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut hook = command
        .stdin(Stdio::piped())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(
        hook.stdin.take().unwrap(),
        "{} {commit} refs/heads/master",
        "0".repeat(40)
    )
    .unwrap();
    let status = hook.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a push never fails: {status:?}");
    let record = env.wait_for_run("app", 2);
    assert_eq!(record["result"], "failure");
    assert_eq!(record["commit"], commit.as_str());
}

crate::tests! {
    tick_and_the_hook_go_on_without_their_console,
    output_only_commands_end_by_sigpipe_when_the_reader_went_away,
    a_run_whose_console_went_away_still_runs_and_records_its_result,
}
