//! The records of ad-hoc runs: `phantom_ci run <path>` of a repository that is not in `Repo.toml`.
//!
//! They live in a namespace of their own, `@<directory name>` (`<data>/runs/@app/`): a repo's name
//! cannot contain `@` (`[A-Za-z0-9][A-Za-z0-9_-]*`), so an ad-hoc run of a work tree called `app` is
//! never numbered, shown or pruned as a run of the configured repo `app`. The namespace remembers
//! which repository it belongs to (its `path` file); an ad-hoc run of another repository whose
//! directory has the same name gets `@<name>-<8 hex digits of its path>` instead of sharing it.

use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use crate::config::dirs::Dirs;
use crate::error::Error;
use crate::state::atomic_file;

/// What starts the record name of an ad-hoc run.
pub const PREFIX: char = '@';

/// Whether `name` can name run records: a repo's name, or [`PREFIX`] and one (ad-hoc runs). The error
/// is a usage error's message.
pub fn validate_record_name(name: &str) -> Result<(), String> {
    match name.strip_prefix(PREFIX) {
        Some(base) => crate::config::validate_repo_name(base).map_err(|_| {
            format!(
                "invalid name `{}`: the records of ad-hoc runs are named `@` and a repo name \
                 (letters, digits, `_` and `-`)",
                crate::describe::terminal(name)
            )
        }),
        None => crate::config::validate_repo_name(name),
    }
}

/// Whether `name` is the record name of ad-hoc runs.
pub fn is_ad_hoc(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// The record name for ad-hoc runs of the repository at `path` (canonical) whose directory is called
/// `base` (a valid repo name): `@base`, or `@base-<hash>` when `@base` already holds the runs of
/// another repository. The namespace is marked as `path`'s before the first run is numbered in it.
pub fn name_for(dirs: &Dirs, base: &str, path: &Path) -> Result<String, Error> {
    let plain = format!("{PREFIX}{base}");
    if claim(dirs, &plain, path)? {
        return Ok(plain);
    }
    let hashed = format!("{plain}-{:08x}", fnv1a32(path.as_os_str().as_bytes()));
    if claim(dirs, &hashed, path)? {
        return Ok(hashed);
    }
    Err(Error::Other(format!(
        "the records `{}` of ad-hoc runs belong to another repository (see its `path` file); \
         add `{}` to Repo.toml with `phantom_ci add` to give its runs a name of their own",
        dirs.runs(&hashed).display(),
        path.display()
    )))
}

/// Marks the records `name` as those of `path`, unless they are another repository's. Whether they
/// are `path`'s now.
fn claim(dirs: &Dirs, name: &str, path: &Path) -> Result<bool, Error> {
    let runs = dirs.runs(name);
    let marker = runs.join("path");
    let mut wanted = path.as_os_str().as_bytes().to_vec();
    wanted.push(b'\n');
    match std::fs::read(&marker) {
        Ok(owner) => return Ok(owner == wanted),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("cannot read", marker, e)),
    }
    // Made as `records::allocate` makes a repo's records: phantom_ci's alone.
    dirs.make(&dirs.data.join("runs"))
        .map_err(|e| Error::io("cannot create", dirs.data.join("runs"), e))?;
    match std::fs::DirBuilder::new().mode(0o700).create(&runs) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("cannot create", runs, e)),
    }
    atomic_file::write(&marker, &wanted).map_err(|e| Error::io("cannot write", &marker, e))?;
    Ok(true)
}

/// 32-bit FNV-1a: a short name for a path that stays the same across versions of phantom_ci.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ad_hoc_names_cannot_be_repo_names() {
        assert!(validate_record_name("@app").is_ok());
        assert!(validate_record_name("app").is_ok());
        assert!(crate::config::validate_repo_name("@app").is_err());
        for bad in ["@", "@@app", "@../x", "@a/b", "a@b"] {
            assert!(validate_record_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn another_repository_of_the_same_name_gets_its_own_records() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: tmp.path().join("c"),
            data: tmp.path().join("d"),
        };
        let first = Path::new("/srv/one/app");
        let second = Path::new("/srv/two/app");
        assert_eq!(name_for(&dirs, "app", first).unwrap(), "@app");
        assert_eq!(name_for(&dirs, "app", first).unwrap(), "@app");
        let other = name_for(&dirs, "app", second).unwrap();
        assert!(
            other.starts_with("@app-") && other.len() == "@app-".len() + 8,
            "{other}"
        );
        assert_eq!(name_for(&dirs, "app", second).unwrap(), other);
        assert!(validate_record_name(&other).is_ok());
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
    }
}
