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
    let binary = assert_cmd::cargo::cargo_bin!("phantom_ci")
        .canonicalize()
        .unwrap();
    // phantom_ci itself runs the hook (no shell), and reads its settings, TOML, from it.
    assert!(
        script.starts_with(&format!("#!{} hook-file\n", binary.display())),
        "{script}"
    );
    let settings: toml::Table = toml::from_str(&script).unwrap();
    assert_eq!(settings["config_dir"].as_str(), config.to_str());
    assert_eq!(settings["data_dir"].as_str(), data.to_str());
    assert_eq!(settings["wait"].as_bool(), Some(false));
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
            .contains("\nwait = true\n")
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
    // binary on the hook's `#!` line, so the test shows what git and the kernel run: the interpreter's
    // arguments, the hook's directory and stdin — and what phantom_ci makes of that hook file.
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
    let shebang = format!("#!{} hook-file\n", binary.display());
    assert!(script.starts_with(&shebang), "{script}");
    std::fs::write(
        &hook,
        script.replacen(
            &shebang,
            &format!("#!{} hook-file\n", recorder.display()),
            1,
        ),
    )
    .unwrap();

    let commit = repo.commit_and_push("pushed");
    let recorded = std::fs::read_to_string(&record).unwrap();
    let mut lines = recorded.lines();
    assert_eq!(lines.next(), Some("arg:hook-file"), "{recorded}");
    let hook_path = lines
        .next()
        .and_then(|l| l.strip_prefix("arg:"))
        .unwrap_or_else(|| panic!("{recorded}"));
    assert!(recorded.contains("git_dir:.\n"), "{recorded}");
    let bare = repo.bare.canonicalize().unwrap();
    assert!(
        recorded.contains(&format!("pwd:{}\n", bare.display())),
        "{recorded}"
    );
    assert!(
        recorded.contains(&format!(
            "stdin:{} {commit} refs/heads/master\n",
            "0".repeat(40)
        )),
        "{recorded}"
    );
    // The path the kernel gives, from the hook's directory, is the hook; phantom_ci reads from it
    // the arguments `--config-dir … --data-dir … hook --wait` stand for.
    assert_eq!(
        bare.join(hook_path).canonicalize().unwrap(),
        hook.canonicalize().unwrap()
    );
    std::fs::write(&hook, &script).unwrap();
    let settings: toml::Table = toml::from_str(&script).unwrap();
    assert_eq!(settings["config_dir"].as_str(), config.to_str());
    assert_eq!(settings["data_dir"].as_str(), data.to_str());
    assert_eq!(settings["wait"].as_bool(), Some(true));
}

/// The hook as git runs it, through phantom_ci's `#!` line: a real push queues and runs; a hook file
/// damaged by hand never fails the push and says what to do.
fn a_push_through_the_hook_file_runs_and_a_damaged_one_never_fails_the_push() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"echo through-the-hook-file\"\n");
    repo.commit("workflow");
    env.write_repo_toml(&env.section("app", &repo, ""));
    env.phantom()
        .args(["configure", "hook", repo.bare.to_str().unwrap(), "--wait"])
        .assert()
        .success();
    let push = |message: &str| {
        repo.commit(message);
        let out = repo.push("master");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let out = push("first");
    assert!(out.contains("through-the-hook-file"), "{out}");
    let hook = repo.bare.join("hooks/post-receive");
    let script = std::fs::read_to_string(&hook).unwrap();
    std::fs::write(&hook, script.replace("wait = true", "wait = maybe")).unwrap();
    repo.write("again", "x");
    let out = push("second");
    assert!(
        out.contains("is not one `phantom_ci configure hook` writes")
            && out.contains("configure hook --force")
            && out.contains("the push itself succeeded"),
        "{out}"
    );
    assert_eq!(env.run_json("app", 1)["result"], "success");
}

crate::tests! {
    configure_hook_installs_the_template_with_quoted_paths,
    a_push_through_the_hook_file_runs_and_a_damaged_one_never_fails_the_push,
    a_real_push_runs_the_installed_hook_with_its_arguments_and_stdin,
}
