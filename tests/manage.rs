//! Repo management and inspection (issue #3): `add`, `remove`, `list`, `status`, `logs`.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use predicates::prelude::*;
use serde_json::Value;

use crate::support::{TestEnv, current_user, wait_for};

const HAND_WRITTEN: &str = "\
# Repositories built on this machine.
#   (edited by hand; keep the comments)

# The web application: production branch only.
[web]   # prod
path   =   \"/srv/git/web.git\"
target_branch='main'
env = { RUSTFLAGS = \"-Dwarnings\" }    # strict builds
timeout = \"20m\"

# ---------------------------------------------------------------

[docs]
path = \"https://example.org/team/docs.git\"
	# tabs and a comment inside the section
keep_runs = 5

[docs.limits]
nofile = 1024
# the end
";

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn add_then_remove_leave_a_hand_written_repo_toml_byte_identical() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(HAND_WRITTEN);
    let file = env.config.join("Repo.toml");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let user = current_user();

    env.phantom()
        .args([
            "add",
            repo.bare.to_str().unwrap(),
            "develop",
            "--run-as",
            &user,
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("added `app`"));
    env.phantom()
        .args([
            "add",
            "git@example.org:team/tool.git",
            "--branch",
            "next",
            "--name",
            "tool2",
        ])
        .assert()
        .success();
    let edited = std::fs::read_to_string(&file).unwrap();
    assert!(
        edited.starts_with(HAND_WRITTEN),
        "the old bytes come first, untouched"
    );
    assert!(edited.contains(&format!(
        "\n\n[app]\npath = \"{}\"\ntarget_branch = \"develop\"\nrun_as = \"{user}\"\n",
        repo.bare.canonicalize().unwrap().display()
    )));
    assert_eq!(mode(&file), 0o640, "the file keeps its permissions");

    let list: Value = serde_json::from_slice(
        &env.phantom()
            .args(["list", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repo"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "docs", "app", "tool2"]);
    assert_eq!(list[3]["path"], "git@example.org:team/tool.git");
    assert_eq!(list[3]["branch"], "next");

    env.phantom().args(["remove", "app"]).assert().success();
    env.phantom().args(["remove", "tool2"]).assert().success();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), HAND_WRITTEN);
    assert_eq!(mode(&file), 0o640);

    // Removing a hand-written section takes its comment and sub-table, and nothing of its neighbours.
    env.phantom().args(["remove", "web"]).assert().success();
    let left = std::fs::read_to_string(&file).unwrap();
    assert!(left.starts_with(
        "# Repositories built on this machine.\n#   (edited by hand; keep the comments)\n\n# ----"
    ));
    assert!(!left.contains("production") && !left.contains("RUSTFLAGS"));
    env.phantom().args(["remove", "docs"]).assert().success();
    let left = std::fs::read_to_string(&file).unwrap();
    assert!(!left.contains('['), "{left}");
    assert!(
        left.contains("# ----"),
        "a comment paragraph of its own stays: {left}"
    );
}

fn add_creates_a_private_repo_toml_and_resolves_relative_paths() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    std::fs::remove_dir(&env.config).unwrap();
    // Relative to the working directory (the test root), and named after the directory.
    env.phantom()
        .args(["add", "git/app.git"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "phantom_ci --config-dir {} --data-dir {} configure hook",
            env.config.display(),
            env.data.display()
        )));
    let file = env.config.join("Repo.toml");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!(
            "[app]\npath = \"{}\"\ntarget_branch = \"master\"\n",
            repo.bare.canonicalize().unwrap().display()
        )
    );
    // The work tree is a repository too; its name would clash.
    env.phantom()
        .args(["add", repo.work.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("repo `app` already exists")
                .and(predicate::str::contains("line 1")),
        );
    env.phantom()
        .args(["add", repo.work.to_str().unwrap(), "--name", "app-src"])
        .assert()
        .success();
    env.phantom()
        .args(["list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("app-src  master").and(predicate::str::contains("REPO")));
}

fn add_refuses_bad_input_and_changes_nothing() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(HAND_WRITTEN);
    let bare = repo.bare.to_str().unwrap();
    let not_a_repo = env.root().join("plain");
    std::fs::create_dir_all(&not_a_repo).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["add", bare, "main", "--branch", "dev"], "given twice"),
        (vec!["add", bare, "a..b"], "invalid branch name"),
        (vec!["add", bare, "--name", "bad.name"], "invalid repo name"),
        (
            vec!["add", bare, "--name", "web"],
            "repo `web` already exists",
        ),
        (
            vec!["add", not_a_repo.to_str().unwrap()],
            "is not a git repository",
        ),
        (
            vec!["add", "/does/not/exist"],
            "`/does/not/exist` does not exist",
        ),
        (
            vec!["add", bare, "--run-as", "no-such-user-here"],
            "no user `no-such-user-here`",
        ),
    ];
    for (args, message) in cases {
        env.phantom()
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message));
        assert_eq!(
            std::fs::read_to_string(env.config.join("Repo.toml")).unwrap(),
            HAND_WRITTEN,
            "{args:?} changed Repo.toml"
        );
    }
    // The same branch given both ways is fine.
    env.phantom()
        .args(["add", bare, "main", "--branch", "main"])
        .assert()
        .success();
}

fn remove_refuses_unknown_names_and_invalid_files() {
    let env = TestEnv::new();
    env.write_repo_toml(HAND_WRITTEN);
    env.phantom()
        .args(["remove", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no repo `nope`"));
    env.write_repo_toml("[a]\npath = \"/x\"\nbogus = 1\n");
    env.phantom()
        .args(["remove", "a"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Repo.toml` line 3, column 1"));
    env.phantom()
        .args(["add", "https://example.org/x.git"])
        .assert()
        .code(2);
    assert_eq!(
        std::fs::read_to_string(env.config.join("Repo.toml")).unwrap(),
        "[a]\npath = \"/x\"\nbogus = 1\n"
    );
}

fn list_json_has_every_setting() {
    let env = TestEnv::new();
    env.write_repo_toml(
        "[app]\npath = \"/srv/git/app.git\"\nrun_as = \"ci\"\ntimeout = \"90m\"\nlog_limit = \"1MiB\"\n\
         env = { B = \"2\", A = \"1\" }\nlimits = { cpu = \"30m\", fsize = \"1KiB\" }\n",
    );
    let out = env.phantom().args(["list", "--json"]).output().unwrap();
    assert!(out.status.success());
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let app = &list[0];
    assert_eq!(app["repo"], "app");
    assert_eq!(app["path"], "/srv/git/app.git");
    assert_eq!(app["branch"], "master");
    assert_eq!(app["run_as"], "ci");
    assert_eq!(app["timeout"], "1h 30m");
    assert_eq!(app["log_limit"], 1 << 20);
    assert_eq!(app["env"], serde_json::json!({"A": "1", "B": "2"}));
    assert_eq!(app["limits"]["cpu"], "30m");
    assert_eq!(app["limits"]["fsize"], 1024);
    assert_eq!(app["sandbox"], "none");
    assert_eq!(app["keep_workspace"], "never");
    assert_eq!(app["keep_failed"], "30m");
    assert_eq!(app["keep_runs"], 100);
    assert_eq!(app["notify"], "always");
    assert_eq!(app["workflow"], Value::Null);

    let empty = TestEnv::new();
    empty
        .phantom()
        .args(["list", "--json"])
        .assert()
        .success()
        .stdout("[]\n");
}

fn status_shows_each_repo_and_its_last_run() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"echo hello\"\n");
    let commit = repo.commit_and_push("one");
    env.write_repo_toml(&format!(
        "{}\n[idle]\npath = \"https://example.org/idle.git\"\ntarget_branch = \"main\"\n",
        env.section("app", &repo, "")
    ));
    env.phantom().args(["run", "app"]).assert().success();
    env.phantom().args(["run", "app"]).assert().success();

    let out = env.phantom().args(["status", "--json"]).output().unwrap();
    assert!(out.status.success());
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status.as_array().unwrap().len(), 2);
    assert_eq!(status[0]["repo"], "app");
    assert_eq!(status[0]["branch"], "master");
    assert_eq!(status[0]["path"], repo.bare.to_str().unwrap());
    assert_eq!(
        status[0]["last_run"],
        env.run_json("app", 2),
        "last_run is run.json"
    );
    assert_eq!(status[1]["repo"], "idle");
    assert_eq!(status[1]["branch"], "main");
    assert_eq!(status[1]["last_run"], Value::Null);

    let out = env.phantom().args(["status"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let app_line = text.lines().find(|l| l.starts_with("app ")).unwrap();
    for cell in ["master", "#2", "success", &commit[..7], "ago"] {
        assert!(app_line.contains(cell), "{cell} in {app_line:?}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("idle ") && l.contains("never ran"))
    );
}

fn logs_prints_the_newest_or_a_given_run() {
    let env = TestEnv::new();
    let (repo, _) = env.app("[0]\nrun = \"echo first-commit\"\n", "");
    env.phantom().args(["run", "app"]).assert().success();
    repo.workflow("master", "[0]\nrun = \"echo second-commit\"\n");
    repo.commit_and_push("two");
    env.phantom().args(["run", "app"]).assert().success();

    env.phantom()
        .args(["logs", "app"])
        .assert()
        .success()
        .stdout(env.log("app", 2));
    env.phantom()
        .args(["logs", "app", "1"])
        .assert()
        .success()
        .stdout(env.log("app", 1));
    assert!(env.log("app", 1).contains("\nfirst-commit\n"));
    env.phantom()
        .args(["logs", "app", "9"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no run #9").and(predicate::str::contains("#1 to #2")));
    env.phantom()
        .args(["logs", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no runs of `nope`"));
    env.phantom()
        .args(["logs", "../app"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid repo name"));
}

fn logs_follow_streams_a_running_run_until_it_ends() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let flag = env.root().join("go-on");
    repo.workflow(
        "master",
        &format!(
            "[0]\nrun = \"echo before-the-wait\"\n[1]\nrun = \"sh -c 'while [ ! -e {} ]; do sleep 0.05; done'\"\n\
             [2]\nrun = \"echo after-the-wait\"\n",
            flag.display()
        ),
    );
    repo.commit_and_push("slow");
    env.write_repo_toml(&env.section("app", &repo, ""));
    let mut run = env.spawn_run("app");
    wait_for("run #1 to start", || {
        env.data.join("runs/app/1/log").exists() && env.log("app", 1).contains("before-the-wait")
    });

    let mut follow = env
        .phantom_std()
        .args(["logs", "app", "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut chunk = [0; 4096];
        // Read until the first step's line arrives, then hand back what came so far and the pipe.
        while !String::from_utf8_lossy(&seen).contains("before-the-wait\n") {
            let n = stdout.read(&mut chunk).unwrap();
            assert!(
                n > 0,
                "follow ended early: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&chunk[..n]);
        }
        (seen, stdout)
    });
    let (mut seen, mut stdout) = reader.join().unwrap();
    assert_eq!(
        env.run_json("app", 1)["result"],
        "running",
        "streamed while running"
    );
    assert!(follow.try_wait().unwrap().is_none(), "still following");

    std::fs::write(&flag, "").unwrap();
    stdout.read_to_end(&mut seen).unwrap();
    assert!(follow.wait().unwrap().success(), "a successful run exits 0");
    assert!(run.wait().unwrap().success());
    assert_eq!(String::from_utf8(seen).unwrap(), env.log("app", 1));
    assert!(env.log("app", 1).contains("after-the-wait"));

    // A finished run is printed whole; a failed one exits 1.
    repo.workflow("master", "[0]\nrun = \"false\"\n");
    repo.commit_and_push("fails");
    env.phantom().args(["run", "app"]).assert().code(1);
    env.phantom()
        .args(["logs", "app", "--follow"])
        .assert()
        .code(1)
        .stdout(env.log("app", 2));
    env.phantom()
        .args(["logs", "app", "1", "-f"])
        .assert()
        .success();
}

crate::tests! {
    add_then_remove_leave_a_hand_written_repo_toml_byte_identical,
    add_creates_a_private_repo_toml_and_resolves_relative_paths,
    add_refuses_bad_input_and_changes_nothing,
    remove_refuses_unknown_names_and_invalid_files,
    list_json_has_every_setting,
    status_shows_each_repo_and_its_last_run,
    logs_prints_the_newest_or_a_given_run,
    logs_follow_streams_a_running_run_until_it_ends,
}
