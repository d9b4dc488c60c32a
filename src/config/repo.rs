//! [`Repo`]: one validated section of `Repo.toml`, and the types of its settings — what the rest of
//! phantom_ci uses once the file is parsed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

use crate::config::problems::Problem;
use crate::config::quantities::{ByteSize, Count, HumanDuration};
use crate::config::{
    ConfigError, DEFAULT_ARTIFACT_FILES, DEFAULT_CACHE_LIMIT, DEFAULT_CHECKOUT_LIMIT,
    DEFAULT_KEEP_RUNS, DEFAULT_LOG_LIMIT, DEFAULT_TIMEOUT,
};

/// One validated `[name]` section of `Repo.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Repo {
    pub name: String,
    pub location: Location,
    /// `target_branch`: the branches that run.
    pub branches: Branches,
    pub run_as: Option<String>,
    pub sandbox: Sandbox,
    pub network: bool,
    pub timeout: Duration,
    pub env: Vec<(String, String)>,
    pub pass_env: Vec<String>,
    pub keep_workspace: KeepWorkspace,
    /// `keep_failed` (SPEC §9): how long the workspace of a run that failed after its checkout is
    /// kept for `phantom_ci debug`; `None` (`"0"`): not kept.
    pub keep_failed: Option<Duration>,
    pub keep_runs: u32,
    pub notify: Notify,
    pub require_signed: bool,
    pub allowed_signers: Option<PathBuf>,
    pub workflow: Option<PathBuf>,
    pub sandbox_root: Option<PathBuf>,
    pub limits: Limits,
    pub log_limit: u64,
    /// The most bytes a checkout of this repo may write (SPEC §4.8).
    pub checkout_limit: u64,
    /// `cache = true`: a build cache kept between runs, `<data>/cache/<repo>/` (SPEC §6).
    pub cache: bool,
    /// The size the cache is trimmed back to after a run (its oldest files go first).
    pub cache_limit: u64,
    /// `parallel_steps`: how many steps of one run may go on at once (SPEC §8); `None`: one per CPU.
    pub parallel_steps: Option<usize>,
    /// `pool`, `claim`, `claim_ttl`, `claim_key`: the runner pool this repo shares its runs with
    /// (SPEC §7); `None` for a repo of this host alone.
    pub pool: Option<crate::config::pool::Pool>,
    /// The most files and directories of a run's artifacts kept; the rest are dropped with a note.
    pub artifact_files: u64,
    /// `notes = true`: each final result is appended to the commit's note under `refs/notes/ci` of
    /// the repository (a repo configured by path; SPEC §9).
    pub notes: bool,
    /// `base_tree` (default `true`): as root with `run_as`, each run's workspace is a copy-on-write
    /// layer over a base tree of the branch that phantom_ci keeps and moves from commit to commit
    /// (issue 23); `false` checks every commit out in full.
    pub base_tree: bool,
    /// What is wrong with this repo on this machine (its `path` or `run_as` user does not exist):
    /// a repo with problems is shown but never run. Empty for a healthy repo.
    pub problems: Vec<Problem>,
}

impl Repo {
    /// A repo that is not in `Repo.toml` (`phantom_ci run <path>`): every setting at its default.
    pub fn ad_hoc(name: String, path: PathBuf, branch: String) -> Repo {
        Repo {
            name,
            location: Location::Local(path),
            branches: Branches::new(vec![branch]),
            run_as: None,
            sandbox: Sandbox::None,
            network: false,
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
            pass_env: Vec::new(),
            keep_workspace: KeepWorkspace::Never,
            // `debug` takes configured repos only: nothing to keep a workspace for.
            keep_failed: None,
            keep_runs: DEFAULT_KEEP_RUNS,
            // Someone trying a repository out: the team's chat hears of it only with `run --notify`.
            notify: Notify::Never,
            require_signed: false,
            allowed_signers: None,
            workflow: None,
            sandbox_root: None,
            limits: Limits::default(),
            log_limit: DEFAULT_LOG_LIMIT,
            checkout_limit: DEFAULT_CHECKOUT_LIMIT,
            cache: false,
            cache_limit: DEFAULT_CACHE_LIMIT,
            parallel_steps: None,
            pool: None,
            artifact_files: DEFAULT_ARTIFACT_FILES,
            notes: false,
            base_tree: true,
            problems: Vec::new(),
        }
    }

    /// The first problem as the configuration error it is, if the repo has one.
    pub fn problem(&self) -> Option<ConfigError> {
        self.problems.first().map(Problem::to_error)
    }
}

/// The branches a repo runs (`target_branch`): names and patterns with one `*`, which matches any
/// characters, `/` included, as in git's refspecs (`release/*` matches `release/1.2` and
/// `release/1.2/rc`). Entries are checked when `Repo.toml` is read; a branch a pattern matches is
/// checked again before it runs ([`Branches::matches`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branches(Vec<String>);

impl Branches {
    pub fn new(entries: Vec<String>) -> Branches {
        Branches(entries)
    }

    /// Whether `branch` runs: a safe branch name that an entry names or matches.
    pub fn matches(&self, branch: &str) -> bool {
        crate::config::validate_branch(branch).is_ok()
            && self.0.iter().any(|entry| match entry.split_once('*') {
                None => entry == branch,
                Some((prefix, suffix)) => {
                    branch.len() >= prefix.len() + suffix.len()
                        && branch.starts_with(prefix)
                        && branch.ends_with(suffix)
                }
            })
    }

    /// The entries that are names, when no entry is a pattern: the branches can then be read one by
    /// one, without listing the repository's refs.
    pub fn names(&self) -> Option<&[String]> {
        (!self.0.iter().any(|entry| entry.contains('*'))).then_some(&self.0)
    }

    /// The one branch, when the repo runs exactly one (`target_branch = "main"`).
    pub fn single(&self) -> Option<&str> {
        match self.names() {
            Some([one]) => Some(one),
            _ => None,
        }
    }

    /// The branch `run` runs without `--branch`: the first entry that is a name.
    pub fn default_branch(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|entry| !entry.contains('*'))
            .map(String::as_str)
    }

    pub fn entries(&self) -> &[String] {
        &self.0
    }
}

/// `main`, or `main, release/*`.
impl fmt::Display for Branches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// Where a repo lives: a local repository (bare or not) or a URL to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Url(String),
}

/// The location as it may be shown: a URL's password is `***` (`https://ci:***@git.example.org/app`).
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Url(url) => match password_span(url) {
                Some(span) => write!(f, "{}***{}", &url[..span.start], &url[span.end..]),
                None => f.write_str(url),
            },
        }
    }
}

/// Where the password of `scheme://user:password@host/…` is in `url`, if it has one.
fn password_span(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let at = start + url[start..authority_end].rfind('@')?;
    let colon = start + url[start..at].find(':')?;
    (colon + 1 < at).then_some(colon + 1..at)
}

/// A URL without its password, for a command line (which every local user can read), and the
/// password, percent-decoded, for git to ask for (`GIT_ASKPASS`).
pub fn split_password(url: &str) -> (String, Option<String>) {
    match password_span(url) {
        Some(span) => (
            format!("{}{}", &url[..span.start - 1], &url[span.end..]),
            Some(percent_decode(&url[span])),
        ),
        None => (url.to_string(), None),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

    /// The location exactly as written in `Repo.toml`, password included: for writing it back.
    pub fn as_written(&self) -> String {
        match self {
            Location::Local(path) => path.display().to_string(),
            Location::Url(url) => url.clone(),
        }
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
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Sandbox {
    None,
    Bwrap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum KeepWorkspace {
    Never,
    OnFailure,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Notify {
    Always,
    Failure,
    Change,
    Never,
}

/// The words a setting takes, and the message for any other, in the user's words.
macro_rules! words {
    ($type:ident, $key:literal, $($word:literal => $value:ident),+) => {
        impl TryFrom<String> for $type {
            type Error = String;
            fn try_from(text: String) -> Result<Self, String> {
                match text.as_str() {
                    $($word => Ok($type::$value),)+
                    _ => Err(format!(
                        "`{}` is not a value of `{}`: write one of {}",
                        crate::describe::terminal(&text),
                        $key,
                        [$(concat!("\"", $word, "\"")),+].join(", ")
                    )),
                }
            }
        }
    };
}

words!(Sandbox, "sandbox", "none" => None, "bwrap" => Bwrap);
words!(KeepWorkspace, "keep_workspace", "never" => Never, "on_failure" => OnFailure, "always" => Always);
words!(Notify, "notify", "always" => Always, "failure" => Failure, "change" => Change, "never" => Never);

/// Resource limits applied to every step (`limits = { … }`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table of limits such as `{ nofile = 1024, cpu = \"30m\" }`"
)]
pub struct Limits {
    #[serde(default, deserialize_with = "count")]
    pub nofile: Option<u64>,
    #[serde(default, deserialize_with = "count")]
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

fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Some(Count::deserialize(d)?.0))
}

fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Some(ByteSize::deserialize(d)?.0))
}

impl<'de> Deserialize<'de> for Location {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Location::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_never_shown_and_kept_off_command_lines() {
        let url = "https://ci:s%40cr3t:x@git.example.org:8443/team/app.git";
        let location = Location::parse(url).unwrap();
        assert_eq!(
            location.to_string(),
            "https://ci:***@git.example.org:8443/team/app.git"
        );
        assert_eq!(location.as_written(), url);
        assert_eq!(
            split_password(url),
            (
                "https://ci@git.example.org:8443/team/app.git".to_string(),
                Some("s@cr3t:x".to_string())
            )
        );
        for plain in [
            "https://git.example.org/a@b",
            "https://ci@git.example.org/app",
            "ssh://git@host:22/app.git",
            "git@host:team/app.git",
            "https://ci:@host/app",
        ] {
            assert_eq!(split_password(plain), (plain.to_string(), None), "{plain}");
            assert_eq!(Location::parse(plain).unwrap().to_string(), plain);
        }
    }

    #[test]
    fn patterns_match_like_git_refspecs() {
        let branches = Branches::new(vec!["main".into(), "release/*".into(), "v*-rc".into()]);
        for yes in ["main", "release/1.2", "release/1.2/hotfix", "v1-rc", "v-rc"] {
            assert!(branches.matches(yes), "{yes}");
        }
        for no in [
            "mainline",
            "release",
            "release-1",
            "v1-rc2",
            "x/main",
            "release/../x",
        ] {
            assert!(!branches.matches(no), "{no}");
        }
        assert_eq!(branches.default_branch(), Some("main"));
        assert_eq!(branches.names(), None);
        assert_eq!(branches.single(), None);
        assert_eq!(branches.to_string(), "main, release/*, v*-rc");
        let one = Branches::new(vec!["main".into()]);
        assert_eq!(one.single(), Some("main"));
        assert_eq!(Branches::new(vec!["*".into()]).default_branch(), None);
        assert!(Branches::new(vec!["*".into()]).matches("feature/x"));
    }
}
