//! Everything phantom_ci asks of a git repository: reading it through libgit2; fetching mirrors and
//! writing checkouts through the `git` command ([`cli`]).

pub mod base;
mod checkout;
pub mod cli;
mod delta;
pub mod mirror;
pub mod notes;
pub mod refs;
pub mod workspace;

pub use checkout::{
    BLOCK, Budget, CheckoutError, MAX_TREE_DEPTH, checkout_size, checkout_workspace,
};
pub use delta::{Delta, checkout_delta};

use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, RepositoryOpenFlags};

/// The largest workflow file read from a commit (SPEC §2.2).
pub const MAX_WORKFLOW_SIZE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("`{}` does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("`{}` is not a git repository", path.display())]
    NotARepository { path: PathBuf },
    #[error("cannot open the git repository `{}`: {message}", path.display())]
    Open { path: PathBuf, message: String },
    #[error("branch `{branch}` does not exist in `{}`", path.display())]
    NoBranch { path: PathBuf, branch: String },
    #[error("`{rev}` is not a commit in `{}`: {message}", path.display())]
    BadRevision {
        path: PathBuf,
        rev: String,
        message: String,
    },
    #[error("{context}: {message}")]
    Other { context: String, message: String },
}

pub(crate) fn other(context: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
    let context = context.into();
    move |e| GitError::Other {
        context,
        message: e.message().to_string(),
    }
}

/// Opens a repository (bare or not) at exactly `path`, without searching parent directories.
pub fn open(path: &Path) -> Result<Repository, GitError> {
    Repository::open_ext(
        path,
        RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&str>(),
    )
    .map_err(|e| open_error(path, &e))
}

/// libgit2's "failed to resolve path" and "could not find repository" in the user's words.
pub fn open_error(path: &Path, error: &git2::Error) -> GitError {
    let path = path.to_path_buf();
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => GitError::Missing { path },
        Ok(meta) if !meta.is_dir() => GitError::NotARepository { path },
        Ok(_) if error.code() == git2::ErrorCode::NotFound => GitError::NotARepository { path },
        _ => GitError::Open {
            path,
            message: error.message().to_string(),
        },
    }
}

/// The commit `refs/heads/<branch>` points at.
pub fn branch_tip(repo: &Repository, branch: &str) -> Result<Oid, GitError> {
    repo.refname_to_id(&format!("refs/heads/{branch}"))
        .ok()
        .and_then(|id| repo.find_commit(id).ok())
        .map(|c| c.id())
        .ok_or_else(|| GitError::NoBranch {
            path: repo.path().to_path_buf(),
            branch: branch.to_string(),
        })
}

/// The branches of `repo` that `branches` runs, with their commits, by name. Names are read one by
/// one; patterns list `refs/heads/` (every name checked by [`Branches::matches`]).
pub fn branch_tips(
    repo: &Repository,
    branches: &crate::config::Branches,
) -> Result<Vec<(String, Oid)>, GitError> {
    if let Some(names) = branches.names() {
        return Ok(names
            .iter()
            .filter_map(|branch| Some((branch.clone(), branch_tip(repo, branch).ok()?)))
            .collect());
    }
    let references = repo
        .references()
        .map_err(other("cannot list the branches"))?;
    let mut tips: Vec<(String, Oid)> = references
        .flatten()
        .filter_map(|reference| {
            let branch = reference.name().ok()?.strip_prefix("refs/heads/")?;
            if !branches.matches(branch) {
                return None;
            }
            let commit = reference.peel_to_commit().ok()?;
            Some((branch.to_string(), commit.id()))
        })
        .collect();
    tips.sort();
    Ok(tips)
}

/// The branches of `repo` that `branches` would run but cannot, because their names are not UTF-8
/// (git allows any byte but a few): their names as bytes, sorted. Only a pattern can match such a
/// name (the names of `target_branch` are text); it is compared in its lossy form (`\u{FFFD}` for
/// each bad sequence).
pub fn branches_not_utf8(repo: &Repository, branches: &crate::config::Branches) -> Vec<Vec<u8>> {
    if branches.names().is_some() {
        return Vec::new();
    }
    let Ok(references) = repo.references() else {
        return Vec::new();
    };
    let mut names: Vec<Vec<u8>> = references
        .flatten()
        .filter_map(|reference| {
            let name = reference.name_bytes().strip_prefix(b"refs/heads/")?;
            (std::str::from_utf8(name).is_err() && branches.matches(&String::from_utf8_lossy(name)))
                .then(|| name.to_vec())
        })
        .collect();
    names.sort();
    names
}

/// Resolves any revision (`HEAD~2`, a short id, a tag) to a commit.
pub fn resolve_commit(repo: &Repository, rev: &str) -> Result<Oid, GitError> {
    repo.revparse_single(rev)
        .and_then(|object| object.peel_to_commit())
        .map(|commit| commit.id())
        .map_err(|e| GitError::BadRevision {
            path: repo.path().to_path_buf(),
            rev: rev.to_string(),
            message: e.message().to_string(),
        })
}

/// The branch `HEAD` names (also when it has no commit yet), if it names one.
pub fn head_branch(repo: &Repository) -> Option<String> {
    let head = repo.find_reference("HEAD").ok()?;
    let target = head.symbolic_target().ok().flatten()?;
    target.strip_prefix("refs/heads/").map(str::to_string)
}

/// The first line of a commit's message, for summaries.
pub fn commit_subject(repo: &Repository, commit: Oid) -> Option<String> {
    let commit = repo.find_commit(commit).ok()?;
    commit.summary().ok().flatten().map(str::to_string)
}

/// What was found at a path of a commit's tree.
#[derive(Debug, PartialEq, Eq)]
pub enum TreeFile {
    /// A regular file's contents.
    File(Vec<u8>),
    /// Nothing at that path.
    Missing,
    /// Something that is not a readable regular file; the text says what.
    Invalid(String),
}

/// Reads the regular file at `path` (slash-separated) in `commit`'s tree, from the object database —
/// never from a working tree. A symlink anywhere on the path, a submodule, a file larger than
/// `max_size` or a directory is [`TreeFile::Invalid`].
pub fn read_tree_file(
    repo: &Repository,
    commit: Oid,
    path: &str,
    max_size: usize,
) -> Result<TreeFile, GitError> {
    let commit = repo
        .find_commit(commit)
        .map_err(other(format!("cannot read commit {commit}")))?;
    let mut tree = commit
        .tree()
        .map_err(other("cannot read the commit's tree"))?;
    let parts: Vec<&str> = path.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let Some(entry) = tree.get_name(part).map(|e| e.to_owned()) else {
            return Ok(TreeFile::Missing);
        };
        let shown = crate::describe::terminal(&parts[..=i].join("/"));
        let last = i + 1 == parts.len();
        match (entry.kind(), entry.filemode()) {
            (Some(ObjectType::Tree), _) if !last => {
                tree = repo
                    .find_tree(entry.id())
                    .map_err(other(format!("cannot read the tree `{shown}`")))?;
            }
            (Some(ObjectType::Blob), 0o100644 | 0o100755) if last => {
                let odb = repo
                    .odb()
                    .map_err(other("cannot open the object database"))?;
                let (size, _) = odb
                    .read_header(entry.id())
                    .map_err(other(format!("cannot read `{shown}`")))?;
                if size > max_size {
                    return Ok(TreeFile::Invalid(format!(
                        "`{shown}` is {size} bytes; a workflow may be at most {max_size} bytes"
                    )));
                }
                let blob = repo
                    .find_blob(entry.id())
                    .map_err(other(format!("cannot read `{shown}`")))?;
                return Ok(TreeFile::File(blob.content().to_vec()));
            }
            (Some(ObjectType::Blob), 0o120000) => {
                return Ok(TreeFile::Invalid(format!(
                    "`{shown}` is a symbolic link; a workflow must be a regular file"
                )));
            }
            (Some(ObjectType::Commit), _) => {
                return Ok(TreeFile::Invalid(format!(
                    "`{shown}` is a submodule; a workflow must be a regular file"
                )));
            }
            _ => {
                return Ok(TreeFile::Invalid(format!(
                    "`{shown}` is not a regular file"
                )));
            }
        }
    }
    Ok(TreeFile::Missing)
}

/// Lists the regular `.toml` files under `workflow/` and `workflow.toml` at the root of a commit.
pub fn workflow_paths(repo: &Repository, commit: Oid) -> Result<Vec<String>, GitError> {
    let commit = repo
        .find_commit(commit)
        .map_err(other(format!("cannot read commit {commit}")))?;
    let tree = commit
        .tree()
        .map_err(other("cannot read the commit's tree"))?;
    let mut paths = Vec::new();
    if tree.get_name("workflow.toml").is_some() {
        paths.push("workflow.toml".to_string());
    }
    if let Some(entry) = tree.get_name("workflow")
        && entry.kind() == Some(ObjectType::Tree)
    {
        let sub = repo
            .find_tree(entry.id())
            .map_err(other("cannot read the tree `workflow`"))?;
        sub.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            let name = entry.name().unwrap_or_default();
            if entry.kind() != Some(ObjectType::Tree) && name.ends_with(".toml") {
                paths.push(format!("workflow/{dir}{name}"));
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(other("cannot walk the tree `workflow`"))?;
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with(files: &[(&str, &[u8], i32)]) -> (tempfile::TempDir, Repository, Oid) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        // Build a nested tree by hand: files are "a/b/c" paths.
        fn insert(
            repo: &Repository,
            base: Option<&git2::Tree>,
            path: &[&str],
            blob: Oid,
            mode: i32,
        ) -> Oid {
            let mut builder = repo.treebuilder(base).unwrap();
            if path.len() == 1 {
                builder.insert(path[0], blob, mode).unwrap();
            } else {
                let sub =
                    base.and_then(|t| t.get_name(path[0]).map(|e| repo.find_tree(e.id()).unwrap()));
                let id = insert(repo, sub.as_ref(), &path[1..], blob, mode);
                builder.insert(path[0], id, 0o040000).unwrap();
            }
            builder.write().unwrap()
        }
        let mut tree: Option<Oid> = None;
        for (path, content, mode) in files {
            let blob = repo.blob(content).unwrap();
            let base = tree.map(|t| repo.find_tree(t).unwrap());
            let parts: Vec<&str> = path.split('/').collect();
            tree = Some(insert(&repo, base.as_ref(), &parts, blob, *mode));
        }
        let tree = repo.find_tree(tree.unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.org").unwrap();
        let commit = repo
            .commit(Some("refs/heads/master"), &sig, &sig, "c", &tree, &[])
            .unwrap();
        drop(tree);
        (dir, repo, commit)
    }

    #[test]
    fn reads_regular_files_and_refuses_the_rest() {
        let big = vec![b'#'; MAX_WORKFLOW_SIZE + 1];
        let (_dir, repo, c) = repo_with(&[
            ("workflow/main.toml", b"[0]\nrun = \"pwd\"\n", 0o100644),
            ("workflow/link.toml", b"/etc/passwd", 0o120000),
            ("workflow/big.toml", &big, 0o100644),
            ("dirlink", b"workflow", 0o120000),
        ]);
        let read = |p: &str| read_tree_file(&repo, c, p, MAX_WORKFLOW_SIZE).unwrap();
        assert_eq!(
            read("workflow/main.toml"),
            TreeFile::File(b"[0]\nrun = \"pwd\"\n".to_vec())
        );
        assert_eq!(read("workflow/none.toml"), TreeFile::Missing);
        assert!(
            matches!(read("workflow/link.toml"), TreeFile::Invalid(m) if m.contains("symbolic link"))
        );
        assert!(matches!(read("workflow/big.toml"), TreeFile::Invalid(m) if m.contains("at most")));
        assert!(
            matches!(read("dirlink/main.toml"), TreeFile::Invalid(m) if m.contains("symbolic link"))
        );
        assert!(matches!(read("workflow"), TreeFile::Invalid(_)));
        let mut paths = workflow_paths(&repo, c).unwrap();
        paths.sort();
        assert_eq!(
            paths,
            [
                "workflow/big.toml",
                "workflow/link.toml",
                "workflow/main.toml"
            ]
        );
    }

    #[test]
    fn opening_what_is_not_a_repository_says_so_in_the_users_words() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("x/y");
        assert_eq!(
            open(&missing).err().unwrap().to_string(),
            format!("`{}` does not exist", missing.display())
        );
        assert_eq!(
            open(dir.path()).err().unwrap().to_string(),
            format!("`{}` is not a git repository", dir.path().display())
        );
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            open(&file).err().unwrap().to_string(),
            format!("`{}` is not a git repository", file.display())
        );
        Repository::init_bare(dir.path().join("r.git")).unwrap();
        assert!(open(&dir.path().join("r.git")).is_ok());
    }
}
