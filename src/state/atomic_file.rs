//! State files are never left half-written: write a temporary file beside the target, fsync it, rename it
//! over the target, fsync the directory. ([`write_unsynced`] skips the fsyncs, for the one file whose
//! loss in a power cut costs nothing.)

use std::io::Write;
use std::path::Path;

/// Writes a state file, readable by phantom_ci's user only (0600).
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_mode(path, bytes, 0o600)
}

/// Writes a file meant to be read by others too (the report, for a web server): 0644 less the umask.
pub fn write_public(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_mode(path, bytes, 0o644)
}

/// Writes a state file (0600) whole, by a rename, but without waiting for the disk: after a crash of
/// phantom_ci it is there, whole; after a power loss it may be missing or empty. Only for a file that
/// is made durable later by someone else, or rebuilt when lost (a hook's queue entry: the worker's
/// run record is durable, and `tick` queues a branch tip no run has seen).
pub fn write_unsynced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, bytes, 0o600, false)
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_with(path, bytes, mode, true)
}

fn write_with(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if !durable {
        return tmp.persist(path).map(drop).map_err(|e| e.error);
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable. A drop-box directory (the spool, mode 1733) cannot be opened by
    // those who write into it; the file's own data is synced above either way.
    match std::fs::File::open(dir) {
        Ok(dir) => dir.sync_all(),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        super::write(&path, b"one").unwrap();
        super::write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_unsynced_write_replaces_whole_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry.json");
        super::write_unsynced(&path, b"one").unwrap();
        super::write_unsynced(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
