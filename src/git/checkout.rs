//! A run's workspace from a commit (SPEC §4.8): counted before anything is written, bounded by the
//! repo's `checkout_limit` and the run's deadline, written by the `git` command so that it can be
//! stopped half-way.

use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Instant;

use git2::{ObjectType, Oid, Repository};

use crate::git::{GitError, cli, other};

/// What a checkout may cost (SPEC §4.8).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// The most bytes the files of the checkout may take: the repo's `checkout_limit`.
    pub bytes: u64,
    /// When the checkout must be done: the run's deadline, if any.
    pub deadline: Option<Instant>,
}

impl Budget {
    /// No limit at all (for benchmarks and tools).
    pub fn unlimited() -> Budget {
        Budget {
            bytes: u64::MAX,
            deadline: None,
        }
    }

    pub(super) fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Why a workspace was not checked out.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// The files would take more than [`Budget::bytes`]; nothing was written.
    #[error("the commit's files take more than {limit} bytes")]
    TooLarge { limit: u64 },
    /// Directories nested deeper than [`MAX_TREE_DEPTH`]; nothing was written.
    #[error("the commit's tree is nested deeper than {MAX_TREE_DEPTH} directories")]
    TooDeep,
    /// The directory listings (tree objects) open at once during the count exceed
    /// [`MAX_HELD_TREES`] bytes: counting them would take that much of phantom_ci's memory.
    #[error(
        "the commit's directory listings are too large to count (more than {} MiB at once)",
        MAX_HELD_TREES >> 20
    )]
    TreesTooLarge,
    /// The deadline passed (during the count or the checkout itself).
    #[error("the checkout did not end before the deadline")]
    Deadline,
    /// A tree git would not write as it lists it (a name twice, out of order, `/` in a name, a name
    /// or path too long for Linux): checked before anything is written, as `git fsck` would.
    #[error("the commit's tree cannot be checked out: {0}")]
    Malformed(String),
    /// phantom_ci was told to stop (SIGTERM, SIGINT) during the checkout.
    #[error("phantom_ci was told to stop during the checkout")]
    Interrupted,
    #[error(transparent)]
    Git(#[from] GitError),
}

/// The space the file system gives a file or directory, at least: a checkout counts whole blocks.
pub const BLOCK: u64 = 4096;
/// How deep the directories of a checkout may nest.
pub const MAX_TREE_DEPTH: usize = 1024;
/// The most bytes of tree objects the count holds in memory at once (one per level of the walk).
pub const MAX_HELD_TREES: u64 = 256 << 20;
/// The longest name of a file or directory (Linux's `NAME_MAX`).
pub const MAX_NAME: usize = 255;
/// The longest path of a checkout, below its root (Linux's `PATH_MAX`).
pub const MAX_PATH: u64 = 4096;

/// Refuses a tree that git would not write as it lists it: entries must be in git's order (a
/// directory sorts as its name and `/`), each name once, none empty, `.`, `..`, holding a `/` or
/// NUL, or longer than [`MAX_NAME`] bytes. A malformed tree can list `a` both as a directory and as
/// a link, and the checkout then keeps only one of them: what is counted (or given to the step user)
/// would not be what lands on disk.
pub(super) fn check_tree(tree: &git2::Tree) -> Result<(), CheckoutError> {
    let mut seen = std::collections::HashSet::with_capacity(tree.len());
    let mut last: Vec<u8> = Vec::new();
    for entry in tree.iter() {
        let name = entry.name_bytes();
        let shown = String::from_utf8_lossy(&name[..name.len().min(64)]).into_owned();
        let malformed = |why: &str| {
            CheckoutError::Malformed(format!(
                "tree {} {why} (`{}`)",
                tree.id(),
                crate::describe::one_line(&shown, 64)
            ))
        };
        if name.is_empty()
            || name == b"."
            || name == b".."
            || name.contains(&b'/')
            || name.contains(&0)
        {
            return Err(malformed("has a name git refuses"));
        }
        if name.len() > MAX_NAME {
            return Err(malformed("has a name longer than 255 bytes"));
        }
        if !seen.insert(name.to_vec()) {
            return Err(malformed("lists a name twice"));
        }
        let mut key = name.to_vec();
        if entry.kind() == Some(ObjectType::Tree) {
            key.push(b'/');
        }
        if !last.is_empty() && key <= last {
            return Err(malformed("is not in git's order"));
        }
        last = key;
    }
    Ok(())
}

/// What a file (or link) of `size` bytes at a path of `path_len` bytes costs: its size in whole
/// [`BLOCK`]s, at least one, and its index entry.
pub(super) fn file_cost(size: u64, path_len: u64) -> u64 {
    size.div_ceil(BLOCK)
        .max(1)
        .saturating_mul(BLOCK)
        .saturating_add(INDEX_ENTRY + path_len)
}

/// Opens the tree `id`, `levels` directories down: refused past [`MAX_TREE_DEPTH`], past
/// [`MAX_HELD_TREES`] with the `held` bytes of the trees open above it (its size read first, from
/// the header: a huge listing is refused before it is read), or malformed ([`check_tree`]). Its size
/// is added to `held`.
pub(super) fn open_tree<'r>(
    repo: &'r Repository,
    odb: &git2::Odb,
    id: Oid,
    levels: usize,
    held: &mut u64,
) -> Result<(git2::Tree<'r>, u64), CheckoutError> {
    if levels >= MAX_TREE_DEPTH {
        return Err(CheckoutError::TooDeep);
    }
    let (size, _) = odb
        .read_header(id)
        .map_err(other(format!("cannot read the tree {id}")))?;
    let size = size as u64;
    if *held + size > MAX_HELD_TREES {
        return Err(CheckoutError::TreesTooLarge);
    }
    let tree = repo
        .find_tree(id)
        .map_err(other(format!("cannot read the tree {id}")))?;
    check_tree(&tree)?;
    *held += size;
    Ok((tree, size))
}

/// What git's index spends on each file besides its path (`.git/index` is written by the checkout too).
const INDEX_ENTRY: u64 = 64;

/// What checking `commit` out would write, counted before anything is written: the size of every file
/// (regular file or symbolic link) in whole [`BLOCK`]s, at least one, plus its entry in `.git/index`
/// (its path and [`INDEX_ENTRY`] bytes); for each directory, the size of its tree object (at least a
/// block), and a block per submodule — each time the tree names it, so a blob named 1,800 times counts
/// 1,800 times. Only object headers are read, never contents, and the trees held in memory at once are
/// capped at [`MAX_HELD_TREES`] bytes. The files are written byte for byte as the blobs hold them (the
/// checkout turns every attribute conversion off), so the count is what lands on disk. Stops with [`CheckoutError::TooLarge`] as soon as the count passes
/// `budget.bytes` (every entry costs a block, so the walk visits at most `bytes / BLOCK` entries), and
/// with [`CheckoutError::Deadline`] when the deadline passes.
pub fn checkout_size(
    repo: &Repository,
    commit: Oid,
    budget: &Budget,
) -> Result<u64, CheckoutError> {
    if budget.expired() {
        return Err(CheckoutError::Deadline);
    }
    let commit = repo
        .find_commit(commit)
        .map_err(other(format!("cannot read commit {commit}")))?;
    let root = commit
        .tree()
        .map_err(other("cannot read the commit's tree"))?;
    check_tree(&root)?;
    let odb = repo
        .odb()
        .map_err(other("cannot open the object database"))?;
    let mut sizes: std::collections::HashMap<Oid, u64> = std::collections::HashMap::new();
    let mut total: u64 = 0;
    let mut visited: u64 = 0;
    // Depth-first, one (tree, next entry, length of its path, its size) per level.
    let mut held: u64 = 0;
    let mut stack = vec![(root, 0usize, 0u64, 0u64)];
    while let Some((tree, index, prefix, _)) = stack.last_mut() {
        let prefix = *prefix;
        let Some((kind, id, name)) = tree
            .get(*index)
            .map(|e| (e.kind(), e.id(), e.name_bytes().len() as u64))
        else {
            if let Some((_, _, _, size)) = stack.pop() {
                held -= size;
            }
            continue;
        };
        *index += 1;
        visited += 1;
        if visited.is_multiple_of(256) && budget.expired() {
            return Err(CheckoutError::Deadline);
        }
        if prefix + name > MAX_PATH {
            return Err(CheckoutError::Malformed(format!(
                "a path is longer than {MAX_PATH} bytes"
            )));
        }
        let cost = match kind {
            Some(ObjectType::Blob) => {
                let size = match sizes.get(&id) {
                    Some(size) => *size,
                    None => {
                        let (size, _) = odb
                            .read_header(id)
                            .map_err(other(format!("cannot read the object {id}")))?;
                        let size = size as u64;
                        sizes.insert(id, size);
                        size
                    }
                };
                file_cost(size, prefix + name)
            }
            Some(ObjectType::Tree) => {
                let (sub, size) = open_tree(repo, &odb, id, stack.len(), &mut held)?;
                stack.push((sub, 0, prefix + name + 1, size));
                size.max(BLOCK)
            }
            // A submodule is checked out as an empty directory.
            _ => BLOCK,
        };
        total = total.saturating_add(cost);
        if total > budget.bytes {
            return Err(CheckoutError::TooLarge {
                limit: budget.bytes,
            });
        }
    }
    Ok(total)
}

/// Makes `dir` (empty or missing) a git working tree of `commit` from `source` and returns its size
/// as [`checkout_size`] counts it, the way
/// `git clone --shared --no-checkout` followed by `git checkout --detach <commit>` would: the workspace
/// borrows the source's objects through `objects/info/alternates` (nothing is copied), gets the source's
/// branches as `refs/remotes/origin/*` and its tags, so `git log` and `git describe` work in steps.
///
/// Nothing is written before [`checkout_size`] has found the commit within `budget`. The files are then
/// written by the `git` command (libgit2 cannot be stopped half-way), which is killed if the deadline
/// passes. It runs with no configuration but the workspace's own — no system or global gitconfig, no
/// hooks — so nothing of the operator's setup (filters, fsmonitor) runs on the commit's content.
pub fn checkout_workspace(
    source: &Repository,
    commit: Oid,
    dir: &Path,
    budget: &Budget,
) -> Result<u64, CheckoutError> {
    let size = checkout_size(source, commit, budget)?;
    let fail = |what: &str| {
        other(format!(
            "cannot prepare the workspace `{}`: {what}",
            dir.display()
        ))
    };
    let io = |what: &'static str| {
        let dir = dir.to_path_buf();
        move |e: std::io::Error| GitError::Other {
            context: format!("cannot prepare the workspace `{}`: {what}", dir.display()),
            message: e.to_string(),
        }
    };
    let git_dir = dir.join(".git");
    write_git_dir(&git_dir, source, commit).map_err(io("write .git"))?;
    write_packed_refs(source, &git_dir).map_err(fail("copy the source's refs"))?;
    if budget.expired() {
        return Err(CheckoutError::Deadline);
    }
    if size <= SMALL_CHECKOUT {
        let workspace = Repository::open(dir).map_err(fail("open"))?;
        return write_small(&workspace, dir).map(|()| size);
    }
    write_files(dir, &git_dir, commit, budget).map(|()| size)
}

/// The `.git` of a new workspace, each file written once — what `git clone --shared --no-checkout`
/// and `git checkout --detach <commit>` leave, without a template, hooks or reflog: HEAD detached at
/// `commit`, the source's objects borrowed through `objects/info/alternates`, `origin` the source,
/// the default `core` settings of Linux, and `info/attributes` turning every conversion off. (libgit2's
/// `init` and config calls rewrote `config` eight times and left probe files, hooks and a
/// description: a dozen inodes made and freed per run.)
fn write_git_dir(git_dir: &Path, source: &Repository, commit: Oid) -> std::io::Result<()> {
    for dir in [
        "objects/info",
        "objects/pack",
        "refs/heads",
        "refs/tags",
        "info",
    ] {
        std::fs::create_dir_all(git_dir.join(dir))?;
    }
    std::fs::write(git_dir.join("HEAD"), format!("{commit}\n"))?;
    let origin = source.path().to_string_lossy();
    std::fs::write(
        git_dir.join("config"),
        format!(
            "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\t\
             logallrefupdates = true\n\tautocrlf = false\n\tsymlinks = true\n\
             [remote \"origin\"]\n\turl = {}\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n",
            config_value(&origin)
        ),
    )?;
    let objects = source.commondir().join("objects");
    let mut alternates = objects.into_os_string().into_encoded_bytes();
    alternates.push(b'\n');
    std::fs::write(git_dir.join("objects/info/alternates"), alternates)?;
    // The commit's own `.gitattributes` could make the checkout write more than the blobs it counted
    // (`ident`, `eol=crlf`, `working-tree-encoding` grow a file up to ~47×): `info/attributes` wins
    // over it and turns every conversion off, so the files are the blobs, byte for byte.
    std::fs::write(git_dir.join("info/attributes"), NO_CONVERSION)
}

/// `text` as a git config value: quoted, with `\`, `"`, newline and tab escaped as git reads them.
fn config_value(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Writes the source's branches (as `refs/remotes/origin/*`) and tags into `packed-refs` of the
/// workspace whose git directory is `git_dir`, replacing what it held.
pub(super) fn write_packed_refs(source: &Repository, git_dir: &Path) -> Result<(), git2::Error> {
    let mut packed = String::new();
    for reference in source.references()?.flatten() {
        let (Ok(name), Some(target)) = (reference.name(), reference.target()) else {
            continue; // symbolic refs (HEAD, origin/HEAD) are not copied
        };
        let local = if let Some(branch) = name.strip_prefix("refs/heads/") {
            format!("refs/remotes/origin/{branch}")
        } else if name.starts_with("refs/tags/") {
            name.to_string()
        } else {
            continue;
        };
        let _ = writeln!(packed, "{target} {local}");
    }
    let path = git_dir.join("packed-refs");
    let scratch = git_dir.join("packed-refs.new");
    std::fs::write(&scratch, packed)
        .and_then(|()| std::fs::rename(&scratch, &path))
        .map_err(|e| git2::Error::from_str(&format!("cannot write `{}`: {e}", path.display())))
}

/// The most bytes ([`checkout_size`]) of a checkout phantom_ci writes itself: at most 64 entries,
/// which take libgit2 well under a millisecond of writing — less than starting `git` costs. Being
/// that small, it needs no deadline.
pub const SMALL_CHECKOUT: u64 = 64 * BLOCK;

/// Writes the files of a small checkout (HEAD, already detached at the commit) with libgit2. The
/// workspace's own config says what git's defaults are, and libgit2 reads no global configuration
/// (`configure_libgit2` in `cli.rs`), so phantom_ci's user's (`core.autocrlf`, `core.symlinks`,
/// `core.worktree`) changes nothing here either; filters other than
/// the built-in ones do not exist for libgit2, and `info/attributes` turns those off.
fn write_small(workspace: &Repository, dir: &Path) -> Result<(), CheckoutError> {
    let failed = |what: &str| {
        other(format!(
            "cannot check the commit out into `{}`: {what}",
            dir.display()
        ))
    };
    // The work tree is `dir`, whatever a `core.worktree` anywhere says.
    workspace
        .set_workdir(dir, false)
        .map_err(failed("set the work tree"))?;
    let mut options = git2::build::CheckoutBuilder::new();
    options.force();
    workspace
        .checkout_head(Some(&mut options))
        .map_err(failed("write the files"))?;
    Ok(())
}

/// `.git/info/attributes` of a workspace: no attribute of the commit changes what a file holds.
const NO_CONVERSION: &str =
    "* -text -eol -crlf -ident -filter -diff -merge -working-tree-encoding\n";

/// Writes the files of `commit` into the work tree `dir` with `git checkout`, bounded by the deadline.
pub(super) fn write_files(
    dir: &Path,
    git_dir: &Path,
    commit: Oid,
    budget: &Budget,
) -> Result<(), CheckoutError> {
    let mut command = cli::git();
    command
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        // Its objects are the pushers' repository's (an alternate).
        .envs(crate::isolation::UNTRUSTED_REPOSITORY_GIT_ENV)
        .arg("--git-dir")
        .arg(git_dir)
        .arg("--work-tree")
        .arg(dir)
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.autocrlf=false",
            "checkout",
            "--quiet",
            "--force",
            "--detach",
            &commit.to_string(),
        ])
        // Its own process group: a Ctrl-C in phantom_ci's terminal is phantom_ci's to handle.
        .process_group(0);
    let deadline = budget
        .deadline
        .unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(365 * 24 * 3600));
    let git_failed = |message: String| {
        CheckoutError::Git(GitError::Other {
            context: format!("cannot check the commit out into `{}`", dir.display()),
            message,
        })
    };
    match cli::run(command, deadline) {
        Ok(ran) if ran.status.success() => Ok(()),
        Ok(ran) => Err(git_failed(format!("`git checkout` failed: {}", ran.stderr))),
        Err(cli::Stopped::Deadline) => Err(CheckoutError::Deadline),
        Err(cli::Stopped::Interrupted) => Err(CheckoutError::Interrupted),
        Err(cli::Stopped::Spawn(e)) => Err(git_failed(format!(
            "cannot run the `git` command, which writes checkouts ({e}); install git"
        ))),
        Err(cli::Stopped::Wait(e)) => {
            Err(git_failed(format!("cannot wait for `git checkout`: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bare repository whose commit's tree is built by `build` from a tree builder's point of view.
    fn commit_of(build: impl FnOnce(&Repository) -> Oid) -> (tempfile::TempDir, Repository, Oid) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let tree = build(&repo);
        let tree = repo.find_tree(tree).unwrap();
        let sig = git2::Signature::now("t", "t@example.org").unwrap();
        let commit = repo.commit(None, &sig, &sig, "c", &tree, &[]).unwrap();
        drop(tree);
        (dir, repo, commit)
    }

    /// A tree naming `entry` (of `mode`) `times` times.
    fn repeated(repo: &Repository, entry: Oid, mode: i32, times: usize) -> Oid {
        let mut builder = repo.treebuilder(None).unwrap();
        for i in 0..times {
            builder.insert(format!("f{i}"), entry, mode).unwrap();
        }
        builder.write().unwrap()
    }

    fn budget(bytes: u64) -> Budget {
        Budget {
            bytes,
            deadline: None,
        }
    }

    #[test]
    fn a_blob_named_1800_times_counts_1800_times() {
        let (_dir, repo, commit) = commit_of(|repo| {
            let blob = repo.blob(&vec![b'x'; 1 << 20]).unwrap();
            repeated(repo, blob, 0o100644, 1800)
        });
        // Each file also costs its index entry: 64 bytes and its name (`f0` … `f1799`).
        let names: u64 = (0..1800).map(|i| format!("f{i}").len() as u64).sum();
        let total = (1800 << 20) + 1800 * INDEX_ENTRY + names;
        assert_eq!(
            checkout_size(&repo, commit, &budget(u64::MAX)).unwrap(),
            total
        );
        assert!(matches!(
            checkout_size(&repo, commit, &budget(100 << 20)),
            Err(CheckoutError::TooLarge { limit }) if limit == 100 << 20
        ));
        assert!(checkout_size(&repo, commit, &budget(total)).is_ok());
        assert!(checkout_size(&repo, commit, &budget(total - 1)).is_err());
        // Nothing is written when the commit is too large.
        let target = tempfile::tempdir().unwrap().path().join("ws");
        let refused = checkout_workspace(&repo, commit, &target, &budget(100 << 20));
        assert!(matches!(refused, Err(CheckoutError::TooLarge { .. })));
        assert!(!target.exists());
    }

    #[test]
    fn small_files_and_directories_count_a_block_each() {
        let (_dir, repo, commit) = commit_of(|repo| {
            let empty = repo.blob(b"").unwrap();
            let byte = repo.blob(b"x").unwrap();
            let sub = repeated(repo, empty, 0o100644, 3);
            let mut root = repo.treebuilder(None).unwrap();
            root.insert("a", byte, 0o100644).unwrap();
            root.insert("link", byte, 0o120000).unwrap();
            root.insert("sub", sub, 0o040000).unwrap();
            root.write().unwrap()
        });
        // a, link, sub/ and its three files, a block each, and the five files' index entries:
        // 64 bytes and the path (`a`, `link`, `sub/f0`, …).
        assert_eq!(
            checkout_size(&repo, commit, &budget(u64::MAX)).unwrap(),
            6 * BLOCK + (INDEX_ENTRY + 1) + (INDEX_ENTRY + 4) + 3 * (INDEX_ENTRY + 6)
        );
    }

    #[test]
    fn a_tree_object_costs_its_size_so_huge_listings_count_against_the_limit() {
        // One directory listing 20,000 empty files: its tree object alone is ~600 KB.
        let (_dir, repo, commit) = commit_of(|repo| {
            let empty = repo.blob(b"").unwrap();
            let big = repeated(repo, empty, 0o100644, 20_000);
            let mut root = repo.treebuilder(None).unwrap();
            root.insert("big", big, 0o040000).unwrap();
            root.write().unwrap()
        });
        let tree = repo
            .find_commit(commit)
            .unwrap()
            .tree()
            .unwrap()
            .get_name("big")
            .unwrap()
            .id();
        let (tree_size, _) = repo.odb().unwrap().read_header(tree).unwrap();
        assert!(tree_size > 500_000);
        let counted = checkout_size(&repo, commit, &budget(u64::MAX)).unwrap();
        assert!(counted >= tree_size as u64 + 20_000 * BLOCK, "{counted}");
    }

    #[test]
    fn nested_trees_stop_at_the_limit_without_walking_everything() {
        // 1,000 directories of 1,000 files: a million entries, 4 GB as counted.
        let (_dir, repo, commit) = commit_of(|repo| {
            let blob = repo.blob(b"bomb").unwrap();
            let inner = repeated(repo, blob, 0o100644, 1000);
            repeated(repo, inner, 0o040000, 1000)
        });
        assert!(matches!(
            checkout_size(&repo, commit, &budget(64 << 20)),
            Err(CheckoutError::TooLarge { .. })
        ));
        let expired = Budget {
            bytes: u64::MAX,
            deadline: Some(Instant::now()),
        };
        assert!(matches!(
            checkout_size(&repo, commit, &expired),
            Err(CheckoutError::Deadline)
        ));
    }

    #[test]
    fn a_tree_nested_too_deep_is_refused() {
        let (_dir, repo, commit) = commit_of(|repo| {
            let mut tree = repeated(repo, repo.blob(b"x").unwrap(), 0o100644, 1);
            for _ in 0..MAX_TREE_DEPTH {
                tree = repeated(repo, tree, 0o040000, 1);
            }
            tree
        });
        assert!(matches!(
            checkout_size(&repo, commit, &budget(u64::MAX)),
            Err(CheckoutError::TooDeep)
        ));
    }

    #[test]
    fn a_checkout_writes_the_commit_detached() {
        let (_dir, repo, commit) = commit_of(|repo| {
            let blob = repo.blob(b"hello\n").unwrap();
            repeated(repo, blob, 0o100755, 2)
        });
        let target = tempfile::tempdir().unwrap();
        let ws = target.path().join("ws");
        checkout_workspace(&repo, commit, &ws, &budget(1 << 20)).unwrap();
        assert_eq!(std::fs::read(ws.join("f1")).unwrap(), b"hello\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(ws.join("f0"))
                .unwrap()
                .permissions()
                .mode()
                & 0o111,
            0o111
        );
        let opened = Repository::open(&ws).unwrap();
        assert!(opened.head_detached().unwrap());
        assert_eq!(opened.head().unwrap().target(), Some(commit));
        let statuses = opened.statuses(None).unwrap();
        assert_eq!(statuses.len(), 0, "a clean checkout");
    }

    #[test]
    fn the_workspace_config_is_what_git_and_libgit2_read_back() {
        // A source path no config file could hold unquoted (a newline the alternates could not hold).
        let tmp = tempfile::tempdir().unwrap();
        let source_dir = tmp.path().join("a \"b\" \\c ; #d [e]\tf g.git");
        let source = Repository::init_bare(&source_dir).unwrap();
        let sig = git2::Signature::now("t", "t@example.org").unwrap();
        let tree = source.treebuilder(None).unwrap().write().unwrap();
        let tree = source.find_tree(tree).unwrap();
        let commit = source.commit(None, &sig, &sig, "c", &tree, &[]).unwrap();
        let ws = tmp.path().join("ws");
        checkout_workspace(&source, commit, &ws, &budget(1 << 20)).unwrap();
        let expected = source.path().to_str().unwrap().to_string();
        let opened = Repository::open(&ws).unwrap();
        let config = opened.config().unwrap().snapshot().unwrap();
        assert_eq!(config.get_str("remote.origin.url").unwrap(), expected);
        assert!(!config.get_bool("core.autocrlf").unwrap());
        // `git` in the workspace, with no configuration but the workspace's: its stdout.
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(&ws)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let url = git(&[
            "config",
            "--file",
            ".git/config",
            "--get",
            "remote.origin.url",
        ]);
        assert_eq!(url, format!("{expected}\n"));
        // git itself finds the commit through the alternates, and the work tree clean.
        assert_eq!(git(&["status", "--porcelain"]), "");
    }
}
