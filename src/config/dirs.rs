//! Where phantom_ci reads its configuration and keeps its data (SPEC §2), and who may enter which
//! directory of the data dir (SPEC §4.8).
//!
//! Everything under `<data>` is phantom_ci's own and opened by its user only: directories 0700, files
//! 0600. The exceptions are the directories a `run_as` user must go through to reach its workspace and
//! its repository's mirror — `<data>`, `<data>/work`, `<data>/work/<repo>` and `<data>/mirrors` are 0711
//! (enter, but not list) — and the spool, a drop box pushers write into (1733, see `state::spool`).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const CONFIG_DIR_ENV: &str = "PHANTOM_CI_CONFIG_DIR";
pub const DATA_DIR_ENV: &str = "PHANTOM_CI_DATA_DIR";

/// The system installation's directories (SPEC §10): what `configure service --system` and the
/// package set up, and what root uses by default once `/etc/phantom_ci/Repo.toml` exists.
pub const SYSTEM_CONFIG_DIR: &str = "/etc/phantom_ci";
pub const SYSTEM_DATA_DIR: &str = "/var/lib/phantom_ci";

/// Whether this invocation uses the system installation by default: it is root's, and
/// `/etc/phantom_ci/Repo.toml` exists (gitlab-runner's convention: root reads the system
/// configuration, everyone else their own).
pub fn system_default() -> bool {
    nix::unistd::geteuid().is_root() && Path::new(SYSTEM_CONFIG_DIR).join("Repo.toml").exists()
}

/// The platform's per-user directories (`~/.config/phantom_ci`, `~/.local/share/phantom_ci`).
fn user_default() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("com", "helloimalemur", "phantom_ci")
}

/// The config and data directories in force for this invocation.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub config: PathBuf,
    pub data: PathBuf,
}

impl Dirs {
    /// The command-line option wins over the environment variable, which wins over the default: the
    /// system installation's directory for root where it exists ([`system_default`]), else the
    /// platform's per-user one. Each directory is chosen on its own: `--data-dir` alone still reads
    /// `/etc/phantom_ci` as root. The error is a usage error's message.
    pub fn resolve(config_opt: Option<PathBuf>, data_opt: Option<PathBuf>) -> Result<Dirs, String> {
        let project = user_default();
        let system = system_default();
        let pick = |opt: Option<PathBuf>, var: &str, default: Option<&Path>, system_dir: &str| {
            opt.or_else(|| {
                std::env::var_os(var)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| system.then(|| PathBuf::from(system_dir)))
            .or_else(|| default.map(Path::to_path_buf))
        };
        let config = pick(
            config_opt,
            CONFIG_DIR_ENV,
            project.as_ref().map(|p| p.config_dir()),
            SYSTEM_CONFIG_DIR,
        );
        let data = pick(
            data_opt,
            DATA_DIR_ENV,
            project.as_ref().map(|p| p.data_dir()),
            SYSTEM_DATA_DIR,
        );
        match (config, data) {
            (Some(config), Some(data)) => Ok(Dirs {
                config: absolute(config)?,
                data: absolute(data)?,
            }),
            _ => Err(format!(
                "cannot tell where the config and data directories are (no home directory); \
                 pass --config-dir and --data-dir or set {CONFIG_DIR_ENV} and {DATA_DIR_ENV}"
            )),
        }
    }

    /// Another configuration than this one whose `Repo.toml` exists — the system installation's, or
    /// this user's own — with its data dir: for "no repos" messages, so that nobody wonders where the
    /// service's repos went.
    pub fn elsewhere(&self) -> Option<Dirs> {
        let system = Dirs {
            config: PathBuf::from(SYSTEM_CONFIG_DIR),
            data: PathBuf::from(SYSTEM_DATA_DIR),
        };
        let user = user_default().map(|p| Dirs {
            config: p.config_dir().to_path_buf(),
            data: p.data_dir().to_path_buf(),
        });
        [Some(system), user]
            .into_iter()
            .flatten()
            .filter(|other| other.config != self.config)
            .find(|other| other.repo_toml().is_file())
    }

    /// `<root>/config` and `<root>/data`: the directories of a unit test.
    #[cfg(test)]
    pub fn under(root: &Path) -> Dirs {
        Dirs {
            config: root.join("config"),
            data: root.join("data"),
        }
    }

    pub fn repo_toml(&self) -> PathBuf {
        self.config.join("Repo.toml")
    }

    pub fn dotenv(&self) -> PathBuf {
        self.config.join(".env")
    }

    /// `<data>/runs/<repo>`: the run records of one repo.
    pub fn runs(&self, repo: &str) -> PathBuf {
        self.data.join("runs").join(repo)
    }

    /// `<data>/work`: where workspaces are made.
    pub fn work(&self) -> PathBuf {
        self.data.join("work")
    }

    /// `<data>/base`: the base trees of layered workspaces (issue 23), 0700 like every directory
    /// no step may reach.
    pub fn bases(&self) -> PathBuf {
        self.data.join("base")
    }

    /// `<data>/cache`: the repos' build caches (`cache = true`), one directory per repo.
    pub fn cache(&self) -> PathBuf {
        self.data.join("cache")
    }

    /// `<data>/queue`: pending work, one file per repo.
    pub fn queue(&self) -> PathBuf {
        self.data.join("queue")
    }

    /// `<data>/seen`: the last commit a hook or tick run started on, one file per repo.
    pub fn seen(&self) -> PathBuf {
        self.data.join("seen")
    }

    /// `<data>/mirrors`: bare mirrors of repos configured by URL.
    pub fn mirrors(&self) -> PathBuf {
        self.data.join("mirrors")
    }

    /// `<data>/spool`: the default spool directory where pushers drop "look again" notes.
    pub fn spool(&self) -> PathBuf {
        self.data.join("spool")
    }

    /// `<data>/locks`: one lock file per repo.
    pub fn locks(&self) -> PathBuf {
        self.data.join("locks")
    }

    /// `<data>/slots`: the `max_parallel_runs` slots (`<i>.lock`) and the tickets of the runs waiting
    /// for one (`waiting/`).
    pub fn slots(&self) -> PathBuf {
        self.data.join("slots")
    }

    /// `<data>/worker.log`: what detached workers print.
    pub fn worker_log(&self) -> PathBuf {
        self.data.join("worker.log")
    }

    /// `<data>/worker.log.1`: the worker's log before the last rotation.
    pub fn previous_worker_log(&self) -> PathBuf {
        self.data.join("worker.log.1")
    }
}

impl Dirs {
    /// The mode phantom_ci gives a directory of the data dir: 0711 for those a `run_as` user goes
    /// through (`<data>`, `<data>/work`, `<data>/work/<repo>`, `<data>/mirrors`, `<data>/cache`), 0700
    /// for the rest.
    pub fn mode_of(&self, dir: &Path) -> u32 {
        let traversed = dir == self.data
            || dir == self.work()
            || dir == self.mirrors()
            || dir == self.cache()
            || dir.parent() == Some(self.work().as_path());
        if traversed { 0o711 } else { 0o700 }
    }

    /// Makes `dir` — the data dir or a directory in it — and the missing directories between, each
    /// with its [`Dirs::mode_of`] whatever the umask. Those that exist and belong to phantom_ci's user
    /// get that mode too: a data dir an earlier version left open (0755) is closed the next time
    /// phantom_ci uses it.
    pub fn make(&self, dir: &Path) -> std::io::Result<()> {
        let Ok(below) = dir.strip_prefix(&self.data) else {
            return Err(std::io::Error::other(format!(
                "`{}` is not in the data directory `{}`",
                dir.display(),
                self.data.display()
            )));
        };
        if let Some(parent) = self.data.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut path = self.data.clone();
        ensure_mode(&path, self.mode_of(&path))?;
        for part in below.components() {
            path.push(part);
            ensure_mode(&path, self.mode_of(&path))?;
        }
        Ok(())
    }
}

impl Dirs {
    /// Closes what an earlier version left open: the state directories that exist get their mode
    /// (see [`Dirs::mode_of`]) and the worker's logs 0600. Called before every run, so that no step
    /// of this version finds a way into phantom_ci's state; cheap (a few `stat`s).
    pub fn tighten(&self) -> std::io::Result<()> {
        if !self.data.is_dir() {
            return Ok(());
        }
        ensure_mode(&self.data, self.mode_of(&self.data))?;
        for dir in [
            self.locks(),
            self.queue(),
            self.seen(),
            self.work(),
            self.mirrors(),
            self.cache(),
            self.data.join("runs"),
            self.data.join("spool-junk"),
        ] {
            if dir.is_dir() {
                ensure_mode(&dir, self.mode_of(&dir))?;
            }
        }
        for file in [self.worker_log(), self.previous_worker_log()] {
            match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&file)
            {
                Ok(open) => make_private(&open)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Creates the directory `path` with exactly `mode`, or gives an existing one of phantom_ci's user that
/// mode. Creation asks for the mode itself, so the directory is never more open than `mode`; the
/// chmod after it only undoes what a stricter umask took away.
fn ensure_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other(format!(
            "`{}` is not a directory",
            path.display()
        )));
    }
    if meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o7777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Gives an open file of phantom_ci's user mode 0600 if it has another (a lock file or log an earlier
/// version created 0644). Works on the descriptor: no path is looked up again.
pub fn make_private(file: &std::fs::File) -> std::io::Result<()> {
    let meta = file.metadata()?;
    if meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o7777 != 0o600 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Opens (creating it 0600 if needed) a lock file that only phantom_ci's user may open, never through
/// a symbolic link; an older one made 0644 is made 0600.
pub fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    make_private(&file)?;
    Ok(file)
}

/// Takes the exclusive `flock` of the lock file `path` ([`open_private`]), waiting for it or not:
/// `None` when another process holds it and `wait` is false. The kernel drops it when its holder
/// dies, however it dies.
pub fn lock_private(
    path: &Path,
    wait: bool,
) -> std::io::Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    use nix::errno::Errno;
    use nix::fcntl::{Flock, FlockArg};
    let arg = if wait {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockExclusiveNonblock
    };
    let mut file = open_private(path)?;
    loop {
        match Flock::lock(file, arg) {
            Ok(lock) => return Ok(Some(lock)),
            Err((again, Errno::EINTR)) => file = again,
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, errno)) => return Err(std::io::Error::from(errno)),
        }
    }
}

/// The absolute form of `path`, one spelling per directory (`/var/lib/x/` and `/var/lib/./x` are
/// `/var/lib/x`): the data dir names the run cgroups and workspaces crash recovery looks for.
fn absolute(path: PathBuf) -> Result<PathBuf, String> {
    std::path::absolute(&path)
        .map(|p| p.components().collect())
        .map_err(|e| format!("cannot resolve the directory `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_directory_has_one_spelling() {
        for spelling in [
            "/var/lib/phantom_ci/",
            "/var/lib/./phantom_ci",
            "/var//lib/phantom_ci",
        ] {
            assert_eq!(
                absolute(PathBuf::from(spelling)).unwrap(),
                Path::new("/var/lib/phantom_ci")
            );
        }
    }

    #[test]
    fn directories_are_made_private_except_the_way_to_workspaces_and_mirrors() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: tmp.path().join("config"),
            data: tmp.path().join("data"),
        };
        dirs.make(&dirs.locks()).unwrap();
        dirs.make(&dirs.work().join("app")).unwrap();
        dirs.make(&dirs.mirrors()).unwrap();
        assert_eq!(mode(&dirs.data), 0o711);
        assert_eq!(mode(&dirs.locks()), 0o700);
        assert_eq!(mode(&dirs.work()), 0o711);
        assert_eq!(mode(&dirs.work().join("app")), 0o711);
        assert_eq!(mode(&dirs.mirrors()), 0o711);

        // An install of an earlier version: 0755 everywhere. The next use closes it.
        for dir in [&dirs.data, &dirs.locks()] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dirs.make(&dirs.locks()).unwrap();
        assert_eq!((mode(&dirs.data), mode(&dirs.locks())), (0o711, 0o700));
        assert!(dirs.make(tmp.path()).is_err(), "only the data dir is made");

        let file = std::fs::File::create(dirs.locks().join("old.lock")).unwrap();
        std::fs::set_permissions(
            dirs.locks().join("old.lock"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        make_private(&file).unwrap();
        assert_eq!(mode(&dirs.locks().join("old.lock")), 0o600);

        // `tighten` closes every state directory and the worker's logs, without making new ones.
        for dir in [&dirs.data, &dirs.locks(), &dirs.work()] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(dirs.worker_log(), "old\n").unwrap();
        std::fs::write(dirs.previous_worker_log(), "older\n").unwrap();
        for log in [dirs.worker_log(), dirs.previous_worker_log()] {
            std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        dirs.tighten().unwrap();
        assert_eq!(
            (mode(&dirs.data), mode(&dirs.locks()), mode(&dirs.work())),
            (0o711, 0o700, 0o711)
        );
        assert_eq!(mode(&dirs.worker_log()), 0o600);
        assert_eq!(mode(&dirs.previous_worker_log()), 0o600);
        assert!(!dirs.queue().exists());
    }
}
