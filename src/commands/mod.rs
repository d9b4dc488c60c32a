//! One module per subcommand; the only layer that prints to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

// Printing never panics. std's `println!` and `eprintln!` panic when the write fails — a reader that
// went away (`phantom_ci … | head`), a closed stderr — which would end a run half-way, or a hook
// before it queued the push. These take their place in every command (a `macro_rules!` defined here
// shadows std's in the modules below): what cannot be written is dropped. Output-only commands end
// at their first such write, by SIGPIPE, as git does (`cli::run`); the others go on.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! print {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod add;
pub mod cache;
pub mod cancel;
pub mod check;
pub mod claim;
pub mod completions;
pub mod configure;
pub mod debug;
pub mod hook;
pub mod list;
pub mod log_follow;
pub mod logs;
pub mod man;
pub mod poke;
pub mod remove;
pub mod report;
pub mod run;
pub mod status;
mod table;
pub mod tick;
pub mod work;

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::config::dirs::Dirs;
use crate::config::secrets::Secrets;

/// The subcommands that take `--spool-dir`.
const SPOOL_COMMANDS: &[&str] = &["hook", "tick", "configure", "work"];

/// `--spool-dir`, on the subcommands that use the spool (`hook`, `tick`, `configure`, `work`).
#[derive(Debug, Args, Default)]
pub struct SpoolArg {
    /// Drop box where pushers who may not run work leave notes for a root `tick` [default: DATA/spool]
    /// [env: PHANTOM_CI_SPOOL_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
}

/// What every command gets: the directories in force.
pub struct Context {
    pub dirs: Dirs,
    /// The spool directory (SPEC §4.7).
    pub spool: PathBuf,
    /// Which directories were given (by option or environment), not found by default: a suggested
    /// command names them.
    pub dirs_given: (bool, bool),
    /// [`Context::program`], found the first time a command is suggested (never on the hook's path).
    program: std::sync::OnceLock<String>,
    /// [`Context::invocation`], made with it.
    invocation: std::sync::OnceLock<String>,
}

/// How a command to paste names phantom_ci: `phantom_ci` when that is what `PATH` runs, else the
/// path of the running binary (started by a path, or another build than the one on `PATH`).
pub fn own_name() -> String {
    let me = std::env::current_exe().and_then(std::fs::canonicalize);
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("phantom_ci"))
            .find(|candidate| candidate.is_absolute() && candidate.is_file())
    });
    match (me, on_path.map(std::fs::canonicalize)) {
        (Ok(me), Some(Ok(found))) if me == found => "phantom_ci".into(),
        (Ok(me), _) => shell_words::quote(&me.to_string_lossy()).into_owned(),
        (Err(_), _) => "phantom_ci".into(),
    }
}

impl Context {
    pub fn new(dirs: Dirs, spool: PathBuf, dirs_given: (bool, bool)) -> Context {
        Context {
            dirs,
            spool,
            dirs_given,
            program: std::sync::OnceLock::new(),
            invocation: std::sync::OnceLock::new(),
        }
    }

    /// How a pasted command names phantom_ci ([`own_name`]).
    pub fn program(&self) -> &str {
        self.program.get_or_init(own_name)
    }

    /// `phantom_ci` with the directory options this invocation was given (by option or environment),
    /// for the commands phantom_ci suggests: pasted as they are, they use the same configuration.
    pub fn invocation(&self) -> &str {
        self.invocation.get_or_init(|| {
            let mut invocation = self.program().to_string();
            let (config_given, data_given) = self.dirs_given;
            if config_given {
                invocation.push_str(" --config-dir ");
                invocation.push_str(&shell_words::quote(&self.dirs.config.to_string_lossy()));
            }
            if data_given {
                invocation.push_str(" --data-dir ");
                invocation.push_str(&shell_words::quote(&self.dirs.data.to_string_lossy()));
            }
            invocation
        })
    }

    /// "no repos in `Repo.toml`; add one with `add`", and where another configuration with repos is
    /// (the system installation's, or the user's own), with the command that reads it.
    pub fn no_repos(&self, add: Suggestion, words: &[&str]) -> String {
        let mut message = format!(
            "phantom_ci: no repos in `{}`; add one with `{add}`",
            self.dirs.repo_toml().display()
        );
        if let Some(other) = self.dirs.elsewhere() {
            message.push_str(&format!(
                "\nphantom_ci: note: `{}` has a configuration; to use it: `{}`",
                other.repo_toml().display(),
                Suggestion::with_dirs(self.program(), &other, words)
            ));
        }
        message
    }

    /// The spool, when it is not the default `<data>/spool` (what the hook and the units must be told).
    pub fn custom_spool(&self) -> Option<&Path> {
        (self.spool != self.dirs.spool()).then_some(self.spool.as_path())
    }

    /// A command to suggest: `phantom_ci`, the directory options in force, `words`, and the spool when
    /// it is not the default and the subcommand takes it. Add the subcommand's own options in force.
    pub fn suggest(&self, words: &[&str]) -> Suggestion {
        let mut suggestion = Suggestion(vec![self.invocation().to_string()]);
        for word in words {
            suggestion = suggestion.arg(word);
        }
        let takes_spool = words.first().is_some_and(|w| SPOOL_COMMANDS.contains(w));
        suggestion.option("--spool-dir", self.custom_spool().filter(|_| takes_spool))
    }
}

/// A command for the user to paste, every word quoted for a POSIX shell: built by
/// [`Context::suggest`] (or [`Suggestion::with_dirs`]), so that it runs with the same configuration
/// and the same options as the command that suggests it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion(Vec<String>);

impl Suggestion {
    /// `phantom_ci --config-dir <config> --data-dir <data> <words>`: for another configuration than
    /// the one in force (the system service's).
    pub fn with_dirs(program: &str, dirs: &Dirs, words: &[&str]) -> Suggestion {
        let mut suggestion = Suggestion(vec![program.into()])
            .arg("--config-dir")
            .arg(&dirs.config)
            .arg("--data-dir")
            .arg(&dirs.data);
        for word in words {
            suggestion = suggestion.arg(word);
        }
        suggestion
    }

    pub fn arg(mut self, word: impl AsRef<OsStr>) -> Suggestion {
        let word = word.as_ref().to_string_lossy();
        self.0.push(shell_words::quote(&word).into_owned());
        self
    }

    /// `flag` when `on`.
    pub fn flag(self, flag: &str, on: bool) -> Suggestion {
        if on { self.arg(flag) } else { self }
    }

    /// `name value` when there is a value.
    pub fn option(self, name: &str, value: Option<impl AsRef<OsStr>>) -> Suggestion {
        match value {
            Some(value) => self.arg(name).arg(value),
            None => self,
        }
    }

    /// A word the user replaces, such as `<PATH|URL>`: written as it is, not quoted.
    pub fn placeholder(mut self, word: &str) -> Suggestion {
        self.0.push(word.to_string());
        self
    }
}

impl fmt::Display for Suggestion {
    /// The words joined; control characters of a path are made visible, not sent to the terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::describe::terminal(&self.0.join(" ")))
    }
}

/// What happens to work handed to the phantom_ci service, as far as this user can tell from `.env`
/// (which a pusher usually may not read): "which runs it and …".
pub fn where_results_go(ctx: &Context) -> String {
    // `status` shows this user nothing where the run records are not theirs to read.
    let records = std::fs::read_dir(ctx.dirs.data.join("runs"));
    let readable = !records.is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
    results_clause(
        Secrets::load(&ctx.dirs.dotenv()).ok().as_ref(),
        readable,
        ctx,
    )
}

fn results_clause(secrets: Option<&Secrets>, records_readable: bool, ctx: &Context) -> String {
    let ask = "which runs it; ask its operator where the result goes (webhooks, the report, \
               `phantom_ci status`)";
    let Some(secrets) = secrets else {
        return ask.into();
    };
    let webhooks = [
        &secrets.discord_webhook_url,
        &secrets.slack_webhook_url,
        &secrets.webhook_url,
    ]
    .iter()
    .any(|url| url.is_some());
    match (&secrets.report_dir, webhooks) {
        (_, true) => "which runs it and posts the result to its webhooks".into(),
        (Some(report), false) => format!(
            "which runs it and writes the result into its report (`{}`)",
            report.display()
        ),
        (None, false) if records_readable => format!(
            "which runs it; no webhook is configured: see the result with `{}`",
            ctx.suggest(&["status"])
        ),
        (None, false) => ask.into(),
    }
}

/// Why this user cannot read `repo`'s run records, when that is so (not when there are none yet): the
/// message names the directory and who can read it.
pub fn records_unreadable(ctx: &Context, repo: &str) -> Option<String> {
    let runs = ctx.dirs.runs(repo);
    let e = std::fs::read_dir(&runs)
        .err()
        .filter(|e| e.kind() != std::io::ErrorKind::NotFound)?;
    Some(format!(
        "cannot read the run records of `{repo}` in `{}`: {}{}",
        runs.display(),
        io_words(&e),
        as_the_service(&e)
    ))
}

/// An I/O error without the `(os error N)` tail.
pub fn io_words(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Who may read what this user may not.
pub fn as_the_service(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        " (run it as the user phantom_ci runs as, or as root)"
    } else {
        ""
    }
}

/// `message` about `repo`, naming it once: `repo `app`: …` unless the message already names it.
pub fn about_repo(repo: &str, message: &str) -> String {
    if message.contains(&format!("repo `{repo}`")) {
        message.to_string()
    } else {
        format!("repo `{repo}`: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(spool: &str) -> Context {
        let dirs = Dirs {
            config: "/etc/phantom ci".into(),
            data: "/var/lib/phantom_ci".into(),
        };
        let ctx = Context::new(dirs, spool.into(), (true, false));
        let _ = ctx.program.set("phantom_ci".into());
        ctx
    }

    #[test]
    fn a_suggestion_carries_the_options_in_force_and_pastes_as_one_command() {
        let ctx = context("/srv/spool dir");
        let hook = ctx
            .suggest(&["configure", "hook"])
            .arg("/srv/git/it's.git")
            .flag("--wait", true)
            .flag("--print", false)
            .arg("--force")
            .to_string();
        assert_eq!(
            shell_words::split(&hook).unwrap(),
            [
                "phantom_ci",
                "--config-dir",
                "/etc/phantom ci",
                "configure",
                "hook",
                "--spool-dir",
                "/srv/spool dir",
                "/srv/git/it's.git",
                "--wait",
                "--force"
            ]
        );
        // The spool only where it is taken, and only when it is not the default.
        assert_eq!(
            ctx.suggest(&["list"]).to_string(),
            "phantom_ci --config-dir '/etc/phantom ci' list"
        );
        let default = context("/var/lib/phantom_ci/spool");
        assert!(!default.suggest(&["tick"]).to_string().contains("spool"));
        assert_eq!(
            Suggestion::with_dirs("phantom_ci", &default.dirs, &["add"])
                .placeholder("<PATH|URL>")
                .to_string(),
            "phantom_ci --config-dir '/etc/phantom ci' --data-dir /var/lib/phantom_ci add <PATH|URL>"
        );
        assert_eq!(
            ctx.suggest(&["remove"]).arg("a\x1b[2J").to_string(),
            "phantom_ci --config-dir '/etc/phantom ci' remove 'a?[2J'"
        );
    }

    #[test]
    fn the_pusher_hears_of_webhooks_only_when_there_are_some() {
        let ctx = context("/var/lib/phantom_ci/spool");
        let with = |pairs: &[(&str, &str)]| {
            let pairs = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            results_clause(Some(&Secrets::from_pairs(pairs).unwrap()), true, &ctx)
        };
        assert_eq!(
            with(&[("SLACK_WEBHOOK_URL", "https://hooks.example.org/x")]),
            "which runs it and posts the result to its webhooks"
        );
        let none = with(&[]);
        assert!(none.contains("no webhook is configured"), "{none}");
        assert!(
            none.contains("phantom_ci --config-dir '/etc/phantom ci' status"),
            "{none}"
        );
        assert!(!none.contains("posts"), "{none}");
        let report = with(&[("PHANTOM_CI_REPORT_DIR", "/srv/www/ci")]);
        assert!(report.contains("its report (`/srv/www/ci`)"), "{report}");
        assert!(!report.contains("webhooks"), "{report}");
        // `.env` unreadable (the root deployment): nothing is claimed.
        let unknown = results_clause(None, true, &ctx);
        assert!(unknown.contains("ask its operator"), "{unknown}");
        assert!(!unknown.contains("posts"), "{unknown}");
        // Run records the pusher cannot read: `status` would show them nothing.
        let hidden = results_clause(Some(&Secrets::from_pairs([]).unwrap()), false, &ctx);
        assert!(hidden.contains("ask its operator"), "{hidden}");
        assert!(!hidden.contains("see the result with"), "{hidden}");
    }

    #[test]
    fn a_repo_is_named_once() {
        assert_eq!(
            about_repo("app", "no such branch"),
            "repo `app`: no such branch"
        );
        assert_eq!(about_repo("app", "repo `app`: gone"), "repo `app`: gone");
        assert_eq!(
            about_repo("app", "`git fetch` of repo `app` failed"),
            "`git fetch` of repo `app` failed"
        );
        assert_eq!(
            about_repo("app", "`git fetch` of repo `app-2` failed"),
            "repo `app`: `git fetch` of repo `app-2` failed"
        );
    }
}
