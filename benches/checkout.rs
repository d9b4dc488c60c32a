//! phantom_ci's costs as ratios against a baseline measured in the same run, on the same machine:
//!
//! - **workspace**: preparing a run's workspace (`phantom_ci::git::checkout_workspace`) against
//!   `git clone --shared --no-checkout` + `git checkout --detach <commit>` of the same commit, on a
//!   repository generated at start (a few thousand files, some history, packed like a server's);
//! - **run**: a whole `phantom_ci run` of a workflow of N `true` steps against spawning N `true`
//!   processes directly, and from two workflow sizes, the cost phantom_ci adds per step.
//!
//! `cargo bench` runs it (about a minute). Knobs: `PHANTOM_CI_BENCH_FILES` (default 3000),
//! `PHANTOM_CI_BENCH_ITERS` (default 9), `PHANTOM_CI_BENCH_STEPS` (default 20), `PHANTOM_CI_BENCH_DIR`
//! (where the temporary directory goes; default `$TMPDIR` or `/tmp`: try `/dev/shm` to leave the disk
//! out of it).

// A benchmark is a program whose output is its table; setup failures may panic.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use phantom_ci::git::Budget;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_phantom_ci");

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// The environment every git and phantom_ci process of the benchmark gets: nothing from the user's
/// own git configuration.
fn fixed_env<'a>(cmd: &'a mut Command, home: &Path) -> &'a mut Command {
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@phantom-ci.invalid")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@phantom-ci.invalid")
}

fn git(home: &Path, cwd: &Path, args: &[&str]) -> String {
    let out = fixed_env(&mut Command::new("git"), home)
        .args(args)
        .current_dir(cwd)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed in {}",
        cwd.display()
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A small deterministic generator, so every run benchmarks the same repository.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn file_contents(rng: &mut Lcg, id: usize, revision: usize) -> String {
    let lines = 20 + (rng.next() % 80) as usize;
    let mut text = format!("// file {id}, revision {revision}\n");
    for line in 0..lines {
        text.push_str(&format!(
            "fn item_{id}_{line}() -> u64 {{ {} }}\n",
            rng.next()
        ));
    }
    text
}

/// A bare, packed repository of `files` files in nested directories and 50 commits of history.
/// Returns its path and its tip.
fn generate_repository(root: &Path, home: &Path, files: usize) -> (PathBuf, String) {
    let work = root.join("generate");
    std::fs::create_dir_all(&work).unwrap();
    git(home, &work, &["init", "-q", "-b", "master"]);
    let mut rng = Lcg(42);
    let path_of = |id: usize| format!("src/m{:02}/d{:02}/f{id:05}.rs", id % 16, (id / 16) % 12);
    for id in 0..files {
        let path = work.join(path_of(id));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, file_contents(&mut rng, id, 0)).unwrap();
    }
    git(home, &work, &["add", "-A"]);
    git(home, &work, &["commit", "-q", "-m", "initial import"]);
    for revision in 1..50 {
        for _ in 0..25 {
            let id = (rng.next() as usize) % files;
            std::fs::write(
                work.join(path_of(id)),
                file_contents(&mut rng, id, revision),
            )
            .unwrap();
        }
        git(
            home,
            &work,
            &["commit", "-q", "-a", "-m", &format!("change {revision}")],
        );
        if revision % 10 == 0 {
            git(home, &work, &["tag", &format!("v0.{revision}")]);
        }
    }
    let bare = root.join("source.git");
    git(
        home,
        root,
        &[
            "clone",
            "-q",
            "--bare",
            "--no-local",
            "generate",
            "source.git",
        ],
    );
    git(home, &bare, &["repack", "-adq"]);
    let tip = git(home, &bare, &["rev-parse", "master"]);
    std::fs::remove_dir_all(&work).unwrap();
    (bare, tip)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Times `a` and `b` alternately (so that both see the same machine load), `iters` times each, after
/// one warm-up of each. `setup` runs before every sample and is not timed.
fn compare(
    iters: usize,
    mut setup: impl FnMut(),
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> (Duration, Duration) {
    let mut times_a = Vec::with_capacity(iters);
    let mut times_b = Vec::with_capacity(iters);
    for i in 0..=iters {
        setup();
        let start = Instant::now();
        a();
        let took_a = start.elapsed();
        setup();
        let start = Instant::now();
        b();
        let took_b = start.elapsed();
        if i > 0 {
            times_a.push(took_a);
            times_b.push(took_b);
        }
    }
    (median(times_a), median(times_b))
}

struct Row {
    what: String,
    median: Duration,
    baseline: String,
    baseline_median: Duration,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn bench_workspace(root: &Path, home: &Path, files: usize, iters: usize) -> Row {
    eprintln!("generating a repository of {files} files and 50 commits…");
    let (bare, tip) = generate_repository(root, home, files);
    let source = git2::Repository::open_bare(&bare).unwrap();
    let commit = git2::Oid::from_str(&tip).unwrap();
    // Each sample gets a new directory, and the samples are deleted only at the end: on a disk mounted
    // with `discard`, deleting thousands of files between samples slows the next one unpredictably.
    let workspaces = root.join("workspaces");
    std::fs::create_dir_all(&workspaces).unwrap();
    // Both sides make the same thing: a clean working tree of the commit.
    let check = workspaces.join("check");
    phantom_ci::git::checkout_workspace(&source, commit, &check, &Budget::unlimited()).unwrap();
    let status = git(home, &check, &["status", "--porcelain"]);
    assert!(
        status.is_empty(),
        "the workspace is a clean checkout: {status}"
    );
    assert_eq!(git(home, &check, &["rev-parse", "HEAD"]), tip);
    let counter = std::cell::Cell::new(0);
    let next_dir = || {
        counter.set(counter.get() + 1);
        workspaces.join(counter.get().to_string())
    };
    let (ours, theirs) = compare(
        iters,
        // What the previous sample wrote is on disk before the next one starts.
        nix::unistd::sync,
        || {
            let dir = next_dir();
            phantom_ci::git::checkout_workspace(&source, commit, &dir, &Budget::unlimited())
                .unwrap();
        },
        || {
            let dir = next_dir();
            git(
                home,
                &workspaces,
                &[
                    "clone",
                    "-q",
                    "--shared",
                    "--no-checkout",
                    bare.to_str().unwrap(),
                    dir.to_str().unwrap(),
                ],
            );
            git(home, &dir, &["checkout", "-q", "--detach", &tip]);
        },
    );
    std::fs::remove_dir_all(&workspaces).unwrap();
    Row {
        what: format!("checkout_workspace, {files} files"),
        median: ours,
        baseline: "git clone --shared + checkout".into(),
        baseline_median: theirs,
    }
}

/// A repo whose workflow has `steps` steps of `true`, configured under `name`.
fn step_repo(root: &Path, home: &Path, config: &Path, name: &str, steps: usize) {
    let work = root.join(format!("{name}-src"));
    let bare = root.join(format!("{name}.git"));
    std::fs::create_dir_all(work.join("workflow")).unwrap();
    let workflow: String = (0..steps)
        .map(|i| format!("[{i}]\nrun = \"true\"\n"))
        .collect();
    std::fs::write(work.join("workflow/master.toml"), workflow).unwrap();
    git(home, &work, &["init", "-q", "-b", "master"]);
    git(home, &work, &["add", "-A"]);
    git(home, &work, &["commit", "-q", "-m", "steps"]);
    git(
        home,
        root,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name;
    let section = format!(
        "[{name}]\npath = \"{}\"\nrun_as = \"{user}\"\nkeep_runs = 1\n",
        bare.display()
    );
    let file = config.join("Repo.toml");
    let mut text = std::fs::read_to_string(&file).unwrap_or_default();
    text.push_str(&section);
    std::fs::write(file, text).unwrap();
}

fn bench_run(root: &Path, home: &Path, steps: usize, iters: usize) -> (Row, Row) {
    let config = root.join("config");
    let data = root.join("data");
    std::fs::create_dir_all(&config).unwrap();
    step_repo(root, home, &config, "one", 1);
    step_repo(root, home, &config, "many", steps);
    let phantom = |repo: &str| {
        let status = fixed_env(&mut Command::new(BIN), home)
            .args(["run", repo])
            .env("PHANTOM_CI_CONFIG_DIR", &config)
            .env("PHANTOM_CI_DATA_DIR", &data)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "phantom_ci run {repo}");
    };
    let spawn = |n: usize| {
        for _ in 0..n {
            let status = Command::new("true")
                .current_dir(root)
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
        }
    };
    let (many, direct_many) = compare(iters, || {}, || phantom("many"), || spawn(steps));
    let (one, direct_one) = compare(iters, || {}, || phantom("one"), || spawn(1));
    let per_step = many.saturating_sub(one) / (steps as u32 - 1);
    let direct_per_step = direct_many.saturating_sub(direct_one) / (steps as u32 - 1);
    (
        Row {
            what: format!("phantom_ci run, {steps} `true` steps"),
            median: many,
            baseline: format!("{steps} direct spawns"),
            baseline_median: direct_many,
        },
        Row {
            what: "phantom_ci, each further step".into(),
            median: per_step,
            baseline: "each further spawn".into(),
            baseline_median: direct_per_step,
        },
    )
}

fn main() {
    let files = knob("PHANTOM_CI_BENCH_FILES", 3000);
    let iters = knob("PHANTOM_CI_BENCH_ITERS", 9);
    let steps = knob("PHANTOM_CI_BENCH_STEPS", 20).max(2);
    let mut tmp = tempfile::Builder::new();
    tmp.prefix("phantom-bench-");
    let tmp = match std::env::var_os("PHANTOM_CI_BENCH_DIR") {
        Some(dir) => tmp.tempdir_in(dir),
        None => tmp.tempdir(),
    }
    .unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();

    let workspace = bench_workspace(tmp.path(), &home, files, iters);
    eprintln!("timing runs of {steps} steps…");
    // Runs are short: more samples for a steadier median.
    let (run, per_step) = bench_run(tmp.path(), &home, steps, iters * 3);

    println!(
        "\nphantom_ci benchmarks: medians of {iters} samples (runs: {}), {} cores, in {}\n",
        iters * 3,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        tmp.path().parent().unwrap_or(tmp.path()).display()
    );
    println!(
        "{:<38} {:>10}   {:<32} {:>10}   {:>6}",
        "measured", "median", "baseline", "median", "ratio"
    );
    for row in [workspace, run, per_step] {
        let ratio = row.median.as_secs_f64() / row.baseline_median.as_secs_f64().max(1e-9);
        println!(
            "{:<38} {:>10}   {:<32} {:>10}   {:>5.2}x",
            row.what,
            ms(row.median),
            row.baseline,
            ms(row.baseline_median),
            ratio
        );
    }
}
