//! `status` (issue 10): queued work is shown; results in colour on a terminal only.

use serde_json::Value;

use crate::support::{TestEnv, wait_for};

/// A step that marks that it started, then waits for `release` to exist.
fn waiting_workflow(env: &TestEnv) -> String {
    format!(
        "[0]\nrun = '''sh -c 'touch {0}/started; while [ ! -e {0}/release ]; do sleep 0.05; done' '''\ntimeout = \"5m\"\n",
        env.root().display()
    )
}

fn status_json(env: &TestEnv) -> Value {
    let out = env.phantom().args(["status", "--json"]).output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn status_line(env: &TestEnv, repo: &str) -> String {
    let out = env.phantom().arg("status").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find(|l| l.starts_with(&format!("{repo} ")))
        .unwrap_or_else(|| panic!("no line for {repo} in {text}"))
        .to_string()
}

/// Issue 10: a commit waiting behind a run in progress did not show in `status`.
#[test]
fn status_shows_the_commit_queued_behind_a_run() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&format!(
        "{}\n[idle]\npath = \"https://example.org/idle.git\"\n",
        env.section("app", &repo, "")
    ));
    env.install_hook(&repo, false);
    repo.workflow("master", &waiting_workflow(&env));
    repo.commit_and_push("first");
    wait_for("the first run to start", || {
        env.root().join("started").exists()
    });
    assert_eq!(status_json(&env)[0]["queued"], Value::Null);
    // Nothing queued anywhere: no QUEUED column.
    assert!(status_line(&env, "app").ends_with("so far"));

    repo.write("more", "1");
    let second = repo.commit_and_push("second");
    let status = status_json(&env);
    assert_eq!(status[0]["last_run"]["result"], "running");
    let queued = &status[0]["queued"];
    assert_eq!(queued["commit"], second.as_str(), "{status}");
    assert_eq!(queued["branch"], "master");
    assert_eq!(queued["trigger"], "hook");
    assert!(queued["queued_at"].is_string());
    let line = status_line(&env, "app");
    assert!(line.contains("running"), "{line}");
    assert!(
        line.ends_with(&format!("queued {}", &second[..7])),
        "{line}"
    );
    let idle = status_line(&env, "idle");
    // `idle master - never ran - - -` and `-` under QUEUED.
    assert_eq!(idle.split_whitespace().count(), 9, "{idle}");
    assert!(idle.ends_with("  -") && !idle.contains("queued"), "{idle}");
    assert_eq!(status_json(&env)[1]["queued"], Value::Null);

    std::fs::write(env.root().join("release"), "").unwrap();
    assert_eq!(env.wait_for_run("app", 2)["commit"], second.as_str());
    assert_eq!(status_json(&env)[0]["queued"], Value::Null);
    assert!(!status_line(&env, "app").contains("queued"));
}
