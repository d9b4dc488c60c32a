//! Problems of one repo that only the machine can tell: its local `path` does not exist, its `run_as`
//! user does not exist. They are found when `Repo.toml` is loaded, not when a run starts, and name the
//! file, line and column of the key. A repo with a problem is shown (`list`, `status`, `check`) but
//! never run: `tick` runs the other repos and exits 1, `run` of that repo exits 2.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::ConfigError;

/// One problem of a repo, and where in `Repo.toml` the key at fault is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key at fault: `path` or `run_as`.
    pub key: &'static str,
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Problem {
    pub fn to_error(&self) -> ConfigError {
        ConfigError::Invalid {
            path: self.file.clone(),
            line: self.line,
            column: self.column,
            message: self.message.clone(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_error())
    }
}

/// What the values of `Repo.toml` name on a machine. `None` means it cannot be told (no permission to
/// look, a user database that does not answer): that is not a problem, the run will tell.
pub trait Machine {
    fn path_exists(&self, path: &Path) -> Option<bool>;
    fn user_exists(&self, name: &str) -> Option<bool>;
}

/// This machine.
pub struct ThisMachine;

impl Machine for ThisMachine {
    fn path_exists(&self, path: &Path) -> Option<bool> {
        match std::fs::metadata(path) {
            Ok(_) => Some(true),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Some(false)
            }
            Err(_) => None,
        }
    }

    fn user_exists(&self, name: &str) -> Option<bool> {
        nix::unistd::User::from_name(name)
            .ok()
            .map(|user| user.is_some())
    }
}

/// A machine whose users are each looked up once: a `Repo.toml` of a thousand repos names a few
/// users, and every lookup may read the whole user database (`/etc/passwd`, or ask a directory
/// service) — for every push, through the hook.
pub struct UsersOnce<'a> {
    machine: &'a dyn Machine,
    users: RefCell<HashMap<String, Option<bool>>>,
}

impl<'a> UsersOnce<'a> {
    pub fn new(machine: &'a dyn Machine) -> UsersOnce<'a> {
        UsersOnce {
            machine,
            users: RefCell::default(),
        }
    }
}

impl Machine for UsersOnce<'_> {
    fn path_exists(&self, path: &Path) -> Option<bool> {
        self.machine.path_exists(path)
    }

    fn user_exists(&self, name: &str) -> Option<bool> {
        if let Some(&known) = self.users.borrow().get(name) {
            return known;
        }
        let found = self.machine.user_exists(name);
        self.users.borrow_mut().insert(name.to_string(), found);
        found
    }
}

/// No machine at all: nothing is checked (for parsing a text on its own, as `add` and `remove` do
/// before they write it).
pub struct NoMachine;

impl Machine for NoMachine {
    fn path_exists(&self, _: &Path) -> Option<bool> {
        None
    }

    fn user_exists(&self, _: &str) -> Option<bool> {
        None
    }
}

/// The message for a local `path` that does not exist.
pub fn missing_path(repo: &str, path: &Path) -> String {
    format!(
        "`path` `{}` does not exist: create the repository there or correct `path`; repo `{repo}` \
         does not run until then",
        crate::describe::terminal(&path.display().to_string())
    )
}

/// The message for a `run_as` user that does not exist.
pub fn missing_user(repo: &str, user: &str) -> String {
    let user = crate::describe::terminal(user);
    format!(
        "the `run_as` user `{user}` does not exist on this machine: create it (for example \
         `useradd --system --create-home {user}`) or correct `run_as`; repo `{repo}` does not run \
         until then"
    )
}
