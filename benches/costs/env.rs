//! The benchmark's world: one temporary directory holding a `HOME`, phantom_ci's config and data
//! directories and the repositories, and one fixed environment for every process started in it (no
//! system or global git configuration, a fixed author), so two machines measure the same thing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Bench {
    pub root: PathBuf,
    pub home: PathBuf,
    /// phantom_ci's config directory (`PHANTOM_CI_CONFIG_DIR`) for every row but the tick row.
    pub config: PathBuf,
    /// phantom_ci's data directory (`PHANTOM_CI_DATA_DIR`) for every row but the tick row.
    pub data: PathBuf,
    pub bin: PathBuf,
    /// The user the steps run as: the one running the benchmark (`run_as`, which root needs).
    pub user: String,
    path: OsString,
}

impl Bench {
    pub fn new(root: &Path, bin: &Path) -> Bench {
        let bench = Bench {
            root: root.to_path_buf(),
            home: root.join("home"),
            config: root.join("config"),
            data: root.join("data"),
            bin: bin.to_path_buf(),
            user: nix::unistd::User::from_uid(nix::unistd::geteuid())
                .unwrap()
                .expect("the benchmark's user has a name")
                .name,
            path: std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        };
        for dir in [&bench.home, &bench.config, &bench.data] {
            std::fs::create_dir_all(dir).unwrap();
        }
        bench
    }

    /// `program` with the fixed environment and phantom_ci's main config and data directories.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", &self.path)
            .env("HOME", &self.home)
            .env("LANG", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Bench")
            .env("GIT_AUTHOR_EMAIL", "bench@phantom-ci.invalid")
            .env("GIT_COMMITTER_NAME", "Bench")
            .env("GIT_COMMITTER_EMAIL", "bench@phantom-ci.invalid")
            .env("PHANTOM_CI_CONFIG_DIR", &self.config)
            .env("PHANTOM_CI_DATA_DIR", &self.data)
            .stdin(Stdio::null());
        command
    }

    /// `phantom_ci ARGS` with stdout to /dev/null (as a console nobody reads costs) and stderr kept.
    pub fn phantom(&self, args: &[&str]) -> Command {
        let mut command = self.command(&self.bin);
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    pub fn git(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self
            .command("git")
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap();
        check(&out, &format!("git {args:?} in {}", cwd.display()));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A non-bare repository at `dir` on branch `master` with `files` committed.
    pub fn work_repo<P: AsRef<Path>, C: AsRef<[u8]>>(
        &self,
        dir: &Path,
        files: impl IntoIterator<Item = (P, C)>,
    ) {
        std::fs::create_dir_all(dir).unwrap();
        self.git(dir, &["init", "-q", "-b", "master"]);
        for (path, contents) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        self.git(dir, &["add", "-A"]);
        self.git(dir, &["commit", "-q", "-m", "import"]);
    }

    /// A bare copy of `work` at `bare`, packed as a push would leave it.
    pub fn bare_clone(&self, work: &Path, bare: &Path) {
        self.git(
            &self.root,
            &[
                "clone",
                "-q",
                "--bare",
                "--no-local",
                work.to_str().unwrap(),
                bare.to_str().unwrap(),
            ],
        );
    }

    /// Adds a section to `<config_dir>/Repo.toml`: the repo runs its steps as the benchmark's user,
    /// with everything else at its default but `extra` (more `key = value` lines).
    pub fn configure(&self, config_dir: &Path, name: &str, path: &Path, extra: &str) {
        self.configure_as(config_dir, name, path, &self.user, extra);
    }

    /// [`Bench::configure`] with the steps run as `user` instead of the benchmark's user.
    pub fn configure_as(
        &self,
        config_dir: &Path,
        name: &str,
        path: &Path,
        user: &str,
        extra: &str,
    ) {
        let file = config_dir.join("Repo.toml");
        let mut text = std::fs::read_to_string(&file).unwrap_or_default();
        text.push_str(&section(name, path, user, extra));
        std::fs::create_dir_all(config_dir).unwrap();
        std::fs::write(file, text).unwrap();
    }
}

pub fn section(name: &str, path: &Path, user: &str, extra: &str) -> String {
    format!(
        "[{name}]\npath = {}\nrun_as = {}\n{extra}",
        toml_string(&path.to_string_lossy()),
        toml_string(user)
    )
}

pub fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// A workflow of the given step commands, in order.
pub fn workflow(steps: &[String]) -> Vec<u8> {
    steps
        .iter()
        .enumerate()
        .map(|(i, run)| format!("[{i}]\nrun = {}\n", toml_string(run)))
        .collect::<String>()
        .into_bytes()
}

/// Panics with both streams when a command of the benchmark's own setup failed.
pub fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dir`'s file system type and device, from /proc/self/mountinfo (the longest mount point that
/// contains it).
pub fn file_system(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount), Some(fs), Some(source)) =
            (fields.get(4), fields.get(dash + 1), fields.get(dash + 2))
        else {
            continue;
        };
        let mount = mount.replace("\\040", " ");
        if dir.starts_with(&mount) && best.as_ref().is_none_or(|(len, _)| mount.len() >= *len) {
            best = Some((mount.len(), format!("{fs} ({source} on {mount})")));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, fs)| fs)
}
