//! Issue 23: a run's workspace as a copy-on-write layer over the branch's base tree. As root with
//! `run_as`, the base is moved from commit to commit by what changed, and each run sees exactly its
//! commit whatever the last run wrote; a step cannot change the base; where no layer can be made, the
//! run makes a full checkout and says why.

use std::path::{Path, PathBuf};

use crate::boundary::step_user;
use crate::debug_keep::shared_env;
use crate::support::{TestEnv, TestRepo, has_line, is_root, on_path, stdout_of};

crate::tests! {
    a_run_over_the_layer_sees_exactly_its_commit,
    a_step_cannot_change_the_base_tree_nor_see_it,
    where_no_layer_can_be_made_the_run_checks_out_in_full_and_says_why,
    a_failed_runs_layer_is_kept_as_a_plain_copy,
    parallel_steps_share_the_layer,
    a_damaged_base_is_made_again,
}

/// For a layer test: true as root; otherwise the test ends as ignored.
fn needs_root() -> bool {
    if !is_root() {
        crate::skip!("needs root: the layer is mounted as root, for steps running as `run_as`");
    }
    true
}

/// Prints the state of every file the tests play with, then changes them all: `keep.txt`
/// overwritten, `written.txt` made, `del.txt` removed.
const SCRIBBLE: &str = "[0]\nname = \"scribble\"\nrun = \"\"\"sh -c 'for f in keep.txt del.txt \
                        written.txt gone.txt fresh.txt; do if test -e $f; then echo \"$f: \
                        $(cat $f)\"; else echo \"$f: -\"; fi; done; echo scribbled > keep.txt; \
                        echo w > written.txt; rm -f del.txt'\"\"\"\n";

/// Repo `app` running as the step user with `workflow` and the files `keep.txt`, `del.txt` and
/// `gone.txt`, pushed; not run yet.
fn app<'a>(env: &'a TestEnv, workflow: &str, extra: &str) -> TestRepo<'a> {
    let repo = env.repo("app");
    repo.workflow("master", workflow)
        .write("keep.txt", "committed")
        .write("del.txt", "committed")
        .write("gone.txt", "committed");
    repo.commit_and_push("first");
    env.write_repo_toml(&env.section_as("app", &repo, &step_user(), extra));
    repo
}

fn base_tree(env: &TestEnv) -> PathBuf {
    env.data.join("base/app~master/tree")
}

/// The run's `==> workspace: …` line.
fn workspace_line(stdout: &str) -> String {
    stdout
        .lines()
        .find(|l| l.starts_with("==> workspace: "))
        .unwrap_or_else(|| panic!("no workspace line: {stdout}"))
        .to_string()
}

/// Whether an overlay is mounted at or below `dir` in phantom_ci's (the test's) mount namespace.
fn mounted_below(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.display().to_string();
    mounts.lines().any(|l| l.contains(&dir))
}

fn a_run_over_the_layer_sees_exactly_its_commit() {
    if !needs_root() {
        return;
    }
    let env = shared_env();
    let repo = app(&env, SCRIBBLE, "");
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = stdout_of(&out);
    assert_eq!(
        workspace_line(&stdout),
        "==> workspace: layer over the base tree (checked out in full: no base tree yet)"
    );
    for line in [
        "keep.txt: committed",
        "del.txt: committed",
        "written.txt: -",
        "gone.txt: committed",
    ] {
        assert!(has_line(&stdout, line), "{line}: {stdout}");
    }
    // The run wrote into its layer, never into the base.
    let base = base_tree(&env);
    assert_eq!(
        std::fs::read_to_string(base.join("keep.txt")).unwrap(),
        "committed"
    );
    assert!(base.join("del.txt").is_file() && !base.join("written.txt").exists());
    assert!(!mounted_below(&env.data), "no mount outlives the run");
    assert!(
        !env.data.join("work/app/1").exists(),
        "the workspace is gone"
    );

    // The next commit removes `gone.txt` and adds `fresh.txt`: the base moves by those two.
    std::fs::remove_file(repo.work.join("gone.txt")).unwrap();
    repo.write("fresh.txt", "new in the second commit");
    repo.commit_and_push("second");
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = stdout_of(&out);
    assert_eq!(
        workspace_line(&stdout),
        "==> workspace: layer over the base tree (moved: 1 written, 1 removed)"
    );
    // What the first run wrote or removed is as committed again; what the commit removed is gone.
    for line in [
        "keep.txt: committed",
        "del.txt: committed",
        "written.txt: -",
        "gone.txt: -",
        "fresh.txt: new in the second commit",
    ] {
        assert!(has_line(&stdout, line), "{line}: {stdout}");
    }
    assert_eq!(
        env.run_json("app", 2)["workspace"],
        "layer over the base tree (moved: 1 written, 1 removed)"
    );
    // The same commit again: nothing to move.
    let out = env.phantom().args(["run", "app"]).assert().success();
    assert_eq!(
        workspace_line(&stdout_of(&out)),
        "==> workspace: layer over the base tree (at this commit already)"
    );
    let out = env.phantom().args(["status", "--long"]).assert().success();
    assert!(
        has_line(
            &stdout_of(&out),
            "workspace of app #3: layer over the base tree (at this commit already)"
        ),
        "{}",
        stdout_of(&out)
    );
    // A removed repo's base trees go with it.
    env.phantom().args(["remove", "app"]).assert().success();
    assert!(!env.data.join("base/app~master").exists());
}

/// The step tries the base tree by the path the mount table shows, and the layer's mount itself.
const ATTACK: &str = "[0]\nname = \"attack\"\nrun = \"\"\"sh -c 'lower=$(sed -n \
                      \"s/.*lowerdir=\\\\([^,]*\\\\).*/\\\\1/p\" /proc/self/mountinfo | head -1); \
                      echo lower=$lower; ls $lower >/dev/null 2>&1 && echo listed-base; \
                      echo evil > $lower/keep.txt 2>/dev/null && echo wrote-base; \
                      umount $PWD 2>/dev/null && echo unmounted; \
                      echo mine > keep.txt && echo wrote-layer; stat -c \"owner %U\" keep.txt'\"\"\"\n";

fn a_step_cannot_change_the_base_tree_nor_see_it() {
    if !needs_root() {
        return;
    }
    let env = shared_env();
    app(&env, ATTACK, "");
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = stdout_of(&out);
    let base = base_tree(&env);
    // The step sees where the base is, and can do nothing with it.
    assert!(
        has_line(&stdout, &format!("lower={}", base.display())),
        "{stdout}"
    );
    for refused in ["listed-base", "wrote-base", "unmounted"] {
        assert!(!has_line(&stdout, refused), "{refused}: {stdout}");
    }
    // Its own copy is writable, and its own.
    assert!(has_line(&stdout, "wrote-layer"), "{stdout}");
    assert!(
        has_line(&stdout, &format!("owner {}", step_user())),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(base.join("keep.txt")).unwrap(),
        "committed"
    );
    // Nobody but phantom_ci can go into the base trees' directory.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.data.join("base"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    // The same in the sandbox, which starts inside the run's namespace.
    if on_path("bwrap") {
        let repo_toml = std::fs::read_to_string(env.config.join("Repo.toml")).unwrap();
        env.write_repo_toml(&format!("{repo_toml}sandbox = \"bwrap\"\n"));
        let out = env.phantom().args(["run", "app"]).assert().success();
        let stdout = stdout_of(&out);
        assert!(
            workspace_line(&stdout).contains("(at this commit already)"),
            "{stdout}"
        );
        for refused in ["listed-base", "wrote-base", "unmounted"] {
            assert!(!has_line(&stdout, refused), "{refused}: {stdout}");
        }
        assert!(has_line(&stdout, "wrote-layer"), "{stdout}");
        assert_eq!(
            std::fs::read_to_string(base.join("keep.txt")).unwrap(),
            "committed"
        );
    }
}

fn where_no_layer_can_be_made_the_run_checks_out_in_full_and_says_why() {
    if !needs_root() {
        return;
    }
    let env = shared_env();
    app(&env, SCRIBBLE, "");
    // Refused (the test switch, as the kernel would): said in the log, the run goes on.
    let out = env
        .phantom()
        .env("PHANTOM_CI_OVERLAY", "0")
        .args(["run", "app"])
        .assert()
        .success();
    let stdout = stdout_of(&out);
    assert_eq!(
        workspace_line(&stdout),
        "==> workspace: full checkout (`PHANTOM_CI_OVERLAY=0` in phantom_ci's environment)"
    );
    assert!(has_line(&stdout, "keep.txt: committed"), "{stdout}");
    assert!(
        !env.data.join("work/app/1").exists(),
        "the layer's directories went with the workspace"
    );
    // Turned off: no line in the log, but the record and `status --long` say which.
    let repo_toml = std::fs::read_to_string(env.config.join("Repo.toml")).unwrap();
    env.write_repo_toml(&format!("{repo_toml}base_tree = false\n"));
    let out = env.phantom().args(["run", "app"]).assert().success();
    assert!(!stdout_of(&out).contains("==> workspace:"));
    assert_eq!(
        env.run_json("app", 2)["workspace"],
        "full checkout (`base_tree = false`)"
    );
    let out = env.phantom().args(["status", "--long"]).assert().success();
    assert!(
        has_line(
            &stdout_of(&out),
            "workspace of app #2: full checkout (`base_tree = false`)"
        ),
        "{}",
        stdout_of(&out)
    );
    // Steps as phantom_ci's own user could reach the base: never a layer.
    let plain = TestEnv::new();
    let repo = plain.repo("app");
    repo.workflow("master", "[0]\nrun = \"true\"\n");
    repo.commit_and_push("first");
    plain.write_repo_toml(&plain.section("app", &repo, ""));
    plain.phantom().args(["run", "app"]).assert().success();
    assert_eq!(
        plain.run_json("app", 1)["workspace"],
        "full checkout (the steps run as phantom_ci's own user: no `run_as`)"
    );
    assert!(!plain.data.join("base/app~master").exists());
}

fn a_failed_runs_layer_is_kept_as_a_plain_copy() {
    if !needs_root() {
        return;
    }
    let env = shared_env();
    let failing =
        "[0]\nname = \"test\"\nrun = \"sh -c 'echo left > made-by-0; rm del.txt; exit 3'\"\n";
    app(&env, failing, "keep_failed = \"1h\"\n");
    let out = env.phantom().args(["run", "app"]).assert().code(1);
    let stdout = stdout_of(&out);
    assert!(workspace_line(&stdout).starts_with("==> workspace: layer"));
    assert!(stdout.contains("==> debug it where it failed"), "{stdout}");
    // A plain directory, as the step left it: nothing mounted, no layer left over.
    let kept = env.data.join("work/app/1");
    assert!(!mounted_below(&env.data));
    assert!(!kept.join("layer").exists());
    assert_eq!(
        std::fs::read_to_string(kept.join("workspace/made-by-0")).unwrap(),
        "left\n"
    );
    assert!(kept.join("workspace/keep.txt").is_file());
    assert!(!kept.join("workspace/del.txt").exists());
    // `debug` opens it, and the base is free for the next run.
    let out = env
        .phantom()
        .args(["debug", "app", "1", "--", "cat", "made-by-0"])
        .assert()
        .success();
    assert!(has_line(&stdout_of(&out), "left"));
    let out = env.phantom().args(["run", "app"]).assert().code(1);
    assert!(workspace_line(&stdout_of(&out)).contains("(at this commit already)"));
}

fn parallel_steps_share_the_layer() {
    if !needs_root() {
        return;
    }
    let env = shared_env();
    let graph = "[0]\nname = \"make\"\nrun = \"sh -c 'echo built > out.txt'\"\n\
                 [1]\nname = \"a\"\nneeds = [0]\nrun = \"sh -c 'sleep 0.2; cat out.txt'\"\n\
                 [2]\nname = \"b\"\nneeds = [0]\nrun = \"sh -c 'sleep 0.2; cat out.txt'\"\n";
    app(&env, graph, "parallel_steps = 2\n");
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = stdout_of(&out);
    assert!(workspace_line(&stdout).starts_with("==> workspace: layer"));
    let log = env.log("app", 1);
    assert!(
        has_line(&log, "[1] built") && has_line(&log, "[2] built"),
        "{log}"
    );
}

fn a_damaged_base_is_made_again() {
    if !needs_root() {
        return;
    }
    let env = shared_env();
    app(&env, SCRIBBLE, "");
    env.phantom().args(["run", "app"]).assert().success();
    let marker = env.data.join("base/app~master/base.json");
    std::fs::write(&marker, "{ not json").unwrap();
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = stdout_of(&out);
    assert_eq!(
        workspace_line(&stdout),
        "==> workspace: layer over the base tree (checked out in full: its `base.json` is \
         missing or damaged)"
    );
    assert!(has_line(&stdout, "keep.txt: committed"), "{stdout}");
    // A base of another machine boot (a power loss may have left half-written files): made again.
    let text = std::fs::read_to_string(&marker).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["boot"] = "another-boot".into();
    std::fs::write(&marker, json.to_string()).unwrap();
    let out = env.phantom().args(["run", "app"]).assert().success();
    assert!(
        workspace_line(&stdout_of(&out)).ends_with("the machine restarted since it was written)")
    );
}
