//! Repo.toml errors (issue #2): exit 2, file, line and column, nothing written.

use predicates::prelude::*;

use crate::support::TestEnv;

#[test]
fn a_malformed_repo_toml_exits_2_and_creates_nothing() {
    let env = TestEnv::new();
    env.write_repo_toml("[app]\npath = \"/srv/git/app.git\"\ntimeout = 5\n");
    env.phantom()
        .args(["run", "app"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Repo.toml` line 3, column 11"));
    assert!(!env.data.exists(), "nothing under the data dir");

    env.write_repo_toml("[app]\npath = \"/srv/git/app.git\"\nsandbox = \"docker\"\n");
    env.phantom()
        .args(["run", "app"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("line 3").and(predicate::str::contains("bwrap")));
    assert!(!env.data.exists());
}

#[test]
fn an_unknown_repo_is_a_usage_error() {
    let env = TestEnv::new();
    env.phantom()
        .args(["run", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no repo `nope`"));
}

#[test]
fn config_and_data_dir_options_win_over_the_environment() {
    let env = TestEnv::new();
    let other = env.root().join("other-config");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("Repo.toml"), "[app]\npath = 1\n").unwrap();
    env.phantom()
        .args(["--config-dir", other.to_str().unwrap(), "run", "app"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("other-config/Repo.toml"));
}
