//! The folders of `src/` are the layers of phantom_ci (see `src/lib.rs`): a module may use its own layer
//! and the ones below, never one above, and the top-level modules never import each other in a circle.
//! This reads the source as text, so a wrong arrow fails `cargo test`, not a review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of the crate and its layer; higher layers may use lower ones.
const LAYERS: &[(&str, u8)] = &[
    ("main", 7),
    ("lib", 7),
    ("cli", 7),
    ("commands", 6),
    ("worker", 5),
    ("notify", 4),
    ("report", 4),
    ("pool", 4),
    ("runner", 3),
    ("error", 2),
    ("state", 2),
    ("git", 2),
    ("isolation", 2),
    ("install", 2),
    ("config", 1),
    ("describe", 0),
];

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
        .unwrap_or_else(|| panic!("`{module}` is not in the LAYERS table of tests/layout.rs"))
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a file belongs to: `src/state/queue.rs` → `state`, `src/worker.rs` → `worker`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap();
    let first = first.as_os_str().to_string_lossy();
    first.strip_suffix(".rs").unwrap_or(&first).to_string()
}

/// The top-level modules a file's code names as `crate::<module>` (comments left out), including
/// grouped imports such as `use crate::{a, b::c}`.
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // Only the group's top-level items name modules: `{git::{self, mirror}, state}`.
                let mut depth = 0;
                let mut item = String::new();
                let mut items = Vec::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                        _ if depth == 0 => item.push(c),
                        _ => {}
                    }
                }
                items.push(item);
                for item in items {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != "self" {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name.chars().next().is_some_and(|c| c.is_lowercase()) {
                    found.insert(name);
                }
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeMap<String, Vec<PathBuf>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, Vec<PathBuf>>> = BTreeMap::new();
    for file in files {
        let from = module_of(&src, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        let entry = graph.entry(from.clone()).or_default();
        for to in uses(&text) {
            if to != from {
                entry.entry(to).or_default().push(file.clone());
            }
        }
    }
    graph
}

fn no_module_imports_a_higher_layer() {
    let mut wrong = Vec::new();
    for (from, targets) in graph() {
        for (to, files) in targets {
            if layer(&to) > layer(&from) {
                wrong.push(format!("{from} → {to} (in {files:?})"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports pointing up: {wrong:#?}");
}

fn top_level_modules_import_no_circle() {
    let graph = graph();
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, Vec<PathBuf>>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|t| t.keys()) {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let cycle = visit(node, &graph, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "an import circle: {}",
            cycle.unwrap().join(" → ")
        );
    }
}

fn only_the_faces_use_the_cli_module() {
    for (from, targets) in graph() {
        if targets.contains_key("cli") {
            assert!(
                ["main", "lib"].contains(&from.as_str()),
                "`{from}` uses `crate::cli`: command code takes a `commands::Context`"
            );
        }
    }
}

fn src_holds_at_most_ten_files_directly() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let top: Vec<_> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert!(
        top.len() <= 10,
        "{} files directly in src/: {top:?}",
        top.len()
    );
}

/// What the repository's top level may hold (docs/development.md); a stray experiment (a
/// bare repository, a scratch configuration) committed next to them fails here, not in a review.
const TOP_LEVEL: &[&str] = &[
    ".ci",
    ".gitignore",
    "CHANGELOG.md",
    "Cargo.lock",
    "Cargo.toml",
    "README.md",
    "benches",
    "clippy.toml",
    "docs",
    "examples",
    "hooks",
    "src",
    "tests",
    "workflow",
];

fn the_top_level_holds_only_what_the_layout_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The files git tracks: a source tree without `.git` (a packaged crate) has nothing to check.
    let Ok(out) = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
    else {
        return;
    };
    if !out.status.success() {
        return;
    }
    let stray: BTreeSet<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|path| !path.is_empty())
        .map(|path| {
            let path = String::from_utf8_lossy(path);
            path.split('/').next().unwrap_or_default().to_string()
        })
        .filter(|top| !TOP_LEVEL.contains(&top.as_str()))
        .collect();
    assert!(
        stray.is_empty(),
        "tracked at the top level but not part of the layout: {stray:?}"
    );
}

fn the_parser_of_uses_sees_grouped_and_plain_imports() {
    let found = uses(
        "use crate::{git::{self, mirror}, state};\n// crate::worker in a comment\nlet x = crate::describe::short(c);",
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["describe", "git", "state"]
    );
}

/// `unsafe` lives in `src/isolation/` alone (the crate denies it; only there is it allowed, block by
/// block, each with its SAFETY comment).
fn unsafe_code_is_only_in_isolation() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let outside: Vec<&PathBuf> = files
        .iter()
        .filter(|f| !f.starts_with(src.join("isolation")))
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.contains("allow(unsafe_code)") || text.contains("unsafe {")
        })
        .collect();
    assert!(
        outside.is_empty(),
        "unsafe outside src/isolation/: {outside:?}"
    );
}

crate::tests! {
    unsafe_code_is_only_in_isolation,
    no_integration_test_hides_behind_a_test_attribute,
    no_module_imports_a_higher_layer,
    top_level_modules_import_no_circle,
    only_the_faces_use_the_cli_module,
    src_holds_at_most_ten_files_directly,
    the_top_level_holds_only_what_the_layout_names,
    the_parser_of_uses_sees_grouped_and_plain_imports,
}

/// The integration tests run under libtest-mimic (`support/harness.rs`), which never sees a `#[test]`
/// attribute: such a test would silently not run. Tests are listed in their module's `tests!` instead.
fn no_integration_test_hides_behind_a_test_attribute() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let marker = ["#[", "test]"].concat();
        assert!(
            !text.lines().any(|l| l.trim() == marker),
            "{} has a `{marker}` function, which the harness never runs: list it in `tests!`",
            file.display()
        );
    }
}
