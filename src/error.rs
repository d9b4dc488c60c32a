//! Errors, and the one place they become exit statuses (SPEC §3).

use std::path::PathBuf;

pub use crate::config::ConfigError;
pub use crate::config::workflow::WorkflowError;
pub use crate::git::GitError;

/// How phantom_ci exits: 0 success or nothing to do, 1 a run did not succeed, 2 usage or configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    RunFailed,
    Usage,
    /// Another command's exit status, passed on as it is (`debug`'s shell or command).
    Passed(u8),
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::RunFailed => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Passed(code) => code,
        }
    }

    /// The worse of two statuses, for commands that do several runs.
    pub fn max(self, other: ExitStatus) -> ExitStatus {
        if other.code() > self.code() {
            other
        } else {
            self
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

/// Everything that stops a command before or outside a run. A run that starts and goes wrong is not an
/// `Error`: it is a run record with result `error`, `failure`, … (see `state::records`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("{0}")]
    Usage(String),
    #[error("{what} `{}`: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Config(_) | Error::Usage(_) => ExitStatus::Usage,
            Error::Workflow(_) | Error::Git(_) | Error::Io { .. } | Error::Other(_) => {
                ExitStatus::RunFailed
            }
        }
    }
}
