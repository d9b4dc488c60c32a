//! Everything between a pusher's workflow and the machine: the step boundary every step crosses
//! ([`boundary`]), who a step runs as, its limits, sandbox and cgroup, the processes it leaves behind,
//! the signals that end a run, directories walked without following a step's links, and the signatures
//! a commit must carry.

pub mod boundary;
pub mod cgroup;
pub mod dirfd;
pub mod libgit2;
pub mod overlay;
pub mod pidfd;
pub mod pipe;
pub mod privilege;
pub mod pty;
pub mod reaper;
pub mod sandbox;
pub mod signals;
pub mod signature;
pub mod spawn;
mod sys;
pub mod walk;

/// What every `git` phantom_ci runs in a repository pushers write to is told, whatever the
/// repository's configuration says: no replace objects (a pushed `refs/replace/<commit>` made git read
/// another object than libgit2 reads — a signed commit in place of an unsigned one), no fetch of a
/// missing object (a partial clone's promisor remote runs `core.sshCommand`), and no transport at
/// all (`GIT_ALLOW_PROTOCOL` naming none overrides every `protocol.*.allow`; git before 2.45 knows no
/// `GIT_NO_LAZY_FETCH`).
pub const UNTRUSTED_REPOSITORY_GIT_ENV: [(&str, &str); 3] = [
    ("GIT_NO_REPLACE_OBJECTS", "1"),
    ("GIT_NO_LAZY_FETCH", "1"),
    ("GIT_ALLOW_PROTOCOL", "none"),
];

/// `PATH` for steps and helpers when phantom_ci's own environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// `PATH` of a step that runs as another user than phantom_ci's, or in the sandbox (SPEC §10): the
/// system's, never phantom_ci's own — which may name directories that user cannot read (root's
/// `~/.cargo/bin`) and would show the operator's private layout to pushers.
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
