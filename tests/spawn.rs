//! How a step's process starts (issue 23): born inside its cgroup by `clone3` with
//! `CLONE_INTO_CGROUP`, or — where that is refused, or `PHANTOM_CI_CLONE_INTO_CGROUP=0` forces it —
//! forked and moved in, as before. Either way the step is in its cgroup before it runs, a failure to
//! start it is reported with its reason, and `tests/boundary.rs` shows the rest of the boundary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::boundary::{step_user, writable_cgroup2};
use crate::support::{TestEnv, current_user, find_on_path, stdout_of};

/// The switch that forces the fallback.
const FALLBACK: (&str, &str) = ("PHANTOM_CI_CLONE_INTO_CGROUP", "0");

#[allow(clippy::print_stderr)]
fn strace() -> Option<PathBuf> {
    let found = find_on_path("strace");
    if found.is_none() {
        crate::skip!("needs strace to see how the step was started (apt-get install strace)");
    }
    found
}

/// How a step is started, and the repo's `run_as` that makes it so.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Way {
    /// Born in its cgroup as a copy of phantom_ci (a `fork` that does not copy libc's state): the
    /// step switches to another user, so no process of that user may ever share phantom_ci's memory.
    Copy,
    /// Born in its cgroup sharing phantom_ci's memory until its `exec` (`CLONE_VM | CLONE_VFORK`,
    /// x86_64): the step runs as phantom_ci's own user, whom there is nothing to hide from.
    Shared,
    /// `PHANTOM_CI_CLONE_INTO_CGROUP=0`: forked and moved in by a write to `cgroup.procs`.
    Fallback,
}

impl Way {
    fn run_as(self) -> String {
        match self {
            Way::Shared => current_user(),
            Way::Copy | Way::Fallback => step_user(),
        }
    }
}

/// `phantom_ci run app` under `strace -f` (clone3 and write calls only): its stdout and the trace.
fn traced_run(env: &TestEnv, strace: &Path, way: Way) -> (String, String) {
    let trace = env.root().join(format!("trace-{way:?}"));
    let phantom = assert_cmd::cargo::cargo_bin!("phantom_ci");
    let command = env.phantom_std();
    let mut traced = std::process::Command::new(strace);
    traced
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=clone3,write",
            "-e",
            "signal=none",
            "-o",
        ])
        .arg(&trace)
        .arg(phantom)
        .args(["run", "app"])
        .env_clear()
        .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(env.root());
    if way == Way::Fallback {
        traced.env(FALLBACK.0, FALLBACK.1);
    }
    let out = traced.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout, std::fs::read_to_string(&trace).unwrap())
}

/// Whether the trace shows a process writing `0` to a `cgroup.procs` (the move into the cgroup).
fn joined_by_write(trace: &str) -> bool {
    trace
        .lines()
        .any(|l| l.contains(" write(") && l.contains(", \"0\", 1)") && l.ends_with("= 1"))
}

fn the_step_is_born_in_its_cgroup(way: Way) {
    let Some(mount) = writable_cgroup2() else {
        return;
    };
    let Some(strace) = strace() else {
        return;
    };
    let env = TestEnv::shared();
    let repo = env.repo("app");
    repo.workflow(
        "master",
        "[0]\nrun = \"grep ^0:: /proc/self/cgroup\"\n[1]\nrun = \"id -un\"\n",
    );
    repo.commit_and_push("where am I");
    env.write_repo_toml(&env.section_as("app", &repo, &way.run_as(), ""));
    let (stdout, trace) = traced_run(&env, &strace, way);
    let cgroup = stdout
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        cgroup.contains("/phantom_ci-") && cgroup.ends_with("-app-1/step-0"),
        "{stdout}"
    );
    assert!(!mount.join(cgroup.trim_start_matches('/')).exists());
    assert!(
        stdout.lines().any(|l| l == way.run_as()),
        "the step ran as {}:\n{stdout}",
        way.run_as()
    );
    let steps: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("clone3(") && !l.contains("resumed"))
        .filter(|l| l.contains("CLONE_INTO_CGROUP"))
        .collect();
    let shared = steps.iter().filter(|l| l.contains("CLONE_VM")).count();
    match way {
        Way::Fallback => {
            assert!(steps.is_empty(), "the switch forces the fallback:\n{trace}");
            assert!(joined_by_write(&trace), "moved in by a write:\n{trace}");
        }
        Way::Copy => {
            assert_eq!(steps.len(), 2, "clone3 with CLONE_INTO_CGROUP:\n{trace}");
            // Only root switches users (else the step user is this user, and memory is shared).
            if way.run_as() != current_user() {
                assert_eq!(shared, 0, "never sharing memory with a step user:\n{trace}");
            }
            assert!(!joined_by_write(&trace), "never moved:\n{trace}");
        }
        Way::Shared => {
            assert_eq!(steps.len(), 2, "clone3 with CLONE_INTO_CGROUP:\n{trace}");
            // x86_64 from Linux 5.16 (before, a core dump of one process sharing the memory
            // killed all of them).
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
            let version: Vec<u32> = release
                .split(|c: char| !c.is_ascii_digit())
                .take(2)
                .filter_map(|n| n.parse().ok())
                .collect();
            if cfg!(target_arch = "x86_64") && version >= vec![5, 16] {
                assert_eq!(shared, 2, "CLONE_VM|CLONE_VFORK:\n{trace}");
            } else {
                assert_eq!(shared, 0, "a copy here:\n{trace}");
            }
            assert!(!joined_by_write(&trace), "never moved:\n{trace}");
        }
    }
}

fn a_step_is_created_in_its_cgroup_without_being_moved() {
    the_step_is_born_in_its_cgroup(Way::Copy);
}

fn a_step_of_phantom_cis_own_user_shares_its_memory_until_exec() {
    the_step_is_born_in_its_cgroup(Way::Shared);
}

fn the_fallback_forks_and_moves_the_step_into_its_cgroup() {
    the_step_is_born_in_its_cgroup(Way::Fallback);
}

fn a_step_that_cannot_start(way: Way) {
    let env = TestEnv::shared();
    let repo = env.repo("app");
    // `plain` has no `#!`: run by /bin/sh, as `execvp` does. `closed` is not executable.
    repo.write("plain", "echo plain-ran-as-$(id -un)\n");
    repo.write("closed", "#!/bin/sh\necho should-not-run\n");
    std::fs::set_permissions(
        repo.work.join("plain"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    repo.workflow(
        "master",
        "[0]\nrun = \"./plain\"\n[1]\nrun = \"./closed\"\n",
    );
    repo.commit_and_push("two ways to start");
    let user = way.run_as();
    env.write_repo_toml(&env.section_as("app", &repo, &user, ""));
    let run = || {
        let mut run = env.phantom();
        if way == Way::Fallback {
            run.env(FALLBACK.0, FALLBACK.1);
        }
        run.args(["run", "app"]).assert().failure()
    };
    let stdout = stdout_of(&run());
    assert!(stdout.contains(&format!("plain-ran-as-{user}")), "{stdout}");
    assert!(!stdout.contains("should-not-run"), "{stdout}");
    let record = env.run_json("app", 1);
    let message = record["message"].as_str().unwrap();
    assert!(
        message.contains("cannot start `./closed`: Permission denied"),
        "{record}"
    );
    assert_eq!(record["steps"][0]["result"], "success", "{record}");

    repo.workflow("master", "[0]\nrun = \"no-such-program-phantom\"\n");
    repo.commit_and_push("no such program");
    run();
    let record = env.run_json("app", 2);
    let message = record["message"].as_str().unwrap();
    assert!(
        message.contains("cannot start `no-such-program-phantom`: No such file or directory"),
        "{record}"
    );
}

fn a_step_that_cannot_start_fails_with_the_reason() {
    a_step_that_cannot_start(Way::Copy);
}

fn a_step_that_cannot_start_fails_with_the_reason_when_it_shares_memory() {
    a_step_that_cannot_start(Way::Shared);
}

fn a_step_that_cannot_start_fails_with_the_reason_in_the_fallback_too() {
    a_step_that_cannot_start(Way::Fallback);
}

/// Invariant 4 under attack: phantom_ci started with signals ignored (as `nohup` and shells leave
/// them) — its steps still get every disposition at its default, none blocked, whichever way they
/// are started.
#[allow(unsafe_code)]
fn a_step_gets_default_signals_whatever_phantom_ci_inherited(way: Way) {
    use nix::sys::signal::{SigHandler, Signal, signal};
    use std::os::unix::process::CommandExt;
    let env = TestEnv::shared();
    let repo = env.repo("app");
    repo.workflow(
        "master",
        "[0]\nrun = \"grep -E ^Sig(Ign|Blk): /proc/self/status\"\n",
    );
    repo.commit_and_push("signals");
    env.write_repo_toml(&env.section_as("app", &repo, &way.run_as(), ""));
    let mut command = env.phantom_std();
    command.args(["run", "app"]);
    if way == Way::Fallback {
        command.env(FALLBACK.0, FALLBACK.1);
    }
    // SAFETY: between fork and exec, four system calls on plain values.
    unsafe {
        command.pre_exec(|| {
            for ignored in [
                Signal::SIGHUP,
                Signal::SIGQUIT,
                Signal::SIGUSR2,
                Signal::SIGXFSZ,
            ] {
                signal(ignored, SigHandler::SigIgn)?;
            }
            Ok(())
        });
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("SigIgn:\t0000000000000000\n")
            && stdout.contains("SigBlk:\t0000000000000000\n"),
        "{stdout}"
    );
}

fn a_step_copied_gets_default_signals() {
    a_step_gets_default_signals_whatever_phantom_ci_inherited(Way::Copy);
}

fn a_step_sharing_memory_gets_default_signals() {
    a_step_gets_default_signals_whatever_phantom_ci_inherited(Way::Shared);
}

fn a_step_of_the_fallback_gets_default_signals() {
    a_step_gets_default_signals_whatever_phantom_ci_inherited(Way::Fallback);
}

/// The run's start (its number, owner, run.json `running`) is made durable on a thread of its own, which the
/// checkout does not wait for, but the first step does: a power loss never loses a run whose steps
/// ran (issue 23).
fn the_run_start_is_synced_off_the_main_thread_before_the_first_step() {
    let Some(strace) = strace() else {
        return;
    };
    let env = TestEnv::shared();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"true first-step\"\n");
    repo.commit_and_push("one step");
    env.write_repo_toml(&env.section_as("app", &repo, &step_user(), ""));
    let trace = env.root().join("start.trace");
    let command = env.phantom_std();
    let out = std::process::Command::new(strace)
        .args([
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=execve,fsync,rename,renameat,renameat2",
        ])
        .arg("-o")
        .arg(&trace)
        .arg(assert_cmd::cargo::cargo_bin!("phantom_ci"))
        .args(["run", "app"])
        .env_clear()
        .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(env.root())
        .output()
        .unwrap();
    assert!(out.status.success());
    let calls = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    let pid = |line: &str| {
        line.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let main = pid(lines[0]);
    let find = |what: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .position(|l| what(l))
            .unwrap_or_else(|| panic!("not in the trace:\n{calls}"))
    };
    let record = find(&|l| l.contains("rename") && l.contains("/app/1/run.json\""));
    let record_dir_synced = record
        + lines[record..]
            .iter()
            .position(|l| l.contains("fsync(") && l.contains("/runs/app/1>"))
            .unwrap_or_else(|| panic!("the run directory is synced:\n{calls}"));
    let number = find(&|l| l.contains("rename") && l.contains("/runs/app/last\""));
    let step = find(&|l| l.contains("execve(") && l.contains("first-step"));
    assert_ne!(
        pid(lines[number]),
        main,
        "numbered by another thread:\n{calls}"
    );
    assert!(number < step, "the number is durable first:\n{calls}");
    assert_ne!(
        pid(lines[record]),
        main,
        "written by another thread:\n{calls}"
    );
    assert!(
        record_dir_synced < step,
        "durable before the first step:\n{calls}"
    );
}

/// A worker's run notes its commit as seen (durably) on a thread the first step does not wait for,
/// and before the run's final record (issue 23).
fn the_commit_is_marked_seen_off_the_main_thread_before_the_run_ends() {
    let Some(strace) = strace() else {
        return;
    };
    let env = TestEnv::shared();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"true first-step\"\n");
    repo.commit_and_push("one step");
    env.write_repo_toml(&env.section_as("app", &repo, &step_user(), ""));
    let trace = env.root().join("seen.trace");
    let command = env.phantom_std();
    let out = std::process::Command::new(strace)
        .args(["-f", "-qq", "-e", "trace=execve,rename,renameat,renameat2"])
        .arg("-o")
        .arg(&trace)
        .arg(assert_cmd::cargo::cargo_bin!("phantom_ci"))
        .arg("tick")
        .env_clear()
        .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(env.root())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(env.run_json("app", 1)["result"], "success");
    let calls = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    let pid = |line: &str| {
        line.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let main = pid(lines[0]);
    let renames: Vec<(usize, &str)> = lines
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, l)| l.contains("rename"))
        .collect();
    let (seen, seen_line) = *renames
        .iter()
        .find(|(_, l)| l.contains("/seen/"))
        .unwrap_or_else(|| panic!("the commit is marked seen:\n{calls}"));
    let (last_record, _) = *renames
        .iter()
        .rev()
        .find(|(_, l)| l.contains("/app/1/run.json\""))
        .unwrap_or_else(|| panic!("the final record:\n{calls}"));
    assert_ne!(pid(seen_line), main, "by another thread:\n{calls}");
    assert!(seen < last_record, "before the run ends:\n{calls}");
}

crate::tests! {
    the_commit_is_marked_seen_off_the_main_thread_before_the_run_ends,
    the_run_start_is_synced_off_the_main_thread_before_the_first_step,
    a_step_is_created_in_its_cgroup_without_being_moved,
    a_step_of_phantom_cis_own_user_shares_its_memory_until_exec,
    the_fallback_forks_and_moves_the_step_into_its_cgroup,
    a_step_that_cannot_start_fails_with_the_reason,
    a_step_that_cannot_start_fails_with_the_reason_when_it_shares_memory,
    a_step_that_cannot_start_fails_with_the_reason_in_the_fallback_too,
    a_step_copied_gets_default_signals,
    a_step_sharing_memory_gets_default_signals,
    a_step_of_the_fallback_gets_default_signals,
}
