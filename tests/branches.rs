//! `target_branch` lists and `*` patterns (SPEC §6): each matching branch runs with its own queue
//! slot, its own workflow file and the repo's one series of records; `status` shows a line per branch.

use crate::support::{TestEnv, TestRepo, has_line, stdout_of, wait_for};

/// A step that prints the branch it runs for.
const PRINT_BRANCH: &str = "[0]\nrun = \"printenv PHANTOM_CI_BRANCH\"\n";

fn branches_section(env: &TestEnv, repo: &TestRepo, branches: &str) {
    env.write_repo_toml(&env.section("app", repo, &format!("target_branch = {branches}")));
}

/// The branch of each run of `app`, in run order.
fn run_branches(env: &TestEnv) -> Vec<String> {
    env.runs("app")
        .into_iter()
        .map(|n| {
            env.wait_for_run("app", n)["branch"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn a_push_to_release_1_2_runs_under_a_release_star_section() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    branches_section(&env, &repo, "[\"main\", \"release/*\"]");
    env.install_hook(&repo, true);
    repo.workflow(
        "release/1.2",
        "[0]\nrun = \"echo release-workflow\"\n[1]\nrun = \"printenv PHANTOM_CI_BRANCH\"\n",
    );
    repo.workflow("main", PRINT_BRANCH);
    repo.commit("one");

    let out = repo.push("release/1.2");
    assert!(out.status.success());
    let record = env.run_json("app", 1);
    assert_eq!(record["branch"], "release/1.2");
    assert_eq!(record["result"], "success");
    let log = env.log("app", 1);
    assert!(
        has_line(&log, "release-workflow"),
        "its own workflow file: {log}"
    );
    assert!(has_line(&log, "release/1.2"), "{log}");

    // Neither a branch outside the list nor a name that only starts like a pattern runs.
    // (`release` itself cannot exist next to `release/1.2`.)
    for other in ["feature", "releases/1", "release-1.3", "mainline"] {
        assert!(repo.push(other).status.success());
    }
    assert_eq!(env.runs("app"), [1]);

    // A listed name runs too, under the same records.
    assert!(repo.push("main").status.success());
    assert_eq!(env.run_json("app", 2)["branch"], "main");
    assert!(has_line(&env.log("app", 2), "main"));
}

fn tick_runs_each_matching_branch_once_and_status_shows_a_line_each() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    branches_section(&env, &repo, "[\"main\", \"release/*\"]");
    repo.write("workflow.toml", PRINT_BRANCH);
    repo.commit("one");
    for branch in ["main", "release/1", "release/2/rc", "feature"] {
        assert!(repo.push(branch).status.success());
    }
    env.phantom().arg("tick").assert().success();
    let mut ran = run_branches(&env);
    ran.sort();
    assert_eq!(ran, ["main", "release/1", "release/2/rc"]);

    // Nothing moved: nothing runs again.
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.runs("app").len(), 3);

    // One branch moves: that one runs, once.
    repo.write("more", "x");
    let second = repo.commit("two");
    assert!(repo.push("release/1").status.success());
    env.phantom().arg("tick").assert().success();
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.runs("app").len(), 4);
    let fourth = env.run_json("app", 4);
    assert_eq!(
        (fourth["branch"].as_str(), fourth["commit"].as_str()),
        (Some("release/1"), Some(second.as_str()))
    );

    let out = env.phantom().arg("status").assert().success();
    let stdout = stdout_of(&out);
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("app ")).collect();
    assert_eq!(lines.len(), 3, "a line per branch: {stdout}");
    for (line, (branch, run)) in
        lines
            .iter()
            .zip([("main", "#"), ("release/1", "#4"), ("release/2/rc", "#")])
    {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[1], branch, "{stdout}");
        assert!(cells[2].starts_with(run), "{stdout}");
        assert_eq!(cells[3], "success", "{stdout}");
    }
    let json: serde_json::Value = serde_json::from_str(&stdout_of(
        &env.phantom().args(["status", "--json"]).assert().success(),
    ))
    .unwrap();
    let branches: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["branch"].as_str().unwrap())
        .collect();
    assert_eq!(branches, ["main", "release/1", "release/2/rc"]);
    assert_eq!(json[1]["last_run"]["run"], 4);

    let list: serde_json::Value = serde_json::from_str(&stdout_of(
        &env.phantom().args(["list", "--json"]).assert().success(),
    ))
    .unwrap();
    assert_eq!(list[0]["branch"], "main, release/*");
    assert_eq!(
        list[0]["branches"],
        serde_json::json!(["main", "release/*"])
    );
    assert_eq!(list[0]["cache"], false);
    assert_eq!(list[0]["cache_limit"], 10u64 << 30);
}

fn a_push_of_one_branch_never_replaces_another_branchs_queued_commit() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    branches_section(&env, &repo, "[\"main\", \"release/*\"]");
    let go = env.root().join("go");
    // Run 1 holds the repo until the test lets it go; later commits of both branches queue behind it.
    repo.workflow(
        "main",
        &format!(
            "[0]\nrun = \"sh -c 'touch {0}.started; while [ ! -e {0} ]; do sleep 0.05; done'\"\n",
            go.display()
        ),
    );
    repo.commit("one");
    assert!(repo.push("main").status.success());
    env.install_hook(&repo, false);
    repo.write("x", "1");
    repo.commit("two");
    assert!(repo.push("main").status.success());
    wait_for("run 1 to start", || go.with_extension("started").exists());

    repo.workflow("main", PRINT_BRANCH);
    repo.workflow("release/1.2", PRINT_BRANCH);
    let main = repo.commit("three");
    assert!(repo.push("main").status.success());
    assert!(repo.push("release/1.2").status.success());
    let queued = |name: &str| env.data.join("queue").join(name).exists();
    assert!(queued("app~main.json") && queued("app~release%2F1.2.json"));
    let out = env.phantom().arg("status").assert().success();
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains(&format!("queued {}", &main[..7])),
        "{stdout}"
    );

    std::fs::write(&go, "").unwrap();
    wait_for("both queued commits to run", || env.runs("app").len() == 3);
    let ran = run_branches(&env);
    assert_eq!(ran[0], "main");
    let mut later = ran[1..].to_vec();
    later.sort();
    assert_eq!(later, ["main", "release/1.2"], "neither replaced the other");
    assert_eq!(env.run_json("app", 3)["result"], "success");
}

fn run_takes_the_first_name_or_asks_for_a_branch() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.write("workflow.toml", PRINT_BRANCH);
    repo.commit("one");
    assert!(repo.push("release/1").status.success());
    branches_section(&env, &repo, "[\"release/*\"]");
    let out = env.phantom().args(["run", "app"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("`--branch`") && stderr.contains("release/*"),
        "{stderr}"
    );
    assert!(env.runs("app").is_empty());
    env.phantom()
        .args(["run", "app", "--branch", "release/1"])
        .assert()
        .success();
    assert_eq!(env.run_json("app", 1)["branch"], "release/1");
}

fn a_url_repo_fetches_only_the_branches_it_runs() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.write("workflow.toml", PRINT_BRANCH);
    repo.commit("one");
    for branch in ["master", "release/1", "release/2"] {
        assert!(repo.push(branch).status.success());
    }
    env.write_repo_toml(&format!(
        "[app]\npath = \"file://{}\"\nrun_as = \"{}\"\ntarget_branch = [\"release/*\", \"next\"]\n",
        repo.bare.display(),
        crate::support::current_user()
    ));
    env.phantom().arg("tick").assert().success();
    let mut ran = run_branches(&env);
    ran.sort();
    assert_eq!(ran, ["release/1", "release/2"]);
    let mirror = env.data.join("mirrors/app.git");
    let refs = env.git(&mirror, &["for-each-ref", "--format=%(refname)"]);
    let mut refs: Vec<&str> = refs.lines().collect();
    refs.sort_unstable();
    assert_eq!(refs, ["refs/heads/release/1", "refs/heads/release/2"]);

    // `next` appears on the remote later: the next tick fetches and runs it, and nothing else.
    assert!(repo.push("next").status.success());
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.runs("app").len(), 3);
    assert_eq!(env.run_json("app", 3)["branch"], "next");

    // A pusher deletes `release/2` and pushes `release/2/rc`: the mirror's stale `release/2` would make
    // every later fetch fail ("cannot lock ref"); it is pruned, and the new branch runs.
    env.git(
        &repo.work,
        &["push", "-q", "origin", ":refs/heads/release/2"],
    );
    assert!(repo.push("release/2/rc").status.success());
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.runs("app").len(), 4);
    assert_eq!(env.run_json("app", 4)["branch"], "release/2/rc");
}

fn patterns_that_could_escape_are_refused_with_their_line() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    for (value, says) in [
        ("\"release/**\"", "takes one `*`"),
        ("[\"main\", \"../*\"]", "invalid branch pattern"),
        ("[\"*/../x\"]", "invalid branch pattern"),
        ("[]", "empty list"),
    ] {
        branches_section(&env, &repo, value);
        let out = env.phantom().arg("list").assert().code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains("line 4") && stderr.contains(says),
            "{value}: {stderr}"
        );
    }
}

fn a_push_of_many_matching_branches_queues_a_bounded_number_and_tick_the_rest() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    branches_section(&env, &repo, "\"feature/*\"");
    repo.write("workflow.toml", "[0]\nrun = \"true\"\n");
    let commit = repo.commit("one");
    assert!(repo.push("base").status.success());
    // 70 branches at once, as one push would create them.
    let zeros = "0".repeat(40);
    let mut updates = String::new();
    let mut hook_input = String::new();
    for i in 0..70 {
        updates.push_str(&format!("create refs/heads/feature/{i} {commit}\n"));
        hook_input.push_str(&format!("{zeros} {commit} refs/heads/feature/{i}\n"));
    }
    let mut update_ref = std::process::Command::new("git")
        .args(["update-ref", "--stdin"])
        .current_dir(&repo.bare)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    update_ref
        .stdin
        .take()
        .unwrap()
        .write_all(updates.as_bytes())
        .unwrap();
    assert!(update_ref.wait().unwrap().success());
    let out = env
        .phantom()
        .args(["hook", "--wait"])
        .current_dir(&repo.bare)
        .env("GIT_DIR", &repo.bare)
        .write_stdin(hook_input)
        .assert()
        .success();
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains("70 branches of `app` moved; the first 64 are queued here"),
        "{stdout}"
    );
    assert_eq!(env.runs("app").len(), 64);
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.runs("app").len(), 70, "the rest, once each");
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.runs("app").len(), 70);
}

/// A branch whose name is not UTF-8 (git allows any byte but a few) matches `release/*` but cannot
/// run: the pusher (the hook's stderr) and `tick` say so, naming it escaped; a sibling still runs.
fn a_branch_that_is_not_utf8_is_named_escaped_by_the_hook_and_tick() {
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new();
    let repo = env.repo("app");
    branches_section(&env, &repo, "\"release/*\"");
    env.install_hook(&repo, true);
    repo.write("workflow.toml", "[0]\nrun = \"true\"\n");
    repo.commit("one");
    let refspec = std::ffi::OsStr::from_bytes(b"HEAD:refs/heads/release/\xff\xc3\xa9-x\xc3");
    let out = std::process::Command::new("git")
        .args(["push", "-q", "origin"])
        .arg(refspec)
        .current_dir(&repo.work)
        .env_clear()
        .envs(crate::support::fixed_env(&env.home))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let note = "repo `app`: branch `release/\\xff\u{e9}-x\\xc3` matches `target_branch` but does not \
                run: its name is not UTF-8";
    assert!(stderr.contains(note), "{stderr}");
    assert!(env.runs("app").is_empty());

    assert!(repo.push("release/1").status.success());
    assert_eq!(env.runs("app"), [1]);
    let out = env.phantom().arg("tick").assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!("phantom_ci: note: {note}")),
        "{stderr}"
    );
    assert_eq!(env.runs("app"), [1]);
}

crate::tests! {
    a_branch_that_is_not_utf8_is_named_escaped_by_the_hook_and_tick,
    a_push_to_release_1_2_runs_under_a_release_star_section,
    tick_runs_each_matching_branch_once_and_status_shows_a_line_each,
    a_push_of_one_branch_never_replaces_another_branchs_queued_commit,
    run_takes_the_first_name_or_asks_for_a_branch,
    a_url_repo_fetches_only_the_branches_it_runs,
    patterns_that_could_escape_are_refused_with_their_line,
    a_push_of_many_matching_branches_queues_a_bounded_number_and_tick_the_rest,
}
