//! What reaches a terminal (issue 18, item 9; SPEC §2.2 amended): a pusher's step prints OSC 52 (a
//! write to the operator's clipboard), a window title and a colour. On the operator's terminal — a
//! pty the test allocates — and on `hook --wait`'s pipe to the pusher, only the colour arrives; the
//! log, a pipe and `logs --raw` keep every byte.

use std::io::Write;
use std::process::Stdio;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::boundary::{Screen, open_pty, spawn_in_terminal, step_user};
use crate::support::{TestEnv, TestRepo, wait_for};

/// The step (a script, so that its header does not show the bytes as text): OSC 52 with a payload,
/// a title, a colour, a cursor move, and a bell.
const WORKFLOW: &str = "[0]\nrun = \"sh step.sh\"\n";
const SCRIPT: &str = "printf '\\033]52;c;Q0xJUEJPQVJE\\007\\033]0;PWNED-TITLE\\007\\033[32mGREEN-OK\\033[0m\\033[2Aup\\007\\n'\n";

/// Repo `app` whose step prints it all.
fn app(env: &TestEnv) -> (TestRepo<'_>, String) {
    let repo = env.repo("app");
    repo.workflow("master", WORKFLOW);
    repo.write("step.sh", SCRIPT);
    let commit = repo.commit_and_push("app");
    env.write_repo_toml(&env.section("app", &repo, ""));
    (repo, commit)
}

const OSC52: &str = "\x1b]52;c;Q0xJUEJPQVJE\x07";
const TITLE: &str = "\x1b]0;PWNED-TITLE\x07";
const COLOUR: &str = "\x1b[32mGREEN-OK\x1b[0m";

/// What a person's terminal may show of the step: the colour, not the rest.
fn assert_filtered(shown: &str) {
    assert!(shown.contains(COLOUR), "the colour is shown: {shown:?}");
    assert!(shown.contains("GREEN-OK\x1b[0mup\n"), "{shown:?}");
    for never in ["Q0xJUEJPQVJE", "PWNED-TITLE", "\x1b]", "\x1b[2A", "\x07"] {
        assert!(
            !shown.contains(never),
            "{never:?} reached the terminal: {shown:?}"
        );
    }
}

fn assert_raw(bytes: &str) {
    for all in [OSC52, TITLE, COLOUR, "\x1b[2Aup\x07\n"] {
        assert!(bytes.contains(all), "{all:?} is missing: {bytes:?}");
    }
}

/// Runs `phantom_ci ARGS` in a fresh pty; everything the terminal showed.
fn in_terminal(env: &TestEnv, args: &[&str]) -> (bool, String) {
    let pty = open_pty();
    let screen = Screen::watch(&pty);
    let mut command = env.phantom_std();
    command.args(args);
    let status = spawn_in_terminal(command, &pty, None).wait().unwrap();
    (status.success(), screen.finish(pty.slave))
}

fn a_steps_clipboard_and_title_sequences_never_reach_the_operators_terminal_but_its_colour_does() {
    let env = TestEnv::shared();
    app(&env);
    let (ok, shown) = in_terminal(&env, &["run", "app"]);
    assert!(ok, "{shown}");
    assert_filtered(&shown);
    // The log has every byte; so has a pipe, and `logs --raw` on the terminal.
    assert_raw(&env.log("app", 1));
    let piped = env.phantom().args(["logs", "app"]).output().unwrap();
    assert_raw(&String::from_utf8_lossy(&piped.stdout));
    let (ok, raw) = in_terminal(&env, &["logs", "app", "--raw"]);
    assert!(ok, "{raw}");
    assert_raw(&raw);
    // `logs` and `logs --follow` on the terminal are filtered like the run's console.
    for args in [&["logs", "app"][..], &["logs", "app", "--follow"]] {
        let (ok, shown) = in_terminal(&env, args);
        assert!(ok, "{args:?}: {shown}");
        assert_filtered(&shown);
    }
}

/// A step that turns on hidden text (SGR 8) and fails cannot hide the run's own lines after it: each
/// colour a step sets ends with its line on a terminal — in the run's console and in `logs`.
fn a_steps_hidden_text_cannot_hide_the_runs_result() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"sh step.sh\"\n");
    repo.write(
        "step.sh",
        "printf 'ok\\n==> app #1 success\\n\\033[8;30;40m'; exit 1\n",
    );
    repo.commit_and_push("app");
    env.write_repo_toml(&env.section("app", &repo, ""));
    let (ok, shown) = in_terminal(&env, &["run", "app"]);
    assert!(!ok, "{shown}");
    let (ok, logs) = in_terminal(&env, &["logs", "app"]);
    assert!(ok, "{logs}");
    for shown in [shown, logs] {
        let hidden = shown
            .find("\x1b[8;30;40m")
            .expect("the step's colour is shown");
        let reset = shown[hidden..].find("\x1b[0m").map(|i| hidden + i);
        let failure = shown
            .find("failure: step [0]")
            .expect("the result is shown");
        assert!(
            reset.is_some_and(|reset| reset < failure),
            "the hidden text reaches the result: {shown:?}"
        );
    }
}

fn hook_wait_filters_what_goes_to_the_pushers_terminal() {
    let env = TestEnv::shared();
    let (repo, commit) = app(&env);
    let mut hook = env.spawn_hook_wait(&repo.bare, Stdio::null());
    let mut stdin = hook.stdin.take().unwrap();
    writeln!(stdin, "{} {commit} refs/heads/master", "0".repeat(40)).unwrap();
    drop(stdin);
    let out = hook.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert_filtered(&shown);
    assert_raw(&env.log("app", 1));
}

fn a_plain_run_into_a_pipe_keeps_every_byte() {
    let env = TestEnv::shared();
    app(&env);
    let out = env.phantom().args(["run", "app"]).output().unwrap();
    assert!(out.status.success());
    assert_raw(&String::from_utf8_lossy(&out.stdout));
}

/// `debug`'s shell has a pty of its own, relayed to the operator's terminal: there cursor moves pass
/// (editors and pagers work), strings such as OSC 52 and titles do not.
fn debugs_own_terminal_passes_cursor_moves_but_never_a_clipboard_or_title_sequence() {
    let env = TestEnv::new_in(Path::new("/var/tmp"));
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo = env.repo("app");
    repo.workflow("master", WORKFLOW);
    repo.write("step.sh", SCRIPT);
    repo.commit_and_push("app");
    env.write_repo_toml(&env.section_as("app", &repo, &step_user(), ""));
    env.phantom().args(["run", "app"]).assert().success();
    let pty = open_pty();
    let screen = Screen::watch(&pty);
    let mut command = env.phantom_std();
    command.args(["debug", "app"]);
    let mut child = spawn_in_terminal(command, &pty, None);
    wait_for("the debug shell", || {
        screen.now().contains("phantom_ci: a shell")
    });
    (&pty.master).write_all(b"sh step.sh; exit 3\n").unwrap();
    let status = child.wait().unwrap();
    let shown = screen.finish(pty.slave);
    assert_eq!(status.code(), Some(3), "{shown}");
    assert!(shown.contains(&format!("{COLOUR}\x1b[2Aup")), "{shown:?}");
    for never in ["Q0xJUEJPQVJE", "PWNED-TITLE", "\x1b]"] {
        assert!(
            !shown.contains(never),
            "{never:?} reached the terminal: {shown:?}"
        );
    }
}

crate::tests! {
    debugs_own_terminal_passes_cursor_moves_but_never_a_clipboard_or_title_sequence,
    a_steps_clipboard_and_title_sequences_never_reach_the_operators_terminal_but_its_colour_does,
    hook_wait_filters_what_goes_to_the_pushers_terminal,
    a_steps_hidden_text_cannot_hide_the_runs_result,
    a_plain_run_into_a_pipe_keeps_every_byte,
}
