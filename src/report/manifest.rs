//! The report folder's own-files manifest, `.phantom_ci-files`: the files and folders of runs that
//! phantom_ci wrote there (`<repo>/<run>.html`, `<repo>/<run>/artifacts/`) and its branch badges
//! (`badge/<repo>/<file>.svg`), so that when `keep_runs` prunes a run's record its page and artifact
//! copies go too (and a branch's badge once no run of it is left), and nothing else in a shared folder
//! is ever removed.
//!
//! The manifest is read as untrusted: only relative paths of the forms `<repo>/<run>.html`,
//! `<repo>/<run>/artifacts/` and `badge/<repo>/<file>.svg` (a repo name, a run number, a badge file
//! name of letters, digits, `.`, `_`, `-` and `~` not starting with `.`) are taken, so no entry has
//! `..`, `.`, an empty component or a leading `/`. Removing goes through directory descriptors from the report folder
//! down, opened with `O_NOFOLLOW`: a symbolic link planted anywhere on the way is never followed.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::sys::stat::SFlag;
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::isolation::dirfd;

/// The manifest's name in the report folder.
pub const NAME: &str = ".phantom_ci-files";

/// The most bytes of a manifest read (a million runs' entries fit).
const MAX_BYTES: u64 = 64 << 20;

/// A thing of one run phantom_ci wrote into the report folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub repo: String,
    pub run: u64,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `<repo>/<run>.html`
    Page,
    /// `<repo>/<run>/artifacts/`, a folder phantom_ci created and filled.
    Artifacts,
}

impl Entry {
    pub fn page(repo: &str, run: u64) -> Entry {
        Entry {
            repo: repo.to_string(),
            run,
            kind: Kind::Page,
        }
    }

    pub fn artifacts(repo: &str, run: u64) -> Entry {
        Entry {
            repo: repo.to_string(),
            run,
            kind: Kind::Artifacts,
        }
    }

    /// Its line in the manifest: a relative path, a folder ending with `/`.
    fn line(&self) -> String {
        match self.kind {
            Kind::Page => format!("{}/{}.html", self.repo, self.run),
            Kind::Artifacts => format!("{}/{}/artifacts/", self.repo, self.run),
        }
    }

    /// A line of the manifest, if it is one phantom_ci writes; anything else is passed over.
    fn parse(line: &str) -> Option<Entry> {
        let (repo, rest) = line.split_once('/')?;
        crate::config::validate_repo_name(repo).ok()?;
        let (run, kind) = match rest.strip_suffix(".html") {
            Some(run) => (run, Kind::Page),
            None => (rest.strip_suffix("/artifacts/")?, Kind::Artifacts),
        };
        if run.is_empty() || !run.bytes().all(|b| b.is_ascii_digit()) || run.starts_with('0') {
            return None;
        }
        Some(Entry {
            repo: repo.to_string(),
            run: run.parse().ok()?,
            kind,
        })
    }
}

/// What phantom_ci wrote into one report folder.
#[derive(Debug, Default)]
pub struct Manifest {
    pub entries: BTreeSet<Entry>,
    /// Branch badges: (repo, file name without `.svg`).
    pub badges: BTreeSet<(String, String)>,
}

/// `badge/<repo>/<file>.svg`, if `line` is one.
fn parse_badge(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("badge/")?;
    let (repo, file) = rest.split_once('/')?;
    crate::config::validate_repo_name(repo).ok()?;
    let file = file.strip_suffix(".svg")?;
    let plain = file
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~'));
    (plain && !file.is_empty() && !file.starts_with('.'))
        .then(|| (repo.to_string(), file.to_string()))
}

impl Manifest {
    /// The manifest of the folder `dir`; none yet (or one that cannot be read) is empty: what it does
    /// not list is never removed.
    pub fn load(dir: &Path) -> Manifest {
        let mut text = String::new();
        let read = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(dir.join(NAME))
            .and_then(|file| file.take(MAX_BYTES).read_to_string(&mut text));
        if read.is_err() {
            return Manifest::default();
        }
        Manifest {
            entries: text.lines().filter_map(Entry::parse).collect(),
            badges: text.lines().filter_map(parse_badge).collect(),
        }
    }

    /// The text of the manifest.
    pub fn text(&self) -> String {
        let mut text = String::from(
            "# phantom_ci's own files in this report folder: removed with their run's record\n",
        );
        for entry in &self.entries {
            text.push_str(&entry.line());
            text.push('\n');
        }
        for (repo, file) in &self.badges {
            text.push_str(&format!("badge/{repo}/{file}.svg\n"));
        }
        text
    }

    /// The branch badges of `repo` are now `files`: those it listed before and that are gone from
    /// `files` (no run of their branch is left) are removed from the folder `dir`; `files` are listed.
    pub fn badges_now(&mut self, dir: &Path, repo: &str, files: &BTreeSet<String>) {
        let gone: Vec<(String, String)> = self
            .badges
            .iter()
            .filter(|(r, file)| r == repo && !files.contains(file))
            .cloned()
            .collect();
        if !gone.is_empty()
            && let Ok(root) = dirfd::open_dir(None, dir.as_os_str())
            && let Ok(badges) = dirfd::open_dir(Some(&root), OsStr::new("badge"))
            && let Ok(folder) = dirfd::open_dir(Some(&badges), OsStr::new(repo))
        {
            for (_, file) in &gone {
                let name = format!("{file}.svg");
                let name = OsStr::new(&name);
                if dirfd::kind(&folder, name) == Ok(SFlag::S_IFREG) {
                    let _ = unlinkat(&folder, name, UnlinkatFlags::NoRemoveDir);
                }
            }
        }
        // A badge whose file could not be removed stays listed, to be tried again.
        self.badges.retain(|(r, file)| {
            r != repo
                || files.contains(file)
                || std::fs::symlink_metadata(dir.join("badge").join(r).join(format!("{file}.svg")))
                    .is_ok()
        });
        for file in files {
            self.badges.insert((repo.to_string(), file.clone()));
        }
    }

    /// Removes from the folder `dir` what the entries for which `gone` holds name, and drops those
    /// entries; returns what could not be removed, in words (its entry stays, to be tried again). A
    /// thing already missing is no trouble, and a link where phantom_ci's folder was is not
    /// followed: the entry is dropped, the link left.
    pub fn prune(&mut self, dir: &Path, gone: impl Fn(&str, u64) -> bool) -> Vec<String> {
        let doomed: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| gone(&e.repo, e.run))
            .cloned()
            .collect();
        if doomed.is_empty() {
            return Vec::new();
        }
        let mut problems = Vec::new();
        let root = match dirfd::open_dir(None, dir.as_os_str()) {
            Ok(root) => root,
            Err(e) => return vec![format!("cannot open `{}`: {e}", dir.display())],
        };
        for entry in doomed {
            match remove(&root, &entry) {
                // A link or a file where phantom_ci's folder was: not its own any more, left alone.
                Ok(()) | Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
                    self.entries.remove(&entry);
                }
                Err(e) => problems.push(format!(
                    "cannot remove `{}` of a pruned run from `{}`: {e}",
                    entry.line(),
                    dir.display()
                )),
            }
        }
        problems
    }
}

fn missing_is_fine(result: nix::Result<()>) -> nix::Result<()> {
    match result {
        Err(nix::errno::Errno::ENOENT) => Ok(()),
        other => other,
    }
}

/// Removes what `entry` names below `root`, by descriptor, following no link.
fn remove(root: &std::os::fd::OwnedFd, entry: &Entry) -> nix::Result<()> {
    let repo = match dirfd::open_dir(Some(root), OsStr::new(&entry.repo)) {
        Ok(repo) => repo,
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let run = entry.run.to_string();
    match entry.kind {
        Kind::Page => {
            let page = format!("{run}.html");
            let page = OsStr::new(&page);
            match dirfd::kind(&repo, page) {
                Ok(SFlag::S_IFREG) => {
                    missing_is_fine(unlinkat(&repo, page, UnlinkatFlags::NoRemoveDir))
                }
                // Not a file of ours any more: left alone.
                Ok(_) | Err(nix::errno::Errno::ENOENT) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Kind::Artifacts => {
            let folder = match dirfd::open_dir(Some(&repo), OsStr::new(&run)) {
                Ok(folder) => folder,
                Err(nix::errno::Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(e),
            };
            match dirfd::kind(&folder, OsStr::new("artifacts")) {
                Ok(SFlag::S_IFDIR) => {
                    missing_is_fine(dirfd::remove_all(&folder, OsStr::new("artifacts")))?;
                }
                Ok(_) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
            // The run's folder goes when nothing else is in it.
            let _ = unlinkat(&repo, OsStr::new(&run), UnlinkatFlags::RemoveDir);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lines_phantom_ci_writes_are_read() {
        let parsed: Vec<Option<Entry>> = [
            "app/3.html",
            "app/3/artifacts/",
            "../3.html",
            "app/../3.html",
            "/app/3.html",
            "app/03.html",
            "app/3/../../x/artifacts/",
            "app/x.html",
            "app//3.html",
            "# comment",
        ]
        .iter()
        .map(|line| Entry::parse(line))
        .collect();
        assert_eq!(parsed[0], Some(Entry::page("app", 3)));
        assert_eq!(
            parse_badge("badge/app/release~1.2.svg"),
            Some(("app".into(), "release~1.2".into()))
        );
        for bad in [
            "badge/app/../x.svg",
            "badge/../x.svg",
            "badge/app/.x.svg",
            "badge/app/a/b.svg",
            "badge/app.svg",
        ] {
            assert_eq!(parse_badge(bad), None, "{bad}");
        }
        assert_eq!(parsed[1], Some(Entry::artifacts("app", 3)));
        assert!(parsed[2..].iter().all(Option::is_none), "{parsed:?}");
        let mut manifest = Manifest::default();
        manifest.entries.insert(Entry::artifacts("app", 3));
        manifest.entries.insert(Entry::page("app", 3));
        let text = manifest.text();
        assert!(text.ends_with("app/3.html\napp/3/artifacts/\n"), "{text}");
    }

    #[test]
    fn pruning_removes_only_listed_things_of_gone_runs_and_follows_no_link() {
        let tmp = tempfile::tempdir().unwrap();
        let site = tmp.path().join("site");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(site.join("app/1/artifacts/sub")).unwrap();
        std::fs::create_dir_all(site.join("app/2/artifacts")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        std::fs::write(site.join("app/1.html"), "1").unwrap();
        std::fs::write(site.join("app/1/artifacts/sub/a"), "a").unwrap();
        std::fs::write(site.join("app/2.html"), "2").unwrap();
        std::fs::write(site.join("app/notes.txt"), "someone else's").unwrap();
        // Someone swapped run 5's folder for a link to elsewhere.
        std::os::unix::fs::symlink(&outside, site.join("app/5")).unwrap();
        std::fs::write(
            site.join(NAME),
            "app/1.html\napp/1/artifacts/\napp/2.html\napp/2/artifacts/\napp/5/artifacts/\n\
             app/notes.txt\n../outside/keep\n",
        )
        .unwrap();
        let mut manifest = Manifest::load(&site);
        assert_eq!(manifest.entries.len(), 5);
        let problems = manifest.prune(&site, |repo, run| repo == "app" && run != 2);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!site.join("app/1.html").exists());
        assert!(!site.join("app/1").exists());
        assert!(site.join("app/2.html").exists() && site.join("app/2/artifacts").exists());
        assert!(site.join("app/notes.txt").exists());
        assert!(outside.join("keep").exists());
        assert_eq!(
            manifest.entries.iter().cloned().collect::<Vec<_>>(),
            [Entry::page("app", 2), Entry::artifacts("app", 2)]
        );
    }
}
