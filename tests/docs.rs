//! The documentation (issue #10): every relative link in README.md and docs/*.md leads to a file that
//! exists — and, with an `#anchor`, to a heading of that file, named as GitHub names it —, every page of
//! docs/ is reachable from the README, and the README stays short.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The README's budget: what it is, the two commands, the walkthrough, pointers. The reference is in docs/.
const README_MAX_LINES: usize = 300;

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// README.md and every `docs/*.md`.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(project().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    pages.insert(0, project().join("README.md"));
    pages
}

/// Whether `line` opens or closes a fenced code block: the fence's character and length.
fn fence(line: &str) -> Option<(char, usize)> {
    let trimmed = line.trim_start();
    let c = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = trimmed.chars().take_while(|x| *x == c).count();
    (n >= 3).then_some((c, n))
}

/// The lines of `markdown` outside fenced code blocks.
fn outside_fences(markdown: &str) -> Vec<&str> {
    let mut open: Option<(char, usize)> = None;
    let mut lines = Vec::new();
    for line in markdown.lines() {
        match (open, fence(line)) {
            (None, Some(f)) => open = Some(f),
            (Some((c, n)), Some((c2, n2))) if c == c2 && n2 >= n && line.trim().len() == n2 => {
                open = None;
            }
            (None, None) => lines.push(line),
            _ => {}
        }
    }
    lines
}

/// `text` without its code spans (a run of n backticks up to the next run of exactly n) and HTML
/// comments: what is left is where links are links.
fn without_code_and_comments(text: &str) -> String {
    let mut text = text.to_string();
    while let Some(start) = text.find("<!--") {
        let end = text[start..]
            .find("-->")
            .map_or(text.len(), |e| start + e + 3);
        text.replace_range(start..end, " ");
    }
    let chars: Vec<char> = text.chars().collect();
    let run_at = |i: usize| chars[i..].iter().take_while(|c| **c == '`').count();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let n = run_at(i);
        let mut j = i + n;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j + m);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                out.push(' ');
                i = end;
            }
            None => {
                out.extend(&chars[i..i + n]);
                i += n;
            }
        }
    }
    out
}

/// The targets of the inline links and images (`[text](target)`, `![alt](target)`) of a page.
fn links(markdown: &str) -> Vec<String> {
    let prose = outside_fences(markdown).join("\n");
    let mut targets = Vec::new();
    // A code span never crosses a paragraph.
    for paragraph in prose.split("\n\n") {
        let text = without_code_and_comments(paragraph);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest
                .find(|c: char| c == ')' || c.is_whitespace())
                .unwrap_or(rest.len());
            targets.push(rest[..end].trim_matches(['<', '>']).to_string());
            rest = &rest[end..];
        }
    }
    targets
}

/// The anchor GitHub gives a heading: its text without markup, lower-cased, with every character but
/// letters, digits, `-` and `_` dropped and spaces turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .replace('`', "")
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The anchors of a page's headings; a repeated heading gets `-1`, `-2`, … as on GitHub.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    for line in outside_fences(markdown) {
        let level = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&level) || !line[level..].starts_with(' ') {
            continue;
        }
        let base = slug(line[level..].trim().trim_end_matches('#').trim());
        let mut anchor = base.clone();
        let mut n = 0;
        while anchors.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        anchors.insert(anchor);
    }
    anchors
}

/// What is wrong with the relative links of the page at `path`, one line each.
fn broken_links(path: &Path) -> Vec<String> {
    let text = read(path);
    let dir = path.parent().unwrap();
    let mut problems = Vec::new();
    for target in links(&text) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (file, anchor) = match target.split_once('#') {
            Some((file, anchor)) => (file, Some(anchor)),
            None => (target.as_str(), None),
        };
        let linked = if file.is_empty() {
            path.to_path_buf()
        } else {
            dir.join(file)
        };
        if file.is_empty() && anchor.is_none() || !linked.exists() {
            problems.push(format!("{}: `{target}`: no such file", path.display()));
            continue;
        }
        if let Some(anchor) = anchor
            && !(linked.extension().is_some_and(|x| x == "md")
                && anchors(&read(&linked)).contains(anchor))
        {
            problems.push(format!(
                "{}: `{target}`: `{}` has no heading with the anchor `#{anchor}`",
                path.display(),
                linked.display()
            ));
        }
    }
    problems
}

fn every_relative_link_in_the_readme_and_docs_resolves() {
    let pages = pages();
    assert!(pages.len() > 5, "README.md and docs/: {pages:?}");
    let problems: Vec<String> = pages.iter().flat_map(|p| broken_links(p)).collect();
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

fn every_page_of_docs_is_linked_from_the_readme() {
    let readme = read(&project().join("README.md"));
    let linked: BTreeSet<String> = links(&readme)
        .into_iter()
        .map(|t| t.split('#').next().unwrap().to_string())
        .collect();
    for page in pages().iter().skip(1) {
        let name = format!("docs/{}", page.file_name().unwrap().to_str().unwrap());
        assert!(linked.contains(&name), "README.md does not link {name}");
    }
}

fn the_readme_stays_within_its_budget() {
    let lines = read(&project().join("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines; at most {README_MAX_LINES}: move reference material to docs/"
    );
}

fn anchors_are_named_as_on_github() {
    assert_eq!(
        slug("Root with `run_as` (system units)"),
        "root-with-run_as-system-units"
    );
    assert_eq!(
        slug("`.env`: webhooks and the report"),
        "env-webhooks-and-the-report"
    );
    assert_eq!(
        slug("CI for your own project in five minutes"),
        "ci-for-your-own-project-in-five-minutes"
    );
    let page = "# A\n## Twice\n```\n# not a heading\n```\n## Twice\n#not either\n";
    let found: Vec<String> = anchors(page).into_iter().collect();
    assert_eq!(found, ["a", "twice", "twice-1"]);
}

fn links_in_code_and_comments_are_not_links() {
    let page = "see [a](a.md) and `[b](b.md)` and ``x ` [c](c.md)``\n\n\
                <!-- [d](d.md) -->\n```\n[e](e.md)\n```\n![f](f.svg \"title\")\n";
    assert_eq!(links(page), ["a.md", "f.svg"]);
}

fn a_broken_link_or_anchor_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.md"), "# B\n## Part two\n").unwrap();
    let a = dir.path().join("a.md");
    std::fs::write(
        &a,
        "# A\n[ok](b.md#part-two) [self](#a) [gone](c.md) [no anchor](b.md#part-three) [web](https://x.org/y)\n",
    )
    .unwrap();
    let problems = broken_links(&a);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("`c.md`: no such file"), "{problems:?}");
    assert!(problems[1].contains("#part-three"), "{problems:?}");
}

crate::tests! {
    every_relative_link_in_the_readme_and_docs_resolves,
    every_page_of_docs_is_linked_from_the_readme,
    the_readme_stays_within_its_budget,
    anchors_are_named_as_on_github,
    links_in_code_and_comments_are_not_links,
    a_broken_link_or_anchor_is_reported,
}
