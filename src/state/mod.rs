//! Everything phantom_ci keeps under its data dir between invocations: run records, the queue of
//! commits to run, the commits already seen, per-repo locks, kept workspaces of failed runs, the spool pushers may write, the owners of
//! debug sessions, and crash recovery. Every write here is atomic or append-only, so a crash never leaves a state file half-written.

pub mod ad_hoc;
pub mod atomic_file;
pub mod cache;
pub mod claims;
pub mod kept;
pub mod lock;
pub mod queue;
pub mod records;
pub mod recovery;
pub mod seen;
pub mod sessions;
pub mod slots;
pub mod spool;
