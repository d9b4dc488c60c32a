//! `phantom_ci debug` (issue 12, SPEC §6): a shell or command at a run's commit in exactly a step's
//! conditions — the step user (`nobody` when the tests run as root), the sandbox, the step
//! environment of that run — that records nothing and leaves no workspace; and, under a terminal,
//! a shell whose processes cannot type into the operator's terminal.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::boundary::{
    PROBE, Screen, open_pty, pending_input, spawn_in_terminal, step_user, system_python,
};
use crate::support::{
    TestEnv, TestRepo, has_bwrap, has_line, is_root, needs_root, process_running, stdout_of,
    wait_for,
};

const WORKFLOW: &str = "[0]\nrun = \"true\"\n";

/// An environment other users can go through, outside `/tmp` (which the sandbox replaces).
fn shared_env() -> TestEnv {
    let env = TestEnv::new_in(Path::new("/var/tmp"));
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env
}

/// Repo `app` configured with `extra`, run twice (two commits): returns the repo and both commits.
fn two_runs<'a>(env: &'a TestEnv, extra: &str) -> (TestRepo<'a>, String, String) {
    let repo = env.repo("app");
    repo.workflow("master", WORKFLOW);
    let first = repo.commit_and_push("first");
    env.write_repo_toml(&env.section_as("app", &repo, &step_user(), extra));
    env.phantom().args(["run", "app"]).assert().success();
    repo.write("second.txt", "2");
    let second = repo.commit_and_push("second");
    env.phantom().args(["run", "app"]).assert().success();
    assert_eq!(env.runs("app"), [1, 2]);
    (repo, first, second)
}

/// What is under `<data>/work/app/` (debug workspaces are `debug-<pid>`).
fn work_entries(env: &TestEnv) -> Vec<PathBuf> {
    std::fs::read_dir(env.data.join("work").join("app"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn uid_of(user: &str) -> String {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap()
        .uid
        .to_string()
}

/// `debug app 1 -- sh -c 'id -u; echo $PHANTOM_CI_COMMIT'` in `env` with `extra` settings.
fn command_of_run_1(env: &TestEnv, extra: &str) {
    let (_repo, first, second) = two_runs(env, extra);
    let log_before = env.log("app", 2);
    let out = env
        .phantom()
        .args(["debug", "app", "1", "--"])
        .args([
            "sh",
            "-c",
            "id -u; echo $PHANTOM_CI_COMMIT; echo run=$PHANTOM_CI_RUN; pwd",
        ])
        .assert()
        .success();
    let stdout = stdout_of(&out);
    // The step user, run 1's commit and number — not the last run's.
    assert!(has_line(&stdout, &uid_of(&step_user())), "{stdout}");
    assert!(has_line(&stdout, &first), "{stdout}");
    assert!(!stdout.contains(&second), "{stdout}");
    assert!(has_line(&stdout, "run=1"), "{stdout}");
    // In a workspace of its own, which is gone afterwards.
    let pwd = stdout.lines().last().unwrap();
    let debug_root = env.data.join("work").join("app");
    assert!(
        pwd.starts_with(&format!("{}/debug-", debug_root.display())) && pwd.ends_with("/workspace"),
        "{pwd}"
    );
    assert!(!Path::new(pwd).exists(), "{pwd} left behind");
    assert!(work_entries(env).is_empty(), "{:?}", work_entries(env));
    // Nothing recorded: no run, the last run's log untouched.
    assert_eq!(env.runs("app"), [1, 2]);
    assert_eq!(env.log("app", 2), log_before);

    // The default is the last run; the exit status is the command's.
    let out = env
        .phantom()
        .args([
            "debug",
            "app",
            "--",
            "sh",
            "-c",
            "echo $PHANTOM_CI_COMMIT; exit 3",
        ])
        .assert()
        .code(3);
    assert!(has_line(&stdout_of(&out), &second));
    assert_eq!(env.runs("app"), [1, 2]);
    assert!(work_entries(env).is_empty());
}

fn a_command_runs_as_the_step_user_at_the_runs_commit_and_leaves_nothing() {
    command_of_run_1(&shared_env(), "");
}

fn a_sandboxed_command_runs_as_the_step_user_at_the_runs_commit_and_leaves_nothing() {
    if !has_bwrap() {
        return;
    }
    command_of_run_1(&shared_env(), "sandbox = \"bwrap\"");
}

/// The attack: from `debug`, read phantom_ci's `.env` and Repo.toml, and write outside the
/// workspace. The sandbox of the steps holds for `debug` too.
fn debug_in_the_sandbox_hides_phantoms_files_like_a_step() {
    if !has_bwrap() {
        return;
    }
    let env = shared_env();
    std::fs::write(env.config.join(".env"), "SECRET_TOKEN=hunter2\n").unwrap();
    two_runs(&env, "sandbox = \"bwrap\"");
    let script = format!(
        "cat {config}/.env {config}/Repo.toml; echo cat=$?; \
         if touch /etc/phantom-debug 2>/dev/null; then echo ETC-WRITTEN; else echo etc-refused; fi; \
         if test -e {data}/runs; then echo RUNS-VISIBLE; else echo runs-hidden; fi; \
         echo pid1=$(cat /proc/1/comm)",
        config = env.config.display(),
        data = env.data.display()
    );
    let out = env
        .phantom()
        .args(["debug", "app", "--", "sh", "-c", &script])
        .assert()
        .success();
    let stdout = stdout_of(&out);
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(!stdout.contains("[app]"), "{stdout}");
    assert!(has_line(&stdout, "cat=1"), "{stdout}");
    assert!(has_line(&stdout, "etc-refused"), "{stdout}");
    assert!(has_line(&stdout, "runs-hidden"), "{stdout}");
    assert!(!has_line(&stdout, "pid1=phantom_ci"), "{stdout}");
    assert!(!Path::new("/etc/phantom-debug").exists());
}

fn keep_keeps_the_workspace_and_prints_its_path() {
    let env = shared_env();
    two_runs(&env, "");
    let out = env
        .phantom()
        .args([
            "debug",
            "app",
            "1",
            "--keep",
            "--",
            "sh",
            "-c",
            "echo made > made.txt",
        ])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("phantom_ci: workspace kept at "))
        .unwrap_or_else(|| panic!("no kept path: {stderr}"));
    let kept = Path::new(line);
    assert!(
        kept.starts_with(env.data.join("work").join("app")),
        "{line}"
    );
    assert_eq!(
        std::fs::read_to_string(kept.join("made.txt")).unwrap(),
        "made\n"
    );
    assert!(kept.join("workflow/master.toml").is_file());
    assert_eq!(env.runs("app"), [1, 2]);
}

fn debug_of_a_repo_without_runs_or_of_a_missing_run_is_a_clear_error() {
    let env = shared_env();
    let repo = env.repo("app");
    repo.workflow("master", WORKFLOW);
    repo.commit_and_push("first");
    env.write_repo_toml(&env.section_as("app", &repo, &step_user(), ""));
    let out = env
        .phantom()
        .args(["debug", "app", "--", "true"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("repo `app` has no runs yet"), "{stderr}");
    assert!(stderr.contains("run app`"), "{stderr}");
    env.phantom().args(["run", "app"]).assert().success();
    let out = env
        .phantom()
        .args(["debug", "app", "7", "--", "true"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("repo `app` has no run #7 (its runs: #1)"),
        "{stderr}"
    );
    let out = env
        .phantom()
        .args(["debug", "nope", "--", "true"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("no repo `nope` in Repo.toml"), "{stderr}");
    // Without a terminal, a shell has nothing to read: it needs a command.
    let out = env.phantom().args(["debug", "app"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("give the command after `--`"), "{stderr}");
    // The command it suggests keeps the run asked for.
    let out = env.phantom().args(["debug", "app", "1"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains(" debug app 1 -- COMMAND…`"), "{stderr}");
    assert_eq!(env.runs("app"), [1]);
    assert!(work_entries(&env).is_empty());
}

/// The attack: root without `run_as` would give the commit's code a root shell. Refused, as `run`
/// refuses it, before anything is checked out.
fn root_without_run_as_is_refused_like_run() {
    if !needs_root() {
        return;
    }
    let env = shared_env();
    two_runs(&env, "");
    let repo_toml = std::fs::read_to_string(env.config.join("Repo.toml")).unwrap();
    let without: String = repo_toml
        .lines()
        .filter(|l| !l.starts_with("run_as"))
        .map(|l| format!("{l}\n"))
        .collect();
    env.write_repo_toml(&without);
    let out = env
        .phantom()
        .args([
            "debug",
            "app",
            "--",
            "sh",
            "-c",
            "id -u > /dev/null; echo RAN",
        ])
        .assert()
        .failure();
    assert!(!stdout_of(&out).contains("RAN"));
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("has no `run_as`"), "{stderr}");
    assert!(stderr.contains("run_as = \"root\""), "{stderr}");
    assert!(work_entries(&env).is_empty());
    assert_eq!(env.runs("app"), [1, 2]);
}

/// Under a terminal: an interactive shell in a pty of its own. The attack: the commit's code, run
/// from that shell, types a command into "its" terminal with TIOCSTI, hoping it reaches the
/// operator's (root) shell once `debug` exits. It reaches only the debug shell's own pty.
fn interactive(extra: &str) {
    let Some(python) = system_python() else {
        return;
    };
    let env = shared_env();
    let pty = open_pty();
    let repo = env.repo("app");
    repo.workflow("master", WORKFLOW);
    repo.write("probe.py", PROBE);
    repo.commit_and_push("probe");
    env.write_repo_toml(&env.section_as("app", &repo, &step_user(), extra));
    env.phantom().args(["run", "app"]).assert().success();

    let screen = Screen::watch(&pty);
    let mut command = env.phantom_std();
    command.args(["debug", "app"]);
    let mut child = spawn_in_terminal(command, &pty, None);
    wait_for("the debug shell", || {
        screen.now().contains("phantom_ci: a shell")
    });
    let typed = format!(
        "echo run=$PHANTOM_CI_RUN uid=$(id -u); {python} probe.py {}; exit 5\n",
        pty.path.display()
    );
    use std::io::Write;
    (&pty.master).write_all(typed.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    let pending = pending_input(&pty.slave);
    let shown = screen.finish(pty.slave);
    assert_eq!(status.code(), Some(5), "{shown}");
    assert!(
        shown.contains(&format!("run=1 uid={}", uid_of(&step_user()))),
        "{shown}"
    );
    // The shell had a terminal: its own, where the probe's typing went.
    assert!(shown.contains("terminal /dev/tty: OPENED"), "{shown}");
    let operators = shown
        .lines()
        .find(|l| l.starts_with(&format!("terminal {}:", pty.path.display())))
        .unwrap_or_else(|| panic!("no line about the operator's pty: {shown}"));
    assert!(
        operators.ends_with("cannot open, EACCES")
            || operators.ends_with("cannot open, ENOENT")
            || operators.ends_with("OPENED, refused EPERM"),
        "{operators}"
    );
    assert!(
        has_line(&shown.replace('\r', ""), "descriptors: 0 1 2"),
        "{shown}"
    );
    assert_eq!(
        pending, 0,
        "the debug shell typed into the operator's terminal: {shown}"
    );
    assert!(work_entries(&env).is_empty());
    assert_eq!(env.runs("app"), [1]);
    if is_root() {
        assert!(!shown.contains("uid=0"), "{shown}");
    }
}

fn an_interactive_shell_has_a_terminal_of_its_own_never_the_operators() {
    interactive("");
}

fn an_interactive_sandboxed_shell_has_a_terminal_of_its_own_never_the_operators() {
    if !has_bwrap() {
        return;
    }
    interactive("sandbox = \"bwrap\"");
}

/// The pid of the process whose command line is exactly `argv`, if one runs.
fn pid_of(argv: &[&str]) -> Option<i32> {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            (std::fs::read(entry.path().join("cmdline")).ok()? == wanted).then_some(pid)
        })
}

/// The directory of the cgroup2 that process `pid` is in, below a cgroup2 mount.
fn cgroup_dir(pid: i32) -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let point = left.split(' ').nth(4)?;
        let dir = Path::new(point).join(path.trim_start_matches('/'));
        (right.starts_with("cgroup2 ") && path != "/" && dir.is_dir()).then_some(dir)
    })
}

/// Should the test fail half-way, neither its `debug` processes nor their sleepers stay behind.
struct Sessions {
    debugs: Vec<std::process::Child>,
    sleeps: Vec<String>,
}

impl Drop for Sessions {
    fn drop(&mut self) {
        for child in &mut self.debugs {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The sleepers, and the shells whose scripts name them.
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if self.sleeps.iter().any(|m| cmdline.contains(m.as_str())) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Issue 18, item 4, the attack: `debug app -- sh -c 'setsid sleep … &'`, then `debug` is SIGKILLed.
/// The next `tick` ends the session's processes (its cgroup, or its `PHANTOM_CI_WORKSPACE`) and
/// removes its workspace — but keeps a `--keep` session's workspace, and touches nothing of a session
/// that is alive.
fn a_killed_session_is_ended_by_the_next_tick_and_a_live_one_is_not_touched() {
    let env = shared_env();
    two_runs(&env, "");
    let unique = std::process::id();
    let [killed, kept, live] = [1, 2, 3].map(|n| format!("7777{n}{unique}"));
    let mut sessions = Sessions {
        debugs: Vec::new(),
        sleeps: vec![killed.clone(), kept.clone(), live.clone()],
    };
    for (marker, keep) in [(&killed, false), (&kept, true), (&live, false)] {
        let mut command = env.phantom_std();
        command.args(["debug", "app"]);
        if keep {
            command.arg("--keep");
        }
        // The session's own shell waits for a file the test makes.
        let script = format!(
            "setsid sleep {marker} & while ! test -e \"$PHANTOM_CI_WORKSPACE/stop\"; do sleep 0.05; done"
        );
        command
            .args(["--", "sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        sessions.debugs.push(command.spawn().unwrap());
    }
    let mut sleepers = Vec::new();
    for marker in [&killed, &kept, &live] {
        wait_for("the session's sleeper", || {
            pid_of(&["sleep", marker]).is_some()
        });
        sleepers.push(pid_of(&["sleep", marker]).unwrap());
    }
    let roots: Vec<PathBuf> = sessions
        .debugs
        .iter()
        .map(|c| env.data.join("work/app").join(format!("debug-{}", c.id())))
        .collect();
    let cgroups: Vec<Option<PathBuf>> = sleepers.iter().map(|pid| cgroup_dir(*pid)).collect();
    if is_root() {
        assert!(
            cgroups.iter().all(Option::is_some),
            "as root here, each session has a cgroup"
        );
    }
    // Two sessions die without a chance to clean up.
    for child in &mut sessions.debugs[..2] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(process_running(&["sleep", &killed]), "nothing acted yet");
    assert!(roots[0].is_dir());

    env.phantom().arg("tick").assert().success();
    wait_for("the dead sessions' sleepers to be gone", || {
        !process_running(&["sleep", &killed]) && !process_running(&["sleep", &kept])
    });
    assert!(
        !roots[0].exists(),
        "the dead session's workspace is removed"
    );
    assert!(
        roots[1].join("workspace/workflow/master.toml").is_file(),
        "a `--keep` workspace stays"
    );
    assert!(
        !roots[1].join("session").exists(),
        "and is no session any more"
    );
    for cgroup in cgroups[..2].iter().flatten() {
        assert!(!cgroup.exists(), "{} is left", cgroup.display());
    }
    // The live session: untouched.
    assert!(process_running(&["sleep", &live]));
    assert!(roots[2].join("session").is_file());
    if let Some(cgroup) = &cgroups[2] {
        assert!(cgroup.is_dir());
    }
    // A `run` recovers the same way, and still leaves the live session alone.
    env.phantom().args(["run", "app"]).assert().success();
    assert!(process_running(&["sleep", &live]));
    assert!(roots[2].join("workspace").is_dir());

    std::fs::write(roots[2].join("workspace/stop"), "").unwrap();
    let status = sessions.debugs[2].wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!process_running(&["sleep", &live]));
    assert!(!roots[2].exists());
}

crate::tests! {
    a_killed_session_is_ended_by_the_next_tick_and_a_live_one_is_not_touched,
    a_command_runs_as_the_step_user_at_the_runs_commit_and_leaves_nothing,
    a_sandboxed_command_runs_as_the_step_user_at_the_runs_commit_and_leaves_nothing,
    debug_in_the_sandbox_hides_phantoms_files_like_a_step,
    keep_keeps_the_workspace_and_prints_its_path,
    debug_of_a_repo_without_runs_or_of_a_missing_run_is_a_clear_error,
    root_without_run_as_is_refused_like_run,
    an_interactive_shell_has_a_terminal_of_its_own_never_the_operators,
    an_interactive_sandboxed_shell_has_a_terminal_of_its_own_never_the_operators,
}
