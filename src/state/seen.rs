//! The last commit of each repo that a hook or tick run started on: `<data>/seen/<repo>`. `tick` runs a
//! branch when its tip differs from it (or when there is none yet: the first sight runs the tip).
//! Manual runs do not change it.

use crate::config::dirs::Dirs;
use crate::error::Error;
use crate::state::atomic_file;

pub fn get(dirs: &Dirs, repo: &str) -> Option<String> {
    let text = std::fs::read_to_string(dirs.seen().join(repo)).ok()?;
    let commit = text.trim();
    (!commit.is_empty()).then(|| commit.to_string())
}

pub fn set(dirs: &Dirs, repo: &str, commit: &str) -> Result<(), Error> {
    let dir = dirs.seen();
    dirs.make(&dir)
        .map_err(|e| Error::io("cannot create", &dir, e))?;
    let path = dir.join(repo);
    atomic_file::write(&path, format!("{commit}\n").as_bytes())
        .map_err(|e| Error::io("cannot write", path, e))
}
