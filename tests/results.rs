//! Where results show (SPEC §9, issue 21): the report per branch and its badges, `report_url` in posts
//! and `status --long`, results in `refs/notes/ci` of the repository, and the report folder pruned
//! with the records.

use std::path::Path;

use crate::support::http::Server;
use crate::support::{TestEnv, TestRepo};

const PASSING: &str = "[0]\nrun = \"echo fine\"\n";
const FAILING: &str = "[0]\nrun = \"sh -c 'echo broken; exit 3'\"\n";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The word a badge shows.
fn badge_word(path: &Path) -> String {
    let svg = read(path);
    let start = svg.find("<title>phantom_ci: ").unwrap() + "<title>phantom_ci: ".len();
    svg[start..start + svg[start..].find('<').unwrap()].to_string()
}

fn dotenv(env: &TestEnv, lines: &[String]) {
    std::fs::write(env.config.join(".env"), lines.join("\n") + "\n").unwrap();
}

fn two_branches_have_two_badges_and_the_repo_badge_follows_the_main_line() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", FAILING)
        .workflow("develop", PASSING)
        .workflow("release/1.2", PASSING);
    repo.commit("both");
    for branch in ["master", "develop", "release/1.2"] {
        assert!(repo.push(branch).status.success());
    }
    env.write_repo_toml(&env.section(
        "app",
        &repo,
        "target_branch = [\"release/*\", \"master\", \"develop\"]",
    ));
    let site = env.root().join("site");
    dotenv(&env, &[format!("PHANTOM_CI_REPORT_DIR={}", site.display())]);
    // master fails (#1), then develop (#2) and release/1.2 (#3) succeed: the newest runs pass.
    env.phantom()
        .args(["run", "app", "--branch", "master"])
        .assert()
        .code(1);
    for branch in ["develop", "release/1.2"] {
        env.phantom()
            .args(["run", "app", "--branch", branch])
            .assert()
            .success();
    }
    // The refresh after each run, and a whole `report` elsewhere, say the same.
    let whole = env.root().join("whole");
    env.phantom().arg("report").arg(&whole).assert().success();
    for site in [&site, &whole] {
        assert_eq!(badge_word(&site.join("badge/app/master.svg")), "failure");
        assert_eq!(badge_word(&site.join("badge/app/develop.svg")), "success");
        // `/` is `~`: a URL takes the name as it is.
        assert_eq!(
            badge_word(&site.join("badge/app/release~1.2.svg")),
            "success"
        );
        // The first entry that is not a pattern is `master`: its failure, not the newest success.
        assert_eq!(badge_word(&site.join("badge/app.svg")), "failure");
        let index = read(&site.join("index.html"));
        for branch in ["master", "develop", "release/1.2"] {
            assert!(
                index.contains(&format!("<code class=\"branch-name\">{branch}</code>")),
                "{branch}: {index}"
            );
        }
        assert!(
            index.contains("src=\"badge/app/release~1.2.svg\""),
            "{index}"
        );
        // The main line first, whatever ran last.
        assert!(
            index.find(">master</code>").unwrap() < index.find(">release/1.2</code>").unwrap(),
            "{index}"
        );
    }
}

fn the_generic_webhook_and_chat_posts_link_the_run_page() {
    let env = TestEnv::new();
    let server = Server::accepting();
    let (_repo, _) = env.app(PASSING, "");
    let toml = read(&env.config.join("Repo.toml"));
    env.write_repo_toml(&format!(
        "report_url = \"https://ci.example.org/reports/\"\n{toml}"
    ));
    dotenv(
        &env,
        &[
            format!("WEBHOOK_URL={}", server.url("/generic")),
            format!("SLACK_WEBHOOK_URL={}", server.url("/slack")),
        ],
    );
    env.phantom().args(["run", "app"]).assert().success();
    let generic = server.requests_to("/generic");
    assert_eq!(generic.len(), 1);
    let json = generic[0].json();
    assert_eq!(json["url"], "https://ci.example.org/reports/app/1.html");
    assert_eq!(json["run"], 1);
    let slack = server.requests_to("/slack");
    let text = slack[0].json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("<https://ci.example.org/reports/app/1.html|the run's page>"),
        "{text}"
    );
    let out = env.phantom().args(["status", "--long"]).assert().success();
    let stdout = crate::support::stdout_of(&out);
    for line in [
        "badge of app: https://ci.example.org/reports/badge/app.svg",
        "badge of app master: https://ci.example.org/reports/badge/app/master.svg",
        "page of app #1: https://ci.example.org/reports/app/1.html",
    ] {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }
}

/// `git log --notes=ci -1 <commit>` in a fresh clone of `repo`'s bare repository that fetches the
/// notes as a developer would.
fn notes_in_a_clone(env: &TestEnv, repo: &TestRepo, name: &str, commit: &str) -> String {
    let clone = env.root().join(name);
    env.git(
        env.root(),
        &["clone", "-q", repo.bare.to_str().unwrap(), name],
    );
    env.git(
        &clone,
        &[
            "config",
            "--add",
            "remote.origin.fetch",
            "+refs/notes/ci:refs/notes/ci",
        ],
    );
    env.git(&clone, &["fetch", "-q"]);
    env.git(&clone, &["log", "--notes=ci", "-1", commit])
}

fn notes_lines(env: &TestEnv, repo: &TestRepo, commit: &str) -> Vec<String> {
    let note = env.git(
        &repo.bare,
        &[
            "-c",
            "safe.directory=*",
            "notes",
            "--ref=ci",
            "show",
            commit,
        ],
    );
    note.lines().map(str::to_string).collect()
}

fn each_result_is_appended_to_the_commit_note() {
    let env = TestEnv::new();
    let (repo, commit) = env.app(PASSING, "notes = true");
    let out = env.phantom().args(["list", "--json"]).assert().success();
    let list: serde_json::Value = serde_json::from_str(&crate::support::stdout_of(&out)).unwrap();
    assert_eq!(list[0]["notes"], true);
    // Programs the repository's configuration names, which writing a note must never start.
    let marker = env.root().join("program-ran");
    let program = env.root().join("program");
    std::fs::write(
        &program,
        format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (key, value) in [
        ("commit.gpgSign", "true"),
        ("gpg.program", program.to_str().unwrap()),
        ("core.fsmonitor", program.to_str().unwrap()),
    ] {
        env.git(&repo.bare, &["config", key, value]);
    }
    env.phantom().args(["run", "app"]).assert().success();
    assert!(
        !marker.exists(),
        "writing a note ran a program of the repository's configuration"
    );
    let log = notes_in_a_clone(&env, &repo, "first", &commit);
    assert!(log.contains("Notes (ci):"), "{log}");
    assert!(log.contains("phantom_ci #1 master success"), "{log}");
    // The same commit again: a second line.
    env.phantom().args(["run", "app"]).assert().success();
    let lines = notes_lines(&env, &repo, &commit);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("phantom_ci #1 master success "));
    assert!(lines[1].starts_with("phantom_ci #2 master success "));
    let log = notes_in_a_clone(&env, &repo, "second", &commit);
    assert!(log.contains("phantom_ci #2 master success"), "{log}");
    assert!(!marker.exists());
}

/// SPEC §9, "each final result": a run that died and was recorded `aborted` by the next invocation
/// gets its note, its report page and its webhook like any other — from `tick`, and from a run that
/// recovers it before its own (the dead run's note line first).
fn a_run_recorded_aborted_after_it_died_gets_its_note_page_and_webhook() {
    let env = TestEnv::new();
    let started = env.root().join("started");
    let hang = env.root().join("hang");
    let (repo, commit) = env.app(
        &format!(
            "[0]\nrun = '''sh -c 'if [ -e {} ]; then touch {}; sleep 1038; fi' '''\n",
            hang.display(),
            started.display()
        ),
        "notes = true",
    );
    let server = Server::accepting();
    let site = env.root().join("site");
    dotenv(
        &env,
        &[
            format!("WEBHOOK_URL={}", server.url("/hook")),
            format!("PHANTOM_CI_REPORT_DIR={}", site.display()),
        ],
    );
    env.phantom().arg("tick").assert().success();
    let kill_a_run = || {
        std::fs::write(&hang, "").unwrap();
        let _ = std::fs::remove_file(&started);
        let run = env.spawn_run("app");
        crate::support::wait_for("the step to start", || started.exists());
        env.end_run_by(run, nix::sys::signal::Signal::SIGKILL);
        std::fs::remove_file(&hang).unwrap();
    };
    kill_a_run();
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.run_json("app", 2)["result"], "aborted");
    // The report's page of the run and the webhook say so at once, not at the repo's next run.
    let page = read(&site.join("app/2.html"));
    assert!(
        page.contains("<span class=\"result aborted\">aborted</span>")
            && !page.contains("<span class=\"result running\">"),
        "{page}"
    );
    let posted: Vec<(u64, String)> = server
        .requests_to("/hook")
        .iter()
        .map(|r| {
            (
                r.json()["run"].as_u64().unwrap_or(0),
                r.json()["result"].to_string(),
            )
        })
        .collect();
    assert!(
        posted.contains(&(2, "\"aborted\"".to_string())),
        "{posted:?}"
    );
    kill_a_run();
    env.phantom().args(["run", "app"]).assert().success();
    assert_eq!(env.run_json("app", 3)["result"], "aborted");
    let lines = notes_lines(&env, &repo, &commit);
    let results: Vec<&str> = lines
        .iter()
        .map(|line| line.split(' ').nth(3).unwrap_or_default())
        .collect();
    assert_eq!(
        results,
        ["success", "aborted", "aborted", "success"],
        "{lines:?}"
    );
    for (line, start) in lines[1..].iter().zip([
        "phantom_ci #2 master aborted ",
        "phantom_ci #3 master aborted ",
        "phantom_ci #4 master success ",
    ]) {
        assert!(line.starts_with(start), "{lines:?}");
    }
}

fn runs_of_one_commit_ending_together_lose_no_note() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    // Each run waits until all have started, so that they end together.
    let gate = env.root().join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    repo.workflow(
        "master",
        &format!(
            "[0]\nrun = \"sh -c 'touch {gate}/$PHANTOM_CI_REPO; while [ $(ls {gate} | wc -l) -lt 4 ]; do sleep 0.05; done'\"\n",
            gate = gate.display()
        ),
    );
    let commit = repo.commit_and_push("together");
    // A hook that must never run, in the repository phantom_ci writes notes to.
    let hook = repo.bare.join("hooks/reference-transaction");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ntouch {}\n",
            env.root().join("hook-ran").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut toml = String::from("max_parallel_runs = 4\n");
    for name in ["a1", "a2", "a3", "a4"] {
        toml.push_str(&env.section(name, &repo, "notes = true"));
    }
    env.write_repo_toml(&toml);
    let runs: Vec<_> = ["a1", "a2", "a3", "a4"]
        .iter()
        .map(|name| env.spawn_run(name))
        .collect();
    for mut run in runs {
        assert!(run.wait().unwrap().success());
    }
    let lines = notes_lines(&env, &repo, &commit);
    assert_eq!(lines.len(), 4, "{lines:?}");
    for name in ["a1", "a2", "a3", "a4"] {
        assert!(env.log(name, 1).lines().all(|l| !l.contains("no note")));
    }
    assert!(
        !env.root().join("hook-ran").exists(),
        "writing a note ran a hook"
    );
}

fn a_repository_phantom_ci_may_not_write_runs_green_with_one_line_in_its_log() {
    if !crate::support::needs_root() {
        return;
    }
    let env = TestEnv::shared();
    let (repo, _) = env.app(PASSING, "notes = true");
    // Owned by `nobody` and read-only to them: the note's writer (as `nobody`) cannot write.
    give_to(&repo.bare, "65534:65534");
    let status = std::process::Command::new("chmod")
        .args(["-R", "a-w"])
        .arg(&repo.bare)
        .status()
        .unwrap();
    assert!(status.success());
    let out = env.phantom().args(["run", "app"]).assert().success();
    let log = env.log("app", 1);
    let said: Vec<&str> = log.lines().filter(|l| l.contains("no note")).collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(said[0].contains("refs/notes/ci"), "{log}");
    assert_eq!(env.run_json("app", 1)["result"], "success");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("no note"), "{stderr}");
    let refs = env.git(
        &repo.bare,
        &["-c", "safe.directory=*", "for-each-ref", "refs/notes"],
    );
    assert!(refs.is_empty(), "{refs}");
    // Nothing in the repository belongs to root.
    let root_owned = std::process::Command::new("find")
        .arg(&repo.bare)
        .args(["-uid", "0"])
        .output()
        .unwrap();
    assert!(root_owned.stdout.is_empty(), "{root_owned:?}");
}

fn notes_are_written_as_the_owner_of_the_repository() {
    if !crate::support::needs_root() {
        return;
    }
    let env = TestEnv::shared();
    let (repo, commit) = env.app(PASSING, "notes = true");
    give_to(&repo.bare, "65534:65534");
    env.phantom().args(["run", "app"]).assert().success();
    assert!(!env.log("app", 1).contains("no note"));
    let lines = notes_lines(&env, &repo, &commit);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let root_owned = std::process::Command::new("find")
        .arg(&repo.bare)
        .args(["-uid", "0"])
        .output()
        .unwrap();
    assert!(
        root_owned.stdout.is_empty(),
        "root-owned files in the repository: {}",
        String::from_utf8_lossy(&root_owned.stdout)
    );
}

/// A pushers' repository git would read as root: shared through its group, its `config` names a
/// clean filter and `info/attributes` applies it to every file. phantom_ci (root) writes no note
/// there — the filter never runs as root — and says why; given to an unprivileged owner, the note is
/// written as that owner with no filter run either.
/// `chown -R owner path`.
fn give_to(path: &std::path::Path, owner: &str) {
    let status = std::process::Command::new("chown")
        .args(["-R", owner])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn notes_never_run_a_pushers_git_configuration() {
    use std::os::unix::fs::PermissionsExt;
    if !crate::support::needs_root() {
        return;
    }
    let env = TestEnv::new();
    let (repo, commit) = env.app(PASSING, "notes = true");
    let open = env.root().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let marker = open.join("filter-ran");
    env.git(
        &repo.bare,
        &[
            "config",
            "filter.ci.clean",
            &format!("sh -c 'id > {}; cat'", marker.display()),
        ],
    );
    std::fs::create_dir_all(repo.bare.join("info")).unwrap();
    std::fs::write(repo.bare.join("info/attributes"), "* filter=ci\n").unwrap();
    // `git init --shared=group`: the directory and its `config` are the group's to write.
    std::fs::set_permissions(&repo.bare, std::fs::Permissions::from_mode(0o2775)).unwrap();
    std::fs::set_permissions(
        repo.bare.join("config"),
        std::fs::Permissions::from_mode(0o664),
    )
    .unwrap();
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(!marker.exists(), "the pushers' filter ran as root");
    let log = env.log("app", 1);
    assert!(log.contains("belongs to root, but"), "{log}");
    assert!(stderr.contains("notes = true"), "{stderr}");
    let notes = std::process::Command::new("git")
        .args(["--git-dir"])
        .arg(&repo.bare)
        .args(["rev-parse", "-q", "--verify", "refs/notes/ci"])
        .output()
        .unwrap();
    assert!(!notes.status.success(), "a note was written as root");

    // Its directory and `config` root's alone, but `refs` its group's (where a directory swapped for a
    // link would have root write elsewhere): refused all the same, naming it.
    std::fs::set_permissions(&repo.bare, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        repo.bare.join("config"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(
        repo.bare.join("refs"),
        std::fs::Permissions::from_mode(0o2775),
    )
    .unwrap();
    env.phantom().args(["run", "app"]).assert().success();
    let log = env.log("app", 2);
    assert!(
        log.contains(&format!(
            "but `{}` is not root's",
            repo.bare.join("refs").display()
        )),
        "{log}"
    );

    // Its own (unprivileged) owner: the note is written, as that owner, the filter not run.
    give_to(&repo.bare, "65534:65534");
    env.phantom().args(["run", "app"]).assert().success();
    assert!(!marker.exists(), "the repository's clean filter ran");
    assert_eq!(notes_lines(&env, &repo, &commit).len(), 1);

    // While a run goes on, a pusher makes the repository a partial clone whose promisor remote runs
    // a command of theirs, and points the notes ref at a missing object (here the step does it, as
    // such a pusher would meanwhile): the note's git fetches nothing, runs nothing.
    let fetched = open.join("fetch-ran");
    let git_config = |key: &str, value: &str| {
        format!(
            "git -c safe.directory=* --git-dir {} config {key} {}",
            repo.bare.display(),
            shell_words::quote(value)
        )
    };
    let script = [
        git_config("core.repositoryformatversion", "1"),
        git_config("extensions.partialClone", "origin"),
        git_config("remote.origin.url", "ssh://example.invalid/x.git"),
        git_config("remote.origin.promisor", "true"),
        git_config(
            "core.sshCommand",
            &format!("sh -c 'id > {}' #", fetched.display()),
        ),
        format!(
            "echo {} > {}",
            "1".repeat(40),
            repo.bare.join("refs/notes/ci").display()
        ),
    ]
    .join(" && ");
    repo.workflow(
        "master",
        &format!(
            "[0]\nrun = {}\n",
            toml_string(&format!("sh -c {}", shell_words::quote(&script)))
        ),
    );
    give_to(&repo.bare, "0:0");
    repo.commit_and_push("a pusher meanwhile");
    give_to(&repo.bare, "65534:65534");
    env.phantom().args(["run", "app"]).assert().success();
    assert!(!fetched.exists(), "a promisor remote's command ran");
}

fn a_url_repo_with_notes_is_a_config_error_with_its_line() {
    let env = TestEnv::new();
    env.write_repo_toml("[app]\npath = \"https://example.org/app.git\"\nnotes = true\n");
    let out = env.phantom().arg("status").assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("`notes = true` only applies"), "{stderr}");
}

fn the_report_keeps_only_the_runs_the_records_keep() {
    let env = TestEnv::new();
    let workflow = "[0]\nrun = \"sh -c 'echo $PHANTOM_CI_RUN > $PHANTOM_CI_ARTIFACTS/out.txt'\"\n";
    let (repo, _) = env.app(
        workflow,
        "keep_runs = 2\ntarget_branch = [\"master\", \"develop\"]",
    );
    let site = env.root().join("site");
    std::fs::create_dir_all(site.join("app")).unwrap();
    // Someone else's files, and a page phantom_ci did not write, stay.
    std::fs::write(site.join("app/99.html"), "mine\n").unwrap();
    std::fs::write(site.join("robots.txt"), "mine\n").unwrap();
    dotenv(&env, &[format!("PHANTOM_CI_REPORT_DIR={}", site.display())]);
    // Run #1 is develop's only run: once pruned, its badge goes too.
    repo.workflow("develop", workflow);
    repo.commit("develop");
    assert!(repo.push("develop").status.success());
    env.phantom()
        .args(["run", "app", "--branch", "develop"])
        .assert()
        .success();
    assert!(site.join("badge/app/develop.svg").exists());
    for n in 1..=5 {
        repo.commit_and_push(&format!("change {n}"));
        env.phantom().args(["run", "app"]).assert().success();
    }
    assert_eq!(env.runs("app"), [5, 6]);
    assert!(!site.join("badge/app/develop.svg").exists());
    assert!(site.join("badge/app/master.svg").exists());
    let mut pages: Vec<String> = std::fs::read_dir(site.join("app"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(pages, ["5", "5.html", "6", "6.html", "99.html"]);
    assert_eq!(read(&site.join("app/6/artifacts/out.txt")), "6\n");
    assert!(site.join("robots.txt").exists());
    // A whole `report` prunes too, from its own manifest.
    env.phantom().arg("report").arg(&site).assert().success();
    assert!(site.join("app/5.html").exists() && !site.join("app/4.html").exists());
    let manifest = read(&site.join(".phantom_ci-files"));
    assert!(
        manifest.contains("app/6.html\napp/6/artifacts/\n"),
        "{manifest}"
    );
    assert!(manifest.contains("badge/app/master.svg\n"), "{manifest}");
    assert!(!manifest.contains("develop"), "{manifest}");
    assert!(!manifest.contains("99"), "{manifest}");
}

/// `hook --wait` of a repo with several branches says which branch waits (SPEC §9).
fn a_waiting_pusher_is_told_its_branch_when_the_repo_runs_several() {
    use std::process::{Command, Stdio};
    let env = TestEnv::new();
    let repo = env.repo("app");
    env.write_repo_toml(&env.section("app", &repo, "target_branch = [\"master\", \"develop\"]"));
    env.install_hook(&repo, true);
    let started = env.root().join("started");
    let release = env.root().join("release");
    repo.write(
        "workflow.toml",
        &format!(
            "[0]\nrun = '''sh -c 'touch {}; while [ ! -e {} ]; do sleep 0.05; done' '''\ntimeout = \"5m\"\n",
            started.display(),
            release.display()
        ),
    );
    let commit = repo.commit("both");
    // Each push holds until its own run ended, its messages on the pusher's stderr.
    let push = |branch: &str| {
        Command::new("git")
            .args(["push", "-q", repo.bare.to_str().unwrap()])
            .arg(format!("HEAD:refs/heads/{branch}"))
            .current_dir(&repo.work)
            .env_clear()
            .envs(crate::support::fixed_env(&env.home))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let master = push("master");
    crate::support::wait_for("the master run to start", || started.exists());
    let mut develop = push("develop");
    let told = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = std::thread::spawn({
        let told = told.clone();
        let mut stderr = develop.stderr.take().unwrap();
        move || {
            use std::io::Read;
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                told.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        }
    });
    crate::support::wait_for("the develop pusher to be told what it waits for", || {
        told.lock().unwrap().contains("waiting for run #1")
    });
    std::fs::write(&release, "").unwrap();
    let master = master.wait_with_output().unwrap();
    let develop = develop.wait().unwrap();
    reader.join().unwrap();
    let told = told.lock().unwrap().clone();
    assert!(
        told.contains(&format!("then `app` (develop) runs {} here", &commit[..7])),
        "{told}"
    );
    assert!(master.status.success() && develop.success());
}

/// The review's attack on notes (2026-12-07): the repository's owner, whose scratch directory root
/// writes the note into, plants links in it while the note is written (`note` → a root-only file).
/// Root never writes through anything the owner put there.
fn the_repositorys_owner_cannot_make_root_write_through_a_link() {
    if !crate::support::needs_root() {
        return;
    }
    let env = TestEnv::shared();
    let (repo, _) = env.app(PASSING, "notes = true");
    give_to(&repo.bare, "65534:65534");
    let target = env.root().join("root-only");
    std::fs::write(&target, "untouched").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let planter = {
        let (stop, target) = (stop.clone(), target.clone());
        let tmp = std::env::temp_dir();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for dir in std::fs::read_dir(&tmp).unwrap().flatten() {
                    if dir
                        .file_name()
                        .to_string_lossy()
                        .starts_with("phantom_ci-notes-")
                    {
                        // The old fixed name, and any file the writer made there.
                        let _ = std::os::unix::fs::symlink(&target, dir.path().join("note"));
                        for entry in std::fs::read_dir(dir.path())
                            .into_iter()
                            .flatten()
                            .flatten()
                        {
                            if entry.file_name().to_string_lossy().starts_with("note-") {
                                let _ = std::fs::remove_file(entry.path());
                                let _ = std::os::unix::fs::symlink(&target, entry.path());
                            }
                        }
                    }
                }
            }
        })
    };
    for _ in 0..5 {
        env.phantom().args(["run", "app"]).assert().success();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    planter.join().unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
}

crate::tests! {
    the_repositorys_owner_cannot_make_root_write_through_a_link,
    a_waiting_pusher_is_told_its_branch_when_the_repo_runs_several,
    two_branches_have_two_badges_and_the_repo_badge_follows_the_main_line,
    the_generic_webhook_and_chat_posts_link_the_run_page,
    each_result_is_appended_to_the_commit_note,
    a_run_recorded_aborted_after_it_died_gets_its_note_page_and_webhook,
    runs_of_one_commit_ending_together_lose_no_note,
    a_repository_phantom_ci_may_not_write_runs_green_with_one_line_in_its_log,
    notes_are_written_as_the_owner_of_the_repository,
    notes_never_run_a_pushers_git_configuration,
    a_url_repo_with_notes_is_a_config_error_with_its_line,
    the_report_keeps_only_the_runs_the_records_keep,
    a_notes_ref_that_names_no_commit_is_said_at_once,
}

/// A pusher points `refs/notes/ci` at a blob: every note used to retry 50 times (about ten seconds
/// of junk commits) before giving up.
fn a_notes_ref_that_names_no_commit_is_said_at_once() {
    let env = TestEnv::new();
    let (repo, _) = env.app(PASSING, "notes = true");
    let blob = env.git(&repo.work, &["hash-object", "-w", "workflow/master.toml"]);
    env.git(
        &repo.work,
        &["push", "-q", "origin", &format!("{blob}:refs/notes/ci")],
    );
    let out = env.phantom().args(["run", "app"]).assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("`refs/notes/ci` names a blob, not a commit"),
        "{stderr}"
    );
    assert!(!stderr.contains("kept moving"), "{stderr}");
    assert_eq!(env.run_json("app", 1)["result"], "success");
    // Nothing was written into the repository meanwhile.
    let refs = env.git(&repo.bare, &["for-each-ref", "refs/notes"]);
    assert_eq!(refs, format!("{blob} blob\trefs/notes/ci"));
}
