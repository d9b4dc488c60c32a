//! `configure hook` (issue #3): the installed post-receive hook, and what git runs when someone pushes.
//! The `hook` subcommand itself is tested end to end by the `hook` tests.

use std::os::unix::fs::PermissionsExt;

use predicates::prelude::*;

use crate::support::TestEnv;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn configure_hook_installs_the_template_with_quoted_paths() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let config = env.root().join("it's a \"config\"");
    let data = env.root().join("data $HOME");
    let hook = repo.bare.join("hooks/post-receive");
    let configure = |extra: &[&str]| {
        let mut cmd = env.phantom();
        cmd.args([
            "--config-dir",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .args(["configure", "hook", repo.bare.to_str().unwrap()])
        .args(extra);
        cmd
    };
    configure(&[])
        .assert()
        .success()
        .stdout(predicate::str::contains("installed"));
    assert_eq!(mode(&hook), 0o755);
    let script = std::fs::read_to_string(&hook).unwrap();
    assert!(script.starts_with("#!/bin/sh\n"));
    let exec = script.lines().find(|l| l.starts_with("exec ")).unwrap();
    let binary = assert_cmd::cargo::cargo_bin!("phantom_ci")
        .canonicalize()
        .unwrap();
    assert_eq!(
        shell_words::split(exec).unwrap(),
        [
            "exec",
            binary.to_str().unwrap(),
            "--config-dir",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "hook"
        ]
    );
    // Idempotent; a different hook (here: with --wait) is refused unless --force.
    configure(&[])
        .assert()
        .success()
        .stdout(predicate::str::contains("already installed"));
    configure(&["--wait"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "a phantom_ci hook with other settings",
        ));
    assert_eq!(std::fs::read_to_string(&hook).unwrap(), script);
    configure(&["--wait", "--force"])
        .assert()
        .success()
        .stdout(predicate::str::contains("replaced"));
    assert!(
        std::fs::read_to_string(&hook)
            .unwrap()
            .contains(" hook --wait\n")
    );

    std::fs::write(&hook, "#!/bin/sh\necho mine\n").unwrap();
    configure(&[])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not phantom_ci's hook"));
    assert_eq!(
        std::fs::read_to_string(&hook).unwrap(),
        "#!/bin/sh\necho mine\n"
    );

    // Only bare repositories.
    env.phantom()
        .args(["configure", "hook", repo.work.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a bare repository"));
    assert!(!repo.work.join(".git/hooks/post-receive").exists());
    env.git(&repo.bare, &["config", "core.hooksPath", "/somewhere/else"]);
    std::fs::remove_file(&hook).unwrap();
    env.phantom()
        .args(["configure", "hook", repo.bare.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("core.hooksPath"));
    assert!(!hook.exists());
}

fn a_real_push_runs_the_installed_hook_with_its_arguments_and_stdin() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let config = env.root().join("odd 'config'");
    let data = env.root().join("data \"dir\"");
    env.phantom()
        .args([
            "--config-dir",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .args(["configure", "hook", repo.bare.to_str().unwrap(), "--wait"])
        .assert()
        .success();
    // The `hook` subcommand is tested end to end by the `hook` tests; here a recorder stands in for the
    // binary, so the test shows what git runs: the hook's own command line, quoting and stdin.
    let hook = repo.bare.join("hooks/post-receive");
    let binary = assert_cmd::cargo::cargo_bin!("phantom_ci")
        .canonicalize()
        .unwrap();
    let recorder = env.root().join("recorder");
    let record = env.root().join("recorded");
    std::fs::write(
        &recorder,
        format!(
            "#!/bin/sh\n{{ for a in \"$@\"; do echo \"arg:$a\"; done; echo \"git_dir:$GIT_DIR\"; \
             echo \"pwd:$(pwd)\"; sed 's/^/stdin:/'; }} > {}\n",
            shell_words::quote(record.to_str().unwrap())
        ),
    )
    .unwrap();
    std::fs::set_permissions(&recorder, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = std::fs::read_to_string(&hook).unwrap();
    let quoted_binary = shell_words::quote(binary.to_str().unwrap()).into_owned();
    assert!(script.contains(&format!("exec {quoted_binary} ")));
    std::fs::write(
        &hook,
        script.replace(
            &quoted_binary,
            &shell_words::quote(recorder.to_str().unwrap()),
        ),
    )
    .unwrap();

    let commit = repo.commit_and_push("pushed");
    let recorded = std::fs::read_to_string(&record).unwrap();
    let expected_args = format!(
        "arg:--config-dir\narg:{}\narg:--data-dir\narg:{}\narg:hook\narg:--wait\n",
        config.display(),
        data.display()
    );
    assert!(recorded.starts_with(&expected_args), "{recorded}");
    assert!(recorded.contains("git_dir:.\n"), "{recorded}");
    assert!(
        recorded.contains(&format!(
            "pwd:{}\n",
            repo.bare.canonicalize().unwrap().display()
        )),
        "{recorded}"
    );
    assert!(
        recorded.contains(&format!(
            "stdin:{} {commit} refs/heads/master\n",
            "0".repeat(40)
        )),
        "{recorded}"
    );
}

crate::tests! {
    configure_hook_installs_the_template_with_quoted_paths,
    a_real_push_runs_the_installed_hook_with_its_arguments_and_stdin,
}
