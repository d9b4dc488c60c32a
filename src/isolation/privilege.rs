//! Who the steps run as (SPEC §4.3): never root unless the operator says so, and when phantom_ci is root
//! and `run_as` names another user, that user's uid, primary gid and supplementary groups. The switch
//! itself happens in the child before `exec`, in [`crate::isolation::boundary`].

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::resource::{Resource, getrlimit};
use nix::unistd::{Gid, Uid, User, geteuid, getgrouplist};

use crate::config::Limits;

/// The user steps run as.
#[derive(Debug, Clone)]
pub struct StepUser {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    pub groups: Vec<Gid>,
    pub home: PathBuf,
    /// Whether phantom_ci must switch to this user (it is root and the user is not).
    pub switch: bool,
}

/// Decides the step user for a repo whose `run_as` is `run_as`. The error is the message of an `error` run.
pub fn step_user(repo: &str, run_as: Option<&str>) -> Result<StepUser, String> {
    let euid = geteuid();
    let me = User::from_uid(euid).ok().flatten().ok_or_else(|| {
        format!("phantom_ci runs as uid {euid}, which has no entry in the user database")
    })?;
    let wanted = match run_as {
        None if euid.is_root() => {
            return Err(format!(
                "phantom_ci is running as root and repo `{repo}` has no `run_as`: steps never run as \
                 root unless you say so. Set `run_as = \"<user>\"` in Repo.toml (a user without \
                 privileges), or `run_as = \"root\"` to allow root (`--run-as root` for `phantom_ci run`)"
            ));
        }
        None => return from_user(me, false),
        Some(name) if name == me.name => return from_user(me, false),
        Some(name) => name,
    };
    if !euid.is_root() {
        return Err(format!(
            "repo `{repo}` has `run_as = \"{wanted}\"`, but phantom_ci runs as `{}` and only root can \
             switch users; run phantom_ci as root, or as `{wanted}`",
            me.name
        ));
    }
    let user = User::from_name(wanted)
        .map_err(|e| format!("cannot look up the `run_as` user `{wanted}`: {e}"))?
        .ok_or_else(|| format!("the `run_as` user `{wanted}` of repo `{repo}` does not exist"))?;
    from_user(user, true)
}

fn from_user(user: User, switch: bool) -> Result<StepUser, String> {
    let groups = if switch {
        let name = CString::new(user.name.clone())
            .map_err(|_| format!("invalid user name `{}`", user.name))?;
        getgrouplist(&name, user.gid)
            .map_err(|e| format!("cannot list the groups of `{}`: {e}", user.name))?
    } else {
        Vec::new()
    };
    Ok(StepUser {
        name: user.name,
        uid: user.uid,
        gid: user.gid,
        groups,
        home: user.dir,
        switch,
    })
}

/// Resource limits as `setrlimit` takes them, never above the current hard limit (which an unprivileged
/// process — or a root without CAP_SYS_RESOURCE — cannot raise).
pub fn rlimits(limits: &Limits) -> Vec<(Resource, u64)> {
    let wanted = [
        (Resource::RLIMIT_NOFILE, limits.nofile),
        (Resource::RLIMIT_NPROC, limits.nproc),
        (Resource::RLIMIT_CPU, limits.cpu.map(|d| d.as_secs().max(1))),
        (Resource::RLIMIT_FSIZE, limits.fsize),
        (Resource::RLIMIT_AS, limits.address_space),
    ];
    wanted
        .into_iter()
        .filter_map(|(resource, value)| {
            let value = value?;
            let hard = getrlimit(resource).map_or(u64::MAX, |(_, hard)| hard);
            Some((resource, value.min(hard)))
        })
        .collect()
}

/// Checks that `user` can reach `dir`: every directory from `/` down must be searchable by it.
/// Returns the first one that is not.
pub fn unreachable_parent(user: &StepUser, dir: &Path) -> Option<PathBuf> {
    if user.uid.is_root() {
        return None;
    }
    let mut path = PathBuf::new();
    for component in dir.components() {
        path.push(component);
        if !user_may(user, &path, 0o1) {
            return Some(path);
        }
    }
    None
}

/// Whether `user` may list and enter the directory `dir` (and every directory above it).
pub fn can_read_dir(user: &StepUser, dir: &Path) -> bool {
    user.uid.is_root() || (unreachable_parent(user, dir).is_none() && user_may(user, dir, 0o4))
}

/// Whether the permission bits of `path` grant `user` the access `bits` (4 read, 2 write, 1 execute).
fn user_may(user: &StepUser, path: &Path, bits: u32) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let mode = meta.mode();
    let shift = if meta.uid() == user.uid.as_raw() {
        6
    } else if meta.gid() == user.gid.as_raw()
        || user.groups.iter().any(|g| g.as_raw() == meta.gid())
    {
        3
    } else {
        0
    };
    (mode >> shift) & bits == bits
}

/// phantom_ci's own home directories: its user's home in the user database, and `$HOME` if it differs.
/// The sandbox hides them from steps.
pub fn own_homes() -> Vec<PathBuf> {
    let mut homes = Vec::new();
    if let Ok(Some(me)) = User::from_uid(geteuid()) {
        homes.push(me.dir);
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from)
        && home.is_absolute()
        && !homes.contains(&home)
    {
        homes.push(home);
    }
    homes
}

/// Gives `path` and everything below it (without following symbolic links) to `user`.
pub fn chown_tree(path: &Path, user: &StepUser) -> std::io::Result<()> {
    let (uid, gid) = (Some(user.uid.as_raw()), Some(user.gid.as_raw()));
    std::os::unix::fs::lchown(path, uid, gid)?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), user)?;
        }
    }
    Ok(())
}

/// The owner of `dir` as a [`StepUser`]: whom a child writing into `dir` runs as (SPEC §9: notes are
/// written as the owner of the repository directory, never as root into a pushers' repository).
/// `switch` is set when phantom_ci is root and the owner is not; otherwise the child runs as phantom_ci
/// itself (which cannot switch, and writes what its own permissions let it). An owner without an
/// entry in the user database is its uid and gid alone.
pub fn owner_of(dir: &Path) -> Result<StepUser, String> {
    let meta =
        std::fs::metadata(dir).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
    let (uid, gid) = (Uid::from_raw(meta.uid()), Gid::from_raw(meta.gid()));
    let euid = geteuid();
    if !euid.is_root() || uid.is_root() {
        let me = User::from_uid(euid).ok().flatten();
        return Ok(StepUser {
            name: me
                .as_ref()
                .map_or_else(|| euid.to_string(), |u| u.name.clone()),
            uid: euid,
            gid: nix::unistd::getegid(),
            groups: Vec::new(),
            home: me.map_or_else(|| PathBuf::from("/"), |u| u.dir),
            switch: false,
        });
    }
    match User::from_uid(uid).ok().flatten() {
        Some(user) => {
            let mut owner = from_user(user, true)?;
            // The directory's group, as its owner's primary group may differ from it.
            owner.gid = gid;
            if !owner.groups.contains(&gid) {
                owner.groups.push(gid);
            }
            Ok(owner)
        }
        None => Ok(StepUser {
            name: uid.to_string(),
            uid,
            gid,
            groups: vec![gid],
            home: PathBuf::from("/"),
            switch: true,
        }),
    }
}

/// Makes `command` run as `user` when phantom_ci must switch: supplementary groups, then gid, then
/// uid, in the child before `exec`; a failure there aborts the spawn (the command never runs with
/// privileges it should have dropped). Nothing changes when `user.switch` is not set.
#[allow(unsafe_code)]
pub fn run_as(command: &mut std::process::Command, user: &StepUser) {
    use std::os::unix::process::CommandExt;
    if !user.switch {
        return;
    }
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    let groups: Vec<nix::libc::gid_t> = user.groups.iter().map(|g| g.as_raw()).collect();
    // SAFETY: between fork and exec the closure makes the boundary's three raw system calls
    // (`sys::switch_user`: setgroups, setgid, setuid) on values computed before the fork; it
    // allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            crate::isolation::sys::switch_user(uid, gid, &groups)
                .map_err(std::io::Error::from_raw_os_error)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_needs_run_as() {
        let result = step_user("app", None);
        if geteuid().is_root() {
            let message = result.unwrap_err();
            assert!(
                message.contains("run_as = \\\"root\\\"") || message.contains("run_as = \"root\"")
            );
        } else {
            assert!(!result.unwrap().switch);
        }
    }

    #[test]
    fn a_directory_is_written_as_its_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let owner = owner_of(tmp.path()).unwrap();
        // Made by phantom_ci itself: nothing to switch.
        assert!(!owner.switch);
        assert_eq!(owner.uid, geteuid());
        if geteuid().is_root() {
            std::os::unix::fs::chown(tmp.path(), Some(65534), Some(65534)).unwrap();
            let owner = owner_of(tmp.path()).unwrap();
            assert!(owner.switch);
            assert_eq!((owner.uid.as_raw(), owner.gid.as_raw()), (65534, 65534));
            let mut id = std::process::Command::new("id");
            id.arg("-u");
            run_as(&mut id, &owner);
            let out = id.output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "65534");
        }
        assert!(owner_of(&tmp.path().join("missing")).is_err());
    }

    #[test]
    fn unknown_user_is_an_error_for_root_and_a_refusal_otherwise() {
        let message = step_user("app", Some("no-such-user-phantom")).unwrap_err();
        assert!(message.contains("no-such-user-phantom"), "{message}");
    }
}
