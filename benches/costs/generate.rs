//! The data the rows work on: a large repository, copies of a small one, a file of log lines. All
//! deterministic, so that every run measures the same thing.

use std::path::{Path, PathBuf};

use crate::env::{Bench, workflow};

/// A small deterministic generator, so that every run measures the same repository.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

const WORDS: &str = "let fn match self value result config repo branch commit step run workspace \
    output error Some None Ok Err return if else for in map len push path name into clone unwrap_or";

/// About `size` bytes of source-like text (it compresses like code, not like random bytes).
pub fn source_text(rng: &mut Lcg, size: usize, header: &str) -> Vec<u8> {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut text = format!("// {header}\n");
    while text.len() < size {
        let indent = (rng.next() % 4) as usize * 4;
        text.extend(std::iter::repeat_n(' ', indent));
        for _ in 0..3 + rng.next() % 6 {
            text.push_str(words[(rng.next() % words.len() as u64) as usize]);
            text.push(match rng.next() % 5 {
                0 => '.',
                1 => '(',
                2 => ',',
                _ => ' ',
            });
        }
        text.push_str(&format!("{};\n", rng.next() % 100_000));
    }
    text.into_bytes()
}

/// A bare repository `<name>.git` of `files` files (plus the workflow) holding about `mib` MiB, in
/// nested directories, with ten commits of history; packed as a push leaves it. Returns its path,
/// its tip and the bytes of its tip's files.
pub fn big_repository(bench: &Bench, name: &str, files: usize, mib: u64) -> (PathBuf, String, u64) {
    let work = bench.root.join(format!("{name}-src"));
    let mut rng = Lcg(42);
    let average = ((mib << 20) / files as u64).max(64) as usize;
    let path_of = |id: usize| format!("src/m{:02}/d{:02}/f{id:05}.rs", id % 16, (id / 16) % 16);
    let mut sizes = Vec::with_capacity(files);
    let mut entries = vec![(
        "workflow/master.toml".to_string(),
        workflow(&["true".into()]),
    )];
    for id in 0..files {
        let size = average / 2 + (rng.next() as usize % average);
        sizes.push(size);
        entries.push((
            path_of(id),
            source_text(&mut rng, size, &format!("file {id}")),
        ));
    }
    bench.work_repo(&work, entries);
    for revision in 1..10 {
        for _ in 0..25 {
            let id = rng.next() as usize % files;
            let text = source_text(
                &mut rng,
                sizes[id],
                &format!("file {id}, revision {revision}"),
            );
            std::fs::write(work.join(path_of(id)), text).unwrap();
        }
        let message = format!("change {revision}");
        bench.git(&work, &["commit", "-q", "-a", "-m", &message]);
    }
    let bytes = tree_bytes(&work);
    let bare = bench.root.join(format!("{name}.git"));
    bench.bare_clone(&work, &bare);
    std::fs::remove_dir_all(&work).unwrap();
    let tip = bench.git(&bare, &["rev-parse", "master"]);
    (bare, tip, bytes)
}

/// Bytes of the files under `dir`, `.git` left out.
fn tree_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(Result::unwrap)
        .filter(|entry| entry.file_name() != ".git")
        .map(|entry| {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                tree_bytes(&entry.path())
            } else {
                entry.metadata().unwrap().len()
            }
        })
        .sum()
}

/// A plain copy of a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `bytes` bytes of numbered text lines.
pub fn write_lines(path: &Path, bytes: u64) {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut written = 0u64;
    let mut number = 0u64;
    while written < bytes {
        let mut line = format!(
            "{number:010} phantom_ci benchmark log line: compiling crate {} of 400, warnings 0\n",
            number % 400
        )
        .into_bytes();
        let room = (bytes - written) as usize;
        if line.len() > room {
            line.truncate(room);
            if let Some(last) = line.last_mut() {
                *last = b'\n';
            }
        }
        out.write_all(&line).unwrap();
        written += line.len() as u64;
        number += 1;
    }
    out.flush().unwrap();
}
