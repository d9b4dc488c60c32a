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
    a_tree_that_lists_a_name_twice_is_refused_and_root_gives_nothing_away,
    steps_in_a_layer_do_not_get_roots_reserved_blocks,
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
    // A step may rename a directory of the commit (`rename(2)`, no copy), as in a plain checkout;
    // the next run has it back where the commit has it.
    repo.workflow(
        "master",
        "[0]\nname = \"rename\"\nrun = \"\"\"perl -e 'rename(\"workflow\", \"moved\") or die \
         \"rename: $!\\n\"; print \"renamed\\n\"'\"\"\"\n",
    );
    repo.commit_and_push("rename");
    let out = env.phantom().args(["run", "app"]).assert().success();
    assert!(has_line(&stdout_of(&out), "renamed"), "{}", stdout_of(&out));
    let out = env.phantom().args(["run", "app"]).assert().success();
    assert!(has_line(&stdout_of(&out), "renamed"), "{}", stdout_of(&out));
    repo.workflow("master", SCRIBBLE);
    repo.commit_and_push("scribble again");
    env.phantom().args(["run", "app"]).assert().success();
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
            "workspace of app #6: layer over the base tree (at this commit already)"
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
        format!(
            "full checkout (the steps run as phantom_ci's own user, `{}`)",
            crate::support::current_user()
        )
        .as_str()
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

/// A tree object written byte for byte from `(mode, name, id)` entries in the order given, with
/// `git hash-object --literally` (git's own `mktree` refuses what a hostile pusher can still push).
fn raw_tree(env: &TestEnv, repo: &TestRepo, entries: &[(&str, &str, String)]) -> String {
    let mut bytes = Vec::new();
    for (mode, name, id) in entries {
        bytes.extend_from_slice(format!("{mode} {name}\0").as_bytes());
        let hex = id.as_bytes();
        for pair in hex.chunks(2) {
            bytes.push(u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap());
        }
    }
    let mut git = std::process::Command::new("git")
        .args(["hash-object", "-t", "tree", "-w", "--literally", "--stdin"])
        .current_dir(&repo.work)
        .env_clear()
        .envs(crate::support::fixed_env(&env.home))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut git.stdin.take().unwrap(), &bytes).unwrap();
    let out = git.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn a_tree_that_lists_a_name_twice_is_refused_and_root_gives_nothing_away() {
    if !needs_root() {
        return;
    }
    let env = shared_env();
    let repo = app(&env, SCRIBBLE, "");
    repo.write("a/zz", "in the base");
    let first = repo.commit_and_push("a/zz");
    env.phantom().args(["run", "app"]).assert().success();
    // A directory of root's that the pusher names through a link.
    let victim = env.root().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("zz"), "root's").unwrap();
    // The root tree lists `a` twice: the directory (with `zz`), then a link to the victim. `git
    // checkout` keeps the link; a count that looked `a` up by name would list `a/zz` as written.
    let tree_of = |rev: &str| env.git(&repo.work, &["rev-parse", rev]);
    let target = victim.display().to_string();
    let link = {
        let path = repo.work.join("link-target");
        std::fs::write(&path, &target).unwrap();
        let id = env.git(&repo.work, &["hash-object", "-w", "link-target"]);
        std::fs::remove_file(path).unwrap();
        id
    };
    let evil = raw_tree(
        &env,
        &repo,
        &[
            ("40000", "a", tree_of(&format!("{first}:a"))),
            ("120000", "a", link),
            ("40000", "workflow", tree_of(&format!("{first}:workflow"))),
        ],
    );
    let commit = env.git(
        &repo.work,
        &["commit-tree", &evil, "-p", &first, "-m", "evil"],
    );
    // A plain `git push` takes it: nothing checks objects on receive by default.
    env.git(
        &repo.work,
        &[
            "push",
            "-q",
            "-f",
            "origin",
            &format!("{commit}:refs/heads/master"),
        ],
    );
    let out = env.phantom().args(["run", "app"]).assert().code(1);
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains("the commit's tree cannot be checked out")
            && stdout.contains("lists a name twice"),
        "{stdout}"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(victim.join("zz")).unwrap().uid(), 0);
    assert_eq!(std::fs::metadata(&victim).unwrap().uid(), 0);
    // The base was not touched: still at the first commit, and a full checkout refuses it too.
    let base = base_tree(&env);
    assert_eq!(
        std::fs::read_to_string(base.join("a/zz")).unwrap(),
        "in the base"
    );
    let repo_toml = std::fs::read_to_string(env.config.join("Repo.toml")).unwrap();
    env.write_repo_toml(&format!("{repo_toml}base_tree = false\n"));
    let out = env.phantom().args(["run", "app"]).assert().code(1);
    assert!(stdout_of(&out).contains("lists a name twice"));
}

/// Unmounts the small file system of a test, whatever happens to the test.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn steps_in_a_layer_do_not_get_roots_reserved_blocks() {
    if !needs_root() {
        return;
    }
    let Some(mkfs) = crate::support::find_on_path("mkfs.ext4") else {
        crate::skip!("needs mkfs.ext4 (apt-get install e2fsprogs)");
    };
    let env = shared_env();
    // The data directory on an ext4 of 64 MiB, a quarter of it reserved for root.
    let image = env.root().join("small.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let made = std::process::Command::new(mkfs)
        .args(["-q", "-F", "-m", "25"])
        .arg(&image)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::create_dir_all(&env.data).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-o", "loop"])
        .arg(&image)
        .arg(&env.data)
        .output()
        .unwrap();
    if !mounted.status.success() {
        crate::skip!(
            "needs loop devices to mount a small file system: {}",
            String::from_utf8_lossy(&mounted.stderr).trim()
        );
    }
    let _unmount = Mounted(env.data.clone());
    let fill = "[0]\nname = \"fill\"\nrun = \"\"\"sh -c 'dd if=/dev/zero of=big bs=1M count=80 \
                2>/dev/null; echo \"wrote $(($(stat -c %s big) >> 20)) MiB\"'\"\"\"\n";
    app(&env, fill, "");
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = stdout_of(&out);
    assert!(workspace_line(&stdout).starts_with("==> workspace: layer"));
    let wrote: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("wrote ")?.strip_suffix(" MiB")?.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    // About 45 MiB are free to every user, 16 more to root: the step stops where a user stops.
    assert!(
        wrote < 48,
        "the step wrote {wrote} MiB into root's reserve: {stdout}"
    );
    assert!(wrote > 20, "{stdout}");
}
