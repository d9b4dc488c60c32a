//! The systemd units `phantom_ci configure service` writes (SPEC §3, §4.7): a `Type=oneshot` service
//! running `phantom_ci tick`, a timer starting it every interval, and — for the system deployment — a
//! path unit starting it as soon as a pusher spools work. Nothing stays resident: systemd starts a tick,
//! the tick exits.
//!
//! Hardening of the system service, and why (see also `docs/setup.md`):
//! - `NoNewPrivileges=yes`: nothing the service starts can gain privileges through a setuid binary or
//!   file capabilities (`sudo` in a step fails). Dropping from root to `run_as` with `setuid()` is
//!   not a gain and still works; unprivileged `bwrap` (user namespaces) still works.
//! - `ProtectSystem=strict`: the whole file system is read-only except the data dir (`StateDirectory=`
//!   or `ReadWritePaths=`) and the homes of the `run_as` users configured when the unit was written
//!   (steps keep caches there: `~/.cargo`, `~/.npm`, …).
//! - `PrivateTmp=yes`, `PrivateDevices=yes`: a private `/tmp` and `/var/tmp`; only pseudo devices.
//! - `ProtectKernelModules=yes`, `ProtectClock=yes`, `ProtectHostname=yes`, `RestrictSUIDSGID=yes`,
//!   `LockPersonality=yes`, `RestrictRealtime=yes`.
//! - `Delegate=yes` (user and system units): the unit's cgroup is phantom_ci's to divide, so every run
//!   gets a cgroup of its own below it and ends with `cgroup.kill` (SPEC §4.8); steps running as
//!   another user cannot write there.
//!
//! Left out on purpose: `ProtectControlGroups=` (it makes the whole cgroup tree read-only, the
//! delegated subtree included, and runs would lose their cgroups), `ProtectKernelTunables=`/
//! `ProtectKernelLogs=` (they cover parts of `/proc`, and the kernel then refuses the fresh `/proc`
//! that `bwrap --proc` mounts), `RestrictNamespaces=` (bwrap needs user, mount, PID and network
//! namespaces), `PrivateNetwork=` (fetches, webhooks, steps), `MemoryDenyWriteExecute=` (JIT compilers
//! in steps), `SystemCallFilter=` (steps run arbitrary builds), `CapabilityBoundingSet=` (a step with
//! `run_as = "root"`, or bwrap started as root, needs the capabilities; steps of other users lose all
//! of them at `setuid()` anyway).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::dirs::Dirs;
use crate::error::Error;

pub const SERVICE: &str = "phantom_ci.service";
pub const TIMER: &str = "phantom_ci.timer";
pub const PATH_UNIT: &str = "phantom_ci.path";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
pub use crate::config::dirs::{SYSTEM_CONFIG_DIR, SYSTEM_DATA_DIR};

/// The first line of every unit phantom_ci writes, to tell its own units from others.
const MARKER: &str =
    "# Written by `phantom_ci configure service`; run it again to change this unit.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `~/.config/systemd/user/`, run by the user's own service manager.
    User,
    /// `/etc/systemd/system/`, run as root.
    System,
}

impl Scope {
    /// `systemctl` or `systemctl --user`.
    pub fn systemctl(self) -> &'static str {
        match self {
            Scope::User => "systemctl --user",
            Scope::System => "systemctl",
        }
    }
}

/// What the units run and how often.
#[derive(Debug, Clone)]
pub struct Settings {
    pub scope: Scope,
    pub binary: PathBuf,
    pub dirs: Dirs,
    pub interval: Duration,
    /// A spool other than `<data>/spool`, given with `--spool-dir`/`PHANTOM_CI_SPOOL_DIR`.
    pub spool: Option<PathBuf>,
    /// Homes of the `run_as` users: writable for the steps despite `ProtectSystem=strict`.
    pub writable: Vec<PathBuf>,
}

/// One unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub name: &'static str,
    pub text: String,
}

/// The dirs a system service uses: those in force when the operator chose them (option or
/// environment), else `/etc/phantom_ci` and `/var/lib/phantom_ci` rather than root's home (SPEC §4.3).
pub fn system_dirs(active: &Dirs) -> Dirs {
    let project = directories::ProjectDirs::from("com", "helloimalemur", "phantom_ci");
    let is_default = |dir: &Path, default: Option<&Path>| {
        default.is_some_and(|d| std::path::absolute(d).is_ok_and(|d| d == dir))
    };
    let config_default = project.as_ref().map(|p| p.config_dir());
    let data_default = project.as_ref().map(|p| p.data_dir());
    Dirs {
        config: if is_default(&active.config, config_default) {
            PathBuf::from(SYSTEM_CONFIG_DIR)
        } else {
            active.config.clone()
        },
        data: if is_default(&active.data, data_default) {
            PathBuf::from(SYSTEM_DATA_DIR)
        } else {
            active.data.clone()
        },
    }
}

/// Where the units go: `$XDG_CONFIG_HOME/systemd/user` (`~/.config/systemd/user`) or
/// `/etc/systemd/system`.
pub fn unit_dir(scope: Scope) -> Result<PathBuf, Error> {
    match scope {
        Scope::System => Ok(PathBuf::from("/etc/systemd/system")),
        Scope::User => directories::BaseDirs::new()
            .map(|b| b.config_dir().join("systemd").join("user"))
            .ok_or_else(|| {
                Error::Usage(
                    "cannot tell where user units go (no home directory); use --print and \
                     install them by hand"
                        .into(),
                )
            }),
    }
}

/// The units for `settings`: service and timer, and the path unit for the system scope.
pub fn units(settings: &Settings) -> Result<Vec<Unit>, Error> {
    let mut units = vec![
        Unit {
            name: SERVICE,
            text: service(settings)?,
        },
        Unit {
            name: TIMER,
            text: timer(settings.interval),
        },
    ];
    if settings.scope == Scope::System {
        units.push(Unit {
            name: PATH_UNIT,
            text: path_unit(
                &settings
                    .spool
                    .clone()
                    .unwrap_or_else(|| settings.dirs.spool()),
            )?,
        });
    }
    Ok(units)
}

/// The command that enables what [`units`] wrote.
pub fn enable_command(scope: Scope) -> String {
    let systemctl = scope.systemctl();
    let units = match scope {
        Scope::User => TIMER.to_string(),
        Scope::System => format!("{TIMER} {PATH_UNIT}"),
    };
    format!("{systemctl} daemon-reload && {systemctl} enable --now {units}")
}

fn service(s: &Settings) -> Result<String, Error> {
    let mut exec = vec![
        exec_word(&path_text(&s.binary)?)?,
        "--config-dir".into(),
        exec_word(&path_text(&s.dirs.config)?)?,
        "--data-dir".into(),
        exec_word(&path_text(&s.dirs.data)?)?,
    ];
    exec.push("tick".into());
    if let Some(spool) = &s.spool {
        exec.extend(["--spool-dir".into(), exec_word(&path_text(spool)?)?]);
    }
    let exec = exec.join(" ");
    let mut text = format!(
        "{MARKER}\n[Unit]\nDescription=phantom_ci: run the CI workflows of the branches that moved\n"
    );
    if s.scope == Scope::System {
        // URL remotes are fetched: wait for the network at boot.
        text.push_str("Wants=network-online.target\nAfter=network-online.target\n");
    }
    text.push_str(&format!("\n[Service]\nType=oneshot\nExecStart={exec}\n"));
    // The unit's cgroup is phantom_ci's to divide: each run gets a cgroup of its own there.
    text.push_str("Delegate=yes\n");
    text.push_str(
        "NoNewPrivileges=yes\nRestrictSUIDSGID=yes\nLockPersonality=yes\nRestrictRealtime=yes\n",
    );
    if s.scope == Scope::System {
        text.push_str("ProtectSystem=strict\n");
        match state_directory(&s.dirs.data) {
            Some(name) => {
                text.push_str(&format!("StateDirectory={name}\nStateDirectoryMode=0711\n"))
            }
            None => text.push_str(&format!(
                "ReadWritePaths={}\n",
                list_word(&path_text(&s.dirs.data)?)?
            )),
        }
        for home in &s.writable {
            text.push_str(&format!(
                "ReadWritePaths=-{}\n",
                list_word(&path_text(home)?)?
            ));
        }
        text.push_str(
            "PrivateTmp=yes\nPrivateDevices=yes\nProtectKernelModules=yes\nProtectClock=yes\n\
             ProtectHostname=yes\n",
        );
    }
    Ok(text)
}

fn timer(interval: Duration) -> String {
    let accuracy = (interval / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    format!(
        "{MARKER}\n[Unit]\nDescription=phantom_ci: check the configured repositories every {every}\n\n\
         [Timer]\nOnBootSec=1min\nOnUnitActiveSec={every}\nAccuracySec={accuracy}\nUnit={SERVICE}\n\n\
         [Install]\nWantedBy=timers.target\n",
        every = timespan(interval),
        accuracy = timespan(accuracy),
    )
}

fn path_unit(spool: &Path) -> Result<String, Error> {
    Ok(format!(
        "{MARKER}\n[Unit]\nDescription=phantom_ci: start a tick as soon as a push is spooled\n\n\
         [Path]\nDirectoryNotEmpty={}\nUnit={SERVICE}\n\n[Install]\nWantedBy=paths.target\n",
        path_text(spool)?.replace('%', "%%")
    ))
}

/// `phantom_ci` for a data dir `/var/lib/phantom_ci`, which systemd then creates and keeps writable.
fn state_directory(data: &Path) -> Option<String> {
    let name = data.strip_prefix("/var/lib").ok()?.to_str()?;
    let simple = !name.is_empty()
        && !name.contains('/')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    simple.then(|| name.to_string())
}

/// A systemd time span: `5min`, `1h`, `90s`, `500ms`.
fn timespan(duration: Duration) -> String {
    let ms = duration.as_millis();
    let secs = duration.as_secs();
    if duration.subsec_millis() != 0 || secs == 0 {
        format!("{ms}ms")
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}min", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// A path as unit files hold it: UTF-8, no control characters, no surrounding spaces.
fn path_text(path: &Path) -> Result<String, Error> {
    let bad = || {
        Error::Usage(format!(
            "`{}` cannot be written into a systemd unit (it is not UTF-8, or has control \
             characters or surrounding spaces); choose another path",
            crate::describe::terminal(&path.to_string_lossy())
        ))
    };
    let text = path.to_str().ok_or_else(bad)?;
    if text.chars().any(char::is_control) || text.trim() != text {
        return Err(bad());
    }
    Ok(text.to_string())
}

/// One word of a space-separated list setting (`ReadWritePaths=`): `%` doubled, quoted when needed.
fn list_word(text: &str) -> Result<String, Error> {
    Ok(quote_if_needed(&text.replace('%', "%%")))
}

/// One word of `ExecStart=`: like [`list_word`], and `$` doubled (systemd expands `$VAR` there).
fn exec_word(text: &str) -> Result<String, Error> {
    Ok(quote_if_needed(&text.replace('%', "%%").replace('$', "$$")))
}

fn quote_if_needed(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@=%$".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The first file of `dir` that [`install`] would have to replace and that phantom_ci did not write.
pub fn foreign_unit(dir: &Path, units: &[Unit]) -> Option<PathBuf> {
    units
        .iter()
        .map(|unit| (dir.join(unit.name), unit))
        .find_map(|(path, unit)| {
            let existing = std::fs::read_to_string(&path).ok()?;
            (existing != unit.text && !existing.starts_with(MARKER)).then_some(path)
        })
}

/// Writes `units` into `dir` (created if missing), each atomically with mode 0644, and returns their
/// paths. A file of the same name that phantom_ci did not write is never overwritten: then nothing is
/// written at all.
pub fn install(dir: &Path, units: &[Unit]) -> Result<Vec<PathBuf>, Error> {
    if let Some(path) = foreign_unit(dir, units) {
        return Err(Error::Usage(format!(
            "`{}` exists and was not written by phantom_ci; move it away first, or install the \
             units by hand (print them with `--print`)",
            path.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    let mut written = Vec::with_capacity(units.len());
    for unit in units {
        let path = dir.join(unit.name);
        write_unit(dir, &path, &unit.text).map_err(|e| Error::io("cannot write", &path, e))?;
        written.push(path);
    }
    Ok(written)
}

fn write_unit(dir: &Path, path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut tmp = tempfile::Builder::new()
        .prefix(".phantom_ci.")
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(scope: Scope, data: &str) -> Settings {
        Settings {
            scope,
            binary: "/usr/local/bin/phantom_ci".into(),
            dirs: Dirs {
                config: "/etc/phantom_ci".into(),
                data: data.into(),
            },
            interval: DEFAULT_INTERVAL,
            spool: None,
            writable: vec!["/home/ci".into()],
        }
    }

    #[test]
    fn another_spool_is_passed_on_and_watched() {
        let mut settings = settings(Scope::System, "/var/lib/phantom_ci");
        settings.spool = Some("/srv/spool".into());
        let units = units(&settings).unwrap();
        assert!(
            units[0].text.contains(" tick --spool-dir /srv/spool\n"),
            "{}",
            units[0].text
        );
        assert!(
            units[2].text.contains("\nDirectoryNotEmpty=/srv/spool\n"),
            "{}",
            units[2].text
        );
    }

    #[test]
    fn system_units_are_hardened_and_watch_the_spool() {
        let units = units(&settings(Scope::System, "/var/lib/phantom_ci")).unwrap();
        let names: Vec<_> = units.iter().map(|u| u.name).collect();
        assert_eq!(names, [SERVICE, TIMER, PATH_UNIT]);
        let service = &units[0].text;
        assert!(service.contains(
            "\nExecStart=/usr/local/bin/phantom_ci --config-dir /etc/phantom_ci --data-dir \
             /var/lib/phantom_ci tick\n"
        ));
        for line in [
            "Type=oneshot",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "StateDirectory=phantom_ci",
            "ReadWritePaths=-/home/ci",
            "PrivateTmp=yes",
            "Delegate=yes",
        ] {
            assert!(
                service.contains(&format!("\n{line}\n")),
                "{line}:\n{service}"
            );
        }
        assert!(!service.contains("ProtectKernelTunables"));
        // It would make the delegated cgroup read-only.
        assert!(!service.contains("ProtectControlGroups"));
        assert!(units[1].text.contains("\nOnUnitActiveSec=5min\n"));
        assert!(
            units[2]
                .text
                .contains("\nDirectoryNotEmpty=/var/lib/phantom_ci/spool\n")
        );
    }

    #[test]
    fn user_units_have_no_namespacing_and_no_path_unit() {
        let units = units(&settings(Scope::User, "/home/me/.local/share/phantom_ci")).unwrap();
        assert_eq!(units.len(), 2);
        assert!(!units[0].text.contains("ProtectSystem"));
        assert!(!units[0].text.contains("network-online"));
        assert!(units[0].text.contains("\nNoNewPrivileges=yes\n"));
        assert!(units[0].text.contains("\nDelegate=yes\n"));
        assert_eq!(
            enable_command(Scope::User),
            "systemctl --user daemon-reload && systemctl --user enable --now phantom_ci.timer"
        );
    }

    #[test]
    fn odd_paths_are_escaped_for_systemd() {
        let mut s = settings(Scope::System, "/srv/ci data/100%");
        s.binary = "/opt/$HOME/\"x\"".into();
        let service = &units(&s).unwrap()[0].text;
        assert!(
            service.contains("ExecStart=\"/opt/$$HOME/\\\"x\\\"\" --config-dir"),
            "{service}"
        );
        assert!(
            service.contains("--data-dir \"/srv/ci data/100%%\" tick"),
            "{service}"
        );
        assert!(
            service.contains("\nReadWritePaths=\"/srv/ci data/100%%\"\n"),
            "{service}"
        );
        s.dirs.data = "/srv/line\nbreak".into();
        assert!(units(&s).is_err());
    }

    #[test]
    fn timespans() {
        assert_eq!(timespan(Duration::from_secs(300)), "5min");
        assert_eq!(timespan(Duration::from_secs(7200)), "2h");
        assert_eq!(timespan(Duration::from_secs(90)), "90s");
        assert_eq!(timespan(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn state_directories() {
        assert_eq!(
            state_directory(Path::new("/var/lib/phantom_ci")),
            Some("phantom_ci".into())
        );
        assert_eq!(state_directory(Path::new("/var/lib/a/b")), None);
        assert_eq!(state_directory(Path::new("/srv/ci")), None);
    }

    #[test]
    fn foreign_units_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let units = units(&settings(Scope::User, "/d")).unwrap();
        install(dir.path(), &units).unwrap();
        install(dir.path(), &units).unwrap();
        std::fs::write(dir.path().join(TIMER), "[Timer]\n").unwrap();
        assert!(install(dir.path(), &units).is_err());
        assert_eq!(
            std::fs::read_to_string(dir.path().join(TIMER)).unwrap(),
            "[Timer]\n"
        );
    }
}
