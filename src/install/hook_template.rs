//! The `post-receive` hook that `phantom_ci configure hook` installs into a bare repository (SPEC §3).
//!
//! The templates are `hooks/post-receive` and `hooks/post-receive.sh` in the source tree, compiled
//! into the binary. Installing one fills in the absolute path of the running binary and the config and
//! data directories in force, so the hook runs the same phantom_ci with the same configuration
//! whoever pushes. The first, chosen whenever it can be, is run by phantom_ci itself: its `#!` line
//! names the binary with [`HOOK_FILE`], and the rest is TOML that [`HookFile::read`] reads (no shell
//! between git and phantom_ci: the pusher waits for one process less). The second, a shell script
//! that `exec`s phantom_ci with the same arguments, is for hooks that also poke runner hosts, and for
//! a binary whose path cannot stand on a `#!` line.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::dirs::Dirs;
use crate::error::Error;

pub const TEMPLATE: &str = include_str!("../../hooks/post-receive");

/// The shell form of the hook.
pub const SHELL_TEMPLATE: &str = include_str!("../../hooks/post-receive.sh");

/// The word after phantom_ci's path on the hook's `#!` line: the kernel then runs
/// `phantom_ci hook-file <the hook's path>`, and phantom_ci reads its arguments from that file.
pub const HOOK_FILE: &str = "hook-file";

/// The longest `#!` line Linux reads whole (`BINPRM_BUF_SIZE`, 256 bytes with its newline).
const MAX_SHEBANG_LINE: usize = 255;

/// How much of a hook file [`HookFile::read`] reads: a hook phantom_ci wrote is well under 2 KiB.
const MAX_HOOK_FILE: u64 = 64 * 1024;

/// A line of every hook phantom_ci writes, to tell its own hooks from others.
const MARKER: &str = "written by `phantom_ci configure hook`";

/// The hook's text: `exec <binary> --config-dir <config> --data-dir <data> hook [--spool-dir <spool>]
/// [--wait]`; `spool` only when it is not the default `<data>/spool`.
pub fn render(
    binary: &Path,
    dirs: &Dirs,
    spool: Option<&Path>,
    wait: bool,
) -> Result<String, Error> {
    render_with_pokes(binary, dirs, spool, wait, &Pokes::default())
}

/// The runner hosts a central hook pokes (`configure hook --notify-runner`), and the name it pokes
/// them with.
#[derive(Debug, Clone, Default)]
pub struct Pokes {
    pub runners: Vec<Runner>,
    /// The repository's name: the last component of its path without `.git`.
    pub name: String,
}

/// How long a poke's ssh waits for a runner to connect and to answer the handshake, in seconds.
pub const POKE_CONNECT_TIMEOUT: u32 = 10;

/// [`render`], with a line per runner before the `exec` that pokes it in the background:
/// `setsid ssh -n -T -o BatchMode=yes -o ConnectTimeout=… -p PORT -l USER -- HOST 'poke NAME'`, in a
/// session of its own, stdin, stdout and stderr away from the pusher's pipes (git waits for every
/// holder of those), so a slow or unreachable runner never delays or fails the push.
pub fn render_with_pokes(
    binary: &Path,
    dirs: &Dirs,
    spool: Option<&Path>,
    wait: bool,
    pokes: &Pokes,
) -> Result<String, Error> {
    let mut lines = String::new();
    if !pokes.runners.is_empty() {
        lines.push_str(
            "# Poke the runner hosts (`--notify-runner`): each fetches this repository and runs it itself.\n\
             # In the background, away from the pusher's pipes: a slow or unreachable runner never\n\
             # delays or fails the push, and its timer's `tick` catches up.\n",
        );
    }
    for runner in &pokes.runners {
        let mut words = vec![
            "setsid".to_string(),
            "ssh".into(),
            "-n".into(),
            "-T".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("ConnectTimeout={POKE_CONNECT_TIMEOUT}"),
            "-o".into(),
            "ServerAliveInterval=15".into(),
            "-o".into(),
            "ServerAliveCountMax=4".into(),
        ];
        words.extend(runner.ssh_args());
        words.push(format!("poke {}", pokes.name));
        let quoted: Vec<String> = words
            .iter()
            .map(|w| shell_words::quote(w).into_owned())
            .collect();
        lines.push_str(&format!(
            "{} </dev/null >/dev/null 2>&1 &\n",
            quoted.join(" ")
        ));
    }
    if pokes.runners.is_empty()
        && let Some(interpreter) = interpreter(binary)
    {
        let spool = match spool {
            Some(spool) => format!("spool_dir = {}\n", toml_string(spool)?),
            None => String::new(),
        };
        return Ok(fill(
            &TEMPLATE.replace("{{spool}}\n", "{{spool}}"),
            &[
                ("phantom_ci", interpreter),
                ("config_dir", &toml_string(&dirs.config)?),
                ("data_dir", &toml_string(&dirs.data)?),
                ("wait", if wait { "true" } else { "false" }),
                ("spool", &spool),
            ],
        ));
    }
    let spool = match spool {
        Some(spool) => format!(" --spool-dir {}", quote(spool)?),
        None => String::new(),
    };
    Ok(fill(
        SHELL_TEMPLATE,
        &[
            ("phantom_ci", &quote(binary)?),
            ("config_dir", &quote(&dirs.config)?),
            ("data_dir", &quote(&dirs.data)?),
            ("spool", &spool),
            ("wait", if wait { " --wait" } else { "" }),
            ("pokes", &lines),
        ],
    ))
}

/// `template` with each `{{name}}` of `values` replaced, in one pass: a value is never searched for
/// placeholders again (a directory named `{{pokes}}` stays that name).
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut filled = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        filled.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").and_then(|end| {
            let name = &after[..end];
            values
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (value, end))
        }) {
            Some((value, end)) => {
                filled.push_str(value);
                rest = &after[end + 2..];
            }
            None => {
                filled.push_str("{{");
                rest = after;
            }
        }
    }
    filled.push_str(rest);
    filled
}

/// `binary` as the interpreter of a `#!` line, where it can be one: an absolute UTF-8 path without
/// white space or control characters, short enough for the kernel to read the line whole.
fn interpreter(binary: &Path) -> Option<&str> {
    let text = binary.to_str()?;
    let fits = "#! ".len() + text.len() + HOOK_FILE.len() <= MAX_SHEBANG_LINE;
    (binary.is_absolute() && fits && !text.chars().any(|c| c.is_whitespace() || c.is_control()))
        .then_some(text)
}

/// `path` as a TOML string.
fn toml_string(path: &Path) -> Result<String, Error> {
    let text = path.to_str().ok_or_else(|| not_utf8(path))?;
    Ok(toml::Value::String(text.to_string()).to_string())
}

/// The settings of a hook of the `#!` form: what `phantom_ci --config-dir C --data-dir D hook
/// [--spool-dir S] [--wait]` would be given.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookFile {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    #[serde(default)]
    pub wait: bool,
    pub spool_dir: Option<PathBuf>,
}

impl HookFile {
    /// The settings of the hook file `path`, or what is wrong with it and what to do.
    pub fn read(path: &Path) -> Result<HookFile, String> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_HOOK_FILE).read_to_string(&mut text))
            .map_err(|e| format!("cannot read the hook `{}`: {e}", path.display()))?;
        HookFile::parse(&text).map_err(|e| {
            format!(
                "the hook `{}` is not one `phantom_ci configure hook` writes ({e}); write it again \
                 with `phantom_ci configure hook --force`",
                path.display(),
            )
        })
    }

    fn parse(text: &str) -> Result<HookFile, String> {
        let file: HookFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        // As the command line's parser refuses an empty directory (`configure hook` never writes one).
        let dirs = [
            ("config_dir", Some(&file.config_dir)),
            ("data_dir", Some(&file.data_dir)),
            ("spool_dir", file.spool_dir.as_ref()),
        ];
        match dirs
            .iter()
            .find(|(_, dir)| dir.is_some_and(|d| d.as_os_str().is_empty()))
        {
            Some((key, _)) => Err(format!("`{key}` is empty")),
            None => Ok(file),
        }
    }

    /// The command line the settings stand for, after the program's name: `--config-dir C
    /// --data-dir D hook [--spool-dir S] [--wait]` (what the shell form of the hook runs).
    pub fn args(self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "--config-dir".into(),
            self.config_dir.into(),
            "--data-dir".into(),
            self.data_dir.into(),
            "hook".into(),
        ];
        if let Some(spool) = self.spool_dir {
            args.extend(["--spool-dir".into(), spool.into()]);
        }
        if self.wait {
            args.push("--wait".into());
        }
        args
    }
}

/// What a hook phantom_ci wrote runs, whichever its form: the runner pokes (the shell form's
/// `setsid ssh …` lines) and the command, as words (`exec <phantom_ci> --config-dir … hook …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    pub pokes: Vec<String>,
    pub words: Vec<String>,
}

impl HookCommand {
    /// The command of the hook text `text`, or `None` when phantom_ci did not write it (or it was
    /// edited past reading).
    pub fn of(text: &str) -> Option<HookCommand> {
        if !text.contains(MARKER) {
            return None;
        }
        if let Some(program) = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("#!"))
            .and_then(|l| l.strip_suffix(&format!(" {HOOK_FILE}")))
        {
            let args = HookFile::parse(text).ok()?.args();
            let words = ["exec", program]
                .into_iter()
                .map(str::to_string)
                .chain(args.into_iter().map(|a| a.to_string_lossy().into_owned()))
                .collect();
            return Some(HookCommand {
                pokes: Vec::new(),
                words,
            });
        }
        let words = shell_words::split(text.lines().find(|l| l.starts_with("exec "))?).ok()?;
        let pokes = text
            .lines()
            .filter(|l| l.starts_with("setsid "))
            .map(str::to_string)
            .collect();
        Some(HookCommand { pokes, words })
    }

    /// The value after `option` on the command line.
    fn value(&self, option: &str) -> Option<PathBuf> {
        let at = self.words.iter().position(|w| w == option)?;
        self.words.get(at + 1).map(PathBuf::from)
    }
}

/// A runner host to poke: `ssh://[user@]host[:port]` (the parser is shared with the `claim` key).
pub type Runner = crate::config::ssh_url::SshTarget;

/// The runner of `--notify-runner URL`.
pub fn parse_runner(text: &str) -> Result<Runner, String> {
    Runner::parse_as(text, "--notify-runner ")
}

fn quote(path: &Path) -> Result<String, Error> {
    let text = path.to_str().ok_or_else(|| not_utf8(path))?;
    Ok(shell_words::quote(text).into_owned())
}

fn not_utf8(path: &Path) -> Error {
    Error::Usage(format!(
        "`{}` is not valid UTF-8 and cannot be written into the hook; use another directory",
        path.display()
    ))
}

/// What [`install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    Written,
    Replaced,
    /// The same hook was already there.
    Unchanged,
    /// A hook that runs the same command, written by another version or in the other form, was
    /// rewritten as this version writes it.
    Updated,
    /// Another hook is there and `force` was not given: nothing was written. `ours` when it is a
    /// phantom_ci hook with other settings.
    Refused {
        ours: bool,
    },
}

/// The post-receive hook a bare repository has now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    None,
    /// A hook phantom_ci did not write.
    Foreign,
    /// A hook `phantom_ci configure hook` wrote, and the options its `exec` line passes.
    Ours {
        config_dir: Option<PathBuf>,
        data_dir: Option<PathBuf>,
        wait: bool,
    },
}

/// Reads `<bare>/hooks/post-receive`, to tell whether pushes there already run phantom_ci.
pub fn existing(bare: &Path) -> Existing {
    let Ok(bytes) = std::fs::read(bare.join("hooks").join("post-receive")) else {
        return Existing::None;
    };
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains(MARKER) {
        return Existing::Foreign;
    }
    let command = HookCommand::of(&text);
    Existing::Ours {
        config_dir: command.as_ref().and_then(|c| c.value("--config-dir")),
        data_dir: command.as_ref().and_then(|c| c.value("--data-dir")),
        wait: command.is_some_and(|c| c.words.iter().any(|w| w == "--wait")),
    }
}

/// Installs `script` as `<bare>/hooks/post-receive` (mode 0755) and returns its path. Refuses a path
/// that is not a bare repository and a repository whose `core.hooksPath` points elsewhere; writes
/// nothing over an existing hook with other contents unless `force` ([`Installed::Refused`]).
pub fn install(bare: &Path, script: &str, force: bool) -> Result<(PathBuf, Installed), Error> {
    let bare = bare.canonicalize().map_err(|e| {
        Error::Usage(format!(
            "`{}`: {e}; give the path of a bare repository",
            bare.display()
        ))
    })?;
    let repo = git2::Repository::open_ext(
        &bare,
        git2::RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(|e| {
        Error::Usage(format!(
            "`{}` is not a git repository ({}); give the path of a bare repository",
            bare.display(),
            e.message()
        ))
    })?;
    if !repo.is_bare() {
        return Err(Error::Usage(format!(
            "`{}` is not a bare repository: give the bare repository people push to (a `git init \
             --bare` one, such as `/srv/git/app.git`); for a work tree, use a timer (`phantom_ci \
             configure service`)",
            bare.display()
        )));
    }
    let hooks = bare.join("hooks");
    check_hooks_path(&repo, &bare, &hooks)?;
    std::fs::create_dir_all(&hooks).map_err(|e| Error::io("cannot create", &hooks, e))?;
    let path = hooks.join("post-receive");
    let exists = path.symlink_metadata().is_ok();
    let existing = std::fs::read(&path).ok();
    if existing.as_deref() == Some(script.as_bytes()) {
        make_executable(&path)?;
        return Ok((path, Installed::Unchanged));
    }
    let existing = existing.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    // A hook of an earlier version (or the other form) that runs the same command: brought up to
    // date without `--force`, as re-running `configure hook` after an upgrade expects.
    let same_command = existing
        .as_deref()
        .and_then(HookCommand::of)
        .is_some_and(|old| HookCommand::of(script) == Some(old));
    if exists && !force && !same_command {
        let ours = existing.is_some_and(|text| text.contains(MARKER));
        return Ok((path, Installed::Refused { ours }));
    }
    let outcome = match (exists, same_command) {
        (false, _) => Installed::Written,
        (true, true) => Installed::Updated,
        (true, false) => Installed::Replaced,
    };
    write_executable(&hooks, &path, script)?;
    Ok((path, outcome))
}

/// git runs hooks from `core.hooksPath` when it is set: a hook in `<bare>/hooks` would never run.
fn check_hooks_path(repo: &git2::Repository, bare: &Path, hooks: &Path) -> Result<(), Error> {
    let Ok(config) = repo.config() else {
        return Ok(());
    };
    let Ok(configured) = config.get_path("core.hooksPath") else {
        return Ok(());
    };
    let resolved = bare.join(&configured);
    let same = resolved
        .canonicalize()
        .ok()
        .zip(hooks.canonicalize().ok())
        .is_some_and(|(a, b)| a == b);
    if same {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "`{}` sets `core.hooksPath` to `{}`, so git would never run a hook in `{}`; install \
         the hook there by hand, or unset it (`git -C {} config --unset core.hooksPath`)",
        bare.display(),
        configured.display(),
        hooks.display(),
        shell_words::quote(&bare.to_string_lossy())
    )))
}

fn make_executable(path: &Path) -> Result<(), Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
    if meta.permissions().mode() & 0o111 != 0o111 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("cannot make executable", path, e))?;
    }
    Ok(())
}

/// Writes the hook atomically: git never runs a half-written hook.
fn write_executable(dir: &Path, path: &Path, script: &str) -> Result<(), Error> {
    let written = (|| -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".post-receive.")
            .tempfile_in(dir)?;
        tmp.write_all(script.as_bytes())?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o755))?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    })();
    written.map_err(|e| Error::io("cannot write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_has_every_placeholder_and_renders_quoted_arguments() {
        for placeholder in [
            "{{phantom_ci}}",
            "{{config_dir}}",
            "{{data_dir}}",
            "{{wait}}",
            "{{spool}}",
        ] {
            assert!(TEMPLATE.contains(placeholder), "{placeholder}");
            assert!(SHELL_TEMPLATE.contains(placeholder), "{placeholder}");
        }
        assert!(SHELL_TEMPLATE.contains("{{pokes}}"));
        assert!(TEMPLATE.starts_with("#!{{phantom_ci}} hook-file\n"));
        assert!(SHELL_TEMPLATE.starts_with("#!/bin/sh\n"));
        assert!(TEMPLATE.contains(MARKER) && SHELL_TEMPLATE.contains(MARKER));
        let dirs = Dirs {
            config: "/etc/phantom ci".into(),
            data: "/var/lib/it's \"$HOME\"".into(),
        };
        let binary = Path::new("/usr/bin/phantom_ci");
        let script = render(binary, &dirs, None, true).unwrap();
        assert!(!script.contains("{{"));
        assert!(
            script.starts_with("#!/usr/bin/phantom_ci hook-file\n"),
            "{script}"
        );
        // What phantom_ci reads back from it when the kernel runs it.
        let bare = tempfile::tempdir().unwrap();
        std::fs::create_dir(bare.path().join("hooks")).unwrap();
        let hook = bare.path().join("hooks/post-receive");
        std::fs::write(&hook, &script).unwrap();
        let args: Vec<String> = HookFile::read(&hook)
            .map(HookFile::args)
            .unwrap()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--config-dir",
                "/etc/phantom ci",
                "--data-dir",
                "/var/lib/it's \"$HOME\"",
                "hook",
                "--wait"
            ]
        );
        let ours_waiting = Existing::Ours {
            config_dir: Some("/etc/phantom ci".into()),
            data_dir: Some("/var/lib/it's \"$HOME\"".into()),
            wait: true,
        };
        assert_eq!(existing(bare.path()), ours_waiting);
        let spool = Path::new("/srv/spool");
        std::fs::write(&hook, render(binary, &dirs, Some(spool), false).unwrap()).unwrap();
        let args = HookFile::read(&hook).map(HookFile::args).unwrap();
        assert_eq!(args[4..], ["hook", "--spool-dir", "/srv/spool"]);
        // A hook file that is not one of ours changes nothing and says what to do.
        std::fs::write(&hook, "#!/usr/bin/phantom_ci hook-file\nconfig_dir = 1\n").unwrap();
        let error = HookFile::read(&hook).map(HookFile::args).unwrap_err();
        assert!(error.contains("configure hook --force"), "{error}");
        for empty in ["config_dir", "data_dir", "spool_dir"] {
            let mut text =
                "#!/usr/bin/phantom_ci hook-file\nconfig_dir = \"/c\"\ndata_dir = \"/d\"\n"
                    .replace(
                        &format!("{empty} = \"/{}\"", &empty[..1]),
                        &format!("{empty} = \"\""),
                    );
            if empty == "spool_dir" {
                text.push_str("spool_dir = \"\"\n");
            }
            std::fs::write(&hook, &text).unwrap();
            let error = HookFile::read(&hook).unwrap_err();
            assert!(error.contains(&format!("`{empty}` is empty")), "{error}");
        }
        assert!(HookFile::read(&bare.path().join("missing")).is_err());

        // A binary whose path cannot stand on a `#!` line gets the shell form.
        for odd in [
            "/opt/my tools/phantom_ci".to_string(),
            format!("/{}/phantom_ci", "d".repeat(240)),
            "relative/phantom_ci".to_string(),
        ] {
            let script = render(Path::new(&odd), &dirs, None, true).unwrap();
            assert!(script.starts_with("#!/bin/sh\n"), "{odd}: {script}");
            let exec = script.lines().find(|l| l.starts_with("exec ")).unwrap();
            assert_eq!(
                shell_words::split(exec).unwrap(),
                [
                    "exec",
                    odd.as_str(),
                    "--config-dir",
                    "/etc/phantom ci",
                    "--data-dir",
                    "/var/lib/it's \"$HOME\"",
                    "hook",
                    "--wait"
                ]
            );
            std::fs::write(&hook, &script).unwrap();
            assert_eq!(existing(bare.path()), ours_waiting);
        }
        let script = render(
            Path::new("/opt/my tools/phantom_ci"),
            &dirs,
            Some(spool),
            false,
        )
        .unwrap();
        assert!(
            script.contains(" hook --spool-dir /srv/spool\n"),
            "{script}"
        );

        // A directory named like a placeholder is written as it is named, in both forms.
        let odd = Dirs {
            config: "/srv/{{pokes}}".into(),
            data: "/srv/{{wait}}'x".into(),
        };
        for binary in ["/usr/bin/phantom_ci", "/opt/my tools/phantom_ci"] {
            std::fs::write(&hook, render(Path::new(binary), &odd, None, false).unwrap()).unwrap();
            assert_eq!(
                existing(bare.path()),
                Existing::Ours {
                    config_dir: Some("/srv/{{pokes}}".into()),
                    data_dir: Some("/srv/{{wait}}'x".into()),
                    wait: false
                },
                "{binary}"
            );
        }

        std::fs::write(&hook, "#!/bin/sh\nexec other-ci\n").unwrap();
        assert_eq!(existing(bare.path()), Existing::Foreign);
        std::fs::remove_file(&hook).unwrap();
        assert_eq!(existing(bare.path()), Existing::None);
    }

    #[test]
    fn a_hook_of_an_earlier_version_with_the_same_command_is_updated_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let bare = tmp.path().join("app.git");
        git2::Repository::init_bare(&bare).unwrap();
        std::fs::create_dir_all(bare.join("hooks")).unwrap();
        let hook = bare.join("hooks/post-receive");
        let dirs = Dirs {
            config: "/etc/phantom_ci".into(),
            data: "/var/lib/phantom_ci".into(),
        };
        let binary = Path::new("/usr/bin/phantom_ci");
        // What the version before the `#!` form wrote.
        let earlier = "#!/bin/sh\n# phantom_ci post-receive hook, written by `phantom_ci configure \
                       hook`.\n#\n# Follow a run with: phantom_ci logs <repo> --follow\nexec \
                       /usr/bin/phantom_ci --config-dir /etc/phantom_ci --data-dir \
                       /var/lib/phantom_ci hook\n";
        std::fs::write(&hook, earlier).unwrap();
        let script = render(binary, &dirs, None, false).unwrap();
        let (_, outcome) = install(&bare, &script, false).unwrap();
        assert_eq!(outcome, Installed::Updated);
        assert_eq!(std::fs::read_to_string(&hook).unwrap(), script);
        assert_eq!(
            install(&bare, &script, false).unwrap().1,
            Installed::Unchanged
        );
        // Other settings (here: `--wait`) are still refused without `--force`.
        std::fs::write(&hook, earlier.replace(" hook\n", " hook --wait\n")).unwrap();
        assert_eq!(
            install(&bare, &script, false).unwrap().1,
            Installed::Refused { ours: true }
        );
        // So are runner pokes the new hook would drop.
        let pokes = Pokes {
            runners: vec![parse_runner("ssh://ci@runner1").unwrap()],
            name: "app".into(),
        };
        let poking = render_with_pokes(binary, &dirs, None, false, &pokes).unwrap();
        std::fs::write(&hook, &poking).unwrap();
        assert_eq!(
            install(&bare, &script, false).unwrap().1,
            Installed::Refused { ours: true }
        );
        assert_eq!(std::fs::read_to_string(&hook).unwrap(), poking);
    }

    #[test]
    fn only_plain_ssh_urls_name_a_runner() {
        let ok = |text: &str| parse_runner(text).unwrap();
        assert_eq!(
            ok("ssh://ci@runner1"),
            Runner {
                user: Some("ci".into()),
                host: "runner1".into(),
                port: None
            }
        );
        assert_eq!(ok("ssh://ci@runner1.example.org:2222/").port, Some(2222));
        assert_eq!(ok("ssh://runner1").user, None);
        assert_eq!(ok("ssh://ci@[::1]:22").host, "::1");
        for bad in [
            "ci@runner1",
            "runner1",
            "http://ci@runner1",
            "ssh://ci@-oProxyCommand=id",
            "ssh://-oProxyCommand=id",
            "ssh://-lroot@runner",
            "ssh://ci@runner1/srv/git",
            "ssh://ci@runner1:0",
            "ssh://ci@runner1:65536",
            "ssh://ci@runner1:+22",
            "ssh://ci@runner1:",
            "ssh://ci@",
            "ssh://@runner1",
            "ssh://c i@runner1",
            "ssh://ci@run ner1",
            "ssh://ci@runner1;id",
            "ssh://ci@[::1",
            "ssh://ci@[x]",
            "ssh://a@b@runner1",
            "ssh://ci@runner1\nid",
        ] {
            let error = parse_runner(bad).expect_err(bad);
            assert!(error.contains("--notify-runner"), "{error}");
            assert!(!error.contains('\n'), "{error}");
        }
        assert!(
            parse_runner("ssh://-oProxyCommand=id")
                .unwrap_err()
                .contains("option")
        );
    }

    #[test]
    fn each_runner_is_poked_in_the_background_before_the_hook_runs() {
        let dirs = Dirs {
            config: "/etc/phantom_ci".into(),
            data: "/var/lib/phantom_ci".into(),
        };
        let binary = Path::new("/usr/bin/phantom_ci");
        let plain = render(binary, &dirs, None, false).unwrap();
        assert!(!plain.contains("ssh"), "no runner, no poke: {plain}");
        let pokes = Pokes {
            runners: vec![
                parse_runner("ssh://ci@runner1:2222").unwrap(),
                parse_runner("ssh://runner2").unwrap(),
            ],
            name: "app".into(),
        };
        let script = render_with_pokes(binary, &dirs, None, false, &pokes).unwrap();
        let lines: Vec<&str> = script
            .lines()
            .filter(|l| l.starts_with("setsid "))
            .collect();
        assert_eq!(lines.len(), 2, "{script}");
        assert!(
            lines[0].ends_with(" </dev/null >/dev/null 2>&1 &"),
            "{}",
            lines[0]
        );
        let words =
            shell_words::split(lines[0].trim_end_matches(" </dev/null >/dev/null 2>&1 &")).unwrap();
        assert_eq!(
            words,
            [
                "setsid",
                "ssh",
                "-n",
                "-T",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "ServerAliveInterval=15",
                "-o",
                "ServerAliveCountMax=4",
                "-p",
                "2222",
                "-l",
                "ci",
                "--",
                "runner1",
                "poke app"
            ]
        );
        assert!(lines[1].contains(" -- runner2 'poke app' "), "{}", lines[1]);
        // The pokes come before the hook itself, which replaces the shell.
        let all: Vec<&str> = script.lines().collect();
        let exec = all.iter().position(|l| l.starts_with("exec ")).unwrap();
        let last_poke = all.iter().rposition(|l| l.starts_with("setsid ")).unwrap();
        assert!(last_poke < exec);
        assert_eq!(script.lines().filter(|l| l.starts_with("exec ")).count(), 1);
    }
}
