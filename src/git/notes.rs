//! Results in git itself (SPEC §9, `notes = true`): a line appended to a commit's note under
//! `refs/notes/ci` of the repository, so that `git log --notes=ci` shows it in any clone that fetches
//! the notes ref.
//!
//! - **Atomic.** The new notes commit is made beside the ref, and the ref moved from the commit it was
//!   made on to the new one with `git update-ref <ref> <new> <old>` — a compare-and-swap: when another
//!   writer (a second run of the commit ending at the same moment) moved the ref meanwhile, the swap
//!   fails and the whole is done again on top of its commit, so no line is lost.
//! - **No hook runs**: every `git` has `core.hooksPath=/dev/null` (`update-ref` would otherwise run a
//!   `reference-transaction` hook, which a pusher may have written), and no other program the
//!   repository's configuration may name (`core.fsmonitor`, a signing program) either.
//! - **As the repository's owner.** Every `git` runs as the owner of the repository directory
//!   ([`privilege::owner_of`], [`privilege::run_as`]): no root-owned object or ref lands in a
//!   repository that pushers write to. Its scratch files (the note's text, a temporary index) are in a
//!   private directory of that user's. Where that owner is root, only a repository nobody else can
//!   change gets a note ([`refuse_as_root`]): git reads the repository's configuration, and no
//!   flag turns that off. The note's text is hashed `--no-filters`.
//!
//! Anyone who can push to the repository can also rewrite `refs/notes/ci`: a note informs, it does not
//! prove.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::isolation::privilege::{self, StepUser};

use super::cli;

/// The notes ref phantom_ci writes.
pub const NOTES_REF: &str = "refs/notes/ci";

/// How often the compare-and-swap is tried before giving up.
const ATTEMPTS: u32 = 50;

/// The most time all the `git` commands of one note may take.
const DEADLINE: Duration = Duration::from_secs(120);

/// The most bytes of a listing of the notes tree or of one note read.
const MAX_OUTPUT: u64 = 64 << 20;

/// Appends `line` (one line, no newline) to the note of `commit` (a full hex id) under
/// [`NOTES_REF`] of the repository at `repo` (bare or not), as the owner of `repo`. The error says
/// what failed, on one line.
pub fn append(repo: &Path, commit: &str, line: &str) -> Result<(), String> {
    if commit.is_empty() || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`{commit}` is not a commit id"));
    }
    let owner = privilege::owner_of(repo)?;
    if nix::unistd::geteuid().is_root() && !owner.switch {
        refuse_as_root(repo)?;
    }
    let scratch = tempfile::Builder::new()
        .prefix("phantom_ci-notes-")
        .tempdir()
        .map_err(|e| format!("cannot create a scratch directory: {e}"))?;
    if owner.switch {
        std::os::unix::fs::chown(
            scratch.path(),
            Some(owner.uid.as_raw()),
            Some(owner.gid.as_raw()),
        )
        .map_err(|e| format!("cannot give the scratch directory to `{}`: {e}", owner.name))?;
    }
    let writer = Writer {
        repo,
        owner: &owner,
        scratch: scratch.path(),
        deadline: Instant::now() + DEADLINE,
    };
    let line = line.replace(['\n', '\r'], " ");
    let as_owner = |e: String| {
        if owner.switch {
            format!(
                "{e} (written as `{}`, the owner of the repository: give it write access to the \
                 repository, or leave out `notes = true`)",
                owner.name
            )
        } else {
            e
        }
    };
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        match writer.attempt(commit, &line).map_err(as_owner)? {
            Swapped::Yes => return Ok(()),
            Swapped::No(why) => last = why,
        }
        // Another writer moved the ref: again, on top of its commit, a little later.
        let pause = 5 + u64::from(attempt) * 7 + u64::from(std::process::id() % 13);
        std::thread::sleep(Duration::from_millis(pause));
    }
    Err(format!(
        "`{NOTES_REF}` kept moving ({ATTEMPTS} attempts); the last: {last}"
    ))
}

/// Whether root may run `git` in `repo`, which root owns: only if nobody else can change what git
/// reads or where it writes there. A repository pushers share through its group (`git init
/// --shared=group`, as deployment.md sets one up) lets them write its `config` (a clean filter, a
/// promisor remote's command), and its `refs` and `objects`, where a directory swapped for a link
/// would have root write elsewhere. So: the repository is a directory (not a `.git` file pointing
/// elsewhere, no `commondir`), and it, its `config`, and every directory under `refs`, `logs` and
/// `objects` (its first level) are root's, written by root alone, and not links.
fn refuse_as_root(repo: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |path: &Path| {
        format!(
            "the repository `{}` belongs to root, but `{}` is not root's alone, so its pushers can \
             change what git reads or writes there — and phantom_ci would run git in it as root. \
             Give the repository to an unprivileged owner that pushers share it with (e.g. `chown \
             -R git:devs`), whom notes are then written as, or leave out `notes = true`",
            repo.display(),
            path.display()
        )
    };
    let dot_git = repo.join(".git");
    let git_dir = match std::fs::symlink_metadata(&dot_git) {
        Ok(meta) if meta.is_dir() => dot_git,
        // A `gitdir:` file or a link: the repository is elsewhere.
        Ok(_) => return Err(refuse(&dot_git)),
        Err(_) => repo.to_path_buf(),
    };
    if std::fs::symlink_metadata(git_dir.join("commondir")).is_ok() {
        return Err(refuse(&git_dir.join("commondir")));
    }
    let root_alone = |path: &Path| match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.uid() == 0 && meta.mode() & 0o022 == 0 && !meta.file_type().is_symlink(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    let mut checked = vec![repo.to_path_buf(), git_dir.clone(), git_dir.join("config")];
    // Every directory under `refs` and `logs`; `objects` and its first level (where objects go),
    // whose loose objects are not listed.
    let mut below = vec![
        (git_dir.join("refs"), usize::MAX),
        (git_dir.join("logs"), usize::MAX),
        (git_dir.join("objects"), 0),
    ];
    while let Some((dir, depth)) = below.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        checked.push(dir);
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_symlink() {
                return Err(refuse(&entry.path()));
            }
            if kind.is_dir() {
                if depth > 0 {
                    below.push((entry.path(), depth - 1));
                } else {
                    checked.push(entry.path());
                }
            }
        }
        if checked.len() > MAX_CHECKED {
            return Err(refuse(&git_dir));
        }
    }
    match checked.iter().find(|path| !root_alone(path)) {
        Some(path) => Err(refuse(path)),
        None => Ok(()),
    }
}

/// The most directories [`refuse_as_root`] looks at (a root-owned repository with more is refused).
const MAX_CHECKED: usize = 100_000;

enum Swapped {
    Yes,
    /// The ref was not where the new commit was made (or locked): why, in git's words.
    No(String),
}

struct Writer<'a> {
    repo: &'a Path,
    owner: &'a StepUser,
    scratch: &'a Path,
    deadline: Instant,
}

impl Writer<'_> {
    /// `git` in the repository, as its owner, without hooks or the operator's global configuration.
    fn git(&self, args: &[&str]) -> Command {
        let mut command = cli::git();
        command
            .arg("-C")
            .arg(self.repo)
            // No program the repository's configuration names runs: no hook, no file-system
            // monitor, no signing program.
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "core.fsmonitor=false",
            ])
            .args(["-c", "commit.gpgSign=false", "-c", "safe.directory=*"])
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "phantom_ci")
            .env("GIT_AUTHOR_EMAIL", "phantom_ci@localhost")
            .env("GIT_COMMITTER_NAME", "phantom_ci")
            .env("GIT_COMMITTER_EMAIL", "phantom_ci@localhost")
            .env("GIT_INDEX_FILE", self.scratch.join("index"))
            .envs(crate::isolation::UNTRUSTED_REPOSITORY_GIT_ENV)
            .env("HOME", &self.owner.home)
            .current_dir("/");
        privilege::run_as(&mut command, self.owner);
        command
    }

    /// Runs `git args`; its standard output, or the error in words.
    fn run(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        let what = || format!("`git {}`", args.join(" "));
        match cli::run_keeping(self.git(args), self.deadline, MAX_OUTPUT) {
            Ok((ran, out)) if ran.status.success() => Ok(out),
            Ok((ran, _)) => Err(format!("{} failed: {}", what(), ran.stderr)),
            Err(stopped) => Err(format!("{} did not finish: {stopped:?}", what())),
        }
    }

    fn text(&self, args: &[&str]) -> Result<String, String> {
        self.run(args)
            .map(|out| String::from_utf8_lossy(&out).trim().to_string())
    }

    /// One try: the note on top of the ref as it is now, then the swap.
    fn attempt(&self, commit: &str, line: &str) -> Result<Swapped, String> {
        // The ref is read once: where it points decides both whether it can carry notes and what the
        // swap expects (read twice, another writer creating it between the reads looked like a ref
        // that names no commit).
        let current = self
            .text(&["rev-parse", "-q", "--verify", NOTES_REF])
            .ok()
            .filter(|id| !id.is_empty());
        let old = match current {
            None => None,
            Some(id) => {
                // A ref that names no commit (a pusher can push a blob there) never becomes one by
                // waiting: said at once.
                let kind = self.text(&["cat-file", "-t", &id])?;
                if kind != "commit" {
                    return Err(format!(
                        "`{NOTES_REF}` names a {kind}, not a commit: no note can be added to it \
                         (delete the ref with `git update-ref -d {NOTES_REF}` in the repository, or \
                         point it at a notes commit)"
                    ));
                }
                Some(id)
            }
        };
        // The note's path in the notes tree: the commit's id, maybe split into fan-out folders.
        let mut path = commit.to_string();
        let mut note = Vec::new();
        if let Some(old) = &old {
            let listing = self.run(&["ls-tree", "-r", "--name-only", old])?;
            if let Some(found) = String::from_utf8_lossy(&listing)
                .lines()
                .find(|name| name.replace('/', "") == commit)
            {
                path = found.to_string();
                note = self.run(&["cat-file", "blob", &format!("{old}:{path}")])?;
            }
        }
        if !note.is_empty() && !note.ends_with(b"\n") {
            note.push(b'\n');
        }
        note.extend_from_slice(line.as_bytes());
        note.push(b'\n');
        // The scratch directory belongs to the repository's owner, who may put a link or anything
        // else in it at any moment: the note goes into a file created new (O_EXCL, a random name:
        // never through something already there), readable by the owner's `git`, and written
        // through that descriptor only.
        let mut file = tempfile::Builder::new()
            .prefix("note-")
            .tempfile_in(self.scratch)
            .map_err(|e| format!("cannot create the note's file: {e}"))?;
        {
            use std::io::Write;
            use std::os::unix::fs::PermissionsExt;
            file.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .and_then(|()| file.write_all(&note))
                .and_then(|()| file.flush())
                .map_err(|e| format!("cannot write the note: {e}"))?;
        }
        let path_of_note = file.path().to_string_lossy().into_owned();
        // As is: no clean filter the repository's attributes name runs on it.
        let blob = self.text(&["hash-object", "-w", "--no-filters", "--", &path_of_note])?;
        drop(file);
        match &old {
            Some(old) => self.run(&["read-tree", old])?,
            None => self.run(&["read-tree", "--empty"])?,
        };
        self.run(&[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("100644,{blob},{path}"),
        ])?;
        let tree = self.text(&["write-tree"])?;
        let mut args = vec![
            "commit-tree",
            "--no-gpg-sign",
            &tree,
            "-m",
            "Notes added by phantom_ci",
        ];
        if let Some(old) = &old {
            args.extend(["-p", old]);
        }
        let new = self.text(&args)?;
        // No ref yet: the swap requires there still be none (the zero id of the repository's hash).
        let expected = old.clone().unwrap_or_else(|| "0".repeat(commit.len()));
        match self.run(&[
            "update-ref",
            "-m",
            "notes: phantom_ci",
            NOTES_REF,
            &new,
            &expected,
        ]) {
            Ok(_) => Ok(Swapped::Yes),
            // Moved by another writer, or locked by one for the moment: try again.
            Err(why)
                if ["but expected", "File exists", "already exists"]
                    .iter()
                    .any(|moved| why.contains(moved)) =>
            {
                Ok(Swapped::No(why))
            }
            Err(why) => Err(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_that_points_elsewhere_is_never_roots_alone() {
        let tmp = tempfile::tempdir().unwrap();
        // A work tree whose `.git` is a `gitdir:` file: the repository (and its config) is elsewhere.
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).unwrap();
        std::fs::write(work.join(".git"), "gitdir: /somewhere/else.git\n").unwrap();
        let e = refuse_as_root(&work).unwrap_err();
        assert!(
            e.contains(&format!("`{}`", work.join(".git").display())),
            "{e}"
        );
        // A repository whose common directory (config, refs, objects) is named by `commondir`.
        let bare = tmp.path().join("bare.git");
        std::fs::create_dir(&bare).unwrap();
        std::fs::write(bare.join("commondir"), "/somewhere/else.git\n").unwrap();
        let e = refuse_as_root(&bare).unwrap_err();
        assert!(e.contains("commondir"), "{e}");
    }
}
