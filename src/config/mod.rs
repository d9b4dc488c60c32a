//! `Repo.toml`: the operator's configuration, trusted (SPEC §2.1).
//!
//! Parsed in two layers, as cargo-deny and typos do: serde structs that mirror the file and reject unknown
//! keys, then [`Repo`], the validated form the rest of phantom_ci uses. Every error names the file, line
//! and column.

pub mod dirs;
pub mod edit;
pub mod quantities;
pub mod secrets;
pub mod workflow;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, de};
use toml::Spanned;

use crate::config::quantities::{ByteSize, HumanDuration};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
pub const DEFAULT_LOG_LIMIT: u64 = 64 << 20;
pub const DEFAULT_KEEP_RUNS: u32 = 100;
pub const DEFAULT_BRANCH: &str = "master";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` line {line}, column {column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Every repo of `Repo.toml`, in file order.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub repos: Vec<Repo>,
}

/// One validated `[name]` section of `Repo.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Repo {
    pub name: String,
    pub location: Location,
    pub branch: String,
    pub run_as: Option<String>,
    pub sandbox: Sandbox,
    pub network: bool,
    pub timeout: Duration,
    pub env: Vec<(String, String)>,
    pub pass_env: Vec<String>,
    pub keep_workspace: KeepWorkspace,
    pub keep_runs: u32,
    pub notify: Notify,
    pub require_signed: bool,
    pub allowed_signers: Option<PathBuf>,
    pub workflow: Option<PathBuf>,
    pub sandbox_root: Option<PathBuf>,
    pub limits: Limits,
    pub log_limit: u64,
}

impl Repo {
    /// A repo that is not in `Repo.toml` (`phantom_ci run <path>`): every setting at its default.
    pub fn ad_hoc(name: String, path: PathBuf, branch: String) -> Repo {
        Repo {
            name,
            location: Location::Local(path),
            branch,
            run_as: None,
            sandbox: Sandbox::None,
            network: false,
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
            pass_env: Vec::new(),
            keep_workspace: KeepWorkspace::Never,
            keep_runs: DEFAULT_KEEP_RUNS,
            notify: Notify::Always,
            require_signed: false,
            allowed_signers: None,
            workflow: None,
            sandbox_root: None,
            limits: Limits::default(),
            log_limit: DEFAULT_LOG_LIMIT,
        }
    }
}

/// Where a repo lives: a local repository (bare or not) or a URL to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Url(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Url(url) => f.write_str(url),
        }
    }
}

impl Location {
    pub fn parse(text: &str) -> Result<Location, String> {
        if text.is_empty() {
            return Err("`path` is empty; give the repository's absolute path or URL".into());
        }
        if text.contains('\0') || text.contains('\n') {
            return Err("`path` contains a NUL or newline character".into());
        }
        let is_url = ["file://", "https://", "http://", "ssh://", "git://"]
            .iter()
            .any(|scheme| text.starts_with(scheme));
        // scp-like ssh syntax: `user@host:path` or `host:path`, a colon before any slash.
        let is_scp = !text.starts_with('/')
            && text
                .find(':')
                .is_some_and(|colon| !text[..colon].contains('/') && colon > 0);
        if is_url || is_scp {
            return Ok(Location::Url(text.to_string()));
        }
        let path = Path::new(text);
        if !path.is_absolute() {
            return Err(format!(
                "`path` `{text}` is relative; write the repository's absolute path"
            ));
        }
        Ok(Location::Local(path.to_path_buf()))
    }

    /// The last component without `.git`: the default repo name for `add`.
    pub fn default_name(&self) -> String {
        let text = self.to_string();
        let last = text
            .trim_end_matches('/')
            .rsplit(['/', ':'])
            .next()
            .unwrap_or_default()
            .to_string();
        last.strip_suffix(".git").unwrap_or(&last).to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sandbox {
    None,
    Bwrap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepWorkspace {
    Never,
    OnFailure,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Notify {
    Always,
    Failure,
    Change,
    Never,
}

/// Resource limits applied to every step (`limits = { … }`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub nofile: Option<u64>,
    pub nproc: Option<u64>,
    #[serde(default, deserialize_with = "seconds", serialize_with = "ser_seconds")]
    pub cpu: Option<Duration>,
    #[serde(default, deserialize_with = "bytes")]
    pub fsize: Option<u64>,
    #[serde(default, rename = "as", deserialize_with = "bytes")]
    pub address_space: Option<u64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Ok(Some(HumanDuration::deserialize(d)?.0))
}

fn ser_seconds<S: serde::Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
}

fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Some(ByteSize::deserialize(d)?.0))
}

/// A repo name: `[A-Za-z0-9][A-Za-z0-9_-]*`. It names a directory under the data dir, so nothing else.
pub fn validate_repo_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= 100
    {
        Ok(())
    } else {
        Err(format!(
            "invalid repo name `{}`: use letters, digits, `_` and `-`, starting with a letter or digit",
            crate::describe::terminal(name)
        ))
    }
}

/// A branch name git accepts that also makes a safe path below `workflow/`: no `.` or `..` component.
pub fn validate_branch(branch: &str) -> Result<(), String> {
    let refname = format!("refs/heads/{branch}");
    let safe_path = branch.split('/').all(|part| part != "." && part != "..");
    if !branch.is_empty() && safe_path && git2::Reference::is_valid_name(&refname) {
        Ok(())
    } else {
        Err(format!(
            "invalid branch name `{}`",
            crate::describe::terminal(branch)
        ))
    }
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn validate_env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!(
            "invalid environment variable name `{}`",
            crate::describe::terminal(name)
        ))
    }
}

/// Deserializes a string and checks it, so that the TOML parser reports the value's line and column.
macro_rules! checked_string {
    ($name:ident, $check:expr) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        struct $name(String);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                let check: fn(&str) -> Result<(), String> = $check;
                check(&text).map_err(de::Error::custom)?;
                Ok($name(text))
            }
        }
    };
}

checked_string!(RepoName, validate_repo_name);
checked_string!(BranchName, validate_branch);
checked_string!(EnvName, validate_env_name);
checked_string!(UserName, |name| {
    if name.is_empty() || name.contains(['\0', '/', ':', '\n']) {
        Err(format!(
            "invalid user name `{}`",
            crate::describe::terminal(name)
        ))
    } else {
        Ok(())
    }
});
checked_string!(AbsolutePath, |path| {
    if Path::new(path).is_absolute() && !path.contains('\0') {
        Ok(())
    } else {
        Err(format!("`{path}` is not an absolute path"))
    }
});

impl<'de> Deserialize<'de> for Location {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Location::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepo {
    path: Location,
    target_branch: Option<BranchName>,
    run_as: Option<UserName>,
    sandbox: Option<Sandbox>,
    network: Option<Spanned<bool>>,
    timeout: Option<HumanDuration>,
    env: Option<IndexMap<EnvName, String>>,
    pass_env: Option<Vec<EnvName>>,
    keep_workspace: Option<KeepWorkspace>,
    keep_runs: Option<Spanned<u32>>,
    notify: Option<Notify>,
    require_signed: Option<Spanned<bool>>,
    allowed_signers: Option<AbsolutePath>,
    workflow: Option<AbsolutePath>,
    sandbox_root: Option<Spanned<AbsolutePath>>,
    limits: Option<Limits>,
    log_limit: Option<Spanned<ByteSize>>,
}

impl Config {
    /// Reads `Repo.toml`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let invalid = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = line_column(text, span.map_or(0, |s| s.start));
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: IndexMap<Spanned<RepoName>, Spanned<RawRepo>> =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().trim().to_string()))?;
        let mut repos = Vec::with_capacity(raw.len());
        for (name, section) in raw {
            let name = name.into_inner().0;
            let raw = section.into_inner();
            let sandbox = raw.sandbox.unwrap_or(Sandbox::None);
            if let Some(network) = &raw.network
                && *network.get_ref()
                && sandbox != Sandbox::Bwrap
            {
                return Err(invalid(
                    Some(network.span()),
                    "`network` only applies with `sandbox = \"bwrap\"`: without the sandbox \
                     steps always have the host's network"
                        .into(),
                ));
            }
            if let Some(root) = &raw.sandbox_root
                && sandbox != Sandbox::Bwrap
            {
                return Err(invalid(
                    Some(root.span()),
                    "`sandbox_root` only applies with `sandbox = \"bwrap\"`".into(),
                ));
            }
            let require_signed = raw.require_signed.as_ref().is_some_and(|r| *r.get_ref());
            if require_signed && raw.allowed_signers.is_none() {
                let span = raw.require_signed.as_ref().map(Spanned::span);
                return Err(invalid(
                    span,
                    "`require_signed = true` needs `allowed_signers = \"/path/to/allowed_signers\"`"
                        .into(),
                ));
            }
            if let Some(keep) = &raw.keep_runs
                && *keep.get_ref() == 0
            {
                return Err(invalid(
                    Some(keep.span()),
                    "`keep_runs` must be at least 1".into(),
                ));
            }
            if let Some(limit) = &raw.log_limit
                && limit.get_ref().0 < 1024
            {
                return Err(invalid(
                    Some(limit.span()),
                    "`log_limit` must be at least 1KiB".into(),
                ));
            }
            repos.push(Repo {
                name,
                location: raw.path,
                branch: raw
                    .target_branch
                    .map_or_else(|| DEFAULT_BRANCH.to_string(), |b| b.0),
                run_as: raw.run_as.map(|u| u.0),
                sandbox,
                network: raw.network.is_some_and(Spanned::into_inner),
                timeout: raw.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
                env: raw
                    .env
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.0, v))
                    .collect(),
                pass_env: dedup(raw.pass_env.unwrap_or_default().into_iter().map(|n| n.0)),
                keep_workspace: raw.keep_workspace.unwrap_or(KeepWorkspace::Never),
                keep_runs: raw.keep_runs.map_or(DEFAULT_KEEP_RUNS, Spanned::into_inner),
                notify: raw.notify.unwrap_or(Notify::Always),
                require_signed,
                allowed_signers: raw.allowed_signers.map(|p| PathBuf::from(p.0)),
                workflow: raw.workflow.map(|p| PathBuf::from(p.0)),
                sandbox_root: raw.sandbox_root.map(|p| PathBuf::from(p.into_inner().0)),
                limits: raw.limits.unwrap_or_default(),
                log_limit: raw
                    .log_limit
                    .map_or(DEFAULT_LOG_LIMIT, |l| l.into_inner().0),
            });
        }
        Ok(Config { repos })
    }

    pub fn get(&self, name: &str) -> Option<&Repo> {
        self.repos.iter().find(|r| r.name == name)
    }
}

fn dedup(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    names.filter(|n| seen.insert(n.clone())).collect()
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/Repo.toml"), text)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_section_gets_defaults() {
        let config = parse("[app]\npath = \"/srv/git/app.git\"\n").unwrap();
        let repo = &config.repos[0];
        assert_eq!(repo.name, "app");
        assert_eq!(repo.branch, "master");
        assert_eq!(repo.timeout, DEFAULT_TIMEOUT);
        assert_eq!(repo.location, Location::Local("/srv/git/app.git".into()));
    }

    #[test]
    fn every_key() {
        let text = r#"
[app]
path = "git@example.org:team/app.git"
target_branch = "release/1.x"
run_as = "ci"
sandbox = "bwrap"
network = true
timeout = "90m"
env = { RUSTFLAGS = "-Dwarnings" }
pass_env = ["CARGO_HOME", "CARGO_HOME"]
keep_workspace = "on_failure"
keep_runs = 5
notify = "change"
require_signed = true
allowed_signers = "/etc/phantom_ci/allowed_signers"
workflow = "/etc/phantom_ci/app.toml"
sandbox_root = "/srv/roots/bookworm"
limits = { nofile = 1024, nproc = 512, cpu = "30m", fsize = "10GiB", as = "8GiB" }
log_limit = "1MiB"
"#;
        let repo = parse(text).unwrap().repos.remove(0);
        assert_eq!(
            repo.location,
            Location::Url("git@example.org:team/app.git".into())
        );
        assert_eq!(repo.branch, "release/1.x");
        assert_eq!(repo.pass_env, vec!["CARGO_HOME"]);
        assert_eq!(repo.limits.address_space, Some(8 << 30));
        assert_eq!(repo.limits.cpu, Some(Duration::from_secs(1800)));
        assert_eq!(repo.keep_workspace, KeepWorkspace::OnFailure);
        assert_eq!(repo.log_limit, 1 << 20);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = error("[app]\npath = \"/x\"\nbogus = 1\n");
        assert!(e.contains("`/etc/Repo.toml` line 3, column 1"), "{e}");
        assert!(e.contains("unknown field `bogus`"), "{e}");

        let e = error("[app]\npath = \"/x\"\ntimeout = \"soon\"\n");
        assert!(e.contains("line 3, column 11"), "{e}");
        assert!(e.contains("\"10m\""), "{e}");

        let e = error("[app]\npath = \"/x\"\ntarget_branch = \"../../etc\"\n");
        assert!(
            e.contains("line 3") && e.contains("invalid branch name"),
            "{e}"
        );

        let e = error("[bad.name]\npath = \"/x\"\n");
        assert!(e.contains("line 1"), "{e}");

        let e = error("[app]\npath = \"relative/dir\"\n");
        assert!(e.contains("absolute"), "{e}");

        let e = error("[app]\npath = \"/x\"\nnetwork = true\n");
        assert!(e.contains("line 3") && e.contains("bwrap"), "{e}");

        let e = error("[app]\npath = \"/x\"\nrequire_signed = true\n");
        assert!(e.contains("allowed_signers"), "{e}");

        let e = error("[app]\npath = \"/x\"\nenv = { \"A B\" = \"1\" }\n");
        assert!(e.contains("invalid environment variable name"), "{e}");

        let e = error("[app]\npath = \"/x\"\n[app]\npath = \"/y\"\n");
        assert!(e.contains("line 3"), "{e}");

        let e = error("[app]\n");
        assert!(e.contains("missing field `path`"), "{e}");
    }

    #[test]
    fn default_names() {
        let name = |s: &str| Location::parse(s).unwrap().default_name();
        assert_eq!(name("/srv/git/app.git"), "app");
        assert_eq!(name("https://example.org/team/tool.git/"), "tool");
        assert_eq!(name("git@example.org:tool.git"), "tool");
        assert_eq!(name("file:///srv/x"), "x");
    }

    #[test]
    fn branch_names() {
        assert!(validate_branch("feature/x").is_ok());
        assert!(validate_branch("a/../b").is_err());
        assert!(validate_branch("..").is_err());
        assert!(validate_branch("x y").is_err());
    }
}
