//! `cache = true` (issue 12, SPEC §6): a build cache kept between runs as `PHANTOM_CI_CACHE`, in the
//! sandbox too; `cache clear`; `cache_limit` trims the oldest files; another repo's step cannot read it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde_json::Value;

use crate::support::{TestEnv, has_bwrap, has_line, needs_root, stdout_of};

/// Prints `HIT` when an earlier run left `seen` in the cache, then leaves it.
const REMEMBERS: &str = "[0]\nrun = '''sh -c 'if [ -e \"$PHANTOM_CI_CACHE/seen\" ]; then echo HIT; else echo MISS; fi; echo run >> \"$PHANTOM_CI_CACHE/seen\"' '''\n";

fn run_prints(env: &TestEnv) -> String {
    let out = env.phantom().args(["run", "app"]).assert().success();
    stdout_of(&out)
}

fn status_json(env: &TestEnv) -> Value {
    let out = env.phantom().args(["status", "--json"]).assert().success();
    serde_json::from_str(&stdout_of(&out)).unwrap()
}

fn a_file_written_by_one_run_is_seen_by_the_next(env: &TestEnv, extra: &str) {
    env.app(REMEMBERS, &format!("cache = true\n{extra}"));
    assert!(has_line(&run_prints(env), "MISS"));
    let cache = env.data.join("cache/app");
    assert!(cache.join("seen").is_file());
    assert!(has_line(&run_prints(env), "HIT"), "run 2 sees run 1's file");
    assert_eq!(
        std::fs::read_to_string(cache.join("seen")).unwrap(),
        "run\nrun\n"
    );

    // Private: `<data>/cache` 0711, the repo's cache 0700.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&env.data.join("cache")), 0o711);
    assert_eq!(mode(&cache), 0o700);

    // `status` shows the size the run's trim recorded: the cache and `seen`, a block each.
    let status = status_json(env);
    assert_eq!(status[0]["cache_bytes"], 2 * 4096, "{status}");
    assert!(status[0]["cache_measured_at"].is_string(), "{status}");
    let out = env.phantom().arg("status").assert().success();
    assert!(
        has_line(
            &stdout_of(&out),
            "cache of app: 8.0KiB of 10GiB (after the last run)"
        ),
        "{}",
        stdout_of(&out)
    );

    // `cache clear` empties it: the next run starts afresh.
    let out = env
        .phantom()
        .args(["cache", "clear", "app"])
        .assert()
        .success();
    assert!(stdout_of(&out).contains("cache of `app` cleared"));
    assert!(!cache.exists());
    assert_eq!(status_json(env)[0]["cache_bytes"], Value::Null);
    let out = env.phantom().arg("status").assert().success();
    assert!(
        has_line(
            &stdout_of(&out),
            "cache of app: ? of 10GiB (not measured yet: each run measures it)"
        ),
        "{}",
        stdout_of(&out)
    );
    assert!(has_line(&run_prints(env), "MISS"));
}

fn the_cache_is_kept_between_runs_and_cleared_on_demand() {
    let env = TestEnv::new();
    a_file_written_by_one_run_is_seen_by_the_next(&env, "");
}

fn the_cache_is_kept_between_runs_in_the_sandbox() {
    if !has_bwrap() {
        return;
    }
    // The sandbox gives steps an empty /tmp of their own: the test lives elsewhere.
    let env = TestEnv::new_in(Path::new("/var/tmp"));
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    a_file_written_by_one_run_is_seen_by_the_next(&env, "sandbox = \"bwrap\"");
}

/// In the sandbox the rest of `<data>` stays hidden: the cache is bound in, nothing beside it.
fn the_sandbox_shows_the_cache_and_nothing_else_of_the_data_dir() {
    if !has_bwrap() {
        return;
    }
    let env = TestEnv::new_in(Path::new("/var/tmp"));
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(env.data.join("cache/other")).unwrap();
    std::fs::write(env.data.join("cache/other/secret"), "other's").unwrap();
    env.app(
        "[0]\nrun = '''sh -c 'ls \"$PHANTOM_CI_CACHE/..\"; cat \"$PHANTOM_CI_CACHE/../other/secret\" || echo HIDDEN' '''\n",
        "cache = true\nsandbox = \"bwrap\"",
    );
    let stdout = run_prints(&env);
    assert!(has_line(&stdout, "HIDDEN"), "{stdout}");
    assert!(!stdout.contains("other's"), "{stdout}");
}

/// `cache_limit`: after a run past it, the oldest files go until the cache fits.
fn a_cache_past_its_limit_loses_its_oldest_files() {
    let env = TestEnv::new();
    env.app(
        "[0]\nrun = '''sh -c 'cd \"$PHANTOM_CI_CACHE\" && head -c 600000 /dev/urandom > old && touch -d \"2 hours ago\" old && head -c 600000 /dev/urandom > new' '''\n",
        "cache = true\ncache_limit = \"1MiB\"",
    );
    let stdout = run_prints(&env);
    assert!(stdout.contains("==> cache trimmed from "), "{stdout}");
    let cache = env.data.join("cache/app");
    assert!(!cache.join("old").exists(), "the oldest file is removed");
    assert!(cache.join("new").exists(), "the newest file is kept");
}

/// Issue 18: files deeper than the old walk went (64 levels) escaped `cache_limit`. A step leaves
/// an old 1.5 MB file 150 levels down and a new one on top: the run's trim reaches the old one and
/// the directories it leaves empty; `status` shows what is left without walking.
fn a_deep_old_file_is_trimmed_by_the_run() {
    let env = TestEnv::new();
    env.app(
        "[0]\nrun = '''sh -c 'cd \"$PHANTOM_CI_CACHE\" && p=$(printf \"d/%.0s\" $(seq 150)) && mkdir -p \"$p\" && head -c 1500000 /dev/zero > \"${p}old\" && touch -d \"2 hours ago\" \"${p}old\" && head -c 600000 /dev/zero > new && ls -d \"$p\"' '''\n",
        "cache = true\ncache_limit = \"2MiB\"",
    );
    let stdout = run_prints(&env);
    let cache = env.data.join("cache/app");
    assert!(
        stdout.contains(&"d/".repeat(150)),
        "the step made it: {stdout}"
    );
    assert!(stdout.contains("==> cache trimmed from "), "{stdout}");
    assert!(cache.join("new").exists(), "the newest file is kept");
    assert!(
        !cache.join("d").exists(),
        "the deep old file and its directories go: {stdout}"
    );
    let status = status_json(&env);
    assert_eq!(
        status[0]["cache_bytes"],
        4096 + 602_112,
        "the cache and `new`: {status}"
    );
}

/// Issue 18: 200,000 empty files 60 directories deep took 1.3 GB for the run's trim and for `status`
/// (every file kept with its whole path). 20,000 here (about 130 MB before), past `cache_limit`: the
/// run counts and trims them in a few MiB, and `status` reads the recorded size.
fn a_wide_deep_cache_is_trimmed_in_bounded_memory() {
    let Some(time) = crate::support::find_on_path("time") else {
        crate::skip!("needs GNU time to measure peak memory (apt-get install time)");
    };
    // On tmpfs where there is one: making 20,000 files on a disk where many were just deleted (other
    // tests) can take ext4 half a minute.
    let shm = Path::new("/dev/shm");
    let env = if shm.is_dir() {
        TestEnv::new_in(shm)
    } else {
        TestEnv::new()
    };
    env.app(
        "[0]\nrun = \"true\"\n",
        "cache = true\ncache_limit = \"50MiB\"",
    );
    let mut bottom = env.data.join("cache/app");
    for _ in 0..59 {
        bottom.push("d");
    }
    for group in 0..20 {
        let dir = bottom.join(format!("g{group:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        // Made relative to the directory: a path 60 levels long is slow to look up 20,000 times.
        let dir = std::fs::File::open(&dir).unwrap();
        for file in 0..1000 {
            let name = format!("empty-file-with-a-longer-name-{file:04}");
            let flags = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
            drop(
                nix::fcntl::openat(&dir, name.as_str(), flags, Mode::from_bits_truncate(0o644))
                    .unwrap(),
            );
        }
    }
    let peak = |args: &[&str]| -> (u64, String) {
        let phantom = env.phantom_std();
        let output = std::process::Command::new(&time)
            .arg("-v")
            .arg(phantom.get_program())
            .args(args)
            .env_clear()
            .envs(
                phantom
                    .get_envs()
                    .filter_map(|(k, v)| Some((k.to_os_string(), v?.to_os_string()))),
            )
            .current_dir(env.root())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        let kib = stderr
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Maximum resident set size (kbytes): ")
            })
            .unwrap()
            .parse()
            .unwrap();
        (kib, String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (run_kib, stdout) = peak(&["run", "app"]);
    // 20,000 empty files and 80 directories count at least 78 MiB: trimmed to 50 MiB.
    assert!(stdout.contains("==> cache trimmed from 7"), "{stdout}");
    assert!(run_kib < 64 * 1024, "peak RSS of the run {run_kib} KiB");
    let (status_kib, stdout) = peak(&["status"]);
    assert!(stdout.contains("cache of app: "), "{stdout}");
    assert!(
        status_kib < 64 * 1024,
        "peak RSS of status {status_kib} KiB"
    );
    let bytes = status_json(&env)[0]["cache_bytes"].as_u64().unwrap();
    assert!(bytes <= 50 << 20 && bytes > 45 << 20, "{bytes}");
}

/// The attack: a step of another repo, running as another user, reads the cache of `app` (whose
/// steps run as `nobody`) — and cannot; nor can it write into it.
fn another_repos_step_cannot_read_the_cache() {
    if !needs_root() {
        return;
    }
    if nix::unistd::User::from_name("daemon")
        .ok()
        .flatten()
        .is_none()
    {
        crate::skip!("needs a user `daemon` besides `nobody` (Debian's base-passwd has it)");
    }
    let env = TestEnv::shared();
    let app = env.repo("app");
    app.workflow(
        "master",
        "[0]\nrun = '''sh -c 'echo app-secret > \"$PHANTOM_CI_CACHE/secret\"' '''\n",
    );
    app.commit_and_push("app");
    let other = env.repo("other");
    let target = env.data.join("cache/app");
    other.workflow(
        "master",
        &format!(
            "[0]\nrun = '''sh -c 'cat {0}/secret || echo READ-REFUSED; ls {0} || echo LIST-REFUSED; touch {0}/planted || echo WRITE-REFUSED' '''\n",
            target.display()
        ),
    );
    other.commit_and_push("other");
    env.write_repo_toml(&format!(
        "{}{}",
        env.section_as("app", &app, "nobody", "cache = true"),
        env.section_as("other", &other, "daemon", "cache = true")
    ));
    env.phantom().args(["run", "app"]).assert().success();
    let meta = std::fs::metadata(&target).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(
        meta.uid(),
        nobody.uid.as_raw(),
        "the cache is the step user's"
    );
    assert_eq!(meta.mode() & 0o7777, 0o700);

    let out = env.phantom().args(["run", "other"]).assert().success();
    let stdout = stdout_of(&out);
    assert!(!stdout.contains("app-secret"), "{stdout}");
    for refused in ["READ-REFUSED", "LIST-REFUSED", "WRITE-REFUSED"] {
        assert!(has_line(&stdout, refused), "{refused}: {stdout}");
    }
    assert!(!target.join("planted").exists());
}

/// A cache that changed hands (`run_as` changed) is given to the new step user, links untouched and
/// hard links dropped.
fn a_cache_changing_hands_is_given_to_the_new_user_without_following_links() {
    if !needs_root() {
        return;
    }
    let env = TestEnv::shared();
    let outside = env.root().join("outside");
    std::fs::write(&outside, "root's").unwrap();
    let cache = env.data.join("cache/app");
    std::fs::create_dir_all(cache.join("sub")).unwrap();
    std::fs::write(cache.join("sub/file"), "x").unwrap();
    std::os::unix::fs::symlink(&outside, cache.join("sub/link")).unwrap();
    // A hard link the old user made to a file elsewhere (here root's): not given away.
    let linked = env.root().join("linked");
    std::fs::write(&linked, "root's too").unwrap();
    std::fs::hard_link(&linked, cache.join("sub/hard")).unwrap();
    let (repo, _) = env.app(
        "[0]\nrun = '''sh -c 'echo more >> \"$PHANTOM_CI_CACHE/sub/file\"' '''\n",
        "",
    );
    env.write_repo_toml(&env.section_as("app", &repo, "nobody", "cache = true"));
    env.phantom().args(["run", "app"]).assert().success();
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert_eq!(
        std::fs::metadata(cache.join("sub/file")).unwrap().uid(),
        nobody
    );
    assert_eq!(
        std::fs::read_to_string(cache.join("sub/file")).unwrap(),
        "xmore\n"
    );
    assert_eq!(
        std::fs::metadata(&outside).unwrap().uid(),
        0,
        "the link's target stays root's"
    );
    assert_eq!(
        std::fs::metadata(&linked).unwrap().uid(),
        0,
        "a hard link's file was given to the new user"
    );
    assert!(!cache.join("sub/hard").exists(), "its name left the cache");
}

fn cache_clear_refuses_an_unknown_repo() {
    let env = TestEnv::new();
    env.write_repo_toml("");
    env.phantom()
        .args(["cache", "clear", "nope"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no repo `nope`"));
    env.phantom()
        .args(["cache", "clear", "../x"])
        .assert()
        .code(2);
}

crate::tests! {
    the_cache_is_kept_between_runs_and_cleared_on_demand,
    the_cache_is_kept_between_runs_in_the_sandbox,
    the_sandbox_shows_the_cache_and_nothing_else_of_the_data_dir,
    a_cache_past_its_limit_loses_its_oldest_files,
    a_deep_old_file_is_trimmed_by_the_run,
    a_wide_deep_cache_is_trimmed_in_bounded_memory,
    another_repos_step_cannot_read_the_cache,
    a_cache_changing_hands_is_given_to_the_new_user_without_following_links,
    cache_clear_refuses_an_unknown_repo,
}
