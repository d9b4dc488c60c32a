//! `Repo.toml`: the operator's configuration, trusted (SPEC §2.1).
//!
//! Parsed in two layers, as cargo-deny and typos do: serde structs that mirror the file and reject unknown
//! keys, then [`Repo`], the validated form the rest of phantom_ci uses. Every error names the file, line
//! and column.

pub mod dirs;
pub mod edit;
pub mod pool;
pub mod problems;
pub mod quantities;
mod repo;
pub mod secrets;
pub mod ssh_url;
pub mod workflow;

pub use repo::{Branches, KeepWorkspace, Limits, Location, Notify, Repo, Sandbox, split_password};

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, de};
use toml::Spanned;

use crate::config::problems::{Machine, Problem};
use crate::config::quantities::{ByteSize, Count, HumanDuration, KeepFor};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
pub const DEFAULT_LOG_LIMIT: u64 = 64 << 20;
pub const DEFAULT_KEEP_RUNS: u32 = 100;
pub const DEFAULT_BRANCH: &str = "master";
/// The most a checkout may write when `checkout_limit` is not set (SPEC §4.8).
pub const DEFAULT_CHECKOUT_LIMIT: u64 = 4 << 30;
/// The smallest `checkout_limit` accepted: every file counts at least one 4 KiB block.
pub const MIN_CHECKOUT_LIMIT: u64 = 1 << 20;
/// `keep_failed`: how long a failed run's workspace is kept by default (SPEC §9).
pub const DEFAULT_KEEP_FAILED: Duration = Duration::from_secs(30 * 60);
/// How large a repo's build cache may grow when `cache_limit` is not set (SPEC §6).
pub const DEFAULT_CACHE_LIMIT: u64 = 10 << 30;
/// The most files and directories of a run's artifacts kept when `artifact_files` is not set.
pub const DEFAULT_ARTIFACT_FILES: u64 = 10_000;

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

/// The top-level keys of `Repo.toml` that are not repo sections (SPEC §6, §8).
pub const MAX_PARALLEL_RUNS: &str = "max_parallel_runs";
/// The other: how many steps, of all runs, may go on at once (SPEC §8).
pub const MAX_PARALLEL_STEPS: &str = "max_parallel_steps";
/// The top-level key naming where the report folder is served (SPEC §9).
pub const REPORT_URL: &str = "report_url";

/// Every repo of `Repo.toml`, in file order, and the machine-wide settings before the first section.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub repos: Vec<Repo>,
    /// `max_parallel_runs`: how many runs, of all repos, may go on at once; `None` when not set
    /// (see [`Config::parallel_runs`]).
    pub max_parallel_runs: Option<usize>,
    /// `max_parallel_steps`: how many steps, of all runs, may go on at once; `None` when not set
    /// (see [`Config::parallel_steps`]).
    pub max_parallel_steps: Option<usize>,
    /// `report_url`: the URL where the report folder is served, without its trailing `/`; chat posts
    /// and the generic webhook link a run's page under it (SPEC §9).
    pub report_url: Option<String>,
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

/// The number of CPUs (at least 1): the default of `max_parallel_runs`, `max_parallel_steps` and
/// `parallel_steps`.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
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

/// `target_branch`: one name, or a list of names and `*` patterns (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq)]
struct BranchList(Vec<String>);

impl<'de> Deserialize<'de> for BranchList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = BranchList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a branch name such as \"main\", or a list such as [\"main\", \"release/*\"]",
                )
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<BranchList, E> {
                validate_branch_pattern(text).map_err(E::custom)?;
                Ok(BranchList(vec![text.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<BranchList, A::Error> {
                let mut list: Vec<String> = Vec::new();
                while let Some(text) = seq.next_element::<String>()? {
                    validate_branch_pattern(&text).map_err(de::Error::custom)?;
                    if !list.contains(&text) {
                        list.push(text);
                    }
                }
                if list.is_empty() {
                    return Err(de::Error::custom(
                        "`target_branch` is an empty list: name at least one branch (or leave the key out for \"master\")",
                    ));
                }
                Ok(BranchList(list))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A `target_branch` entry: a branch name, or a pattern with one `*` that is a branch name once the
/// `*` is replaced (so `release/*` and `feature-*`, never `release/**` or `../*`).
pub fn validate_branch_pattern(text: &str) -> Result<(), String> {
    match text.matches('*').count() {
        0 => validate_branch(text),
        1 => validate_branch(&text.replace('*', "x")).map_err(|_| {
            format!(
                "invalid branch pattern `{}`: a pattern is a branch name with one `*` in it",
                crate::describe::terminal(text)
            )
        }),
        _ => Err(format!(
            "invalid branch pattern `{}`: a pattern takes one `*` (it matches any characters, `/` too, as in git's refspecs)",
            crate::describe::terminal(text)
        )),
    }
}

checked_string!(EnvName, validate_env_name);
checked_string!(PoolName, pool::validate_pool_name);
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

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a repo section: `[name]` on a line of its own, then `path = \"…\"` below it"
)]
struct RawRepo {
    path: Spanned<Location>,
    target_branch: Option<BranchList>,
    run_as: Option<Spanned<UserName>>,
    sandbox: Option<Sandbox>,
    network: Option<Spanned<bool>>,
    timeout: Option<HumanDuration>,
    env: Option<IndexMap<EnvName, String>>,
    pass_env: Option<Vec<EnvName>>,
    keep_workspace: Option<KeepWorkspace>,
    keep_failed: Option<KeepFor>,
    keep_runs: Option<Spanned<Count>>,
    notify: Option<Notify>,
    require_signed: Option<Spanned<bool>>,
    allowed_signers: Option<AbsolutePath>,
    workflow: Option<AbsolutePath>,
    sandbox_root: Option<Spanned<AbsolutePath>>,
    limits: Option<Limits>,
    log_limit: Option<Spanned<ByteSize>>,
    checkout_limit: Option<Spanned<ByteSize>>,
    cache: Option<bool>,
    cache_limit: Option<Spanned<ByteSize>>,
    parallel_steps: Option<Spanned<Count>>,
    pool: Option<Spanned<PoolName>>,
    claim: Option<Spanned<pool::ClaimUrl>>,
    claim_ttl: Option<Spanned<HumanDuration>>,
    claim_key: Option<Spanned<AbsolutePath>>,
    artifact_files: Option<Spanned<Count>>,
    notes: Option<Spanned<bool>>,
    base_tree: Option<bool>,
}

/// `report_url`: an `http://` or `https://` URL without spaces, quotes or control characters; kept
/// without its trailing `/`.
fn parse_report_url(value: &toml::Value) -> Result<String, String> {
    let usage = format!(
        "`{REPORT_URL}` is the URL where the report folder is served, such as \
         `{REPORT_URL} = \"https://ci.example.org/\"`"
    );
    let Some(url) = value.as_str() else {
        return Err(usage);
    };
    let scheme = url.starts_with("https://") || url.starts_with("http://");
    let clean = !url.chars().any(|c| {
        c.is_control() || c.is_whitespace() || matches!(c, '"' | '<' | '>' | '\\' | '`' | '|')
    });
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    if !scheme || !clean || rest.is_empty() || rest.contains(['?', '#']) {
        return Err(format!(
            "{usage}: `{}` is not one (http or https, no spaces, query or fragment)",
            crate::describe::terminal(url)
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Reads `Repo.toml` as text; a missing file is `None`. A file that is not UTF-8 is an error naming
/// the line and column of the first byte that is not.
pub fn read_repo_toml(path: &Path) -> Result<Option<String>, ConfigError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Some(text)),
        Err(e) => {
            let bytes = e.as_bytes();
            let valid = e.utf8_error().valid_up_to();
            // The part before the bad byte is valid UTF-8 by definition.
            let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
            let (line, column) = line_column(before, valid);
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message: format!(
                    "the file is not valid UTF-8 (byte 0x{:02x}); save it as UTF-8",
                    bytes[valid]
                ),
            })
        }
    }
}

impl Config {
    /// Reads `Repo.toml`; a missing file is an empty configuration. Besides the file itself, it checks
    /// what the file names on this machine: a repo whose local `path` or `run_as` user does not
    /// exist gets [`Repo::problems`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match read_repo_toml(path)? {
            Some(text) => Config::parse_on(path, &text, &problems::ThisMachine),
            None => Ok(Config::default()),
        }
    }

    /// Parses a `Repo.toml` text on its own, without looking at the machine.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_on(path, text, &problems::NoMachine)
    }

    /// Parses a `Repo.toml` text and checks the paths and users it names on `machine`.
    pub fn parse_on(
        path: &Path,
        text: &str,
        machine: &dyn problems::Machine,
    ) -> Result<Config, ConfigError> {
        let machine = &problems::UsersOnce::new(machine);
        let at =
            |span: Option<std::ops::Range<usize>>| line_column(text, span.map_or(0, |s| s.start));
        let invalid = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = at(span);
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        // First pass: the syntax, and that every top-level key is a section (a table) but
        // `max_parallel_runs` and `max_parallel_steps`.
        let top: IndexMap<Spanned<String>, Spanned<toml::Value>> =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().trim().to_string()))?;
        let mut max_parallel_runs = None;
        let mut max_parallel_steps = None;
        let mut report_url = None;
        let mut sections_text = std::borrow::Cow::Borrowed(text);
        // A top-level key read here: blanked out of the text the sections are read from, every other
        // offset unchanged.
        let blank = |text: std::borrow::Cow<'_, str>, span: std::ops::Range<usize>| {
            let mut bytes = text.into_owned().into_bytes();
            for byte in &mut bytes[span] {
                if *byte != b'\n' {
                    *byte = b' ';
                }
            }
            std::borrow::Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
        };
        for (key, value) in &top {
            if key.get_ref() == REPORT_URL && !value.get_ref().is_table() {
                report_url = Some(
                    parse_report_url(value.get_ref())
                        .map_err(|message| invalid(Some(value.span()), message))?,
                );
                sections_text = blank(sections_text, key.span().start..value.span().end);
                continue;
            }
            let (setting, what) = match key.get_ref().as_str() {
                MAX_PARALLEL_RUNS => (&mut max_parallel_runs, "run"),
                MAX_PARALLEL_STEPS => (&mut max_parallel_steps, "step"),
                _ => (&mut None, ""),
            };
            if !what.is_empty() && !value.get_ref().is_table() {
                let name = key.get_ref();
                *setting = Some(match value.get_ref().as_integer() {
                    Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
                    Some(_) => {
                        return Err(invalid(
                            Some(value.span()),
                            format!(
                                "`{name}` must be at least 1 (leave it out for one {what} per CPU)"
                            ),
                        ));
                    }
                    None => {
                        return Err(invalid(
                            Some(value.span()),
                            format!("`{name}` is a whole number of {what}s, such as `{name} = 2`"),
                        ));
                    }
                });
                // The sections are read without it.
                sections_text = blank(sections_text, key.span().start..value.span().end);
                continue;
            }
            if !value.get_ref().is_table() {
                return Err(invalid(
                    Some(key.span()),
                    format!(
                        "`{} = …` is not a repo section: every top-level entry of Repo.toml is a \
                         repo, written `[name]` on a line of its own with `path = \"…\"` and the \
                         repo's other keys below it",
                        crate::describe::terminal(key.get_ref())
                    ),
                ));
            }
        }
        // Second pass: each section's keys.
        let raw: IndexMap<Spanned<RepoName>, Spanned<RawRepo>> = toml::from_str(&sections_text)
            .map_err(|e| invalid(e.span(), e.message().trim().to_string()))?;
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
            let keep_runs = match &raw.keep_runs {
                None => DEFAULT_KEEP_RUNS,
                Some(keep) => match u32::try_from(keep.get_ref().0) {
                    Ok(0) => {
                        return Err(invalid(
                            Some(keep.span()),
                            "`keep_runs` must be at least 1".into(),
                        ));
                    }
                    Ok(keep) => keep,
                    Err(_) => {
                        return Err(invalid(
                            Some(keep.span()),
                            format!("`keep_runs` must be at most {}", u32::MAX),
                        ));
                    }
                },
            };
            if let Some(limit) = &raw.log_limit
                && limit.get_ref().0 < 1024
            {
                return Err(invalid(
                    Some(limit.span()),
                    "`log_limit` must be at least 1KiB".into(),
                ));
            }
            if let Some(limit) = &raw.checkout_limit
                && limit.get_ref().0 < MIN_CHECKOUT_LIMIT
            {
                return Err(invalid(
                    Some(limit.span()),
                    "`checkout_limit` must be at least 1MiB".into(),
                ));
            }
            let parallel_steps = match &raw.parallel_steps {
                None => None,
                Some(n) if n.get_ref().0 == 0 => {
                    return Err(invalid(
                        Some(n.span()),
                        "`parallel_steps` must be at least 1 (leave it out for one step per CPU)"
                            .into(),
                    ));
                }
                Some(n) => Some(usize::try_from(n.get_ref().0).unwrap_or(usize::MAX)),
            };
            if let Some(files) = &raw.artifact_files
                && files.get_ref().0 == 0
            {
                return Err(invalid(
                    Some(files.span()),
                    "`artifact_files` must be at least 1 (a step that keeps no artifacts writes none)"
                        .into(),
                ));
            }
            if let Some(notes) = &raw.notes
                && *notes.get_ref()
                && let Location::Url(_) = raw.path.get_ref()
            {
                return Err(invalid(
                    Some(notes.span()),
                    "`notes = true` only applies to a repository configured by path: phantom_ci \
                     writes notes into the repository itself, and a URL repo's is elsewhere (write \
                     `notes = true` on the central host)"
                        .into(),
                ));
            }
            let cache = raw.cache.unwrap_or(false);
            if let Some(limit) = &raw.cache_limit
                && !cache
            {
                return Err(invalid(
                    Some(limit.span()),
                    "`cache_limit` only applies with `cache = true`".into(),
                ));
            }
            let pool = pool_settings(&raw, &invalid)?;
            let problem = |key: &'static str, span: std::ops::Range<usize>, message: String| {
                let (line, column) = line_column(text, key_start(text, span.start));
                Problem {
                    key,
                    file: path.to_path_buf(),
                    line,
                    column,
                    message,
                }
            };
            let mut found = Vec::new();
            if let Location::Local(local) = raw.path.get_ref()
                && machine.path_exists(local) == Some(false)
            {
                found.push(problem(
                    "path",
                    raw.path.span(),
                    problems::missing_path(&name, local),
                ));
            }
            if let Some(user) = &raw.run_as
                && machine.user_exists(&user.get_ref().0) == Some(false)
            {
                found.push(problem(
                    "run_as",
                    user.span(),
                    problems::missing_user(&name, &user.get_ref().0),
                ));
            }
            repos.push(Repo {
                name,
                location: raw.path.into_inner(),
                branches: Branches::new(
                    raw.target_branch
                        .map_or_else(|| vec![DEFAULT_BRANCH.to_string()], |b| b.0),
                ),
                run_as: raw.run_as.map(|u| u.into_inner().0),
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
                // `keep_workspace = "on_failure"` is the old name of `keep_failed` at its default.
                keep_workspace: match raw.keep_workspace {
                    None | Some(KeepWorkspace::OnFailure) => KeepWorkspace::Never,
                    Some(other) => other,
                },
                keep_failed: raw.keep_failed.map_or(Some(DEFAULT_KEEP_FAILED), |k| k.0),
                keep_runs,
                notify: raw.notify.unwrap_or(Notify::Always),
                require_signed,
                allowed_signers: raw.allowed_signers.map(|p| PathBuf::from(p.0)),
                workflow: raw.workflow.map(|p| PathBuf::from(p.0)),
                sandbox_root: raw.sandbox_root.map(|p| PathBuf::from(p.into_inner().0)),
                limits: raw.limits.unwrap_or_default(),
                log_limit: raw
                    .log_limit
                    .map_or(DEFAULT_LOG_LIMIT, |l| l.into_inner().0),
                checkout_limit: raw
                    .checkout_limit
                    .map_or(DEFAULT_CHECKOUT_LIMIT, |l| l.into_inner().0),
                cache,
                cache_limit: raw
                    .cache_limit
                    .map_or(DEFAULT_CACHE_LIMIT, |l| l.into_inner().0),
                parallel_steps,
                pool,
                artifact_files: raw
                    .artifact_files
                    .map_or(DEFAULT_ARTIFACT_FILES, |n| n.into_inner().0),
                notes: raw.notes.is_some_and(Spanned::into_inner),
                base_tree: raw.base_tree.unwrap_or(true),
                problems: found,
            });
        }
        Ok(Config {
            repos,
            max_parallel_runs,
            max_parallel_steps,
            report_url,
        })
    }

    /// How many runs may go on at once: `max_parallel_runs`, else the number of CPUs (at least 1).
    pub fn parallel_runs(&self) -> usize {
        self.max_parallel_runs.unwrap_or_else(cpus)
    }

    /// How many steps of all runs may go on at once: `max_parallel_steps`, else the number of CPUs.
    pub fn parallel_steps(&self) -> usize {
        self.max_parallel_steps.unwrap_or_else(cpus)
    }

    /// The URL of run `run` of `repo`'s page, with `report_url`.
    pub fn run_url(&self, repo: &str, run: u64) -> Option<String> {
        self.report_url
            .as_ref()
            .map(|base| format!("{base}/{repo}/{run}.html"))
    }

    pub fn get(&self, name: &str) -> Option<&Repo> {
        self.repos.iter().find(|r| r.name == name)
    }

    /// The repos with a problem (see [`Repo::problems`]).
    pub fn broken(&self) -> impl Iterator<Item = &Repo> {
        self.repos.iter().filter(|r| !r.problems.is_empty())
    }
}

/// The pool keys of a section: `pool` needs `claim`; `claim`, `claim_ttl` and `claim_key` need `pool`.
fn pool_settings(
    raw: &RawRepo,
    invalid: &dyn Fn(Option<std::ops::Range<usize>>, String) -> ConfigError,
) -> Result<Option<pool::Pool>, ConfigError> {
    let Some(name) = &raw.pool else {
        let stray = [
            raw.claim.as_ref().map(|c| ("claim", c.span())),
            raw.claim_ttl.as_ref().map(|c| ("claim_ttl", c.span())),
            raw.claim_key.as_ref().map(|c| ("claim_key", c.span())),
        ];
        if let Some((key, span)) = stray.into_iter().flatten().next() {
            return Err(invalid(
                Some(span),
                format!(
                    "`{key}` only applies with `pool = \"<name>\"`: the hosts of a pool claim each \
                     commit on the central host before running it"
                ),
            ));
        }
        return Ok(None);
    };
    let Some(claim) = &raw.claim else {
        return Err(invalid(
            Some(name.span()),
            "`pool` needs `claim = \"ssh://USER@HOST[:PORT]\"`: the central host's account whose \
             `authorized_keys` binds this host's key to `phantom_ci claim --host <this host>`"
                .into(),
        ));
    };
    let ttl = match &raw.claim_ttl {
        None => pool::DEFAULT_CLAIM_TTL,
        Some(ttl) if ttl.get_ref().0 < pool::MIN_CLAIM_TTL => {
            return Err(invalid(
                Some(ttl.span()),
                format!(
                    "`claim_ttl` must be at least {}s: a claim is renewed three times per \
                     `claim_ttl`",
                    pool::MIN_CLAIM_TTL.as_secs()
                ),
            ));
        }
        Some(ttl) => ttl.get_ref().0,
    };
    Ok(Some(pool::Pool {
        name: name.get_ref().0.clone(),
        claim: claim.get_ref().0.clone(),
        ttl,
        key: raw
            .claim_key
            .as_ref()
            .map(|k| PathBuf::from(&k.get_ref().0)),
    }))
}

fn dedup(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    names.filter(|n| seen.insert(n.clone())).collect()
}

/// Where the key of the value at `value_start` starts (`run_as` in `run_as = "ci"`), for messages
/// that point at a key; the value's own offset when the text is not `key = value` on one line.
fn key_start(text: &str, value_start: usize) -> usize {
    let before = text.get(..value_start).unwrap_or_default();
    let Some(rest) = before.trim_end_matches([' ', '\t']).strip_suffix('=') else {
        return value_start;
    };
    let rest = rest.trim_end_matches([' ', '\t']);
    let bare = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let key = rest.len() - rest.trim_end_matches(bare).len();
    if key == 0 {
        return value_start;
    }
    rest.len() - key
}

/// The lines of a text, to name the line of many byte offsets: found once, then each in O(log n) —
/// a workflow names the line of every key it reads, and a 1 MiB one has 100,000 of them (scanning
/// from the start each time took minutes).
pub struct Lines {
    /// The byte offset of each line's first byte.
    starts: Vec<usize>,
}

impl Lines {
    pub fn new(text: &str) -> Lines {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { starts }
    }

    /// The 1-based line of byte `offset` (the last line for an offset past the end).
    pub fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|start| *start <= offset).max(1)
    }
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

    #[test]
    fn lines_name_the_same_line_as_a_scan_from_the_start() {
        for text in [
            "",
            "a",
            "a\n",
            "\n\n",
            "[0]\nrun = \"é\"\n\n[1]\nrun=\"x\"",
            "x\ny\nz\n",
        ] {
            let lines = Lines::new(text);
            // The parser's offsets are at characters, never inside one.
            for offset in
                (0..=text.len() + 2).filter(|o| *o > text.len() || text.is_char_boundary(*o))
            {
                assert_eq!(
                    lines.line(offset),
                    line_column(text, offset).0,
                    "{text:?} at {offset}"
                );
            }
        }
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn max_parallel_steps_and_parallel_steps_bound_steps_side_by_side() {
        let text = "max_parallel_steps = 3\nmax_parallel_runs = 2\n[app]\npath = \"/a\"\nparallel_steps = 2\n";
        let config = parse(text).unwrap();
        assert_eq!(
            (config.max_parallel_steps, config.parallel_steps()),
            (Some(3), 3)
        );
        assert_eq!(config.max_parallel_runs, Some(2));
        assert_eq!(config.repos[0].parallel_steps, Some(2));
        let default = parse("[app]\npath = \"/a\"\n").unwrap();
        assert_eq!(default.repos[0].parallel_steps, None);
        assert!(default.parallel_steps() >= 1);
        assert_eq!(
            error("max_parallel_steps = 0\n"),
            "`/etc/Repo.toml` line 1, column 22: `max_parallel_steps` must be at least 1 (leave \
             it out for one step per CPU)"
        );
        assert!(error("max_parallel_steps = \"x\"\n").contains("whole number of steps"));
        assert!(
            error("[app]\npath = \"/a\"\nparallel_steps = 0\n")
                .contains("line 3, column 18: `parallel_steps` must be at least 1")
        );
    }

    #[test]
    fn max_parallel_runs_is_the_one_top_level_key() {
        let text = "# machine-wide\nmax_parallel_runs = 2 # two at once\n\n[app]\npath = \"/srv/app.git\"\n";
        let config = parse(text).unwrap();
        assert_eq!(config.max_parallel_runs, Some(2));
        assert_eq!(config.parallel_runs(), 2);
        assert_eq!(config.repos[0].name, "app");
        let default = parse("[app]\npath = \"/srv/app.git\"\n").unwrap();
        assert_eq!(default.max_parallel_runs, None);
        assert!(default.parallel_runs() >= 1);
        assert_eq!(
            error("\nmax_parallel_runs = 0\n[app]\npath = \"/a\"\n"),
            "`/etc/Repo.toml` line 2, column 21: `max_parallel_runs` must be at least 1 (leave it \
             out for one run per CPU)"
        );
        assert!(error("max_parallel_runs = \"2\"\n").contains("line 1, column 21"));
        assert!(error("max_parallel_runs = -1\n").contains("must be at least 1"));
        // Any other top-level key is still not a section.
        assert!(error("max_runs = 2\n").contains("is not a repo section"));
        // After a section header, it is a key of that section: unknown there.
        assert!(
            error("[app]\npath = \"/a\"\nmax_parallel_runs = 2\n").contains("max_parallel_runs")
        );
    }

    #[test]
    fn report_url_is_a_top_level_key_and_notes_need_a_path() {
        let text = "report_url = \"https://ci.example.org/\"\nmax_parallel_runs = 2\n[app]\npath = \"/a\"\nnotes = true\n";
        let config = parse(text).unwrap();
        assert_eq!(config.report_url.as_deref(), Some("https://ci.example.org"));
        assert_eq!(config.max_parallel_runs, Some(2));
        assert!(config.repos[0].notes);
        assert_eq!(
            config.run_url("app", 12).as_deref(),
            Some("https://ci.example.org/app/12.html")
        );
        assert!(!parse("[app]\npath = \"/a\"\n").unwrap().repos[0].notes);
        assert!(error("report_url = \"ftp://x\"\n").contains("line 1, column 14"));
        assert!(error("report_url = \"https://x/a b\"\n").contains("is not one"));
        assert!(error("report_url = 3\n").contains("is the URL where the report folder is served"));
        assert_eq!(
            error("[app]\npath = \"https://example.org/app.git\"\nnotes = true\n"),
            "`/etc/Repo.toml` line 3, column 9: `notes = true` only applies to a repository \
             configured by path: phantom_ci writes notes into the repository itself, and a URL \
             repo's is elsewhere (write `notes = true` on the central host)"
        );
    }

    #[test]
    fn target_branch_takes_a_list_of_names_and_patterns() {
        let text = "[app]\npath = \"/a\"\ntarget_branch = [\"main\", \"release/*\", \"main\"]\n";
        let repo = parse(text).unwrap().repos.remove(0);
        assert_eq!(repo.branches.entries(), ["main", "release/*"]);
        assert!(repo.branches.matches("release/1.2"));
        assert!(!repo.branches.matches("feature"));
    }

    #[test]
    fn pool_keys_go_together_and_errors_name_their_line() {
        let repo = parse(
            "[app]\npath = \"ssh://git@central/srv/git/app.git\"\npool = \"x86\"\n\
             claim = \"ssh://git@central:2222\"\nclaim_ttl = \"30s\"\nclaim_key = \"/k/claim\"\n",
        )
        .unwrap()
        .repos
        .remove(0);
        let pool = repo.pool.unwrap();
        assert_eq!(pool.name, "x86");
        assert_eq!(pool.claim.to_string(), "ssh://git@central:2222");
        assert_eq!(pool.ttl, Duration::from_secs(30));
        assert_eq!(pool.renew_every(), Duration::from_secs(10));
        assert_eq!(pool.key, Some(PathBuf::from("/k/claim")));
        let default = parse("[app]\npath = \"/a\"\npool = \"p\"\nclaim = \"ssh://central\"\n")
            .unwrap()
            .repos
            .remove(0);
        assert_eq!(default.pool.unwrap().ttl, pool::DEFAULT_CLAIM_TTL);
        assert!(
            parse("[app]\npath = \"/a\"\n").unwrap().repos[0]
                .pool
                .is_none()
        );
        assert_eq!(
            error("[app]\npath = \"/a\"\npool = \"p\"\n"),
            "`/etc/Repo.toml` line 3, column 8: `pool` needs `claim = \"ssh://USER@HOST[:PORT]\"`: \
             the central host's account whose `authorized_keys` binds this host's key to \
             `phantom_ci claim --host <this host>`"
        );
        let stray = error("[app]\npath = \"/a\"\nclaim_ttl = \"1m\"\n");
        assert!(
            stray.contains("line 3, column 13: `claim_ttl` only applies with `pool"),
            "{stray}"
        );
        let bad =
            error("[app]\npath = \"/a\"\npool = \"p\"\nclaim = \"ssh://-oProxyCommand=id\"\n");
        assert!(
            bad.contains("line 4") && bad.contains("option to ssh"),
            "{bad}"
        );
        let path = error("[app]\npath = \"/a\"\npool = \"p\"\nclaim = \"ssh://c/srv/x\"\n");
        assert!(path.contains("has no path"), "{path}");
        let short =
            error("[app]\npath = \"/a\"\npool = \"p\"\nclaim = \"ssh://c\"\nclaim_ttl = \"1s\"\n");
        assert!(
            short.contains("line 5") && short.contains("at least 2s"),
            "{short}"
        );
        assert!(
            error("[app]\npath = \"/a\"\npool = \"a b\"\nclaim = \"ssh://c\"\n")
                .contains("invalid pool name")
        );
        assert!(
            error("[app]\npath = \"/a\"\npool = \"p\"\nclaim = \"ssh://c\"\nclaim_key = \"k\"\n")
                .contains("not an absolute path")
        );
    }

    #[test]
    fn minimal_section_gets_defaults() {
        let config = parse("[app]\npath = \"/srv/git/app.git\"\n").unwrap();
        let repo = &config.repos[0];
        assert_eq!(repo.name, "app");
        assert_eq!(repo.branches.single(), Some("master"));
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
checkout_limit = "2GiB"
artifact_files = 500
"#;
        let repo = parse(text).unwrap().repos.remove(0);
        assert_eq!(
            repo.location,
            Location::Url("git@example.org:team/app.git".into())
        );
        assert_eq!(repo.branches.single(), Some("release/1.x"));
        assert_eq!(repo.pass_env, vec!["CARGO_HOME"]);
        assert_eq!(repo.limits.address_space, Some(8 << 30));
        assert_eq!(repo.limits.cpu, Some(Duration::from_secs(1800)));
        // The old name of `keep_failed` at its default.
        assert_eq!(repo.keep_workspace, KeepWorkspace::Never);
        assert_eq!(repo.keep_failed, Some(DEFAULT_KEEP_FAILED));
        assert_eq!(repo.log_limit, 1 << 20);
        assert_eq!(repo.checkout_limit, 2 << 30);
        assert_eq!(repo.artifact_files, 500);
        assert_eq!(repo.limits.nofile, Some(1024));
    }

    #[test]
    fn keep_failed_is_a_duration_or_zero_for_off() {
        let section = |value: &str| format!("[app]\npath = \"/x\"\nkeep_failed = \"{value}\"\n");
        let keep = |value: &str| parse(&section(value)).unwrap().repos.remove(0).keep_failed;
        assert_eq!(keep("2s"), Some(Duration::from_secs(2)));
        assert_eq!(keep("0"), None);
        let repo = parse("[app]\npath = \"/x\"\n").unwrap().repos.remove(0);
        assert_eq!(repo.keep_failed, Some(DEFAULT_KEEP_FAILED));
        let e = error(&section("soon"));
        assert!(e.contains("keep_failed") || e.contains("line 3"), "{e}");
        assert!(e.contains("(or \"0\" for off)"), "{e}");
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = error("[app]\npath = \"/x\"\nbogus = 1\n");
        assert!(e.contains("`/etc/Repo.toml` line 3, column 1"), "{e}");
        assert!(e.contains("unknown field `bogus`"), "{e}");

        let e = error("[app]\npath = \"/x\"\ntimeout = \"soon\"\n");
        assert!(e.contains("line 3, column 11"), "{e}");
        assert!(e.contains("\"10m\""), "{e}");

        for (value, message) in [
            ("\"release/**\"", "takes one `*`"),
            ("[\"main\", \"../*\"]", "invalid branch pattern"),
            ("[]", "empty list"),
            ("[\"main\", 1]", "expected a string"),
        ] {
            let e = error(&format!("[app]\npath = \"/x\"\ntarget_branch = {value}\n"));
            assert!(e.contains("line 3") && e.contains(message), "{value}: {e}");
        }
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

    /// A machine where only `/srv/git/here.git` and the user `ci` exist.
    struct Fake;
    impl problems::Machine for Fake {
        fn path_exists(&self, path: &Path) -> Option<bool> {
            Some(path == Path::new("/srv/git/here.git"))
        }
        fn user_exists(&self, name: &str) -> Option<bool> {
            Some(name == "ci")
        }
    }

    #[test]
    fn a_missing_path_or_user_is_a_problem_of_that_repo_with_its_line() {
        let text = "[ok]\npath = \"/srv/git/here.git\"\nrun_as = \"ci\"\n\n[gone]\npath = \"/srv/git/gone.git\"\n\n[stranger]\npath = \"/srv/git/here.git\"\nrun_as   = \"nosuchuser\"\n\n[remote]\npath = \"https://example.org/x.git\"\n";
        let config = Config::parse_on(Path::new("/etc/Repo.toml"), text, &Fake).unwrap();
        assert_eq!(config.repos.len(), 4, "broken repos stay listed");
        let names: Vec<&str> = config.broken().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["gone", "stranger"]);
        let gone = config.get("gone").unwrap().problem().unwrap().to_string();
        assert!(
            gone.starts_with(
                "`/etc/Repo.toml` line 6, column 1: `path` `/srv/git/gone.git` does not exist"
            ),
            "{gone}"
        );
        assert!(gone.contains("correct `path`"), "{gone}");
        let stranger = &config.get("stranger").unwrap().problems[0];
        assert_eq!(
            (stranger.key, stranger.line, stranger.column),
            ("run_as", 10, 1)
        );
        assert!(
            stranger
                .message
                .contains("`run_as` user `nosuchuser` does not exist")
                && stranger.message.contains("useradd"),
            "{stranger}"
        );
        // Without a machine (what `add` and `remove` check), nothing is a problem.
        assert!(parse(text).unwrap().broken().next().is_none());
    }

    #[test]
    fn each_user_is_looked_up_once_and_every_repo_naming_a_missing_one_has_the_problem() {
        struct Counting(std::cell::Cell<usize>);
        impl problems::Machine for Counting {
            fn path_exists(&self, _: &Path) -> Option<bool> {
                Some(true)
            }
            fn user_exists(&self, name: &str) -> Option<bool> {
                self.0.set(self.0.get() + 1);
                Some(name == "ci")
            }
        }
        let text: String = ["ci", "ci", "gone", "ci", "gone"]
            .iter()
            .enumerate()
            .map(|(i, user)| format!("[r{i}]\npath = \"/srv/{i}.git\"\nrun_as = \"{user}\"\n"))
            .collect();
        let machine = Counting(std::cell::Cell::new(0));
        let config = Config::parse_on(Path::new("/etc/Repo.toml"), &text, &machine).unwrap();
        assert_eq!(machine.0.get(), 2, "one lookup per user named");
        let broken: Vec<&str> = config.broken().map(|r| r.name.as_str()).collect();
        assert_eq!(broken, ["r2", "r4"]);
    }

    #[test]
    fn a_file_that_is_not_utf8_names_the_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Repo.toml");
        std::fs::write(&path, b"[app]\npath = \"/srv/git/app.git\"\n# caf\xe9\n").unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("Repo.toml` line 3, column 6"), "{e}");
        assert!(e.contains("not valid UTF-8") && e.contains("0xe9"), "{e}");
        assert!(
            Config::load(&dir.path().join("none.toml"))
                .unwrap()
                .repos
                .is_empty()
        );
    }

    #[test]
    fn messages_use_the_users_words_not_type_names() {
        let e = error("foo = 1\n[app]\npath = \"/x\"\n");
        assert!(e.contains("line 1, column 1"), "{e}");
        assert!(e.contains("`foo = …` is not a repo section"), "{e}");
        let wrong_types = [
            "sandbox = 1",
            "keep_workspace = true",
            "notify = 3",
            "limits = 5",
            "limits = { nofile = \"many\" }",
            "limits = { nproc = -1 }",
            "keep_runs = \"ten\"",
            "keep_runs = -3",
            "keep_runs = 99999999999",
            "log_limit = true",
            "timeout = 5",
            "env = 5",
            "pass_env = \"X\"",
            "network = \"yes\"",
            "run_as = 0",
            "checkout_limit = \"1KiB\"",
            "checkout_limit = []",
            "artifact_files = \"many\"",
            "artifact_files = -1",
            "artifact_files = 0",
        ];
        for line in wrong_types {
            let e = error(&format!("[app]\npath = \"/x\"\n{line}\n"));
            assert!(e.contains("line 3"), "{line}: {e}");
            for internal in [
                "Raw",
                "struct ",
                "enum ",
                "u32",
                "u64",
                "i64",
                "usize",
                "Spanned",
                "Count",
                "ByteSize",
                "Human",
                "Limits",
                "Sandbox",
                "Notify",
                "KeepWorkspace",
            ] {
                assert!(!e.contains(internal), "{line}: `{internal}` in {e}");
            }
        }
        let e = error("[app]\npath = \"/x\"\nsection_that_is_not = { bogus = 1 }\n");
        assert!(e.contains("unknown field `section_that_is_not`"), "{e}");
    }

    #[test]
    fn the_cache_is_off_by_default_and_its_limit_needs_it() {
        let config = parse(
            "[a]\npath = \"/x\"\n[b]\npath = \"/y\"\ncache = true\n[c]\npath = \"/z\"\ncache = true\ncache_limit = \"1MiB\"\n",
        )
        .unwrap();
        let caches: Vec<(bool, u64)> = config
            .repos
            .iter()
            .map(|r| (r.cache, r.cache_limit))
            .collect();
        assert_eq!(
            caches,
            [(false, 10 << 30), (true, 10 << 30), (true, 1 << 20)]
        );
        let e = parse("[a]\npath = \"/x\"\ncache_limit = \"1GiB\"\n").unwrap_err();
        assert!(
            e.to_string().contains("only applies with `cache = true`"),
            "{e}"
        );
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(parse("[a]\npath = \"/x\"\ncache = \"yes\"\n").is_err());
    }

    #[test]
    fn checkout_limit_defaults_to_4gib() {
        let config =
            parse("[a]\npath = \"/x\"\n[b]\npath = \"/y\"\ncheckout_limit = \"100MiB\"\n").unwrap();
        assert_eq!(config.repos[0].checkout_limit, 4 << 30);
        assert_eq!(config.repos[1].checkout_limit, 100 << 20);
    }

    #[test]
    fn artifact_files_defaults_to_10000_and_is_at_least_1() {
        let config = parse("[a]\npath = \"/x\"\n[b]\npath = \"/y\"\nartifact_files = 3\n").unwrap();
        assert_eq!(config.repos[0].artifact_files, 10_000);
        assert_eq!(config.repos[1].artifact_files, 3);
        assert_eq!(
            error("[a]\npath = \"/x\"\nartifact_files = 0\n"),
            "`/etc/Repo.toml` line 3, column 18: `artifact_files` must be at least 1 (a step that \
             keeps no artifacts writes none)"
        );
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
