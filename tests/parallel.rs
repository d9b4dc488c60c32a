//! `max_parallel_runs` (issue 12, SPEC §6): runs of different repos beyond the limit wait their turn,
//! in push order.

use crate::support::{TestEnv, wait_for};

fn with_one_slot_three_repos_pushed_at_once_never_overlap_and_go_in_push_order() {
    let env = TestEnv::new();
    let trace = env.root().join("trace");
    let release = env.root().join("release");
    let names = ["one", "two", "three"];
    let mut toml = String::from("# the whole machine\nmax_parallel_runs = 1\n\n");
    let repos: Vec<_> = names.iter().map(|name| env.repo(name)).collect();
    for (name, repo) in names.iter().zip(&repos) {
        toml.push_str(&env.section(name, repo, ""));
    }
    env.write_repo_toml(&toml);
    for (name, repo) in names.iter().zip(&repos) {
        env.install_hook(repo, false);
        // Each run marks its start and its end in the shared file; in between it waits until the
        // test releases it, so a run that could start alongside it would.
        repo.workflow(
            "master",
            &format!(
                "[0]\nrun = \"sh -c 'echo start {name} >> {t}; while [ ! -e {r} ]; do sleep 0.05; done; echo end {name} >> {t}'\"\n",
                t = trace.display(),
                r = release.display()
            ),
        );
        repo.commit(name);
    }
    // Three pushes, one after the other: three detached workers start at once.
    for repo in &repos {
        assert!(repo.push("master").status.success());
    }
    // The first run goes on; the two others wait for the slot, and `status` says so.
    wait_for("two runs to wait for the slot", || {
        let out = env.phantom().arg("status").assert().success();
        crate::support::stdout_of(&out).contains("2 queued run(s) waiting for a free slot")
    });
    let out = env.phantom().arg("status").assert().success();
    let stdout = crate::support::stdout_of(&out);
    assert!(stdout.contains("QUEUED"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&trace).unwrap(), "start one\n");
    std::fs::write(&release, "").unwrap();
    for name in names {
        assert_eq!(env.wait_for_run(name, 1)["result"], "success", "{name}");
    }
    let trace = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    // Each run ends before the next one starts, and they go in the order they were pushed.
    assert_eq!(
        lines,
        [
            "start one",
            "end one",
            "start two",
            "end two",
            "start three",
            "end three"
        ],
        "runs overlapped or went out of order"
    );
    // Nobody waits any more; no ticket is left behind.
    wait_for("the workers to leave", || {
        std::fs::read_dir(env.data.join("slots/waiting"))
            .unwrap()
            .next()
            .is_none()
    });
}

fn max_parallel_runs_zero_is_a_configuration_error_with_its_line() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&format!(
        "# comment\nmax_parallel_runs = 0\n{}",
        env.section("app", &repo, "")
    ));
    let out = env.phantom().arg("status").assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("Repo.toml` line 2, column 21: `max_parallel_runs` must be at least 1"),
        "{stderr}"
    );
    env.write_repo_toml(&format!(
        "max_parallel_runs = \"two\"\n{}",
        env.section("app", &repo, "")
    ));
    let out = env.phantom().arg("tick").assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("line 1, column 21"), "{stderr}");
    assert!(!env.data.join("runs/app").exists(), "nothing ran");
}

crate::tests! {
    with_one_slot_three_repos_pushed_at_once_never_overlap_and_go_in_push_order,
    max_parallel_runs_zero_is_a_configuration_error_with_its_line,
}
