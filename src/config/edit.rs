//! Editing `Repo.toml` the way a careful person would by hand (`add`, `remove`): a new section is
//! appended after the existing text, and a removed section takes exactly its own lines with it. Every
//! other byte — comments, order, spacing, other sections — stays as it was.
//!
//! The file is parsed with `toml_edit` only to find where each table header and the comments and blank
//! lines before it are; the edit itself is done on the text, so nothing is ever re-formatted.
//!
//! Which lines belong to a section: its header and body, the comment lines directly above the header
//! (no blank line in between), and comment lines that directly follow its last line when a blank line
//! separates them from the next header. A comment paragraph standing on its own (blank lines around it)
//! belongs to no section and stays. One blank line separating the section from its neighbours goes with
//! it, so that `add` then `remove` gives back the original bytes.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use toml_edit::{Document, Item, Table};

/// Why a section cannot be removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("no repo `{0}`")]
    NoSuchRepo(String),
    /// The repo is written as dotted keys or an inline table at the top of the file, not as a `[name]`
    /// section; `line` is where it is.
    #[error("repo `{name}` (line {line}) is not written as a `[{name}]` section")]
    NotASection { name: String, line: usize },
    #[error("{0}")]
    Unparsable(String),
}

/// A new section's text, one `key = value` per line, values quoted as TOML strings.
pub fn render_section(name: &str, path: &str, branch: &str, run_as: Option<&str>) -> String {
    let quote = |text: &str| toml_edit::Value::from(text).to_string();
    let mut section = format!(
        "[{name}]\npath = {}\ntarget_branch = {}\n",
        quote(path),
        quote(branch)
    );
    if let Some(user) = run_as {
        section.push_str(&format!("run_as = {}\n", quote(user)));
    }
    section
}

/// `text` with `section` appended, separated by one blank line, in the file's own line endings.
pub fn append(text: &str, section: &str) -> String {
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let section = section.replace('\n', newline);
    if text.is_empty() {
        return section;
    }
    let mut out = String::with_capacity(text.len() + section.len() + 4);
    out.push_str(text);
    if !text.ends_with('\n') {
        out.push_str(newline);
    }
    out.push_str(newline);
    out.push_str(&section);
    out
}

/// The 1-based line of the `[name]` header, if the file has one.
pub fn header_line(text: &str, name: &str) -> Option<usize> {
    let document = Document::parse(text).ok()?;
    let header = headers(&document)
        .into_iter()
        .find(|h| h.owner == name && h.depth == 0)?;
    Some(crate::config::line_column(text, header.start).0)
}

/// `text` without the section `name` (its `[name]` header, any `[name.…]` sub-tables, and the lines
/// that belong to them).
pub fn remove(text: &str, name: &str) -> Result<String, EditError> {
    let document = Document::parse(text).map_err(|e| EditError::Unparsable(e.to_string()))?;
    let root = document.as_table();
    let Some(item) = root.get(name) else {
        return Err(EditError::NoSuchRepo(name.to_string()));
    };
    let is_section = matches!(item, Item::Table(t) if !t.is_dotted());
    if !is_section {
        let offset = root
            .key(name)
            .and_then(toml_edit::Key::span)
            .map_or(0, |s| s.start);
        return Err(EditError::NotASection {
            name: name.to_string(),
            line: crate::config::line_column(text, offset).0,
        });
    }
    let headers = headers(&document);
    let trailing_start = document.trailing().span().map_or(text.len(), |s| s.start);
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (i, header) in headers.iter().enumerate() {
        if header.owner != name {
            continue;
        }
        let body_end = headers
            .get(i + 1)
            .map_or(trailing_start, |h| h.prefix_start);
        let next_header = headers.get(i + 1).map(|h| h.start);
        let start = attached_comments_start(text, header.prefix_start, header.start);
        let end = body_end + trailing_comments_len(text, body_end, next_header);
        out.push_str(&text[pos..start]);
        pos = end;
        let rest = &text[pos..];
        let rest_starts_blank = rest
            .split_inclusive('\n')
            .next()
            .is_none_or(|line| line.trim().is_empty());
        if rest_starts_blank {
            // One blank line separated the section from each neighbour: keep one, or none at the
            // start or end of the file.
            if out.is_empty() {
                pos += rest.split_inclusive('\n').next().map_or(0, str::len);
            } else {
                drop_last_blank_line(&mut out);
            }
        }
    }
    out.push_str(&text[pos..]);
    Ok(out)
}

/// Writes `text` to `path` atomically (temporary file, fsync, rename, fsync of the directory). An
/// existing file keeps its permissions and owner (a symlink keeps pointing at it: its target is
/// replaced); a new file is created with mode 0600, since it is the operator's configuration.
pub fn save(path: &Path, text: &str) -> std::io::Result<()> {
    let target = match std::fs::canonicalize(path) {
        Ok(target) => target,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(e),
    };
    let existing = match std::fs::metadata(&target) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let dir = target.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".Repo.toml.")
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    let mode = existing.as_ref().map_or(0o600, |m| m.mode() & 0o7777);
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    if let Some(meta) = &existing {
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        if (meta.uid(), meta.gid()) != me {
            std::os::unix::fs::fchown(tmp.as_file(), Some(meta.uid()), Some(meta.gid()))?;
        }
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// A table header: where the comments and blank lines before it start, where its `[` is, and which
/// top-level key (repo) it belongs to.
struct Header {
    prefix_start: usize,
    start: usize,
    owner: String,
    depth: usize,
}

/// Every table header of the document, in file order.
fn headers(document: &Document<&str>) -> Vec<Header> {
    fn walk(table: &Table, owner: Option<&str>, depth: usize, out: &mut Vec<Header>) {
        for (key, item) in table.iter() {
            let owner = owner.unwrap_or(key);
            let tables: Vec<&Table> = match item {
                Item::Table(t) => vec![t],
                Item::ArrayOfTables(array) => array.iter().collect(),
                Item::None | Item::Value(_) => Vec::new(),
            };
            for t in tables {
                if !t.is_implicit()
                    && !t.is_dotted()
                    && let Some(span) = t.span()
                {
                    let prefix_start = t
                        .decor()
                        .prefix()
                        .and_then(toml_edit::RawString::span)
                        .map_or(span.start, |s| s.start);
                    out.push(Header {
                        prefix_start,
                        start: span.start,
                        owner: owner.to_string(),
                        depth,
                    });
                }
                walk(t, Some(owner), depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(document.as_table(), None, 0, &mut out);
    out.sort_by_key(|h| h.start);
    out
}

/// The lines of `text[start..end]`, each with its offset (the last one may lack its newline).
fn lines(text: &str, start: usize, end: usize) -> impl Iterator<Item = (usize, &str)> {
    text[start..end]
        .split_inclusive('\n')
        .scan(start, |offset, line| {
            let at = *offset;
            *offset += line.len();
            Some((at, line))
        })
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Where the comment lines directly above a header start (the start of the header's line when there
/// are none). `prefix_start..header` holds only comments and blank lines, then the header's indentation.
fn attached_comments_start(text: &str, prefix_start: usize, header: usize) -> usize {
    let all: Vec<(usize, &str)> = lines(text, prefix_start, header).collect();
    // The last piece is the header's own indentation (no newline), if any.
    let (mut start, complete) = match all.last() {
        Some((at, line)) if !line.ends_with('\n') => (*at, &all[..all.len() - 1]),
        _ => (header, &all[..]),
    };
    for (at, line) in complete.iter().rev() {
        if !is_comment(line) {
            break;
        }
        start = *at;
    }
    start
}

/// How many bytes of comment lines at `from` follow a section's last line directly and belong to it:
/// those before the first blank line. Without a blank line before the next header they are that
/// header's comments instead (and at the end of the file they are the section's).
fn trailing_comments_len(text: &str, from: usize, next_header: Option<usize>) -> usize {
    let end = next_header.unwrap_or(text.len());
    let mut len = 0;
    for (_, line) in lines(text, from, end) {
        if !is_comment(line) || !line.ends_with('\n') {
            let blank_follows = line.trim().is_empty();
            return if blank_follows || next_header.is_none() {
                len
            } else {
                0
            };
        }
        len += line.len();
    }
    if next_header.is_none() { len } else { 0 }
}

/// Removes the last line of `out` if it is blank (whitespace only).
fn drop_last_blank_line(out: &mut String) {
    let Some(body) = out.strip_suffix('\n') else {
        return;
    };
    let line_start = body.rfind('\n').map_or(0, |i| i + 1);
    if body[line_start..].trim().is_empty() {
        out.truncate(line_start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAND_WRITTEN: &str = "\
# phantom_ci repositories of build-01
# (maintained by hand)

# the main application
[app]   # production
path   =   \"/srv/git/app.git\"
target_branch='main'
env = { RUSTFLAGS = \"-Dwarnings\" }   # strict

# ---- a paragraph of its own ----

[tool]
path = \"https://example.org/tool.git\"
  # an indented comment inside
keep_runs = 5
[tool.limits]
nofile = 1024



# trailing notes
";

    #[test]
    fn a_new_section_is_rendered_and_quoted() {
        assert_eq!(
            render_section("app", "/srv/git/app.git", "main", Some("ci")),
            "[app]\npath = \"/srv/git/app.git\"\ntarget_branch = \"main\"\nrun_as = \"ci\"\n"
        );
        for odd in ["/srv/x \"y\".git", "/srv/it's\\here", "/srv/'\"both\"'"] {
            let text = render_section("app", odd, "main", None);
            let config = crate::config::Config::parse(Path::new("/Repo.toml"), &text).unwrap();
            assert_eq!(config.repos[0].location.to_string(), odd, "{text}");
        }
    }

    #[test]
    fn append_then_remove_gives_back_the_same_bytes() {
        let originals = [
            HAND_WRITTEN,
            "",
            "\n",
            "# only a comment\n",
            "[a]\npath = \"/x\"",
            "[a]\npath = \"/x\"\n\n\n",
            "[a]\r\npath = \"/x\"\r\n",
            "[a]\npath = \"/x\"\n# comment at the end, no newline",
        ];
        for original in originals {
            let section = render_section("new", "/srv/git/new.git", "master", None);
            let added = append(original, &section);
            assert!(added.starts_with(original.trim_end_matches(['\n', '\r'])));
            let removed = remove(&added, "new").unwrap();
            let expected = if original.is_empty() || original.ends_with('\n') {
                original.to_string()
            } else {
                format!("{original}\n")
            };
            assert_eq!(removed, expected, "original: {original:?}");
        }
    }

    #[test]
    fn removing_a_section_takes_its_own_lines_only() {
        let without_app = remove(HAND_WRITTEN, "app").unwrap();
        assert_eq!(
            without_app,
            "\
# phantom_ci repositories of build-01
# (maintained by hand)

# ---- a paragraph of its own ----

[tool]
path = \"https://example.org/tool.git\"
  # an indented comment inside
keep_runs = 5
[tool.limits]
nofile = 1024



# trailing notes
"
        );
        let without_tool = remove(HAND_WRITTEN, "tool").unwrap();
        assert_eq!(
            without_tool,
            "\
# phantom_ci repositories of build-01
# (maintained by hand)

# the main application
[app]   # production
path   =   \"/srv/git/app.git\"
target_branch='main'
env = { RUSTFLAGS = \"-Dwarnings\" }   # strict

# ---- a paragraph of its own ----



# trailing notes
"
        );
        assert_eq!(
            remove(&without_app, "tool").unwrap().matches("[").count(),
            0
        );
    }

    #[test]
    fn comments_after_a_section_go_with_it_unless_they_touch_the_next_header() {
        let text = "[a]\npath = \"/a\"\n# run_as = \"ci\"\n\n[b]\npath = \"/b\"\n# about c\n[c]\npath = \"/c\"\n";
        assert_eq!(
            remove(text, "a").unwrap(),
            "[b]\npath = \"/b\"\n# about c\n[c]\npath = \"/c\"\n"
        );
        assert_eq!(
            remove(text, "b").unwrap(),
            "[a]\npath = \"/a\"\n# run_as = \"ci\"\n\n# about c\n[c]\npath = \"/c\"\n"
        );
        assert_eq!(
            remove(text, "c").unwrap(),
            "[a]\npath = \"/a\"\n# run_as = \"ci\"\n\n[b]\npath = \"/b\"\n"
        );
    }

    #[test]
    fn sub_tables_elsewhere_in_the_file_go_too() {
        let text = "[a]\npath = \"/a\"\n\n[b]\npath = \"/b\"\n\n[a.limits]\nnofile = 5\n\n[c]\npath = \"/c\"\n";
        assert_eq!(
            remove(text, "a").unwrap(),
            "[b]\npath = \"/b\"\n\n[c]\npath = \"/c\"\n"
        );
    }

    #[test]
    fn a_multi_line_string_that_looks_like_comments_is_not_cut() {
        let text = "[a]\npath = \"/a\"\nenv = { X = \"\"\"\n# not a comment\n[not.a.header]\n\"\"\" }\n\n[b]\npath = \"/b\"\n";
        assert_eq!(
            remove(text, "b").unwrap(),
            "[a]\npath = \"/a\"\nenv = { X = \"\"\"\n# not a comment\n[not.a.header]\n\"\"\" }\n"
        );
        assert_eq!(remove(text, "a").unwrap(), "[b]\npath = \"/b\"\n");
    }

    #[test]
    fn repos_that_are_not_sections_are_refused() {
        assert_eq!(
            remove("x = 1\napp.path = \"/a\"\n", "app"),
            Err(EditError::NotASection {
                name: "app".into(),
                line: 2
            })
        );
        assert!(matches!(
            remove("app = { path = \"/a\" }\n", "app"),
            Err(EditError::NotASection { line: 1, .. })
        ));
        assert_eq!(
            remove("[a]\npath = \"/a\"\n", "b"),
            Err(EditError::NoSuchRepo("b".into()))
        );
    }

    #[test]
    fn header_lines() {
        assert_eq!(header_line(HAND_WRITTEN, "tool"), Some(12));
        assert_eq!(header_line(HAND_WRITTEN, "app"), Some(5));
        assert_eq!(header_line(HAND_WRITTEN, "nope"), None);
    }

    #[test]
    fn save_keeps_the_mode_of_an_existing_file_and_creates_new_ones_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Repo.toml");
        save(&path, "[a]\n").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        save(&path, "[b]\n").unwrap();
        assert_eq!(mode(&path), 0o640);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[b]\n");

        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        save(&link, "[c]\n").unwrap();
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[c]\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
