//! Runner hosts fed by git and OpenSSH (SPEC §7): `configure hook --notify-runner`, `poke` as a forced
//! command, `tick --repo`, `report --merge`. The main test runs a real `sshd` on loopback with three
//! local users: the central `git` user who owns the repositories and pushes, and two runner "hosts",
//! each with its own phantom_ci configuration and data.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::ssh::{
    Runner, Sshd, User, Users, as_user, chown_tree, keygen, output_of, running_with,
};
use crate::support::{self, TestEnv, find_on_path, on_path, stdout_of, wait_for};

const WORKFLOW: &str = "[0]\nrun = \"git rev-parse HEAD\"\n";

// ---------------------------------------------------------------------------------------------------
// Without ssh: the forced command's parsing, a poke that comes twice, `tick --repo`, `--notify-runner`.

/// `phantom_ci poke` with `SSH_ORIGINAL_COMMAND` as sshd sets it (`None`: unset).
fn poke(env: &TestEnv, original: Option<&str>) -> assert_cmd::assert::Assert {
    let mut cmd = env.phantom();
    cmd.arg("poke").write_stdin("poke app\n");
    if let Some(original) = original {
        cmd.env("SSH_ORIGINAL_COMMAND", original);
    }
    cmd.assert()
}

/// Everything under `dir`, for "nothing changed".
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            found.push(entry.path());
            found.extend(tree(&entry.path()));
        }
    }
    found.sort();
    found
}

fn the_forced_command_refuses_anything_but_poke_and_a_plain_name() {
    let env = TestEnv::new();
    env.app(WORKFLOW, "");
    let before = tree(env.root());
    for attack in [
        Some("poke ../x"),
        Some("poke .."),
        Some("rm -rf /"),
        Some("poke a b"),
        Some(""),
        Some("poke"),
        Some("poke app;id"),
        Some("poke $(id)"),
        Some("poke app\nrm -rf /"),
        Some("tick"),
        None,
    ] {
        let out = poke(&env, attack).code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert_eq!(stderr.lines().count(), 1, "{attack:?}: {stderr}");
        assert!(stderr.starts_with("phantom_ci: poke refused: "), "{stderr}");
        assert!(stdout_of(&out).is_empty(), "{attack:?}");
    }
    // Not a byte was fetched, queued or recorded: the data dir was not even created.
    assert_eq!(tree(env.root()), before);
    assert!(!env.data.exists());
}

fn a_poke_that_comes_twice_runs_nothing_twice() {
    let env = TestEnv::new();
    let (repo, first) = env.app(WORKFLOW, "");
    let out = poke(&env, Some("poke app")).success();
    let line = stdout_of(&out);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains(&format!("queued `app` (master {})", &first[..7])),
        "{line}"
    );
    // At once again, while the first poke's run may still go on.
    let again = stdout_of(&poke(&env, Some("poke app")).success());
    assert!(
        again.contains("is up to date") || again.contains("already queued"),
        "{again}"
    );
    let record = env.wait_for_run("app", 1);
    assert_eq!(record["commit"], first.as_str());
    assert_eq!(record["trigger"], "tick");
    assert!(stdout_of(&poke(&env, Some(" poke\tapp ")).success()).contains("`app` is up to date"));
    // A new commit: two pokes back to back run it once.
    let second = repo.commit_and_push("second");
    poke(&env, Some("poke app")).success();
    poke(&env, Some("poke app")).success();
    assert_eq!(env.wait_for_run("app", 2)["commit"], second.as_str());
    poke(&env, Some("poke app")).success();
    // A third run would have been queued by the pokes before run 2 ended; nothing is queued.
    let status = env.phantom().args(["status", "--json"]).assert().success();
    let status: serde_json::Value = serde_json::from_str(&stdout_of(&status)).unwrap();
    assert!(status[0]["queued"].is_null(), "{status}");
    assert_eq!(env.runs("app"), [1, 2]);
    // A poke for a repository this host does not run changes nothing.
    let other = stdout_of(&poke(&env, Some("poke other")).success());
    assert!(other.contains("no repo here uses it"), "{other}");
    assert_eq!(env.runs("app"), [1, 2]);
}

fn tick_repo_checks_only_the_named_repos() {
    let env = TestEnv::new();
    let a = env.repo("a");
    a.workflow("master", WORKFLOW);
    a.commit_and_push("a");
    let b = env.repo("b");
    b.workflow("master", WORKFLOW);
    b.commit_and_push("b");
    env.write_repo_toml(&(env.section("a", &a, "") + &env.section("b", &b, "")));
    let out = env
        .phantom()
        .args(["tick", "--repo", "nope"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("`--repo nope`: no such repo"), "{stderr}");
    assert!(env.runs("a").is_empty() && env.runs("b").is_empty());
    env.phantom()
        .args(["tick", "--repo", "a"])
        .assert()
        .success();
    assert_eq!(env.runs("a"), [1]);
    assert!(env.runs("b").is_empty(), "b was not asked for");
    env.phantom()
        .args(["tick", "--repo", "b", "--repo", "a"])
        .assert()
        .success();
    assert_eq!(env.runs("a"), [1]);
    assert_eq!(env.runs("b"), [1]);
}

fn notify_runner_takes_only_plain_ssh_urls() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    let hook = repo.bare.join("hooks/post-receive");
    for bad in [
        "ssh://-oProxyCommand=touch${IFS}/tmp/pwned",
        "ssh://ci@-oProxyCommand=id",
        "ci@runner1",
        "https://runner1/",
        "ssh://ci@runner1/srv/git/app.git",
        "ssh://ci@runner1:99999",
        "ssh://ci@runner1;id",
    ] {
        let out = env
            .phantom()
            .args(["configure", "hook"])
            .arg(&repo.bare)
            .args(["--notify-runner", bad])
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(stderr.contains("`--notify-runner "), "{bad}: {stderr}");
        assert!(!hook.exists(), "{bad}: a hook was written");
    }
    env.phantom()
        .args(["configure", "hook"])
        .arg(&repo.bare)
        .args(["--notify-runner", "ssh://ci@runner1:2222"])
        .args(["--notify-runner", "ssh://runner2"])
        .assert()
        .success();
    let script = std::fs::read_to_string(&hook).unwrap();
    let pokes: Vec<&str> = script
        .lines()
        .filter(|l| l.starts_with("setsid ssh "))
        .collect();
    assert_eq!(pokes.len(), 2, "{script}");
    let words =
        shell_words::split(pokes[0].trim_end_matches(" </dev/null >/dev/null 2>&1 &")).unwrap();
    assert!(
        words.windows(2).any(|w| w == ["-o", "BatchMode=yes"]),
        "{words:?}"
    );
    assert!(
        pokes[0].contains("-p 2222 -l ci -- runner1 'poke app'"),
        "{}",
        pokes[0]
    );
    assert!(
        pokes
            .iter()
            .all(|l| l.ends_with(" </dev/null >/dev/null 2>&1 &"))
    );

    // A repository whose name cannot be a poke's.
    let odd = env.root().join("odd name.git");
    env.git(env.root(), &["init", "-q", "--bare", odd.to_str().unwrap()]);
    let out = env
        .phantom()
        .args(["configure", "hook"])
        .arg(&odd)
        .args(["--notify-runner", "ssh://ci@runner1"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("rename the repository"), "{stderr}");
    assert!(!odd.join("hooks/post-receive").exists());
}

fn the_merged_view_escapes_what_a_host_wrote() {
    let env = TestEnv::new();
    let (_repo, _) = env.app(WORKFLOW, "");
    env.phantom().args(["run", "app"]).assert().success();
    let www = env.root().join("www");
    env.phantom()
        .arg("report")
        .arg(www.join("host-a"))
        .assert()
        .success();
    let hostile = www.join("<img src=x onerror=alert(1)>");
    std::fs::create_dir_all(&hostile).unwrap();
    std::fs::write(hostile.join("index.html"), "x").unwrap();
    std::fs::write(
        hostile.join("summary.json"),
        r#"{"format":1,"repos":[{"repo":"<script>alert(1)</script>","branch":"m",
            "last":{"run":1,"result":"success","commit":"x","page":"https://evil.example/x.html"}}]}"#,
    )
    .unwrap();
    let out = env
        .phantom()
        .arg("report")
        .arg("--merge")
        .arg(&www)
        .assert()
        .success();
    assert_eq!(
        stdout_of(&out).trim(),
        www.join("index.html").display().to_string()
    );
    let index = std::fs::read_to_string(www.join("index.html")).unwrap();
    assert!(
        index.contains("<a href=\"host-a/app/1.html\">#1</a>"),
        "{index}"
    );
    assert!(www.join("host-a/app/1.html").is_file());
    assert!(!index.contains("<script"), "{index}");
    assert!(!index.contains("<img"), "{index}");
    assert!(!index.contains("evil.example"), "{index}");
    assert!(index.contains("&lt;script&gt;"), "{index}");
}

// ---------------------------------------------------------------------------------------------------
// With OpenSSH on loopback.

/// A poke target that hangs: it accepts connections and never answers (a runner that is wedged).
struct Hang {
    port: u16,
    accepted: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Hang {
    fn start() -> Hang {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (held, stopped) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => held.lock().unwrap().push(stream),
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        });
        Hang {
            port,
            accepted,
            stop,
        }
    }

    fn connections(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    /// Whether every connection is still open (its client still waits for an answer).
    fn all_open(&self) -> bool {
        self.accepted.lock().unwrap().iter_mut().all(|stream| {
            stream.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => return false,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
        })
    }
}

impl Drop for Hang {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pushes_poke_the_runners_that_list_the_repo_over_real_ssh() {
    let sshd_path = find_on_path("sshd");
    let (Some(sshd_path), true) = (sshd_path, support::is_root()) else {
        crate::skip!("needs sshd and root (apt-get install openssh-server; run as root)");
    };
    for tool in [
        "ssh",
        "ssh-keygen",
        "setsid",
        "setpriv",
        "useradd",
        "usermod",
        "userdel",
        "chown",
    ] {
        if !on_path(tool) {
            crate::skip!(
                "needs `{tool}` (apt-get install openssh-client util-linux passwd coreutils)"
            );
        }
    }
    let env = TestEnv::shared();
    let root = env.root().to_path_buf();
    let users = Users::create(&root, &["phci-scale-git", "phci-scale-r1", "phci-scale-r2"]);
    let [git, r1_user, r2_user] = [&users.0[0], &users.0[1], &users.0[2]];
    let keys: Vec<String> = users
        .0
        .iter()
        .map(|u| keygen(&u.home.join(".ssh/id_ed25519"), &u.name))
        .collect();
    let names: Vec<&str> = users.0.iter().map(|u| u.name.as_str()).collect();
    let sshd = Sshd::start(&sshd_path, &root.join("sshd"), &names);
    let port = sshd.port.to_string();
    for user in &users.0 {
        std::fs::write(user.home.join(".ssh/known_hosts"), sshd.known_host()).unwrap();
        chown_tree(&user.home, user);
    }
    let hang = Hang::start();

    // The central host: repositories owned by `git`, which also pushes (so the hook runs as `git`,
    // with its own keys and known_hosts). Runners fetch from it over ssh like any remote.
    let central = root.join("central");
    let app = central.join("app.git");
    let other = central.join("other.git");
    let work = central.join("work");
    for bare in [&app, &other] {
        std::fs::create_dir_all(bare).unwrap();
        env.git(bare, &["init", "-q", "--bare", "-b", "master"]);
    }
    std::fs::create_dir_all(&work).unwrap();
    env.git(&work, &["init", "-q", "-b", "master"]);
    env.git(&work, &["remote", "add", "origin", app.to_str().unwrap()]);
    std::fs::create_dir_all(work.join("workflow")).unwrap();
    std::fs::write(work.join("workflow/master.toml"), WORKFLOW).unwrap();
    std::fs::create_dir_all(central.join("config")).unwrap();
    std::fs::write(central.join("config/Repo.toml"), "").unwrap();
    let runner_url = |user: &User, port: &str| format!("ssh://{}@127.0.0.1:{port}", user.name);
    env.phantom()
        .arg("--config-dir")
        .arg(central.join("config"))
        .arg("--data-dir")
        .arg(central.join("data"))
        .args(["configure", "hook"])
        .arg(&app)
        .args(["--notify-runner", &runner_url(r1_user, &port)])
        .args(["--notify-runner", &runner_url(r2_user, &port)])
        .args([
            "--notify-runner",
            &runner_url(r2_user, &hang.port.to_string()),
        ])
        .assert()
        .success();
    chown_tree(&central, git);
    sshd.authorize(
        git,
        &format!("restrict {}\nrestrict {}\n", keys[1], keys[2]),
    );
    let central_url =
        |bare: &Path| format!("ssh://{}@127.0.0.1:{port}{}", git.name, bare.display());

    // Two runner hosts: r1 runs `app`; r2 runs only `other` for now.
    let make = |user: &User, toml: String| {
        let dir = root.join(&user.name);
        std::fs::create_dir_all(dir.join("config")).unwrap();
        std::fs::write(dir.join("config/Repo.toml"), toml).unwrap();
        chown_tree(&dir, user);
    };
    let r1 = Runner {
        user: r1_user,
        config: root.join(&r1_user.name).join("config"),
        data: root.join(&r1_user.name).join("data"),
    };
    let r2 = Runner {
        user: r2_user,
        config: root.join(&r2_user.name).join("config"),
        data: root.join(&r2_user.name).join("data"),
    };
    make(
        r1_user,
        format!("[app]\npath = \"{}\"\n", central_url(&app)),
    );
    make(
        r2_user,
        format!("[other]\npath = \"{}\"\n", central_url(&other)),
    );
    sshd.authorize(r1_user, &r1.forced(&keys[0]));
    sshd.authorize(r2_user, &r2.forced(&keys[0]));

    let commit = |message: &str| {
        std::fs::write(work.join("message"), message).unwrap();
        let git_bin = find_on_path("git").unwrap();
        for args in [&["add", "-A"][..], &["commit", "-q", "-m", message]] {
            let out = output_of({
                let mut c = as_user(git, &git_bin, args);
                c.current_dir(&work);
                c
            });
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut c = as_user(git, &git_bin, &["rev-parse", "HEAD"]);
        c.current_dir(&work);
        String::from_utf8_lossy(&output_of(c).stdout)
            .trim()
            .to_string()
    };
    // The push, as git runs it (the hook as `git`): it must return while a poke hangs.
    let push = || {
        let git_bin = find_on_path("git").unwrap();
        let mut cmd = as_user(
            git,
            &git_bin,
            &["push", "-q", "origin", "HEAD:refs/heads/master"],
        );
        cmd.current_dir(&work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut status = None;
        wait_for(
            "the push to return (a hook that waited for a hung poke never would)",
            || {
                status = child.try_wait().unwrap();
                status.is_some()
            },
        );
        let out = child.wait_with_output().unwrap();
        assert!(
            status.unwrap().success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The pokes that go to sshd have ended (the hung one goes on).
    let pokes_done = || {
        wait_for("the pokes over sshd to end", || {
            !running_with(&["-p", &port, "poke app"])
        });
    };

    // 1. A push runs on the runner whose Repo.toml lists the repo, and on no other.
    let first = commit("first");
    let connections = hang.connections();
    push();
    wait_for("the hung poke to connect", || {
        hang.connections() > connections
    });
    assert!(
        hang.all_open(),
        "the push returned only after the hung poke gave up: the hook waited for it"
    );
    let record = r1.wait_for_run("app", 1);
    assert_eq!(record["commit"], first.as_str());
    assert_eq!(record["result"], "success", "{record}");
    pokes_done();
    assert!(
        sshd.log()
            .contains(&format!("Accepted publickey for {}", r2_user.name)),
        "r2 was poked too: {}",
        sshd.log()
    );
    assert!(r2.runs("app").is_empty(), "r2 does not list `app`");
    assert!(r2.runs("other").is_empty());
    assert_eq!(r1.runs("app"), [1]);

    // 2. r2 lists `app` too, but is down (sshd refuses the central key): pushes still return, r1
    //    runs them, and r2's next `tick` runs the newest commit exactly once.
    make(
        r2_user,
        format!(
            "[other]\npath = \"{}\"\n\n[app]\npath = \"{}\"\n",
            central_url(&other),
            central_url(&app)
        ),
    );
    sshd.authorize(r2_user, "");
    let second = commit("second");
    push();
    assert_eq!(r1.wait_for_run("app", 2)["commit"], second.as_str());
    let third = commit("third");
    push();
    assert_eq!(r1.wait_for_run("app", 3)["commit"], third.as_str());
    pokes_done();
    assert!(
        sshd.log().contains(&format!(
            "Connection closed by authenticating user {}",
            r2_user.name
        )),
        "r2's sshd refused the poke: {}",
        sshd.log()
    );
    assert!(r2.runs("app").is_empty(), "r2 was down");
    let out = output_of(r2.phantom(&["tick"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r2.runs("app"), [1]);
    let caught_up = r2.wait_for_run("app", 1);
    assert_eq!(
        caught_up["commit"],
        third.as_str(),
        "the newest commit, once"
    );
    let out = output_of(r2.phantom(&["tick"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r2.runs("app"), [1], "a second tick runs nothing again");
    assert_eq!(r1.runs("app"), [1, 2, 3]);

    // 3. The forced command refuses anything but a poke, over real ssh; nothing is run or changed.
    sshd.authorize(r2_user, &r2.forced(&keys[0]));
    let canary = r1_user.home.join("canary");
    std::fs::write(&canary, "still here").unwrap();
    let ssh = find_on_path("ssh").unwrap();
    let ssh_as_git = |target: &User, command: Option<&str>| {
        let mut args = vec!["-T", "-o", "BatchMode=yes", "-p", &port];
        let host = format!("{}@127.0.0.1", target.name);
        args.push(&host);
        if let Some(command) = command {
            args.push(command);
        }
        output_of(as_user(git, &ssh, &args))
    };
    let rm = format!("rm -f {}", canary.display());
    for attack in [
        Some(rm.as_str()),
        Some("rm -rf /"),
        Some("poke ../x"),
        Some("poke a b"),
        Some("poke app; touch /tmp/x"),
        Some("sh"),
        None,
    ] {
        let out = ssh_as_git(r1_user, attack);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{attack:?}: {stderr}");
        assert!(
            stderr.contains("phantom_ci: poke refused: "),
            "{attack:?}: {stderr}"
        );
    }
    assert!(canary.exists());
    let out = ssh_as_git(r1_user, Some("poke app"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("`app` is up to date"), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let out = ssh_as_git(r2_user, Some("poke app"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("`app` is up to date"));
    assert_eq!(r1.runs("app"), [1, 2, 3]);
    assert_eq!(r2.runs("app"), [1]);

    // 4. One view of both: each runner writes its report into its folder; the merge shows both.
    let www = root.join("www");
    for (runner, folder) in [(&r1, "runner1"), (&r2, "runner2")] {
        std::fs::create_dir_all(www.join(folder)).unwrap();
        chown_tree(&www.join(folder), runner.user);
        let out = output_of(runner.phantom(&["report", www.join(folder).to_str().unwrap()]));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    env.phantom()
        .arg("report")
        .arg("--merge")
        .arg(&www)
        .assert()
        .success();
    let index = std::fs::read_to_string(www.join("index.html")).unwrap();
    for (link, folder) in [
        ("runner1/app/3.html", "runner1"),
        ("runner2/app/1.html", "runner2"),
    ] {
        assert!(index.contains(&format!("<a href=\"{link}\">")), "{index}");
        assert!(index.contains(&format!("<a href=\"{folder}/index.html\">{folder}</a>")));
        assert!(www.join(link).is_file(), "{link}");
    }
    assert_eq!(index.matches("result success").count(), 2, "{index}");
    drop(hang);
}

crate::tests! {
    the_forced_command_refuses_anything_but_poke_and_a_plain_name,
    a_poke_that_comes_twice_runs_nothing_twice,
    tick_repo_checks_only_the_named_repos,
    notify_runner_takes_only_plain_ssh_urls,
    the_merged_view_escapes_what_a_host_wrote,
    pushes_poke_the_runners_that_list_the_repo_over_real_ssh,
}
