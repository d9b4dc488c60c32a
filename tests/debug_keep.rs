//! Issue 20: debugging a failure where it happened. A failed run's workspace is kept (`keep_failed`)
//! as the failing step left it; `debug app RUN` opens it in that step's conditions, `--replay`
//! re-runs what the step needs in a fresh checkout, `--done` and expiry remove it (never under a live
//! session), and an interactive session has the operator's `TERM` and window size.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::boundary::{Screen, open_pty, spawn_in_terminal, step_user};
use crate::support::{
    TestEnv, TestRepo, has_bwrap, has_line, is_root, process_running, stdout_of, wait_for,
};

/// Step 0 leaves `made-by-0`; step 1 leaves `made-by-1`, then fails with status 3.
const FAILING: &str = "[0]\nname = \"prepare\"\nrun = \"sh -c 'echo 0 > made-by-0'\"\n\
                       [1]\nname = \"test\"\nrun = \"sh -c 'echo 1 > made-by-1; exit 3'\"\n";

/// An environment other users can go through, outside `/tmp` (which the sandbox replaces).
pub(crate) fn shared_env() -> TestEnv {
    let env = TestEnv::new_in(Path::new("/var/tmp"));
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env
}

/// Repo `app` with `workflow` and `extra` settings, pushed; not run yet.
fn app<'a>(env: &'a TestEnv, workflow: &str, extra: &str) -> TestRepo<'a> {
    let repo = env.repo("app");
    repo.workflow("master", workflow);
    repo.commit_and_push("workflow");
    env.write_repo_toml(&env.section_as("app", &repo, &step_user(), extra));
    repo
}

fn stderr_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

fn kept_dir(env: &TestEnv, run: u64) -> PathBuf {
    env.data.join("work/app").join(run.to_string())
}

fn uid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap()
        .uid
        .as_raw()
}

fn debug_in_the_kept_workspace_sees_what_the_failing_step_left_as_the_step_user() {
    let env = shared_env();
    app(&env, FAILING, "");
    let out = env.phantom().args(["run", "app"]).assert().code(1);
    let stdout = stdout_of(&out);
    // The run's last lines say how to get there, and until when.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("==> debug it where it failed: phantom_ci debug app 1 "))
        .unwrap_or_else(|| panic!("no debug line: {stdout}"));
    assert!(line.contains("(workspace kept until "), "{line}");
    assert!(env.run_json("app", 1)["kept_until"].is_string());
    assert!(kept_dir(&env, 1).join("workspace/made-by-1").is_file());
    let out = env.phantom().args(["status", "--long"]).assert().success();
    let status = stdout_of(&out);
    let kept = status
        .lines()
        .find(|l| l.starts_with("kept workspace of app #1: `"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        kept.contains(" debug app 1`, until ") && kept.contains("(in "),
        "{kept}"
    );
    let out = env.phantom().args(["status", "--json"]).assert().success();
    let json: serde_json::Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(json[0]["kept_workspaces"][0]["run"], 1);

    let out = env
        .phantom()
        .args(["debug", "app", "1", "--"])
        .args([
            "sh",
            "-c",
            "ls; stat -c 'owner %u' made-by-0 made-by-1; echo step=$PHANTOM_CI_STEP; pwd",
        ])
        .assert()
        .success();
    let stdout = stdout_of(&out);
    assert!(has_line(&stdout, "made-by-0"), "{stdout}");
    assert!(has_line(&stdout, "made-by-1"), "{stdout}");
    let owner = format!("owner {}", uid_of(&step_user()));
    assert_eq!(
        stdout.lines().filter(|l| *l == owner).count(),
        2,
        "both files are the step user's: {stdout}"
    );
    assert!(has_line(&stdout, "step=1"), "{stdout}");
    assert!(
        has_line(
            &stdout,
            &kept_dir(&env, 1).join("workspace").display().to_string()
        ),
        "{stdout}"
    );
    let first = stderr_of(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        first.contains("in the kept workspace of `app` #1")
            && first.contains("in the conditions of step [1] test"),
        "{first}"
    );
    // The kept workspace stays after the session; nothing is recorded.
    assert!(kept_dir(&env, 1).join("workspace/made-by-1").is_file());
    assert_eq!(env.runs("app"), [1]);

    // `--replay`: a fresh checkout where step 0 ran again, not step 1.
    let out = env
        .phantom()
        .args(["debug", "app", "1", "--replay", "--", "ls"])
        .assert()
        .success();
    let stdout = stdout_of(&out);
    assert!(has_line(&stdout, "made-by-0"), "{stdout}");
    assert!(!stdout.contains("made-by-1"), "{stdout}");
    let stderr = stderr_of(&out);
    assert!(stderr.contains("after the replay of step [0]"), "{stderr}");
    assert!(stderr.contains("replay [0] prepare"), "{stderr}");

    // The report's page of the run gives the command while the workspace is kept.
    let site = env.root().join("site");
    let page = || {
        env.phantom().arg("report").arg(&site).assert().success();
        std::fs::read_to_string(site.join("app/1.html")).unwrap()
    };
    assert!(page().contains("phantom_ci debug app 1</code>"));
    // `--done` removes it; then `debug 1` says so and gives both ways on, and the page no longer
    // offers it.
    env.phantom()
        .args(["debug", "app", "1", "--done"])
        .assert()
        .success();
    assert!(!kept_dir(&env, 1).exists());
    assert!(!page().contains("phantom_ci debug app 1</code>"));
    let out = env
        .phantom()
        .args(["debug", "app", "1", "--", "ls"])
        .assert()
        .code(2);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("run #1 of `app` has no kept workspace"),
        "{stderr}"
    );
    assert!(stderr.contains("debug app 1 --replay`"), "{stderr}");
    assert!(stderr.contains("debug app 1 --fresh`"), "{stderr}");
}

/// The `--step N.k` of a matrix step sees its matrix and workflow variables; without `--step`, the
/// first copy that failed.
fn a_matrix_copys_conditions_include_its_variables() {
    let env = shared_env();
    let workflow = "[env]\nWIDE = \"workflow\"\n\
                    [0]\nrun = \"true\"\n\
                    [1]\nrun = \"sh -c 'test $T = a'\"\nmatrix = { T = [\"a\", \"b\"] }\n";
    app(&env, workflow, "");
    env.phantom().args(["run", "app"]).assert().code(1);
    let show = "echo T=$T WIDE=$WIDE step=$PHANTOM_CI_STEP";
    let out = env
        .phantom()
        .args(["debug", "app", "1", "--step", "1.0", "--", "sh", "-c", show])
        .assert()
        .success();
    assert!(
        has_line(&stdout_of(&out), "T=a WIDE=workflow step=1.0"),
        "{}",
        stdout_of(&out)
    );
    let out = env
        .phantom()
        .args(["debug", "app", "1", "--", "sh", "-c", show])
        .assert()
        .success();
    assert!(
        has_line(&stdout_of(&out), "T=b WIDE=workflow step=1.1"),
        "{}",
        stdout_of(&out)
    );
    let out = env
        .phantom()
        .args(["debug", "app", "1", "--step", "1", "--", "true"])
        .assert()
        .code(2);
    assert!(stderr_of(&out).contains("name one of its copies (1.0, 1.1)"));
}

/// `--replay` stops at a replayed step that fails, with a message, before the shell or command.
fn a_replayed_step_that_fails_stops_the_replay() {
    let env = shared_env();
    app(&env, &format!("{FAILING}[2]\nrun = \"true\"\n"), "");
    env.phantom().args(["run", "app"]).assert().code(1);
    let out = env
        .phantom()
        .args([
            "debug",
            "app",
            "1",
            "--replay",
            "--step",
            "2",
            "--",
            "echo",
            "COMMAND-RAN",
        ])
        .assert()
        .code(3);
    assert!(
        !stdout_of(&out).contains("COMMAND-RAN"),
        "{}",
        stdout_of(&out)
    );
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("step [1] failed again in the replay (exit status 3): stopped there"),
        "{stderr}"
    );
    assert!(
        stderr.contains("after the replay of steps [0], [1]"),
        "{stderr}"
    );
    // The fresh workspace is gone; the kept one is untouched.
    assert!(kept_dir(&env, 1).join("workspace/made-by-1").is_file());
    let left: Vec<_> = std::fs::read_dir(env.data.join("work/app"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["1"]);
}

/// Until when `kept` says the workspace of run `run` is kept.
fn kept_until(env: &TestEnv, run: u64) -> SystemTime {
    let text = std::fs::read_to_string(kept_dir(env, run).join("kept")).unwrap();
    UNIX_EPOCH + Duration::from_secs(text.trim().parse().unwrap())
}

/// With `keep_failed = "2s"`, the next `tick` after that removes the workspace — but not while a
/// `debug` session uses it.
fn an_expired_workspace_goes_with_the_next_tick_unless_a_session_uses_it() {
    let env = shared_env();
    app(&env, FAILING, "keep_failed = \"2s\"");
    // By `tick`, so that the later ticks have nothing to run.
    env.phantom().arg("tick").assert().code(1);
    let until = kept_until(&env, 1);
    let tree = kept_dir(&env, 1).join("workspace");
    // A live session in it, which waits for a file the test makes.
    let mut session = env
        .phantom_std()
        .args(["debug", "app", "1", "--", "sh", "-c"])
        .arg("touch in-session; while ! test -e stop; do sleep 0.05; done")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the session", || tree.join("in-session").exists());
    wait_for("the kept workspace to expire", || {
        SystemTime::now() > until + Duration::from_secs(1)
    });
    let out = env.phantom().args(["status", "--long"]).assert().success();
    let status = stdout_of(&out);
    assert!(
        status.contains("(expired: the next `tick` removes it); in use by a `debug` session"),
        "{status}"
    );
    env.phantom().arg("tick").assert().success();
    assert!(tree.join("made-by-1").is_file(), "a live session pins it");
    let out = env
        .phantom()
        .args(["debug", "app", "1", "--done"])
        .assert()
        .code(1);
    assert!(stderr_of(&out).contains("in use by a live `debug` session"));
    assert!(tree.is_dir());

    std::fs::write(tree.join("stop"), "").unwrap();
    assert!(session.wait().unwrap().success());
    env.phantom().arg("tick").assert().success();
    assert!(!kept_dir(&env, 1).exists(), "expired and no longer used");
    assert!(
        std::fs::read_dir(env.data.join("work/app"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "the session's directory is gone too"
    );
}

/// A session in a kept workspace that is SIGKILLed: the next `tick` ends its processes and its
/// session record, and keeps the workspace (recovery of a dead session never removes a kept one).
fn a_killed_session_in_a_kept_workspace_is_ended_and_the_workspace_stays() {
    let env = shared_env();
    app(&env, FAILING, "");
    env.phantom().arg("tick").assert().code(1);
    let tree = kept_dir(&env, 1).join("workspace");
    let marker = format!("8888{}", std::process::id());
    let mut session = env
        .phantom_std()
        .args(["debug", "app", "1", "--", "sh", "-c"])
        .arg(format!(
            "setsid sleep {marker} & touch started; while ! test -e stop; do sleep 0.05; done"
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let root = env
        .data
        .join("work/app")
        .join(format!("debug-{}", session.id()));
    wait_for("the session", || {
        tree.join("started").exists() && process_running(&["sleep", &marker])
    });
    assert!(root.join("session").is_file());
    // The session holds no lock of the repo: a run goes on meanwhile (and fails, as before).
    env.phantom().args(["run", "app"]).assert().code(1);
    assert!(kept_dir(&env, 2).join("kept").is_file());
    session.kill().unwrap();
    session.wait().unwrap();
    env.phantom().arg("tick").assert().success();
    let gone = || !process_running(&["sleep", &marker]);
    wait_for("the dead session's sleeper to be gone", gone);
    assert!(!root.exists(), "the session's record is gone");
    assert!(tree.join("made-by-1").is_file(), "the kept workspace stays");
    // Nothing of the session is left to stop (a failed assertion above still ends it).
    std::fs::write(tree.join("stop"), "").unwrap();
}

/// At most the newest three are kept; a run that succeeds keeps none; `keep_failed = "0"` is off.
fn the_newest_three_failed_runs_keep_their_workspaces() {
    let env = shared_env();
    let repo = app(&env, FAILING, "");
    for _ in 0..4 {
        env.phantom().args(["run", "app"]).assert().code(1);
    }
    let kept: Vec<bool> = (1..=4).map(|n| kept_dir(&env, n).exists()).collect();
    assert_eq!(kept, [false, true, true, true]);
    repo.workflow("master", "[0]\nrun = \"true\"\n");
    repo.commit_and_push("fixed");
    env.phantom().args(["run", "app"]).assert().success();
    assert!(!kept_dir(&env, 5).exists());
    env.write_repo_toml(&env.section_as("app", &repo, &step_user(), "keep_failed = \"0\""));
    repo.workflow("master", FAILING);
    repo.commit_and_push("broken again");
    let out = env.phantom().args(["run", "app"]).assert().code(1);
    assert!(!stdout_of(&out).contains("phantom_ci debug"));
    assert!(!kept_dir(&env, 6).exists());
    // `debug` without RUN: the last run kept nothing, so a fresh checkout, and it says so.
    let out = env
        .phantom()
        .args(["debug", "app", "--", "ls"])
        .assert()
        .success();
    assert!(!stdout_of(&out).contains("made-by"));
    assert!(
        stderr_of(&out).contains("in a fresh checkout of `app` #6 (master at"),
        "{}",
        stderr_of(&out)
    );
    assert!(stderr_of(&out).contains("(the run kept no workspace)"));
}

/// Crash safety: a workspace kept by a run whose record never became final (phantom_ci was killed
/// between the two) is undone by the next run's recovery.
fn a_kept_workspace_of_a_run_that_died_is_undone_by_recovery() {
    let env = shared_env();
    app(&env, FAILING, "");
    env.phantom().args(["run", "app"]).assert().code(1);
    // As if phantom_ci had died after writing `kept`, before the final record.
    let json = env.data.join("runs/app/1/run.json");
    let text = std::fs::read_to_string(&json).unwrap();
    std::fs::write(
        &json,
        text.replace("\"result\": \"failure\"", "\"result\": \"running\""),
    )
    .unwrap();
    assert!(kept_dir(&env, 1).join("kept").is_file());
    env.phantom().args(["run", "app"]).assert().code(1);
    assert_eq!(env.run_json("app", 1)["result"], "aborted");
    assert!(
        !kept_dir(&env, 1).exists(),
        "the half-kept workspace is removed"
    );
    assert!(kept_dir(&env, 2).join("kept").is_file());
}

/// The build cache is there as a step sees it, read-only: bound so by the sandbox, or as root by a
/// mount namespace of the session's own; otherwise it is not mounted, and the first line says so.
fn the_build_cache_is_read_only_in_a_session() {
    let env = shared_env();
    let workflow = "[0]\nrun = \"sh -c 'echo cached > $PHANTOM_CI_CACHE/entry'\"\n\
                    [1]\nrun = \"false\"\n";
    let repo = app(&env, workflow, "cache = true");
    env.phantom().args(["run", "app"]).assert().code(1);
    let script = "cat $PHANTOM_CI_CACHE/entry; if touch $PHANTOM_CI_CACHE/new 2>/dev/null; \
                  then echo CACHE-WRITTEN; else echo cache-read-only; fi";
    let read_only = |out: &assert_cmd::assert::Assert| {
        let stdout = stdout_of(out);
        assert!(has_line(&stdout, "cached"), "{stdout}");
        assert!(has_line(&stdout, "cache-read-only"), "{stdout}");
        assert!(!stdout.contains("CACHE-WRITTEN"), "{stdout}");
        assert!(stderr_of(out).contains("the build cache is mounted read-only"));
        assert!(!env.data.join("cache/app/new").exists());
    };
    let out = env
        .phantom()
        .args(["debug", "app", "1", "--", "sh", "-c", script])
        .assert()
        .success();
    if is_root() {
        read_only(&out);
        // The machine's mounts are untouched: the cache is writable outside the session.
        std::fs::write(env.data.join("cache/app/outside"), "").unwrap();
    } else {
        assert!(
            stderr_of(&out).contains("the build cache is not mounted"),
            "{}",
            stderr_of(&out)
        );
    }
    if !has_bwrap() {
        return;
    }
    env.write_repo_toml(&env.section_as(
        "app",
        &repo,
        &step_user(),
        "cache = true\nsandbox = \"bwrap\"",
    ));
    let out = env
        .phantom()
        .args(["debug", "app", "1", "--", "sh", "-c", script])
        .assert()
        .success();
    read_only(&out);
}

/// Sets the window size of the terminal the test holds.
#[allow(unsafe_code)]
fn set_size(pty: &crate::boundary::Pty, cols: u16, rows: u16) {
    use std::os::fd::AsRawFd;
    let size = nix::libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer.
    let done = unsafe {
        nix::libc::ioctl(
            pty.master.as_raw_fd(),
            nix::libc::TIOCSWINSZ,
            &raw const size,
        )
    };
    assert_eq!(done, 0);
}

/// Under a terminal: the shell has the operator's `TERM` and window size, and follows a resize.
fn an_interactive_session_has_the_operators_term_and_window_size() {
    let env = shared_env();
    app(&env, "[0]\nrun = \"true\"\n", "");
    env.phantom().args(["run", "app"]).assert().success();
    let pty = open_pty();
    set_size(&pty, 100, 40);
    let screen = Screen::watch(&pty);
    let mut command = env.phantom_std();
    command.env("TERM", "xterm-256color").args([
        "debug",
        "app",
        "--",
        "sh",
        "-c",
        "echo term=$TERM; stty size; read line; stty size",
    ]);
    let mut child = spawn_in_terminal(command, &pty, None);
    wait_for("the size", || screen.now().contains("40 100"));
    // The operator's window grows: the shell's follows (SIGWINCH).
    set_size(&pty, 120, 50);
    use std::io::Write;
    (&pty.master).write_all(b"go\n").unwrap();
    let status = child.wait().unwrap();
    let shown = screen.finish(pty.slave);
    assert!(status.success(), "{shown}");
    assert!(shown.contains("term=xterm-256color"), "{shown}");
    assert!(shown.contains("40 100"), "{shown}");
    assert!(shown.contains("50 120"), "{shown}");
    // A name that is not a plain terminal name is not passed on.
    let pty = open_pty();
    let screen = Screen::watch(&pty);
    let mut command = env.phantom_std();
    command.env("TERM", "xterm;evil").args([
        "debug",
        "app",
        "--",
        "sh",
        "-c",
        "echo term=${TERM:-unset}",
    ]);
    let mut child = spawn_in_terminal(command, &pty, None);
    assert!(child.wait().unwrap().success());
    let shown = screen.finish(pty.slave);
    assert!(shown.contains("term=unset"), "{shown}");
}

crate::tests! {
    debug_in_the_kept_workspace_sees_what_the_failing_step_left_as_the_step_user,
    a_matrix_copys_conditions_include_its_variables,
    a_replayed_step_that_fails_stops_the_replay,
    an_expired_workspace_goes_with_the_next_tick_unless_a_session_uses_it,
    a_killed_session_in_a_kept_workspace_is_ended_and_the_workspace_stays,
    the_newest_three_failed_runs_keep_their_workspaces,
    a_kept_workspace_of_a_run_that_died_is_undone_by_recovery,
    the_build_cache_is_read_only_in_a_session,
    an_interactive_session_has_the_operators_term_and_window_size,
    the_shell_reads_no_start_up_file_and_no_prompt_from_the_commit,
}

/// A pusher plants what a shell reads when it starts (`$ENV`, a prompt), hoping the operator's
/// `debug` shell prints a fake end of the session and a root prompt.
fn the_shell_reads_no_start_up_file_and_no_prompt_from_the_commit() {
    let env = shared_env();
    let planting = "[env]\nENV = \"evil.sh\"\nBASH_ENV = \"evil.sh\"\nPS1 = \"root@host:~# \"\n\
                    [0]\nname = \"plant\"\nrun = \"sh -c 'echo echo PLANTED > evil.sh; exit 1'\"\n";
    app(&env, planting, "");
    env.phantom().args(["run", "app"]).assert().code(1);
    let pty = open_pty();
    let screen = Screen::watch(&pty);
    let mut command = env.phantom_std();
    command.env("TERM", "xterm").args(["debug", "app", "1"]);
    let mut child = spawn_in_terminal(command, &pty, None);
    wait_for("the shell's prompt", || {
        screen.now().contains("(phantom_ci debug app) $ ")
    });
    use std::io::Write;
    (&pty.master)
        .write_all(b"echo hi-from-$((40 + 2)); exit\n")
        .unwrap();
    let status = child.wait().unwrap();
    let shown = screen.finish(pty.slave);
    assert!(status.success(), "{shown}");
    assert!(shown.contains("hi-from-42"), "{shown}");
    // (The first line shows the step's command, which names it.)
    assert!(!shown.lines().any(|l| l.trim_end() == "PLANTED"), "{shown}");
    assert!(!shown.contains("root@host"), "{shown}");
    assert!(
        shown.contains("phantom_ci: the debug session of `app` ended"),
        "{shown}"
    );
}
