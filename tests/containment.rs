//! Containment (issue #4): privilege drop, escaped processes, signals, limits, artifacts, bounded
//! output. Each test tries the attack for real. The sandbox and signed commits have their own files.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use predicates::prelude::*;

use crate::support::{TestEnv, has_line, needs_root, process_running, stdout_of, wait_for};

/// The lines a step printed, as run.json keeps them in the log.
fn run_as_nobody_drops_uid_groups_and_home() {
    if !needs_root() {
        return;
    }
    let env = TestEnv::new();
    // The temp dir is 0700: let `nobody` traverse it to its workspace.
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo = env.repo("app");
    repo.workflow(
        "master",
        r#"[0]
run = "id -u"
[1]
run = "sh -c 'echo groups: $(id -G)'"
[2]
run = "sh -c 'if touch /root/phantom-nobody-was-here 2>/dev/null; then echo WROTE-ROOT; else echo root-refused; fi'"
[3]
run = "sh -c 'echo written > in-workspace && cat in-workspace'"
[4]
run = "sh -c 'echo home=$HOME user=$USER'"
[5]
run = "git log --format=subject:%s"
"#,
    );
    repo.commit_and_push("as nobody");
    env.write_repo_toml(&env.section_as("app", &repo, "nobody", ""));
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = stdout_of(&out);
    assert!(has_line(&stdout, "65534"), "{stdout}");
    let groups = stdout
        .lines()
        .find_map(|l| l.strip_prefix("groups: "))
        .unwrap();
    assert!(
        !groups.split_whitespace().any(|g| g == "0") && !groups.is_empty(),
        "{groups}"
    );
    assert!(has_line(&stdout, "root-refused"), "{stdout}");
    assert!(!std::path::Path::new("/root/phantom-nobody-was-here").exists());
    assert!(has_line(&stdout, "written"), "{stdout}");
    assert!(
        has_line(&stdout, "home=/nonexistent user=nobody"),
        "{stdout}"
    );
    assert!(has_line(&stdout, "subject:as nobody"), "{stdout}");
}

fn run_as_a_user_who_cannot_reach_the_data_dir_is_an_error_naming_it() {
    if !needs_root() {
        return;
    }
    let env = TestEnv::new();
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"touch ran\"\n");
    repo.commit_and_push("unreachable");
    env.write_repo_toml(&env.section_as("app", &repo, "nobody", "keep_workspace = \"always\""));
    env.phantom().args(["run", "app"]).assert().code(1);
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "error");
    let message = record["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("`{}`", env.root().display())),
        "{message}"
    );
    assert!(message.contains("/var/lib/phantom_ci"), "{message}");
    assert_eq!(record["steps"].as_array().unwrap().len(), 0);
    assert!(!env.data.join("work/app/1/workspace/ran").exists());
}

fn processes_that_leave_the_process_group_are_killed_when_the_run_ends() {
    let env = TestEnv::new();
    env.app(
        "[0]\nrun = \"sh -c 'setsid sleep 1021 & (sleep 1021 &) & sleep 1021 & echo up'\"\n",
        "",
    );
    env.phantom()
        .args(["run", "app"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\nup\n"));
    assert!(
        !process_running(&["sleep", "1021"]),
        "a `sleep 1021` outlived the run"
    );
}

fn sigterm_and_sigint_abort_the_run_and_leave_nothing_behind() {
    for (signal, duration) in [(Signal::SIGTERM, "1022"), (Signal::SIGINT, "1023")] {
        let env = TestEnv::new();
        let repo = env.repo("app");
        repo.workflow(
            "master",
            &format!(
                "[0]\nrun = \"sh -c 'setsid sleep {duration} & sleep {duration} & echo up; exec sleep {duration}'\"\n[1]\nrun = \"touch never\"\n"
            ),
        );
        repo.commit_and_push("long");
        env.write_repo_toml(&env.section("app", &repo, ""));
        let mut child = env
            .phantom_std()
            .args(["run", "app"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(lines.by_ref().map(|l| l.unwrap()).any(|l| l == "up"));
        // `up` is printed after both background sleeps started; wait for the step's own one too.
        wait_for("the step's processes", || {
            process_running(&["sleep", duration])
        });
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(1), "{signal}: {rest:?}");
        let record = env.run_json("app", 1);
        assert_eq!(record["result"], "aborted", "{signal}");
        let message = record["message"].as_str().unwrap();
        assert!(message.contains(signal.as_str()), "{message}");
        assert_eq!(record["steps"][1]["result"], "skipped");
        assert!(record["finished_at"].is_string());
        assert!(
            !process_running(&["sleep", duration]),
            "a `sleep {duration}` outlived phantom_ci"
        );
        assert!(!env.data.join("work/app/1").exists(), "workspace removed");
    }
}

fn resource_limits_apply_to_every_step() {
    let env = TestEnv::new();
    env.app(
        r#"[0]
run = "sh -c 'echo nofile=$(ulimit -n)'"
[1]
run = "sh -c 'head -c 2097152 /dev/zero > big; echo status=$?; echo size=$(wc -c < big)'"
"#,
        "limits = { nofile = 64, fsize = \"1MiB\" }",
    );
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = stdout_of(&out);
    assert!(has_line(&stdout, "nofile=64"), "{stdout}");
    // `head` was killed by SIGXFSZ (25) at the 1 MiB limit.
    assert!(has_line(&stdout, "status=153"), "{stdout}");
    assert!(has_line(&stdout, "size=1048576"), "{stdout}");
}

fn a_symlink_to_shadow_in_the_artifacts_is_not_copied() {
    let env = TestEnv::new();
    env.app("[0]\nrun = '''sh -c 'cd \"$PHANTOM_CI_ARTIFACTS\" && ln -s /etc/shadow shadow && ln -s /etc etc && mkdir d && ln -s /etc/shadow d/s && echo fine > ok.txt' '''\n", "");
    env.phantom()
        .args(["run", "app"])
        .assert()
        .success()
        .stdout(predicate::str::contains("artifact `shadow` not kept"));
    let kept = env.data.join("runs/app/1/artifacts");
    assert_eq!(
        std::fs::read_to_string(kept.join("ok.txt")).unwrap(),
        "fine\n"
    );
    for path in ["shadow", "etc", "d/s"] {
        assert!(
            std::fs::symlink_metadata(kept.join(path)).is_err(),
            "{path} was kept"
        );
    }
}

fn a_gigabyte_of_output_keeps_memory_and_the_log_bounded() {
    let Some(time) = crate::support::find_on_path("time") else {
        crate::skip!("needs GNU time to measure peak memory (apt-get install time)");
    };
    let env = TestEnv::new();
    env.app(
        "[0]\nrun = \"head -c 1073741824 /dev/zero\"\n",
        "log_limit = \"1MiB\"",
    );
    let phantom = env.phantom_std();
    let output = std::process::Command::new(time)
        .arg("-v")
        .arg(phantom.get_program())
        .args(["run", "app"])
        .env_clear()
        .envs(
            phantom
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_os_string(), v?.to_os_string()))),
        )
        .current_dir(env.root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let peak_kib: u64 = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!(peak_kib < 32 * 1024, "peak RSS {peak_kib} KiB");
    let log = std::fs::read(env.data.join("runs/app/1/log")).unwrap();
    assert!(log.len() < (1 << 20) + 4096, "log is {} bytes", log.len());
    let text = String::from_utf8_lossy(&log);
    let note =
        "[phantom_ci: the log reached its cap of 1048576 bytes; later output is not recorded]";
    let at = text.find(note).unwrap();
    assert!(
        text[..at].ends_with(&format!("{}\n", "\0".repeat(1000))),
        "the step's output runs up to the note"
    );
    assert_eq!(env.run_json("app", 1)["result"], "success");
}

fn a_run_as_user_who_cannot_read_the_repository_is_warned() {
    if !needs_root() {
        return;
    }
    let env = TestEnv::shared();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"echo no git needed\"\n");
    repo.commit_and_push("private repository");
    std::fs::set_permissions(&repo.bare, std::fs::Permissions::from_mode(0o700)).unwrap();
    env.write_repo_toml(&env.section_as("app", &repo, "nobody", ""));
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains("==> note: `nobody` cannot read"),
        "{stdout}"
    );
    assert!(
        stdout.contains("git` commands in steps will fail"),
        "{stdout}"
    );
}

fn the_step_user_owns_its_workspace_but_not_the_run_directory() {
    if !needs_root() {
        return;
    }
    let env = TestEnv::shared();
    let repo = env.repo("app");
    repo.workflow(
        "master",
        "[0]\nrun = \"stat -c 'run-dir %a %U' ..\"\n[1]\nrun = \"stat -c 'workspace %a %U' .\"\n[2]\nrun = \"mv ../workspace ../elsewhere\"\n",
    );
    repo.commit_and_push("ownership");
    env.write_repo_toml(&env.section_as("app", &repo, "nobody", "keep_workspace = \"always\""));
    let out = env.phantom().args(["run", "app"]).assert().code(1);
    let stdout = stdout_of(&out);
    assert!(has_line(&stdout, "run-dir 711 root"), "{stdout}");
    assert!(has_line(&stdout, "workspace 700 nobody"), "{stdout}");
    // The step user cannot rename what is in the run directory (root later works by that path).
    assert_eq!(env.run_json("app", 1)["steps"][2]["result"], "failure");
    assert!(env.data.join("work/app/1/workspace").is_dir());
    // Taken back before the artifacts are collected: the kept directory is phantom_ci's again.
    let meta = std::fs::metadata(env.data.join("work/app/1")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o700));
}

crate::tests! {
    run_as_nobody_drops_uid_groups_and_home,
    run_as_a_user_who_cannot_reach_the_data_dir_is_an_error_naming_it,
    processes_that_leave_the_process_group_are_killed_when_the_run_ends,
    sigterm_and_sigint_abort_the_run_and_leave_nothing_behind,
    resource_limits_apply_to_every_step,
    a_symlink_to_shadow_in_the_artifacts_is_not_copied,
    a_gigabyte_of_output_keeps_memory_and_the_log_bounded,
    a_run_as_user_who_cannot_read_the_repository_is_warned,
    the_step_user_owns_its_workspace_but_not_the_run_directory,
}
