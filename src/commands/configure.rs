//! `phantom_ci configure hook|service|cron`: install phantom_ci as a bare repository's post-receive
//! hook, or write the systemd units (or, without systemd, the crontab line) that run `phantom_ci tick`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::commands::{Context, Suggestion};
use crate::config::quantities::HumanDuration;
use crate::config::{Config, Location};
use crate::error::{Error, ExitStatus};
use crate::install::cron;
use crate::install::hook_template::{self, Installed, Pokes};
use crate::install::systemd::{self, Scope, Settings};

#[derive(Debug, Args)]
pub struct ConfigureArgs {
    #[command(subcommand)]
    pub what: What,
    #[command(flatten)]
    pub spool: super::SpoolArg,
}

#[derive(Debug, Subcommand)]
pub enum What {
    /// Install phantom_ci as the post-receive hook of a bare repository
    Hook(HookArgs),
    /// Write a systemd service and timer (and, with --system, a path unit) that run `phantom_ci tick`
    Service(ServiceArgs),
    /// Without systemd: a crontab line that runs `phantom_ci tick` every interval, never twice at once
    Cron(CronArgs),
}

#[derive(Debug, Args)]
pub struct HookArgs {
    /// The bare repository that people push to
    pub bare_repo: PathBuf,
    /// Run in the foreground during the push, so that the pusher sees the output
    #[arg(long)]
    pub wait: bool,
    /// Replace an existing post-receive hook that differs
    #[arg(long)]
    pub force: bool,
    /// Poke this runner host after every push, in the background (repeatable): it runs `ssh
    /// -o BatchMode=yes USER@HOST poke <repo>` with the hook user's own keys and known_hosts
    #[arg(long = "notify-runner", value_name = "ssh://USER@HOST[:PORT]")]
    pub notify_runner: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// System units in /etc/systemd/system, run as root (default: user units in ~/.config/systemd/user)
    #[arg(long)]
    pub system: bool,
    /// How often the timer runs `tick`, like "5m" or "1h" [default: 5m]
    #[arg(long, value_name = "DUR", value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// Only print the units; write nothing
    #[arg(long)]
    pub print: bool,
}

#[derive(Debug, Args)]
pub struct CronArgs {
    /// /etc/cron.d/phantom_ci, run as root (default: your own crontab, through `crontab`)
    #[arg(long)]
    pub system: bool,
    /// How often cron runs `tick`: minutes that divide an hour or hours that divide a day [default: 5m]
    #[arg(long, value_name = "DUR", value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// Only print the line; write nothing
    #[arg(long)]
    pub print: bool,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    HumanDuration::parse(text).map(|d| d.0)
}

pub fn run(args: ConfigureArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    match args.what {
        What::Hook(args) => hook(args, ctx),
        What::Service(args) => service(args, ctx),
        What::Cron(args) => cron(args, ctx),
    }
}

fn hook(args: HookArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let binary = current_binary()?;
    let pokes = pokes(&args)?;
    let script = hook_template::render_with_pokes(
        &binary,
        &ctx.dirs,
        ctx.custom_spool(),
        args.wait,
        &pokes,
    )?;
    let (path, outcome) = hook_template::install(&args.bare_repo, &script, args.force)?;
    let bare = args.bare_repo.canonicalize().unwrap_or(args.bare_repo);
    match outcome {
        Installed::Written => println!("installed `{}`", path.display()),
        Installed::Replaced => println!("replaced `{}`", path.display()),
        Installed::Unchanged => println!("`{}` is already installed", path.display()),
        Installed::Updated => println!(
            "updated `{}` to this version's hook (the same command)",
            path.display()
        ),
        Installed::Refused { ours } => {
            let what = if ours {
                "is a phantom_ci hook with other settings"
            } else {
                "already exists and is not phantom_ci's hook"
            };
            let force = ctx
                .suggest(&["configure", "hook"])
                .arg(&bare)
                .flag("--wait", args.wait);
            let force = args
                .notify_runner
                .iter()
                .fold(force, |s, url| s.arg("--notify-runner").arg(url))
                .arg("--force");
            return Err(Error::Usage(format!(
                "`{}` {what}; look at it, then run `{force}` to replace it",
                path.display()
            )));
        }
    }
    for runner in &args.notify_runner {
        println!(
            "pokes `{runner}` after every push, as `poke {}`",
            pokes.name
        );
    }
    if !pokes.runners.is_empty() {
        for program in ["ssh", "setsid"] {
            if !on_path(program) {
                eprintln!(
                    "phantom_ci: note: `{program}` is not on this PATH, and the hook needs it to poke \
                     runners (install openssh-client and util-linux); until then only the runners' \
                     timers run the pushes"
                );
            }
        }
    }
    if let Some(first) = args.notify_runner.first() {
        eprintln!(
            "phantom_ci: note: the pokes use the ssh keys and known_hosts of the user git runs this \
             hook as; try one as that user: `ssh -o BatchMode=yes {} poke {}` (each runner's \
             authorized_keys: `command=\"<path>/phantom_ci poke\",restrict <key>`)",
            first, pokes.name
        );
    }
    let configured = Config::load(&ctx.dirs.repo_toml()).is_ok_and(|config| {
        config.repos.iter().any(|r| {
            matches!(&r.location, Location::Local(p) if p.canonicalize().is_ok_and(|p| p == bare))
        })
    });
    if !configured && pokes.runners.is_empty() {
        eprintln!(
            "phantom_ci: note: no repo in `{}` uses this repository yet, so pushes run nothing; \
             add it with `{}`",
            ctx.dirs.repo_toml().display(),
            ctx.suggest(&["add"]).arg(&bare)
        );
    }
    Ok(ExitStatus::Success)
}

/// The runners `--notify-runner` names, and the name they are poked with: the bare repository's last
/// path component without `.git`.
fn pokes(args: &HookArgs) -> Result<Pokes, Error> {
    let runners = args
        .notify_runner
        .iter()
        .map(|url| hook_template::parse_runner(url).map_err(Error::Usage))
        .collect::<Result<Vec<_>, _>>()?;
    if runners.is_empty() {
        return Ok(Pokes::default());
    }
    let bare = args.bare_repo.canonicalize().map_err(|e| {
        Error::Usage(format!(
            "`{}`: {e}; give the path of a bare repository",
            args.bare_repo.display()
        ))
    })?;
    let component = bare
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = component
        .strip_suffix(".git")
        .unwrap_or(&component)
        .to_string();
    if !super::poke::plain_name(&name) {
        return Err(Error::Usage(format!(
            "`{}`: runners are poked with the repository's name, `{}`, which is not letters, \
             digits, `.`, `_` and `-`; rename the repository to poke runners for it",
            bare.display(),
            crate::describe::terminal(&name)
        )));
    }
    Ok(Pokes { runners, name })
}

/// Whether `program` is on `PATH` (as the hook's shell will look for it).
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// `configure service` as given, with `last` appended (`--print`).
fn service_command(args: &ServiceArgs, ctx: &Context, last: &str) -> Suggestion {
    ctx.suggest(&["configure", "service"])
        .flag("--system", args.system)
        .option(
            "--interval",
            args.interval
                .map(|i| humantime::format_duration(i).to_string()),
        )
        .arg(last)
}

fn service(args: ServiceArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let scope = if args.system {
        Scope::System
    } else {
        Scope::User
    };
    let dirs = match scope {
        Scope::System => systemd::system_dirs(&ctx.dirs),
        Scope::User => ctx.dirs.clone(),
    };
    let writable = match scope {
        Scope::System => run_as_homes(&Config::load(&dirs.repo_toml())?),
        Scope::User => Vec::new(),
    };
    let settings = Settings {
        scope,
        binary: current_binary()?,
        dirs: dirs.clone(),
        interval: args.interval.unwrap_or(systemd::DEFAULT_INTERVAL),
        spool: ctx.custom_spool().map(std::path::Path::to_path_buf),
        writable,
    };
    let units = systemd::units(&settings)?;
    if Config::load(&dirs.repo_toml()).is_ok_and(|c| c.repos.is_empty()) {
        let add = match scope {
            Scope::System => Suggestion::with_dirs(ctx.program(), &dirs, &["add"]),
            Scope::User => ctx.suggest(&["add"]),
        };
        eprintln!(
            "phantom_ci: note: the service reads `{}`, which configures no repo yet: add them with \
             `{}`",
            dirs.repo_toml().display(),
            add.placeholder("<PATH|URL>").placeholder("[BRANCH]")
        );
    }
    if scope == Scope::System
        && (dirs.data.starts_with("/tmp") || dirs.data.starts_with("/var/tmp"))
    {
        eprintln!(
            "phantom_ci: note: the service has a private /tmp (`PrivateTmp=yes`): a data directory \
             under /tmp or /var/tmp is not the one you see; use /var/lib/phantom_ci"
        );
    }
    if args.print {
        let dir = systemd::unit_dir(scope).unwrap_or_default();
        for (i, unit) in units.iter().enumerate() {
            if i > 0 {
                println!();
            }
            println!("# ==> {} <==", dir.join(unit.name).display());
            print!("{}", unit.text);
        }
        return Ok(ExitStatus::Success);
    }
    if scope == Scope::System && !nix::unistd::geteuid().is_root() {
        return Err(Error::Usage(format!(
            "writing system units needs root: run it as root, or print them with `{}`",
            service_command(&args, ctx, "--print")
        )));
    }
    let dir = systemd::unit_dir(scope)?;
    if let Some(path) = systemd::foreign_unit(&dir, &units) {
        return Err(Error::Usage(format!(
            "`{}` exists and was not written by phantom_ci; move it away first, or install the \
             units by hand (print them with `{}`)",
            path.display(),
            service_command(&args, ctx, "--print")
        )));
    }
    for path in systemd::install(&dir, &units)? {
        println!("wrote `{}`", path.display());
    }
    println!("now run:\n  {}", systemd::enable_command(scope));
    match scope {
        Scope::User => {
            if nix::unistd::geteuid().is_root() {
                eprintln!(
                    "phantom_ci: note: these are user units of root; for the system deployment \
                     use `configure service --system`"
                );
            }
            eprintln!(
                "phantom_ci: note: user timers run only while you are logged in, unless you run \
                 `loginctl enable-linger` once"
            );
        }
        Scope::System => {
            if dirs.config != ctx.dirs.config || dirs.data != ctx.dirs.data {
                eprintln!(
                    "phantom_ci: note: the service uses `--config-dir {} --data-dir {}`; pass the \
                     same to `add`, `status`, `logs` and `configure hook` (or set \
                     PHANTOM_CI_CONFIG_DIR and PHANTOM_CI_DATA_DIR)",
                    shell_words::quote(&dirs.config.to_string_lossy()),
                    shell_words::quote(&dirs.data.to_string_lossy())
                );
            }
            if !dirs.data.starts_with("/var/lib") && !dirs.data.is_dir() {
                eprintln!(
                    "phantom_ci: note: create `{}` before starting the service",
                    dirs.data.display()
                );
            }
        }
    }
    Ok(ExitStatus::Success)
}

fn cron(args: CronArgs, ctx: &Context) -> Result<ExitStatus, Error> {
    let dirs = if args.system {
        systemd::system_dirs(&ctx.dirs)
    } else {
        ctx.dirs.clone()
    };
    let every = args.interval.unwrap_or(systemd::DEFAULT_INTERVAL);
    let user = args.system.then_some("root");
    let entry = cron::entry(&current_binary()?, &dirs, every, user).map_err(Error::Usage)?;
    if args.print {
        print!("{entry}");
        if !dirs.data.is_dir() {
            eprintln!(
                "phantom_ci: note: the line locks `{}`, which does not exist yet: create it (or run \
                 `configure cron` without `--print`, which does)",
                dirs.data.display()
            );
        }
        return Ok(ExitStatus::Success);
    }
    let print = ctx
        .suggest(&["configure", "cron"])
        .flag("--system", args.system)
        .option(
            "--interval",
            args.interval
                .map(|i| humantime::format_duration(i).to_string()),
        )
        .arg("--print");
    if args.system && !nix::unistd::geteuid().is_root() {
        return Err(Error::Usage(format!(
            "writing `{}` needs root: run it as root, or print the line with `{print}`",
            cron::SYSTEM_FILE
        )));
    }
    // The line locks the data dir: it must exist (with the mode only phantom_ci's user opens).
    dirs.make(&dirs.data)
        .map_err(|e| Error::io("cannot create", &dirs.data, e))?;
    if args.system {
        let file = std::path::Path::new(cron::SYSTEM_FILE);
        let current = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io("cannot read", file, e)),
        };
        if !current.is_empty() && !current.starts_with(cron::MARKER) {
            return Err(Error::Usage(format!(
                "`{}` exists and was not written by phantom_ci; move it away first, or install \
                 the line by hand (print it with `{print}`)",
                file.display()
            )));
        }
        crate::state::atomic_file::write_public(file, entry.as_bytes())
            .map_err(|e| Error::io("cannot write", file, e))?;
        // The daemon lives in /usr/sbin, often not on a user's PATH.
        let daemon = ["cron", "crond"].iter().any(|name| {
            on_path(name)
                || ["/usr/sbin", "/sbin"]
                    .iter()
                    .any(|dir| std::path::Path::new(dir).join(name).is_file())
        });
        if daemon {
            println!("wrote `{}`; cron reads it by itself", file.display());
        } else {
            println!(
                "wrote `{}`; no cron daemon is installed here to read it: install cron (e.g. \
                 `apt-get install cron`), or use `{}`",
                file.display(),
                ctx.suggest(&["configure", "service", "--system"])
            );
        }
    } else {
        let listed = std::process::Command::new("crontab")
            .arg("-l")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                Error::Other(format!(
                    "cannot run `crontab` ({e}); install cron, or add the line from `{print}` \
                     by hand"
                ))
            })?;
        // `crontab -l` fails when the user has no crontab yet: start from nothing then — and only
        // then: any other failure would have the user's lines replaced by phantom_ci's alone.
        let current = if listed.status.success() {
            String::from_utf8_lossy(&listed.stdout).into_owned()
        } else if String::from_utf8_lossy(&listed.stderr).contains("no crontab") {
            String::new()
        } else {
            return Err(Error::Other(format!(
                "`crontab -l` failed: {}; add the line from `{print}` by hand",
                crate::describe::one_line(&String::from_utf8_lossy(&listed.stderr), 300)
            )));
        };
        let mut install = std::process::Command::new("crontab")
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Error::Other(format!("cannot run `crontab -`: {e}")))?;
        if let Some(mut stdin) = install.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(cron::replace_entry(&current, &entry).as_bytes())
                .map_err(|e| Error::Other(format!("cannot write to `crontab -`: {e}")))?;
        }
        let status = install
            .wait()
            .map_err(|e| Error::Other(format!("`crontab -` did not finish: {e}")))?;
        if !status.success() {
            return Err(Error::Other(format!(
                "`crontab -` refused the new crontab ({status}); add the line from `{print}` by hand"
            )));
        }
        println!("installed in your crontab (`crontab -l` shows it)");
    }
    Ok(ExitStatus::Success)
}

/// The absolute path of the running binary, for the hook and the units to start.
fn current_binary() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Other(format!("cannot tell where the phantom_ci binary is: {e}")))?;
    if exe.to_string_lossy().ends_with(" (deleted)") || !exe.is_file() {
        return Err(Error::Other(format!(
            "the running binary `{}` was replaced or deleted; run the installed one",
            exe.display()
        )));
    }
    Ok(exe)
}

/// The home directories of the `run_as` users, which their steps may write to.
fn run_as_homes(config: &Config) -> Vec<PathBuf> {
    let homes: BTreeSet<PathBuf> = config
        .repos
        .iter()
        .filter_map(|r| r.run_as.as_deref())
        .filter_map(|name| nix::unistd::User::from_name(name).ok().flatten())
        .map(|user| user.dir)
        .filter(|dir| dir.is_absolute() && dir.parent().is_some())
        .collect();
    homes.into_iter().collect()
}
