//! The examples (issue #2): `examples/Repo.toml` parses with every key, the example workflows pass
//! `check` and run to success, `examples/demo.sh` works, and phantom_ci's own `workflow/main.toml` is valid.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use predicates::prelude::*;

use crate::support::{TestEnv, current_user};

/// Every key of a repo section (SPEC §2.1, §6).
const REPO_TOML_KEYS: [&str; 23] = [
    "path",
    "target_branch",
    "run_as",
    "sandbox",
    "network",
    "timeout",
    "env",
    "pass_env",
    "keep_workspace",
    "keep_failed",
    "keep_runs",
    "notify",
    "require_signed",
    "allowed_signers",
    "workflow",
    "sandbox_root",
    "limits",
    "log_limit",
    "checkout_limit",
    "cache",
    "cache_limit",
    "parallel_steps",
    "artifact_files",
];

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = project().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Copies a directory tree (regular files keep their permission bits).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn example_repo_toml_parses_and_shows_every_key() {
    let text = read("examples/Repo.toml");
    let config = phantom_ci::config::Config::parse(Path::new("examples/Repo.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = config.repos.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["app", "app-release"]);

    let table: toml::Table = toml::from_str(&text).unwrap();
    let shown: BTreeSet<&str> = table
        .values()
        .filter_map(|section| section.as_table())
        .flat_map(|section| section.keys())
        .map(String::as_str)
        .collect();
    let spec: BTreeSet<&str> = REPO_TOML_KEYS.into_iter().collect();
    assert_eq!(
        shown, spec,
        "examples/Repo.toml shows exactly SPEC §2.1's keys"
    );

    let app = config.get("app").unwrap();
    assert_eq!(app.branches.single(), Some("main"));
    assert_eq!(app.limits.nofile, Some(1024));
    assert_eq!(app.log_limit, 16 << 20);
    assert!(app.cache);
    assert_eq!(config.max_parallel_runs, Some(2));
    assert_eq!(config.max_parallel_steps, Some(4));
    assert_eq!(app.parallel_steps, Some(2));
    let release = config.get("app-release").unwrap();
    assert!(release.branches.matches("release/1.x") && release.branches.matches("hotfix"));
}

/// `examples/Repo.toml` as an operator would adapt it: its paths pointing at a real repository and at
/// `examples/workflow.toml` as the trusted workflow, its user the current one.
fn adapted_repo_toml(bare: &Path) -> String {
    read("examples/Repo.toml")
        .replace("/srv/git/app.git", bare.to_str().unwrap())
        .replace(
            "/etc/phantom_ci/app.toml",
            project().join("examples/workflow.toml").to_str().unwrap(),
        )
        .replace(
            "run_as = \"ci\"",
            &format!("run_as = \"{}\"", current_user()),
        )
}

fn example_repo_toml_runs_the_example_workflow() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.write("README", "an application\n");
    repo.commit("first");
    repo.write("README", "an application, improved\n");
    let commit = repo.commit("second");
    let pushed = repo.push("main");
    assert!(pushed.status.success());
    env.write_repo_toml(&adapted_repo_toml(&repo.bare));

    let out = env.phantom().args(["run", "app"]).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    // Shell words: quotes and backslashes, nothing expanded.
    assert!(
        stdout.contains("\n$HOME two  spaces double quoted back slash *.toml\n"),
        "{stdout}"
    );
    // An explicit shell expands.
    assert!(stdout.contains("\nhome is /"), "{stdout}");
    // `env` from the Repo.toml reaches the step.
    assert!(stdout.contains("\nRUSTFLAGS=-Dwarnings\n"), "{stdout}");

    let record = env.run_json("app", 1);
    assert_eq!(record["result"], "success", "{record}");
    assert_eq!(record["branch"], "main");
    assert_eq!(record["commit"], commit.as_str());
    let steps = record["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 7);
    assert!(
        stdout.contains("the run so far: done; cache: /"),
        "the always step, with the cache: {stdout}"
    );
    assert!(steps.iter().all(|s| s["result"] == "success"), "{record}");
    let kept = env.data.join("runs/app/1/artifacts/recent-commits.txt");
    let recent = std::fs::read_to_string(&kept).unwrap();
    assert_eq!(recent.lines().count(), 2, "history reachable: {recent}");
    assert!(recent.contains("second") && recent.contains("first"));
    assert!(
        !env.data.join("work/app/1").exists(),
        "a success keeps no workspace"
    );
}

fn example_release_section_rejects_an_unsigned_commit() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("release/1.x", "[0]\nrun = \"touch ran\"\n");
    repo.commit("release");
    assert!(repo.push("release/1.x").status.success());
    let signers = env.root().join("allowed_signers");
    std::fs::write(&signers, "").unwrap();
    env.write_repo_toml(
        &adapted_repo_toml(&repo.bare)
            .replace("/etc/phantom_ci/allowed_signers", signers.to_str().unwrap()),
    );

    env.phantom()
        .args(["run", "app-release", "--branch", "release/1.x"])
        .assert()
        .code(1);
    let record = env.run_json("app-release", 1);
    assert_eq!(record["result"], "rejected", "{record}");
    assert_eq!(record["steps"].as_array().unwrap().len(), 0, "no step ran");
}

fn example_workflows_pass_check() {
    let env = TestEnv::new();
    for (file, steps) in [
        ("examples/workflow.toml", 7),
        ("examples/hello/workflow/master.toml", 4),
        ("examples/graph/workflow/master.toml", 10),
        ("workflow/main.toml", 3),
    ] {
        env.phantom()
            .args(["check", project().join(file).to_str().unwrap()])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!("{steps} steps\n")));
    }
}

fn the_hello_example_runs_to_success() {
    let env = TestEnv::new();
    let repo = env.repo("hello");
    copy_dir(&project().join("examples/hello"), &repo.work);
    let commit = repo.commit_and_push("hello: a greeting and its tests");
    env.write_repo_toml(&env.section("hello", &repo, ""));

    env.phantom()
        .args(["run", "hello"])
        .assert()
        .success()
        .stdout(predicate::str::contains("all tests passed"));
    let record = env.run_json("hello", 1);
    assert_eq!(record["result"], "success", "{record}");
    let names: Vec<&str> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["result"], "success", "{s}");
            s["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, ["commit", "syntax", "test", "artifact"]);
    assert!(env.log("hello", 1).contains(&format!(
        "{} hello: a greeting and its tests\n",
        &commit[..7]
    )));
    let greeting = env.data.join("runs/hello/1/artifacts/greeting.txt");
    assert_eq!(
        std::fs::read_to_string(greeting).unwrap(),
        "Hello, phantom_ci!\n"
    );
}

fn the_graph_example_runs_to_success() {
    let env = TestEnv::new();
    let repo = env.repo("graph");
    copy_dir(&project().join("examples/graph"), &repo.work);
    repo.commit_and_push("graph: steps side by side");
    env.write_repo_toml(&format!(
        "max_parallel_steps = 4\n{}",
        env.section("graph", &repo, "parallel_steps = 4")
    ));
    env.phantom()
        .args(["run", "graph"])
        .assert()
        .success()
        .stdout(predicate::str::contains("[1] hello from step 1 (build)\n"))
        .stdout(predicate::str::contains(
            "[3.2] cross-building for riscv64 with -O0 (step 3.2, CROSS=1)\n",
        ));
    let record = env.run_json("graph", 1);
    assert_eq!(record["result"], "success", "{record}");
    let ids: Vec<String> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let id = match s["instance"].as_u64() {
                Some(k) => format!("{}.{k}", s["index"]),
                None => s["index"].to_string(),
            };
            let expected = if id == "4" { "failure" } else { "success" };
            assert_eq!(s["result"], expected, "{s}");
            id
        })
        .collect();
    assert_eq!(
        ids,
        ["0", "1", "2", "3.0", "3.1", "3.2", "3.3", "4", "5", "6"]
    );
    assert_eq!(record["steps"][7]["allow_failure"], true);
    let package = env.data.join("runs/graph/1/artifacts/package.txt");
    assert_eq!(
        std::fs::read_to_string(package).unwrap().lines().count(),
        5,
        "the build's file and the four cross files"
    );
}

fn the_hello_example_test_fails_when_the_program_is_broken() {
    // The example's test suite can fail: otherwise the run above would prove nothing.
    let env = TestEnv::new();
    let repo = env.repo("hello");
    copy_dir(&project().join("examples/hello"), &repo.work);
    let script = repo.work.join("hello.sh");
    let broken = std::fs::read_to_string(&script)
        .unwrap()
        .replace("Hello, %s!", "Goodbye, %s!");
    std::fs::write(&script, broken).unwrap();
    repo.commit_and_push("break it");
    env.write_repo_toml(&env.section("hello", &repo, ""));

    env.phantom().args(["run", "hello"]).assert().code(1);
    let record = env.run_json("hello", 1);
    assert_eq!(record["result"], "failure");
    assert_eq!(record["steps"][2]["name"], "test");
    assert_eq!(record["steps"][2]["exit_code"], 1);
    assert_eq!(record["steps"][3]["result"], "skipped");
}

fn demo_script_runs_the_hello_example_in_its_own_temp_dir() {
    let env = TestEnv::new();
    let tmp = env.root().join("tmp");
    let elsewhere = env.root().join("elsewhere");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let output = Command::new("bash")
        .arg(project().join("examples/demo.sh"))
        .current_dir(&elsewhere)
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("HOME", &env.home)
        .env("TMPDIR", &tmp)
        .env(
            "PHANTOM_CI_BIN",
            assert_cmd::cargo::cargo_bin!("phantom_ci"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("==> hello #1 success"), "{stdout}");

    let made: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(made.len(), 1, "one temp dir: {made:?}");
    let demo = &made[0];
    assert!(
        stdout.contains(&format!("rm -rf {}", demo.display())),
        "{stdout}"
    );
    let record = demo.join("data/runs/hello/1/run.json");
    assert!(stdout.contains(&record.display().to_string()), "{stdout}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(record["result"], "success");
    assert!(
        demo.join("data/runs/hello/1/artifacts/greeting.txt")
            .is_file()
    );
    // The closing hint works as written, for someone with no git identity of their own: edit and
    // commit in the clone, push, run again.
    let src = demo.join("src/hello");
    std::fs::write(src.join("NOTE"), "changed\n").unwrap();
    let as_you = |program: &str, args: &[&str]| {
        let out = Command::new(program)
            .args(args)
            .current_dir(&src)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env("HOME", &env.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("PHANTOM_CI_CONFIG_DIR", demo.join("config"))
            .env("PHANTOM_CI_DATA_DIR", demo.join("data"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    as_you("git", &["add", "NOTE"]);
    as_you("git", &["commit", "-q", "-m", "a change"]);
    as_you("git", &["push", "-q", "origin", "master"]);
    let bin = assert_cmd::cargo::cargo_bin!("phantom_ci");
    as_you(bin.to_str().unwrap(), &["run", "hello"]);
    assert!(demo.join("data/runs/hello/2/run.json").is_file());
    assert_eq!(
        std::fs::read_dir(&env.home).unwrap().count(),
        0,
        "nothing written to HOME"
    );
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing written to the current directory"
    );
}

fn phantom_ci_accepts_its_own_workflow() {
    let env = TestEnv::new();
    // The same file committed to a repository, checked the way `check .` checks one.
    let repo = env.repo("phantom_ci");
    repo.write("workflow/main.toml", &read("workflow/main.toml"));
    repo.commit("own ci");
    env.phantom()
        .args(["check", repo.work.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "workflow/main.toml: 3 steps\n  [0] fmt: cargo fmt --check\n",
        ));

    // And `phantom_ci check .` in this repository itself, when the tests run from a git checkout (a
    // source tarball has no history to read the committed workflow from).
    if project().join(".git").exists() {
        env.phantom()
            .arg("check")
            .arg(".")
            .current_dir(project())
            .assert()
            .success()
            .stdout(predicate::str::contains("workflow/main.toml: 3 steps"));
    } else {
        eprintln!("not a git checkout: `phantom_ci check .` skipped");
    }
}

crate::tests! {
    example_repo_toml_parses_and_shows_every_key,
    example_repo_toml_runs_the_example_workflow,
    example_release_section_rejects_an_unsigned_commit,
    example_workflows_pass_check,
    the_hello_example_runs_to_success,
    the_graph_example_runs_to_success,
    the_hello_example_test_fails_when_the_program_is_broken,
    demo_script_runs_the_hello_example_in_its_own_temp_dir,
    phantom_ci_accepts_its_own_workflow,
}
