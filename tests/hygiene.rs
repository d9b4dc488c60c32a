//! Issue 8, items 2, 3, 5 and 7: phantom_ci's own state is private, a URL repo's mirror is readable by
//! its own step user only, a checkout bomb is refused before anything is written (and the checkout
//! runs nothing of the operator's git configuration on the commit), and nothing a webhook endpoint
//! sends back — nor the webhook's path — is written anywhere. Each test performs the attack; those
//! that act as another user need root and say they are skipped otherwise.

use std::path::Path;

use crate::support::{TestEnv, TestRepo, has_line, stdout_of};

/// Every file under `dir` (not following links), with its size.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let meta = entry.path().symlink_metadata().unwrap();
        if meta.is_dir() {
            found.extend(files_under(&entry.path()));
        } else {
            found.push((entry.path(), meta.len()));
        }
    }
    found
}

fn bytes_under(dir: &Path) -> u64 {
    files_under(dir).iter().map(|(_, size)| size).sum()
}

/// Commits, on top of `repo`'s HEAD, a tree that names one 1 MiB blob 2,000 times besides the
/// workflow: 2 GB to check out, a few KB in the repository. Made with `git hash-object -w` and
/// `git mktree`, so nothing big is ever on the disk. Pushes it to master; returns the commit.
fn push_checkout_bomb(env: &TestEnv, repo: &TestRepo) -> String {
    let blob_file = env.root().join("one-mebibyte");
    std::fs::write(&blob_file, vec![b'A'; 1 << 20]).unwrap();
    let blob = env.git(
        &repo.work,
        &["hash-object", "-w", blob_file.to_str().unwrap()],
    );
    let mut listing = env.git(&repo.work, &["ls-tree", "HEAD"]);
    for i in 0..2000 {
        listing.push_str(&format!("\n100644 blob {blob}\tcopy-{i:04}"));
    }
    listing.push('\n');
    let mut mktree = std::process::Command::new("git")
        .arg("mktree")
        .current_dir(&repo.work)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    mktree
        .stdin
        .take()
        .unwrap()
        .write_all(listing.as_bytes())
        .unwrap();
    let out = mktree.wait_with_output().unwrap();
    assert!(out.status.success());
    let tree = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let commit = env.git(
        &repo.work,
        &["commit-tree", &tree, "-p", "HEAD", "-m", "checkout bomb"],
    );
    env.git(&repo.work, &["update-ref", "refs/heads/master", &commit]);
    let pushed = repo.push("master");
    assert!(pushed.status.success(), "{pushed:?}");
    commit
}

fn a_checkout_bomb_is_refused_before_anything_is_written() {
    let env = TestEnv::new();
    let (repo, _) = env.app(
        "[0]\nrun = \"touch step-ran\"\n",
        "checkout_limit = \"100MiB\"",
    );
    let bomb = push_checkout_bomb(&env, &repo);

    let out = env.phantom().args(["run", "app"]).assert().code(1);
    let record = env.run_json("app", 1);
    assert_eq!(record["commit"], bomb.as_str());
    assert_eq!(record["result"], "error", "{}", stdout_of(&out));
    let message = record["message"].as_str().unwrap();
    assert!(
        message.contains("the commit is larger than `checkout_limit` (100MiB)"),
        "{message}"
    );
    assert!(message.contains("nothing was checked out"), "{message}");
    assert_eq!(record["steps"].as_array().unwrap().len(), 0, "no step ran");
    assert!(
        files_under(&env.data.join("work")).is_empty(),
        "nothing under <data>/work: {:?}",
        files_under(&env.data.join("work"))
    );
    let grown = bytes_under(&env.data);
    assert!(grown < 4 << 20, "the data dir holds {grown} bytes");

    // Even a repo that keeps its workspaces keeps nothing of the bomb.
    let kept = format!(
        "{}keep_workspace = \"always\"\n",
        env.section("app", &repo, "checkout_limit = \"100MiB\"")
    );
    env.write_repo_toml(&kept);
    env.phantom().args(["run", "app"]).assert().code(1);
    assert_eq!(env.run_json("app", 2)["result"], "error");
    assert!(files_under(&env.data.join("work")).is_empty());
    assert!(bytes_under(&env.data) < 4 << 20);
}

/// The review's attack on the count: the commit's own `.gitattributes` asks git to grow every file at
/// checkout (`ident` turns `$Id$` into 51 bytes, `eol=crlf` doubles newlines, UTF-32 quadruples), so
/// a commit within `checkout_limit` by its blobs would write ~47 times as much. The workspace holds the
/// blobs byte for byte instead.
fn a_commits_attributes_cannot_grow_the_checkout_past_what_was_counted() {
    let env = TestEnv::new();
    let (repo, _) = env.app("[0]\nrun = \"wc -c big\"\n", "checkout_limit = \"16MiB\"");
    let line = "$Id$\n";
    repo.write("big", &line.repeat(256 * 1024));
    // Committed before the attributes: the pusher's own `git add` would convert it otherwise.
    repo.commit("a file of $Id$ lines");
    repo.commit_growing_attributes();
    env.phantom().args(["run", "app"]).assert().success();
    let log = env.log("app", 1);
    let blob = line.len() * 256 * 1024;
    assert!(
        crate::support::has_line(&log, &format!("{blob} big")),
        "the file is the blob ({blob} bytes), not a converted copy: {log}"
    );
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A step script that tries, for each file named after the data dir, to open it and take its lock;
/// and to list the data dir. It prints `refused <file>` or what it managed.
const ATTACK: &str = r#"data="$1"; shift
for f in "$@"; do
  f="$data/$f"
  if (exec 9<"$f") 2>/dev/null; then
    if flock -n "$f" true 2>/dev/null; then echo "LOCKED $f"; else echo "OPENED $f"; fi
  else
    echo "refused $f"
  fi
done
if ls "$data" >/dev/null 2>&1; then echo "LISTED $data"; else echo "refused listing"; fi
"#;

/// The state files the attack goes after, relative to the data dir.
const STATE: &[&str] = &[
    "locks/other.lock",
    "locks/app.lock",
    "queue/other.lock",
    "queue/app.lock",
    "seen/other~master",
    "worker.log",
    "runs/other/1/log",
];

fn a_step_cannot_open_lock_or_read_phantom_cis_state() {
    if !crate::support::needs_root() {
        return;
    }
    let env = TestEnv::shared();
    let other = env.repo("other");
    other.workflow("master", "[0]\nrun = \"echo other ran\"\n");
    other.commit_and_push("other");
    let other_section = env.section("other", &other, "");
    env.write_repo_toml(&other_section);
    env.phantom().arg("tick").assert().success();
    assert_eq!(env.run_json("other", 1)["result"], "success");

    // As an earlier version left it: every directory 0755, every file 0644, a worker.log, and no
    // note that the repo's runs are settled (which lets `tick` pass over an unmoved repo).
    use std::os::unix::fs::PermissionsExt;
    std::fs::remove_file(env.data.join("runs/other/settled")).unwrap();
    std::fs::write(env.data.join("worker.log"), "what the worker printed\n").unwrap();
    for path in ["", "locks", "queue", "seen", "runs", "runs/other"] {
        let dir = env.data.join(path);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for path in [
        "locks/other.lock",
        "queue/other.lock",
        "seen/other~master",
        "worker.log",
    ] {
        let file = env.data.join(path);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    let app = env.repo("app");
    app.write("attack.sh", ATTACK);
    app.workflow(
        "master",
        &format!(
            "[0]\nrun = \"sh attack.sh {} {}\"\n[1]\nrun = \"git log --format=subject:%s\"\n",
            env.data.display(),
            STATE.join(" ")
        ),
    );
    app.commit_and_push("attack the state");
    env.write_repo_toml(&format!(
        "{other_section}\n{}",
        env.section_as("app", &app, "nobody", "")
    ));
    env.phantom().arg("tick").assert().success();

    let log = env.log("app", 1);
    for file in STATE {
        let path = env.data.join(file);
        assert!(path.exists(), "{file} exists, so a refusal is a refusal");
        assert!(
            has_line(&log, &format!("refused {}", path.display())),
            "{file}:\n{log}"
        );
    }
    assert!(has_line(&log, "refused listing"), "{log}");
    assert!(!log.contains("OPENED") && !log.contains("LOCKED") && !log.contains("LISTED"));
    assert!(
        has_line(&log, "subject:attack the state"),
        "git log works: {log}"
    );
    assert_eq!(env.run_json("app", 1)["result"], "success");

    // Created or closed, whatever the umask: directories 0700 (0711 on the way to workspaces).
    assert_eq!(mode(&env.data), 0o711);
    for dir in ["locks", "queue", "seen", "runs"] {
        assert_eq!(mode(&env.data.join(dir)), 0o700, "{dir}");
    }
    for file in [
        "locks/other.lock",
        "locks/app.lock",
        "queue/app.lock",
        "worker.log",
    ] {
        assert_eq!(mode(&env.data.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&env.data.join("work")), 0o711);
}

fn a_url_repos_mirror_is_readable_by_its_own_step_user_only() {
    if !crate::support::needs_root() {
        return;
    }
    let Ok(Some(daemon)) = nix::unistd::User::from_name("daemon") else {
        crate::skip!(
            "needs the user `daemon` with a group other than nobody's (Debian's base-passwd has it)"
        );
    };
    let env = TestEnv::shared();
    let mirrors = env.data.join("mirrors");
    let private_mirror = mirrors.join("private.git");

    // `private`: a private repository (0700), fetched by URL; its steps run as `nobody`.
    let private = env.repo("private");
    private.write("secret.txt", "the private source\n");
    private.workflow(
        "master",
        "[0]\nrun = \"git log --format=subject:%s\"\n[1]\nrun = \"git show HEAD:secret.txt\"\n",
    );
    private.commit_and_push("private history");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&private.bare, std::fs::Permissions::from_mode(0o700)).unwrap();

    // `snoop`: another repo, whose steps run as `daemon` and go after `private`'s mirror.
    let snoop = env.repo("snoop");
    let m = private_mirror.display();
    snoop.workflow(
        "master",
        &format!(
            r#"[0]
run = "sh -c 'cat {m}/HEAD && echo READ-HEAD || echo refused-head'"
[1]
run = "sh -c 'git --git-dir={m} log --format=%s master && echo READ-LOG || echo refused-log'"
[2]
run = "sh -c 'ls {m}/objects && echo LISTED-OBJECTS || echo refused-objects'"
[3]
run = "sh -c 'ls {mirrors} && echo LISTED-MIRRORS || echo refused-mirrors'"
"#,
            mirrors = mirrors.display()
        ),
    );
    snoop.commit_and_push("snoop");

    env.write_repo_toml(&format!(
        "[private]\npath = \"file://{}\"\nrun_as = \"nobody\"\n\n[snoop]\npath = \"file://{}\"\nrun_as = \"daemon\"\n",
        private.bare.display(),
        snoop.bare.display()
    ));
    let out = env.phantom().arg("tick").assert().success();
    let stdout = stdout_of(&out);

    // Its own step reads the objects its workspace borrows from the mirror.
    let own = env.log("private", 1);
    assert!(has_line(&own, "subject:private history"), "{own}");
    assert!(has_line(&own, "the private source"), "{own}");
    assert!(!own.contains("cannot read"), "no warning: {own}");

    let snooped = env.log("snoop", 1);
    for refusal in [
        "refused-head",
        "refused-log",
        "refused-objects",
        "refused-mirrors",
    ] {
        assert!(has_line(&snooped, refusal), "{refusal}:\n{snooped}");
    }
    for success in ["READ-HEAD", "READ-LOG", "LISTED-OBJECTS", "LISTED-MIRRORS"] {
        assert!(
            !has_line(&snooped, success),
            "{success}:
{snooped}"
        );
    }
    assert!(!snooped.contains("private history") && !stdout.contains("the private source\nthe"));

    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&private_mirror).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.gid()), (0o750, 65534));
    let snoop_meta = std::fs::metadata(mirrors.join("snoop.git")).unwrap();
    assert_eq!(snoop_meta.gid(), daemon.gid.as_raw());
    assert_eq!(mode(&mirrors), 0o711);

    // A later fetch under a strict umask (077) adds objects the step user can still read.
    private.write("secret.txt", "the private source, second version\n");
    private.commit_and_push("second version");
    let template = env.phantom_std();
    let mut strict = std::process::Command::new("sh");
    strict
        .args(["-c", "umask 077 && exec \"$0\" tick"])
        .arg(template.get_program())
        .env_clear()
        .current_dir(env.root());
    for (key, value) in template.get_envs() {
        if let Some(value) = value {
            strict.env(key, value);
        }
    }
    let out = strict.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = env.log("private", 2);
    assert!(has_line(&second, "subject:second version"), "{second}");
    assert!(
        has_line(&second, "the private source, second version"),
        "{second}"
    );

    // The repo moves to the user root: its mirror becomes phantom_ci's alone.
    env.write_repo_toml(&format!(
        "[private]\npath = \"file://{}\"\nrun_as = \"root\"\n",
        private.bare.display()
    ));
    env.phantom().arg("tick").assert().success();
    assert_eq!(mode(&private_mirror) & 0o777, 0o700);
}

const DISCORD: &str = "/api/webhooks/4242/lowercasediscordtoken";
const SLACK: &str = "/services/tslack/bslack/slackquietsecret";
const GENERIC: &str = "/generic/genericsecretpath?sig=querysecretvalue";
/// What must show nowhere, in any case.
const SECRETS: &[&str] = &[
    "lowercasediscordtoken",
    "slackquietsecret",
    "genericsecretpath",
    "querysecretvalue",
    "/api/webhooks",
    "/services/",
    "/generic",
    "echoed-by-the-server",
];

fn assert_no_secret(what: &str, text: &str) {
    let lower = text.to_lowercase();
    for secret in SECRETS {
        assert!(!lower.contains(secret), "`{secret}` in {what}:\n{text}");
    }
}

/// An endpoint that echoes its path back in every way it can: in the reason phrase and the body
/// (upper-cased), in a header, in a JSON error.
fn echoing_server() -> crate::support::http::Server {
    use crate::support::http::{Reply, Server};
    Server::scripted(|path, _| {
        let shouted = path.to_uppercase();
        // The last piece of the path alone: an all-lower-case token.
        let token = path.rsplit('/').next().unwrap_or(path);
        match path {
            DISCORD => {
                let body = format!(
                    "{{\"message\": \"unknown webhook {path}, token {token} echoed-by-the-server\"}}"
                );
                Reply::Raw(format!(
                    "HTTP/1.1 400 No such hook {shouted}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ))
            }
            SLACK => Reply::Status {
                code: 500,
                headers: vec![("X-Echo", format!("{path} echoed-by-the-server"))],
                body: format!("internal error at {shouted} ECHOED-BY-THE-SERVER"),
            },
            _ => Reply::status(
                400,
                &format!(
                    "{{\"error\": \"bad signature\", \"url\": \"{path}\", \"x\": \"echoed-by-the-server\"}}"
                ),
            ),
        }
    })
}

fn nothing_a_webhook_sends_back_nor_its_path_is_written_anywhere() {
    let env = TestEnv::shared();
    let server = echoing_server();
    std::fs::write(
        env.config.join(".env"),
        format!(
            "DISCORD_WEBHOOK_URL={}\nSLACK_WEBHOOK_URL={}\nWEBHOOK_URL='{}'\nWEBHOOK_TIMEOUT=5s\n",
            server.url(DISCORD),
            server.url(SLACK),
            server.url(GENERIC)
        ),
    )
    .unwrap();
    let worker_log = env.data.join("worker.log");
    let (repo, _) = env.app(
        &format!(
            "[0]\nrun = \"sh -c 'cat {} && echo READ-WORKER-LOG || echo worker-log-refused'\"\n",
            worker_log.display()
        ),
        "",
    );

    // Hook mode: the detached worker runs the push and writes its notes into worker.log.
    env.install_hook(&repo, false);
    repo.write("more.txt", "more\n");
    let id = repo.commit("pushed");
    let pushed = repo.push("master");
    assert!(pushed.status.success());
    assert_eq!(env.wait_for_run("app", 1)["commit"], id.as_str());
    crate::support::wait_for("the worker to report the three failed posts", || {
        let log = std::fs::read_to_string(&worker_log).unwrap_or_default();
        ["discord", "slack", "generic"]
            .iter()
            .all(|name| log.contains(&format!("webhook `{name}`")))
    });
    let log = std::fs::read_to_string(&worker_log).unwrap();
    assert_no_secret("worker.log", &log);
    let origin = server.origin();
    for expected in [
        format!("webhook `discord` ({origin}/…) failed: HTTP 400 Bad Request"),
        format!("webhook `slack` ({origin}/…) failed: HTTP 500 Internal Server Error"),
        format!("webhook `generic` ({origin}/…) failed: HTTP 400 Bad Request"),
    ] {
        assert!(log.contains(&expected), "{expected}\n{log}");
    }
    assert_no_secret(
        "the push's output",
        &String::from_utf8_lossy(&pushed.stderr),
    );
    assert_no_secret(
        "the push's output",
        &String::from_utf8_lossy(&pushed.stdout),
    );
    assert_eq!(mode(&worker_log), 0o600, "worker.log is phantom_ci's alone");

    // A manual run: its stderr and stdout too.
    let out = env.phantom().args(["run", "app"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("webhook `slack`"), "{stderr}");
    assert_no_secret("stderr", &stderr);
    assert_no_secret("stdout", &String::from_utf8_lossy(&out.stdout));
    for run in env.runs("app") {
        assert_no_secret("a run log", &env.log("app", run));
        assert_no_secret(
            "run.json",
            &std::fs::read_to_string(env.run_file("app", run, "run.json")).unwrap(),
        );
    }

    // The next run's step cannot read worker.log (a step running as phantom_ci's own user could:
    // that needs root and another user).
    if !crate::support::needs_root() {
        return;
    }
    env.write_repo_toml(&env.section_as("app", &repo, "nobody", ""));
    env.phantom().args(["run", "app"]).output().unwrap();
    let last = *env.runs("app").last().unwrap();
    let log = env.log("app", last);
    assert!(has_line(&log, "worker-log-refused"), "{log}");
    assert!(!has_line(&log, "READ-WORKER-LOG"), "{log}");
}

fn the_checkout_runs_nothing_of_the_operators_git_configuration() {
    let env = TestEnv::new();
    let marker = env.root().join("smudged");
    // phantom_ci's own user has a filter in its global gitconfig; the commit asks for it.
    std::fs::write(
        env.home.join(".gitconfig"),
        format!(
            "[filter \"pwn\"]\n\tsmudge = touch {}\n\trequired = true\n[core]\n\thooksPath = {}\n",
            marker.display(),
            env.root().join("hooks").display()
        ),
    )
    .unwrap();
    let repo = env.repo("app");
    repo.write(".gitattributes", "* filter=pwn\n");
    repo.workflow("master", "[0]\nrun = \"cat workflow/master.toml\"\n");
    repo.commit_and_push("asks for a filter");
    env.write_repo_toml(&env.section("app", &repo, ""));
    // phantom_ci as an operator starts it: with its global gitconfig in force.
    env.phantom()
        .env_remove("GIT_CONFIG_GLOBAL")
        .env_remove("GIT_CONFIG_NOSYSTEM")
        .args(["run", "app"])
        .assert()
        .success();
    assert!(!marker.exists(), "the smudge filter ran");
    assert!(has_line(
        &env.log("app", 1),
        "run = \"cat workflow/master.toml\""
    ));
}

/// A step that nests directories deeper than phantom_ci may hold open (here 300 levels under an
/// open-file limit of 128; 25,000 under the usual 1,024) cannot make its workspace outlive the run:
/// a remover holding a descriptor per level stopped with `EMFILE` and left it on disk for good.
fn a_workspace_too_deep_to_hold_open_is_removed_all_the_same() {
    let env = TestEnv::new();
    env.app(
        "[0]\nrun = '''sh -c 'i=0; while [ $i -lt 300 ]; do mkdir d && cd d || exit 1; i=$((i+1)); done; echo x > bottom' '''\n",
        "",
    );
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -n 128 && exec \"$0\" run app"])
        .arg(assert_cmd::cargo::cargo_bin!("phantom_ci"))
        .env_clear()
        .envs(crate::support::fixed_env(&env.home))
        .env("PHANTOM_CI_CONFIG_DIR", &env.config)
        .env("PHANTOM_CI_DATA_DIR", &env.data)
        .current_dir(env.root())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}");
    assert!(!printed.contains("cannot remove"), "{printed}");
    assert!(
        !env.data.join("work/app/1").exists(),
        "the workspace outlived its run"
    );
}

crate::tests! {
    a_workspace_too_deep_to_hold_open_is_removed_all_the_same,
    a_commits_attributes_cannot_grow_the_checkout_past_what_was_counted,
    a_checkout_bomb_is_refused_before_anything_is_written,
    a_step_cannot_open_lock_or_read_phantom_cis_state,
    a_url_repos_mirror_is_readable_by_its_own_step_user_only,
    nothing_a_webhook_sends_back_nor_its_path_is_written_anywhere,
    the_checkout_runs_nothing_of_the_operators_git_configuration,
}
