//! A run's artifacts in the report: copied from the run record's `artifacts/` to
//! `<repo>/<run>/artifacts/` beside the run's page, and listed on it.
//!
//! What is kept out, whatever the record holds (its names come from a step):
//!
//! - anything but a regular file: the record is walked by file descriptor, never following a symbolic
//!   link, and files are opened with `O_NOFOLLOW` and checked once open;
//! - more than [`REPORT_ARTIFACTS_CAP`] bytes or [`MAX_FILES`] files per run (the rest is listed, not
//!   copied), and directories deeper than [`dirfd::MAX_DEPTH`];
//! - names that could mean something to a web server or a browser: an allowlist, not a denylist. A
//!   file keeps its name only when every dotted part after the first is a type no browser runs
//!   ([`INERT`]: text, JSON, raster images, PDF, archives); any other name — no dot, a leading dot,
//!   an empty dotted part, a type unknown or active (`.xhtm`, `.svg`, `.php`, … anywhere among its
//!   dotted parts: `x.html.zzz` too) — is saved with its dots made `_` and `.txt` after it
//!   (`x_xhtm.txt`), which servers send as `text/plain`; the link's `download` keeps the original
//!   name for the person saving it. A step's file cannot become a page or a program of the site.
//!
//! A name is a name: it has no `/` and is never `..`, so nothing is written outside the run's folder.
//! Links are percent-encoded byte by byte and shown escaped.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag};

use crate::isolation::dirfd;

/// The most bytes of one run's artifacts copied into the report.
pub const REPORT_ARTIFACTS_CAP: u64 = 64 << 20;
/// The most artifacts of one run listed in the report.
pub const MAX_FILES: usize = 1000;

/// One artifact as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Its path in the record's `artifacts/`, for people (not escaped yet).
    pub shown: String,
    /// The link to its copy, relative to the run's page, percent-encoded; `None` when not copied.
    pub href: Option<String>,
    pub size: u64,
    /// Why it is not in the report, when it is not.
    pub left_out: Option<String>,
    /// The file's own name, for the link's `download`, when the report stores it under another.
    pub download: Option<String>,
}

/// What a run's page says of its artifacts.
#[derive(Debug, Default)]
pub struct Listing {
    pub artifacts: Vec<Artifact>,
    /// Things not listed at all (more than [`MAX_FILES`], too deep), in words.
    pub notes: Vec<String>,
}

/// Copies the artifacts in `from` (a run record's `artifacts/`) into `to`
/// (`<site>/<repo>/<run>/artifacts`), linked from the page as `<href_base>/<path>`. A missing `from`
/// is a run without artifacts. A copy already there with the same size is kept (a finished run's
/// artifacts do not change).
pub fn copy(from: &Path, to: &Path, href_base: &str) -> Listing {
    let mut walk = Walk {
        to: to.to_path_buf(),
        href_base: href_base.to_string(),
        budget: REPORT_ARTIFACTS_CAP,
        listing: Listing::default(),
        more_than_max: false,
    };
    if let Ok(dir) = dirfd::open_dir(None, from.as_os_str()) {
        walk.dir(&dir, &[], 0);
    }
    walk.listing
}

struct Walk {
    to: PathBuf,
    href_base: String,
    budget: u64,
    listing: Listing,
    /// Whether the walk met more files than [`MAX_FILES`] (and so ended).
    more_than_max: bool,
}

impl Walk {
    /// `dir` is at `path` (names as in the record) below the artifacts.
    fn dir(&mut self, dir: &OwnedFd, path: &[OsString], depth: usize) {
        if depth >= dirfd::MAX_DEPTH {
            self.listing.notes.push(format!(
                "artifacts below `{}` are more than {} folders deep and not in the report",
                shown(path),
                dirfd::MAX_DEPTH
            ));
            return;
        }
        // A record from before `artifact_files` may hold any number of names: a bounded listing.
        let (names, more) = dirfd::first_names(dir, 2 * MAX_FILES);
        for name in names {
            if self.more_than_max {
                return;
            }
            let mut inner = path.to_vec();
            inner.push(name.clone());
            match dirfd::kind(dir, &name) {
                Ok(SFlag::S_IFDIR) => {
                    if let Ok(sub) = dirfd::open_dir(Some(dir), &name) {
                        self.dir(&sub, &inner, depth + 1);
                    }
                }
                Ok(SFlag::S_IFREG) => self.file(dir, &name, &inner),
                // A record's artifacts are regular files; anything else was put there since.
                _ => {}
            }
        }
        if more {
            self.more_than_max();
        }
    }

    fn file(&mut self, dir: &OwnedFd, name: &OsStr, path: &[OsString]) {
        if self.listing.artifacts.len() >= MAX_FILES {
            self.more_than_max();
            return;
        }
        let mut artifact = Artifact {
            shown: shown(path),
            href: None,
            size: 0,
            left_out: None,
            download: None,
        };
        if stored_name(name) != name {
            artifact.download = Some(crate::describe::terminal(&name.to_string_lossy()));
        }
        match self.copy_file(dir, name, path, &mut artifact.size) {
            Ok(href) => artifact.href = Some(href),
            Err(why) => artifact.left_out = Some(why),
        }
        self.listing.artifacts.push(artifact);
    }

    /// Notes once that there are more artifacts than the page lists, and ends the walk.
    fn more_than_max(&mut self) {
        if !self.more_than_max {
            self.more_than_max = true;
            self.listing.notes.push(format!(
                "more than {MAX_FILES} artifacts: the rest are not listed (`phantom_ci` keeps them \
                 in the run's record)"
            ));
        }
    }

    /// Copies one file; returns its link.
    fn copy_file(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &[OsString],
        size: &mut u64,
    ) -> Result<String, String> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let source =
            File::from(openat(dir, name, flags, Mode::empty()).map_err(|e| e.to_string())?);
        let meta = source.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        *size = meta.len();
        if meta.len() > self.budget {
            return Err(format!(
                "the report keeps {} of artifacts per run",
                super::human_size(REPORT_ARTIFACTS_CAP)
            ));
        }
        let last = path.len().saturating_sub(1);
        let stored: Vec<OsString> = path
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i == last {
                    stored_name(n)
                } else {
                    stored_dir_name(n)
                }
            })
            .collect();
        let href = format!(
            "{}/{}",
            self.href_base,
            stored
                .iter()
                .map(|n| percent_encode(n.as_bytes()))
                .collect::<Vec<_>>()
                .join("/")
        );
        let to = stored.iter().fold(self.to.clone(), |p, n| p.join(n));
        let same =
            std::fs::symlink_metadata(&to).is_ok_and(|m| m.is_file() && m.len() == meta.len());
        if !same {
            let copied = write_copy(source, &to, self.budget)?;
            *size = copied;
        }
        self.budget -= (*size).min(self.budget);
        Ok(href)
    }
}

/// Copies at most `max` bytes of `source` to `to`, atomically (a temporary file renamed over it: a link
/// at `to` is replaced, never followed); directories on the way are made.
fn write_copy(source: File, to: &Path, max: u64) -> Result<u64, String> {
    let parent = to.parent().ok_or("no folder to copy into")?;
    make_dirs(parent)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(parent)
        .map_err(|e| e.to_string())?;
    let copied =
        std::io::copy(&mut source.take(max + 1), tmp.as_file_mut()).map_err(|e| e.to_string())?;
    if copied > max {
        return Err("it grew past the report's cap while being copied".into());
    }
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| e.to_string())?;
    tmp.persist(to).map_err(|e| e.error.to_string())?;
    Ok(copied)
}

/// Makes `dir` and its parents; a link where a folder should be is an error, not a way out.
fn make_dirs(dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => return Err(format!("`{}` is not a folder", dir.display())),
        Err(_) => {}
    }
    if let Some(parent) = dir.parent() {
        make_dirs(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e)
            if e.kind() == std::io::ErrorKind::AlreadyExists
                && std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) =>
        {
            Ok(())
        }
        Err(e) => Err(format!("cannot create `{}`: {e}", dir.display())),
    }
}

/// The types an artifact may keep its name with: each is mapped by `/etc/mime.types` (which Apache,
/// lighttpd, Python's `http.server` and Caddy read) to a type that no browser runs as a page when it
/// is opened by name, whatever the file holds. Why each is here: `docs/security.md`, "Artifacts on a
/// web server". Not here, among others: `log` (no type in `/etc/mime.types`: Apache then sends none
/// and a browser sniffs the content, which may be HTML), `svg`, `xml` and every `+xml` type (scripts
/// run in them), `html`, `js`, anything a server may run (`php`, `cgi`, …).
#[rustfmt::skip]
pub const INERT: &[&str] = &[
    // Text a browser shows as text, and data.
    "txt", "text", "md", "csv", "tsv", "diff", "patch", "json",
    // Raster images (not SVG): drawn by the image decoders, or not at all.
    "png", "jpg", "jpeg", "gif", "webp", "avif", "bmp", "ico",
    // Documents: shown by the PDF viewer, on its own origin.
    "pdf",
    // Archives and packages: downloaded.
    "tar", "gz", "tgz", "xz", "zst", "zip", "7z", "jar", "deb", "rpm",
];

/// Whether a name keeps its name in the report: it has a dot, does not start with one, has no empty
/// dotted part, and every dotted part after the first is one of [`INERT`] (in any case: servers match
/// extensions case-insensitively, and Apache matches every dotted part, not only the last).
pub fn is_inert(name: &[u8]) -> bool {
    let mut parts = name.split(|b| *b == b'.');
    let first = parts.next().unwrap_or_default();
    let mut rest = parts.peekable();
    !first.is_empty()
        && rest.peek().is_some()
        && rest.all(|part| {
            INERT
                .iter()
                .any(|t| t.as_bytes().eq_ignore_ascii_case(part))
        })
}

/// The name an artifact's file gets in the report: its own if [`is_inert`], else its dots made `_` and
/// `.txt` after it, a type every server sends as `text/plain` (`x.xhtm` → `x_xhtm.txt`, `.htaccess` →
/// `_htaccess.txt`, `README` → `README.txt`), so that no dotted part is left to mean anything.
pub fn stored_name(name: &OsStr) -> OsString {
    let bytes = name.as_bytes();
    if is_inert(bytes) {
        return name.to_os_string();
    }
    let mut bytes: Vec<u8> = bytes
        .iter()
        .map(|b| if *b == b'.' { b'_' } else { *b })
        .collect();
    bytes.extend_from_slice(b".txt");
    OsString::from_vec(bytes)
}

/// The name an artifact's folder gets in the report: a folder's name gives no file a type, but a server
/// may still match a dotted part of it (`x.php/…` as a script's path, `.git/`, `.well-known/`), so a
/// name that is not [`is_inert`] and has a dot gets its dots made `_` (`.git` → `_git`, `site.php` →
/// `site_php`); one without a dot stays.
pub fn stored_dir_name(name: &OsStr) -> OsString {
    let bytes = name.as_bytes();
    if is_inert(bytes) || !bytes.contains(&b'.') {
        return name.to_os_string();
    }
    OsString::from_vec(
        bytes
            .iter()
            .map(|b| if *b == b'.' { b'_' } else { *b })
            .collect(),
    )
}

/// Every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`) as `%XX`.
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(b) {
            out.push(char::from(*b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path below the artifacts for people: `/`-joined, control characters as `?`.
fn shown(path: &[OsString]) -> String {
    let joined: Vec<String> = path
        .iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    crate::describe::terminal(&joined.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_and_kept_from_meaning_anything_to_a_server() {
        assert_eq!(percent_encode(b"<script>"), "%3Cscript%3E");
        assert_eq!(percent_encode(b"../../x"), "..%2F..%2Fx");
        assert_eq!(
            percent_encode("a b\"'#?&π".as_bytes()),
            "a%20b%22%27%23%3F%26%CF%80"
        );
        assert_eq!(
            percent_encode(b"report-1.0_final~.tar.gz"),
            "report-1.0_final~.tar.gz"
        );
    }

    #[test]
    fn only_names_of_inert_types_keep_their_name() {
        let stored = |n: &str| stored_name(OsStr::new(n)).into_string().unwrap();
        for kept in [
            "coverage.tar.gz",
            "coverage <1>.txt",
            "shot.PNG",
            "report.Json",
            "a.pdf",
            "a.pdf.zip",
            "x.7z",
            "phantom-ci.deb",
        ] {
            assert_eq!(stored(kept), kept);
        }
        // The case and its family: every type not on the list, known or not.
        assert_eq!(stored("a.xhtm"), "a_xhtm.txt");
        for active in [
            "atom", "rss", "rdf", "mml", "xul", "kml", "svg", "xml", "html", "xsl",
        ] {
            assert_eq!(stored(&format!("a.{active}")), format!("a_{active}.txt"));
        }
        assert_eq!(stored("index.HTML"), "index_HTML.txt");
        assert_eq!(
            stored("build.log"),
            "build_log.txt",
            "no type in /etc/mime.types"
        );
        assert_eq!(stored("x.zzz"), "x_zzz.txt", "an unknown type");
        // Every dotted part counts, not only the last: Apache maps `x.html.gz` to HTML.
        assert_eq!(stored("x.html.gz"), "x_html_gz.txt");
        assert_eq!(stored("x.txt.php"), "x_txt_php.txt");
        assert_eq!(stored("x.php.txt"), "x_php_txt.txt");
        assert_eq!(stored("app-1.2.tar.gz"), "app-1_2_tar_gz.txt");
        // No dot, a leading dot, an empty dotted part.
        assert_eq!(stored("README"), "README.txt");
        assert_eq!(stored(".htaccess"), "_htaccess.txt");
        assert_eq!(stored(".txt"), "_txt.txt");
        assert_eq!(stored("..txt"), "__txt.txt");
        assert_eq!(stored("x..txt"), "x__txt.txt");
        assert_eq!(stored("x.txt."), "x_txt_.txt");
        assert_eq!(stored("<script>"), "<script>.txt");
        let stored_dir = |n: &str| stored_dir_name(OsStr::new(n)).into_string().unwrap();
        assert_eq!(stored_dir("sub"), "sub");
        assert_eq!(stored_dir(".git"), "_git");
        assert_eq!(stored_dir("site.php"), "site_php");
        assert_eq!(stored_dir("out.tar"), "out.tar");
        assert_eq!(stored_dir(".."), "__", "never a way up");
        assert!(is_inert(b"a.TXT") && !is_inert(b"a") && !is_inert(b"") && !is_inert(b"."));
    }

    #[test]
    fn only_regular_files_are_copied_never_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let from = tmp.path().join("record/artifacts");
        std::fs::create_dir_all(from.join("sub/.git")).unwrap();
        std::fs::write(from.join("<script>alert(1)<"), "x").unwrap();
        std::fs::write(from.join("sub/report.html"), "<script>alert(2)</script>").unwrap();
        std::fs::write(from.join("sub/.git/config"), "c").unwrap();
        std::fs::write(from.join("..%2F..%2Fx"), "y").unwrap();
        let secret = tmp.path().join("secret");
        std::fs::write(&secret, "secret").unwrap();
        std::os::unix::fs::symlink(&secret, from.join("passwd")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), from.join("up")).unwrap();
        nix::unistd::mkfifo(&from.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();

        let to = tmp.path().join("site/app/1/artifacts");
        let listing = copy(&from, &to, "1/artifacts");
        let shown: Vec<&str> = listing.artifacts.iter().map(|a| a.shown.as_str()).collect();
        assert_eq!(
            shown,
            [
                "..%2F..%2Fx",
                "<script>alert(1)<",
                "sub/.git/config",
                "sub/report.html"
            ]
        );
        let hrefs: Vec<&str> = listing
            .artifacts
            .iter()
            .map(|a| a.href.as_deref().unwrap())
            .collect();
        assert_eq!(
            hrefs,
            [
                "1/artifacts/__%252F__%252Fx.txt",
                "1/artifacts/%3Cscript%3Ealert%281%29%3C.txt",
                "1/artifacts/sub/_git/config.txt",
                "1/artifacts/sub/report_html.txt"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(to.join("sub/report_html.txt")).unwrap(),
            "<script>alert(2)</script>"
        );
        assert!(!to.join("sub/report.html").exists());
        assert!(to.join("sub/_git/config.txt").is_file());
        assert!(
            !to.join("passwd").exists() && !to.join("up").exists() && !to.join("fifo").exists()
        );
        // Nothing was written outside the run's folder.
        let mut everything = Vec::new();
        let mut stack = vec![tmp.path().join("site")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                } else {
                    everything.push(entry.path());
                }
            }
        }
        assert!(
            everything.iter().all(|p| p.starts_with(&to)),
            "{everything:?}"
        );
        assert_eq!(everything.len(), 4);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(to.join("sub/_git/config.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);

        // The artifacts folder itself a link: nothing.
        let linked = tmp.path().join("linked");
        std::os::unix::fs::symlink(&from, &linked).unwrap();
        assert!(
            copy(&linked, &tmp.path().join("other"), "x")
                .artifacts
                .is_empty()
        );
        assert!(
            copy(&tmp.path().join("none"), &tmp.path().join("other"), "x")
                .artifacts
                .is_empty()
        );
    }

    #[test]
    fn a_link_planted_in_the_site_is_replaced_not_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let from = tmp.path().join("artifacts");
        std::fs::create_dir_all(&from).unwrap();
        std::fs::write(from.join("out.txt"), "new").unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "old").unwrap();
        let to = tmp.path().join("site");
        std::fs::create_dir_all(&to).unwrap();
        std::os::unix::fs::symlink(&victim, to.join("out.txt")).unwrap();
        let listing = copy(&from, &to, "1/artifacts");
        assert!(listing.artifacts[0].href.is_some());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "old");
        assert_eq!(std::fs::read_to_string(to.join("out.txt")).unwrap(), "new");
        assert!(
            !std::fs::symlink_metadata(to.join("out.txt"))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn the_cap_and_the_count_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let from = tmp.path().join("artifacts");
        std::fs::create_dir_all(&from).unwrap();
        let big = File::create(from.join("big.bin")).unwrap();
        big.set_len(REPORT_ARTIFACTS_CAP + 1).unwrap();
        std::fs::write(from.join("small.txt"), "s").unwrap();
        let listing = copy(&from, &tmp.path().join("site"), "1/artifacts");
        assert_eq!(listing.artifacts.len(), 2);
        assert!(listing.artifacts[0].href.is_none());
        assert!(
            listing.artifacts[0]
                .left_out
                .as_deref()
                .unwrap()
                .contains("64 MiB"),
            "{:?}",
            listing.artifacts[0]
        );
        assert_eq!(listing.artifacts[0].size, REPORT_ARTIFACTS_CAP + 1);
        assert!(!tmp.path().join("site/big.bin").exists());
        assert!(listing.artifacts[1].href.is_some());

        std::fs::remove_file(from.join("big.bin")).unwrap();
        for i in 0..MAX_FILES + 5 {
            std::fs::write(from.join(format!("f{i:05}")), "").unwrap();
        }
        let listing = copy(&from, &tmp.path().join("site2"), "1/artifacts");
        assert_eq!(listing.artifacts.len(), MAX_FILES);
        assert_eq!(listing.notes.len(), 1);
        // More names than a directory is listed for: the same one note.
        for i in MAX_FILES + 5..2 * MAX_FILES + 5 {
            std::fs::write(from.join(format!("f{i:05}")), "").unwrap();
        }
        let listing = copy(&from, &tmp.path().join("site3"), "1/artifacts");
        assert_eq!(listing.artifacts.len(), MAX_FILES);
        assert_eq!(listing.notes.len(), 1, "{:?}", listing.notes);
        assert_eq!(listing.artifacts[0].shown, "f00000", "the first names");
    }
}
