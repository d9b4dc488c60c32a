//! The test environment: a temp dir with its own HOME, config and data dirs, real git repositories, and
//! the real binary run with a fixed environment (nothing read from the developer's own git config).

#![allow(dead_code)]

pub mod harness;
pub mod http;
pub mod ssh;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

/// The user the tests run as; repos are configured with `run_as` set to it so that the same tests work
/// as root (CI) and as anyone else.
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("the current user has a passwd entry")
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// For a test that acts as other users: true when it runs as root; otherwise the test ends as ignored
/// (see `harness.rs`), so the `false` branch of `if !needs_root() { return; }` is never taken.
pub fn needs_root() -> bool {
    if !is_root() {
        crate::skip!("needs root to act as other users (run cargo test as root)");
    }
    true
}

/// The standard output of a finished command.
pub fn stdout_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

/// Whether `text` has `line` as one of its lines.
pub fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

/// The fixed environment every process of a test gets.
pub fn fixed_env(home: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
        ("HOME", home.display().to_string()),
        ("LANG", "C.UTF-8".into()),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
        ("GIT_CONFIG_GLOBAL", "/dev/null".into()),
        ("GIT_AUTHOR_NAME", "Test Author".into()),
        ("GIT_AUTHOR_EMAIL", "author@example.org".into()),
        ("GIT_COMMITTER_NAME", "Test Author".into()),
        ("GIT_COMMITTER_EMAIL", "author@example.org".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

pub struct TestEnv {
    pub dir: TempDir,
    pub home: PathBuf,
    pub config: PathBuf,
    pub data: PathBuf,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv::new_in(&std::env::temp_dir())
    }

    /// A test environment other users can go through (its root is mode 0755), for steps that run as
    /// another user.
    pub fn shared() -> TestEnv {
        let env = TestEnv::new();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
        env
    }

    /// `<data>/runs/<repo>/<run>/<name>`.
    pub fn run_file(&self, repo: &str, run: u64, name: &str) -> PathBuf {
        self.data
            .join("runs")
            .join(repo)
            .join(run.to_string())
            .join(name)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `phantom_ci` with the test's environment and nothing else.
    pub fn phantom(&self) -> Command {
        Command::from_std(self.phantom_std())
    }

    /// The same, as a std command (for tests that read output while it runs).
    pub fn phantom_std(&self) -> StdCommand {
        let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin!("phantom_ci"));
        cmd.env_clear()
            .envs(fixed_env(&self.home))
            .env("PHANTOM_CI_CONFIG_DIR", &self.config)
            .env("PHANTOM_CI_DATA_DIR", &self.data)
            .current_dir(self.root());
        cmd
    }

    /// `phantom_ci hook --wait` of the bare repository `bare` as git starts it (in the repository,
    /// `GIT_DIR` set), with stdin and stdout piped and stderr as `stderr` says; the test writes the ref
    /// lines.
    pub fn spawn_hook_wait(&self, bare: &Path, stderr: std::process::Stdio) -> std::process::Child {
        self.phantom_std()
            .args(["hook", "--wait"])
            .env("GIT_DIR", bare)
            .current_dir(bare)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    /// `phantom_ci hook` of `bare` run by the pusher `nobody` (uid and gid 65534, no groups) through
    /// `setpriv`, with stdin and stdout piped; the test writes the ref lines. Skips without `setpriv`.
    pub fn spawn_hook_as_nobody(&self, bare: &Path) -> std::process::Child {
        if !on_path("setpriv") {
            crate::skip!("needs setpriv to push as another user (apt-get install util-linux)");
        }
        StdCommand::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(assert_cmd::cargo::cargo_bin!("phantom_ci"))
            .arg("--config-dir")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .arg("hook")
            .env("GIT_DIR", bare)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs git in `cwd`; panics with its output if it fails. Returns stdout, trimmed.
    pub fn git(&self, cwd: &Path, args: &[&str]) -> String {
        let output = StdCommand::new("git")
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .envs(fixed_env(&self.home))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?} failed in {}:\n{}{}",
            cwd.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// A bare repository `git/<name>.git` and a clone of it `src/<name>` to commit in.
    pub fn repo(&self, name: &str) -> TestRepo<'_> {
        let bare = self.root().join("git").join(format!("{name}.git"));
        let work = self.root().join("src").join(name);
        std::fs::create_dir_all(&bare).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        self.git(&bare, &["init", "-q", "--bare", "-b", "master"]);
        self.git(&work, &["init", "-q", "-b", "master"]);
        self.git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        TestRepo {
            env: self,
            bare,
            work,
        }
    }

    pub fn write_repo_toml(&self, text: &str) {
        std::fs::write(self.config.join("Repo.toml"), text).unwrap();
    }

    /// A `Repo.toml` section for `repo` named `name`, running as the current user, plus `extra` lines.
    pub fn section(&self, name: &str, repo: &TestRepo, extra: &str) -> String {
        self.section_as(name, repo, &current_user(), extra)
    }

    /// The same, with the steps running as `user`.
    pub fn section_as(&self, name: &str, repo: &TestRepo, user: &str, extra: &str) -> String {
        format!(
            "[{name}]\npath = \"{}\"\nrun_as = \"{user}\"\n{extra}\n",
            repo.bare.display()
        )
    }

    pub fn run_json(&self, repo: &str, run: u64) -> Value {
        let path = self.run_file(repo, run, "run.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    pub fn log(&self, repo: &str, run: u64) -> String {
        String::from_utf8_lossy(&std::fs::read(self.run_file(repo, run, "log")).unwrap())
            .into_owned()
    }

    pub fn runs(&self, repo: &str) -> Vec<u64> {
        runs_in(&self.data, repo)
    }
}

pub struct TestRepo<'a> {
    pub env: &'a TestEnv,
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl TestRepo<'_> {
    pub fn write(&self, path: &str, contents: &str) -> &Self {
        let path = self.work.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    pub fn workflow(&self, branch: &str, text: &str) -> &Self {
        self.write(&format!("workflow/{branch}.toml"), text)
    }

    /// Commits everything; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.env.git(&self.work, &["add", "-A"]);
        self.env.git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        self.env.git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Pushes HEAD to `branch` of the bare repository (hooks run).
    pub fn push(&self, branch: &str) -> std::process::Output {
        StdCommand::new("git")
            .args([
                "push",
                "-q",
                "-f",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ])
            .current_dir(&self.work)
            .env_clear()
            .envs(fixed_env(&self.env.home))
            .output()
            .unwrap()
    }

    /// Commits a `.gitattributes` that would make git write every other file larger (`ident`, CRLF,
    /// UTF-32) and pushes it to master: only that file is added, as a pusher's `git add -A` would
    /// convert the others in their clone.
    pub fn commit_growing_attributes(&self) {
        self.write(
            ".gitattributes",
            "* ident eol=crlf working-tree-encoding=UTF-32LE\n.gitattributes -ident -eol -working-tree-encoding\nworkflow/** -ident -eol -working-tree-encoding\n",
        );
        self.env.git(&self.work, &["add", ".gitattributes"]);
        self.env.git(
            &self.work,
            &["commit", "-q", "-m", "attributes that grow every file"],
        );
        assert!(self.push("master").status.success());
    }

    /// Commits and pushes to master; returns the commit id.
    pub fn commit_and_push(&self, message: &str) -> String {
        let id = self.commit(message);
        let out = self.push("master");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        id
    }
}

/// The numbers of the run records of `repo` under the data dir `data`, in order.
pub fn runs_in(data: &Path, repo: &str) -> Vec<u64> {
    let mut runs: Vec<u64> = std::fs::read_dir(data.join("runs").join(repo))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    runs.sort_unstable();
    runs
}

/// Whether a process whose command line is exactly `argv` exists.
pub fn process_running(argv: &[&str]) -> bool {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| cmdline == wanted)
            && !std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z'))
            })
    })
}

/// Polls `condition` every 50 ms until it holds; panics after a generous deadline.
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

impl TestEnv {
    /// Installs the post-receive hook in `repo`'s bare repository with `phantom_ci configure hook`.
    pub fn install_hook(&self, repo: &TestRepo, wait: bool) {
        let mut cmd = self.phantom();
        cmd.args(["configure", "hook"]).arg(&repo.bare);
        if wait {
            cmd.arg("--wait");
        }
        cmd.assert().success();
    }

    /// `phantom_ci run <repo>` in the background, its output discarded (the run's log and record keep
    /// it): a test's output is its results only.
    pub fn spawn_run(&self, repo: &str) -> std::process::Child {
        self.phantom_std()
            .args(["run", repo])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Sends `signal` to a phantom_ci started with [`TestEnv::spawn_run`] and waits until it ended.
    pub fn end_run_by(&self, mut run: std::process::Child, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(run.id() as i32), signal).unwrap();
        run.wait().unwrap();
    }

    /// Waits until run `run` of `repo` has ended; returns its record.
    pub fn wait_for_run(&self, repo: &str, run: u64) -> Value {
        let path = self
            .data
            .join("runs")
            .join(repo)
            .join(run.to_string())
            .join("run.json");
        let mut record = Value::Null;
        wait_for(&format!("run {run} of {repo} to end"), || {
            record = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null);
            record["result"].is_string() && record["result"] != "running"
        });
        record
    }

    /// A test environment under `parent` (for tests whose paths must not lie under `/tmp`, which the
    /// sandbox replaces with an empty tmpfs).
    pub fn new_in(parent: &Path) -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("phantom-test-")
            .tempdir_in(parent)
            .unwrap();
        let root = dir.path().to_path_buf();
        let env = TestEnv {
            home: root.join("home"),
            config: root.join("config"),
            data: root.join("data"),
            dir,
        };
        std::fs::create_dir_all(&env.home).unwrap();
        std::fs::create_dir_all(&env.config).unwrap();
        env
    }
}

/// Where `program` is on `PATH`, if it is. Tests look their tools up this way (never by an absolute
/// path alone), so that `.ci/newcomer` can take them out of reach.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Whether `program` is on `PATH`.
pub fn on_path(program: &str) -> bool {
    find_on_path(program).is_some()
}

/// For a sandbox test: true when `bwrap` is installed; otherwise the test ends as ignored.
pub fn has_bwrap() -> bool {
    if !on_path("bwrap") {
        crate::skip!("needs bwrap (apt-get install bubblewrap)");
    }
    true
}

impl TestEnv {
    /// The usual set-up: repo `app` whose `workflow/master.toml` is `workflow`, committed and pushed,
    /// and configured in Repo.toml (running as the current user) with the `extra` lines. Returns the
    /// repo and the commit.
    pub fn app(&self, workflow: &str, extra: &str) -> (TestRepo<'_>, String) {
        let repo = self.repo("app");
        repo.workflow("master", workflow);
        let commit = repo.commit_and_push("app");
        self.write_repo_toml(&self.section("app", &repo, extra));
        (repo, commit)
    }
}

/// The command line an installed `post-receive` stands for, as words: `exec <phantom_ci> --config-dir …
/// hook …` — the shell form's `exec` line, or, for the `#!<phantom_ci> hook-file` form, its binary
/// and what phantom_ci itself reads from the file.
pub fn hook_command(hook: &Path) -> Vec<String> {
    let script = std::fs::read_to_string(hook).unwrap();
    phantom_ci::install::hook_template::HookCommand::of(&script)
        .unwrap_or_else(|| panic!("not a hook phantom_ci wrote:\n{script}"))
        .words
}
