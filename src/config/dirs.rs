//! Where phantom_ci reads its configuration and keeps its data (SPEC §2).

use std::path::{Path, PathBuf};

pub const CONFIG_DIR_ENV: &str = "PHANTOM_CI_CONFIG_DIR";
pub const DATA_DIR_ENV: &str = "PHANTOM_CI_DATA_DIR";

/// The config and data directories in force for this invocation.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub config: PathBuf,
    pub data: PathBuf,
}

impl Dirs {
    /// The command-line option wins over the environment variable, which wins over the platform default.
    /// The error is a usage error's message.
    pub fn resolve(config_opt: Option<PathBuf>, data_opt: Option<PathBuf>) -> Result<Dirs, String> {
        let project = directories::ProjectDirs::from("com", "helloimalemur", "phantom_ci");
        let pick = |opt: Option<PathBuf>, var: &str, default: Option<&Path>| {
            opt.or_else(|| {
                std::env::var_os(var)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| default.map(Path::to_path_buf))
        };
        let config = pick(
            config_opt,
            CONFIG_DIR_ENV,
            project.as_ref().map(|p| p.config_dir()),
        );
        let data = pick(
            data_opt,
            DATA_DIR_ENV,
            project.as_ref().map(|p| p.data_dir()),
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
}

fn absolute(path: PathBuf) -> Result<PathBuf, String> {
    std::path::absolute(&path)
        .map_err(|e| format!("cannot resolve the directory `{}`: {e}", path.display()))
}
