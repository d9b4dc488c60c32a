//! Runner pools (SPEC §7): `phantom_ci claim --host NAME` as the central host's forced command, and
//! pooled runners that claim each commit before running it. The main test runs a real `sshd` on
//! loopback with three local users: the central `git` user who owns the repository, pushes and
//! answers claims, and two runner hosts A and B in one pool.

use std::path::Path;
use std::process::Stdio;

use crate::support::ssh::{
    Runner, Sshd, User, Users, as_user, bin, chown_tree, keygen, output_of, processes_of,
};
use crate::support::{self, TestEnv, find_on_path, on_path, stdout_of, wait_for};

const C1: &str = "0123456789abcdef0123456789abcdef01234567";

// ---------------------------------------------------------------------------------------------------
// Without ssh: the forced command as sshd starts it.

/// `phantom_ci claim --host HOST` with `SSH_ORIGINAL_COMMAND` set to `original` (`None`: unset).
fn claim_as(env: &TestEnv, host: &str, original: Option<&str>) -> assert_cmd::assert::Assert {
    let mut cmd = env.phantom();
    cmd.args(["claim", "--host", host])
        .write_stdin("claim app master x\n");
    if let Some(original) = original {
        cmd.env("SSH_ORIGINAL_COMMAND", original);
    }
    cmd.assert()
}

fn the_claim_command_decides_once_and_refuses_anything_else() {
    let env = TestEnv::new();
    for attack in [
        Some("sh".to_string()),
        Some("git-receive-pack '/srv/git/app.git'".into()),
        Some("git-upload-pack '/srv/git/app.git'".into()),
        Some(format!("claim app master {C1}; sh")),
        Some(format!("claim ../app master {C1}")),
        Some(format!("claim app master {C1} --host b")),
        Some(format!("done app master {C1} running")),
        Some(String::new()),
        None,
    ] {
        let out = claim_as(&env, "a", attack.as_deref()).code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert_eq!(stderr.lines().count(), 1, "{attack:?}: {stderr}");
        assert!(
            stderr.starts_with("phantom_ci: claim refused: "),
            "{stderr}"
        );
        assert!(stdout_of(&out).is_empty());
    }
    assert!(!env.data.join("claims").exists(), "nothing was decided");
    // A host name that is not plain, in the forced command itself.
    claim_as(&env, "-x;id", Some(&format!("claim app master {C1}"))).code(2);

    let claim = format!("claim app master {C1} 600");
    assert_eq!(
        stdout_of(&claim_as(&env, "a", Some(&claim)).success()),
        "granted\n"
    );
    // A lost reply: A asks again and is granted again; B is refused, named A.
    assert!(stdout_of(&claim_as(&env, "a", Some(&claim)).success()).starts_with("granted"));
    let held = stdout_of(&claim_as(&env, "b", Some(&claim)).code(3));
    assert!(held.starts_with("refused: held by a since "), "{held}");
    let renew = format!("renew app master {C1}");
    assert_eq!(
        stdout_of(&claim_as(&env, "a", Some(&renew)).success()),
        "renewed\n"
    );
    assert!(
        stdout_of(&claim_as(&env, "b", Some(&renew)).code(3))
            .starts_with("refused: taken over by a")
    );
    let done = format!("done app master {C1} success");
    assert_eq!(
        stdout_of(&claim_as(&env, "a", Some(&done)).success()),
        "done recorded\n"
    );
    assert_eq!(
        stdout_of(&claim_as(&env, "a", Some(&done)).success()),
        "done recorded\n"
    );
    let over = stdout_of(&claim_as(&env, "b", Some(&claim)).code(4));
    assert!(
        over.starts_with("refused: done by a (success) at "),
        "{over}"
    );
    // The central `status` shows it.
    let status = env.phantom().args(["status", "--json"]).assert().success();
    let status: serde_json::Value = serde_json::from_str(&stdout_of(&status)).unwrap();
    let claims = &status[0]["claims"];
    assert_eq!(status[0]["repo"], "app", "{status}");
    assert_eq!(claims[0]["host"], "a", "{status}");
    assert_eq!(claims[0]["commit"], C1);
    assert_eq!(claims[0]["result"], "success");
    let text = stdout_of(&env.phantom().arg("status").assert().success());
    assert!(text.contains("claims of app (runner pool"), "{text}");
    assert!(
        text.contains("0123456") && text.contains("success"),
        "{text}"
    );
}

fn pool_keys_are_listed_and_their_errors_name_the_line() {
    let env = TestEnv::new();
    env.write_repo_toml(
        "[app]\npath = \"ssh://git@central/srv/git/app.git\"\npool = \"x86\"\n\
         claim = \"ssh://git@central:2222\"\nclaim_key = \"/home/ci/.ssh/claim\"\n",
    );
    let out = env.phantom().args(["list", "--json"]).assert().success();
    let list: serde_json::Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(list[0]["pool"], "x86", "{list}");
    assert_eq!(list[0]["claim"], "ssh://git@central:2222");
    assert_eq!(list[0]["claim_ttl"], "10m");
    assert_eq!(list[0]["claim_key"], "/home/ci/.ssh/claim");
    env.write_repo_toml("[app]\npath = \"/srv/git/app.git\"\n\npool = \"x86\"\n");
    let out = env.phantom().arg("tick").assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("Repo.toml` line 4, column 8: `pool` needs `claim"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------------
// With OpenSSH on loopback: a central host and two runner hosts in one pool.

/// The workflow: a step of about a second; on a host told to hold (`hold-<user>` in the shared
/// folder) it says so (`holding-<user>`) and waits until it is killed.
fn workflow(shared: &Path) -> String {
    let s = shared.display();
    format!(
        "[0]\nrun = '''sh -c 'if [ -e {s}/hold-$USER ]; then touch {s}/holding-$USER; sleep 600; \
         fi; sleep 1' '''\n"
    )
}

/// The run records of `repo` on `host`, finished ones only: (commit, result, message).
fn finished_runs(host: &Runner, repo: &str) -> Vec<(String, String, String)> {
    host.runs(repo)
        .into_iter()
        .filter_map(|n| {
            let path = host.data.join(format!("runs/{repo}/{n}/run.json"));
            let record: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
            let result = record["result"].as_str()?.to_string();
            (result != "running").then(|| {
                (
                    record["commit"].as_str().unwrap_or_default().to_string(),
                    result,
                    record["message"].as_str().unwrap_or_default().to_string(),
                )
            })
        })
        .collect()
}

/// The claim of `commit` of master by pool `p` on the central host, if there is one.
fn claim_of(central_data: &Path, commit: &str) -> Option<serde_json::Value> {
    let path = central_data.join(format!("claims/app/master@{commit}@p.json"));
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn kill_all(users: &[User]) {
    for _ in 0..50 {
        let left = processes_of(users);
        if left.is_empty() {
            return;
        }
        for pid in left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn a_pool_runs_each_commit_once_on_whichever_host_claims_it() {
    let sshd_path = find_on_path("sshd");
    let (Some(sshd_path), true) = (sshd_path, support::is_root()) else {
        crate::skip!("needs sshd (apt-get install openssh-server) and root");
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
            crate::skip!("needs `{tool}` (openssh-client, util-linux, passwd, coreutils)");
        }
    }
    let env = TestEnv::shared();
    let root = env.root().to_path_buf();
    let users = Users::create(&root, &["phci-pool-git", "phci-pool-a", "phci-pool-b"]);
    let [git, a_user, b_user] = [&users.0[0], &users.0[1], &users.0[2]];
    // Each user's own key (the hook's pokes, the runners' fetches); each runner's claim key.
    let keys: Vec<String> = users
        .0
        .iter()
        .map(|u| keygen(&u.home.join(".ssh/id_ed25519"), &u.name))
        .collect();
    let claim_keys: Vec<String> = [a_user, b_user]
        .iter()
        .map(|u| keygen(&u.home.join(".ssh/claim"), &format!("{} claims", u.name)))
        .collect();
    let names: Vec<&str> = users.0.iter().map(|u| u.name.as_str()).collect();
    let sshd = Sshd::start(&sshd_path, &root.join("sshd"), &names);
    let port = sshd.port.to_string();
    for user in &users.0 {
        std::fs::write(user.home.join(".ssh/known_hosts"), sshd.known_host()).unwrap();
        chown_tree(&user.home, user);
    }
    let shared = root.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();

    // The central host: the repository and its hook (pokes A and B), phantom_ci's data for claims.
    let central = root.join("central");
    let app = central.join("app.git");
    let work = central.join("work");
    let central_data = central.join("data");
    std::fs::create_dir_all(&app).unwrap();
    env.git(&app, &["init", "-q", "--bare", "-b", "master"]);
    std::fs::create_dir_all(work.join("workflow")).unwrap();
    env.git(&work, &["init", "-q", "-b", "master"]);
    env.git(&work, &["remote", "add", "origin", app.to_str().unwrap()]);
    std::fs::write(work.join("workflow/master.toml"), workflow(&shared)).unwrap();
    std::fs::create_dir_all(central.join("config")).unwrap();
    std::fs::write(central.join("config/Repo.toml"), "").unwrap();
    let url = |user: &User| format!("ssh://{}@127.0.0.1:{port}", user.name);
    let central_phantom = || {
        let mut cmd = env.phantom();
        cmd.arg("--config-dir")
            .arg(central.join("config"))
            .arg("--data-dir")
            .arg(&central_data);
        cmd
    };
    central_phantom()
        .args(["configure", "hook"])
        .arg(&app)
        .args(["--notify-runner", &url(a_user)])
        .args(["--notify-runner", &url(b_user)])
        .assert()
        .success();
    std::fs::create_dir_all(&central_data).unwrap();
    chown_tree(&central, git);
    // The central account: each runner's fetch key, and its claim key bound to `claim --host`.
    let claim_line = |user: &User, key: &str| {
        format!(
            "command=\"{} --config-dir {} --data-dir {} claim --host {}\",restrict {key}\n",
            bin().display(),
            central.join("config").display(),
            central_data.display(),
            user.name
        )
    };
    let fetch_lines = format!("restrict {}\nrestrict {}\n", keys[1], keys[2]);
    let both_claim = claim_line(a_user, &claim_keys[0]) + &claim_line(b_user, &claim_keys[1]);
    sshd.authorize(git, &(fetch_lines.clone() + &both_claim));

    // Two runner hosts in pool `p`, each claiming with its own key.
    let make = |user: &User| {
        let dir = root.join(&user.name);
        let (config, data) = (dir.join("config"), dir.join("data"));
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(
            config.join("Repo.toml"),
            format!(
                "[app]\npath = \"ssh://{}@127.0.0.1:{port}{}\"\npool = \"p\"\nclaim = \"{}\"\n\
                 claim_ttl = \"6s\"\nclaim_key = \"{}\"\n",
                git.name,
                app.display(),
                url(git),
                user.home.join(".ssh/claim").display()
            ),
        )
        .unwrap();
        chown_tree(&dir, user);
        (config, data)
    };
    let (config, data) = make(a_user);
    let a = Runner {
        user: a_user,
        config,
        data,
    };
    let (config, data) = make(b_user);
    let b = Runner {
        user: b_user,
        config,
        data,
    };
    sshd.authorize(a_user, &a.forced(&keys[0]));
    sshd.authorize(b_user, &b.forced(&keys[0]));

    let git_bin = find_on_path("git").unwrap();
    let commit = |message: &str| {
        std::fs::write(work.join("message"), message).unwrap();
        for args in [&["add", "-A"][..], &["commit", "-q", "-m", message]] {
            let mut c = as_user(git, &git_bin, args);
            c.current_dir(&work);
            let out = output_of(c);
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
    let push = || {
        let mut c = as_user(
            git,
            &git_bin,
            &["push", "-q", "origin", "HEAD:refs/heads/master"],
        );
        c.current_dir(&work);
        let out = output_of(c);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let tick = |host: &Runner| output_of(host.phantom(&["tick"]));
    let ssh = find_on_path("ssh").unwrap();
    // What a runner's claim key gets from the central host when it asks for `command`.
    let ask_central = |runner: &User, command: Option<&str>| {
        let key = runner.home.join(".ssh/claim");
        let host = format!("{}@127.0.0.1", git.name);
        let mut args = vec![
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            key.to_str().unwrap(),
            "-p",
            &port,
            &host,
        ];
        args.extend(command);
        output_of(as_user(runner, &ssh, &args))
    };

    // 1. Ten pushes: each is claimed by one host before the next push; each commit runs exactly
    //    once across the two hosts, on the host that holds its claim, and succeeds.
    let mut pushed = Vec::new();
    for i in 0..10 {
        let c = commit(&format!("commit {i}"));
        push();
        wait_for(&format!("commit {i} to be claimed"), || {
            claim_of(&central_data, &c).is_some()
        });
        pushed.push(c);
    }
    for c in &pushed {
        wait_for(&format!("the claim of {c} to be done"), || {
            claim_of(&central_data, c).is_some_and(|claim| claim["result"].is_string())
        });
    }
    let ran = |host: &Runner| finished_runs(host, "app");
    wait_for("every run to be recorded", || {
        ran(&a).len() + ran(&b).len() >= pushed.len()
    });
    // The losers' queued commits learn at their next tick that the commit is done: nothing reruns.
    for host in [&a, &b] {
        let out = tick(host);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (on_a, on_b) = (ran(&a), ran(&b));
    for c in &pushed {
        let here: Vec<&str> = on_a
            .iter()
            .filter(|r| &r.0 == c)
            .map(|_| a_user.name.as_str())
            .chain(
                on_b.iter()
                    .filter(|r| &r.0 == c)
                    .map(|_| b_user.name.as_str()),
            )
            .collect();
        assert_eq!(here.len(), 1, "{c} ran on {here:?}: {on_a:?} {on_b:?}");
        let claim = claim_of(&central_data, c).unwrap();
        assert_eq!(claim["host"], here[0], "{claim}");
        assert_eq!(claim["result"], "success", "{claim}");
    }
    assert_eq!(on_a.len() + on_b.len(), 10, "{on_a:?} {on_b:?}");
    assert!(
        on_a.iter().chain(&on_b).all(|r| r.1 == "success"),
        "{on_a:?} {on_b:?}"
    );

    // 2. A is down for the central host (sshd refuses its claim key, and it is not poked): every
    //    run goes to B; A's own timer finds it cannot claim and runs nothing.
    sshd.authorize(
        git,
        &(fetch_lines.clone() + &claim_line(b_user, &claim_keys[1])),
    );
    sshd.authorize(a_user, "");
    let (a_before, b_before) = (a.runs("app").len(), b.runs("app").len());
    let mut to_b = Vec::new();
    for i in 0..3 {
        let c = commit(&format!("A down {i}"));
        push();
        wait_for(&format!("B to run {c}"), || {
            ran(&b).iter().any(|r| r.0 == c && r.1 == "success")
        });
        to_b.push(c);
    }
    let out = tick(&a);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("cannot claim commit"), "{stderr}");
    assert_eq!(
        a.runs("app").len(),
        a_before,
        "A ran while it could not claim"
    );
    assert_eq!(b.runs("app").len(), b_before + 3);
    for c in &to_b {
        assert_eq!(
            claim_of(&central_data, c).unwrap()["host"],
            b_user.name.as_str()
        );
    }

    // 3. A holds a claim and is SIGKILLed mid-run: B takes it over once A's `claim_ttl` passed and
    //    runs it to success; A's late `done` is refused.
    sshd.authorize(git, &(fetch_lines.clone() + &both_claim));
    sshd.authorize(a_user, &a.forced(&keys[0]));
    sshd.authorize(b_user, "");
    // A's timer first: it catches up on what it missed (B ran it: nothing runs on A).
    let out = tick(&a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(a.runs("app").len(), a_before);
    std::fs::write(shared.join(format!("hold-{}", a_user.name)), "").unwrap();
    let held = commit("held by A");
    push();
    wait_for("A to start the run it holds", || {
        shared.join(format!("holding-{}", a_user.name)).exists()
    });
    assert_eq!(
        claim_of(&central_data, &held).unwrap()["host"],
        a_user.name.as_str()
    );
    kill_all(std::slice::from_ref(a_user));
    sshd.authorize(b_user, &b.forced(&keys[0]));
    // B's timer: refused while A's claim is fresh, then it takes the run over.
    let mut refused_once = false;
    wait_for("B to take the run over", || {
        let out = tick(&b);
        let stderr = String::from_utf8_lossy(&out.stderr);
        refused_once |= stderr.contains(&format!("held by {}", a_user.name));
        ran(&b).iter().any(|r| r.0 == held)
    });
    assert!(
        refused_once,
        "B's first tick came after A's TTL: nothing showed the refusal"
    );
    let on_b: Vec<_> = ran(&b).into_iter().filter(|r| r.0 == held).collect();
    assert_eq!(on_b.len(), 1, "{on_b:?}");
    assert_eq!(on_b[0].1, "success", "{on_b:?}");
    let claim = claim_of(&central_data, &held).unwrap();
    assert_eq!(claim["host"], b_user.name.as_str(), "{claim}");
    assert_eq!(claim["taken_from"], a_user.name.as_str(), "{claim}");
    assert_eq!(claim["result"], "success", "{claim}");
    let late = ask_central(a_user, Some(&format!("done app@p master {held} success")));
    let answer = String::from_utf8_lossy(&late.stdout).into_owned();
    assert_eq!(late.status.code(), Some(3), "{answer}");
    assert!(
        answer.starts_with(&format!("refused: taken over by {} at ", b_user.name)),
        "{answer}"
    );
    assert_eq!(claim_of(&central_data, &held).unwrap()["result"], "success");

    // 3b. A holds a claim and stops (SIGSTOP) past its TTL; B takes it over and runs it. When A goes
    //     on, its next renewal is answered "taken over by B": its run ends `aborted`, naming B.
    let holding = shared.join(format!("holding-{}", a_user.name));
    std::fs::remove_file(&holding).unwrap();
    sshd.authorize(b_user, "");
    let out = tick(&a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paused = commit("A pauses");
    push();
    wait_for("A to start the run it holds", || holding.exists());
    let signal_all = |signal| {
        for pid in processes_of(std::slice::from_ref(a_user)) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    };
    signal_all(nix::sys::signal::Signal::SIGSTOP);
    sshd.authorize(b_user, &b.forced(&keys[0]));
    wait_for("B to take the paused run over", || {
        tick(&b);
        ran(&b).iter().any(|r| r.0 == paused && r.1 == "success")
    });
    signal_all(nix::sys::signal::Signal::SIGCONT);
    wait_for("A's run to end", || ran(&a).iter().any(|r| r.0 == paused));
    let on_a: Vec<_> = ran(&a).into_iter().filter(|r| r.0 == paused).collect();
    assert_eq!(on_a[0].1, "aborted", "{on_a:?}");
    assert!(
        on_a[0]
            .2
            .contains(&format!("taken over by {}", b_user.name)),
        "{on_a:?}"
    );
    let claim = claim_of(&central_data, &paused).unwrap();
    assert_eq!(claim["host"], b_user.name.as_str(), "{claim}");
    assert_eq!(claim["result"], "success", "{claim}");

    // 4. A claim key can do nothing else on the central host: no shell, no git.
    let canary = git.home.join("canary");
    std::fs::write(&canary, "still here").unwrap();
    let rm = format!("rm -f {}", canary.display());
    let receive = format!("git-receive-pack '{}'", app.display());
    let upload = format!("git-upload-pack '{}'", app.display());
    for attack in [
        Some(rm.as_str()),
        Some("sh"),
        Some(receive.as_str()),
        Some(upload.as_str()),
        None,
    ] {
        let out = ask_central(a_user, attack);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{attack:?}: {stderr}");
        assert!(
            stderr.contains("phantom_ci: claim refused: "),
            "{attack:?}: {stderr}"
        );
    }
    assert!(canary.exists());
    // A push through the claim key fails, and the branch does not move.
    let tip = |bare: &Path| {
        String::from_utf8_lossy(
            &output_of(as_user(
                git,
                &git_bin,
                &["--git-dir", bare.to_str().unwrap(), "rev-parse", "master"],
            ))
            .stdout,
        )
        .trim()
        .to_string()
    };
    let before = tip(&app);
    let clone = root.join(&a_user.name).join("clone");
    std::fs::create_dir_all(&clone).unwrap();
    chown_tree(&clone, a_user);
    let git_ssh = format!(
        "ssh -o BatchMode=yes -o IdentitiesOnly=yes -i {} -p {port}",
        a_user.home.join(".ssh/claim").display()
    );
    let run_git = |args: &[&str]| {
        let mut c = as_user(a_user, &git_bin, args);
        c.current_dir(&clone)
            .env("GIT_SSH_COMMAND", &git_ssh)
            .stdin(Stdio::null());
        output_of(c)
    };
    run_git(&["init", "-q", "-b", "master"]);
    run_git(&[
        "-c",
        "user.name=x",
        "-c",
        "user.email=x@x",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "evil",
    ]);
    let remote = format!("ssh://{}@127.0.0.1{}", git.name, app.display());
    let out = run_git(&["push", "-q", "--force", &remote, "HEAD:refs/heads/master"]);
    assert!(
        !out.status.success(),
        "a push with a claim key went through"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("claim refused"));
    assert_eq!(tip(&app), before);

    // 5. The central `status` shows the claims: host, commit, result.
    let out = central_phantom()
        .args(["status", "--json"])
        .assert()
        .success();
    let status: serde_json::Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    let claims = status[0]["claims"].as_array().unwrap().clone();
    assert_eq!(claims[0]["commit"], paused.as_str(), "{status}");
    assert_eq!(claims[0]["host"], b_user.name.as_str());
    let text = stdout_of(&central_phantom().arg("status").assert().success());
    assert!(
        text.contains(&format!("success (taken over from {})", a_user.name)),
        "{text}"
    );
    kill_all(&users.0[..]);
}

/// Issue 24 with issue 21: a pooled run's result, reported by `done`, goes into the commit's note of
/// the central repository where its section has `notes = true` — written by the central host.
fn a_pooled_runs_result_is_noted_by_the_central_host() {
    let env = TestEnv::new();
    let repo = env.repo("app");
    repo.workflow("master", "[0]\nrun = \"true\"\n");
    let commit = repo.commit_and_push("one");
    env.write_repo_toml(&env.section("app", &repo, "notes = true"));
    claim_as(
        &env,
        "runner-a",
        Some(&format!("claim app master {commit} 600")),
    )
    .success();
    let done = format!("done app master {commit} failure");
    claim_as(&env, "runner-a", Some(&done)).success();
    // Said again (a lost reply): the same answer, no second line.
    assert_eq!(
        stdout_of(&claim_as(&env, "runner-a", Some(&done)).success()),
        "done recorded\n"
    );
    let note = env.git(&repo.bare, &["notes", "--ref", "ci", "show", &commit]);
    assert_eq!(note.lines().count(), 1, "{note}");
    assert!(
        note.starts_with("phantom_ci pool master failure ") && note.ends_with(" runner-a"),
        "{note}"
    );
}

crate::tests! {
    a_pooled_runs_result_is_noted_by_the_central_host,
    the_claim_command_decides_once_and_refuses_anything_else,
    pool_keys_are_listed_and_their_errors_name_the_line,
    a_pool_runs_each_commit_once_on_whichever_host_claims_it,
}
