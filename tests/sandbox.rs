//! `sandbox = "bwrap"` (issue #4): what a step in the sandbox cannot see or touch. The test
//! environments live under `/var/tmp`, since the sandbox gives steps an empty `/tmp` of their own.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{TestEnv, has_bwrap, has_line, needs_root, stdout_of};

fn sandbox_env() -> TestEnv {
    let env = TestEnv::new_in(Path::new("/var/tmp"));
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env
}

fn a_sandboxed_step_sees_a_read_only_host_and_none_of_phantoms_files() {
    if !has_bwrap() {
        return;
    }
    let env = sandbox_env();
    std::fs::write(env.config.join(".env"), "SECRET_TOKEN=hunter2\n").unwrap();
    std::fs::write(env.home.join("secret.txt"), "home-secret\n").unwrap();
    let marker = PathBuf::from(format!(
        "/tmp/phantom-sandbox-marker-{}",
        std::process::id()
    ));
    std::fs::write(&marker, "host tmp").unwrap();
    // A host socket under /run (where systemd, D-Bus and docker keep theirs).
    let socket = PathBuf::from(format!("/run/phantom-sandbox-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let repo = env.repo("app");
    let (config, home, data) = (env.config.display(), env.home.display(), env.data.display());
    let socket_shown = socket.display();
    repo.workflow(
        "master",
        &format!(
            r#"[0]
run = "sh -c 'if touch /etc/phantom-sandbox 2>/dev/null; then echo ETC-WRITTEN; else echo etc-refused; fi'"
[1]
run = "sh -c 'echo written > in-workspace && cat in-workspace'"
[2]
run = "sh -c 'echo tmp-entries=$(ls -A /tmp | wc -l)'"
[3]
run = "sh -c 'cat {config}/.env {config}/Repo.toml {home}/secret.txt; echo cat-status=$?'"
[4]
run = "sh -c 'if test -e {data}/runs; then echo RUNS-VISIBLE; else echo runs-hidden; fi'"
[5]
run = "git log --format=subject:%s"
[6]
run = "sh -c 'echo pid1=$(cat /proc/1/comm)'"
[7]
run = "sh -c 'echo kept > $PHANTOM_CI_ARTIFACTS/a.txt'"
[8]
run = "sh -c 'if test -S {socket_shown}; then echo RUN-SOCKET-VISIBLE; else echo run-sockets-hidden; fi'"
"#
        ),
    );
    repo.commit_and_push("sandboxed");
    env.write_repo_toml(&env.section("app", &repo, "sandbox = \"bwrap\""));
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = stdout_of(&out);
    std::fs::remove_file(&marker).unwrap();
    drop(listener);
    std::fs::remove_file(&socket).unwrap();
    assert!(has_line(&stdout, "run-sockets-hidden"), "{stdout}");
    assert!(has_line(&stdout, "etc-refused"), "{stdout}");
    assert!(!Path::new("/etc/phantom-sandbox").exists());
    assert!(has_line(&stdout, "written"), "{stdout}");
    assert!(has_line(&stdout, "tmp-entries=0"), "{stdout}");
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("home-secret"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("sandbox = \"bwrap\""),
        "Repo.toml: {stdout}"
    );
    assert!(has_line(&stdout, "cat-status=1"), "{stdout}");
    assert!(has_line(&stdout, "runs-hidden"), "{stdout}");
    assert!(has_line(&stdout, "subject:sandboxed"), "{stdout}");
    assert!(
        has_line(&stdout, "pid1=bwrap"),
        "own PID namespace: {stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(env.data.join("runs/app/1/artifacts/a.txt")).unwrap(),
        "kept\n"
    );
}

fn the_sandbox_has_no_network_unless_the_repo_allows_it() {
    if !has_bwrap() {
        return;
    }
    let env = sandbox_env();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let repo = env.repo("app");
    repo.workflow(
        "master",
        &format!("[0]\nrun = \"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected'\"\n"),
    );
    repo.commit_and_push("network");
    env.write_repo_toml(&format!(
        "{}{}",
        env.section("closed", &repo, "sandbox = \"bwrap\""),
        env.section("open", &repo, "sandbox = \"bwrap\"\nnetwork = true"),
    ));
    let out = env.phantom().args(["run", "closed"]).assert().code(1);
    assert!(!has_line(&stdout_of(&out), "connected"));
    assert_eq!(env.run_json("closed", 1)["result"], "failure");
    let out = env.phantom().args(["run", "open"]).assert().success();
    assert!(
        has_line(&stdout_of(&out), "connected"),
        "{}",
        stdout_of(&out)
    );
    drop(listener);
}

fn the_sandbox_works_for_an_unprivileged_run_as_user() {
    if !needs_root() {
        return;
    }
    if !has_bwrap() {
        return;
    }
    let env = sandbox_env();
    std::fs::write(env.config.join(".env"), "SECRET_TOKEN=hunter2\n").unwrap();
    std::fs::set_permissions(
        env.config.join(".env"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let repo = env.repo("app");
    repo.workflow(
        "master",
        &format!(
            r#"[0]
run = "id -u"
[1]
run = "sh -c 'echo written > in-workspace && cat in-workspace'"
[2]
run = "sh -c 'cat {}/.env; echo cat-status=$?'"
[3]
run = "git rev-parse HEAD"
"#,
            env.config.display()
        ),
    );
    let commit = repo.commit_and_push("nobody in the sandbox");
    env.write_repo_toml(&env.section_as("app", &repo, "nobody", "sandbox = \"bwrap\""));
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = stdout_of(&out);
    assert!(has_line(&stdout, "65534"), "{stdout}");
    assert!(has_line(&stdout, "written"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(has_line(&stdout, "cat-status=1"), "{stdout}");
    assert!(has_line(&stdout, &commit), "{stdout}");
}

fn sandbox_root_runs_the_steps_on_a_prepared_root_file_system() {
    if !has_bwrap() {
        return;
    }
    let Some(busybox) = crate::support::find_on_path("busybox") else {
        crate::skip!("needs a static busybox (apt-get install busybox-static)");
    };
    let env = sandbox_env();
    let repo = env.repo("app");
    repo.workflow(
        "master",
        r#"[0]
run = "sh -c 'ls /'"
[1]
run = "sh -c 'if test -e /usr/bin/git; then echo HOST-VISIBLE; else echo busybox-only; fi'"
[2]
run = "sh -c 'echo written > in-workspace && cat in-workspace'"
"#,
    );
    repo.commit_and_push("tiny root");
    let root = env.root().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "ls", "cat", "echo", "test"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let inside = |path: &Path| root.join(path.strip_prefix("/").unwrap());
    for dir in [
        root.join("dev"),
        root.join("proc"),
        root.join("tmp"),
        // Mount points for the data dir and the repository's objects.
        inside(&env.data),
        inside(&repo.bare.join("objects")),
    ] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let top = env.root().components().nth(1).unwrap();
    env.write_repo_toml(&env.section(
        "app",
        &repo,
        &format!("sandbox = \"bwrap\"\nsandbox_root = \"{}\"", root.display()),
    ));
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = stdout_of(&out);
    let listing: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("==> [0]"))
        .skip(1)
        .take_while(|l| !l.starts_with("==>"))
        .collect();
    let top = top.as_os_str().to_str().unwrap();
    assert_eq!(listing, ["bin", "dev", "proc", "tmp", top], "{stdout}");
    assert!(has_line(&stdout, "busybox-only"), "{stdout}");
    assert!(has_line(&stdout, "written"), "{stdout}");
}

fn without_bwrap_a_sandboxed_repo_is_an_error_before_any_step() {
    let env = TestEnv::new();
    let empty = env.root().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    env.app("[0]\nrun = \"touch ran\"\n", "sandbox = \"bwrap\"");
    env.phantom()
        .args(["run", "app"])
        .env("PATH", &empty)
        .assert()
        .code(1);
    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "error");
    let message = record["message"].as_str().unwrap();
    assert!(
        message.contains("`bwrap` is not on PATH") && message.contains("bubblewrap"),
        "{message}"
    );
    assert_eq!(record["steps"].as_array().unwrap().len(), 0);
    // An error after the checkout keeps the workspace (`keep_failed`), where no step ran.
    assert!(env.data.join("work/app/1/workspace/workflow").is_dir());
    assert!(!env.data.join("work/app/1/workspace/ran").exists());
}

crate::tests! {
    a_sandboxed_step_sees_a_read_only_host_and_none_of_phantoms_files,
    the_sandbox_has_no_network_unless_the_repo_allows_it,
    the_sandbox_works_for_an_unprivileged_run_as_user,
    sandbox_root_runs_the_steps_on_a_prepared_root_file_system,
    without_bwrap_a_sandboxed_repo_is_an_error_before_any_step,
}
