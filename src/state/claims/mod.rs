//! Claims of a runner pool, kept on the central host (SPEC §7): which host runs which commit.
//!
//! One file per `(repo, branch, commit)`: `<data>/claims/<repo>/<branch key>@<commit>.json`, naming the
//! host that holds it, when it was claimed and last renewed, the holder's `claim_ttl`, and once the
//! run ended, its result. Every request — `claim`, `renew`, `done` — is one read-decide-write under an
//! exclusive `flock` of `<data>/claims/<repo>/.lock`, so it is a compare-and-swap: two hosts that ask
//! at once are served one after the other, and the second sees what the first wrote. A new claim is
//! created with `O_EXCL` (no second writer, even one that ignored the lock, can replace it by
//! creating); a changed one is replaced atomically (temporary file, fsync, rename), so `status` can
//! read the files without the lock.
//!
//! What is decided is the pure [`decide`]; [`apply`] does the files. Old claims are pruned when a new
//! one is made: settled ones (done, or not renewed for their TTL) after [`KEEP`], and past
//! [`MAX_PER_REPO`] per repo the oldest settled ones first; at most [`MAX_REPOS`] repos have claims.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::dirs::Dirs;
use crate::error::Error;
use crate::state::atomic_file;
use crate::state::queue::branch_key;

mod decide;

pub use decide::{CODE_DONE, CODE_HELD, CODE_OK, Claim, Key, Outcome, Request, decide, now, time};

/// How long a settled claim (done, or expired) is kept: a host that was away that long and still has
/// the commit queued learns from it that the commit ran elsewhere.
pub const KEEP: Duration = Duration::from_secs(30 * 24 * 3600);
/// The most claim files kept per repo; past it the oldest settled ones go first.
pub const MAX_PER_REPO: usize = 2000;
/// The most repos with claims: a runner key cannot fill the disk by naming new repos.
pub const MAX_REPOS: usize = 1000;
/// The longest `claim_ttl` a request may state (a day): a claim cannot be held forever.
pub const MAX_TTL_SECS: u64 = 24 * 3600;

/// `<data>/claims`.
pub fn root(dirs: &Dirs) -> PathBuf {
    dirs.data.join("claims")
}

fn file(dirs: &Dirs, key: Key) -> PathBuf {
    let pool = key.pool.map_or(String::new(), |pool| format!("@{pool}"));
    root(dirs).join(key.repo).join(format!(
        "{}@{}{pool}.json",
        branch_key(key.branch),
        key.commit
    ))
}

fn read(path: &Path) -> Result<Option<Claim>, Error> {
    match std::fs::read(path) {
        // Made, and its maker died before a byte was written (a power loss, a SIGKILL between the
        // create and the write): no host was ever told it holds it. Read as no claim, replaced below.
        Ok(bytes) if bytes.is_empty() => Ok(None),
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Other(format!(
                "the claim `{}` is damaged ({e}); remove it to let the pool claim the commit again",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot read", path, e)),
    }
}

/// Decides `request` from `host` about `key` at `now` and writes what it changes, under the repo's
/// claim lock (see the module's text). The caller has checked the names (a plain repo name, a valid
/// branch, a commit id).
pub fn apply(
    dirs: &Dirs,
    key: Key,
    host: &str,
    request: &Request,
    now: u64,
) -> Result<(Outcome, Claim), Error> {
    let plain = !key.repo.is_empty()
        && key.repo != "."
        && key.repo != ".."
        && !key.repo.contains('/')
        && key.commit.bytes().all(|b| b.is_ascii_hexdigit())
        && key
            .pool
            .is_none_or(|pool| crate::config::pool::validate_pool_name(pool).is_ok());
    if !plain {
        return Err(Error::Other(format!(
            "refused: `{}` is not a plain repository name and commit id",
            crate::describe::terminal(key.repo)
        )));
    }
    let root = root(dirs);
    dirs.make(&root)
        .map_err(|e| Error::io("cannot create", &root, e))?;
    let dir = root.join(key.repo);
    if !dir.is_dir() && repos(dirs).len() >= MAX_REPOS {
        prune_repos(dirs, now);
        if repos(dirs).len() >= MAX_REPOS {
            return Err(Error::Other(format!(
                "refused: `{}` already holds the claims of {MAX_REPOS} repositories; remove the \
                 folders of old ones",
                root.display()
            )));
        }
    }
    dirs.make(&dir)
        .map_err(|e| Error::io("cannot create", &dir, e))?;
    let lock_path = dir.join(".lock");
    let _lock = crate::config::dirs::lock_private(&lock_path, true)
        .map_err(|e| Error::io("cannot lock", &lock_path, e))?;
    let path = file(dirs, key);
    let existing = read(&path)?;
    let (outcome, new) = decide(existing.as_ref(), key, host, request, now);
    let Some(new) = new else {
        let current = existing.unwrap_or_else(|| Claim::new(key, "", now, 0));
        return Ok((outcome, current));
    };
    let bytes = serde_json::to_vec_pretty(&new)
        .map_err(|e| Error::Other(format!("cannot serialise a claim: {e}")))?;
    if existing.is_none() {
        // Live claims are never pruned: a claim key that claims made-up commits stops here, not
        // at the disk's end.
        if prune(&dir, now, Some(&path)) >= MAX_PER_REPO {
            return Err(Error::Other(format!(
                "refused: `{}` holds {MAX_PER_REPO} claims that are not settled; no new one until \
                 they end or expire",
                crate::describe::terminal(key.repo)
            )));
        }
        // An empty file left by a maker that died (see `read`) goes first, under the lock.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("cannot remove the empty claim", &path, e));
            }
            _ => {}
        }
        create_new(&path, &bytes).map_err(|e| Error::io("cannot create the claim", &path, e))?;
    } else {
        atomic_file::write(&path, &bytes).map_err(|e| Error::io("cannot write", &path, e))?;
    }
    Ok((outcome, new))
}

/// Creates `path` with `O_EXCL` (it must not exist), writes `bytes` and syncs it.
fn create_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

/// The claim files of the repo folder `dir`, with their claims (unreadable ones as `None`).
fn claim_files(dir: &Path) -> Vec<(PathBuf, Option<Claim>)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && p.file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .map(|p| {
            let claim = read(&p).ok().flatten();
            (p, claim)
        })
        .collect()
}

/// Removes the settled claims of the repo folder `dir` older than [`KEEP`], then, past
/// [`MAX_PER_REPO`], the oldest settled ones (never `keep`, never a claim whose run goes on).
/// Returns how many claims are left.
fn prune(dir: &Path, now: u64, keep: Option<&Path>) -> usize {
    let mut settled: Vec<(u64, PathBuf)> = Vec::new();
    let mut count = 0;
    for (path, claim) in claim_files(dir) {
        count += 1;
        if Some(path.as_path()) == keep {
            continue;
        }
        match claim {
            Some(claim) if claim.settled(now) => {
                settled.push((claim.done_at.unwrap_or(claim.renewed_at), path));
            }
            Some(_) => {}
            // Damaged: nothing can use it.
            None => settled.push((0, path)),
        }
    }
    settled.sort();
    let cutoff = now.saturating_sub(KEEP.as_secs());
    for (at, path) in settled {
        if at < cutoff || count >= MAX_PER_REPO {
            if std::fs::remove_file(&path).is_ok() {
                count -= 1;
            }
        } else {
            break;
        }
    }
    count
}

/// Removes the folders of repos whose claims are all settled and older than [`KEEP`].
fn prune_repos(dirs: &Dirs, now: u64) {
    for repo in repos(dirs) {
        let dir = root(dirs).join(&repo);
        if prune(&dir, now, None) == 0 {
            let _ = std::fs::remove_file(dir.join(".lock"));
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// The repos that have claims, by name.
pub fn repos(dirs: &Dirs) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root(dirs))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// The claims of `repo`, the most recently changed first.
pub fn list(dirs: &Dirs, repo: &str) -> Vec<Claim> {
    let mut claims: Vec<Claim> = claim_files(&root(dirs).join(repo))
        .into_iter()
        .filter_map(|(_, claim)| claim)
        .collect();
    claims.sort_by(|a, b| {
        let at = |c: &Claim| c.done_at.unwrap_or(c.renewed_at);
        at(b)
            .cmp(&at(a))
            .then_with(|| b.claimed_at.cmp(&a.claimed_at))
    });
    claims
}

#[cfg(test)]
pub(super) mod test_support {
    use super::{Key, Request};

    pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    pub fn key() -> Key<'static> {
        Key {
            repo: "app",
            branch: "feature/x",
            commit: COMMIT,
            pool: None,
        }
    }

    pub fn claim(ttl_secs: u64) -> Request {
        Request::Claim { ttl_secs }
    }

    pub fn done(result: &str) -> Request {
        Request::Done {
            result: result.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_support::{COMMIT, claim, done, key};

    fn dirs(root: &std::path::Path) -> Dirs {
        Dirs::under(root)
    }

    /// The review's attack: a claim key claiming made-up commits filled the folder without bound.
    #[test]
    fn live_claims_are_capped_per_repo() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = dirs(tmp.path());
        apply(&dirs, key(), "a", &claim(86400), 1000).unwrap();
        let first = file(&dirs, key());
        let bytes = std::fs::read(&first).unwrap();
        for i in 1..MAX_PER_REPO {
            let name = format!("master@{i:040x}.json");
            std::fs::write(first.with_file_name(name), &bytes).unwrap();
        }
        let other = Key {
            commit: "f123456789abcdef0123456789abcdef01234567",
            ..key()
        };
        let refused = apply(&dirs, other, "a", &claim(86400), 1001).unwrap_err();
        assert!(
            refused.to_string().contains("claims that are not settled"),
            "{refused}"
        );
        assert_eq!(claim_files(first.parent().unwrap()).len(), MAX_PER_REPO);
        // The claims already there still answer.
        assert_eq!(
            apply(&dirs, key(), "a", &Request::Renew, 1002).unwrap().0,
            Outcome::Renewed
        );
    }

    #[test]
    fn the_store_creates_once_and_takes_over_by_compare_and_swap() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = dirs(tmp.path());
        let (first, _) = apply(&dirs, key(), "a", &claim(5), 1000).unwrap();
        assert_eq!(first, Outcome::Granted);
        let path = file(&dirs, key());
        assert!(
            path.ends_with("claims/app/feature%2Fx@0123456789abcdef0123456789abcdef01234567.json")
        );
        let (held, _) = apply(&dirs, key(), "b", &claim(5), 1004).unwrap();
        assert!(matches!(held, Outcome::Held { .. }), "{held}");
        // Eight hosts ask at once after A's TTL: exactly one takes it over.
        let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let dirs = &dirs;
                    scope.spawn(move || {
                        apply(dirs, key(), &format!("h{i}"), &claim(5), 1010)
                            .unwrap()
                            .0
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::TakenOver { .. }))
            .collect();
        assert_eq!(winners.len(), 1, "{outcomes:?}");
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Held { .. }))
                .count(),
            7
        );
        let holder = list(&dirs, "app").remove(0);
        assert_eq!(holder.taken_from.as_deref(), Some("a"));
        // A's late `done` is refused and changes nothing.
        let before = std::fs::read(&path).unwrap();
        let (late, _) = apply(&dirs, key(), "a", &done("success"), 1011).unwrap();
        assert_eq!(
            late,
            Outcome::LostTo {
                host: holder.host.clone(),
                at: 1010
            }
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let (recorded, claim_now) =
            apply(&dirs, key(), &holder.host, &done("success"), 1012).unwrap();
        assert_eq!(recorded, Outcome::DoneRecorded);
        assert_eq!(claim_now.result.as_deref(), Some("success"));
        assert_eq!(repos(&dirs), ["app"]);
        // Private to phantom_ci's user.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn settled_claims_are_pruned_and_running_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = dirs(tmp.path());
        let commit = |n: u32| format!("{n:040x}");
        let old = 1000;
        let (c1, c2) = (commit(1), commit(2));
        fn k(commit: &str) -> Key<'_> {
            Key {
                repo: "app",
                branch: "master",
                commit,
                pool: None,
            }
        }
        apply(&dirs, k(&c1), "a", &claim(60), old).unwrap();
        apply(&dirs, k(&c1), "a", &done("success"), old).unwrap();
        // Long held and renewed: its run goes on.
        let live = KEEP.as_secs() * 2;
        apply(&dirs, k(&c2), "a", &claim(60), old).unwrap();
        apply(&dirs, k(&c2), "a", &Request::Renew, live).unwrap();
        // A new claim, past KEEP: the old done one goes, the live one stays.
        let c3 = commit(3);
        apply(&dirs, k(&c3), "b", &claim(60), live + 1).unwrap();
        let left: Vec<String> = list(&dirs, "app").into_iter().map(|c| c.commit).collect();
        assert_eq!(left, [c3.clone(), c2.clone()]);
    }

    #[test]
    fn an_empty_claim_left_by_a_maker_that_died_is_no_claim() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = dirs(tmp.path());
        let path = file(&dirs, key());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "").unwrap();
        let (outcome, held) = apply(&dirs, key(), "b", &claim(60), 5).unwrap();
        assert_eq!(outcome, Outcome::Granted);
        assert_eq!(held.host, "b");
        assert!(read(&path).unwrap().is_some());
        // A file with something in it that is not a claim is still damaged, and said.
        std::fs::write(&path, "{").unwrap();
        assert!(apply(&dirs, key(), "b", &claim(60), 6).is_err());
    }

    #[test]
    fn each_pool_claims_a_commit_for_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = dirs(tmp.path());
        let in_pool = |pool| Key {
            pool: Some(pool),
            ..key()
        };
        let (x86, _) = apply(&dirs, in_pool("x86"), "a", &claim(60), 1).unwrap();
        let (arm, _) = apply(&dirs, in_pool("arm"), "b", &claim(60), 1).unwrap();
        assert_eq!((x86, arm), (Outcome::Granted, Outcome::Granted));
        // Within a pool, still once.
        let (again, _) = apply(&dirs, in_pool("arm"), "c", &claim(60), 2).unwrap();
        assert!(matches!(again, Outcome::Held { .. }), "{again:?}");
        assert!(apply(&dirs, in_pool("../x"), "a", &claim(60), 1).is_err());
    }

    #[test]
    fn names_that_are_not_plain_are_refused_by_the_store_too() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = dirs(tmp.path());
        for repo in ["..", ".", "a/b", ""] {
            let bad = Key {
                repo,
                branch: "master",
                commit: COMMIT,
                pool: None,
            };
            assert!(apply(&dirs, bad, "a", &claim(5), 1).is_err(), "{repo}");
        }
        assert!(!root(&dirs).join("..").join("master").exists());
    }
}
