//! A branch's tip read from the files git keeps it in — the loose ref, else `packed-refs` — without
//! opening the repository: what `tick` asks of every configured repository, most of which did not
//! move. Anything unusual (a symbolic ref, a `.git` file of a linked worktree, another ref storage,
//! a branch that is not there) is `None`: the caller asks libgit2, which knows them all.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The commit id (lowercase hex) that `refs/heads/<branch>` holds in the repository at `path` (a
/// bare repository, a `.git` directory, or a work tree with a `.git` directory in it).
pub fn branch_tip_id(path: &Path, branch: &str) -> Option<String> {
    let git_dir = git_dir(path)?;
    let refname = format!("refs/heads/{branch}");
    match std::fs::read(git_dir.join(&refname)) {
        Ok(loose) => return object_id(loose.strip_suffix(b"\n")?),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    let packed = std::fs::read(git_dir.join("packed-refs")).ok()?;
    packed_tip(&packed, refname.as_bytes())
}

/// The repository's own directory: `path/.git` when that is a directory, else `path` itself. A
/// `.git` file (a linked worktree, a submodule) is left to libgit2.
fn git_dir(path: &Path) -> Option<PathBuf> {
    let dot_git = path.join(".git");
    match std::fs::symlink_metadata(&dot_git) {
        Ok(meta) if meta.is_dir() => Some(dot_git),
        Ok(_) => None,
        Err(e) if e.kind() == ErrorKind::NotFound => Some(path.to_path_buf()),
        Err(_) => None,
    }
}

/// The id on the line of `packed-refs` that names `refname`.
fn packed_tip(packed: &[u8], refname: &[u8]) -> Option<String> {
    packed
        .split(|b| *b == b'\n')
        .filter(|line| !line.starts_with(b"#") && !line.starts_with(b"^"))
        .find_map(|line| {
            let space = line.iter().position(|b| *b == b' ')?;
            (&line[space + 1..] == refname)
                .then(|| object_id(&line[..space]))
                .flatten()
        })
}

/// `text` if it is an object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
fn object_id(text: &[u8]) -> Option<String> {
    let hex = text
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    (hex && (text.len() == 40 || text.len() == 64))
        .then(|| String::from_utf8_lossy(text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn loose_and_packed_refs_read_as_git_reads_them() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).unwrap();
        git(&work, &["init", "-q", "-b", "master"]);
        git(&work, &["commit", "-q", "--allow-empty", "-m", "one"]);
        git(&work, &["branch", "feature/x"]);
        let first = git(&work, &["rev-parse", "HEAD"]);
        // A work tree: its `.git` directory.
        assert_eq!(branch_tip_id(&work, "master"), Some(first.clone()));
        assert_eq!(branch_tip_id(&work, "feature/x"), Some(first.clone()));
        assert_eq!(branch_tip_id(&work, "none"), None);
        // Packed, then a newer loose ref wins over the packed one.
        git(&work, &["pack-refs", "--all"]);
        assert!(!work.join(".git/refs/heads/master").exists());
        assert_eq!(branch_tip_id(&work, "master"), Some(first.clone()));
        git(&work, &["commit", "-q", "--allow-empty", "-m", "two"]);
        let second = git(&work, &["rev-parse", "HEAD"]);
        assert_eq!(branch_tip_id(&work, "master"), Some(second.clone()));
        assert_eq!(branch_tip_id(&work, "feature/x"), Some(first));
        // A bare clone (its refs packed) and its `.git`-less layout.
        let bare = tmp.path().join("bare.git");
        git(
            tmp.path(),
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().unwrap(),
                bare.to_str().unwrap(),
            ],
        );
        assert_eq!(branch_tip_id(&bare, "master"), Some(second.clone()));
        // A symbolic ref is left to libgit2.
        std::fs::write(bare.join("refs/heads/sym"), "ref: refs/heads/master\n").unwrap();
        assert_eq!(branch_tip_id(&bare, "sym"), None);
        // So is a `.git` file.
        let linked = tmp.path().join("linked");
        std::fs::create_dir(&linked).unwrap();
        std::fs::write(linked.join(".git"), format!("gitdir: {}\n", bare.display())).unwrap();
        assert_eq!(branch_tip_id(&linked, "master"), None);
    }

    #[test]
    fn only_object_ids_count() {
        let id = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(object_id(id.as_bytes()), Some(id.to_string()));
        assert_eq!(object_id(id.to_uppercase().as_bytes()), None);
        assert_eq!(object_id(&id.as_bytes()[1..]), None);
        let packed = format!("# pack-refs with: peeled\n{id} refs/heads/main\n^{id}\n");
        assert_eq!(
            packed_tip(packed.as_bytes(), b"refs/heads/main"),
            Some(id.into())
        );
        assert_eq!(packed_tip(packed.as_bytes(), b"refs/heads/mai"), None);
    }
}
