//! The last commit of each branch of a repo that a hook or tick run started on:
//! `<data>/seen/<repo>~<branch>` (the branch written as in the queue). `tick` runs a branch when its
//! tip differs from it (or when there is none yet: the first sight runs the tip). Manual runs do not
//! change it. Earlier versions kept one file per repo, `<data>/seen/<repo>`, for its one branch: it
//! still counts for the repo's first branch name until that branch has a file of its own, so an
//! upgrade runs nothing again.

use std::path::PathBuf;

use crate::config::dirs::Dirs;
use crate::error::Error;
use crate::state::atomic_file;

fn path(dirs: &Dirs, repo: &str, branch: &str) -> PathBuf {
    dirs.seen().join(format!(
        "{repo}~{}",
        crate::state::queue::branch_key(branch)
    ))
}

fn read(path: PathBuf) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let commit = text.trim();
    (!commit.is_empty()).then(|| commit.to_string())
}

/// Whether `commit` is the last one a hook or tick run started on for `branch` of `repo`. `first`:
/// `branch` is the repo's first branch name, the one an earlier version's file is about.
pub fn is(dirs: &Dirs, repo: &str, branch: &str, first: bool, commit: &str) -> bool {
    match read(path(dirs, repo, branch)) {
        Some(seen) => seen == commit,
        None => first && read(dirs.seen().join(repo)).is_some_and(|legacy| legacy == commit),
    }
}

pub fn set(dirs: &Dirs, repo: &str, branch: &str, commit: &str) -> Result<(), Error> {
    let dir = dirs.seen();
    dirs.make(&dir)
        .map_err(|e| Error::io("cannot create", &dir, e))?;
    let path = path(dirs, repo, branch);
    atomic_file::write(&path, format!("{commit}\n").as_bytes())
        .map_err(|e| Error::io("cannot write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_branch_is_seen_apart_and_the_old_file_still_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: tmp.path().join("c"),
            data: tmp.path().join("d"),
        };
        assert!(!is(&dirs, "app", "main", true, "a"));
        set(&dirs, "app", "main", "a").unwrap();
        assert!(is(&dirs, "app", "main", true, "a"));
        assert!(!is(&dirs, "app", "release/1", false, "a"), "another branch");
        // Before branches had files of their own: the file was about the repo's one branch.
        std::fs::write(dirs.seen().join("old"), "b\n").unwrap();
        assert!(is(&dirs, "old", "master", true, "b"));
        assert!(
            !is(&dirs, "old", "release/1", false, "b"),
            "not another branch's"
        );
        assert!(!is(&dirs, "old", "master", true, "c"));
        set(&dirs, "old", "master", "c").unwrap();
        assert!(is(&dirs, "old", "master", true, "c"));
        assert!(!is(&dirs, "old", "master", true, "b"));
    }
}
