//! `sandbox = "bwrap"` (SPEC §4.4): every step runs under bubblewrap with the host file system (or the
//! repo's `sandbox_root`) read-only, a private `/tmp`, its own PID, IPC and UTS namespaces, no
//! capabilities, and no network unless `network = true`. phantom_ci's config dir, data dir and home are
//! hidden behind empty tmpfs mounts; only this run's workspace and artifacts are bound back, writable,
//! and the source repository's objects read-only (the workspace borrows them through
//! `objects/info/alternates`, so `git log` works in a step).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::Repo;
use crate::isolation::privilege::{self, StepUser};

/// What a run needs visible inside the sandbox, as host paths.
pub struct Mounts {
    /// Directories to hide behind an empty tmpfs (phantom_ci's config, data and home).
    pub hidden: Vec<PathBuf>,
    /// Directories bound back writable (the workspace and the artifacts directory).
    pub writable: Vec<PathBuf>,
    /// Directories bound back read-only (the source repository's objects).
    pub read_only: Vec<PathBuf>,
}

/// A prepared `bwrap` invocation; [`Sandbox::command`] puts a step's argv after it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    bwrap: PathBuf,
    args: Vec<OsString>,
}

impl Sandbox {
    /// Prepares the sandbox of `repo`'s steps. The error is the message of an `error` run: nothing runs
    /// unsandboxed in its place.
    pub fn new(repo: &Repo, user: &StepUser, mounts: &Mounts) -> Result<Sandbox, String> {
        let bwrap = find_bwrap(&repo.name)?;
        let root = repo.sandbox_root.as_deref();
        if let Some(root) = root {
            check_root(&repo.name, root)?;
        }
        let exists_inside = |path: &Path| match root {
            Some(root) => root.join(relative(path)).is_dir(),
            None => path.is_dir(),
        };
        let mut args: Vec<OsString> = Vec::new();
        let mut flag = |a: &str| args.push(a.into());
        for a in [
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ] {
            flag(a);
        }
        if !repo.network {
            flag("--unshare-net");
        }
        let mut mount = |how: &str, from: &Path, to: &Path| {
            args.push(how.into());
            args.push(from.into());
            args.push(to.into());
        };
        mount("--ro-bind", root.unwrap_or(Path::new("/")), Path::new("/"));
        for (how, dir) in [("--dev", "/dev"), ("--proc", "/proc"), ("--tmpfs", "/tmp")] {
            args.push(how.into());
            args.push(dir.into());
        }
        // The host's runtime directory holds its sockets (systemd, D-Bus, the user managers, docker):
        // a read-only mount does not stop a `connect()`, and `--unshare-net` does not cover path
        // sockets, so /run is replaced by an empty tmpfs.
        if root.is_none() && Path::new("/run").is_dir() {
            args.push("--tmpfs".into());
            args.push("/run".into());
            // Files programs read that hosts keep under /run: the resolver configuration
            // (systemd-resolved, resolvconf and NetworkManager link /etc/resolv.conf there) and
            // NixOS's system profile. Bound back read-only; sockets stay out.
            let resolv = std::fs::canonicalize("/etc/resolv.conf").ok();
            let profile = Some(PathBuf::from("/run/current-system"));
            for path in [resolv, profile].into_iter().flatten() {
                if path.starts_with("/run") && path.exists() {
                    args.extend(["--ro-bind-try".into(), path.clone().into(), path.into()]);
                }
            }
        }
        let hidden: Vec<PathBuf> = outermost(&mounts.hidden)
            .into_iter()
            .filter(|dir| dir != Path::new("/") && exists_inside(dir))
            // A directory the step user cannot even reach needs no hiding (and an unprivileged bwrap
            // could not mount over it).
            .filter(|dir| {
                root.is_some()
                    || dir
                        .parent()
                        .is_none_or(|p| privilege::unreachable_parent(user, p).is_none())
            })
            .collect();
        for dir in &hidden {
            args.push("--tmpfs".into());
            args.push(dir.into());
        }
        if let Some(root) = root {
            let creatable = |path: &Path| {
                path.starts_with("/tmp")
                    || hidden.iter().any(|h| path.starts_with(h))
                    || exists_inside(path)
            };
            for dir in mounts.writable.iter().chain(&mounts.read_only) {
                if !creatable(dir) {
                    return Err(format!(
                        "repo `{}`: the `sandbox_root` `{}` has no directory `{}` to mount `{}` on; \
                         create it (`mkdir -p {}`)",
                        repo.name,
                        root.display(),
                        dir.display(),
                        dir.display(),
                        root.join(relative(dir)).display()
                    ));
                }
            }
        }
        for dir in &mounts.writable {
            args.extend(["--bind".into(), dir.into(), dir.into()]);
        }
        for dir in &mounts.read_only {
            args.extend(["--ro-bind".into(), dir.into(), dir.into()]);
        }
        Ok(Sandbox { bwrap, args })
    }

    /// The argv that runs `argv` in the sandbox with `cwd` as its working directory: `bwrap`'s.
    pub fn argv(&self, argv: &[String], cwd: &Path) -> Vec<OsString> {
        let mut all = vec![self.bwrap.clone().into_os_string()];
        all.extend(self.args.iter().cloned());
        all.extend(["--chdir".into(), cwd.into(), "--".into()]);
        all.extend(argv.iter().map(OsString::from));
        all
    }
}

/// `bwrap` on phantom_ci's own `PATH` (or the default one).
fn find_bwrap(repo: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| crate::isolation::DEFAULT_PATH.into());
    std::env::split_paths(&path)
        .map(|dir| dir.join("bwrap"))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            format!(
                "repo `{repo}` has `sandbox = \"bwrap\"`, but `bwrap` is not on PATH (`{}`): install \
                 bubblewrap (`apt-get install bubblewrap`), or set `sandbox = \"none\"`; steps never \
                 run unsandboxed in its place",
                path.to_string_lossy()
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A `sandbox_root` must be a directory with the mount points bwrap needs.
fn check_root(repo: &str, root: &Path) -> Result<(), String> {
    if !root.is_dir() {
        return Err(format!(
            "repo `{repo}`: the `sandbox_root` `{}` is not a directory; prepare a root file system \
             there (e.g. with debootstrap) or remove `sandbox_root`",
            root.display()
        ));
    }
    let missing: Vec<&str> = ["dev", "proc", "tmp"]
        .into_iter()
        .filter(|dir| !root.join(dir).is_dir())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "repo `{repo}`: the `sandbox_root` `{}` lacks {}; create {} (empty directories)",
            root.display(),
            missing
                .iter()
                .map(|d| format!("`/{d}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        ));
    }
    Ok(())
}

/// `path` without its leading `/`, to join below a root.
fn relative(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

/// The directories of `dirs` that are not inside another of them (hiding the outer one hides both).
fn outermost(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut sorted: Vec<PathBuf> = dirs.to_vec();
    sorted.sort_by_key(|d| d.components().count());
    let mut kept: Vec<PathBuf> = Vec::new();
    for dir in sorted {
        if !kept.iter().any(|k| dir.starts_with(k)) {
            kept.push(dir);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_hidden_directories_are_hidden_once() {
        let dirs = [
            PathBuf::from("/home/ci/.local/share/phantom_ci"),
            PathBuf::from("/home/ci"),
            PathBuf::from("/etc/phantom_ci"),
            PathBuf::from("/home/ci2"),
        ];
        assert_eq!(
            outermost(&dirs),
            [
                PathBuf::from("/home/ci"),
                PathBuf::from("/etc/phantom_ci"),
                PathBuf::from("/home/ci2")
            ]
        );
    }

    #[test]
    fn a_root_without_mount_points_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dev")).unwrap();
        let message = check_root("app", dir.path()).unwrap_err();
        assert!(message.contains("`/proc`, `/tmp`"), "{message}");
        let message = check_root("app", &dir.path().join("nope")).unwrap_err();
        assert!(message.contains("not a directory"), "{message}");
    }
}
