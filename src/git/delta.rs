//! What moving a checkout from one commit to another costs, in O(change): the trees both commits
//! share are never opened. The size is counted as [`checkout_size`](super::checkout_size) counts a
//! whole checkout (the two agree on every commit: a test checks), so a base tree moved from commit to
//! commit stays within the repo's `checkout_limit` exactly as a fresh checkout would.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use git2::{ObjectType, Odb, Oid, Repository, Tree, TreeEntry};

use crate::git::checkout::{BLOCK, MAX_PATH, check_tree, file_cost, open_tree};
use crate::git::{Budget, CheckoutError, other};

/// Going from one commit's files to another's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// What the files of the new commit take, as [`checkout_size`](super::checkout_size) counts them.
    pub size: u64,
    /// What the move writes, relative to the work tree: every file or link added or changed (its
    /// content, type or mode), and every directory added together with everything in it. Parents
    /// come before their children.
    pub written: Vec<PathBuf>,
    /// How many names the move removes (files, links and directories, counted one by one; not those
    /// replaced by something else).
    pub removed: u64,
}

/// Counts going from `from` (whose checkout takes `from_size`) to `to`: [`CheckoutError::TooLarge`]
/// as soon as `to` is known to take more than `budget.bytes`, [`CheckoutError::Deadline`] when the
/// deadline passes, and the limits of [`checkout_size`](super::checkout_size) on depth and on tree
/// objects held.
pub fn checkout_delta(
    repo: &Repository,
    from: Oid,
    from_size: u64,
    to: Oid,
    budget: &Budget,
) -> Result<Delta, CheckoutError> {
    if budget.expired() {
        return Err(CheckoutError::Deadline);
    }
    let tree_of = |commit: Oid| {
        repo.find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(other(format!("cannot read the tree of commit {commit}")))
    };
    let (old, new) = (tree_of(from)?, tree_of(to)?);
    // Every tree of the new side is checked as it is opened, as a full count checks them: names
    // looked up in a tree that lists one twice would count what the checkout does not write.
    check_tree(&new)?;
    let odb = repo
        .odb()
        .map_err(other("cannot open the object database"))?;
    let mut walk = Walk {
        repo,
        odb,
        budget,
        from_size,
        grown: 0,
        shrunk: 0,
        held: 0,
        visited: 0,
        written: Vec::new(),
        removed: 0,
    };
    walk.trees(Some(&old), Some(&new), &mut Vec::new(), 0)?;
    let size = from_size
        .saturating_add(walk.grown)
        .saturating_sub(walk.shrunk);
    if size > budget.bytes {
        return Err(CheckoutError::TooLarge {
            limit: budget.bytes,
        });
    }
    Ok(Delta {
        size,
        written: walk.written,
        removed: walk.removed,
    })
}

struct Walk<'r, 'b> {
    repo: &'r Repository,
    odb: Odb<'r>,
    budget: &'b Budget,
    from_size: u64,
    /// What the entries of `to` that differ cost, and what those of `from` they replace cost.
    grown: u64,
    shrunk: u64,
    /// Bytes of tree objects open along the path walked.
    held: u64,
    visited: u64,
    written: Vec<PathBuf>,
    removed: u64,
}

/// One side of a name: its kind, object and mode.
type Side = (Option<ObjectType>, Oid, i32);

fn side(entry: &TreeEntry) -> Side {
    (entry.kind(), entry.id(), entry.filemode())
}

impl<'r> Walk<'r, '_> {
    /// Compares two directories at `path` (either may be missing: everything in the other one is
    /// added or removed), `depth` levels down.
    fn trees(
        &mut self,
        old: Option<&Tree>,
        new: Option<&Tree>,
        path: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), CheckoutError> {
        if let Some(new) = new {
            for entry in new.iter() {
                let before = old.and_then(|o| o.get_name_bytes(entry.name_bytes()));
                let before = before.as_ref().map(side);
                self.entry(before, Some(side(&entry)), entry.name_bytes(), path, depth)?;
            }
        }
        if let Some(old) = old {
            for entry in old.iter() {
                if new.is_some_and(|n| n.get_name_bytes(entry.name_bytes()).is_some()) {
                    continue;
                }
                self.entry(Some(side(&entry)), None, entry.name_bytes(), path, depth)?;
            }
        }
        Ok(())
    }

    /// One name of a directory: unchanged (nothing to do), a directory on both sides (walked), or
    /// replaced (the old side removed, the new one added).
    fn entry(
        &mut self,
        old: Option<Side>,
        new: Option<Side>,
        name: &[u8],
        path: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), CheckoutError> {
        if old == new {
            return Ok(());
        }
        self.visited += 1;
        if self.visited.is_multiple_of(256) && self.budget.expired() {
            return Err(CheckoutError::Deadline);
        }
        let at = path.len();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        let result = if path.len() as u64 > MAX_PATH {
            Err(CheckoutError::Malformed(format!(
                "a path is longer than {MAX_PATH} bytes"
            )))
        } else {
            match (old, new) {
                (Some(o), Some(n)) if is_tree(o) && is_tree(n) => {
                    // A directory on both sides: its listing's size changes, then what differs
                    // inside.
                    self.directory_changed(o, n, path, depth)
                }
                _ => {
                    if new.is_none() {
                        self.removed += 1;
                    }
                    old.map_or(Ok(()), |o| self.side(o, false, path, depth))
                        .and_then(|()| new.map_or(Ok(()), |n| self.side(n, true, path, depth)))
                }
            }
        };
        path.truncate(at);
        result
    }

    fn directory_changed(
        &mut self,
        old: Side,
        new: Side,
        path: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), CheckoutError> {
        let (old_tree, old_size) =
            open_tree(self.repo, &self.odb, old.1, depth + 1, &mut self.held)?;
        let (new_tree, new_size) =
            open_tree(self.repo, &self.odb, new.1, depth + 1, &mut self.held)?;
        self.shrunk += old_size.max(BLOCK);
        self.grow(new_size.max(BLOCK))?;
        let walked = self.trees(Some(&old_tree), Some(&new_tree), path, depth + 1);
        self.held -= old_size + new_size;
        walked
    }

    /// One side of a name, with everything under it: the new side written (`added`), or the old
    /// one removed.
    fn side(
        &mut self,
        (kind, id, _): Side,
        added: bool,
        path: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), CheckoutError> {
        if added {
            self.written
                .push(PathBuf::from(OsStr::from_bytes(path.as_slice())));
        }
        let cost = match kind {
            Some(ObjectType::Tree) => {
                let (tree, size) = open_tree(self.repo, &self.odb, id, depth + 1, &mut self.held)?;
                let walked = if added {
                    self.trees(None, Some(&tree), path, depth + 1)
                } else {
                    self.trees(Some(&tree), None, path, depth + 1)
                };
                self.held -= size;
                walked?;
                size.max(BLOCK)
            }
            Some(ObjectType::Blob) => {
                let (size, _) = self
                    .odb
                    .read_header(id)
                    .map_err(other(format!("cannot read the object {id}")))?;
                file_cost(size as u64, path.len() as u64)
            }
            // A submodule is checked out as an empty directory.
            _ => BLOCK,
        };
        if added {
            self.grow(cost)
        } else {
            self.shrunk += cost;
            Ok(())
        }
    }

    fn grow(&mut self, cost: u64) -> Result<(), CheckoutError> {
        self.grown = self.grown.saturating_add(cost);
        // Whatever is removed, the new checkout takes at least `grown - from_size`.
        if self.grown.saturating_sub(self.from_size) > self.budget.bytes {
            return Err(CheckoutError::TooLarge {
                limit: self.budget.bytes,
            });
        }
        Ok(())
    }
}

fn is_tree((kind, _, _): Side) -> bool {
    kind == Some(ObjectType::Tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::checkout_size;

    /// A commit of `files` (path, content, mode) in `repo`.
    fn commit(repo: &Repository, files: &[(&str, &str, i32)]) -> Oid {
        let mut index = git2::Index::new().unwrap();
        for (path, content, mode) in files {
            let blob = repo.blob(content.as_bytes()).unwrap();
            let entry = git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: *mode as u32,
                uid: 0,
                gid: 0,
                file_size: content.len() as u32,
                id: blob,
                flags: 0,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            };
            index.add(&entry).unwrap();
        }
        let tree = repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.org").unwrap();
        repo.commit(None, &sig, &sig, "c", &tree, &[]).unwrap()
    }

    fn unlimited() -> Budget {
        Budget::unlimited()
    }

    #[test]
    fn a_move_counts_what_a_fresh_checkout_counts_and_names_what_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let big = "x".repeat(10_000);
        let from = commit(
            &repo,
            &[
                ("same.txt", "same", 0o100644),
                ("changed.txt", "old", 0o100644),
                ("mode.sh", "echo", 0o100644),
                ("gone/a", "a", 0o100644),
                ("gone/deeper/b", "b", 0o100644),
                ("becomes_dir", "file", 0o100644),
                ("keep/inner/same", "s", 0o100644),
                ("keep/inner/grows", "small", 0o100644),
            ],
        );
        let to = commit(
            &repo,
            &[
                ("same.txt", "same", 0o100644),
                ("changed.txt", "new", 0o100644),
                ("mode.sh", "echo", 0o100755),
                ("becomes_dir/x", "x", 0o100644),
                ("link", "same.txt", 0o120000),
                ("keep/inner/same", "s", 0o100644),
                ("keep/inner/grows", &big, 0o100644),
                ("new/dir/file", "f", 0o100644),
            ],
        );
        let from_size = checkout_size(&repo, from, &unlimited()).unwrap();
        let delta = checkout_delta(&repo, from, from_size, to, &unlimited()).unwrap();
        assert_eq!(delta.size, checkout_size(&repo, to, &unlimited()).unwrap());
        let mut written: Vec<String> = delta
            .written
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        written.sort();
        assert_eq!(
            written,
            [
                "becomes_dir",
                "becomes_dir/x",
                "changed.txt",
                "keep/inner/grows",
                "link",
                "mode.sh",
                "new",
                "new/dir",
                "new/dir/file",
            ]
        );
        // `gone/`, `gone/a`, `gone/deeper`, `gone/deeper/b`; not what was replaced.
        assert_eq!(delta.removed, 4);
        // And back again: the sizes agree the other way too.
        let back = checkout_delta(&repo, to, delta.size, from, &unlimited()).unwrap();
        assert_eq!(back.size, from_size);
        // Nothing to do between a commit and itself.
        let none = checkout_delta(&repo, to, delta.size, to, &unlimited()).unwrap();
        assert!(none.written.is_empty() && none.removed == 0);
        assert_eq!(none.size, delta.size);
    }

    #[test]
    fn a_move_past_the_limit_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let from = commit(&repo, &[("a", "a", 0o100644)]);
        let many: Vec<(String, String)> = (0..100)
            .map(|i| (format!("d/f{i}"), i.to_string()))
            .collect();
        let files: Vec<(&str, &str, i32)> = many
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str(), 0o100644))
            .collect();
        let to = commit(&repo, &files);
        let from_size = checkout_size(&repo, from, &unlimited()).unwrap();
        let limit = Budget {
            bytes: 50 * BLOCK,
            deadline: None,
        };
        assert!(matches!(
            checkout_delta(&repo, from, from_size, to, &limit),
            Err(CheckoutError::TooLarge { limit }) if limit == 50 * BLOCK
        ));
        let past = Budget {
            bytes: u64::MAX,
            deadline: Some(std::time::Instant::now()),
        };
        assert!(matches!(
            checkout_delta(&repo, from, from_size, to, &past),
            Err(CheckoutError::Deadline)
        ));
    }

    /// A tree object written byte for byte: `(mode, name, id)` in the order given, as a hostile
    /// pusher can (libgit2's builder sorts and refuses duplicates).
    fn raw_tree(repo: &Repository, entries: &[(&str, &[u8], Oid)]) -> Oid {
        let mut bytes = Vec::new();
        for (mode, name, id) in entries {
            bytes.extend_from_slice(mode.as_bytes());
            bytes.push(b' ');
            bytes.extend_from_slice(name);
            bytes.push(0);
            bytes.extend_from_slice(id.as_bytes());
        }
        repo.odb().unwrap().write(ObjectType::Tree, &bytes).unwrap()
    }

    fn commit_of_tree(repo: &Repository, tree: Oid) -> Oid {
        let tree = repo.find_tree(tree).unwrap();
        let sig = git2::Signature::now("t", "t@example.org").unwrap();
        repo.commit(None, &sig, &sig, "c", &tree, &[]).unwrap()
    }

    #[test]
    fn a_tree_git_would_not_write_as_listed_is_refused_by_both_counts() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let blob = repo.blob(b"x").unwrap();
        let link = repo.blob(b"/etc").unwrap();
        let inner = raw_tree(&repo, &[("100644", b"zz", blob)]);
        let from = commit(&repo, &[("a/zz", "x", 0o100644)]);
        let from_size = checkout_size(&repo, from, &unlimited()).unwrap();
        let long = vec![b'n'; 256];
        for (what, entries) in [
            // `a` a directory, then a link to `/etc`: the checkout keeps the link.
            (
                "lists a name twice",
                vec![("40000", &b"a"[..], inner), ("120000", &b"a"[..], link)],
            ),
            (
                "is not in git's order",
                vec![("100644", &b"b"[..], blob), ("100644", &b"a"[..], blob)],
            ),
            ("has a name git refuses", vec![("100644", &b".."[..], blob)]),
            (
                "has a name longer than 255 bytes",
                vec![("100644", &long[..], blob)],
            ),
        ] {
            let to = commit_of_tree(&repo, raw_tree(&repo, &entries));
            let full = checkout_size(&repo, to, &unlimited());
            assert!(
                matches!(&full, Err(CheckoutError::Malformed(why)) if why.contains(what)),
                "{what}: {full:?}"
            );
            let moved = checkout_delta(&repo, from, from_size, to, &unlimited());
            assert!(
                matches!(&moved, Err(CheckoutError::Malformed(why)) if why.contains(what)),
                "{what}: {moved:?}"
            );
        }
        // A file `a` and a directory `a` are in order (`a` < `a-b` < `a/`) but still one name twice.
        let to = commit_of_tree(
            &repo,
            raw_tree(
                &repo,
                &[
                    ("100644", b"a", blob),
                    ("100644", b"a-b", blob),
                    ("40000", b"a", inner),
                ],
            ),
        );
        assert!(matches!(
            checkout_delta(&repo, from, from_size, to, &unlimited()),
            Err(CheckoutError::Malformed(_))
        ));
    }
}
